//! Helpers shared by the store, envelope and flow tests: unique ids, API Gateway events built
//! from the fixtures, an in-process Deno console stand-in, a key provider that records the data
//! keys it hands out, and a log buffer.
#![allow(dead_code)]

pub mod calls;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use deno_sandbox_tools::bootstrap::App;
use deno_sandbox_tools::capability;
use deno_sandbox_tools::connections::{self, HttpTokenVerifier};
use deno_sandbox_tools::contract::CallContext;
use deno_sandbox_tools::crypto::{
    CryptoError, DataKey, EncryptionContext, GeneratedDataKey, KeyProvider, WrappedKey,
};
use futures_util::future::BoxFuture;
use integration_tests::stack_app;
use serde_json::Value;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Returns an id unique to this process and call, so reruns against the same DynamoDB Local
/// never see each other's items.
pub fn unique_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Reads an API Gateway v2 event fixture from `tests/fixtures/events`.
pub fn fixture(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/events")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read fixture {}: {err}", path.display()));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// Builds a request from fixture `name` with `body` (JSON text, or no body) and, when given, the
/// `org_id` path parameter.
pub fn request_from_fixture(
    name: &str,
    body: Option<&str>,
    org_id: Option<&str>,
) -> lambda_http::Request {
    let mut event = fixture(name);
    match body {
        Some(text) => event["body"] = Value::String(text.to_owned()),
        None => {
            event
                .as_object_mut()
                .expect("fixture is an object")
                .remove("body");
        }
    }
    if let Some(org_id) = org_id {
        event["pathParameters"]["org_id"] = Value::String(org_id.to_owned());
        let path = format!("/admin/orgs/{org_id}/capabilities/deno");
        event["rawPath"] = Value::String(path.clone());
        event["requestContext"]["http"]["path"] = Value::String(path);
    }
    lambda_http::request::from_str(&event.to_string()).expect("fixture is an API Gateway v2 event")
}

/// Returns the status and the JSON body of a response.
pub fn status_and_body(response: &lambda_http::Response<lambda_http::Body>) -> (u16, Value) {
    let text = match response.body() {
        lambda_http::Body::Text(text) => text.clone(),
        lambda_http::Body::Binary(bytes) => String::from_utf8_lossy(bytes).to_string(),
        lambda_http::Body::Empty => String::new(),
        _ => String::new(),
    };
    let body = serde_json::from_str(&text).expect("response body is JSON");
    (response.status().as_u16(), body)
}

/// Starts a stand-in for the Deno Deploy console API on 127.0.0.1: `GET /api/v2/sandboxes`
/// returns 200 `[]` for the accepted tokens and 401 `INVALID_TOKEN` for any other, like Deno.
/// Returns its origin.
pub async fn spawn_console(accepted: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind console");
    let address = listener.local_addr().expect("console address");
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 16384];
            let mut length = 0;
            while !buffer[..length].windows(4).any(|w| w == b"\r\n\r\n") {
                match socket.read(&mut buffer[length..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(read) => length += read,
                }
            }
            let head = String::from_utf8_lossy(&buffer[..length]).to_string();
            let presented = head
                .lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                .and_then(|(_, value)| value.trim().strip_prefix("Bearer ").map(str::to_owned));
            let on_list_path = head.starts_with("GET /api/v2/sandboxes ");
            let (status, body) = match presented {
                Some(token) if on_list_path && accepted.contains(&token) => ("200 OK", "[]"),
                _ => (
                    "401 Unauthorized",
                    r#"{"code":"INVALID_TOKEN","message":"The provided token is invalid or expired."}"#,
                ),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{address}")
}

/// Key material a [`RecordingKeyProvider`] saw, base64-encoded.
#[derive(Debug, Default, Clone)]
pub struct SeenKeys {
    /// Plaintext data keys, generated or decrypted.
    pub data_keys: Vec<String>,
    /// Wrapped data keys.
    pub wrapped_keys: Vec<String>,
}

/// Wraps a key provider and records every data key passing through it, so a test can search
/// logs and responses for them.
#[derive(Debug)]
pub struct RecordingKeyProvider {
    inner: Arc<dyn KeyProvider>,
    seen: Arc<Mutex<SeenKeys>>,
}

impl RecordingKeyProvider {
    /// Wraps `inner`; `seen` collects the keys.
    pub fn new(inner: Arc<dyn KeyProvider>, seen: Arc<Mutex<SeenKeys>>) -> Self {
        Self { inner, seen }
    }
}

impl KeyProvider for RecordingKeyProvider {
    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedDataKey, CryptoError>> {
        Box::pin(async move {
            let generated = self.inner.generate_data_key(context).await?;
            let mut seen = self.seen.lock().expect("lock");
            seen.data_keys
                .push(STANDARD.encode(generated.plaintext.expose()));
            seen.wrapped_keys
                .push(STANDARD.encode(generated.wrapped.as_bytes()));
            Ok(generated)
        })
    }

    fn decrypt_data_key<'a>(
        &'a self,
        key_id: &'a str,
        wrapped: &'a WrappedKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, CryptoError>> {
        Box::pin(async move {
            let key = self
                .inner
                .decrypt_data_key(key_id, wrapped, context)
                .await?;
            self.seen
                .lock()
                .expect("lock")
                .data_keys
                .push(STANDARD.encode(key.expose()));
            Ok(key)
        })
    }
}

