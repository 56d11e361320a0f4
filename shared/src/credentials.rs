//! Token resolution for tool calls: the caller's connection is read fresh from the store on
//! every call, opened, and handed over as a [`DenoToken`] that is zeroized when dropped. The
//! token is never cached and never copied into sandbox state.

use crate::bootstrap::App;
use crate::capability;
use crate::contract::{CallContext, ErrorCode, ToolError};
use crate::crypto::{CryptoError, EncryptionContext};
use crate::secret::DenoToken;
use crate::store::DENO_PROVIDER;

fn connection_required(message: String) -> ToolError {
    ToolError::new(ErrorCode::ConnectionRequired, message).with_provider(DENO_PROVIDER)
}

/// Returns the Deno token connected by the caller.
///
/// A connection made while the user acted in another organization is not used, so a token
/// never serves an organization other than the one it was connected in.
///
/// # Errors
/// `connection_required` (HTTP 428, provider `deno`) when the user has no connection for this
/// organization. `upstream_unavailable` when DynamoDB or KMS is unreachable. `internal` when the
/// stored token does not open.
pub async fn resolve_deno_token(app: &App, context: &CallContext) -> Result<DenoToken, ToolError> {
    let record = app.connections.get(&context.user_id, DENO_PROVIDER).await?;
    let Some(record) = record else {
        return Err(connection_required(format!(
            "user {} has no Deno Deploy connection; connect an organization token (ddo_…) with PUT /connections/deno, then retry",
            context.user_id
        )));
    };
    if record.org_id != context.org_id {
        return Err(connection_required(format!(
            "the Deno Deploy connection of user {} was made in another organization; connect an organization token for organization {} with PUT /connections/deno, then retry",
            context.user_id, context.org_id
        )));
    }

    let opened = app
        .sealer
        .open(
            &EncryptionContext::deno_connection(&context.user_id),
            &record.sealed_token,
        )
        .await
        .map_err(unopenable)?;
    let text = std::str::from_utf8(opened.expose()).map_err(|_| {
        unopenable(CryptoError::Malformed {
            reason: "the opened token is not UTF-8",
        })
    })?;
    Ok(DenoToken::new(text))
}

/// Runs the checks every tool call starts with: the organization's capability, then the
/// caller's token.
///
/// # Errors
/// `capability_disabled` before anything else; then the errors of [`resolve_deno_token`].
pub async fn authorize_tool_call(app: &App, context: &CallContext) -> Result<DenoToken, ToolError> {
    capability::require_enabled(app, &context.org_id).await?;
    resolve_deno_token(app, context).await
}

fn unopenable(error: CryptoError) -> ToolError {
    if error.is_retryable() {
        return error.into();
    }
    ToolError::new(
        ErrorCode::Internal,
        "the stored Deno Deploy connection could not be decrypted; connect the token again with PUT /connections/deno",
    )
    .with_source(error)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capability::set_capability;
    use crate::connections::put_connection;
    use crate::crypto::SealedEnvelope;

    const TOKEN: &str = "ddo_credentialstest000000000000abcd";

    fn context(org_id: &str, user_id: &str) -> CallContext {
        CallContext {
            org_id: org_id.into(),
            user_id: user_id.into(),
            session_id: "session-1".into(),
            tool_call_id: Some("call-1".into()),
        }
    }

    async fn connected_app() -> App {
        let app = App::in_memory_for_tests([TOKEN]);
        set_capability(&app, "org-1", "admin", true)
            .await
            .expect("enable");
        put_connection(&app, &context("org-1", "user-1"), &DenoToken::new(TOKEN))
            .await
            .expect("connect");
        app
    }

    #[tokio::test]
    async fn resolves_connected_token() {
        let app = connected_app().await;

        let token = authorize_tool_call(&app, &context("org-1", "user-1"))
            .await
            .expect("token");

        assert_eq!(token.expose(), TOKEN);
    }

    #[tokio::test]
    async fn missing_connection_requires_connect() {
        let app = connected_app().await;

        let error = authorize_tool_call(&app, &context("org-1", "user-2"))
            .await
            .expect_err("other user");

        assert_eq!(error.code, ErrorCode::ConnectionRequired);
        assert_eq!(error.code.http_status(), 428);
        assert_eq!(error.provider, Some("deno"));
        assert_eq!(error.to_body()["error"]["provider"], "deno");
    }

    #[tokio::test]
    async fn connection_from_other_org_not_used() {
        let app = connected_app().await;
        set_capability(&app, "org-2", "admin", true)
            .await
            .expect("enable");

        let error = authorize_tool_call(&app, &context("org-2", "user-1"))
            .await
            .expect_err("other org");

        assert_eq!(error.code, ErrorCode::ConnectionRequired);
    }

    #[tokio::test]
    async fn disabled_capability_checked_first() {
        let app = connected_app().await;
        set_capability(&app, "org-1", "admin", false)
            .await
            .expect("disable");

        let error = authorize_tool_call(&app, &context("org-1", "user-1"))
            .await
            .expect_err("disabled");

        assert_eq!(error.code, ErrorCode::CapabilityDisabled);
    }

    #[tokio::test]
    async fn tampered_connection_is_internal_error() {
        let app = connected_app().await;
        let mut record = app
            .connections
            .get("user-1", DENO_PROVIDER)
            .await
            .expect("get")
            .expect("record");
        let mut bytes = record.sealed_token.as_bytes().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x80;
        record.sealed_token = SealedEnvelope::from_bytes(bytes);
        let version = record.version;
        record.version += 1;
        app.connections
            .put(&record, Some(version))
            .await
            .expect("tamper");

        let error = resolve_deno_token(&app, &context("org-1", "user-1"))
            .await
            .expect_err("tampered");

        assert_eq!(error.code, ErrorCode::Internal);
        assert!(
            error.message.contains("connect the token again"),
            "{}",
            error.message
        );
    }
}
