//! DynamoDB implementations of the stores. Key schemas: connections (`user_id`, `provider`),
//! sandboxes (`session_id`, `sandbox_id`) with TTL on `expires_at`, capabilities (`org_id`,
//! `capability`); all keys are strings.
//!
//! Decision: a sandbox created with a tool call id also writes a second item in its session,
//! sort key `idem#<tool_call_id>`, in the same transaction. The transaction's conditions make a
//! retried create either find the first sandbox or fail, never create a second record.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use futures_util::future::BoxFuture;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{
    CapabilityRecord, CapabilityStore, ConnectionRecord, ConnectionStore,
    IDEMPOTENCY_SORT_KEY_PREFIX, SandboxRecord, SandboxStatus, SandboxStore, StoreError, TokenKind,
};
use crate::crypto::SealedEnvelope;

type Item = HashMap<String, AttributeValue>;

// Attribute names of the connections table.
const USER_ID: &str = "user_id";
const PROVIDER: &str = "provider";
const ORG_ID: &str = "org_id";
const TOKEN_KIND: &str = "token_kind";
const TOKEN_HINT: &str = "token_hint";
const SEALED_TOKEN: &str = "sealed_token";
const CREATED_AT: &str = "created_at";
const UPDATED_AT: &str = "updated_at";
const VALIDATED_AT: &str = "validated_at";
const VERSION: &str = "version";

// Attribute names of the sandboxes table (with USER_ID, ORG_ID, the times and VERSION).
const SESSION_ID: &str = "session_id";
const SANDBOX_ID: &str = "sandbox_id";
const STATUS: &str = "status";
const TOOL_CALL_ID: &str = "tool_call_id";
/// TTL attribute of the sandboxes table, in epoch seconds.
pub const EXPIRES_AT: &str = "expires_at";
const SEALED_STATE: &str = "sealed_state";
const RECORD_TYPE: &str = "record_type";
const TARGET_SANDBOX_ID: &str = "target_sandbox_id";
const RECORD_TYPE_SANDBOX: &str = "sandbox";
const RECORD_TYPE_IDEMPOTENCY: &str = "idempotency";

// Attribute names of the capabilities table (with ORG_ID, UPDATED_AT and VERSION).
const CAPABILITY: &str = "capability";
const ENABLED: &str = "enabled";
const UPDATED_BY: &str = "updated_by";

/// DynamoDB error codes of throttling.
const THROTTLING_CODES: [&str; 3] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
];
/// DynamoDB error codes of transient server faults.
const UNAVAILABLE_CODES: [&str; 2] = ["InternalServerError", "ServiceUnavailable"];
const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailedException";

/// Maps an SDK error to a [`StoreError`]; conditional failures are handled by the caller first.
pub fn classify_error<E, R>(table: &str, error: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let table = table.to_owned();
    let code = error.code().unwrap_or_default().to_owned();
    match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Unavailable {
                table,
                source: Box::new(error),
            }
        }
        SdkError::ServiceError(_) if THROTTLING_CODES.contains(&code.as_str()) => {
            StoreError::Throttled {
                table,
                source: Box::new(error),
            }
        }
        SdkError::ServiceError(_) if UNAVAILABLE_CODES.contains(&code.as_str()) => {
            StoreError::Unavailable {
                table,
                source: Box::new(error),
            }
        }
        SdkError::ServiceError(_) if code == "ResourceNotFoundException" => {
            StoreError::TableNotFound { table }
        }
        _ => StoreError::Other {
            table,
            source: Box::new(error),
        },
    }
}

fn is_conditional_failure<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.code() == Some(CONDITIONAL_CHECK_FAILED)
}

