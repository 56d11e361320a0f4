//! Persistent state: the user's Deno connection, the session's sandbox records and the
//! per-organization capability switch. Each table sits behind a trait with a DynamoDB
//! implementation ([`dynamo`]) and an in-memory one for unit tests ([`memory`]).
//!
//! Decision: every write is conditional. A create fails when the key exists and an update names
//! the version it read, so two writers never silently overwrite each other. The loser gets
//! [`StoreError::VersionConflict`] or [`StoreError::AlreadyExists`] and decides whether to retry.

pub mod dynamo;
pub mod memory;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::contract::{ErrorCode, ToolError};
use crate::crypto::{CryptoError, EncryptionContext, EnvelopeSealer, SealedEnvelope};

/// Provider name of Deno Deploy connections, the sort key of the connections table.
pub const DENO_PROVIDER: &str = "deno";
/// Capability name of the Deno sandbox tools, the sort key of the capabilities table.
pub const DENO_CAPABILITY: &str = "deno";

/// A failed store operation. Transient failures were already retried with backoff by the SDK.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A create found an item with the same key.
    #[error("{table}: an item with key {key} already exists")]
    AlreadyExists {
        /// Table name.
        table: String,
        /// Item key, as `partition/sort`.
        key: String,
    },
    /// An update expected a version the item no longer has, or the item is gone.
    #[error(
        "{table}: item {key} is not at version {expected}; another writer changed or deleted it"
    )]
    VersionConflict {
        /// Table name.
        table: String,
        /// Item key, as `partition/sort`.
        key: String,
        /// Version the writer read.
        expected: u64,
    },
    /// A sandbox create reused a tool call id that already created another sandbox.
    #[error("{table}: tool call {tool_call_id} of session {session_id} already created a sandbox")]
    DuplicateIdempotencyKey {
        /// Table name.
        table: String,
        /// Session of the call.
        session_id: String,
        /// The reused tool call id.
        tool_call_id: String,
    },
    /// DynamoDB throttled the request even after the SDK's retries.
    #[error("{table}: request throttled")]
    Throttled {
        /// Table name.
        table: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The table does not exist: a deployment or configuration fault.
    #[error("table {table} not found; check the table name variables")]
    TableNotFound {
        /// Table name.
        table: String,
    },
    /// DynamoDB could not be reached or failed internally, even after the SDK's retries.
    #[error("{table}: DynamoDB unavailable")]
    Unavailable {
        /// Table name.
        table: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored item lacks an attribute or has one of the wrong type.
    #[error("{table}: item {key} has a missing or invalid attribute {attribute}")]
    Malformed {
        /// Table name.
        table: String,
        /// Item key, as `partition/sort`.
        key: String,
        /// Attribute name.
        attribute: &'static str,
    },
    /// Any other DynamoDB failure: validation errors, denied access.
    #[error("{table}: DynamoDB request failed")]
    Other {
        /// Table name.
        table: String,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Returns whether the same operation may succeed when retried unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Throttled { .. } | Self::Unavailable { .. })
    }
}

impl From<StoreError> for ToolError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::Throttled { .. } | StoreError::Unavailable { .. } => ToolError::new(
                ErrorCode::UpstreamUnavailable,
                "the state store is busy or unreachable; retry the call in a few seconds",
            )
            .with_source(error),
            StoreError::AlreadyExists { .. }
            | StoreError::VersionConflict { .. }
            | StoreError::DuplicateIdempotencyKey { .. } => ToolError::new(
                ErrorCode::Conflict,
                "another request changed the same record at the same time; retry the call",
            )
            .with_retryable(true)
            .with_source(error),
            StoreError::TableNotFound { .. }
            | StoreError::Malformed { .. }
            | StoreError::Other { .. } => ToolError::internal(error),
        }
    }
}

impl From<CryptoError> for ToolError {
    fn from(error: CryptoError) -> Self {
        if error.is_retryable() {
            return ToolError::new(
                ErrorCode::UpstreamUnavailable,
                "the key service is busy or unreachable; retry the call in a few seconds",
            )
            .with_source(error);
        }
        ToolError::internal(error)
    }
}

/// Kind of a connected Deno Deploy token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// An organization token (`ddo_…`).
    Organization,
}

impl TokenKind {
    /// Returns the stored and displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Organization => "organization",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        (text == "organization").then_some(Self::Organization)
    }
}

/// A user's connection to a provider: the sealed token and what may be shown about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRecord {
    /// User who connected the token; partition key.
    pub user_id: String,
    /// Provider, [`DENO_PROVIDER`]; sort key.
    pub provider: String,
    /// Organization the user acted in when connecting; tool calls from other organizations
    /// cannot use the token.
    pub org_id: String,
    /// Kind of token.
    pub token_kind: TokenKind,
    /// Non-secret hint such as `ddo_…a1b2`.
    pub token_hint: String,
    /// The token, sealed with [`EncryptionContext::deno_connection`].
    pub sealed_token: SealedEnvelope,
    /// When the connection was first made.
    pub created_at: OffsetDateTime,
    /// When the token was last replaced.
    pub updated_at: OffsetDateTime,
    /// When Deno last accepted the token.
    pub validated_at: OffsetDateTime,
    /// Optimistic-locking version, 1 for a new record.
    pub version: u64,
}

