//! The one error type of the Deno client, with the facts each caller needs: HTTP status, Deno's
//! `{code, message}`, the trace id for logs, close codes, and the sandbox's serialized errors.
//!
//! Decision: no variant carries a token, command text, file contents or output, so every
//! `DenoError` may be logged as it is.

use std::time::Duration;

use serde::Deserialize;

use crate::contract::ErrorCode;

/// Deno's error code for a rejected access token.
pub const INVALID_TOKEN_CODE: &str = "INVALID_TOKEN";

/// A failure talking to Deno Deploy's sandbox or console API.
#[derive(Debug, thiserror::Error)]
pub enum DenoError {
    /// Deno rejected the token (HTTP 401 or the code `INVALID_TOKEN`); the user must connect a new
    /// organization token.
    #[error("Deno rejected the access token (HTTP {status}): connect a new organization token")]
    InvalidToken {
        /// HTTP status of the refusal.
        status: u16,
        /// Deno's message, if the body had one.
        message: Option<String>,
        /// Value of the `x-deno-trace-id` response header.
        trace_id: Option<String>,
    },

    /// The sandbox does not exist or is already gone (HTTP 404 or 410).
    #[error("sandbox {sandbox_id} not found (HTTP {status})")]
    SandboxNotFound {
        /// The sandbox id the request named.
        sandbox_id: String,
        /// HTTP status of the refusal.
        status: u16,
        /// Value of the `x-deno-trace-id` response header.
        trace_id: Option<String>,
    },

    /// Deno answered a websocket upgrade or an HTTP call with an error status, for example a plan
    /// or quota refusal.
    #[error("{operation} failed with HTTP {status}{}: {message}", code_suffix(.code))]
    Rejected {
        /// The operation, such as `create sandbox` or `extend timeout`.
        operation: &'static str,
        /// HTTP status of the refusal.
        status: u16,
        /// Deno's `code` field, when the body was `{code, message}` JSON.
        code: Option<String>,
        /// Deno's `message` field, or the start of a body that was not JSON.
        message: String,
        /// Value of the `x-deno-trace-id` response header.
        trace_id: Option<String>,
    },

    /// The websocket closed while a call or stream was pending, or before the call was sent.
    #[error("connection to the sandbox closed (code {}, reason {reason:?})", close_code_text(*.code))]
    Closed {
        /// The close code, or `None` when the socket ended without a close frame.
        code: Option<u16>,
        /// The close reason sent by the peer, or a description of how the socket ended.
        reason: String,
    },

    /// An operation passed its deadline.
    #[error("{operation} timed out after {} ms", .after.as_millis())]
    Timeout {
        /// The awaited operation, such as `processWait` or `websocket handshake`.
        operation: String,
        /// The deadline that passed.
        after: Duration,
    },

    /// The sandbox responded with a JSON-RPC protocol error (top-level `error`).
    #[error("sandbox protocol error {code} in {method}: {message}")]
    Protocol {
        /// The RPC method that failed.
        method: String,
        /// JSON-RPC error code, such as -32601 for an unknown method.
        code: i64,
        /// JSON-RPC error message.
        message: String,
    },

    /// The operation failed inside the sandbox (`result.error`), such as a missing file.
    #[error("{method} failed in the sandbox: {error}")]
    Application {
        /// The RPC method that failed.
        method: String,
        /// The error the sandbox serialized.
        error: SerializedError,
    },

    /// The peer sent something this client cannot use: a frame that is not JSON, JSON that is not
    /// JSON-RPC, or a result of the wrong shape.
    #[error("invalid message from the sandbox: {0}")]
    InvalidMessage(String),

