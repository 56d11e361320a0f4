//! `deno_list_sandboxes`, `deno_manage_sandbox` and session cleanup: reading and changing the
//! lifecycle of the session's sandboxes.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::bootstrap::App;
use crate::contract::{CallContext, ToolError};
use crate::deno::{DenoError, SandboxId};
use crate::secret::DenoToken;
use crate::store::{SandboxState, SandboxStatus};
use crate::tools::access::{OwnedSandbox, authorize, authorize_with_sandbox, require_running};
use crate::tools::arguments::{
    ListSandboxesArguments, ManageAction, ManageSandboxArguments, SESSION_LABEL,
    validate_sandbox_id,
};
use crate::tools::create::{RECORD_GRACE, unix_ms};
use crate::tools::errors::from_deno;
use crate::tools::format_time;

/// Lists the session's sandboxes with a status computed from their stop times, or refreshed
/// from Deno's console API.
///
/// # Errors
/// Access errors; store and KMS failures; Deno's errors when refreshing.
pub async fn list_sandboxes(
    app: &App,
    context: &CallContext,
    arguments: ListSandboxesArguments,
) -> Result<Value, ToolError> {
    let (token, records) = if arguments.refresh {
        let (token, records) = tokio::join!(
            authorize(app, context),
            app.sandboxes.list_by_session(&context.session_id)
        );
        (Some(token?), records?)
    } else {
        let (enabled, records) = tokio::join!(
            crate::capability::require_enabled(app, &context.org_id),
            app.sandboxes.list_by_session(&context.session_id),
        );
        enabled?;
        (None, records?)
    };

    let opened = join_all(records.into_iter().map(|record| async move {
        let state = SandboxState::open(&app.sealer, &record).await?;
        Ok::<_, crate::crypto::CryptoError>(OwnedSandbox { record, state })
    }))
    .await;
    let mut owned = Vec::with_capacity(opened.len());
    for entry in opened {
        owned.push(entry.map_err(ToolError::from)?);
    }

    let deno_status = match &token {
        Some(token) => Some(deno_statuses(app, token, &context.session_id).await?),
        None => None,
    };

    let now = OffsetDateTime::now_utc();
    let mut sandboxes = Vec::new();
    for sandbox in &owned {
        let status = sandbox.status(now);
        if !arguments.include_inactive && status != "running" {
            continue;
        }
        let mut entry = describe(sandbox, now);
        if let Some(statuses) = &deno_status {
            let at_deno = statuses
                .get(&sandbox.record.sandbox_id)
                .map_or("not_found", String::as_str);
            entry["deno_status"] = json!(at_deno);
            if status == "running" && at_deno != "running" {
                entry["status"] = json!("stopped");
            }
        }
        sandboxes.push(entry);
    }
    Ok(json!({ "count": sandboxes.len(), "sandboxes": sandboxes, "refreshed": token.is_some() }))
}

/// Returns Deno's status of each sandbox labelled with the session.
async fn deno_statuses(
    app: &App,
    token: &DenoToken,
    session_id: &str,
) -> Result<BTreeMap<String, String>, ToolError> {
    let labels = [(SESSION_LABEL.to_owned(), session_id.to_owned())];
    let summaries = app
        .deno
        .list_sandboxes(token, &labels)
        .await
        .map_err(from_deno)?;
    Ok(summaries
        .into_iter()
        .map(|summary| (summary.id, summary.status))
        .collect())
}

/// Describes one sandbox for list and status results.
pub fn describe(sandbox: &OwnedSandbox, now: OffsetDateTime) -> Value {
    json!({
        "sandbox_id": sandbox.record.sandbox_id,
        "title": sandbox.state.title,
        "region": sandbox.state.region,
        "status": sandbox.status(now),
        "started_at": format_time(sandbox.state.started_at),
        "stop_at": format_time(sandbox.state.stop_at),
        "expires_in_seconds": sandbox.expires_in_seconds(now),
        "memory_mb": sandbox.state.memory_mb,
        "workspace_path": sandbox.state.workspace_path,
    })
}

/// Deletes, extends or reports one sandbox of the session.
///
/// # Errors
/// Access errors; `sandbox_not_found` for another session's or an unknown sandbox, and for
/// extending a deleted or expired one; Deno's and the store's failures.
pub async fn manage_sandbox(
    app: &App,
    context: &CallContext,
    arguments: ManageSandboxArguments,
) -> Result<Value, ToolError> {
    let extension = arguments.validate()?;
    let sandbox_id = validate_sandbox_id(&arguments.sandbox_id)?;
    let (token, owned) = authorize_with_sandbox(app, context, &sandbox_id).await?;
    let now = OffsetDateTime::now_utc();

    match arguments.action {
        ManageAction::Status => Ok(describe(&owned, now)),
        ManageAction::Delete => {
            let outcome = delete_one(app, &token, &owned, now).await?;
            Ok(
                json!({ "sandbox_id": sandbox_id.as_str(), "status": "deleted", "outcome": outcome }),
            )
        }
        ManageAction::Extend => {
            require_running(&owned, now)?;
            let extension = extension.unwrap_or(Duration::ZERO);
            extend_one(app, &token, owned, &sandbox_id, extension, now).await
        }
    }
}