/// A log sink for `tracing_subscriber` that keeps everything written to it.
#[derive(Debug, Clone, Default)]
pub struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl LogBuffer {
    /// Returns everything logged so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).to_string()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
    type Writer = LogBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// Splits a version 1 envelope into its wrapped key and its ciphertext (tag included), following
/// the documented layout: version, algorithm, key id length and key id, wrapped key length and
/// wrapped key, 12-byte nonce, ciphertext.
pub fn envelope_parts(bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let key_id_length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let wrapped_start = 4 + key_id_length + 2;
    let wrapped_length = usize::from(u16::from_be_bytes([
        bytes[wrapped_start - 2],
        bytes[wrapped_start - 1],
    ]));
    let wrapped = bytes[wrapped_start..wrapped_start + wrapped_length].to_vec();
    let ciphertext = bytes[wrapped_start + wrapped_length + 12..].to_vec();
    (wrapped, ciphertext)
}

/// Rewrites the key id of a version 1 envelope, keeping every other field.
pub fn with_key_id(bytes: &[u8], key_id: &str) -> Vec<u8> {
    let key_id_length = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let mut rewritten = bytes[..2].to_vec();
    rewritten.extend_from_slice(&(key_id.len() as u16).to_be_bytes());
    rewritten.extend_from_slice(key_id.as_bytes());
    rewritten.extend_from_slice(&bytes[4 + key_id_length..]);
    rewritten
}

/// Ids of one test's organization, user and session.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Organization id.
    pub org_id: String,
    /// User id.
    pub user_id: String,
    /// Session id.
    pub session_id: String,
}

impl Caller {
    /// Creates fresh ids.
    pub fn new() -> Self {
        Self {
            org_id: unique_id("org"),
            user_id: unique_id("user"),
            session_id: unique_id("session"),
        }
    }

    /// Builds a request body with this caller's context and `arguments`.
    pub fn body(&self, arguments: Option<Value>) -> String {
        let mut body = json!({
            "context": {
                "org_id": self.org_id,
                "user_id": self.user_id,
                "session_id": self.session_id,
            }
        });
        if let Some(arguments) = arguments {
            body["arguments"] = arguments;
        }
        body.to_string()
    }

    /// Returns the call context of a tool call by this caller.
    pub fn context(&self) -> CallContext {
        CallContext {
            org_id: self.org_id.clone(),
            user_id: self.user_id.clone(),
            session_id: self.session_id.clone(),
            tool_call_id: Some("call-1".into()),
        }
    }
}

/// Returns a fresh organization token for the console stand-in.
pub fn test_token(label: &str) -> String {
    // Only letters and digits after ddo_, as organization tokens have.
    format!("ddo_{label}{}", unique_id("").replace('-', ""))
}

/// Builds the stack's app with its token verifier pointed at a console stand-in that accepts
/// `accepted`.
pub async fn app_with_console(accepted: Vec<String>) -> App {
    let mut app = stack_app().await;
    let console = spawn_console(accepted).await;
    app.token_verifier = Arc::new(HttpTokenVerifier::new(&console).expect("verifier"));
    app
}

/// Enables the capability for `org_id` through the admin handler.
pub async fn enable(app: &App, org_id: &str) -> (u16, Value) {
    let request = request_from_fixture(
        "capability_put.json",
        Some(r#"{"context":{"user_id":"admin-1"},"arguments":{"enabled":true}}"#),
        Some(org_id),
    );
    status_and_body(&capability::handle_http(app, request).await)
}

/// Connects `token` through the connection handler.
pub async fn put_token(app: &App, caller: &Caller, token: &str) -> (u16, Value) {
    let request = request_from_fixture(
        "connection_put.json",
        Some(&caller.body(Some(json!({ "token": token })))),
        None,
    );
    status_and_body(&connections::handle_http(app, request).await)
}

/// Shows the connection through the connection handler.
pub async fn get_connection(app: &App, caller: &Caller) -> (u16, Value) {
    let request = request_from_fixture("connection_get.json", Some(&caller.body(None)), None);
    status_and_body(&connections::handle_http(app, request).await)
}

/// Removes the connection through the connection handler.
pub async fn delete_connection(app: &App, caller: &Caller) -> (u16, Value) {
    let request = request_from_fixture("connection_delete.json", Some(&caller.body(None)), None);
    status_and_body(&connections::handle_http(app, request).await)
}