    /// A caller passed an argument that cannot be sent, such as a malformed sandbox id.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// The argument.
        name: &'static str,
        /// The problem with the value.
        reason: String,
    },

    /// The websocket failed below the protocol: DNS, TCP, TLS or framing.
    #[error("websocket transport to the sandbox failed")]
    Transport(#[source] Box<tokio_tungstenite::tungstenite::Error>),

    /// An HTTP call to the sandbox or console API failed before a response arrived.
    #[error("HTTP request to {operation} failed")]
    Http {
        /// The operation, such as `delete sandbox`.
        operation: &'static str,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// The TLS configuration could not be built.
    #[error("failed to configure TLS")]
    Tls(#[source] rustls::Error),
}

impl DenoError {
    /// Returns the `x-deno-trace-id` Deno attached to the refusal, for logs and support requests.
    pub fn trace_id(&self) -> Option<&str> {
        match self {
            Self::InvalidToken { trace_id, .. }
            | Self::SandboxNotFound { trace_id, .. }
            | Self::Rejected { trace_id, .. } => trace_id.as_deref(),
            _ => None,
        }
    }

    /// Returns whether trying the same call again later may succeed: lost or silent connections,
    /// timeouts, transport failures and HTTP 429 or 5xx responses.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Closed { .. } | Self::Timeout { .. } | Self::Transport(_) => true,
            Self::Http { source, .. } => source.is_timeout() || source.is_connect(),
            Self::Rejected { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// Maps this error to the code a tool reports to the agent.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::InvalidToken { .. } => ErrorCode::ConnectionRequired,
            Self::SandboxNotFound { .. } => ErrorCode::SandboxNotFound,
            Self::Rejected { status, .. } if *status == 429 || *status >= 500 => {
                ErrorCode::UpstreamUnavailable
            }
            Self::Rejected { .. } => ErrorCode::UpstreamRejected,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::Closed { .. } | Self::Transport(_) | Self::Http { .. } => {
                ErrorCode::UpstreamUnavailable
            }
            Self::Protocol { .. } | Self::InvalidMessage(_) | Self::Application { .. } => {
                ErrorCode::Internal
            }
            Self::Tls(_) => ErrorCode::Internal,
        }
    }
}

/// Maximum number of characters of a non-JSON error body kept in [`DenoError::Rejected`].
const BODY_EXCERPT_CHARS: usize = 300;

/// The `{code, message}` body Deno sends with a refused handshake or HTTP call.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

/// Builds the error for a refused websocket upgrade or HTTP call from its status, trace id and
/// body. `sandbox_id` names the sandbox the request addressed, when there is one, so that 404 and
/// 410 become [`DenoError::SandboxNotFound`].
pub(crate) fn rejection(
    operation: &'static str,
    sandbox_id: Option<&str>,
    status: u16,
    trace_id: Option<String>,
    body: &[u8],
) -> DenoError {
    let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(parsed) => (parsed.code, parsed.message),
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let excerpt: String = text.trim().chars().take(BODY_EXCERPT_CHARS).collect();
            (None, (!excerpt.is_empty()).then_some(excerpt))
        }
    };

    if status == 401 || code.as_deref() == Some(INVALID_TOKEN_CODE) {
        return DenoError::InvalidToken {
            status,
            message,
            trace_id,
        };
    }
    if let (Some(sandbox_id), 404 | 410) = (sandbox_id, status) {
        return DenoError::SandboxNotFound {
            sandbox_id: sandbox_id.to_owned(),
            status,
            trace_id,
        };
    }
    DenoError::Rejected {
        operation,
        status,
        code,
        message: message.unwrap_or_else(|| "no error message in the response".to_owned()),
        trace_id,
    }
}

fn code_suffix(code: &Option<String>) -> String {
    code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
}

fn close_code_text(code: Option<u16>) -> String {
    code.map_or_else(|| "none".to_owned(), |c| c.to_string())
}

/// An error serialized by the sandbox: the `SerializedError` object of the result envelope and of
/// `$sandbox.stream.error`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase")]
#[error("{constructor_name}{}: {message}", code_suffix(.code))]
pub struct SerializedError {
    /// Class name, such as `NotFound`, `PermissionDenied` or `TypeError`.
    pub constructor_name: String,
    /// The error message.
    pub message: String,
    /// Errno-style code, such as `ENOENT`.
    #[serde(default)]
    pub code: Option<String>,
    /// `DOMException` name, such as `AbortError`.
    #[serde(default)]
    pub name: Option<String>,
}

impl SerializedError {
    /// Returns whether the error means "no such file or process" (`NotFound`, or code `ENOENT`).
    pub fn is_not_found(&self) -> bool {
        self.constructor_name == "NotFound" || self.code.as_deref() == Some("ENOENT")
    }

    /// Builds an error from a bare message; Python's SDK sends stream errors as plain strings.
    pub fn from_message(message: impl Into<String>) -> Self {
        Self {
            constructor_name: "Error".to_owned(),
            message: message.into(),
            code: None,
            name: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialized_error_decodes_protocol_fields() {
        let value = serde_json::json!({
            "constructorName": "NotFound",
            "message": "No such file or directory (os error 2): readfile '/nope'",
            "code": "ENOENT",
            "stack": "NotFound: No such file or directory\n    at <sandbox>:1:1",
            "cause": null,
            "errors": null,
            "name": null,
            "suppressed": null,
            "error": null
        });
        let error: SerializedError = serde_json::from_value(value).expect("decode");

        assert_eq!(error.constructor_name, "NotFound");
        assert_eq!(error.code.as_deref(), Some("ENOENT"));
        assert!(error.is_not_found());
        assert_eq!(
            error.to_string(),
            "NotFound (ENOENT): No such file or directory (os error 2): readfile '/nope'"
        );
    }

    #[test]
    fn error_codes_follow_status() {
        let rejected = |status| DenoError::Rejected {
            operation: "create sandbox",
            status,
            code: Some("QUOTA_EXCEEDED".to_owned()),
            message: "too many sandboxes".to_owned(),
            trace_id: Some("trace-1".to_owned()),
        };

        assert_eq!(rejected(402).error_code(), ErrorCode::UpstreamRejected);
        assert_eq!(rejected(429).error_code(), ErrorCode::UpstreamUnavailable);
        assert!(rejected(503).is_retryable());
        assert!(!rejected(403).is_retryable());
        assert_eq!(rejected(402).trace_id(), Some("trace-1"));
        assert_eq!(
            rejected(402).to_string(),
            "create sandbox failed with HTTP 402 (QUOTA_EXCEEDED): too many sandboxes"
        );
    }

    #[test]
    fn closed_error_names_missing_code() {
        let error = DenoError::Closed {
            code: None,
            reason: "connection reset".to_owned(),
        };
        assert_eq!(
            error.to_string(),
            "connection to the sandbox closed (code none, reason \"connection reset\")"
        );
    }
}