/// Lifecycle status of a sandbox record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxStatus {
    /// The sandbox was created and not deleted through the tools.
    Active,
    /// The sandbox was deleted through the tools.
    Deleted,
}

impl SandboxStatus {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Deleted => "deleted",
        }
    }

    /// Parses a stored name.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "active" => Some(Self::Active),
            "deleted" => Some(Self::Deleted),
            _ => None,
        }
    }
}

/// A sandbox created by a session. The ids, owner, status and times needed for queries and TTL
/// are plain attributes; everything else is in the sealed [`SandboxState`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRecord {
    /// Session that created the sandbox; partition key.
    pub session_id: String,
    /// Deno's sandbox id; sort key.
    pub sandbox_id: String,
    /// User on whose behalf it was created.
    pub user_id: String,
    /// Organization of the user.
    pub org_id: String,
    /// Lifecycle status.
    pub status: SandboxStatus,
    /// Tool call that created it; a retried create with the same id returns this record.
    pub tool_call_id: Option<String>,
    /// DynamoDB TTL: epoch seconds after which DynamoDB may delete the record (the stop time
    /// plus a grace period).
    pub expires_at: i64,
    /// Optimistic-locking version, 1 for a new record.
    pub version: u64,
    /// When the record was created.
    pub created_at: OffsetDateTime,
    /// When the record was last written.
    pub updated_at: OffsetDateTime,
    /// The [`SandboxState`], sealed with [`EncryptionContext::sandbox_record`].
    pub sealed_state: SealedEnvelope,
}

/// Sandbox details kept encrypted in [`SandboxRecord::sealed_state`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SandboxState {
    /// Deno region, such as `ord` or `ams`.
    pub region: String,
    /// Directory inside the sandbox that relative paths resolve against.
    pub workspace_path: String,
    /// When the sandbox started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When Deno stops the sandbox.
    #[serde(with = "time::serde::rfc3339")]
    pub stop_at: OffsetDateTime,
    /// Title given at creation, if any.
    pub title: Option<String>,
    /// Memory limit in MiB.
    pub memory_mb: u32,
}

impl SandboxState {
    /// Seals the state for the record `(session_id, sandbox_id)`.
    ///
    /// # Errors
    /// [`CryptoError`] from the key provider.
    pub async fn seal(
        &self,
        sealer: &EnvelopeSealer,
        session_id: &str,
        sandbox_id: &str,
    ) -> Result<SealedEnvelope, CryptoError> {
        let json = zeroize::Zeroizing::new(serde_json::to_vec(self).map_err(|_| {
            CryptoError::Malformed {
                reason: "sandbox state could not be encoded as JSON",
            }
        })?);
        sealer
            .seal(
                &EncryptionContext::sandbox_record(session_id, sandbox_id),
                &json,
            )
            .await
    }

    /// Opens the state sealed in `record`.
    ///
    /// # Errors
    /// [`CryptoError`] when the envelope does not open for this record or contains invalid JSON.
    pub async fn open(
        sealer: &EnvelopeSealer,
        record: &SandboxRecord,
    ) -> Result<Self, CryptoError> {
        let context = EncryptionContext::sandbox_record(&record.session_id, &record.sandbox_id);
        let plaintext = sealer.open(&context, &record.sealed_state).await?;
        serde_json::from_slice(plaintext.expose()).map_err(|_| CryptoError::Malformed {
            reason: "sandbox state is not the expected JSON",
        })
    }
}

/// An organization's switch for a capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityRecord {
    /// Organization; partition key.
    pub org_id: String,
    /// Capability, [`DENO_CAPABILITY`]; sort key.
    pub capability: String,
    /// Whether tools of the capability may run for the organization.
    pub enabled: bool,
    /// Administrator who last changed the switch.
    pub updated_by: String,
    /// When the switch was last changed.
    pub updated_at: OffsetDateTime,
    /// Optimistic-locking version, 1 for a new record.
    pub version: u64,
}

/// The connections table. Tool functions only read it; the connection function writes it.
pub trait ConnectionStore: Send + Sync + std::fmt::Debug {
    /// Reads the connection with a strongly consistent read, so a token replaced or deleted a
    /// moment ago is never used.
    fn get<'a>(
        &'a self,
        user_id: &'a str,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRecord>, StoreError>>;

    /// Writes `record`. With `expected_version` `None` the item must not exist; otherwise the
    /// stored item must have that version.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] or [`StoreError::VersionConflict`] when the condition fails.
    fn put<'a>(
        &'a self,
        record: &'a ConnectionRecord,
        expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Deletes the connection and returns whether one existed.
    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
}

