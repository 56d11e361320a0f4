//! Proof that no token, data key or ciphertext reaches a log line or a response body across the
//! connection and admin flows. The functions' own log subscriber runs at TRACE for every crate
//! and writes to a buffer, which is then searched.
//!
//! This is the only test in its binary: a thread-local subscriber in a binary whose other tests
//! run on other threads can miss events whose callsites those threads registered first.

mod support;

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use deno_sandbox_tools::bootstrap;
use deno_sandbox_tools::crypto::{EnvelopeSealer, KmsKeyProvider};
use deno_sandbox_tools::{capability, credentials};
use serde_json::Value;
use support::{
    Caller, LogBuffer, RecordingKeyProvider, SeenKeys, app_with_console, delete_connection, enable,
    get_connection, put_token, request_from_fixture, status_and_body, test_token,
};
use tracing_subscriber::EnvFilter;

#[tokio::test]
async fn no_secret_in_logs_or_responses() {
    // GIVEN the functions' log subscriber at TRACE for every crate, writing to a buffer, and a
    // key provider recording the data keys it hands out
    let logs = LogBuffer::default();
    let subscriber = bootstrap::log_subscriber(EnvFilter::new("trace"), true, logs.clone());
    let _guard = tracing::subscriber::set_default(subscriber);

    let token = test_token("secretflow");
    let replacement = test_token("secretswap");
    let mut app = app_with_console(vec![token.clone(), replacement.clone()]).await;
    let seen = Arc::new(Mutex::new(SeenKeys::default()));
    let kms_provider = Arc::new(KmsKeyProvider::new(app.kms.clone(), &app.config.kms_key_id));
    app.sealer = EnvelopeSealer::new(Arc::new(RecordingKeyProvider::new(
        kms_provider,
        Arc::clone(&seen),
    )));
    let caller = Caller::new();
    let mut bodies = Vec::new();

    // WHEN the admin and connection flows run, failures included
    let (status, body) = put_token(&app, &caller, &token).await;
    assert_eq!(status, 403);
    bodies.push(body);
    let (status, body) = enable(&app, &caller.org_id).await;
    assert_eq!(status, 200);
    bodies.push(body);
    let (status, body) = put_token(&app, &caller, "ddo_unknowntoken00000000000000000").await;
    assert_eq!(status, 422);
    bodies.push(body);
    let (status, body) = put_token(&app, &caller, &format!("ddp_{}", &token[4..])).await;
    assert_eq!(status, 400);
    bodies.push(body);
    let (status, body) = put_token(&app, &caller, &format!(" {token} ")).await;
    assert_eq!(status, 200);
    bodies.push(body);
    let sealed = app
        .connections
        .get(&caller.user_id, "deno")
        .await
        .expect("get")
        .expect("record")
        .sealed_token;
    let (status, body) = get_connection(&app, &caller).await;
    assert_eq!(status, 200);
    bodies.push(body);
    let resolved = credentials::authorize_tool_call(&app, &caller.context())
        .await
        .expect("resolve");
    assert_eq!(resolved.expose(), token);
    drop(resolved);
    let (status, body) = put_token(&app, &caller, &replacement).await;
    assert_eq!(status, 200);
    bodies.push(body);
    let (status, body) = delete_connection(&app, &caller).await;
    assert_eq!(status, 200);
    bodies.push(body);
    let request = request_from_fixture(
        "capability_put.json",
        Some(r#"{"context":{"user_id":"admin-1"},"arguments":{"enabled":false}}"#),
        Some(&caller.org_id),
    );
    bodies.push(status_and_body(&capability::handle_http(&app, request).await).1);

    // THEN neither the logs nor any response body contain a token, data key or ciphertext
    let logs = logs.contents();
    let responses: String = bodies.iter().map(Value::to_string).collect();
    assert!(
        logs.contains("deno connection stored"),
        "the flow logged nothing"
    );
    assert!(
        logs.contains("beginning attempt #1"),
        "the SDK's own debug events were not captured"
    );
    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.data_keys.len() >= 3,
        "{} data keys seen",
        seen.data_keys.len()
    );
    let (wrapped, ciphertext) = support::envelope_parts(sealed.as_bytes());

    let mut secrets: Vec<(String, String)> = vec![
        ("token".into(), token.clone()),
        ("token body".into(), token[4..token.len() - 4].to_owned()),
        ("replacement token".into(), replacement.clone()),
        ("sealed envelope".into(), STANDARD.encode(sealed.as_bytes())),
        ("wrapped key".into(), STANDARD.encode(&wrapped)),
        ("ciphertext".into(), STANDARD.encode(&ciphertext)),
        (
            "ciphertext bytes".into(),
            format!("{:?}", &ciphertext[..8])
                .trim_matches(['[', ']'])
                .to_owned(),
        ),
    ];
    for (index, key) in seen.data_keys.iter().enumerate() {
        secrets.push((format!("data key {index}"), key.clone()));
    }
    for (index, key) in seen.wrapped_keys.iter().enumerate() {
        secrets.push((format!("wrapped key {index}"), key.clone()));
    }
    for (name, secret) in &secrets {
        assert!(!logs.contains(secret.as_str()), "{name} found in logs");
        assert!(
            !responses.contains(secret.as_str()),
            "{name} found in responses"
        );
    }
}