fn string(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn number(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn timestamp(value: OffsetDateTime) -> AttributeValue {
    // RFC 3339 formatting fails only for a year outside 0..=9999 or an offset with seconds; the
    // UTC clock times stored here have neither.
    AttributeValue::S(value.format(&Rfc3339).unwrap_or_default())
}

fn binary(value: &SealedEnvelope) -> AttributeValue {
    AttributeValue::B(Blob::new(value.as_bytes()))
}

/// Reads typed attributes from an item, naming the attribute that is missing or malformed.
struct ItemReader<'a> {
    table: &'a str,
    item: &'a Item,
}

impl ItemReader<'_> {
    fn malformed(&self, attribute: &'static str) -> StoreError {
        let key = [USER_ID, SESSION_ID, ORG_ID]
            .iter()
            .find_map(|name| self.item.get(*name)?.as_s().ok())
            .cloned()
            .unwrap_or_default();
        StoreError::Malformed {
            table: self.table.to_owned(),
            key,
            attribute,
        }
    }

    fn string(&self, attribute: &'static str) -> Result<String, StoreError> {
        self.item
            .get(attribute)
            .and_then(|value| value.as_s().ok())
            .cloned()
            .ok_or_else(|| self.malformed(attribute))
    }

    fn optional_string(&self, attribute: &'static str) -> Result<Option<String>, StoreError> {
        match self.item.get(attribute) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(text)) => Ok(Some(text.clone())),
            Some(_) => Err(self.malformed(attribute)),
        }
    }

    fn number<T: FromStr>(&self, attribute: &'static str) -> Result<T, StoreError> {
        self.item
            .get(attribute)
            .and_then(|value| value.as_n().ok())
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| self.malformed(attribute))
    }

    fn boolean(&self, attribute: &'static str) -> Result<bool, StoreError> {
        self.item
            .get(attribute)
            .and_then(|value| value.as_bool().ok())
            .copied()
            .ok_or_else(|| self.malformed(attribute))
    }

    fn time(&self, attribute: &'static str) -> Result<OffsetDateTime, StoreError> {
        let text = self.string(attribute)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(|_| self.malformed(attribute))
    }

    fn envelope(&self, attribute: &'static str) -> Result<SealedEnvelope, StoreError> {
        self.item
            .get(attribute)
            .and_then(|value| value.as_b().ok())
            .map(|blob| SealedEnvelope::from_bytes(blob.as_ref().to_vec()))
            .ok_or_else(|| self.malformed(attribute))
    }
}

/// [`ConnectionStore`] on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoConnectionStore {
    client: Client,
    table: String,
}

impl DynamoConnectionStore {
    /// Creates a store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn to_item(record: &ConnectionRecord) -> Item {
        HashMap::from([
            (USER_ID.to_owned(), string(&record.user_id)),
            (PROVIDER.to_owned(), string(&record.provider)),
            (ORG_ID.to_owned(), string(&record.org_id)),
            (TOKEN_KIND.to_owned(), string(record.token_kind.as_str())),
            (TOKEN_HINT.to_owned(), string(&record.token_hint)),
            (SEALED_TOKEN.to_owned(), binary(&record.sealed_token)),
            (CREATED_AT.to_owned(), timestamp(record.created_at)),
            (UPDATED_AT.to_owned(), timestamp(record.updated_at)),
            (VALIDATED_AT.to_owned(), timestamp(record.validated_at)),
            (VERSION.to_owned(), number(record.version)),
        ])
    }

    fn read_item(&self, item: &Item) -> Result<ConnectionRecord, StoreError> {
        let reader = ItemReader {
            table: &self.table,
            item,
        };
        Ok(ConnectionRecord {
            user_id: reader.string(USER_ID)?,
            provider: reader.string(PROVIDER)?,
            org_id: reader.string(ORG_ID)?,
            token_kind: TokenKind::parse(&reader.string(TOKEN_KIND)?)
                .ok_or_else(|| reader.malformed(TOKEN_KIND))?,
            token_hint: reader.string(TOKEN_HINT)?,
            sealed_token: reader.envelope(SEALED_TOKEN)?,
            created_at: reader.time(CREATED_AT)?,
            updated_at: reader.time(UPDATED_AT)?,
            validated_at: reader.time(VALIDATED_AT)?,
            version: reader.number(VERSION)?,
        })
    }
}

