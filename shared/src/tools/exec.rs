//! `deno_exec` on an open sandbox connection: the command runs as `bash -lc COMMAND` with the
//! text passed as one argument, so nothing on our side parses or interpolates it.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use crate::contract::ToolError;
use crate::deno::{DenoError, OutputCapture, Sandbox, SpawnOptions};
use crate::tools::arguments::{ExecArguments, MAX_COMMAND_BYTES, resolve_path};
use crate::tools::command::{CaptureLimits, CommandOutcome, SHUTDOWN_ALLOWANCE, run_command};
use crate::tools::display::clean_for_display;
use crate::tools::errors::from_deno;

/// Runs the command of `arguments` in `sandbox` and returns the tool result.
///
/// # Errors
/// [`ToolError`] when the command could not be started or the connection failed; the command's
/// own failure (non-zero exit, signal, deadline) is a successful result.
pub async fn execute(
    sandbox: &Sandbox,
    arguments: &ExecArguments,
    deadline: Duration,
    workspace: &str,
) -> Result<Value, ToolError> {
    let options = SpawnOptions {
        command: "bash".to_owned(),
        args: vec!["-lc".to_owned(), arguments.command.clone()],
        env: arguments.env.clone().unwrap_or_default(),
        clear_env: false,
        cwd: Some(match &arguments.cwd {
            Some(cwd) => resolve_path(workspace, cwd),
            None => workspace.to_owned(),
        }),
        stdin: arguments
            .stdin
            .as_ref()
            .map(|text| text.as_bytes().to_vec()),
    };
    let outcome = run_command(sandbox, options, deadline, CaptureLimits::default())
        .await
        .map_err(|error| match &error {
            // The sandbox refused to start the process: a caller's mistake, not our fault.
            DenoError::Application { error: inner, .. } => {
                let reason = inner.code.as_deref().unwrap_or(&inner.constructor_name);
                ToolError::invalid_argument(format!(
                    "the sandbox could not start the command ({reason}); check that cwd exists and \
                     is a directory, that env does not replace PATH, and that the command is \
                     shorter than {MAX_COMMAND_BYTES} bytes"
                ))
                .with_source(error)
            }
            _ => from_deno(error),
        })?;
    Ok(describe(&outcome, deadline, arguments.include_raw))
}

/// Time from the start of an exec call by which its response must be ready: 27 s, 2 s below
/// API Gateway's 29 s integration timeout.
pub const RESPONSE_BUDGET: Duration = Duration::from_secs(27);

/// Returns the deadline a command may have when `spent` of the [`RESPONSE_BUDGET`] is gone: the
/// requested one, or less so that the deadline plus the worst-case stop
/// ([`SHUTDOWN_ALLOWANCE`]) still ends within the budget. Never less than 1 s.
pub fn deadline_within_budget(requested: Duration, spent: Duration) -> Duration {
    let available = RESPONSE_BUDGET
        .saturating_sub(spent)
        .saturating_sub(SHUTDOWN_ALLOWANCE);
    requested.min(available).max(Duration::from_secs(1))
}

/// Builds the result fields from a finished command.
pub fn describe(outcome: &CommandOutcome, deadline: Duration, include_raw: bool) -> Value {
    let stdout = outcome.stdout.render();
    let stderr = outcome.stderr.render();
    let combined = outcome.combined.render();

    let (exit_code, signal, oom) = match &outcome.status {
        Some(status) => (
            json!(status.code),
            json!(status.signal),
            status.oom.is_some(),
        ),
        None => (Value::Null, Value::Null, false),
    };

    let mut notes = Vec::new();
    if outcome.timed_out {
        notes.push(format!(
            "the command exceeded its {} s deadline and was stopped (TERM, then KILL); output up to \
             that point is shown. Run long jobs in the background (nohup … > log 2>&1 &) and poll the log",
            deadline.as_secs_f64().round()
        ));
    }
    if outcome.abandoned {
        notes.push(match outcome.status {
            Some(_) => "the command exited but output was still arriving when the call ran out of \
                        time (output in transit, or a background process that keeps printing); \
                        the rest was not captured and the byte counts cover what arrived"
                .to_owned(),
            None => "the call stopped waiting for the stopped command: output still in transit \
                     was dropped and the exit status is unknown"
                .to_owned(),
        });
    }
    if outcome.streams_held_open {
        notes.push(
            "the command exited but a background process kept its output open; that process keeps \
             running and its later output is not captured. Redirect background output to a file \
             (cmd > log 2>&1 &) to avoid this"
                .to_owned(),
        );
    }
    if oom {
        notes.push("the sandbox ran out of memory and the process was killed".to_owned());
    }
    let truncated = stdout.truncated || stderr.truncated || combined.truncated;
    if truncated {
        notes.push(format!(
            "output was longer than the capture limit ({} bytes on stdout, {} bytes on stderr); \
             the first and last 32 KiB of each stream are kept. Redirect long output to a file \
             and read it with deno_read_file",
            stdout.total_bytes, stderr.total_bytes
        ));
    }

    let mut result = json!({
        "exit_code": exit_code,
        "signal": signal,
        "timed_out": outcome.timed_out,
        "stdout": stdout.text,
        "stderr": stderr.text,
        "output": clean_for_display(&combined.text),
        "truncated": truncated,
        "stdout_truncated": stdout.truncated,
        "stderr_truncated": stderr.truncated,
        "stdout_bytes": stdout.total_bytes,
        "stderr_bytes": stderr.total_bytes,
        "stdout_invalid_utf8": stdout.invalid_utf8,
        "stderr_invalid_utf8": stderr.invalid_utf8,
        "background_output_open": outcome.streams_held_open,
        "output_abandoned": outcome.abandoned,
        "oom": oom,
        "duration_ms": outcome.duration.as_millis() as u64,
    });
    if !notes.is_empty() {
        result["note"] = json!(notes.join(". "));
    }
    if include_raw {
        result["stdout_base64"] = json!(raw_base64(&outcome.stdout));
        result["stderr_base64"] = json!(raw_base64(&outcome.stderr));
    }
    result
}

/// Returns the kept bytes of a stream as base64; for a truncated stream these are the head and
/// the tail joined without a marker, as the `*_truncated` fields report.
fn raw_base64(capture: &OutputCapture) -> String {
    BASE64.encode(capture.kept_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_shrinks_with_spent_time() {
        let twenty = Duration::from_secs(20);
        assert_eq!(deadline_within_budget(twenty, Duration::ZERO), twenty);
        assert_eq!(
            deadline_within_budget(twenty, Duration::from_secs(3)),
            Duration::from_millis(18_500)
        );
        assert_eq!(
            deadline_within_budget(twenty, Duration::from_secs(30)),
            Duration::from_secs(1)
        );
    }
}
