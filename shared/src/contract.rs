//! The HTTP contract between the agent platform and the functions: the request envelope
//! `{"context": {...}, "arguments": {...}}`, the success body `{"status": "success", "result"}`
//! and the error body `{"status": "error", "error": {"code", "message", "retryable"}}`.
//!
//! Decision: outcomes inside a sandbox (a non-zero exit, a missing file) are successes; an error
//! here always means the call itself could not be carried out.

use lambda_http::{Body, Response};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

/// Stable error codes of the contract, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request or one of its arguments is invalid (400).
    InvalidArgument,
    /// The caller's organization has not enabled the capability (403).
    CapabilityDisabled,
    /// The caller may not do this (403).
    Forbidden,
    /// The sandbox does not exist, is not the session's, or is gone (404).
    SandboxNotFound,
    /// The request conflicts with the current state (409).
    Conflict,
    /// The user has no Deno connection; the platform shows its connect flow (428).
    ConnectionRequired,
    /// Deno refused the request: bad token, plan limits, quota (422).
    UpstreamRejected,
    /// Deno or AWS could not be reached or failed transiently (503).
    UpstreamUnavailable,
    /// The call ran out of time (504).
    Timeout,
    /// A fault in this service (500).
    Internal,
}

impl ErrorCode {
    /// Returns the HTTP status this code is sent with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidArgument => 400,
            Self::CapabilityDisabled | Self::Forbidden => 403,
            Self::SandboxNotFound => 404,
            Self::Conflict => 409,
            Self::UpstreamRejected => 422,
            Self::ConnectionRequired => 428,
            Self::Internal => 500,
            Self::UpstreamUnavailable => 503,
            Self::Timeout => 504,
        }
    }

    /// Returns the code as it appears in the response body.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::CapabilityDisabled => "capability_disabled",
            Self::Forbidden => "forbidden",
            Self::SandboxNotFound => "sandbox_not_found",
            Self::Conflict => "conflict",
            Self::ConnectionRequired => "connection_required",
            Self::UpstreamRejected => "upstream_rejected",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::Timeout => "timeout",
            Self::Internal => "internal",
        }
    }

    /// Returns whether the same call may succeed when retried unchanged.
    pub fn retryable_by_default(self) -> bool {
        matches!(self, Self::UpstreamUnavailable | Self::Timeout)
    }
}

/// An error returned by a handler: a stable code, a message the agent can act on, and the
/// internal cause, which is logged once and never sent to the caller.
#[derive(Debug, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ToolError {
    /// Stable code of the failure.
    pub code: ErrorCode,
    /// Message for the caller: names the failing value and the next step.
    pub message: String,
    /// Whether retrying the same call may succeed.
    pub retryable: bool,
    /// Provider the caller must connect, set for [`ErrorCode::ConnectionRequired`].
    pub provider: Option<&'static str>,
    /// Internal cause, for logs only.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl ToolError {
    /// Creates an error with `code`'s default retry hint.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retryable: code.retryable_by_default(),
            provider: None,
            source: None,
        }
    }

    /// Creates an `invalid_argument` error.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// Creates an `internal` error whose cause is logged but not returned.
    pub fn internal(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::new(
            ErrorCode::Internal,
            "internal error; the failure was logged, retry later",
        )
        .with_source(source)
    }

    /// Attaches the internal cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Overrides the retry hint.
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Names the provider the caller must connect.
    pub fn with_provider(mut self, provider: &'static str) -> Self {
        self.provider = Some(provider);
        self
    }

    /// Returns the error body of the contract.
    pub fn to_body(&self) -> Value {
        let mut error = json!({
            "code": self.code.as_str(),
            "message": self.message,
            "retryable": self.retryable,
        });
        if let Some(provider) = self.provider {
            error["provider"] = json!(provider);
        }
        json!({ "status": "error", "error": error })
    }
}

/// Who is acting, as stated by the platform in every request.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CallContext {
    /// Organization of the user.
    pub org_id: String,
    /// User on whose behalf the agent acts.
    pub user_id: String,
    /// Agent session; sandboxes belong to it.
    pub session_id: String,
    /// Platform's id for this tool call; makes create idempotent.
    #[serde(default)]
    pub tool_call_id: Option<String>,
}

impl CallContext {
    /// Rejects empty or oversized ids, naming the field.
    ///
    /// # Errors
    /// `invalid_argument` naming the first bad field.
    pub fn validate(&self) -> Result<(), ToolError> {
        let mut fields = vec![
            ("context.org_id", self.org_id.as_str()),
            ("context.user_id", self.user_id.as_str()),
            ("context.session_id", self.session_id.as_str()),
        ];
        if let Some(id) = &self.tool_call_id {
            fields.push(("context.tool_call_id", id.as_str()));
        }
        for (field, value) in fields {
            validate_id(field, value)?;
        }
        Ok(())
    }
}

