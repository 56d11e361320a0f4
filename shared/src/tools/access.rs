//! The checks every tool call starts with: the organization's capability, the caller's Deno
//! token and, for calls on one sandbox, the session's record of it. Their reads are independent,
//! so they run concurrently; the errors are then reported in a fixed order.

use time::OffsetDateTime;

use crate::bootstrap::App;
use crate::capability;
use crate::contract::{CallContext, ErrorCode, ToolError};
use crate::credentials;
use crate::deno::{DenoClient, Sandbox, SandboxId};
use crate::secret::DenoToken;
use crate::store::{SandboxRecord, SandboxState, SandboxStatus};
use crate::tools::errors::from_deno;

/// A sandbox the calling session owns, with its opened state.
#[derive(Debug)]
pub struct OwnedSandbox {
    /// The stored record.
    pub record: SandboxRecord,
    /// The opened state.
    pub state: SandboxState,
}

impl OwnedSandbox {
    /// Returns the seconds left until the stop time, or 0 for a deleted or expired sandbox.
    pub fn expires_in_seconds(&self, now: OffsetDateTime) -> i64 {
        if self.status(now) == "running" {
            (self.state.stop_at - now).whole_seconds().max(0)
        } else {
            0
        }
    }

    /// Returns `running`, `expired` or `deleted` as of `now`.
    pub fn status(&self, now: OffsetDateTime) -> &'static str {
        match self.record.status {
            SandboxStatus::Deleted => "deleted",
            SandboxStatus::Active if self.state.stop_at <= now => "expired",
            SandboxStatus::Active => "running",
        }
    }
}

/// Checks the capability and resolves the token concurrently.
///
/// # Errors
/// `capability_disabled` first, then the token's errors (`connection_required`, …).
pub async fn authorize(app: &App, context: &CallContext) -> Result<DenoToken, ToolError> {
    let (enabled, token) = tokio::join!(
        capability::require_enabled(app, &context.org_id),
        credentials::resolve_deno_token(app, context),
    );
    enabled?;
    token
}

/// Checks the capability, resolves the token and loads the session's record of `sandbox_id`,
/// all concurrently. The record may be deleted or expired; see [`require_running`].
///
/// # Errors
/// `capability_disabled`, then the token's errors, then `sandbox_not_found` when the session has
/// no record of the sandbox (another session's sandbox looks exactly like an invented id).
pub async fn authorize_with_sandbox(
    app: &App,
    context: &CallContext,
    sandbox_id: &SandboxId,
) -> Result<(DenoToken, OwnedSandbox), ToolError> {
    let (enabled, token, owned) = tokio::join!(
        capability::require_enabled(app, &context.org_id),
        credentials::resolve_deno_token(app, context),
        load_owned(app, context, sandbox_id),
    );
    enabled?;
    let token = token?;
    Ok((token, owned?))
}

/// Loads and opens the session's record of `sandbox_id`.
///
/// # Errors
/// `sandbox_not_found` when the session has no such record; store and KMS errors.
pub async fn load_owned(
    app: &App,
    context: &CallContext,
    sandbox_id: &SandboxId,
) -> Result<OwnedSandbox, ToolError> {
    let record = app
        .sandboxes
        .get(&context.session_id, sandbox_id.as_str())
        .await?;
    let Some(record) = record else {
        return Err(ToolError::new(
            ErrorCode::SandboxNotFound,
            format!(
                "sandbox {sandbox_id} not found in this session; use deno_list_sandboxes to see this \
                 session's sandboxes or create one with deno_create_sandbox"
            ),
        ));
    };
    let state = SandboxState::open(&app.sealer, &record)
        .await
        .map_err(ToolError::from)?;
    Ok(OwnedSandbox { record, state })
}

/// Rejects a sandbox that was deleted or whose stop time has passed, saying which and
/// suggesting a new sandbox. Nothing is re-created silently.
///
/// # Errors
/// `sandbox_not_found` naming the reason.
pub fn require_running(owned: &OwnedSandbox, now: OffsetDateTime) -> Result<(), ToolError> {
    let id = &owned.record.sandbox_id;
    match owned.status(now) {
        "deleted" => Err(ToolError::new(
            ErrorCode::SandboxNotFound,
            format!("sandbox {id} was deleted; create a new one with deno_create_sandbox"),
        )),
        "expired" => Err(ToolError::new(
            ErrorCode::SandboxNotFound,
            format!(
                "sandbox {id} expired at {}; its files are gone. Create a new one with deno_create_sandbox \
                 (and extend sandboxes you still need with deno_manage_sandbox before they expire)",
                crate::tools::format_time(owned.state.stop_at)
            ),
        )),
        _ => Ok(()),
    }
}

/// Opens a connection to a running sandbox the session owns, with the caller's token.
///
/// # Errors
/// `sandbox_not_found` when Deno no longer has the sandbox (deleted or expired underneath);
/// other Deno errors through [`from_deno`].
pub async fn connect(
    deno: &DenoClient,
    token: &DenoToken,
    sandbox_id: &SandboxId,
) -> Result<Sandbox, ToolError> {
    deno.connect(token, sandbox_id).await.map_err(from_deno)
}

/// Checks access to a sandbox the session owns, requires it to be running and opens a
/// connection to it. The token is dropped once the connection is open.
///
/// # Errors
/// Those of [`validate_sandbox_id`](crate::tools::arguments::validate_sandbox_id),
/// [`authorize_with_sandbox`], [`require_running`] and [`connect`].
pub async fn open_running(
    app: &App,
    context: &CallContext,
    sandbox_id: &str,
) -> Result<(Sandbox, OwnedSandbox), ToolError> {
    let sandbox_id = crate::tools::arguments::validate_sandbox_id(sandbox_id)?;
    let (token, owned) = authorize_with_sandbox(app, context, &sandbox_id).await?;
    require_running(&owned, OffsetDateTime::now_utc())?;
    let sandbox = connect(&app.deno, &token, &sandbox_id).await?;
    Ok((sandbox, owned))
}
