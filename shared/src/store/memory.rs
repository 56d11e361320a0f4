//! In-memory stores for unit tests of the tool and connection logic. They apply the same write
//! conditions as the DynamoDB stores, but keep nothing beyond the process.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use futures_util::future::BoxFuture;
use time::OffsetDateTime;

use super::{
    CapabilityRecord, CapabilityStore, ConnectionRecord, ConnectionStore, SandboxRecord,
    SandboxStatus, SandboxStore, StoreError,
};

type Key = (String, String);

fn key(partition: &str, sort: &str) -> Key {
    (partition.to_owned(), sort.to_owned())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind, which stays usable.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Checks the write condition shared by the connection and capability stores.
fn check_version(
    table: &str,
    key: &Key,
    stored: Option<u64>,
    expected: Option<u64>,
) -> Result<(), StoreError> {
    let key_text = format!("{}/{}", key.0, key.1);
    match (stored, expected) {
        (None, None) => Ok(()),
        (Some(_), None) => Err(StoreError::AlreadyExists {
            table: table.to_owned(),
            key: key_text,
        }),
        (stored, Some(expected)) if stored == Some(expected) => Ok(()),
        (_, Some(expected)) => Err(StoreError::VersionConflict {
            table: table.to_owned(),
            key: key_text,
            expected,
        }),
    }
}

/// In-memory [`ConnectionStore`].
#[derive(Debug, Default)]
pub struct MemoryConnectionStore {
    items: Mutex<BTreeMap<Key, ConnectionRecord>>,
}

impl ConnectionStore for MemoryConnectionStore {
    fn get<'a>(
        &'a self,
        user_id: &'a str,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<Option<ConnectionRecord>, StoreError>> {
        let found = lock(&self.items).get(&key(user_id, provider)).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn put<'a>(
        &'a self,
        record: &'a ConnectionRecord,
        expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let outcome = (|| {
            let mut items = lock(&self.items);
            let key = key(&record.user_id, &record.provider);
            let stored = items.get(&key).map(|item| item.version);
            check_version("connections", &key, stored, expected_version)?;
            items.insert(key, record.clone());
            Ok(())
        })();
        Box::pin(async move { outcome })
    }

    fn delete<'a>(
        &'a self,
        user_id: &'a str,
        provider: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        let existed = lock(&self.items).remove(&key(user_id, provider)).is_some();
        Box::pin(async move { Ok(existed) })
    }
}

/// In-memory [`CapabilityStore`].
#[derive(Debug, Default)]
pub struct MemoryCapabilityStore {
    items: Mutex<BTreeMap<Key, CapabilityRecord>>,
}

impl CapabilityStore for MemoryCapabilityStore {
    fn get<'a>(
        &'a self,
        org_id: &'a str,
        capability: &'a str,
    ) -> BoxFuture<'a, Result<Option<CapabilityRecord>, StoreError>> {
        let found = lock(&self.items).get(&key(org_id, capability)).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn put<'a>(
        &'a self,
        record: &'a CapabilityRecord,
        expected_version: Option<u64>,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let outcome = (|| {
            let mut items = lock(&self.items);
            let key = key(&record.org_id, &record.capability);
            let stored = items.get(&key).map(|item| item.version);
            check_version("capabilities", &key, stored, expected_version)?;
            items.insert(key, record.clone());
            Ok(())
        })();
        Box::pin(async move { outcome })
    }
}

#[derive(Debug, Default)]
struct SandboxItems {
    records: BTreeMap<Key, SandboxRecord>,
    /// `(session_id, tool_call_id)` to the sandbox id it created.
    idempotency: BTreeMap<Key, String>,
}

/// In-memory [`SandboxStore`].
#[derive(Debug, Default)]
pub struct MemorySandboxStore {
    items: Mutex<SandboxItems>,
}

impl SandboxStore for MemorySandboxStore {
    fn create<'a>(&'a self, record: &'a SandboxRecord) -> BoxFuture<'a, Result<(), StoreError>> {
        let outcome = (|| {
            let mut items = lock(&self.items);
            let record_key = key(&record.session_id, &record.sandbox_id);
            if items.records.contains_key(&record_key) {
                return Err(StoreError::AlreadyExists {
                    table: "sandboxes".into(),
                    key: format!("{}/{}", record.session_id, record.sandbox_id),
                });
            }
            if let Some(tool_call_id) = &record.tool_call_id {
                let claim = key(&record.session_id, tool_call_id);
                if items.idempotency.contains_key(&claim) {
                    return Err(StoreError::DuplicateIdempotencyKey {
                        table: "sandboxes".into(),
                        session_id: record.session_id.clone(),
                        tool_call_id: tool_call_id.clone(),
                    });
                }
                items.idempotency.insert(claim, record.sandbox_id.clone());
            }
            items.records.insert(record_key, record.clone());
            Ok(())
        })();
        Box::pin(async move { outcome })
    }

