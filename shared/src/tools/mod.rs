//! The six agent tools and session cleanup: decoding, dispatch and the one log line per
//! invocation. Each tool's logic lives in its own module.
//!
//! Layout:
//! - [`arguments`]: argument types and their validation.
//! - [`access`]: capability, token and ownership checks shared by every tool.
//! - [`create`], [`exec`], [`files`], [`manage`]: the tools.
//! - [`command`]: running one command with a deadline and bounded capture.
//! - [`display`]: cleaning output for display and sizing responses.
//! - [`errors`]: Deno client failures as contract errors.

use std::time::Instant;

use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::bootstrap::App;
use crate::contract::{self, CallContext, ToolError, ToolRequest};

pub mod access;
pub mod arguments;
pub mod command;
pub mod create;
pub mod display;
pub mod errors;
pub mod exec;
pub mod files;
pub mod manage;

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

    /// Returns the tool name shown to the agent, which is also the binary and route name.
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

/// Formats a time as RFC 3339, the form every result uses.
pub fn format_time(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).unwrap_or_default()
}

/// Handles one API Gateway request for `tool` and always returns a contract response.
pub async fn handle_http(app: &App, tool: Tool, request: Request) -> Response<Body> {
    let started = Instant::now();
    let (sandbox_id, outcome) = handle_body(app, tool, request.body().as_ref()).await;
    log_outcome(tool.name(), sandbox_id.as_deref(), &outcome, started);
    contract::respond(outcome)
}

/// Writes the one log line of an invocation: tool, sandbox id, outcome and duration, and for a
/// failure its internal cause. Never arguments, tokens, commands, contents or output.
pub fn log_outcome(
    tool: &str,
    sandbox_id: Option<&str>,
    outcome: &Result<Value, ToolError>,
    started: Instant,
) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(_) => tracing::info!(
            tool,
            sandbox_id,
            outcome = "success",
            elapsed_ms,
            "tool call"
        ),
        Err(error) => tracing::info!(
            tool,
            sandbox_id,
            outcome = error.code.as_str(),
            elapsed_ms,
            cause = error.source.as_ref().map(|cause| cause.to_string()),
            "tool call"
        ),
    }
}

fn decode<A: DeserializeOwned>(body: &[u8]) -> Result<ToolRequest<A>, ToolError> {
    contract::decode_request(body)
}

/// Decodes the body for `tool` and runs it; returns the sandbox id named by the call, for the
/// log line, with the outcome.
async fn handle_body(
    app: &App,
    tool: Tool,
    body: &[u8],
) -> (Option<String>, Result<Value, ToolError>) {
    match tool {
        Tool::CreateSandbox => match decode::<arguments::CreateSandboxArguments>(body) {
            Ok(request) => {
                let outcome =
                    create::create_sandbox(app, &request.context, request.arguments).await;
                let sandbox_id = outcome
                    .as_ref()
                    .ok()
                    .and_then(|result| result["sandbox_id"].as_str().map(str::to_owned));
                (sandbox_id, outcome)
            }
            Err(error) => (None, Err(error)),
        },
        Tool::Exec => match decode::<arguments::ExecArguments>(body) {
            Ok(request) => {
                let id = request.arguments.sandbox_id.clone();
                (
                    Some(id),
                    run_exec(app, &request.context, &request.arguments).await,
                )
            }
            Err(error) => (None, Err(error)),
        },
        Tool::ReadFile => match decode::<arguments::ReadFileArguments>(body) {
            Ok(request) => {
                let id = request.arguments.sandbox_id.clone();
                (
                    Some(id),
                    run_read(app, &request.context, &request.arguments).await,
                )
            }
            Err(error) => (None, Err(error)),
        },
        Tool::WriteFile => match decode::<arguments::WriteFileArguments>(body) {
            Ok(request) => {
                let id = request.arguments.sandbox_id.clone();
                (
                    Some(id),
                    run_write(app, &request.context, &request.arguments).await,
                )
            }
            Err(error) => (None, Err(error)),
        },
        Tool::ListSandboxes => match decode::<arguments::ListSandboxesArguments>(body) {
            Ok(request) => (
                None,
                manage::list_sandboxes(app, &request.context, request.arguments).await,
            ),
            Err(error) => (None, Err(error)),
        },
        Tool::ManageSandbox => match decode::<arguments::ManageSandboxArguments>(body) {
            Ok(request) => {
                let id = request.arguments.sandbox_id.clone();
                (
                    Some(id),
                    manage::manage_sandbox(app, &request.context, request.arguments).await,
                )
            }
            Err(error) => (None, Err(error)),
        },
    }
}

