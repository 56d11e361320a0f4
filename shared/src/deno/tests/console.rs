//! Delete, extend and list against a small in-process HTTP/1.1 server.

use std::net::SocketAddr;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::{SANDBOX_ID, TOKEN, client_for, test_timeouts, token};
use crate::deno::{DenoError, SandboxId};

/// One HTTP request as the server read it.
#[derive(Debug)]
struct SeenHttp {
    request_line: String,
    authorization: Option<String>,
    body: String,
}

/// Serves exactly one request and responds with `status`, `extra_headers` and `body`.
async fn serve_http(
    status: &'static str,
    extra_headers: &'static str,
    body: &'static str,
) -> (SocketAddr, JoinHandle<SeenHttp>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let handle = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut buffer = Vec::new();
        let header_end = loop {
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.expect("read");
            assert!(read > 0, "client closed before sending headers");
            buffer.extend_from_slice(&chunk[..read]);
            if let Some(position) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break position + 4;
            }
        };
        let head = String::from_utf8(buffer[..header_end].to_vec()).expect("utf-8 head");
        let header = |name: &str| {
            head.lines()
                .filter_map(|line| line.split_once(':'))
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.trim().to_owned())
        };
        let length: usize = header("content-length")
            .map(|v| v.parse().expect("content-length"))
            .unwrap_or(0);
        while buffer.len() < header_end + length {
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.expect("read body");
            buffer.extend_from_slice(&chunk[..read]);
        }
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{extra_headers}\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.expect("write");
        SeenHttp {
            request_line: head.lines().next().unwrap_or_default().to_owned(),
            authorization: header("authorization"),
            body: String::from_utf8(buffer[header_end..].to_vec()).expect("utf-8 body"),
        }
    });
    (addr, handle)
}

fn sandbox_id() -> SandboxId {
    SandboxId::parse(SANDBOX_ID).expect("id")
}

#[tokio::test]
async fn delete_sends_bearer_delete() {
    let (addr, seen) = serve_http("204 No Content", "", "").await;
    let client = client_for(addr, test_timeouts());

    client
        .delete_sandbox(&token(), &sandbox_id())
        .await
        .expect("delete");
    let seen = seen.await.expect("server");

    assert_eq!(
        seen.request_line,
        format!("DELETE /api/v3/sandbox/{SANDBOX_ID} HTTP/1.1")
    );
    assert_eq!(seen.authorization, Some(format!("Bearer {TOKEN}")));
}

#[tokio::test]
async fn delete_of_gone_sandbox_is_not_found() {
    let (addr, _seen) = serve_http(
        "404 Not Found",
        "x-deno-trace-id: trace-del\r\ncontent-type: application/json\r\n",
        r#"{"code":"SANDBOX_NOT_FOUND","message":"not found"}"#,
    )
    .await;
    let client = client_for(addr, test_timeouts());

    let error = client
        .delete_sandbox(&token(), &sandbox_id())
        .await
        .expect_err("404");

    assert_eq!(error.trace_id(), Some("trace-del"));
    match error {
        DenoError::SandboxNotFound { sandbox_id, .. } => assert_eq!(sandbox_id, SANDBOX_ID),
        other => panic!("expected SandboxNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn extend_returns_granted_stop_time() {
    let (addr, seen) = serve_http(
        "200 OK",
        "content-type: application/json\r\n",
        r#"{"stop_at_ms":1796412000000}"#,
    )
    .await;
    let client = client_for(addr, test_timeouts());

    let granted = client
        .extend_timeout(&token(), &sandbox_id(), 1_796_412_713_923)
        .await
        .expect("extend");
    let seen = seen.await.expect("server");

    assert_eq!(granted, 1_796_412_000_000);
    assert_eq!(
        seen.request_line,
        format!("PATCH /api/v3/sandbox/{SANDBOX_ID} HTTP/1.1")
    );
    let body: serde_json::Value = serde_json::from_str(&seen.body).expect("json body");
    assert_eq!(body, json!({"stop_at_ms": 1_796_412_713_923_u64}));
}

#[tokio::test]
async fn list_filters_by_labels() {
    let (addr, seen) = serve_http(
        "200 OK",
        "content-type: application/json\r\n",
        r#"[{"id":"sbx_ord_0123456789abcdefghjk","createdAt":"2026-04-01T10:00:00.000Z","stoppedAt":null,"region":"ord","status":"running","labels":{"session":"s-1"}}]"#,
    )
    .await;
    let client = client_for(addr, test_timeouts());
    let labels = vec![("session".to_owned(), "s-1".to_owned())];

    let sandboxes = client
        .list_sandboxes(&token(), &labels)
        .await
        .expect("list");
    let seen = seen.await.expect("server");

    assert_eq!(
        seen.request_line,
        "GET /api/v2/sandboxes?labels%5Bsession%5D=s-1 HTTP/1.1"
    );
    assert_eq!(sandboxes.len(), 1);
    assert_eq!(sandboxes[0].id, SANDBOX_ID);
    assert_eq!(sandboxes[0].status, "running");
    assert_eq!(sandboxes[0].stopped_at, None);
    assert_eq!(sandboxes[0].labels["session"], "s-1");
}

#[tokio::test]
async fn list_with_bad_token_is_invalid_token() {
    let (addr, _seen) = serve_http(
        "401 Unauthorized",
        "content-type: application/json\r\n",
        r#"{"code":"INVALID_TOKEN","message":"Invalid token"}"#,
    )
    .await;
    let client = client_for(addr, test_timeouts());

    let error = client.list_sandboxes(&token(), &[]).await.expect_err("401");

    assert!(
        matches!(error, DenoError::InvalidToken { status: 401, .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn list_with_wrong_shape_is_invalid_message() {
    let (addr, _seen) = serve_http(
        "200 OK",
        "content-type: application/json\r\n",
        r#"{"items":[]}"#,
    )
    .await;
    let client = client_for(addr, test_timeouts());

    let error = client
        .list_sandboxes(&token(), &[])
        .await
        .expect_err("object instead of array");

    assert!(matches!(error, DenoError::InvalidMessage(_)), "{error:?}");
}
