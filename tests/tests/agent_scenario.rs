//! The tool functions end to end: API Gateway v2 events through the real handlers, against
//! DynamoDB Local, the KMS emulator and the local Deno sandbox server.

mod support;

use std::time::Instant;

use deno_sandbox_tools::bootstrap::App;
use deno_sandbox_tools::tools::{self, Tool};
use integration_tests::{stack_app, stack_env};
use serde_json::{Value, json};
use support::{Caller, enable, put_token, request_from_fixture, status_and_body, unique_id};

/// Calls `tool` through its HTTP handler, as API Gateway would.
async fn call(app: &App, tool: Tool, caller: &Caller, arguments: Value) -> (u16, Value) {
    call_with_id(app, tool, caller, None, arguments).await
}

async fn call_with_id(
    app: &App,
    tool: Tool,
    caller: &Caller,
    tool_call_id: Option<&str>,
    arguments: Value,
) -> (u16, Value) {
    let body = json!({
        "context": {
            "org_id": caller.org_id,
            "user_id": caller.user_id,
            "session_id": caller.session_id,
            "tool_call_id": tool_call_id,
        },
        "arguments": arguments,
    });
    let mut request =
        request_from_fixture("deno_list_sandboxes.json", Some(&body.to_string()), None);
    *request.uri_mut() = format!("/tools/{}", tool.name())
        .parse()
        .expect("tool path");
    status_and_body(&tools::handle_http(app, tool, request).await)
}

/// Connects the local server's token and enables the capability for `caller`.
async fn connected(app: &App, caller: &Caller) {
    let token = stack_env()
        .get("LOCAL_DENO_TOKEN")
        .cloned()
        .expect("stack started with --sandbox-server");
    assert_eq!(enable(app, &caller.org_id).await.0, 200);
    let (status, body) = put_token(app, caller, &token).await;
    assert_eq!(status, 200, "{body}");
}

async fn create(app: &App, caller: &Caller, arguments: Value) -> String {
    let (status, body) = call(app, Tool::CreateSandbox, caller, arguments).await;
    assert_eq!(status, 200, "{body}");
    body["result"]["sandbox_id"]
        .as_str()
        .expect("sandbox_id")
        .to_owned()
}

async fn exec(app: &App, caller: &Caller, sandbox_id: &str, command: &str) -> Value {
    let (status, body) = call(
        app,
        Tool::Exec,
        caller,
        json!({"sandbox_id": sandbox_id, "command": command}),
    )
    .await;
    assert_eq!(status, 200, "{command}: {body}");
    body["result"].clone()
}

#[tokio::test]
async fn agent_session_end_to_end() {
    // GIVEN a connected user in an enabled organization
    let app = stack_app().await;
    let caller = Caller::new();
    connected(&app, &caller).await;

    // WHEN the agent creates a sandbox, writes a script, runs it and reads its output file
    let sandbox_id = create(&app, &caller, json!({"title": "scenario", "timeout": "5m"})).await;
    let script =
        "#!/bin/bash\nset -e\necho $(( $(seq 1 5 | paste -sd+) )) > result.txt\necho done\n";
    let (status, written) = call(
        &app,
        Tool::WriteFile,
        &caller,
        json!({"sandbox_id": sandbox_id, "path": "jobs/report.sh", "content": script}),
    )
    .await;
    assert_eq!(status, 200, "{written}");
    assert_eq!(written["result"]["bytes_written"], script.len());
    assert_eq!(written["result"]["path"], "/home/app/jobs/report.sh");

    let ran = exec(
        &app,
        &caller,
        &sandbox_id,
        "cd jobs && bash report.sh && cat result.txt && pwd",
    )
    .await;
    assert_eq!(ran["exit_code"], 0, "{ran}");
    assert_eq!(ran["stdout"], "done\n15\n/home/app/jobs\n");
    assert_eq!(ran["timed_out"], false);

    let (status, read) = call(
        &app,
        Tool::ReadFile,
        &caller,
        json!({"sandbox_id": sandbox_id, "path": "jobs/result.txt"}),
    )
    .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["result"]["content"], "15\n");
    assert_eq!(read["result"]["size"], 3);
    assert_eq!(read["result"]["truncated"], false);

    let failing = exec(&app, &caller, &sandbox_id, "ls /no/such/dir").await;
    assert_eq!(failing["exit_code"], 2);
    assert!(
        failing["stderr"]
            .as_str()
            .unwrap_or_default()
            .contains("No such file or directory")
    );

    // THEN list shows it running, extend moves its stop time, delete ends it
    let (status, listed) = call(&app, Tool::ListSandboxes, &caller, json!({})).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["result"]["count"], 1);
    assert_eq!(listed["result"]["sandboxes"][0]["status"], "running");
    assert_eq!(listed["result"]["sandboxes"][0]["title"], "scenario");

    let (status, extended) = call(
        &app,
        Tool::ManageSandbox,
        &caller,
        json!({"sandbox_id": sandbox_id, "action": "extend", "duration": "20m"}),
    )
    .await;
    assert_eq!(status, 200, "{extended}");
    let remaining = extended["result"]["expires_in_seconds"]
        .as_i64()
        .unwrap_or_default();
    assert!((1190..=1200).contains(&remaining), "{extended}");
    // The local server grants exactly the requested stop time, so no shortfall note.
    assert!(extended["result"].get("note").is_none(), "{extended}");

    let (status, deleted) = call(
        &app,
        Tool::ManageSandbox,
        &caller,
        json!({"sandbox_id": sandbox_id, "action": "delete"}),
    )
    .await;
    assert_eq!(status, 200, "{deleted}");
    assert_eq!(deleted["result"]["outcome"], "deleted");

    let (_, again) = call(
        &app,
        Tool::ManageSandbox,
        &caller,
        json!({"sandbox_id": sandbox_id, "action": "delete"}),
    )
    .await;
    assert_eq!(again["result"]["outcome"], "already_gone", "{again}");

    let (_, listed) = call(&app, Tool::ListSandboxes, &caller, json!({"refresh": true})).await;
    assert_eq!(
        listed["result"]["sandboxes"][0]["status"], "deleted",
        "{listed}"
    );

    let (status, gone) = exec_status(&app, &caller, &sandbox_id).await;
    assert_eq!(status, 404);
    assert!(
        gone["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("was deleted"),
        "{gone}"
    );
}

