//! Tool calls through the real HTTP handlers, built as API Gateway v2 events, for the tests that
//! drive a sandbox on the local sandbox server.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use deno_sandbox_tools::bootstrap::App;
use deno_sandbox_tools::tools::{self, Tool};
use integration_tests::stack_env;
use serde_json::{Value, json};

use super::{Caller, enable, fixture, put_token, status_and_body};

/// Builds the request body of a tool call by `caller`.
pub fn tool_body(caller: &Caller, arguments: &Value) -> String {
    json!({
        "context": {
            "org_id": caller.org_id,
            "user_id": caller.user_id,
            "session_id": caller.session_id,
        },
        "arguments": arguments,
    })
    .to_string()
}

/// Builds the API Gateway v2 event of `POST /tools/{tool}` with `body`, base64-encoded as API
/// Gateway sends binary bodies when `base64` is set.
pub fn tool_event(tool: Tool, body: &[u8], base64: bool) -> lambda_http::Request {
    let mut event = fixture("deno_list_sandboxes.json");
    let path = format!("/tools/{}", tool.name());
    event["rawPath"] = json!(path);
    event["requestContext"]["http"]["path"] = json!(path);
    event["routeKey"] = json!(format!("POST {path}"));
    if base64 {
        event["body"] = json!(STANDARD.encode(body));
        event["isBase64Encoded"] = json!(true);
    } else {
        event["body"] = json!(String::from_utf8(body.to_vec()).expect("text body"));
    }
    lambda_http::request::from_str(&event.to_string()).expect("an API Gateway v2 event")
}

/// Sends `event` to the handler of `tool`; returns the status, the body and the body's size
/// once embedded in the Lambda response payload (the body as a JSON string).
pub async fn send(app: &App, tool: Tool, event: lambda_http::Request) -> (u16, Value, usize) {
    let response = tools::handle_http(app, tool, event).await;
    let payload_size = match response.body() {
        lambda_http::Body::Text(text) => serde_json::to_string(text).expect("string").len(),
        lambda_http::Body::Binary(bytes) => STANDARD.encode(bytes).len(),
        _ => 0,
    };
    let (status, body) = status_and_body(&response);
    (status, body, payload_size)
}

/// Calls `tool` with `arguments`, as API Gateway would.
pub async fn call(app: &App, tool: Tool, caller: &Caller, arguments: Value) -> (u16, Value) {
    let body = tool_body(caller, &arguments);
    let (status, body, _) = send(app, tool, tool_event(tool, body.as_bytes(), false)).await;
    (status, body)
}

/// Calls `tool` and returns its result, failing the test on a non-200 status.
pub async fn call_ok(app: &App, tool: Tool, caller: &Caller, arguments: Value) -> Value {
    let (status, body) = call(app, tool, caller, arguments.clone()).await;
    assert_eq!(status, 200, "{} {arguments}: {body}", tool.name());
    body["result"].clone()
}

/// Runs `command` in `sandbox_id` with default options.
pub async fn exec(app: &App, caller: &Caller, sandbox_id: &str, command: &str) -> Value {
    call_ok(
        app,
        Tool::Exec,
        caller,
        json!({"sandbox_id": sandbox_id, "command": command}),
    )
    .await
}

/// Connects the local server's token and enables the capability for `caller`.
pub async fn connected(app: &App, caller: &Caller) {
    let token = stack_env()
        .get("LOCAL_DENO_TOKEN")
        .cloned()
        .expect("stack started with --sandbox-server");
    assert_eq!(enable(app, &caller.org_id).await.0, 200);
    let (status, body) = put_token(app, caller, &token).await;
    assert_eq!(status, 200, "{body}");
}

/// Creates a sandbox for a new connected caller; returns the caller and the sandbox id.
pub async fn sandbox(app: &App, lifetime: &str) -> (Caller, String) {
    let caller = Caller::new();
    connected(app, &caller).await;
    let result = call_ok(
        app,
        Tool::CreateSandbox,
        &caller,
        json!({"timeout": lifetime}),
    )
    .await;
    let sandbox_id = result["sandbox_id"]
        .as_str()
        .expect("sandbox_id")
        .to_owned();
    (caller, sandbox_id)
}