/// Longest id accepted in the context. Session ids are sent to Deno as a label value, which Deno
/// limits to 128 bytes.
pub const MAX_ID_LENGTH: usize = 128;

/// Rejects an empty, oversized or control-character id, naming `field`.
///
/// # Errors
/// `invalid_argument` naming `field`.
pub fn validate_id(field: &str, value: &str) -> Result<(), ToolError> {
    if value.trim().is_empty() {
        return Err(ToolError::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    if value.len() > MAX_ID_LENGTH {
        return Err(ToolError::invalid_argument(format!(
            "{field} is {} bytes long; the maximum is {MAX_ID_LENGTH}",
            value.len()
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ToolError::invalid_argument(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

/// A decoded request: the acting context and the tool's arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest<A> {
    /// Who is acting.
    pub context: CallContext,
    /// The tool's typed arguments.
    pub arguments: A,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnvelope {
    context: Option<Value>,
    #[serde(default)]
    arguments: Option<Value>,
}

/// Decodes a request body into the context and the typed arguments `A`.
///
/// A missing `arguments` member is read as `{}`. Messages name the member and serde's reason
/// but never echo argument values, which may hold file contents.
///
/// # Errors
/// `invalid_argument` for a body that is not JSON, lacks `context`, or has bad arguments.
pub fn decode_request<A: DeserializeOwned>(body: &[u8]) -> Result<ToolRequest<A>, ToolError> {
    if body.is_empty() {
        return Err(ToolError::invalid_argument(
            "request body is empty; send {\"context\": {...}, \"arguments\": {...}}",
        ));
    }
    let envelope: RawEnvelope = serde_json::from_slice(body).map_err(|err| {
        if let Some(position) = lone_surrogate_escape(body) {
            ToolError::invalid_argument(format!(
                "request body is not valid JSON: the \\u escape at byte {position} is a lone UTF-16 \
                 surrogate (D800-DFFF without its pair), which has no UTF-8 form; send such \
                 content base64-encoded with \"encoding\": \"base64\""
            ))
        } else if err.is_data() {
            // Valid JSON of the wrong shape. serde's text for a non-object names an internal
            // type, so it is kept only when it names a member.
            let detail = err.to_string();
            let detail = if detail.contains("RawEnvelope") { String::new() } else { format!(" ({detail})") };
            ToolError::invalid_argument(format!(
                "request body must be a JSON object {{\"context\": {{...}}, \"arguments\": {{...}}}} \
                 with no other members{detail}; see the README for the request shape"
            ))
        } else {
            ToolError::invalid_argument(format!("request body is not a valid request: {err}"))
        }
    })?;
    let context_value = envelope.context.ok_or_else(|| {
        ToolError::invalid_argument(
            "request body has no context; send context.org_id, user_id and session_id",
        )
    })?;
    let context: CallContext = serde_path_to_error::deserialize(context_value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            ToolError::invalid_argument(format!("invalid context: {inner}"))
        } else {
            ToolError::invalid_argument(format!("invalid context.{path}: {inner}"))
        }
    })?;
    context.validate()?;

    let arguments_value = envelope.arguments.unwrap_or_else(|| json!({}));
    if !arguments_value.is_object() {
        return Err(ToolError::invalid_argument(
            "arguments must be a JSON object",
        ));
    }
    let arguments: A = serde_path_to_error::deserialize(arguments_value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            ToolError::invalid_argument(format!("invalid arguments: {inner}"))
        } else {
            ToolError::invalid_argument(format!("invalid argument {path}: {inner}"))
        }
    })?;
    Ok(ToolRequest { context, arguments })
}

/// Returns the 1-based byte position of the first `\uXXXX` escape in `body` that is a UTF-16
/// surrogate without its pair, or `None`. Escaped backslashes are skipped, so `\\ud800` (text)
/// is not an escape.
fn lone_surrogate_escape(body: &[u8]) -> Option<usize> {
    let escape_at = |index: usize| -> Option<u16> {
        let digits = body.get(index..index + 6)?;
        if digits[0] != b'\\' || digits[1] != b'u' {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&digits[2..]).ok()?, 16).ok()
    };
    let mut index = 0;
    while index < body.len() {
        if body[index] != b'\\' {
            index += 1;
            continue;
        }
        match escape_at(index) {
            Some(0xD800..=0xDBFF) => match escape_at(index + 6) {
                Some(0xDC00..=0xDFFF) => index += 12,
                _ => return Some(index + 1),
            },
            Some(0xDC00..=0xDFFF) => return Some(index + 1),
            Some(_) => index += 6,
            // Any other escape is two bytes, such as `\\` or `\"`.
            None => index += 2,
        }
    }
    None
}

/// Builds the HTTP response for a handler outcome.
pub fn respond(outcome: Result<Value, ToolError>) -> Response<Body> {
    let (status, body) = match outcome {
        Ok(result) => (200, json!({ "status": "success", "result": result })),
        Err(error) => (error.code.http_status(), error.to_body()),
    };
    json_response(status, &body)
}

/// Builds a JSON response with `status`.
pub fn json_response(status: u16, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_string()));
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Arguments {
        sandbox_id: String,
    }

    fn body(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    #[test]
    fn decode_request_reads_context_and_arguments() {
        let request: ToolRequest<Arguments> = decode_request(&body(
            r#"{"context":{"org_id":"o","user_id":"u","session_id":"s","tool_call_id":"t"},"arguments":{"sandbox_id":"sbx"}}"#,
        ))
        .expect("valid request");

        assert_eq!(request.context.org_id, "o");
        assert_eq!(request.context.tool_call_id.as_deref(), Some("t"));
        assert_eq!(
            request.arguments,
            Arguments {
                sandbox_id: "sbx".into()
            }
        );
    }

    #[test]
    fn lone_surrogates_are_found() {
        assert_eq!(lone_surrogate_escape(br#""a\ud800""#), Some(3));
        assert_eq!(lone_surrogate_escape(br#""\udc00x""#), Some(2));
        assert_eq!(lone_surrogate_escape(br#""\ud800\u0041""#), Some(2));
        assert_eq!(lone_surrogate_escape(br#""\ud83e\udd80 \u00e9""#), None);
        assert_eq!(lone_surrogate_escape(br#""\\ud800""#), None);
    }

    #[test]
    fn decode_request_rejects_bad_bodies() {
        let cases = [
            ("", "request body is empty"),
            ("{", "not a valid request"),
            (r#"{"arguments":{}}"#, "no context"),
            (r#"{"context":{"org_id":"o","user_id":"u"}}"#, "session_id"),
            (
                r#"{"context":{"org_id":"o","user_id":"u","session_id":" "}}"#,
                "context.session_id must not be empty",
            ),
            (
                r#"{"context":{"org_id":"o","user_id":"u","session_id":"s"},"arguments":[]}"#,
                "must be a JSON object",
            ),
            (
                r#"{"context":{"org_id":"o","user_id":"u","session_id":"s"},"arguments":{"sandbox_id":"x","extra":1}}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"context":{"org_id":"o","user_id":"u","session_id":"s"},"arguments":{"sandbox_id":5}}"#,
                "invalid type",
            ),
            (
                r#"{"context":{"org_id":"o","user_id":"u","session_id":"s"},"other":1}"#,
                "unknown field `other`",
            ),
        ];
        for (text, expected) in cases {
            let error = decode_request::<Arguments>(&body(text)).expect_err(text);
            assert_eq!(error.code, ErrorCode::InvalidArgument, "{text}");
            assert!(
                error.message.contains(expected),
                "{text}: {}",
                error.message
            );
        }
    }

    #[test]
    fn respond_maps_codes_to_statuses() {
        let ok = respond(Ok(json!({"n": 1})));
        assert_eq!(ok.status(), 200);
        let Body::Text(text) = ok.body() else {
            panic!("text body")
        };
        assert_eq!(text, r#"{"result":{"n":1},"status":"success"}"#);

        let missing = respond(Err(ToolError::new(
            ErrorCode::ConnectionRequired,
            "connect",
        )
        .with_provider("deno")));
        assert_eq!(missing.status(), 428);
        let Body::Text(text) = missing.body() else {
            panic!("text body")
        };
        let value: Value = serde_json::from_str(text).expect("json");
        assert_eq!(value["error"]["code"], "connection_required");
        assert_eq!(value["error"]["provider"], "deno");
        assert_eq!(value["error"]["retryable"], false);
    }

    #[test]
    fn internal_error_hides_cause() {
        let error = ToolError::internal(std::io::Error::other("table secret-name missing"));
        let text = error.to_body().to_string();
        assert!(!text.contains("secret-name"), "{text}");
        assert_eq!(error.code.http_status(), 500);
    }
}
