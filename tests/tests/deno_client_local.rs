//! The Deno client against the local sandbox server, without the tool layer: create, exec with
//! stdin, files through handles, extend, list by label, delete, and the refusals.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deno_sandbox_tools::deno::{
    DenoClient, DenoError, OpenOptions, OutputCapture, Region, SandboxConfig, SpawnOptions, Whence,
    WriteOptions,
};
use deno_sandbox_tools::secret::DenoToken;
use integration_tests::{stack_config, stack_env};

fn client() -> DenoClient {
    DenoClient::from_config(&stack_config()).expect("client for the local server")
}

fn token() -> DenoToken {
    DenoToken::new(stack_env()["LOCAL_DENO_TOKEN"].clone())
}

fn now_ms() -> u64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(elapsed.as_millis()).expect("milliseconds fit in u64")
}

#[tokio::test]
async fn client_round_trip_on_local_server() {
    // GIVEN a timed sandbox with a unique label
    let client = client();
    let token = token();
    let marker = format!("client-test-{}", std::process::id());
    let config = SandboxConfig {
        stop_at_ms: Some(now_ms() + 120_000),
        labels: BTreeMap::from([("case".to_owned(), marker.clone())]),
        ..SandboxConfig::default()
    };
    let (sandbox, id) = client
        .create_sandbox(&token, Region::Ord, &config)
        .await
        .expect("create");
    assert_eq!(id.region_code(), "ord");

    // WHEN a process reads stdin and writes both streams
    let process = sandbox
        .spawn(SpawnOptions {
            command: "bash".into(),
            args: vec!["-c".into(), "tr a-z A-Z; echo oops >&2; exit 4".into()],
            stdin: Some(b"hello".to_vec()),
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");
    let mut stdout = OutputCapture::new(1024, 1024);
    let mut stderr = OutputCapture::new(1024, 1024);
    let (status, out, err) = tokio::join!(
        sandbox.process_wait(process.pid, Duration::from_secs(10)),
        async {
            match process.stdout {
                Some(mut receiver) => receiver.read_into(&mut stdout).await,
                None => Ok(()),
            }
        },
        async {
            match process.stderr {
                Some(mut receiver) => receiver.read_into(&mut stderr).await,
                None => Ok(()),
            }
        },
    );
    out.expect("stdout");
    err.expect("stderr");

    // THEN the exit status and both streams are exact
    let status = status.expect("wait");
    assert_eq!(status.code, 4);
    assert!(!status.success);
    assert_eq!(stdout.render().text, "HELLO");
    assert_eq!(stderr.render().text, "oops\n");

    // Files: a 200 KiB write goes through a content stream; a windowed read returns one slice.
    let content: Vec<u8> = (0..200 * 1024).map(|i| (i % 251) as u8).collect();
    sandbox
        .write_file("/home/app/blob.bin", &content, WriteOptions::default())
        .await
        .expect("write");
    let handle = sandbox
        .open("/home/app/blob.bin", OpenOptions::default())
        .await
        .expect("open");
    assert_eq!(
        sandbox
            .file_seek(handle, 100_000, Whence::Start)
            .await
            .expect("seek"),
        100_000
    );
    let window = sandbox
        .file_read(handle, 1000)
        .await
        .expect("read")
        .expect("not at end");
    assert_eq!(window, content[100_000..101_000]);
    sandbox.file_close(handle).await.expect("close handle");
    assert_eq!(
        sandbox.stat("/home/app/blob.bin").await.expect("stat").size,
        200 * 1024
    );
    sandbox.close().await;

    // Extend is clamped to 30 minutes; list finds the sandbox by its label; delete ends it.
    let asked = now_ms() + 2 * 60 * 60 * 1000;
    let granted = client
        .extend_timeout(&token, &id, asked)
        .await
        .expect("extend");
    assert!(
        granted <= now_ms() + 30 * 60 * 1000 + 1000,
        "granted {granted}"
    );
    assert!(granted > now_ms() + 29 * 60 * 1000, "granted {granted}");

    let listed = client
        .list_sandboxes(&token, &[("case".to_owned(), marker)])
        .await
        .expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id.as_str());
    assert_eq!(listed[0].status, "running");

    client.delete_sandbox(&token, &id).await.expect("delete");
    let gone = client
        .connect(&token, &id)
        .await
        .expect_err("deleted sandbox");
    assert!(
        matches!(gone, DenoError::SandboxNotFound { .. }),
        "{gone:?}"
    );
}

#[tokio::test]
async fn client_reports_invalid_token() {
    let client = client();
    let config = SandboxConfig::with_stop_at(now_ms() + 60_000);

    let refused = client
        .create_sandbox(
            &DenoToken::new("ddo_notaccepted0000000000000000"),
            Region::Ord,
            &config,
        )
        .await
        .expect_err("unknown token");

    assert!(
        matches!(refused, DenoError::InvalidToken { status: 401, .. }),
        "{refused:?}"
    );
}
