//! Lifecycle: expiry at stop_at_ms, DELETE, PATCH, session sandboxes and reconnecting.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Server, TOKEN, now_ms};
use serde_json::{Value, json};

fn http() -> reqwest::Client {
    reqwest::Client::new()
}

#[tokio::test]
async fn timed_sandbox_stops_at_stop_time() {
    let server = Server::start().await;
    let (client, id) = server
        .create(json!({ "stop_at_ms": now_ms() + 1500 }))
        .await;
    let (second, _) = server.connect(&id).await.unwrap();
    client
        .ok(
            "spawn",
            json!({ "command": "sleep", "args": ["300"], "stdout": "null", "stderr": "null" }),
        )
        .await;
    let workspace = server.state.join(&id);
    assert!(workspace.exists());

    assert_eq!(client.closed().await, 1000);
    assert_eq!(second.closed().await, 1000);
    let (status, body) = server
        .connect(&id)
        .await
        .err()
        .expect("connect after expiry fails");
    assert_eq!(status, 404);
    assert!(body.contains("SANDBOX_NOT_FOUND"), "{body}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(!workspace.exists(), "sandbox files were not removed");
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/pids/deno-sandbox-local/{id}")).exists()
    );
}

#[tokio::test]
async fn delete_stops_sandbox_at_once() {
    let server = Server::start().await;
    let (client, id) = server
        .create(json!({ "stop_at_ms": now_ms() + 60_000 }))
        .await;
    let response = http()
        .delete(server.http(&format!("/api/v3/sandbox/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-deno-trace-id"));
    assert_eq!(client.closed().await, 1000);

    let again = http()
        .delete(server.http(&format!("/api/v3/sandboxes/{id}")))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    let body: Value = again.json().await.unwrap();
    assert_eq!(body["code"], "SANDBOX_NOT_FOUND");
    assert!(body["message"].as_str().unwrap().contains(&id));
}

#[tokio::test]
async fn patch_clamps_extension_to_thirty_minutes() {
    let server = Server::start().await;
    let (_client, id) = server
        .create(json!({ "stop_at_ms": now_ms() + 60_000 }))
        .await;
    let patch = |stop_at_ms: i64| {
        http()
            .patch(server.http(&format!("/api/v3/sandbox/{id}")))
            .bearer_auth(TOKEN)
            .json(&json!({ "stop_at_ms": stop_at_ms }))
            .send()
    };

    let requested = now_ms() + 2 * 3600 * 1000;
    let granted: Value = patch(requested).await.unwrap().json().await.unwrap();
    let granted = granted["stop_at_ms"].as_i64().unwrap();
    let limit = now_ms() + 30 * 60 * 1000;
    assert!(
        granted <= limit && granted > limit - 5_000,
        "granted {granted}, limit {limit}"
    );

    let shorter = now_ms() + 120_000;
    let unchanged: Value = patch(shorter).await.unwrap().json().await.unwrap();
    assert_eq!(
        unchanged["stop_at_ms"].as_i64().unwrap(),
        granted,
        "a shorter request keeps the later stop time"
    );
}

#[tokio::test]
async fn session_sandbox_dies_with_creator() {
    let server = Server::start().await;
    let (creator, id) = server.create(json!({})).await;
    let (second, _) = server.connect(&id).await.unwrap();
    second.sh("echo still here").await;
    let spawned = creator
        .ok(
            "spawn",
            json!({ "command": "sleep", "args": ["300"], "stdout": "piped", "stderr": "null" }),
        )
        .await;
    // A request still pending on the creator must not keep the sandbox alive.
    let wait = json!({ "jsonrpc": "2.0", "id": 999, "method": "processWait", "params": { "pid": spawned["pid"] } });
    creator.send_text(&wait.to_string());

    creator.close();
    assert_eq!(second.closed().await, 1000);
    assert_eq!(server.connect(&id).await.err().unwrap().0, 404);
}

#[tokio::test]
async fn timed_sandbox_keeps_background_processes() {
    let server = Server::start().await;
    let (first, id) = server
        .create(json!({ "stop_at_ms": now_ms() + 60_000 }))
        .await;
    let spawned = first
        .ok("spawn", json!({ "command": "bash", "args": ["-c", "sleep 300"], "stdout": "null", "stderr": "null" }))
        .await;
    first.sh("nohup sleep 301 >/dev/null 2>&1 &").await;
    first.close();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let (second, _) = server.connect(&id).await.unwrap();
    let running = second
        .sh("ps -eo args= | grep -c '^sleep 30[01]$'")
        .await
        .stdout;
    assert_eq!(running, "2\n");
    second
        .ok("processKill", json!({ "pid": spawned["pid"] }))
        .await;
    let status = second
        .ok("processWait", json!({ "pid": spawned["pid"] }))
        .await;
    assert_eq!(
        status,
        json!({ "success": false, "code": 143, "signal": "SIGTERM", "oom": null })
    );
}

#[tokio::test]
async fn list_filters_by_label_and_token() {
    let server = Server::start().await;
    let (_a, a) = server.create(json!({ "labels": { "team": "red" } })).await;
    let (_b, _) = server.create(json!({ "labels": { "team": "blue" } })).await;
    let (_c, c) = server
        .open(
            "/api/v3/sandboxes/create",
            Some(json!({ "labels": { "team": "red" } })),
            common::OTHER_TOKEN,
        )
        .await
        .unwrap();

    let rows: Value = http()
        .get(server.http("/api/v2/sandboxes?labels%5Bteam%5D=red"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["id"], a.as_str());
    assert_eq!(rows[0]["status"], "running");
    assert_eq!(rows[0]["region"], "ord");
    assert_eq!(rows[0]["labels"], json!({ "team": "red" }));
    assert!(rows[0]["stoppedAt"].is_null());
    assert!(rows.iter().all(|row| row["id"] != c.as_str()));
}