/// The sandboxes table.
pub trait SandboxStore: Send + Sync + std::fmt::Debug {
    /// Creates `record`, and with a `tool_call_id` also claims that id for the session in the
    /// same transaction.
    ///
    /// # Errors
    /// [`StoreError::AlreadyExists`] when the sandbox id is taken in the session;
    /// [`StoreError::DuplicateIdempotencyKey`] when the tool call id already created a sandbox.
    fn create<'a>(&'a self, record: &'a SandboxRecord) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Reads one record, deleted ones included, with a strongly consistent read.
    fn get<'a>(
        &'a self,
        session_id: &'a str,
        sandbox_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SandboxRecord>, StoreError>>;

    /// Returns the record created by `tool_call_id` in the session, if any.
    fn find_by_idempotency_key<'a>(
        &'a self,
        session_id: &'a str,
        tool_call_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SandboxRecord>, StoreError>>;

    /// Returns every record of the session, deleted ones included, sorted by sandbox id.
    fn list_by_session<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SandboxRecord>, StoreError>>;

    /// Replaces the record if the stored one is at `expected_version`. The caller sets
    /// `record.version` to the new version.
    ///
    /// # Errors
    /// [`StoreError::VersionConflict`] when another writer got there first or the record is gone.
    fn update<'a>(
        &'a self,
        record: &'a SandboxRecord,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;

    /// Sets the status to deleted, bumping the version, and returns the updated record; `None`
    /// when there is no such record. Marking a deleted record again succeeds.
    fn mark_deleted<'a>(
        &'a self,
        session_id: &'a str,
        sandbox_id: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Option<SandboxRecord>, StoreError>>;
}

/// The capabilities table.
pub trait CapabilityStore: Send + Sync + std::fmt::Debug {
    /// Reads the switch with a strongly consistent read, so a disable takes effect at once.
    fn get<'a>(
        &'a self,
        org_id: &'a str,
        capability: &'a str,
    ) -> BoxFuture<'a, Result<Option<CapabilityRecord>, StoreError>>;

    /// Writes `record` with the same condition as [`ConnectionStore::put`].
    fn put<'a>(
        &'a self,
        record: &'a CapabilityRecord,
        expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// Prefix of the sort key of the item that claims a tool call id in the sandboxes table. Deno
/// sandbox ids never contain `#`, and the tools accept only ids of Deno's shape
/// (`crate::tools::arguments::validate_sandbox_id`), so no request can name such an item.
pub const IDEMPOTENCY_SORT_KEY_PREFIX: &str = "idem#";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::LocalKeyProvider;
    use std::sync::Arc;
    use time::macros::datetime;

    fn record_with(sealed_state: SealedEnvelope) -> SandboxRecord {
        SandboxRecord {
            session_id: "session-1".into(),
            sandbox_id: "sbx-1".into(),
            user_id: "user-1".into(),
            org_id: "org-1".into(),
            status: SandboxStatus::Active,
            tool_call_id: None,
            expires_at: 0,
            version: 1,
            created_at: datetime!(2026-04-01 10:00 UTC),
            updated_at: datetime!(2026-04-01 10:00 UTC),
            sealed_state,
        }
    }

    #[tokio::test]
    async fn sandbox_state_seal_binds_record() {
        let sealer = EnvelopeSealer::new(Arc::new(LocalKeyProvider::new("key")));
        let state = SandboxState {
            region: "ord".into(),
            workspace_path: "/home/app".into(),
            started_at: datetime!(2026-04-01 10:00 UTC),
            stop_at: datetime!(2026-04-01 10:20 UTC),
            title: Some("build".into()),
            memory_mb: 1280,
        };
        let sealed = state
            .seal(&sealer, "session-1", "sbx-1")
            .await
            .expect("seal");

        let record = record_with(sealed.clone());
        assert_eq!(
            SandboxState::open(&sealer, &record).await.expect("open"),
            state
        );

        let mut moved = record_with(sealed);
        moved.sandbox_id = "sbx-2".into();
        let error = SandboxState::open(&sealer, &moved)
            .await
            .expect_err("moved");
        assert!(
            matches!(error, CryptoError::KeyRejected { .. }),
            "{error:?}"
        );
    }

    #[test]
    fn store_errors_map_to_codes() {
        let conflict: ToolError = StoreError::VersionConflict {
            table: "t".into(),
            key: "k".into(),
            expected: 3,
        }
        .into();
        assert_eq!(conflict.code, ErrorCode::Conflict);
        assert!(conflict.retryable);

        let throttled: ToolError = StoreError::Throttled {
            table: "t".into(),
            source: Box::new(std::io::Error::other("slow down")),
        }
        .into();
        assert_eq!(throttled.code, ErrorCode::UpstreamUnavailable);
        assert!(throttled.retryable);

        let missing: ToolError = StoreError::TableNotFound { table: "t".into() }.into();
        assert_eq!(missing.code, ErrorCode::Internal);
        assert!(!missing.to_body().to_string().contains("table t"));
    }
}
