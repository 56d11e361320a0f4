//! Runs Deno's official SDK suites (npm `@deno/sandbox` under Node 24, PyPI `deno-sandbox`) from
//! `local/conformance/` against a server started by this harness, so `cargo test` covers them.
//! `local/install.sh` installs both SDKs; `local/conformance/run.sh` runs the same suites alone.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;

use common::{Server, TOKEN};

/// Maximum time one suite may run; both take a few seconds normally.
const SUITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

fn repository_root() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

async fn run_suite(server: &Server, program: &str, args: &[&str], working_dir: PathBuf) {
    let root = repository_root();
    let program = root.join(program);
    assert!(
        program.exists(),
        "{} is missing; run local/install.sh",
        program.display()
    );
    let endpoint = server.http("");
    let command = tokio::process::Command::new(&program)
        .args(args)
        .current_dir(working_dir)
        .env("DENO_SANDBOX_ENDPOINT", &endpoint)
        .env("DENO_DEPLOY_ENDPOINT", &endpoint)
        .env("DENO_DEPLOY_TOKEN", TOKEN)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(SUITE_TIMEOUT, command)
        .await
        .unwrap_or_else(|_| panic!("{} {args:?} did not finish in time", program.display()))
        .unwrap();
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{}\n{}",
        program.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
}

#[tokio::test]
async fn npm_sdk_suite_passes() {
    let server = Server::start().await;
    let local = repository_root().join("local");
    run_suite(
        &server,
        "local/node_modules/.bin/node",
        &["--test", "conformance/npm_sdk.test.mjs"],
        local,
    )
    .await;
}

#[tokio::test]
async fn python_sdk_suite_passes() {
    let server = Server::start().await;
    // faulthandler prints every thread's stack if one test hangs, which the failure message shows.
    let args = [
        "-m",
        "pytest",
        "-v",
        "-p",
        "no:cacheprovider",
        "-o",
        "faulthandler_timeout=60",
        "local/conformance/test_python_sdk.py",
    ];
    run_suite(&server, ".venv/bin/python", &args, repository_root()).await;
}
