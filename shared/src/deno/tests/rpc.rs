//! JSON-RPC calls, stream notifications, keepalive and connection failures.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::{Peer, connected, test_timeouts};
use crate::deno::{DenoError, OpenOptions, OutputCapture, SpawnOptions, Whence, WriteOptions};

fn ok(id: &Value, value: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"ok": value}})
}

fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

fn file_info_fixture(size: u64) -> Value {
    json!({
        "isFile": true, "isDirectory": false, "isSymlink": false, "size": size,
        "mtime": "2026-04-01T10:00:00.000Z", "atime": "2026-04-01T10:00:00.000Z",
        "birthtime": "2026-04-01T09:00:00.000Z", "ctime": "2026-04-01T10:00:00.000Z",
        "mode": 33188, "dev": 2049, "ino": 131, "nlink": 1, "uid": 1000, "gid": 1000,
        "rdev": 0, "blksize": 4096, "blocks": 8,
        "isBlockDevice": false, "isCharDevice": false, "isFifo": false, "isSocket": false
    })
}

/// Receives a request, checks its method and params field for field, and returns its id.
async fn expect_request(peer: &mut Peer, method: &str, params: Value) -> Value {
    let request = peer.recv().await;
    assert_eq!(request["jsonrpc"], "2.0");
    assert_eq!(request["method"], method, "{request}");
    assert_eq!(request["params"], params, "params of {method}");
    request["id"].clone()
}

