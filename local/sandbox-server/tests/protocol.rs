//! Protocol behaviour: authentication, JSON-RPC errors, keepalive, close codes, env and files.

#![allow(clippy::unwrap_used)]

mod common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::Server;
use serde_json::{Value, json};

#[tokio::test]
async fn invalid_or_missing_token_gets_401() {
    let server = Server::start().await;
    for token in ["ddo_wrong", ""] {
        let (status, body) = server
            .open("/api/v3/sandboxes/create", Some(json!({})), token)
            .await
            .err()
            .expect("handshake rejected");
        assert_eq!(status, 401);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], "INVALID_TOKEN");
        assert!(body["message"].is_string());
    }
    let list = reqwest::Client::new()
        .get(server.http("/api/v2/sandboxes"))
        .bearer_auth("ddo_wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 401);
    assert!(list.headers().contains_key("x-deno-trace-id"));
}

#[tokio::test]
async fn unknown_sandbox_gets_404() {
    let server = Server::start().await;
    let (status, body) = server
        .connect("sbx_ord_0000000000000000000a")
        .await
        .err()
        .unwrap();
    assert_eq!(status, 404);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["code"], "SANDBOX_NOT_FOUND");
}

#[tokio::test]
async fn other_tokens_sandbox_is_not_found() {
    let server = Server::start().await;
    let (_client, id) = server.create(json!({})).await;
    let result = server
        .open(
            &format!("/api/v3/sandbox/{id}/connect"),
            None,
            common::OTHER_TOKEN,
        )
        .await;
    assert_eq!(result.err().unwrap().0, 404);
}

#[tokio::test]
async fn rpc_errors_follow_json_rpc() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;

    let unknown = client.call("noSuchMethod", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32601);
    assert_eq!(unknown["error"]["message"], "Method not found");

    let invalid = client.call("readTextFile", json!({})).await;
    assert_eq!(invalid["error"]["code"], -32602);
    assert_eq!(invalid["error"]["message"], "Invalid params");
    assert_eq!(invalid["error"]["data"]["constructorName"], "ZodError");
    let issues: Value =
        serde_json::from_str(invalid["error"]["data"]["message"].as_str().unwrap()).unwrap();
    assert_eq!(issues[0]["path"], json!(["path"]));

    let bad_spawn = client
        .call(
            "spawn",
            json!({ "command": "true", "stdout": "inherit", "stderr": "null" }),
        )
        .await;
    assert_eq!(bad_spawn["error"]["code"], -32602);

    let missing = client.err("processKill", json!({ "pid": 99999 })).await;
    assert_eq!(missing["constructorName"], "TypeError");
    assert_eq!(missing["code"], "ENOENT");

    let not_found = client
        .err(
            "spawn",
            json!({ "command": "no-such-program", "stdout": "null", "stderr": "null" }),
        )
        .await;
    assert_eq!(not_found["constructorName"], "NotFound");

    assert_eq!(
        client.ok("abort", json!({ "abortId": 12345 })).await,
        Value::Null
    );
}

#[tokio::test]
async fn text_ping_gets_pong() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    client.send_text("ping");
    assert_eq!(client.next_text().await, "pong");
}

#[tokio::test]
async fn bad_frames_close_with_protocol_codes() {
    let server = Server::start().await;
    let (client, id) = server
        .create(json!({ "stop_at_ms": common::now_ms() + 60_000 }))
        .await;
    client.send_text("{not json");
    assert_eq!(client.closed().await, 4000);

    let (client, _) = server.connect(&id).await.unwrap();
    client.send_text(r#"{"hello":"world"}"#);
    assert_eq!(client.closed().await, 4001);
}

#[tokio::test]
async fn process_output_exit_and_signals() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;

    let output = client.sh("echo out; echo err >&2; exit 3").await;
    assert_eq!(output.stdout, "out\n");
    assert_eq!(output.stderr, "err\n");
    assert_eq!(
        output.status,
        json!({ "success": false, "code": 3, "signal": null, "oom": null })
    );

    let spawned = client
        .ok(
            "spawn",
            json!({ "command": "sleep", "args": ["30"], "stdout": "null", "stderr": "null" }),
        )
        .await;
    assert!(spawned["stdoutStreamId"].is_null());
    client
        .ok(
            "processKill",
            json!({ "pid": spawned["pid"], "signal": "SIGINT" }),
        )
        .await;
    let status = client
        .ok("processWait", json!({ "pid": spawned["pid"] }))
        .await;
    assert_eq!(
        status,
        json!({ "success": false, "code": 130, "signal": "SIGINT", "oom": null })
    );
    // The status stays available, and a second kill reports the process as gone.
    assert_eq!(
        client
            .ok("processWait", json!({ "pid": spawned["pid"] }))
            .await,
        status
    );
    assert_eq!(
        client
            .err("processKill", json!({ "pid": spawned["pid"] }))
            .await["code"],
        "ENOENT"
    );
}