async fn exec_status(app: &App, caller: &Caller, sandbox_id: &str) -> (u16, Value) {
    call(
        app,
        Tool::Exec,
        caller,
        json!({"sandbox_id": sandbox_id, "command": "true"}),
    )
    .await
}

#[tokio::test]
async fn create_is_idempotent_per_tool_call() {
    let app = stack_app().await;
    let caller = Caller::new();
    connected(&app, &caller).await;
    let call_id = unique_id("call");

    let (_, first) = call_with_id(
        &app,
        Tool::CreateSandbox,
        &caller,
        Some(&call_id),
        json!({"timeout": "2m"}),
    )
    .await;
    let (_, second) = call_with_id(
        &app,
        Tool::CreateSandbox,
        &caller,
        Some(&call_id),
        json!({"timeout": "2m"}),
    )
    .await;

    assert_eq!(
        first["result"]["sandbox_id"], second["result"]["sandbox_id"],
        "{first} {second}"
    );
    assert_eq!(second["result"]["reused"], true);
    let (_, listed) = call(&app, Tool::ListSandboxes, &caller, json!({})).await;
    assert_eq!(listed["result"]["count"], 1);
}

#[tokio::test]
async fn other_sessions_and_users_get_not_found() {
    let app = stack_app().await;
    let owner = Caller::new();
    connected(&app, &owner).await;
    let sandbox_id = create(&app, &owner, json!({"timeout": "2m"})).await;

    // Another session of the same user and org.
    let other_session = Caller {
        session_id: unique_id("session"),
        ..owner.clone()
    };
    // Another user of the same org, with a connection of their own.
    let other_user = Caller {
        user_id: unique_id("user"),
        session_id: unique_id("session"),
        ..owner.clone()
    };
    connected(&app, &other_user).await;
    let invented = "sbx_ord_0000000000000000000a";

    for (caller, id) in [
        (&other_session, sandbox_id.as_str()),
        (&other_user, sandbox_id.as_str()),
        (&owner, invented),
    ] {
        for (tool, arguments) in [
            (Tool::Exec, json!({"sandbox_id": id, "command": "true"})),
            (Tool::ReadFile, json!({"sandbox_id": id, "path": "x"})),
            (
                Tool::WriteFile,
                json!({"sandbox_id": id, "path": "x", "content": "y"}),
            ),
            (
                Tool::ManageSandbox,
                json!({"sandbox_id": id, "action": "delete"}),
            ),
        ] {
            let (status, body) = call(&app, tool, caller, arguments).await;
            assert_eq!(status, 404, "{} {id}: {body}", tool.name());
            assert_eq!(body["error"]["code"], "sandbox_not_found");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert_eq!(
                message,
                format!(
                    "sandbox {id} not found in this session; use deno_list_sandboxes to see this session's \
                 sandboxes or create one with deno_create_sandbox"
                )
            );
        }
    }

    // The owner's sandbox survived the attempts.
    let ran = exec(&app, &owner, &sandbox_id, "echo alive").await;
    assert_eq!(ran["stdout"], "alive\n");
}

