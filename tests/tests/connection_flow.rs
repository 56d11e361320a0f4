//! The connection and admin functions end to end: API Gateway v2 events through the real
//! handlers, DynamoDB Local, the KMS emulator and a Deno console stand-in on 127.0.0.1.

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use deno_sandbox_tools::tools::{self, Tool};
use deno_sandbox_tools::{capability, credentials};
use integration_tests::stack_app;
use serde_json::json;
use support::{
    Caller, app_with_console, delete_connection, enable, get_connection, put_token,
    request_from_fixture, status_and_body, test_token, unique_id,
};

#[tokio::test]
async fn fixtures_parse_as_requests() {
    let put = request_from_fixture("connection_put.json", Some("{}"), None);
    let admin = request_from_fixture("capability_get.json", None, Some("org-fixture"));

    assert_eq!(put.method(), http::Method::PUT);
    assert_eq!(put.uri().path(), "/connections/deno");
    assert_eq!(admin.method(), http::Method::GET);
    use lambda_http::RequestExt;
    assert_eq!(admin.path_parameters().first("org_id"), Some("org-fixture"));
}

#[tokio::test]
async fn connection_refusals() {
    let app = app_with_console(vec![test_token("accepted")]).await;
    let caller = Caller::new();
    assert_eq!(enable(&app, &caller.org_id).await.0, 200);

    let cases = [
        ("", 400, "invalid_argument", "arguments.token is empty"),
        ("   ", 400, "invalid_argument", "arguments.token is empty"),
        (
            "ddp_personal0000000000000000000000",
            400,
            "invalid_argument",
            "personal tokens (ddp_…) are not supported yet",
        ),
        ("ddo_x", 400, "invalid_argument", "malformed"),
        (
            "ddo_0000000000000000 00000",
            400,
            "invalid_argument",
            "malformed",
        ),
        (
            "xyz_00000000000000000000",
            400,
            "invalid_argument",
            "starts with ddo_",
        ),
        (
            "ddo_unknowntoken00000000000000000",
            422,
            "upstream_rejected",
            "token invalid or expired",
        ),
    ];
    for (token, status, code, message) in cases {
        let (actual_status, body) = put_token(&app, &caller, token).await;
        assert_eq!(actual_status, status, "{token:?}: {body}");
        assert_eq!(body["error"]["code"], code, "{token:?}");
        let text = body["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{token:?}: {text}");
    }
    let personal = put_token(&app, &caller, "ddp_personal0000000000000000000000")
        .await
        .1;
    assert!(
        personal["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("Deno Deploy console"),
        "{personal}"
    );

    let (_, shown) = get_connection(&app, &caller).await;
    assert_eq!(shown["result"]["status"], "not_connected");
}

#[tokio::test]
async fn connection_put_requires_enabled_org() {
    let token = test_token("disabledorg");
    let app = app_with_console(vec![token.clone()]).await;
    let caller = Caller::new();

    let (status, body) = put_token(&app, &caller, &token).await;

    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "capability_disabled");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("an administrator"),
        "{body}"
    );
}

#[tokio::test]
async fn connection_lifecycle_through_handlers() {
    let token = test_token("lifecycle");
    let second_token = test_token("replacement");
    let app = app_with_console(vec![token.clone(), second_token.clone()]).await;
    let caller = Caller::new();
    assert_eq!(enable(&app, &caller.org_id).await.0, 200);

    // Connect with surrounding whitespace, which is trimmed.
    let (status, body) = put_token(&app, &caller, &format!("  {token}\n")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["replaced"], false);
    let hint = format!("ddo_…{}", &token[token.len() - 4..]);
    assert_eq!(body["result"]["token_hint"], hint);

    // The resolved token is the trimmed one.
    let resolved = credentials::authorize_tool_call(&app, &caller.context())
        .await
        .expect("resolve");
    assert_eq!(resolved.expose(), token);

    // Replacing updates the same record.
    let (status, body) = put_token(&app, &caller, &second_token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["replaced"], true);
    let record = app
        .connections
        .get(&caller.user_id, "deno")
        .await
        .expect("get")
        .expect("record");
    assert_eq!(record.version, 2);
    let resolved = credentials::resolve_deno_token(&app, &caller.context())
        .await
        .expect("resolve replacement");
    assert_eq!(resolved.expose(), second_token);

    // GET shows the hint only.
    let (status, body) = get_connection(&app, &caller).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["status"], "connected");
    assert_eq!(
        body["result"]["token_hint"],
        format!("ddo_…{}", &second_token[second_token.len() - 4..])
    );

    // DELETE removes it, and tools then need a connection.
    let (status, body) = delete_connection(&app, &caller).await;
    assert_eq!(status, 200);
    assert_eq!(body["result"]["deleted"], true);
    let missing = credentials::authorize_tool_call(&app, &caller.context())
        .await
        .expect_err("deleted");
    assert_eq!(missing.code.http_status(), 428);
    assert_eq!(missing.to_body()["error"]["code"], "connection_required");
    assert_eq!(missing.to_body()["error"]["provider"], "deno");
}