#[tokio::test]
async fn spawn_streams_output_and_waits() {
    // GIVEN a peer that follows the recommended order: response, start, enqueue, end
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = expect_request(
            &mut peer,
            "spawn",
            json!({
                "command": "bash",
                "args": ["-c", "echo hi; echo oops >&2; exit 3"],
                "env": {"BASH_ENV": "$HOME/.bashrc"},
                "cwd": "/home/app",
                "stdout": "piped",
                "stderr": "piped"
            }),
        )
        .await;
        assert_eq!(id, json!(0));
        peer.send(ok(
            &id,
            json!({"pid": 101, "stdoutStreamId": 1002, "stderrStreamId": 1003}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.start",
            json!({"streamId": 1002}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.enqueue",
            json!({"streamId": 1002, "data": "aGkK"}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.end",
            json!({"streamId": 1002}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.start",
            json!({"streamId": 1003}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.enqueue",
            json!({"streamId": 1003, "data": "b29wcwo="}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.end",
            json!({"streamId": 1003}),
        ))
        .await;
        let wait_id = expect_request(&mut peer, "processWait", json!({"pid": 101})).await;
        peer.send(ok(
            &wait_id,
            json!({"success": false, "code": 3, "signal": null, "oom": null}),
        ))
        .await;
        let _ = peer.next_frame().await;
    })
    .await;

    // WHEN the client spawns, then reads both streams while waiting
    let options = SpawnOptions {
        command: "bash".to_owned(),
        args: vec!["-c".to_owned(), "echo hi; echo oops >&2; exit 3".to_owned()],
        env: [("BASH_ENV".to_owned(), "$HOME/.bashrc".to_owned())].into(),
        cwd: Some("/home/app".to_owned()),
        ..SpawnOptions::default()
    };
    let process = sandbox.spawn(options).await.expect("spawn");
    let pid = process.pid;
    let mut stdout_receiver = process.stdout.expect("stdout");
    let mut stderr_receiver = process.stderr.expect("stderr");
    let mut stdout = OutputCapture::new(1024, 1024);
    let mut stderr = OutputCapture::new(1024, 1024);
    let (stdout_done, stderr_done, status) = tokio::join!(
        stdout_receiver.read_into(&mut stdout),
        stderr_receiver.read_into(&mut stderr),
        sandbox.process_wait(pid, Duration::from_secs(2)),
    );

    // THEN output and status match what the peer sent
    stdout_done.expect("stdout stream");
    stderr_done.expect("stderr stream");
    let status = status.expect("status");
    assert_eq!(pid, 101);
    assert_eq!(stdout.render().text, "hi\n");
    assert_eq!(stderr.render().text, "oops\n");
    assert_eq!(status.code, 3);
    assert!(!status.success);
    assert_eq!(status.signal, None);
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn stream_start_before_response_keeps_data() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = peer.recv().await["id"].clone();
        // Data for a stream that was never started is dropped.
        peer.send(notification(
            "$sandbox.stream.enqueue",
            json!({"streamId": 99, "data": "eA=="}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.start",
            json!({"streamId": 7}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.enqueue",
            json!({"streamId": 7, "data": "ZWFybHkg"}),
        ))
        .await;
        peer.send(ok(
            &id,
            json!({"pid": 5, "stdoutStreamId": 7, "stderrStreamId": null}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.enqueue",
            json!({"streamId": 7, "data": "bGF0ZQ=="}),
        ))
        .await;
        peer.send(notification("$sandbox.stream.end", json!({"streamId": 7})))
            .await;
        let _ = peer.next_frame().await;
    })
    .await;

    let process = sandbox
        .spawn(SpawnOptions {
            command: "true".to_owned(),
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");
    let mut capture = OutputCapture::new(64, 64);
    process
        .stdout
        .expect("stdout")
        .read_into(&mut capture)
        .await
        .expect("read");

    assert!(process.stderr.is_none());
    assert_eq!(capture.render().text, "early late");
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn spawn_with_stdin_sends_client_stream() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        assert_eq!(
            peer.recv().await,
            notification("$sandbox.stream.start", json!({"streamId": 0}))
        );
        let id = expect_request(
            &mut peer,
            "spawn",
            json!({"command": "cat", "args": ["-"], "stdinStreamId": 0, "stdout": "piped", "stderr": "piped"}),
        )
        .await;
        assert_eq!(
            peer.recv().await,
            notification("$sandbox.stream.enqueue", json!({"streamId": 0, "data": "YWJj"}))
        );
        assert_eq!(
            peer.recv().await,
            notification("$sandbox.stream.end", json!({"streamId": 0}))
        );
        peer.send(ok(&id, json!({"pid": 9, "stdoutStreamId": null, "stderrStreamId": null})))
            .await;
        let _ = peer.next_frame().await;
    })
    .await;

    let process = sandbox
        .spawn(SpawnOptions {
            command: "cat".to_owned(),
            args: vec!["-".to_owned()],
            stdin: Some(b"abc".to_vec()),
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");

    assert_eq!(process.pid, 9);
    assert!(process.stdin_delivered);
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn huge_stream_is_bounded_by_capture() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 256;
    let pattern = |index: usize| (index % 251) as u8;

    let (sandbox, peer) = connected(test_timeouts(), move |mut peer| async move {
        let id = peer.recv().await["id"].clone();
        peer.send(ok(
            &id,
            json!({"pid": 1, "stdoutStreamId": 3, "stderrStreamId": null}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.start",
            json!({"streamId": 3}),
        ))
        .await;
        for chunk_index in 0..CHUNKS {
            let chunk: Vec<u8> = (0..CHUNK)
                .map(|i| pattern(chunk_index * CHUNK + i))
                .collect();
            let params = json!({"streamId": 3, "data": BASE64.encode(&chunk)});
            peer.send(notification("$sandbox.stream.enqueue", params))
                .await;
        }
        peer.send(notification("$sandbox.stream.end", json!({"streamId": 3})))
            .await;
        let _ = peer.next_frame().await;
    })
    .await;

    let process = sandbox
        .spawn(SpawnOptions {
            command: "yes".to_owned(),
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");
    let mut capture = OutputCapture::new(1000, 2000);
    process
        .stdout
        .expect("stdout")
        .read_into(&mut capture)
        .await
        .expect("read");

    let total = CHUNK * CHUNKS;
    let kept = capture.kept_bytes();
    assert_eq!(capture.total_bytes(), total as u64);
    assert!(capture.is_truncated());
    assert_eq!(kept.len(), 3000);
    let expected_head: Vec<u8> = (0..1000).map(pattern).collect();
    let expected_tail: Vec<u8> = (total - 2000..total).map(pattern).collect();
    assert_eq!(&kept[..1000], &expected_head[..]);
    assert_eq!(&kept[1000..], &expected_tail[..]);
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn stream_error_fails_receiver() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = peer.recv().await["id"].clone();
        peer.send(ok(
            &id,
            json!({"pid": 2, "stdoutStreamId": 4, "stderrStreamId": 5}),
        ))
        .await;
        for stream_id in [4, 5] {
            peer.send(notification(
                "$sandbox.stream.start",
                json!({"streamId": stream_id}),
            ))
            .await;
        }
        peer.send(notification(
            "$sandbox.stream.enqueue",
            json!({"streamId": 4, "data": "cGFydA=="}),
        ))
        .await;
        let serialized = json!({
            "constructorName": "Error", "message": "boom", "code": null,
            "stack": "Error: boom\n    at <sandbox>:1:1", "cause": null, "errors": null,
            "name": null, "suppressed": null, "error": null
        });
        peer.send(notification(
            "$sandbox.stream.error",
            json!({"streamId": 4, "error": serialized}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.error",
            json!({"streamId": 5, "error": "pipe broke"}),
        ))
        .await;
        let _ = peer.next_frame().await;
    })
    .await;

    let process = sandbox
        .spawn(SpawnOptions {
            command: "x".to_owned(),
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");
    let mut stdout = process.stdout.expect("stdout");
    let mut stderr = process.stderr.expect("stderr");

    assert_eq!(
        stdout.next_chunk().await.expect("first chunk"),
        Some(b"part".to_vec())
    );
    for (receiver, message) in [(&mut stdout, "boom"), (&mut stderr, "pipe broke")] {
        match receiver.next_chunk().await {
            Err(DenoError::Application { method, error }) => {
                assert_eq!(method, "$sandbox.stream.error");
                assert_eq!(error.message, message);
            }
            other => panic!("expected a stream error, got {other:?}"),
        }
        assert_eq!(receiver.next_chunk().await.expect("after error"), None);
    }
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn cancel_stream_notifies_and_drops_data() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = peer.recv().await["id"].clone();
        peer.send(ok(
            &id,
            json!({"pid": 3, "stdoutStreamId": 1002, "stderrStreamId": null}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.start",
            json!({"streamId": 1002}),
        ))
        .await;
        assert_eq!(
            peer.recv().await,
            notification(
                "$sandbox.stream.cancel",
                json!({"streamId": 1002, "reason": null})
            )
        );
        peer.send(notification(
            "$sandbox.stream.enqueue",
            json!({"streamId": 1002, "data": "bGF0ZQ=="}),
        ))
        .await;
        let stat_id = peer.recv().await["id"].clone();
        peer.send(ok(&stat_id, file_info_fixture(4))).await;
        let _ = peer.next_frame().await;
    })
    .await;

    let process = sandbox
        .spawn(SpawnOptions {
            command: "yes".to_owned(),
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");
    let mut stdout = process.stdout.expect("stdout");
    sandbox.cancel_stream(stdout.id()).expect("cancel");
    // The stat response comes after the late enqueue, so the enqueue has been handled.
    sandbox.stat("a.txt").await.expect("stat");

    assert_eq!(stdout.next_chunk().await.expect("ended"), None);
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn application_and_protocol_errors_are_typed() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = expect_request(&mut peer, "readFile", json!({"path": "/nope"})).await;
        let not_found = json!({
            "constructorName": "NotFound",
            "message": "No such file or directory (os error 2): readfile '/nope'",
            "code": "ENOENT", "stack": "NotFound: No such file or directory\n    at <sandbox>:1:1",
            "cause": null, "errors": null, "name": null, "suppressed": null, "error": null
        });
        peer.send(json!({"jsonrpc": "2.0", "id": id, "result": {"error": not_found}}))
            .await;
        let id = expect_request(&mut peer, "stat", json!({"path": "x"})).await;
        peer.send(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}}))
            .await;
        let id = expect_request(&mut peer, "processKill", json!({"pid": 101, "signal": "SIGKILL"})).await;
        let gone = json!({"constructorName": "TypeError", "message": "process not found", "code": "ENOENT"});
        peer.send(json!({"jsonrpc": "2.0", "id": id, "result": {"error": gone}}))
            .await;
        let id = expect_request(&mut peer, "processKill", json!({"pid": 102, "signal": "SIGTERM"})).await;
        peer.send(ok(&id, Value::Null)).await;
        let _ = peer.next_frame().await;
    })
    .await;

    match sandbox.read_file("/nope").await {
        Err(DenoError::Application { method, error }) => {
            assert_eq!(method, "readFile");
            assert!(error.is_not_found());
            assert_eq!(error.constructor_name, "NotFound");
        }
        other => panic!("expected Application, got {other:?}"),
    }
    match sandbox.stat("x").await {
        Err(DenoError::Protocol {
            method,
            code,
            message,
        }) => {
            assert_eq!(method, "stat");
            assert_eq!(code, -32601);
            assert_eq!(message, "Method not found");
        }
        other => panic!("expected Protocol, got {other:?}"),
    }
    assert!(
        !sandbox
            .process_kill(101, "SIGKILL")
            .await
            .expect("kill gone")
    );
    assert!(
        sandbox
            .process_kill(102, "SIGTERM")
            .await
            .expect("kill live")
    );
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn unknown_response_ids_are_ignored() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = peer.recv().await["id"].clone();
        let unknown = id.as_u64().expect("numeric id") + 100;
        peer.send(ok(&json!(unknown), json!("wrong"))).await;
        peer.send(ok(&json!("text-id"), json!("wrong"))).await;
        peer.send(json!({"jsonrpc": "2.0", "id": 55, "method": "serverRequest", "params": {}}))
            .await;
        peer.send(ok(&id, json!("/home/app/a.txt"))).await;
        let _ = peer.next_frame().await;
    })
    .await;

    let path = sandbox.real_path("a.txt").await.expect("real path");

    assert_eq!(path, "/home/app/a.txt");
    assert!(!sandbox.is_closed());
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn bad_json_closes_with_4000() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let _ = peer.recv().await;
        peer.send_text("{not json").await;
        match peer.next_frame().await {
            Some(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 4000);
                assert_eq!(frame.reason.as_str(), "Invalid JSON");
            }
            other => panic!("expected close 4000, got {other:?}"),
        }
    })
    .await;

    let error = sandbox.read_text_file("a.txt").await.expect_err("bad JSON");

    assert!(matches!(error, DenoError::InvalidMessage(_)), "{error:?}");
    assert!(sandbox.is_closed());
    peer.await.expect("peer");
}

#[tokio::test]
async fn non_rpc_json_closes_with_4001() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let _ = peer.recv().await;
        peer.send(json!({"hello": "world"})).await;
        match peer.next_frame().await {
            Some(Message::Close(Some(frame))) => {
                assert_eq!(u16::from(frame.code), 4001);
                assert_eq!(frame.reason.as_str(), "Invalid message");
            }
            other => panic!("expected close 4001, got {other:?}"),
        }
    })
    .await;

    let error = sandbox.real_path("a").await.expect_err("not JSON-RPC");

    assert!(matches!(error, DenoError::InvalidMessage(_)), "{error:?}");
    peer.await.expect("peer");
}