#[tokio::test]
async fn revoked_token_requires_reconnect() {
    let app = stack_app().await;
    let caller = Caller::new();
    connected(&app, &caller).await;
    let sandbox_id = create(&app, &caller, json!({"timeout": "2m"})).await;

    // The user removes the connection: the next call returns connection_required so the platform connects again.
    let request = request_from_fixture("connection_delete.json", Some(&caller.body(None)), None);
    let (status, _) =
        status_and_body(&deno_sandbox_tools::connections::handle_http(&app, request).await);
    assert_eq!(status, 200);

    let (status, body) = exec_status(&app, &caller, &sandbox_id).await;
    assert_eq!(status, 428, "{body}");
    assert_eq!(body["error"]["code"], "connection_required");
    assert_eq!(body["error"]["provider"], "deno");
}

#[tokio::test]
async fn expired_sandbox_reports_expiry() {
    let app = stack_app().await;
    let caller = Caller::new();
    connected(&app, &caller).await;
    let sandbox_id = create(&app, &caller, json!({"timeout": "2s"})).await;

    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let (status, body) = exec_status(&app, &caller, &sandbox_id).await;

    assert_eq!(status, 404, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("expired at"), "{message}");
    assert!(message.contains("deno_create_sandbox"), "{message}");
    let (_, listed) = call(&app, Tool::ListSandboxes, &caller, json!({})).await;
    assert_eq!(listed["result"]["sandboxes"][0]["status"], "expired");
}

#[tokio::test]
async fn deleted_underneath_reports_not_found() {
    let app = stack_app().await;
    let caller = Caller::new();
    connected(&app, &caller).await;
    let sandbox_id = create(&app, &caller, json!({"timeout": "2m"})).await;

    // Someone deletes the sandbox at Deno directly; our record is still active.
    let token = deno_sandbox_tools::secret::DenoToken::new(stack_env()["LOCAL_DENO_TOKEN"].clone());
    let id = deno_sandbox_tools::deno::SandboxId::parse(&sandbox_id).expect("id");
    app.deno
        .delete_sandbox(&token, &id)
        .await
        .expect("delete at Deno");

    let (status, body) = exec_status(&app, &caller, &sandbox_id).await;
    assert_eq!(status, 404, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no longer exists at Deno"), "{message}");
    let (_, listed) = call(&app, Tool::ListSandboxes, &caller, json!({})).await;
    assert_eq!(listed["result"]["count"], 1, "no silent re-creation");
}

#[tokio::test]
async fn concurrent_exec_on_one_sandbox() {
    let app = stack_app().await;
    let caller = Caller::new();
    connected(&app, &caller).await;
    let sandbox_id = create(&app, &caller, json!({"timeout": "2m"})).await;

    let started = Instant::now();
    let (first, second) = tokio::join!(
        exec(&app, &caller, &sandbox_id, "sleep 1; echo first"),
        exec(&app, &caller, &sandbox_id, "sleep 1; echo second"),
    );

    assert_eq!(first["stdout"], "first\n");
    assert_eq!(second["stdout"], "second\n");
    assert!(
        started.elapsed().as_secs_f64() < 1.9,
        "ran one after the other: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn disabled_capability_is_refused() {
    let app = stack_app().await;
    let caller = Caller::new();

    let (status, body) = call(&app, Tool::CreateSandbox, &caller, json!({})).await;

    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "capability_disabled");
}

#[tokio::test]
async fn caller_mistakes_are_invalid_arguments() {
    let app = stack_app().await;
    let caller = Caller::new();
    connected(&app, &caller).await;
    let sandbox_id = create(&app, &caller, json!({"timeout": "2m"})).await;

    // A missing working directory is the caller's mistake, not an internal error.
    let (status, body) = call(
        &app,
        Tool::Exec,
        &caller,
        json!({"sandbox_id": sandbox_id, "command": "true", "cwd": "/no/such/dir"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("could not start the command"), "{message}");
    assert!(message.contains("cwd"), "{message}");

    // A FIFO has no content to read in windows.
    exec(&app, &caller, &sandbox_id, "mkfifo pipe").await;
    let (status, body) = call(
        &app,
        Tool::ReadFile,
        &caller,
        json!({"sandbox_id": sandbox_id, "path": "pipe"}),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("is not a regular file"), "{message}");

    // An oversized id is measured, not echoed.
    let huge = "x".repeat(100_000);
    let (status, body) = call(
        &app,
        Tool::Exec,
        &caller,
        json!({"sandbox_id": huge, "command": "true"}),
    )
    .await;
    assert_eq!(status, 400);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("sandbox_id is 100000 bytes long"),
        "{message}"
    );
    assert!(message.len() < 300, "{} bytes", message.len());

    // Extending by less than the time left changes nothing and the result notes it.
    let (status, body) = call(
        &app,
        Tool::ManageSandbox,
        &caller,
        json!({"sandbox_id": sandbox_id, "action": "extend", "duration": "30s"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let note = body["result"]["note"].as_str().unwrap_or_default();
    assert!(note.contains("did not change"), "{body}");
}
