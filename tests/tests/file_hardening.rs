//! `deno_read_file` and `deno_write_file` against what agents send: binary content, missing
//! parent directories, large files read in windows, unusual paths, responses near Lambda's
//! payload limit and bodies with unusual characters. Each test drives the real handlers with
//! API Gateway v2 events against the local stack.

mod support;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use deno_sandbox_tools::tools::Tool;
use integration_tests::stack_app;
use serde_json::{Value, json};
use support::calls::{call_ok, exec, sandbox, send, tool_body, tool_event};

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// Returns `length` bytes that are not valid UTF-8 and contain every byte value.
fn binary_bytes(length: usize) -> Vec<u8> {
    (0..length).map(|index| (index * 7 % 256) as u8).collect()
}

#[tokio::test]
async fn binary_write_creates_parents_and_round_trips() {
    let app = stack_app().await;
    let (caller, sandbox_id) = sandbox(&app, "2m").await;
    let blob = binary_bytes(300);

    let written = call_ok(
        &app,
        Tool::WriteFile,
        &caller,
        json!({
            "sandbox_id": sandbox_id,
            "path": "bin/blob.dat",
            "content": STANDARD.encode(&blob),
            "encoding": "base64",
        }),
    )
    .await;
    let read = call_ok(
        &app,
        Tool::ReadFile,
        &caller,
        json!({"sandbox_id": sandbox_id, "path": "bin/blob.dat", "encoding": "auto"}),
    )
    .await;

    assert_eq!(written["bytes_written"], 300);
    assert_eq!(written["path"], "/home/app/bin/blob.dat");
    assert_eq!(read["binary"], true, "{read}");
    assert_eq!(read["encoding"], "base64");
    assert_eq!(read["size"], 300);
    assert_eq!(read["truncated"], false);
    assert_eq!(
        STANDARD.decode(text(&read["content"])).expect("base64"),
        blob
    );
    let listed = exec(&app, &caller, &sandbox_id, "stat -c %F bin").await;
    assert_eq!(listed["stdout"], "directory\n");
}