async fn run_exec(
    app: &App,
    context: &CallContext,
    arguments: &arguments::ExecArguments,
) -> Result<Value, ToolError> {
    let started = Instant::now();
    let requested = arguments.validate(&app.config)?;
    let (sandbox, owned) = access::open_running(app, context, &arguments.sandbox_id).await?;
    // A slow authorization or connect shortens the deadline instead of pushing the response
    // past API Gateway's timeout.
    let deadline = exec::deadline_within_budget(requested, started.elapsed());
    let result = exec::execute(&sandbox, arguments, deadline, &owned.state.workspace_path).await;
    sandbox.close().await;
    result
}

async fn run_read(
    app: &App,
    context: &CallContext,
    arguments: &arguments::ReadFileArguments,
) -> Result<Value, ToolError> {
    let started = Instant::now();
    arguments.validate(files::MAX_READ_WINDOW)?;
    let (sandbox, owned) = access::open_running(app, context, &arguments.sandbox_id).await?;
    let path = arguments::resolve_path(&owned.state.workspace_path, &arguments.path);
    let result = within_budget(
        started,
        &path,
        files::read_window(&sandbox, &path, arguments),
    )
    .await;
    sandbox.close().await;
    result
}

async fn run_write(
    app: &App,
    context: &CallContext,
    arguments: &arguments::WriteFileArguments,
) -> Result<Value, ToolError> {
    let started = Instant::now();
    let content = arguments.validate()?;
    let (sandbox, owned) = access::open_running(app, context, &arguments.sandbox_id).await?;
    let path = arguments::resolve_path(&owned.state.workspace_path, &arguments.path);
    let result = within_budget(
        started,
        &path,
        files::write(&sandbox, &path, &content, arguments),
    )
    .await;
    sandbox.close().await;
    result
}

/// Runs a file operation until the call's response budget runs out. A read or write on a FIFO
/// or a device can block forever inside the sandbox; the call then ends with `timeout` instead
/// of running into API Gateway's limit.
async fn within_budget(
    started: Instant,
    path: &str,
    operation: impl std::future::Future<Output = Result<Value, ToolError>>,
) -> Result<Value, ToolError> {
    let remaining = exec::RESPONSE_BUDGET.saturating_sub(started.elapsed());
    match tokio::time::timeout(remaining, operation).await {
        Ok(result) => result,
        Err(_) => Err(ToolError::new(
            contract::ErrorCode::Timeout,
            format!(
                "the file operation on {path} did not finish within {} s; if the path is a FIFO or \
                 a device, use deno_exec with a command that does not block",
                exec::RESPONSE_BUDGET.as_secs()
            ),
        )
        .with_retryable(false)),
    }
}

/// Handles `DELETE /sessions/{session_id}/sandboxes`: deletes every sandbox of the session.
pub async fn handle_session_cleanup(app: &App, request: Request) -> Response<Body> {
    let started = Instant::now();
    let path_session = session_from_path(&request);
    let outcome = match (
        decode::<serde_json::Map<String, Value>>(request.body().as_ref()),
        path_session,
    ) {
        (Err(error), _) => Err(error),
        (Ok(_), None) => Err(ToolError::invalid_argument(
            "the path has no session id; call DELETE /sessions/{session_id}/sandboxes",
        )),
        (Ok(decoded), Some(session_id)) => {
            if !decoded.arguments.is_empty() {
                Err(ToolError::invalid_argument(
                    "session cleanup takes no arguments; send {} or omit them",
                ))
            } else {
                manage::cleanup_session(app, &decoded.context, &session_id).await
            }
        }
    };
    log_outcome("deno_session_cleanup", None, &outcome, started);
    contract::respond(outcome)
}

/// Reads the session id from the route's path parameter, or from the raw path when the event
/// has none (function URLs and `cargo lambda watch` carry no path parameters).
fn session_from_path(request: &Request) -> Option<String> {
    if let Some(id) = request.path_parameters().first("session_id") {
        return Some(id.to_owned());
    }
    let path = request.uri().path();
    let rest = &path[path.find("/sessions/")? + "/sessions/".len()..];
    let (id, tail) = rest.split_once('/')?;
    (tail == "sandboxes" && !id.is_empty()).then(|| id.to_owned())
}