#[tokio::test]
async fn background_child_keeps_stream_open_but_not_wait() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    let started = std::time::Instant::now();
    let spawned = client
        .ok("spawn", json!({ "command": "bash", "args": ["-c", "(sleep 1.5; echo late) & echo early"], "stdout": "piped", "stderr": "null" }))
        .await;
    let status = client
        .ok("processWait", json!({ "pid": spawned["pid"] }))
        .await;
    assert_eq!(status["code"], 0);
    assert!(
        started.elapsed().as_millis() < 1200,
        "processWait waited for the background child"
    );
    let text = client
        .stream_text(spawned["stdoutStreamId"].as_u64().unwrap())
        .await;
    assert_eq!(text, "early\nlate\n");
    assert!(
        started.elapsed().as_millis() >= 1500,
        "the stream ended before the background child"
    );
}

#[tokio::test]
async fn stdin_stream_feeds_process() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    client.notify("$sandbox.stream.start", json!({ "streamId": 7 }));
    client.notify(
        "$sandbox.stream.enqueue",
        json!({ "streamId": 7, "data": BASE64.encode("early ") }),
    );
    let spawned = client
        .ok(
            "spawn",
            json!({ "command": "cat", "stdinStreamId": 7, "stdout": "piped", "stderr": "piped" }),
        )
        .await;
    client.notify(
        "$sandbox.stream.enqueue",
        json!({ "streamId": 7, "data": BASE64.encode("late") }),
    );
    client.notify("$sandbox.stream.end", json!({ "streamId": 7 }));
    let status = client
        .ok("processWait", json!({ "pid": spawned["pid"] }))
        .await;
    assert_eq!(status["code"], 0);
    assert_eq!(
        client
            .stream_text(spawned["stdoutStreamId"].as_u64().unwrap())
            .await,
        "early late"
    );
}

#[tokio::test]
async fn env_is_shared_across_connections() {
    let server = Server::start().await;
    let (first, id) = server.create(json!({})).await;
    let (second, _) = server.connect(&id).await.unwrap();
    first
        .ok("envSet", json!({ "key": "API_KEY", "value": "v1" }))
        .await;
    assert_eq!(second.ok("envGet", json!({ "key": "API_KEY" })).await, "v1");
    assert_eq!(second.sh("echo $API_KEY").await.stdout, "v1\n");
    let all = second.ok("envToObject", json!({})).await;
    assert_eq!(all["HOME"], "/home/app");
    assert_eq!(all["API_KEY"], "v1");
    second.ok("envDelete", json!({ "key": "API_KEY" })).await;
    assert_eq!(
        first.ok("envGet", json!({ "key": "API_KEY" })).await,
        Value::Null
    );

    let cleared = first
        .ok("spawn", json!({ "command": "/usr/bin/env", "clearEnv": true, "env": { "ONLY": "1" }, "stdout": "piped", "stderr": "null" }))
        .await;
    first
        .ok("processWait", json!({ "pid": cleared["pid"] }))
        .await;
    assert_eq!(
        first
            .stream_text(cleared["stdoutStreamId"].as_u64().unwrap())
            .await,
        "ONLY=1\n"
    );
}

#[tokio::test]
async fn file_methods_work_inside_workspace() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;

    client
        .ok(
            "mkdir",
            json!({ "path": "a/b", "options": { "recursive": true } }),
        )
        .await;
    client
        .ok(
            "writeTextFile",
            json!({ "path": "a/b/c.txt", "content": "hello" }),
        )
        .await;
    client
        .ok(
            "writeTextFile",
            json!({ "path": "a/b/c.txt", "content": " world", "options": { "append": true } }),
        )
        .await;
    assert_eq!(
        client
            .ok("readTextFile", json!({ "path": "/home/app/a/b/c.txt" }))
            .await,
        "hello world"
    );
    let exists = client
        .err(
            "writeFile",
            json!({ "path": "a/b/c.txt", "content": "", "options": { "createNew": true } }),
        )
        .await;
    assert_eq!(exists["constructorName"], "AlreadyExists");

    let info = client.ok("stat", json!({ "path": "a/b/c.txt" })).await;
    assert_eq!(info.as_object().unwrap().len(), 21);
    assert_eq!(info["size"], 11);
    assert_eq!(info["uid"], 1000);
    assert!(info["mtime"].as_str().unwrap().ends_with('Z'));

    let entries = client.ok("readDir", json!({ "path": "a" })).await;
    assert_eq!(
        entries,
        json!([{ "name": "b", "isFile": false, "isDirectory": true, "isSymlink": false }])
    );
    client
        .ok(
            "rename",
            json!({ "oldPath": "a/b/c.txt", "newPath": "/tmp/moved.txt" }),
        )
        .await;
    assert_eq!(
        client
            .ok("realPath", json!({ "path": "../../tmp/moved.txt" }))
            .await,
        "/tmp/moved.txt"
    );
    let temp = client
        .ok("makeTempDir", json!({ "options": { "prefix": "x-" } }))
        .await;
    assert!(temp.as_str().unwrap().starts_with("/tmp/x-"));

    let not_empty = client.err("remove", json!({ "path": "a" })).await;
    assert_eq!(not_empty["code"], "ENOTEMPTY");
    client
        .ok(
            "remove",
            json!({ "path": "a", "options": { "recursive": true } }),
        )
        .await;
    let removed = client.err("lstat", json!({ "path": "a" })).await;
    assert_eq!(removed["constructorName"], "NotFound");
    assert_eq!(removed["code"], "ENOENT");
}