impl ConnectionStore for DynamoConnectionStore {
    fn get<'a>(
        &'a self,
        user_id: &'a str,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRecord>, StoreError>> {
        Box::pin(async move {
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(USER_ID, string(user_id))
                .key(PROVIDER, string(provider))
                .consistent_read(true)
                .send()
                .await
                .map_err(|error| classify_error(&self.table, error))?;
            output.item.map(|item| self.read_item(&item)).transpose()
        })
    }

    fn put<'a>(
        &'a self,
        record: &'a ConnectionRecord,
        expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let request = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(Self::to_item(record)));
            let request = match expected_version {
                None => request.condition_expression("attribute_not_exists(user_id)"),
                Some(version) => request
                    .condition_expression("#version = :expected")
                    .expression_attribute_names("#version", VERSION)
                    .expression_attribute_values(":expected", number(version)),
            };
            match request.send().await {
                Ok(_) => Ok(()),
                Err(error) if is_conditional_failure(&error) => Err(condition_failed(
                    &self.table,
                    &record.user_id,
                    &record.provider,
                    expected_version,
                )),
                Err(error) => Err(classify_error(&self.table, error)),
            }
        })
    }

    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let output = self
                .client
                .delete_item()
                .table_name(&self.table)
                .key(USER_ID, string(user_id))
                .key(PROVIDER, string(provider))
                .return_values(ReturnValue::AllOld)
                .send()
                .await
                .map_err(|error| classify_error(&self.table, error))?;
            Ok(output.attributes.is_some_and(|item| !item.is_empty()))
        })
    }
}

fn condition_failed(
    table: &str,
    partition: &str,
    sort: &str,
    expected_version: Option<u64>,
) -> StoreError {
    let key = format!("{partition}/{sort}");
    match expected_version {
        None => StoreError::AlreadyExists {
            table: table.to_owned(),
            key,
        },
        Some(expected) => StoreError::VersionConflict {
            table: table.to_owned(),
            key,
            expected,
        },
    }
}

/// [`CapabilityStore`] on a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoCapabilityStore {
    client: Client,
    table: String,
}

impl DynamoCapabilityStore {
    /// Creates a store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn read_item(&self, item: &Item) -> Result<CapabilityRecord, StoreError> {
        let reader = ItemReader {
            table: &self.table,
            item,
        };
        Ok(CapabilityRecord {
            org_id: reader.string(ORG_ID)?,
            capability: reader.string(CAPABILITY)?,
            enabled: reader.boolean(ENABLED)?,
            updated_by: reader.string(UPDATED_BY)?,
            updated_at: reader.time(UPDATED_AT)?,
            version: reader.number(VERSION)?,
        })
    }
}

impl CapabilityStore for DynamoCapabilityStore {
    fn get<'a>(
        &'a self,
        org_id: &'a str,
        capability: &'a str,
    ) -> BoxFuture<'a, Result<Option<CapabilityRecord>, StoreError>> {
        Box::pin(async move {
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(ORG_ID, string(org_id))
                .key(CAPABILITY, string(capability))
                .consistent_read(true)
                .send()
                .await
                .map_err(|error| classify_error(&self.table, error))?;
            output.item.map(|item| self.read_item(&item)).transpose()
        })
    }

    fn put<'a>(
        &'a self,
        record: &'a CapabilityRecord,
        expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let item = HashMap::from([
                (ORG_ID.to_owned(), string(&record.org_id)),
                (CAPABILITY.to_owned(), string(&record.capability)),
                (ENABLED.to_owned(), AttributeValue::Bool(record.enabled)),
                (UPDATED_BY.to_owned(), string(&record.updated_by)),
                (UPDATED_AT.to_owned(), timestamp(record.updated_at)),
                (VERSION.to_owned(), number(record.version)),
            ]);
            let request = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item));
            let request = match expected_version {
                None => request.condition_expression("attribute_not_exists(org_id)"),
                Some(version) => request
                    .condition_expression("#version = :expected")
                    .expression_attribute_names("#version", VERSION)
                    .expression_attribute_values(":expected", number(version)),
            };
            match request.send().await {
                Ok(_) => Ok(()),
                Err(error) if is_conditional_failure(&error) => Err(condition_failed(
                    &self.table,
                    &record.org_id,
                    &record.capability,
                    expected_version,
                )),
                Err(error) => Err(classify_error(&self.table, error)),
            }
        })
    }
}