#[tokio::test]
async fn server_close_fails_pending_call_and_streams() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = peer.recv().await["id"].clone();
        peer.send(ok(
            &id,
            json!({"pid": 8, "stdoutStreamId": 1, "stderrStreamId": null}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.start",
            json!({"streamId": 1}),
        ))
        .await;
        let _wait = peer.recv().await;
        let frame = CloseFrame {
            code: CloseCode::Away,
            reason: "sandbox stopped".into(),
        };
        peer.ws
            .send(Message::Close(Some(frame)))
            .await
            .expect("close");
        let _ = peer.next_frame().await;
    })
    .await;

    let process = sandbox
        .spawn(SpawnOptions {
            command: "sleep".to_owned(),
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");
    let mut stdout = process.stdout.expect("stdout");
    let started = Instant::now();
    let (status, chunk) = tokio::join!(
        sandbox.process_wait(8, Duration::from_secs(10)),
        stdout.next_chunk()
    );

    assert!(started.elapsed() < Duration::from_secs(2));
    for error in [status.expect_err("wait"), chunk.expect_err("stream")] {
        match error {
            DenoError::Closed { code, reason } => {
                assert_eq!(code, Some(1001));
                assert_eq!(reason, "sandbox stopped");
            }
            other => panic!("expected Closed, got {other:?}"),
        }
    }
    match sandbox.stat("a").await {
        Err(DenoError::Closed { code, .. }) => assert_eq!(code, Some(1001)),
        other => panic!("expected Closed after close, got {other:?}"),
    }
    peer.await.expect("peer");
}

#[tokio::test]
async fn dropped_socket_fails_promptly() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let _ = peer.recv().await;
        // Ending the task drops the TCP stream without a close frame.
    })
    .await;

    let started = Instant::now();
    let error = sandbox
        .process_wait(1, Duration::from_secs(10))
        .await
        .expect_err("socket dropped");

    assert!(started.elapsed() < Duration::from_secs(2));
    match error {
        DenoError::Closed { code, .. } => assert_eq!(code, None),
        other => panic!("expected Closed, got {other:?}"),
    }
    peer.await.expect("peer");
}