#[tokio::test]
async fn paths_cannot_escape_to_host() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    client
        .sh("ln -s ../../../../../../etc/passwd escape; ln -s / root-link")
        .await;
    let passwd = client.ok("readTextFile", json!({ "path": "escape" })).await;
    assert!(
        passwd.as_str().unwrap().contains("app:x:1000:1000"),
        "{passwd}"
    );
    assert!(
        !passwd.as_str().unwrap().contains("/root:/bin/bash"),
        "host passwd leaked"
    );

    let host_file = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    for path in [
        format!("../../..{host_file}"),
        format!("root-link{host_file}"),
    ] {
        let error = client.err("readFile", json!({ "path": path })).await;
        assert_eq!(error["code"], "ENOENT", "{path}");
    }
    let denied = client
        .err(
            "writeTextFile",
            json!({ "path": "/etc/hosts", "content": "x" }),
        )
        .await;
    assert_eq!(denied["code"], "EROFS");
}

#[tokio::test]
async fn file_handles_read_write_seek() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    let handle = client
        .ok(
            "open",
            json!({ "path": "h.bin", "options": { "read": true, "write": true, "create": true } }),
        )
        .await["fileHandleId"]
        .clone();

    // GIVEN ten bytes written through the handle
    let written = client
        .ok(
            "fileWrite",
            json!({ "fileHandleId": handle, "data": BASE64.encode("0123456789") }),
        )
        .await;
    assert_eq!(written["bytesWritten"], 10);

    // WHEN seeking and reading, THEN reads follow the position and end with null data
    let position = client
        .ok(
            "fileSeek",
            json!({ "fileHandleId": handle, "offset": "4", "whence": 0 }),
        )
        .await;
    assert_eq!(position["position"], 4);
    let read = client
        .ok("fileRead", json!({ "fileHandleId": handle, "length": 3 }))
        .await;
    assert_eq!(read["data"], BASE64.encode("456"));
    client
        .ok(
            "fileSeek",
            json!({ "fileHandleId": handle, "offset": 0, "whence": 2 }),
        )
        .await;
    assert_eq!(
        client
            .ok("fileRead", json!({ "fileHandleId": handle, "length": 3 }))
            .await["data"],
        Value::Null
    );
    assert_eq!(
        client
            .ok("fileStat", json!({ "fileHandleId": handle }))
            .await["size"],
        10
    );

    // A closed handle is a bad resource.
    client
        .ok("fileClose", json!({ "fileHandleId": handle }))
        .await;
    let closed = client
        .err("fileRead", json!({ "fileHandleId": handle, "length": 1 }))
        .await;
    assert_eq!(closed["constructorName"], "BadResource");
}

#[tokio::test]
async fn write_file_from_content_stream() {
    let server = Server::start().await;
    let (client, _) = server.create(json!({})).await;
    client.notify("$sandbox.stream.start", json!({ "streamId": 1 }));
    let call = client.call(
        "writeFile",
        json!({ "path": "/tmp/streamed", "contentStreamId": 1 }),
    );
    let feed = async {
        client.notify(
            "$sandbox.stream.enqueue",
            json!({ "streamId": 1, "data": BASE64.encode([0u8, 1, 2]) }),
        );
        client.notify(
            "$sandbox.stream.enqueue",
            json!({ "streamId": 1, "data": BASE64.encode([3u8]) }),
        );
        client.notify("$sandbox.stream.end", json!({ "streamId": 1 }));
    };
    let (response, ()) = tokio::join!(call, feed);
    assert_eq!(response["result"], json!({ "ok": null }));
    assert_eq!(
        client
            .ok("readFile", json!({ "path": "/tmp/streamed" }))
            .await,
        BASE64.encode([0u8, 1, 2, 3])
    );

    client.notify("$sandbox.stream.start", json!({ "streamId": 2 }));
    let pending = client.call(
        "writeTextFile",
        json!({ "path": "never", "contentStreamId": 2, "abortId": 5 }),
    );
    let abort = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        client.ok("abort", json!({ "abortId": 5 })).await
    };
    let (response, _) = tokio::join!(pending, abort);
    assert_eq!(response["result"]["error"]["name"], "AbortError");
}

#[tokio::test]
async fn stream_ids_unique_across_connections() {
    // The npm SDK keeps server-produced streams in one table per Node process.
    let server = Server::start().await;
    let (first, _) = server.create(json!({})).await;
    let (second, _) = server.create(json!({})).await;
    let spawn = json!({ "command": "true", "stdout": "piped", "stderr": "piped" });
    let a = first.ok("spawn", spawn.clone()).await;
    let b = second.ok("spawn", spawn).await;
    let mut ids: Vec<u64> = [&a, &b]
        .iter()
        .flat_map(|spawned| {
            [
                spawned["stdoutStreamId"].as_u64().unwrap(),
                spawned["stderrStreamId"].as_u64().unwrap(),
            ]
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 4);
}