/// [`SandboxStore`] on a DynamoDB table with TTL enabled on [`EXPIRES_AT`].
#[derive(Debug, Clone)]
pub struct DynamoSandboxStore {
    client: Client,
    table: String,
}

impl DynamoSandboxStore {
    /// Creates a store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn to_item(record: &SandboxRecord) -> Item {
        let mut item = HashMap::from([
            (SESSION_ID.to_owned(), string(&record.session_id)),
            (SANDBOX_ID.to_owned(), string(&record.sandbox_id)),
            (RECORD_TYPE.to_owned(), string(RECORD_TYPE_SANDBOX)),
            (USER_ID.to_owned(), string(&record.user_id)),
            (ORG_ID.to_owned(), string(&record.org_id)),
            (STATUS.to_owned(), string(record.status.as_str())),
            (EXPIRES_AT.to_owned(), number(record.expires_at)),
            (VERSION.to_owned(), number(record.version)),
            (CREATED_AT.to_owned(), timestamp(record.created_at)),
            (UPDATED_AT.to_owned(), timestamp(record.updated_at)),
            (SEALED_STATE.to_owned(), binary(&record.sealed_state)),
        ]);
        if let Some(tool_call_id) = &record.tool_call_id {
            item.insert(TOOL_CALL_ID.to_owned(), string(tool_call_id));
        }
        item
    }

    fn read_item(&self, item: &Item) -> Result<SandboxRecord, StoreError> {
        let reader = ItemReader {
            table: &self.table,
            item,
        };
        Ok(SandboxRecord {
            session_id: reader.string(SESSION_ID)?,
            sandbox_id: reader.string(SANDBOX_ID)?,
            user_id: reader.string(USER_ID)?,
            org_id: reader.string(ORG_ID)?,
            status: SandboxStatus::parse(&reader.string(STATUS)?)
                .ok_or_else(|| reader.malformed(STATUS))?,
            tool_call_id: reader.optional_string(TOOL_CALL_ID)?,
            expires_at: reader.number(EXPIRES_AT)?,
            version: reader.number(VERSION)?,
            created_at: reader.time(CREATED_AT)?,
            updated_at: reader.time(UPDATED_AT)?,
            sealed_state: reader.envelope(SEALED_STATE)?,
        })
    }

    fn idempotency_sort_key(tool_call_id: &str) -> String {
        format!("{IDEMPOTENCY_SORT_KEY_PREFIX}{tool_call_id}")
    }

    async fn create_with_claim(
        &self,
        record: &SandboxRecord,
        tool_call_id: &str,
    ) -> Result<(), StoreError> {
        let build_error = |error| StoreError::Other {
            table: self.table.clone(),
            source: Box::new(error),
        };
        let sandbox_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::to_item(record)))
            .condition_expression("attribute_not_exists(sandbox_id)")
            .build()
            .map_err(build_error)?;
        let claim_put = Put::builder()
            .table_name(&self.table)
            .item(SESSION_ID, string(&record.session_id))
            .item(
                SANDBOX_ID,
                string(&Self::idempotency_sort_key(tool_call_id)),
            )
            .item(RECORD_TYPE, string(RECORD_TYPE_IDEMPOTENCY))
            .item(TARGET_SANDBOX_ID, string(&record.sandbox_id))
            .item(EXPIRES_AT, number(record.expires_at))
            .condition_expression("attribute_not_exists(sandbox_id)")
            .build()
            .map_err(build_error)?;

        let outcome = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(sandbox_put).build())
            .transact_items(TransactWriteItem::builder().put(claim_put).build())
            .send()
            .await;
        let error = match outcome {
            Ok(_) => return Ok(()),
            Err(error) => error,
        };

        // The cancellation reasons come in the order of the transaction's items.
        let reasons: Vec<Option<String>> = error
            .as_service_error()
            .and_then(|service| match service {
                aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(cancel) => {
                    Some(cancel.cancellation_reasons().iter().map(|reason| reason.code().map(str::to_owned)).collect())
                }
                _ => None,
            })
            .unwrap_or_default();
        let failed = |index: usize| {
            reasons.get(index).and_then(Option::as_deref) == Some("ConditionalCheckFailed")
        };
        if failed(0) {
            return Err(condition_failed(
                &self.table,
                &record.session_id,
                &record.sandbox_id,
                None,
            ));
        }
        if failed(1) {
            return Err(StoreError::DuplicateIdempotencyKey {
                table: self.table.clone(),
                session_id: record.session_id.clone(),
                tool_call_id: tool_call_id.to_owned(),
            });
        }
        Err(classify_error(&self.table, error))
    }
}

