//! `deno_create_sandbox`: creates a sandbox with a fixed stop time and records it for the
//! session, idempotently per tool call id.
//!
//! Decision: the sandbox is created at Deno first and recorded second, because Deno assigns the
//! id. When the record cannot be written, the new sandbox is deleted at Deno before the error is
//! returned ("delete on failure"), so a failed call leaves nothing running. If the function dies
//! between the two steps, the sandbox is orphaned until its stop time; its labels name the
//! product and the session so an operator can find it.

use std::time::Duration;

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::bootstrap::App;
use crate::contract::{CallContext, ToolError};
use crate::deno::{SandboxConfig, SandboxId};
use crate::store::{SandboxRecord, SandboxState, SandboxStatus, StoreError};
use crate::tools::access::{OwnedSandbox, authorize};
use crate::tools::arguments::{CreateSandboxArguments, describe_duration};
use crate::tools::errors::from_deno;
use crate::tools::format_time;

/// Time a sandbox record outlives its sandbox before DynamoDB's TTL may remove it, so that
/// list and status can still report "expired" for a day.
pub const RECORD_GRACE: Duration = Duration::from_secs(24 * 60 * 60);

/// Creates a sandbox, or returns the one an earlier call with the same tool call id created.
///
/// # Errors
/// `invalid_argument` for bad arguments; access errors; Deno's refusals; store failures.
pub async fn create_sandbox(
    app: &App,
    context: &CallContext,
    arguments: CreateSandboxArguments,
) -> Result<Value, ToolError> {
    let plan = arguments.validate(&app.config, &context.session_id)?;

    // A retried call returns the first call's sandbox.
    let (token, earlier) = tokio::join!(authorize(app, context), find_earlier(app, context));
    let token = token?;
    if let Some(owned) = earlier? {
        return Ok(describe(&owned, OffsetDateTime::now_utc(), true));
    }

    let started_at = OffsetDateTime::now_utc();
    let stop_at = started_at + plan.lifetime;
    let config = SandboxConfig {
        stop_at_ms: Some(unix_ms(stop_at)),
        memory_mb: plan.memory_mb,
        labels: plan.labels.clone(),
        allow_net: plan.allow_net.clone(),
    };
    let (connection, sandbox_id) = app
        .deno
        .create_sandbox(&token, plan.region, &config)
        .await
        .map_err(from_deno)?;
    // The sandbox has a stop time, so closing the creating connection does not end it.
    connection.close().await;

    let state = SandboxState {
        region: plan.region.as_str().to_owned(),
        workspace_path: app.config.workspace_path.clone(),
        started_at,
        stop_at,
        title: plan.title.clone(),
        memory_mb: plan.memory_mb,
    };
    match record(app, context, &sandbox_id, &state, started_at).await {
        Ok(record) => Ok(describe(&OwnedSandbox { record, state }, started_at, false)),
        Err(RecordFailure::LostRace(winner)) => {
            discard(app, &token, &sandbox_id).await;
            Ok(describe(&winner, OffsetDateTime::now_utc(), true))
        }
        Err(RecordFailure::Failed(error)) => {
            discard(app, &token, &sandbox_id).await;
            Err(error)
        }
    }
}

async fn find_earlier(app: &App, context: &CallContext) -> Result<Option<OwnedSandbox>, ToolError> {
    let Some(tool_call_id) = &context.tool_call_id else {
        return Ok(None);
    };
    let Some(record) = app
        .sandboxes
        .find_by_idempotency_key(&context.session_id, tool_call_id)
        .await?
    else {
        return Ok(None);
    };
    let state = SandboxState::open(&app.sealer, &record)
        .await
        .map_err(ToolError::from)?;
    Ok(Some(OwnedSandbox { record, state }))
}

enum RecordFailure {
    /// A concurrent call with the same tool call id recorded its sandbox first.
    LostRace(Box<OwnedSandbox>),
    Failed(ToolError),
}

async fn record(
    app: &App,
    context: &CallContext,
    sandbox_id: &SandboxId,
    state: &SandboxState,
    now: OffsetDateTime,
) -> Result<SandboxRecord, RecordFailure> {
    let sealed_state = state
        .seal(&app.sealer, &context.session_id, sandbox_id.as_str())
        .await
        .map_err(|error| RecordFailure::Failed(error.into()))?;
    let record = SandboxRecord {
        session_id: context.session_id.clone(),
        sandbox_id: sandbox_id.as_str().to_owned(),
        user_id: context.user_id.clone(),
        org_id: context.org_id.clone(),
        status: SandboxStatus::Active,
        tool_call_id: context.tool_call_id.clone(),
        expires_at: (state.stop_at + RECORD_GRACE).unix_timestamp(),
        version: 1,
        created_at: now,
        updated_at: now,
        sealed_state,
    };
    match app.sandboxes.create(&record).await {
        Ok(()) => Ok(record),
        Err(StoreError::DuplicateIdempotencyKey { .. }) => match find_earlier(app, context).await {
            Ok(Some(winner)) => Err(RecordFailure::LostRace(Box::new(winner))),
            Ok(None) => Err(RecordFailure::Failed(ToolError::new(
                crate::contract::ErrorCode::Conflict,
                "another call with the same tool_call_id is creating a sandbox; retry in a moment",
            ))),
            Err(error) => Err(RecordFailure::Failed(error)),
        },
        Err(error) => Err(RecordFailure::Failed(error.into())),
    }
}

/// Deletes a sandbox this call created but could not record; a failure is logged, since the
/// sandbox still stops at its stop time.
async fn discard(app: &App, token: &crate::secret::DenoToken, sandbox_id: &SandboxId) {
    if let Err(error) = app.deno.delete_sandbox(token, sandbox_id).await {
        tracing::error!(sandbox_id = %sandbox_id, error = %error, "failed to delete an unrecorded sandbox");
    }
}

/// Builds the create result for a recorded sandbox.
pub fn describe(owned: &OwnedSandbox, now: OffsetDateTime, reused: bool) -> Value {
    let lifetime = owned.state.stop_at - owned.state.started_at;
    let mut result = json!({
        "sandbox_id": owned.record.sandbox_id,
        "region": owned.state.region,
        "workspace_path": owned.state.workspace_path,
        "status": owned.status(now),
        "timeout": describe_duration(Duration::from_secs(lifetime.whole_seconds().max(0) as u64)),
        "stop_at": format_time(owned.state.stop_at),
        "expires_in_seconds": owned.expires_in_seconds(now),
        "memory_mb": owned.state.memory_mb,
        "title": owned.state.title,
    });
    if reused {
        result["reused"] = json!(true);
        result["note"] =
            json!("this tool_call_id already created this sandbox; no new sandbox was created");
    }
    result
}

/// Returns `time` as Unix milliseconds.
pub fn unix_ms(time: OffsetDateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