#[tokio::test]
async fn silent_server_hits_idle_limit() {
    // GIVEN a peer that reads nothing and sends nothing, not even pongs
    let (sandbox, peer) = connected(test_timeouts(), |peer| async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        drop(peer);
    })
    .await;

    // WHEN a long call is pending
    let started = Instant::now();
    let error = sandbox
        .process_wait(1, Duration::from_secs(30))
        .await
        .expect_err("silent server");

    // THEN the idle limit (600 ms here) ends it, not the 30 s call deadline
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}");
    match error {
        DenoError::Timeout { operation, after } => {
            assert!(operation.contains("keepalive"), "{operation}");
            assert_eq!(after, Duration::from_millis(600));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    peer.abort();
}

#[tokio::test]
async fn unanswered_call_times_out() {
    // GIVEN a peer that replies to keepalive pings but never to the call
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let _ = peer.recv().await;
        let _ = peer.next_frame().await;
    })
    .await;

    let error = sandbox.stat("slow").await.expect_err("no answer");

    match error {
        DenoError::Timeout { operation, after } => {
            assert_eq!(operation, "stat");
            assert_eq!(after, Duration::from_secs(2));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }
    assert!(!sandbox.is_closed());
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn keepalive_pings_and_protocol_pongs() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        peer.ws
            .send(Message::Ping(b"hb".to_vec().into()))
            .await
            .expect("ping");
        let started = Instant::now();
        let mut pong = None;
        while started.elapsed() < Duration::from_millis(550) {
            match tokio::time::timeout(Duration::from_millis(50), peer.next_frame()).await {
                Ok(Some(Message::Pong(payload))) => pong = Some(payload.to_vec()),
                Ok(Some(other)) => panic!("unexpected frame {other:?}"),
                Ok(None) => break,
                Err(_) => {}
            }
        }
        assert_eq!(pong.as_deref(), Some(&b"hb"[..]));
        // One of each on open, then one of each every 100 ms.
        assert!(peer.pings >= 3, "text pings {}", peer.pings);
        assert!(
            peer.protocol_pings >= 3,
            "protocol pings {}",
            peer.protocol_pings
        );
        peer.send_text("pong").await;
        let id = peer.recv().await["id"].clone();
        peer.send(ok(&id, json!("/home/app"))).await;
        let _ = peer.next_frame().await;
    })
    .await;

    // Longer than the idle limit: the pong replies keep the connection alive.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let path = sandbox.real_path(".").await.expect("alive after keepalive");

    assert_eq!(path, "/home/app");
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn write_file_inline_and_streamed() {
    const LARGE: usize = 200 * 1024;
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = expect_request(
            &mut peer,
            "writeFile",
            json!({
                "path": "/home/app/a.txt",
                "content": "aGVsbG8=",
                "options": {"append": false, "create": true, "createNew": false}
            }),
        )
        .await;
        peer.send(ok(&id, Value::Null)).await;

        assert_eq!(
            peer.recv().await,
            notification("$sandbox.stream.start", json!({"streamId": 0}))
        );
        let id = expect_request(
            &mut peer,
            "writeFile",
            json!({
                "path": "big.bin",
                "contentStreamId": 0,
                "options": {"append": true, "create": true, "createNew": false, "mode": 420}
            }),
        )
        .await;
        let mut received = Vec::new();
        let mut chunk_sizes = Vec::new();
        loop {
            let message = peer.recv().await;
            if message["method"] == "$sandbox.stream.end" {
                assert_eq!(message["params"], json!({"streamId": 0}));
                break;
            }
            assert_eq!(message["method"], "$sandbox.stream.enqueue");
            assert_eq!(message["params"]["streamId"], 0);
            let chunk = BASE64
                .decode(message["params"]["data"].as_str().expect("data"))
                .expect("base64");
            chunk_sizes.push(chunk.len());
            received.extend(chunk);
        }
        assert_eq!(chunk_sizes, vec![65536, 65536, 65536, 8192]);
        assert_eq!(received, vec![7u8; LARGE]);
        peer.send(ok(&id, Value::Null)).await;
        let _ = peer.next_frame().await;
    })
    .await;

    sandbox
        .write_file("/home/app/a.txt", b"hello", WriteOptions::default())
        .await
        .expect("inline write");
    let append = WriteOptions {
        append: true,
        mode: Some(0o644),
        ..WriteOptions::default()
    };
    sandbox
        .write_file("big.bin", &vec![7u8; LARGE], append)
        .await
        .expect("streamed write");
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn file_handle_window_read() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = expect_request(
            &mut peer,
            "open",
            json!({"path": "log.txt", "options": {"read": true, "write": false, "append": false, "truncate": false, "create": false, "createNew": false}}),
        )
        .await;
        peer.send(ok(&id, json!({"fileHandleId": 3}))).await;
        let id = expect_request(&mut peer, "fileStat", json!({"fileHandleId": 3})).await;
        peer.send(ok(&id, file_info_fixture(14))).await;
        let id = expect_request(
            &mut peer,
            "fileSeek",
            json!({"fileHandleId": 3, "offset": 10, "whence": 0}),
        )
        .await;
        peer.send(ok(&id, json!({"position": 10}))).await;
        let id = expect_request(&mut peer, "fileRead", json!({"fileHandleId": 3, "length": 8})).await;
        peer.send(ok(&id, json!({"data": "YWJjZA=="}))).await;
        let id = expect_request(&mut peer, "fileRead", json!({"fileHandleId": 3, "length": 8})).await;
        peer.send(ok(&id, json!({"data": null}))).await;
        let id = expect_request(&mut peer, "fileClose", json!({"fileHandleId": 3})).await;
        peer.send(ok(&id, Value::Null)).await;
        let _ = peer.next_frame().await;
    })
    .await;

    let handle = sandbox
        .open("log.txt", OpenOptions::default())
        .await
        .expect("open");
    let info = sandbox.file_stat(handle).await.expect("file stat");
    let position = sandbox
        .file_seek(handle, 10, Whence::Start)
        .await
        .expect("seek");
    let window = sandbox.file_read(handle, 8).await.expect("read");
    let end = sandbox.file_read(handle, 8).await.expect("read at end");
    sandbox.file_close(handle).await.expect("close handle");

    assert_eq!(handle, 3);
    assert_eq!(info.size, 14);
    assert!(info.is_file);
    assert_eq!(info.mode, Some(33188));
    assert_eq!(info.mtime.as_deref(), Some("2026-04-01T10:00:00.000Z"));
    assert_eq!(position, 10);
    assert_eq!(window, Some(b"abcd".to_vec()));
    assert_eq!(end, None);
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn directory_calls_send_protocol_params() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = expect_request(
            &mut peer,
            "mkdir",
            json!({"path": "a/b", "options": {"recursive": true}}),
        )
        .await;
        peer.send(ok(&id, Value::Null)).await;
        let id = expect_request(
            &mut peer,
            "remove",
            json!({"path": "a", "options": {"recursive": true}}),
        )
        .await;
        peer.send(ok(&id, Value::Null)).await;
        let id = expect_request(&mut peer, "readTextFile", json!({"path": "t.txt"})).await;
        peer.send(ok(&id, json!("text é"))).await;
        let id = expect_request(&mut peer, "readFile", json!({"path": "b.bin"})).await;
        peer.send(ok(&id, json!("AP8="))).await;
        let _ = peer.next_frame().await;
    })
    .await;

    sandbox.mkdir("a/b", true).await.expect("mkdir");
    sandbox.remove("a", true).await.expect("remove");
    let text = sandbox.read_text_file("t.txt").await.expect("text");
    let bytes = sandbox.read_file("b.bin").await.expect("bytes");

    assert_eq!(text, "text é");
    assert_eq!(bytes, vec![0x00, 0xff]);
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn close_sends_normal_close_frame() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        match peer.next_frame().await {
            Some(Message::Close(Some(frame))) => assert_eq!(frame.code, CloseCode::Normal),
            other => panic!("expected close 1000, got {other:?}"),
        }
    })
    .await;

    sandbox.close().await;

    peer.await.expect("peer");
}