impl SandboxStore for DynamoSandboxStore {
    fn create<'a>(&'a self, record: &'a SandboxRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            if let Some(tool_call_id) = &record.tool_call_id {
                return self.create_with_claim(record, tool_call_id).await;
            }
            let outcome = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(Self::to_item(record)))
                .condition_expression("attribute_not_exists(sandbox_id)")
                .send()
                .await;
            match outcome {
                Ok(_) => Ok(()),
                Err(error) if is_conditional_failure(&error) => Err(condition_failed(
                    &self.table,
                    &record.session_id,
                    &record.sandbox_id,
                    None,
                )),
                Err(error) => Err(classify_error(&self.table, error)),
            }
        })
    }

    fn get<'a>(
        &'a self,
        session_id: &'a str,
        sandbox_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SandboxRecord>, StoreError>> {
        Box::pin(async move {
            if sandbox_id.starts_with(IDEMPOTENCY_SORT_KEY_PREFIX) {
                return Ok(None);
            }
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(SESSION_ID, string(session_id))
                .key(SANDBOX_ID, string(sandbox_id))
                .consistent_read(true)
                .send()
                .await
                .map_err(|error| classify_error(&self.table, error))?;
            output.item.map(|item| self.read_item(&item)).transpose()
        })
    }

    fn find_by_idempotency_key<'a>(
        &'a self,
        session_id: &'a str,
        tool_call_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SandboxRecord>, StoreError>> {
        Box::pin(async move {
            let output = self
                .client
                .get_item()
                .table_name(&self.table)
                .key(SESSION_ID, string(session_id))
                .key(
                    SANDBOX_ID,
                    string(&Self::idempotency_sort_key(tool_call_id)),
                )
                .consistent_read(true)
                .send()
                .await
                .map_err(|error| classify_error(&self.table, error))?;
            let Some(claim) = output.item else {
                return Ok(None);
            };
            let reader = ItemReader {
                table: &self.table,
                item: &claim,
            };
            let sandbox_id = reader.string(TARGET_SANDBOX_ID)?;
            self.get(session_id, &sandbox_id).await
        })
    }

    fn list_by_session<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SandboxRecord>, StoreError>> {
        Box::pin(async move {
            let mut records = Vec::new();
            let mut start_key: Option<Item> = None;
            loop {
                let output = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .key_condition_expression("#session = :session")
                    .expression_attribute_names("#session", SESSION_ID)
                    .expression_attribute_values(":session", string(session_id))
                    .consistent_read(true)
                    .set_exclusive_start_key(start_key.take())
                    .send()
                    .await
                    .map_err(|error| classify_error(&self.table, error))?;
                for item in output.items() {
                    let is_claim = item
                        .get(SANDBOX_ID)
                        .and_then(|value| value.as_s().ok())
                        .is_some_and(|id| id.starts_with(IDEMPOTENCY_SORT_KEY_PREFIX));
                    if !is_claim {
                        records.push(self.read_item(item)?);
                    }
                }
                match output.last_evaluated_key {
                    Some(key) if !key.is_empty() => start_key = Some(key),
                    _ => break,
                }
            }
            Ok(records)
        })
    }

    fn update<'a>(
        &'a self,
        record: &'a SandboxRecord,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let outcome = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(Self::to_item(record)))
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_values(":expected", number(expected_version))
                .send()
                .await;
            match outcome {
                Ok(_) => Ok(()),
                Err(error) if is_conditional_failure(&error) => Err(condition_failed(
                    &self.table,
                    &record.session_id,
                    &record.sandbox_id,
                    Some(expected_version),
                )),
                Err(error) => Err(classify_error(&self.table, error)),
            }
        })
    }

    fn mark_deleted<'a>(
        &'a self,
        session_id: &'a str,
        sandbox_id: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Option<SandboxRecord>, StoreError>> {
        Box::pin(async move {
            if sandbox_id.starts_with(IDEMPOTENCY_SORT_KEY_PREFIX) {
                return Ok(None);
            }
            let outcome = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(SESSION_ID, string(session_id))
                .key(SANDBOX_ID, string(sandbox_id))
                .update_expression(
                    "SET #status = :deleted, #version = #version + :one, #updated = :now",
                )
                .condition_expression("attribute_exists(sandbox_id)")
                .expression_attribute_names("#status", STATUS)
                .expression_attribute_names("#version", VERSION)
                .expression_attribute_names("#updated", UPDATED_AT)
                .expression_attribute_values(":deleted", string(SandboxStatus::Deleted.as_str()))
                .expression_attribute_values(":one", number(1))
                .expression_attribute_values(":now", timestamp(now))
                .return_values(ReturnValue::AllNew)
                .send()
                .await;
            match outcome {
                Ok(output) => output
                    .attributes
                    .map(|item| self.read_item(&item))
                    .transpose(),
                Err(error) if is_conditional_failure(&error) => Ok(None),
                Err(error) => Err(classify_error(&self.table, error)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::put_item::PutItemError;
    use aws_smithy_runtime_api::http::{Response, StatusCode};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::error::ErrorMetadata;

    fn service_error(code: &str) -> SdkError<PutItemError, Response> {
        SdkError::service_error(
            PutItemError::generic(ErrorMetadata::builder().code(code).build()),
            Response::new(StatusCode::try_from(400).expect("status"), SdkBody::empty()),
        )
    }

    #[test]
    fn classify_maps_codes() {
        for code in THROTTLING_CODES {
            assert!(
                matches!(
                    classify_error("t", service_error(code)),
                    StoreError::Throttled { .. }
                ),
                "{code}"
            );
        }
        assert!(matches!(
            classify_error("t", service_error("ResourceNotFoundException")),
            StoreError::TableNotFound { .. }
        ));
        assert!(matches!(
            classify_error("t", service_error("InternalServerError")),
            StoreError::Unavailable { .. }
        ));
        assert!(matches!(
            classify_error("t", service_error("ValidationException")),
            StoreError::Other { .. }
        ));
        assert!(is_conditional_failure(&service_error(
            CONDITIONAL_CHECK_FAILED
        )));
    }

    #[test]
    fn classify_marks_timeouts_retryable() {
        let error: SdkError<PutItemError, Response> =
            SdkError::timeout_error(std::io::Error::other("attempt timed out"));
        let store_error = classify_error("t", error);
        assert!(matches!(store_error, StoreError::Unavailable { .. }));
        assert!(store_error.is_retryable());
    }
}