    fn get<'a>(
        &'a self,
        session_id: &'a str,
        sandbox_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SandboxRecord>, StoreError>> {
        let found = lock(&self.items)
            .records
            .get(&key(session_id, sandbox_id))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn find_by_idempotency_key<'a>(
        &'a self,
        session_id: &'a str,
        tool_call_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<SandboxRecord>, StoreError>> {
        let items = lock(&self.items);
        let found = items
            .idempotency
            .get(&key(session_id, tool_call_id))
            .and_then(|sandbox_id| items.records.get(&key(session_id, sandbox_id)))
            .cloned();
        Box::pin(async move { Ok(found) })
    }

    fn list_by_session<'a>(
        &'a self,
        session_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<SandboxRecord>, StoreError>> {
        let found: Vec<SandboxRecord> = lock(&self.items)
            .records
            .values()
            .filter(|record| record.session_id == session_id)
            .cloned()
            .collect();
        Box::pin(async move { Ok(found) })
    }

    fn update<'a>(
        &'a self,
        record: &'a SandboxRecord,
        expected_version: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let outcome = (|| {
            let mut items = lock(&self.items);
            let record_key = key(&record.session_id, &record.sandbox_id);
            let stored = items.records.get(&record_key).map(|item| item.version);
            if stored != Some(expected_version) {
                return Err(StoreError::VersionConflict {
                    table: "sandboxes".into(),
                    key: format!("{}/{}", record.session_id, record.sandbox_id),
                    expected: expected_version,
                });
            }
            items.records.insert(record_key, record.clone());
            Ok(())
        })();
        Box::pin(async move { outcome })
    }

    fn mark_deleted<'a>(
        &'a self,
        session_id: &'a str,
        sandbox_id: &'a str,
        now: OffsetDateTime,
    ) -> BoxFuture<'a, Result<Option<SandboxRecord>, StoreError>> {
        let updated = lock(&self.items)
            .records
            .get_mut(&key(session_id, sandbox_id))
            .map(|record| {
                record.status = SandboxStatus::Deleted;
                record.version += 1;
                record.updated_at = now;
                record.clone()
            });
        Box::pin(async move { Ok(updated) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SealedEnvelope;
    use time::macros::datetime;

    fn sandbox(sandbox_id: &str, tool_call_id: Option<&str>) -> SandboxRecord {
        SandboxRecord {
            session_id: "session-1".into(),
            sandbox_id: sandbox_id.into(),
            user_id: "user-1".into(),
            org_id: "org-1".into(),
            status: SandboxStatus::Active,
            tool_call_id: tool_call_id.map(str::to_owned),
            expires_at: 1_775_000_000,
            version: 1,
            created_at: datetime!(2026-04-01 10:00 UTC),
            updated_at: datetime!(2026-04-01 10:00 UTC),
            sealed_state: SealedEnvelope::from_bytes(vec![1, 2, 3]),
        }
    }

    #[tokio::test]
    async fn sandbox_create_is_conditional() {
        let store = MemorySandboxStore::default();
        store
            .create(&sandbox("sbx-1", Some("call-1")))
            .await
            .expect("create");

        let same_id = store.create(&sandbox("sbx-1", None)).await;
        assert!(matches!(same_id, Err(StoreError::AlreadyExists { .. })));

        let same_call = store.create(&sandbox("sbx-2", Some("call-1"))).await;
        assert!(matches!(
            same_call,
            Err(StoreError::DuplicateIdempotencyKey { .. })
        ));
        assert_eq!(
            store
                .find_by_idempotency_key("session-1", "call-1")
                .await
                .expect("find")
                .map(|record| record.sandbox_id),
            Some("sbx-1".to_owned())
        );
        assert_eq!(
            store
                .list_by_session("session-1")
                .await
                .expect("list")
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn sandbox_update_checks_version() {
        let store = MemorySandboxStore::default();
        store.create(&sandbox("sbx-1", None)).await.expect("create");
        let mut next = sandbox("sbx-1", None);
        next.version = 2;

        store.update(&next, 1).await.expect("first update");
        let stale = store.update(&next, 1).await;

        assert!(matches!(
            stale,
            Err(StoreError::VersionConflict { expected: 1, .. })
        ));
    }

    #[tokio::test]
    async fn sandbox_mark_deleted_bumps_version() {
        let store = MemorySandboxStore::default();
        store.create(&sandbox("sbx-1", None)).await.expect("create");
        let now = datetime!(2026-04-01 10:05 UTC);

        let deleted = store
            .mark_deleted("session-1", "sbx-1", now)
            .await
            .expect("mark")
            .expect("record exists");

        assert_eq!(deleted.status, SandboxStatus::Deleted);
        assert_eq!(deleted.version, 2);
        assert_eq!(deleted.updated_at, now);
        assert!(
            store
                .mark_deleted("session-1", "missing", now)
                .await
                .expect("mark")
                .is_none()
        );
    }
}