#[tokio::test]
async fn protocol_pongs_alone_keep_connection() {
    // GIVEN a peer that ignores text pings, like a server without the npm keepalive convention;
    // tungstenite still replies to protocol Pings while the peer reads
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        while let Some(Ok(message)) = peer.ws.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            if text.as_str() == "ping" {
                continue;
            }
            let request: Value = serde_json::from_str(text.as_str()).expect("client JSON");
            peer.send(ok(&request["id"], json!("/home/app"))).await;
        }
    })
    .await;

    // WHEN the client stays quiet for longer than the 600 ms idle limit
    tokio::time::sleep(Duration::from_millis(900)).await;

    // THEN the connection is still usable
    let path = sandbox
        .real_path(".")
        .await
        .expect("alive on protocol pongs");
    assert_eq!(path, "/home/app");
    sandbox.close().await;
    peer.await.expect("peer");
}

#[tokio::test]
async fn dropped_receiver_cancels_stream() {
    let (sandbox, peer) = connected(test_timeouts(), |mut peer| async move {
        let id = peer.recv().await["id"].clone();
        peer.send(ok(
            &id,
            json!({"pid": 4, "stdoutStreamId": 11, "stderrStreamId": null}),
        ))
        .await;
        peer.send(notification(
            "$sandbox.stream.start",
            json!({"streamId": 11}),
        ))
        .await;
        let stat_id = peer.recv().await["id"].clone();
        peer.send(notification(
            "$sandbox.stream.enqueue",
            json!({"streamId": 11, "data": "eA=="}),
        ))
        .await;
        assert_eq!(
            peer.recv().await,
            notification(
                "$sandbox.stream.cancel",
                json!({"streamId": 11, "reason": null})
            )
        );
        peer.send(ok(&stat_id, file_info_fixture(1))).await;
        let _ = peer.next_frame().await;
    })
    .await;

    let process = sandbox
        .spawn(SpawnOptions {
            command: "yes".to_owned(),
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");
    drop(process.stdout);
    let info = sandbox.stat("x").await.expect("stat");

    assert_eq!(info.size, 1);
    sandbox.close().await;
    peer.await.expect("peer");
}
