//! The six agent tools: argument decoding, dispatch and the one log line per invocation.

use std::time::Instant;

use lambda_http::{Body, Request, Response};
use serde_json::Value;

use crate::bootstrap::App;
use crate::contract::{self, ErrorCode, ToolError, ToolRequest};

pub mod arguments;
pub mod command;
pub mod display;
pub mod errors;
pub mod exec;
pub mod files;

/// An agent tool; each is its own Lambda function whose binary carries [`Tool::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    /// `deno_create_sandbox`
    CreateSandbox,
    /// `deno_exec`
    Exec,
    /// `deno_read_file`
    ReadFile,
    /// `deno_write_file`
    WriteFile,
    /// `deno_list_sandboxes`
    ListSandboxes,
    /// `deno_manage_sandbox`
    ManageSandbox,
}

impl Tool {
    /// Every tool, in the order the README lists them.
    pub const ALL: [Tool; 6] = [
        Tool::CreateSandbox,
        Tool::Exec,
        Tool::ReadFile,
        Tool::WriteFile,
        Tool::ListSandboxes,
        Tool::ManageSandbox,
    ];

    /// Returns the tool name the agent sees, which is also the binary and route name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::CreateSandbox => "deno_create_sandbox",
            Tool::Exec => "deno_exec",
            Tool::ReadFile => "deno_read_file",
            Tool::WriteFile => "deno_write_file",
            Tool::ListSandboxes => "deno_list_sandboxes",
            Tool::ManageSandbox => "deno_manage_sandbox",
        }
    }
}

/// Handles one API Gateway request for `tool` and always returns a contract response.
pub async fn handle_http(app: &App, tool: Tool, request: Request) -> Response<Body> {
    let started = Instant::now();
    let outcome = handle_body(app, tool, request.body().as_ref()).await;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match &outcome {
        Ok(_) => tracing::info!(
            tool = tool.name(),
            outcome = "success",
            elapsed_ms,
            "tool call"
        ),
        Err(error) => tracing::info!(
            tool = tool.name(),
            outcome = error.code.as_str(),
            elapsed_ms,
            cause = error.source.as_ref().map(|cause| cause.to_string()),
            "tool call"
        ),
    }
    contract::respond(outcome)
}

async fn handle_body(app: &App, tool: Tool, body: &[u8]) -> Result<Value, ToolError> {
    let request: ToolRequest<Value> = contract::decode_request(body)?;
    crate::capability::require_enabled(app, &request.context.org_id).await?;
    // TODO: the tool logic is not wired yet; every valid request gets this error until it is.
    Err(ToolError::new(
        ErrorCode::Internal,
        format!("{} is not available in this build", tool.name()),
    ))
}