#[tokio::test]
async fn connection_copied_to_other_user_fails() {
    // GIVEN two users of one organization, only the first connected
    let token = test_token("copied");
    let app = app_with_console(vec![token.clone()]).await;
    let owner = Caller::new();
    let thief = Caller {
        org_id: owner.org_id.clone(),
        user_id: unique_id("user"),
        session_id: unique_id("session"),
    };
    assert_eq!(enable(&app, &owner.org_id).await.0, 200);
    assert_eq!(put_token(&app, &owner, &token).await.0, 200);

    // WHEN the owner's sealed token is copied into the second user's record
    let mut item = app
        .dynamodb
        .get_item()
        .table_name(&app.config.connections_table)
        .key("user_id", AttributeValue::S(owner.user_id.clone()))
        .key("provider", AttributeValue::S("deno".into()))
        .send()
        .await
        .expect("raw get")
        .item
        .expect("item");
    item.insert("user_id".into(), AttributeValue::S(thief.user_id.clone()));
    app.dynamodb
        .put_item()
        .table_name(&app.config.connections_table)
        .set_item(Some(item))
        .send()
        .await
        .expect("raw put");
    let error = credentials::resolve_deno_token(&app, &thief.context())
        .await
        .expect_err("copied envelope");

    // THEN it does not open for the second user
    assert_eq!(error.code.as_str(), "internal");
    assert!(
        error.message.contains("could not be decrypted"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn admin_switch_gates_tool_calls() {
    let app = stack_app().await;
    let caller = Caller::new();
    // A well-formed id, so the request passes argument validation and reaches the switch.
    let tool_body = caller.body(Some(
        json!({ "sandbox_id": "sbx_ord_0000000000000000000a", "command": "true" }),
    ));

    // Never enabled: tools are refused.
    let rejected = tools::handle_http(
        &app,
        Tool::Exec,
        lambda_http::Request::new(lambda_http::Body::Text(tool_body.clone())),
    )
    .await;
    let (status, body) = status_and_body(&rejected);
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "capability_disabled");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("an administrator of the organization must enable"),
        "{body}"
    );

    // Enabled, with who and when recorded.
    let (status, body) = enable(&app, &caller.org_id).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["result"]["enabled"], true);
    assert_eq!(body["result"]["updated_by"], "admin-1");
    assert!(body["result"]["updated_at"].is_string());
    let shown = status_and_body(
        &capability::handle_http(
            &app,
            request_from_fixture("capability_get.json", None, Some(&caller.org_id)),
        )
        .await,
    );
    assert_eq!(shown.0, 200);
    assert_eq!(shown.1["result"]["enabled"], true);
    assert_eq!(shown.1["result"]["version"], 1);
    capability::require_enabled(&app, &caller.org_id)
        .await
        .expect("enabled");

    // Disabled again.
    let request = request_from_fixture(
        "capability_put.json",
        Some(r#"{"context":{"user_id":"admin-2"},"arguments":{"enabled":false}}"#),
        Some(&caller.org_id),
    );
    let (status, body) = status_and_body(&capability::handle_http(&app, request).await);
    assert_eq!(status, 200);
    assert_eq!(body["result"]["enabled"], false);
    assert_eq!(body["result"]["updated_by"], "admin-2");
    assert_eq!(body["result"]["previously_enabled"], true);
    let rejected = tools::handle_http(
        &app,
        Tool::Exec,
        lambda_http::Request::new(lambda_http::Body::Text(tool_body)),
    )
    .await;
    assert_eq!(rejected.status(), 403);
}
