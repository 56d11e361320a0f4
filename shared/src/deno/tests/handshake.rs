//! Upgrade requests and refusals.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use tokio::net::TcpListener;

use super::{Answer, SANDBOX_ID, TOKEN, client_for, serve, test_timeouts, token};
use crate::deno::{DenoError, Region, SandboxConfig, SandboxId};

#[tokio::test]
async fn create_sends_path_token_and_config() {
    let (addr, seen) = serve(
        Answer::Accept {
            sandbox_id: Some(SANDBOX_ID),
        },
        |mut peer| async move {
            let _ = peer.next_frame().await;
        },
    )
    .await;
    let client = client_for(addr, test_timeouts());
    let config = SandboxConfig {
        labels: [("session".to_owned(), "s-1".to_owned())].into(),
        allow_net: Some(vec!["deno.land".to_owned()]),
        ..SandboxConfig::with_stop_at(1_796_412_713_923)
    };

    let (sandbox, id) = client
        .create_sandbox(&token(), Region::Ams, &config)
        .await
        .expect("create");
    sandbox.close().await;
    let seen = seen.await.expect("peer");

    assert_eq!(id.as_str(), SANDBOX_ID);
    assert_eq!(seen.path, "/api/v3/sandboxes/create");
    assert_eq!(
        seen.authorization.as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    let config_json = BASE64
        .decode(seen.config.expect("config header"))
        .expect("base64");
    let config_value: serde_json::Value = serde_json::from_slice(&config_json).expect("json");
    assert_eq!(
        config_value,
        json!({
            "stop_at_ms": 1_796_412_713_923_u64,
            "memory_mb": 1280,
            "labels": {"session": "s-1"},
            "volumes": [],
            "allow_net": ["deno.land"]
        })
    );
}

#[tokio::test]
async fn connect_uses_sandbox_path_without_config() {
    let (addr, seen) = serve(
        Answer::Accept {
            sandbox_id: Some(SANDBOX_ID),
        },
        |_peer| async {},
    )
    .await;
    let client = client_for(addr, test_timeouts());
    let id = SandboxId::parse(SANDBOX_ID).expect("id");

    let sandbox = client.connect(&token(), &id).await.expect("connect");
    let seen = seen.await.expect("peer");

    assert_eq!(sandbox.id().as_str(), SANDBOX_ID);
    assert_eq!(seen.path, format!("/api/v3/sandbox/{SANDBOX_ID}/connect"));
    assert_eq!(seen.config, None);
}

#[tokio::test]
async fn create_without_sandbox_id_header_fails() {
    let (addr, _seen) = serve(Answer::Accept { sandbox_id: None }, |_peer| async {}).await;
    let client = client_for(addr, test_timeouts());

    let error = client
        .create_sandbox(&token(), Region::Ord, &SandboxConfig::default())
        .await
        .expect_err("no id header");

    match error {
        DenoError::InvalidMessage(reason) => assert!(reason.contains("x-deno-sandbox-id")),
        other => panic!("expected InvalidMessage, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_token_keeps_trace_id() {
    let (addr, _seen) = serve(
        Answer::Reject {
            status: 401,
            body: r#"{"code":"INVALID_TOKEN","message":"The provided token is invalid."}"#,
            trace_id: Some("trace-401"),
        },
        |_peer| async {},
    )
    .await;
    let client = client_for(addr, test_timeouts());

    let error = client
        .create_sandbox(&token(), Region::Ord, &SandboxConfig::default())
        .await
        .expect_err("401");

    assert_eq!(error.trace_id(), Some("trace-401"));
    match error {
        DenoError::InvalidToken {
            status, message, ..
        } => {
            assert_eq!(status, 401);
            assert_eq!(message.as_deref(), Some("The provided token is invalid."));
        }
        other => panic!("expected InvalidToken, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_sandbox_is_not_found() {
    let (addr, _seen) = serve(
        Answer::Reject {
            status: 404,
            body: r#"{"code":"SANDBOX_NOT_FOUND","message":"Sandbox not found"}"#,
            trace_id: None,
        },
        |_peer| async {},
    )
    .await;
    let client = client_for(addr, test_timeouts());
    let id = SandboxId::parse(SANDBOX_ID).expect("id");

    let error = client.connect(&token(), &id).await.expect_err("404");

    match error {
        DenoError::SandboxNotFound {
            sandbox_id, status, ..
        } => {
            assert_eq!(sandbox_id, SANDBOX_ID);
            assert_eq!(status, 404);
        }
        other => panic!("expected SandboxNotFound, got {other:?}"),
    }
}

#[tokio::test]
async fn quota_refusal_keeps_code_and_message() {
    let (addr, _seen) = serve(
        Answer::Reject {
            status: 402,
            body: r#"{"code":"SANDBOX_LIMIT_REACHED","message":"Your plan allows 5 sandboxes."}"#,
            trace_id: Some("trace-402"),
        },
        |_peer| async {},
    )
    .await;
    let client = client_for(addr, test_timeouts());

    let error = client
        .create_sandbox(&token(), Region::Ord, &SandboxConfig::default())
        .await
        .expect_err("402");

    assert!(!error.is_retryable());
    match error {
        DenoError::Rejected {
            operation,
            status,
            code,
            message,
            trace_id,
        } => {
            assert_eq!(operation, "create sandbox");
            assert_eq!(status, 402);
            assert_eq!(code.as_deref(), Some("SANDBOX_LIMIT_REACHED"));
            assert_eq!(message, "Your plan allows 5 sandboxes.");
            assert_eq!(trace_id.as_deref(), Some("trace-402"));
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn non_json_refusal_keeps_body_text() {
    let (addr, _seen) = serve(
        Answer::Reject {
            status: 502,
            body: "bad gateway",
            trace_id: None,
        },
        |_peer| async {},
    )
    .await;
    let client = client_for(addr, test_timeouts());

    let error = client
        .create_sandbox(&token(), Region::Ord, &SandboxConfig::default())
        .await
        .expect_err("502");

    assert!(error.is_retryable());
    match error {
        DenoError::Rejected {
            status,
            code,
            message,
            ..
        } => {
            assert_eq!(status, 502);
            assert_eq!(code, None);
            assert_eq!(message, "bad gateway");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn silent_handshake_times_out() {
    // GIVEN a listener that accepts TCP but never responds to the upgrade
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let holder = tokio::spawn(async move {
        let (_stream, _) = listener.accept().await.expect("accept");
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    let mut timeouts = test_timeouts();
    timeouts.handshake = Duration::from_millis(300);
    let client = client_for(addr, timeouts);

    // WHEN creating a sandbox
    let started = Instant::now();
    let error = client
        .create_sandbox(&token(), Region::Ord, &SandboxConfig::default())
        .await
        .expect_err("silent server");

    // THEN the handshake deadline ends the wait
    assert!(started.elapsed() < Duration::from_secs(2));
    match error {
        DenoError::Timeout { operation, after } => {
            assert_eq!(operation, "create sandbox (websocket handshake)");
            assert_eq!(after, Duration::from_millis(300));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    holder.abort();
}

#[tokio::test]
async fn refused_port_is_transport_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    drop(listener);
    let client = client_for(addr, test_timeouts());

    let error = client
        .create_sandbox(&token(), Region::Ord, &SandboxConfig::default())
        .await
        .expect_err("nothing listens");

    assert!(matches!(error, DenoError::Transport(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn debug_output_hides_token() {
    let (sandbox, _peer) = super::connected(test_timeouts(), |_peer| async {}).await;
    let client = client_for("127.0.0.1:9".parse().expect("addr"), test_timeouts());

    assert!(!format!("{sandbox:?}").contains(TOKEN));
    assert!(!format!("{client:?}").contains(TOKEN));
    assert!(format!("{:?}", token()).contains("REDACTED"));
}