/// Deletes a sandbox at Deno and marks its record deleted. A sandbox already gone at Deno, or
/// already marked deleted, counts as deleted.
async fn delete_one(
    app: &App,
    token: &DenoToken,
    owned: &OwnedSandbox,
    now: OffsetDateTime,
) -> Result<&'static str, ToolError> {
    let sandbox_id = validate_sandbox_id(&owned.record.sandbox_id)?;
    let outcome = match app.deno.delete_sandbox(token, &sandbox_id).await {
        Ok(()) => "deleted",
        Err(DenoError::SandboxNotFound { .. }) => "already_gone",
        Err(error) => return Err(from_deno(error)),
    };
    app.sandboxes
        .mark_deleted(&owned.record.session_id, &owned.record.sandbox_id, now)
        .await?;
    Ok(outcome)
}

async fn extend_one(
    app: &App,
    token: &DenoToken,
    owned: OwnedSandbox,
    sandbox_id: &SandboxId,
    extension: Duration,
    now: OffsetDateTime,
) -> Result<Value, ToolError> {
    let requested = now + extension;
    // Deno works in whole milliseconds, so the shortfall check compares milliseconds too; a
    // grant of exactly the requested time is not shorter than the nanosecond `requested`.
    let requested_ms = unix_ms(requested);
    let granted_ms = app
        .deno
        .extend_timeout(token, sandbox_id, requested_ms)
        .await
        .map_err(from_deno)?;
    let granted = OffsetDateTime::from_unix_timestamp_nanos(i128::from(granted_ms) * 1_000_000)
        .unwrap_or(requested);

    let OwnedSandbox {
        mut record,
        mut state,
    } = owned;
    state.stop_at = granted;
    record.sealed_state = state
        .seal(&app.sealer, &record.session_id, &record.sandbox_id)
        .await
        .map_err(ToolError::from)?;
    record.expires_at = (granted + RECORD_GRACE).unix_timestamp();
    record.updated_at = now;
    let expected = record.version;
    record.version += 1;
    app.sandboxes.update(&record, expected).await?;

    let mut result = describe(&OwnedSandbox { record, state }, now);
    if granted_ms < requested_ms {
        result["note"] = json!(format!(
            "Deno granted a shorter extension than requested (until {}); it allows at most 30 minutes per call",
            format_time(granted)
        ));
    } else if granted_ms > requested_ms {
        // Deno sets the stop time to now plus the duration and never moves it earlier.
        result["note"] = json!(format!(
            "the sandbox already ran until {}, later than now plus {}, so its stop time did not \
             change; extend sets the stop time to now plus the duration and never shortens it",
            format_time(granted),
            crate::tools::arguments::describe_duration(extension)
        ));
    }
    Ok(result)
}

/// Deletes every sandbox of the session and reports each outcome. Sandboxes already deleted are
/// reported as such; a failure for one sandbox does not stop the others.
///
/// # Errors
/// `invalid_argument` when the path's session differs from the context's; store failures.
pub async fn cleanup_session(
    app: &App,
    context: &CallContext,
    path_session_id: &str,
) -> Result<Value, ToolError> {
    if path_session_id != context.session_id {
        return Err(ToolError::invalid_argument(format!(
            "the session in the path ({path_session_id}) differs from context.session_id ({}); send the same id in both",
            context.session_id
        )));
    }
    let (token, records) = tokio::join!(
        crate::credentials::resolve_deno_token(app, context),
        app.sandboxes.list_by_session(&context.session_id),
    );
    let records = records?;
    let now = OffsetDateTime::now_utc();

    let outcomes = join_all(records.into_iter().map(|record| {
        let token = token.as_ref();
        async move {
            let sandbox_id = record.sandbox_id.clone();
            if record.status == SandboxStatus::Deleted {
                return json!({ "sandbox_id": sandbox_id, "outcome": "already_deleted" });
            }
            let token = match token {
                Ok(token) => token,
                Err(error) => {
                    return json!({ "sandbox_id": sandbox_id, "outcome": "failed", "message": error.message });
                }
            };
            let state = match SandboxState::open(&app.sealer, &record).await {
                Ok(state) => state,
                Err(error) => {
                    let error = ToolError::from(error);
                    return json!({ "sandbox_id": sandbox_id, "outcome": "failed", "message": error.message });
                }
            };
            match delete_one(app, token, &OwnedSandbox { record, state }, now).await {
                Ok(outcome) => json!({ "sandbox_id": sandbox_id, "outcome": outcome }),
                Err(error) => {
                    tracing::warn!(sandbox_id = %sandbox_id, error = %error, "session cleanup failed for a sandbox");
                    json!({ "sandbox_id": sandbox_id, "outcome": "failed", "message": error.message })
                }
            }
        }
    }))
    .await;

    let failed = outcomes
        .iter()
        .filter(|entry| entry["outcome"] == "failed")
        .count();
    Ok(json!({
        "session_id": context.session_id,
        "sandboxes": outcomes,
        "failed": failed,
    }))
}
