//! The `deno_connection` function: `PUT`, `GET` and `DELETE /connections/deno` connect, show
//! and remove the caller's Deno Deploy organization token.
//!
//! Request body: `{"context": {"org_id", "user_id", "session_id"}, "arguments": {"token":
//! "ddo_…"}}` for `PUT`. `GET` and `DELETE` take the context only.
//!
//! Decision: `PUT` requires the organization's capability to be enabled, so no token is stored
//! for an organization that cannot use it. `GET` and `DELETE` work regardless, so a user can
//! always inspect and remove a token. `GET` reads only the non-secret hint and never opens the
//! sealed token.

mod verifier;

use std::time::Instant;

use lambda_http::{Body, Request, Response};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use verifier::{
    CREATE_TOKEN_HINT, HttpTokenVerifier, INVALID_TOKEN_CODE, StaticTokenVerifier, TokenVerifier,
    VERIFY_PATH, VerifyError,
};

use crate::bootstrap::App;
use crate::capability;
use crate::contract::{self, CallContext, ToolError};
use crate::crypto::EncryptionContext;
use crate::secret::{DenoToken, ORGANIZATION_TOKEN_PREFIX, PERSONAL_TOKEN_PREFIX};
use crate::store::{ConnectionRecord, DENO_PROVIDER, TokenKind};

/// Name of the function, used in logs.
pub const FUNCTION_NAME: &str = "deno_connection";
/// Minimum number of characters accepted after `ddo_`.
// NOTE: Deno does not publish the token format. Accepting 16 to 256 letters, digits, `-` or `_`
// after the prefix is a guess, so an unusual real token may be rejected here before Deno sees it.
pub const MIN_TOKEN_BODY_LENGTH: usize = 16;
/// Maximum number of characters accepted after `ddo_`.
pub const MAX_TOKEN_BODY_LENGTH: usize = 256;

/// Checks the form of a token pasted by a user and returns it trimmed. Only organization tokens
/// are accepted. Messages never repeat any part of the token.
///
/// # Errors
/// `invalid_argument` for an empty, personal, malformed or unknown-prefix token.
pub fn parse_organization_token(raw: &str) -> Result<DenoToken, ToolError> {
    let token = raw.trim();
    if token.is_empty() {
        return Err(ToolError::invalid_argument(format!(
            "arguments.token is empty; {CREATE_TOKEN_HINT} and pass it as arguments.token"
        )));
    }
    if token.starts_with(PERSONAL_TOKEN_PREFIX) {
        return Err(ToolError::invalid_argument(format!(
            "personal tokens (ddp_…) are not supported yet; {CREATE_TOKEN_HINT} and connect that token instead"
        )));
    }
    let Some(body) = token.strip_prefix(ORGANIZATION_TOKEN_PREFIX) else {
        return Err(ToolError::invalid_argument(format!(
            "arguments.token is not a Deno Deploy organization token, which starts with ddo_; {CREATE_TOKEN_HINT}"
        )));
    };
    let well_formed = (MIN_TOKEN_BODY_LENGTH..=MAX_TOKEN_BODY_LENGTH).contains(&body.len())
        && body
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_');
    if !well_formed {
        return Err(ToolError::invalid_argument(format!(
            "arguments.token is malformed: after ddo_ an organization token has {MIN_TOKEN_BODY_LENGTH} to {MAX_TOKEN_BODY_LENGTH} letters, digits, '-' or '_'; copy the whole token from the Deno Deploy console"
        )));
    }
    Ok(DenoToken::new(token))
}

/// A token as it arrives in the request body, zeroized when dropped.
struct TokenArgument(SecretString);

impl<'de> Deserialize<'de> for TokenArgument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| Self(SecretString::from(text)))
    }
}

