//! The SDK retry configuration of `App` against a scripted DynamoDB stand-in on 127.0.0.1:
//! transient failures are retried with backoff, and persistent throttling ends in a typed error
//! after the configured number of attempts.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use deno_sandbox_tools::bootstrap::{AWS_MAX_ATTEMPTS, App};
use deno_sandbox_tools::config::Config;
use deno_sandbox_tools::store::StoreError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const THROTTLED: (u16, &str) = (
    400,
    r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#,
);
const INTERNAL: (u16, &str) = (
    500,
    r#"{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError","message":"Internal server error"}"#,
);
const EMPTY_ITEM: (u16, &str) = (200, "{}");

/// Serves `script[n]` to the n-th request (the last entry once the script runs out) and counts
/// requests. Returns the origin and the counter.
async fn spawn_dynamodb(script: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let count = Arc::new(AtomicUsize::new(0));
    let served = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let script = script.clone();
            let served = Arc::clone(&served);
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    // Read the head, then exactly content-length body bytes.
                    let Some(head_end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => received.extend_from_slice(&chunk[..read]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&received[..head_end]).to_lowercase();
                    let body_length: usize = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|value| value.trim().parse().ok())
                        .unwrap_or(0);
                    let request_end = head_end + 4 + body_length;
                    while received.len() < request_end {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(read) => received.extend_from_slice(&chunk[..read]),
                        }
                    }
                    received.drain(..request_end);

                    let index = served.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = script[index.min(script.len() - 1)];
                    let response = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{address}"), count)
}

fn app_for(endpoint: &str) -> App {
    let config = Config::from_lookup(|name| {
        let value = match name {
            "CONNECTIONS_TABLE" => "connections",
            "SANDBOXES_TABLE" => "sandboxes",
            "CAPABILITIES_TABLE" => "capabilities",
            "KMS_KEY_ID" => "alias/unused",
            "DYNAMODB_ENDPOINT" | "KMS_ENDPOINT" => endpoint,
            _ => return None,
        };
        Some(value.to_owned())
    })
    .expect("config");
    let sdk_config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_kms::config::SharedCredentialsProvider::new(
            aws_sdk_kms::config::Credentials::new("test", "test", None, None, "retry-test"),
        ))
        .build();
    App::with_sdk_config(config, &sdk_config)
}

#[tokio::test]
async fn transient_errors_are_retried() {
    let (endpoint, requests) = spawn_dynamodb(vec![INTERNAL, INTERNAL, EMPTY_ITEM]).await;
    let app = app_for(&endpoint);

    let found = app.connections.get("user-retry", "deno").await;

    assert!(matches!(found, Ok(None)), "{found:?}");
    assert_eq!(requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn persistent_throttling_is_typed() {
    let (endpoint, requests) = spawn_dynamodb(vec![THROTTLED]).await;
    let app = app_for(&endpoint);

    let found = app.connections.get("user-throttled", "deno").await;

    assert!(
        matches!(found, Err(StoreError::Throttled { .. })),
        "{found:?}"
    );
    assert_eq!(requests.load(Ordering::SeqCst), AWS_MAX_ATTEMPTS as usize);
    let error = found.expect_err("throttled");
    assert!(error.is_retryable());
    let tool_error = deno_sandbox_tools::contract::ToolError::from(error);
    assert_eq!(tool_error.code.as_str(), "upstream_unavailable");
    assert!(tool_error.retryable);
}
