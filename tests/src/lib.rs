//! Helpers for the integration tests: how to reach the local stack that `local/stack.py start`
//! runs, read from the environment file it writes.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use deno_sandbox_tools::bootstrap::App;
use deno_sandbox_tools::config::Config;

/// Path of the environment file `local/stack.py start` writes.
pub fn stack_env_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../local/.state/stack.env")
}

/// Reads the stack's environment file into a map.
///
/// # Panics
/// When the stack is not started, with the command that starts it.
pub fn stack_env() -> HashMap<String, String> {
    let path = stack_env_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|err| {
        panic!(
            "cannot read {} ({err}); start the local stack first: .venv/bin/python local/stack.py start --sandbox-server",
            path.display()
        )
    });
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| {
            let value: String = serde_json::from_str(value).unwrap_or_else(|_| value.to_owned());
            (name.to_owned(), value)
        })
        .collect()
}

/// Builds the functions' configuration for the local stack.
///
/// # Panics
/// When the environment file lacks a required variable.
pub fn stack_config() -> Config {
    let env = stack_env();
    Config::from_lookup(|name| env.get(name).cloned()).expect("local stack environment is complete")
}

/// Builds an [`App`] whose AWS clients point at the local emulators with the stack's test
/// credentials, without touching the process environment.
pub async fn stack_app() -> App {
    let env = stack_env();
    let config = stack_config();
    let credentials = aws_sdk_kms::config::Credentials::new(
        env.get("AWS_ACCESS_KEY_ID").cloned().unwrap_or_default(),
        env.get("AWS_SECRET_ACCESS_KEY")
            .cloned()
            .unwrap_or_default(),
        None,
        None,
        "local-stack",
    );
    let region = env
        .get("AWS_REGION")
        .cloned()
        .unwrap_or_else(|| "us-east-1".to_owned());
    let sdk_config = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region))
        .credentials_provider(aws_sdk_kms::config::SharedCredentialsProvider::new(
            credentials,
        ))
        .build();
    App::with_sdk_config(config, &sdk_config)
}