impl std::fmt::Debug for TokenArgument {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("TokenArgument([REDACTED])")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutConnectionArguments {
    token: TokenArgument,
}

/// Arguments of requests that take none.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoArguments {}

fn format_time(value: OffsetDateTime) -> String {
    value.format(&Rfc3339).unwrap_or_default()
}

fn connected_view(record: &ConnectionRecord) -> Value {
    json!({
        "provider": record.provider,
        "status": "connected",
        "token_kind": record.token_kind.as_str(),
        "token_hint": record.token_hint,
        "org_id": record.org_id,
        "connected_at": format_time(record.created_at),
        "updated_at": format_time(record.updated_at),
        "validated_at": format_time(record.validated_at),
    })
}

/// Connects `token` for the caller: checks the capability, verifies the token with Deno, seals
/// it and stores it. Replacing a token updates the existing record under its version.
///
/// # Errors
/// `capability_disabled`, `upstream_rejected` for a token Deno refuses, `upstream_unavailable`
/// when Deno, KMS or DynamoDB cannot be reached, `conflict` when a concurrent request won.
pub async fn put_connection(
    app: &App,
    context: &CallContext,
    token: &DenoToken,
) -> Result<Value, ToolError> {
    capability::require_enabled(app, &context.org_id).await?;
    app.token_verifier.verify(token).await?;
    let validated_at = OffsetDateTime::now_utc();

    let sealed_token = app
        .sealer
        .seal(
            &EncryptionContext::deno_connection(&context.user_id),
            token.expose().as_bytes(),
        )
        .await?;

    let existing = app.connections.get(&context.user_id, DENO_PROVIDER).await?;
    let record = ConnectionRecord {
        user_id: context.user_id.clone(),
        provider: DENO_PROVIDER.to_owned(),
        org_id: context.org_id.clone(),
        token_kind: TokenKind::Organization,
        token_hint: token.hint(),
        sealed_token,
        created_at: existing
            .as_ref()
            .map_or(validated_at, |record| record.created_at),
        updated_at: validated_at,
        validated_at,
        version: existing.as_ref().map_or(1, |record| record.version + 1),
    };
    let expected_version = existing.as_ref().map(|record| record.version);
    app.connections.put(&record, expected_version).await?;
    tracing::info!(
        user_id = %context.user_id,
        org_id = %context.org_id,
        replaced = existing.is_some(),
        version = record.version,
        "deno connection stored"
    );

    let mut view = connected_view(&record);
    view["replaced"] = json!(existing.is_some());
    Ok(view)
}

/// Returns the caller's connection status and token hint, never the token.
///
/// # Errors
/// `upstream_unavailable` or `internal` when the store fails.
pub async fn get_connection(app: &App, context: &CallContext) -> Result<Value, ToolError> {
    let record = app.connections.get(&context.user_id, DENO_PROVIDER).await?;
    Ok(match record {
        Some(record) => connected_view(&record),
        None => json!({ "provider": DENO_PROVIDER, "status": "not_connected" }),
    })
}

/// Removes the caller's connection; removing a missing one succeeds with `deleted: false`.
///
/// # Errors
/// `upstream_unavailable` or `internal` when the store fails.
pub async fn delete_connection(app: &App, context: &CallContext) -> Result<Value, ToolError> {
    let deleted = app
        .connections
        .delete(&context.user_id, DENO_PROVIDER)
        .await?;
    tracing::info!(user_id = %context.user_id, deleted, "deno connection deleted");
    Ok(json!({ "provider": DENO_PROVIDER, "status": "not_connected", "deleted": deleted }))
}

async fn dispatch(app: &App, method: &http::Method, body: &[u8]) -> Result<Value, ToolError> {
    match *method {
        http::Method::PUT => {
            let request = contract::decode_request::<PutConnectionArguments>(body)?;
            let token = parse_organization_token(request.arguments.token.0.expose_secret())?;
            put_connection(app, &request.context, &token).await
        }
        http::Method::GET => {
            let request = contract::decode_request::<NoArguments>(body)?;
            get_connection(app, &request.context).await
        }
        http::Method::DELETE => {
            let request = contract::decode_request::<NoArguments>(body)?;
            delete_connection(app, &request.context).await
        }
        ref other => Err(ToolError::invalid_argument(format!(
            "method {other} is not supported on /connections/deno; use PUT to connect, GET to show or DELETE to remove the token"
        ))),
    }
}

/// Handles one API Gateway request to `/connections/deno` and always returns a contract
/// response.
pub async fn handle_http(app: &App, request: Request) -> Response<Body> {
    let started = Instant::now();
    let method = request.method().clone();
    let outcome = dispatch(app, &method, request.body().as_ref()).await;
    log_outcome(FUNCTION_NAME, method.as_str(), &outcome, started);
    contract::respond(outcome)
}

/// Writes the one log line of an invocation: function, method, outcome code, duration and, for
/// failures, the internal cause chain. Causes name ids and statuses, never secrets.
pub(crate) fn log_outcome(
    function: &'static str,
    method: &str,
    outcome: &Result<Value, ToolError>,
    started: Instant,
) {
    let elapsed_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(_) => tracing::info!(function, method, outcome = "success", elapsed_ms, "request"),
        Err(error) => {
            let mut cause = Vec::new();
            let mut next: Option<&(dyn std::error::Error + 'static)> = error
                .source
                .as_deref()
                .map(|source| source as &(dyn std::error::Error + 'static));
            while let Some(current) = next {
                cause.push(current.to_string());
                next = current.source();
            }
            tracing::info!(
                function,
                method,
                outcome = error.code.as_str(),
                elapsed_ms,
                cause = (!cause.is_empty()).then(|| cause.join(": ")),
                "request"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::ErrorCode;
    use crate::store::CapabilityRecord;
    use crate::store::DENO_CAPABILITY;

    const TOKEN: &str = "ddo_unittesttoken00000000000000wxyz";

    fn context(user_id: &str) -> CallContext {
        CallContext {
            org_id: "org-1".into(),
            user_id: user_id.into(),
            session_id: "session-1".into(),
            tool_call_id: None,
        }
    }

    async fn app_with_enabled_org() -> App {
        let app = App::in_memory_for_tests([TOKEN]);
        app.capabilities
            .put(
                &CapabilityRecord {
                    org_id: "org-1".into(),
                    capability: DENO_CAPABILITY.into(),
                    enabled: true,
                    updated_by: "admin".into(),
                    updated_at: OffsetDateTime::now_utc(),
                    version: 1,
                },
                None,
            )
            .await
            .expect("enable");
        app
    }

    #[test]
    fn parse_token_trims_organization_token() {
        let token = parse_organization_token(&format!("  {TOKEN}\n")).expect("valid");
        assert_eq!(token.expose(), TOKEN);
    }

    #[test]
    fn parse_token_rejections() {
        let cases = [
            ("", "arguments.token is empty"),
            ("   \t", "arguments.token is empty"),
            (
                "ddp_personaltoken000000000000000",
                "personal tokens (ddp_…) are not supported yet",
            ),
            ("ddo_short", "arguments.token is malformed"),
            (
                "ddo_has space inside0000000000",
                "arguments.token is malformed",
            ),
            (
                "ddo_ünïcode0000000000000000000",
                "arguments.token is malformed",
            ),
            ("ghp_0000000000000000000000000000", "starts with ddo_"),
            ("DDO_0000000000000000000000000000", "starts with ddo_"),
        ];
        for (raw, expected) in cases {
            let error = parse_organization_token(raw).expect_err(raw);
            assert_eq!(error.code, ErrorCode::InvalidArgument, "{raw}");
            assert!(error.message.contains(expected), "{raw}: {}", error.message);
            if raw.len() > 8 {
                assert!(!error.message.contains(&raw[4..]), "{raw} echoed");
            }
        }
    }

    #[test]
    fn personal_token_message_explains_console_steps() {
        let error = parse_organization_token("ddp_personaltoken000000000000000").expect_err("ddp");
        assert!(
            error.message.contains("Deno Deploy console"),
            "{}",
            error.message
        );
        assert!(
            error.message.contains("organization token"),
            "{}",
            error.message
        );
    }

    #[tokio::test]
    async fn put_then_get_then_delete() {
        let app = app_with_enabled_org().await;
        let token = DenoToken::new(TOKEN);

        let stored = put_connection(&app, &context("user-1"), &token)
            .await
            .expect("put");
        assert_eq!(stored["status"], "connected");
        assert_eq!(stored["token_hint"], "ddo_…wxyz");
        assert_eq!(stored["replaced"], false);
        assert!(!stored.to_string().contains(TOKEN));

        let shown = get_connection(&app, &context("user-1")).await.expect("get");
        assert_eq!(shown["status"], "connected");
        assert_eq!(shown["token_kind"], "organization");
        assert!(!shown.to_string().contains(TOKEN));

        let other_user = get_connection(&app, &context("user-2")).await.expect("get");
        assert_eq!(other_user["status"], "not_connected");

        let deleted = delete_connection(&app, &context("user-1"))
            .await
            .expect("delete");
        assert_eq!(deleted["deleted"], true);
        let again = delete_connection(&app, &context("user-1"))
            .await
            .expect("delete");
        assert_eq!(again["deleted"], false);
        let gone = get_connection(&app, &context("user-1")).await.expect("get");
        assert_eq!(gone["status"], "not_connected");
    }

    #[tokio::test]
    async fn put_twice_updates_same_record() {
        let app = app_with_enabled_org().await;
        let token = DenoToken::new(TOKEN);

        put_connection(&app, &context("user-1"), &token)
            .await
            .expect("first put");
        let first = app
            .connections
            .get("user-1", DENO_PROVIDER)
            .await
            .expect("get")
            .expect("stored");
        let replaced = put_connection(&app, &context("user-1"), &token)
            .await
            .expect("second put");
        let second = app
            .connections
            .get("user-1", DENO_PROVIDER)
            .await
            .expect("get")
            .expect("stored");

        assert_eq!(replaced["replaced"], true);
        assert_eq!(first.version, 1);
        assert_eq!(second.version, 2);
        assert_eq!(second.created_at, first.created_at);
        assert_ne!(second.sealed_token, first.sealed_token);
    }

    #[tokio::test]
    async fn put_rejects_unknown_token() {
        let app = app_with_enabled_org().await;

        let error = put_connection(
            &app,
            &context("user-1"),
            &DenoToken::new("ddo_notknowntothisverifier0000"),
        )
        .await
        .expect_err("unknown token");

        assert_eq!(error.code, ErrorCode::UpstreamRejected);
        assert!(error.message.contains("token invalid or expired"));
        assert!(
            app.connections
                .get("user-1", DENO_PROVIDER)
                .await
                .expect("get")
                .is_none()
        );
    }

    #[tokio::test]
    async fn put_rejects_disabled_org() {
        let app = App::in_memory_for_tests([TOKEN]);

        let error = put_connection(&app, &context("user-1"), &DenoToken::new(TOKEN))
            .await
            .expect_err("capability off");

        assert_eq!(error.code, ErrorCode::CapabilityDisabled);
        assert_eq!(error.code.http_status(), 403);
    }

    #[tokio::test]
    async fn handler_rejects_other_methods() {
        let app = App::in_memory_for_tests([TOKEN]);
        let mut request = Request::new(Body::Empty);
        *request.method_mut() = http::Method::POST;

        let response = handle_http(&app, request).await;

        assert_eq!(response.status(), 400);
        let Body::Text(text) = response.body() else {
            panic!("text body")
        };
        assert!(text.contains("method POST is not supported"), "{text}");
    }
}
