//! Conversion of Deno client failures into contract errors with messages an agent can act on.

use crate::contract::{ErrorCode, ToolError};
use crate::deno::DenoError;

/// Converts a Deno client failure into a contract error. The client's error stays attached as
/// the cause for the log line; the message names the next step.
pub fn from_deno(error: DenoError) -> ToolError {
    let code = error.error_code();
    let message = match &error {
        DenoError::InvalidToken { .. } => {
            "Deno rejected the connected token as invalid or expired; reconnect Deno Deploy with a new \
             organization token"
                .to_owned()
        }
        DenoError::SandboxNotFound { sandbox_id, .. } => format!(
            "sandbox {sandbox_id} no longer exists at Deno (it expired or was deleted); create a new one \
             with deno_create_sandbox"
        ),
        DenoError::Rejected { status, message, .. } if code == ErrorCode::UpstreamRejected => format!(
            "Deno refused the request (HTTP {status}): {message}; check the plan limits of the Deno \
             Deploy organization"
        ),
        DenoError::Timeout { operation, after } => format!(
            "{operation} at Deno timed out after {} ms; retry the call",
            after.as_millis()
        ),
        DenoError::InvalidArgument { name, reason } => format!("invalid {name}: {reason}"),
        _ if code == ErrorCode::UpstreamUnavailable => {
            "the Deno sandbox service could not be reached or closed the connection; retry the call".to_owned()
        }
        _ => "internal error talking to the Deno sandbox service; the failure was logged".to_owned(),
    };
    let retryable = error.is_retryable();
    let mut converted = ToolError::new(code, message).with_retryable(retryable);
    if code == ErrorCode::ConnectionRequired {
        converted = converted.with_provider("deno");
    }
    converted.with_source(error)
}