#[tokio::test]
async fn large_file_is_read_in_windows() {
    let app = stack_app().await;
    let (caller, sandbox_id) = sandbox(&app, "2m").await;
    // 50 MB of numbered lines, so each window's content can be computed here.
    let created = exec(
        &app,
        &caller,
        &sandbox_id,
        "seq -w 1 7000000 | head -c 50000000 > big.txt && stat -c %s big.txt",
    )
    .await;
    assert_eq!(created["stdout"], "50000000\n", "{created}");
    let expected: String = (1..=7_000_000)
        .map(|n| format!("{n:07}\n"))
        .take(80_000)
        .collect();

    let (status, first, payload_size) = send(
        &app,
        Tool::ReadFile,
        tool_event(
            Tool::ReadFile,
            tool_body(
                &caller,
                &json!({"sandbox_id": sandbox_id, "path": "big.txt"}),
            )
            .as_bytes(),
            false,
        ),
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let first = &first["result"];
    assert_eq!(first["size"], 50_000_000);
    assert_eq!(first["truncated"], true);
    assert_eq!(first["bytes_returned"], 256 * 1024);
    assert_eq!(first["next_offset"], 256 * 1024);
    assert_eq!(text(&first["content"]), &expected[..256 * 1024]);
    // 256 KiB of text whose 32 768 newlines cost 3 bytes each once double-escaped.
    assert!(payload_size < 340_000, "payload of {payload_size} bytes");

    let second = call_ok(
        &app,
        Tool::ReadFile,
        &caller,
        json!({"sandbox_id": sandbox_id, "path": "big.txt", "offset": 262_144, "limit": 100_000}),
    )
    .await;
    assert_eq!(second["offset"], 262_144);
    assert_eq!(second["bytes_returned"], 100_000);
    assert_eq!(second["next_offset"], 362_144);
    assert_eq!(text(&second["content"]), &expected[262_144..362_144]);

    let last = call_ok(
        &app,
        Tool::ReadFile,
        &caller,
        json!({"sandbox_id": sandbox_id, "path": "big.txt", "offset": 49_999_990}),
    )
    .await;
    assert_eq!(last["bytes_returned"], 10);
    assert_eq!(last["truncated"], false);
    assert!(last.get("next_offset").is_none(), "{last}");
}

#[tokio::test]
async fn unusual_paths_round_trip() {
    let app = stack_app().await;
    let (caller, sandbox_id) = sandbox(&app, "2m").await;

    for (path, resolved) in [
        ("a b/it's $(x).txt", "/home/app/a b/it's $(x).txt"),
        ("ünï/кот.txt", "/home/app/ünï/кот.txt"),
        ("../../tmp/up.txt", "/tmp/up.txt"),
        ("/tmp/abs `x` ; rm -rf ~.txt", "/tmp/abs `x` ; rm -rf ~.txt"),
        ("./dots/./x.txt", "/home/app/dots/x.txt"),
    ] {
        let content = format!("content of {path}\n");
        let written = call_ok(
            &app,
            Tool::WriteFile,
            &caller,
            json!({"sandbox_id": sandbox_id, "path": path, "content": content}),
        )
        .await;
        let read = call_ok(
            &app,
            Tool::ReadFile,
            &caller,
            json!({"sandbox_id": sandbox_id, "path": path}),
        )
        .await;
        let by_shell = call_ok(
            &app,
            Tool::Exec,
            &caller,
            json!({
                "sandbox_id": sandbox_id,
                "command": "cat -- \"$TARGET\"",
                "env": {"TARGET": resolved},
            }),
        )
        .await;

        assert_eq!(written["bytes_written"], content.len(), "{path}");
        assert_eq!(read["content"], content, "{path}: {read}");
        assert_eq!(by_shell["stdout"], content, "{path}: {by_shell}");
    }
    // The `rm -rf ~` in a file name never ran.
    let home = exec(&app, &caller, &sandbox_id, "ls -d ~").await;
    assert_eq!(home["stdout"], "/home/app\n", "{home}");
}

#[tokio::test]
async fn escaped_read_fits_the_payload_limit() {
    let app = stack_app().await;
    let (caller, sandbox_id) = sandbox(&app, "2m").await;
    // Each \x01 byte costs 7 bytes in the Lambda payload, so 1 MiB of them would need 7 MiB.
    let created = exec(
        &app,
        &caller,
        &sandbox_id,
        r"head -c 1048576 /dev/zero | tr '\0' '\001' > ctl.txt",
    )
    .await;
    assert_eq!(created["exit_code"], 0);

    for encoding in ["auto", "utf-8"] {
        let arguments = json!({
            "sandbox_id": sandbox_id,
            "path": "ctl.txt",
            "limit": 1_048_576,
            "encoding": encoding,
        });
        let (status, response, payload_size) = send(
            &app,
            Tool::ReadFile,
            tool_event(
                Tool::ReadFile,
                tool_body(&caller, &arguments).as_bytes(),
                false,
            ),
        )
        .await;

        assert_eq!(status, 200, "{response}");
        assert!(payload_size < 6_000_000, "{encoding}: {payload_size} bytes");
        let result = &response["result"];
        let returned = result["bytes_returned"].as_u64().unwrap_or_default();
        assert!((500_000..1_048_576).contains(&returned), "{result}");
        assert_eq!(result["truncated"], true);
        assert_eq!(result["next_offset"], returned);
        assert_eq!(text(&result["content"]).len() as u64, returned);
    }
}

#[tokio::test]
async fn unusual_characters_in_content() {
    let app = stack_app().await;
    let (caller, sandbox_id) = sandbox(&app, "2m").await;
    let content = "nul:\u{0} ls:\u{2028} ps:\u{2029} bom:\u{feff} emoji:\u{1f980}\n";

    for base64 in [false, true] {
        let arguments = json!({"sandbox_id": sandbox_id, "path": "chars.txt", "content": content});
        let body = tool_body(&caller, &arguments);
        let (status, response, _) = send(
            &app,
            Tool::WriteFile,
            tool_event(Tool::WriteFile, body.as_bytes(), base64),
        )
        .await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["result"]["bytes_written"], content.len());

        let read = call_ok(
            &app,
            Tool::ReadFile,
            &caller,
            json!({"sandbox_id": sandbox_id, "path": "chars.txt", "encoding": "utf-8"}),
        )
        .await;
        assert_eq!(read["content"], content, "{read}");
        let auto = call_ok(
            &app,
            Tool::ReadFile,
            &caller,
            json!({"sandbox_id": sandbox_id, "path": "chars.txt"}),
        )
        .await;
        assert_eq!(
            auto["binary"], true,
            "a NUL byte makes the file binary: {auto}"
        );
        assert_eq!(
            STANDARD.decode(text(&auto["content"])).expect("base64"),
            content.as_bytes()
        );
    }

    // A lone surrogate has no UTF-8 form, so the body is rejected naming it.
    for escaped in [r"\ud800", r"\udc00x", r"\ud800\u0041"] {
        let body = format!(
            r#"{{"context":{{"org_id":"{}","user_id":"{}","session_id":"{}"}},"arguments":{{"sandbox_id":"{sandbox_id}","path":"s.txt","content":"a{escaped}"}}}}"#,
            caller.org_id, caller.user_id, caller.session_id
        );
        let (status, response, _) = send(
            &app,
            Tool::WriteFile,
            tool_event(Tool::WriteFile, body.as_bytes(), false),
        )
        .await;

        assert_eq!(status, 400, "{escaped}: {response}");
        assert_eq!(response["error"]["code"], "invalid_argument");
        let message = text(&response["error"]["message"]);
        assert!(message.contains("lone UTF-16 surrogate"), "{message}");
        assert!(message.contains("base64"), "{message}");
    }
}
