//! The DynamoDB stores against DynamoDB Local: conditional creates, optimistic locking under
//! concurrent writers, idempotency claims, queries by session, the TTL attribute and error
//! mapping.

mod support;

use aws_sdk_dynamodb::types::AttributeValue;
use deno_sandbox_tools::crypto::SealedEnvelope;
use deno_sandbox_tools::store::dynamo::{DynamoConnectionStore, DynamoSandboxStore, EXPIRES_AT};
use deno_sandbox_tools::store::{
    CapabilityRecord, ConnectionRecord, DENO_CAPABILITY, DENO_PROVIDER, SandboxRecord,
    SandboxState, SandboxStatus, StoreError, TokenKind,
};
use integration_tests::stack_app;
use support::unique_id;
use time::OffsetDateTime;
use time::macros::datetime;

fn connection(user_id: &str, version: u64) -> ConnectionRecord {
    let now = OffsetDateTime::now_utc();
    ConnectionRecord {
        user_id: user_id.to_owned(),
        provider: DENO_PROVIDER.to_owned(),
        org_id: "org-store".to_owned(),
        token_kind: TokenKind::Organization,
        token_hint: "ddo_…abcd".to_owned(),
        sealed_token: SealedEnvelope::from_bytes(vec![1, 1, 9, 9]),
        created_at: now,
        updated_at: now,
        validated_at: now,
        version,
    }
}

fn sandbox(session_id: &str, sandbox_id: &str, tool_call_id: Option<&str>) -> SandboxRecord {
    SandboxRecord {
        session_id: session_id.to_owned(),
        sandbox_id: sandbox_id.to_owned(),
        user_id: "user-store".to_owned(),
        org_id: "org-store".to_owned(),
        status: SandboxStatus::Active,
        tool_call_id: tool_call_id.map(str::to_owned),
        expires_at: 1_796_420_000,
        version: 1,
        created_at: datetime!(2026-12-04 21:00 UTC),
        updated_at: datetime!(2026-12-04 21:00 UTC),
        sealed_state: SealedEnvelope::from_bytes(vec![1, 1, 2, 3]),
    }
}

#[tokio::test]
async fn connection_put_get_delete() {
    let app = stack_app().await;
    let user_id = unique_id("user");
    let record = connection(&user_id, 1);

    app.connections.put(&record, None).await.expect("create");
    let stored = app
        .connections
        .get(&user_id, DENO_PROVIDER)
        .await
        .expect("get")
        .expect("stored");
    let existed = app
        .connections
        .delete(&user_id, DENO_PROVIDER)
        .await
        .expect("delete");
    let existed_again = app
        .connections
        .delete(&user_id, DENO_PROVIDER)
        .await
        .expect("delete again");

    assert_eq!(stored, record);
    assert!(existed);
    assert!(!existed_again);
    assert!(
        app.connections
            .get(&user_id, DENO_PROVIDER)
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn connection_writes_are_conditional() {
    let app = stack_app().await;
    let user_id = unique_id("user");
    app.connections
        .put(&connection(&user_id, 1), None)
        .await
        .expect("create");

    let second_create = app.connections.put(&connection(&user_id, 1), None).await;
    let stale_update = app.connections.put(&connection(&user_id, 3), Some(2)).await;
    app.connections
        .put(&connection(&user_id, 2), Some(1))
        .await
        .expect("update from version 1");

    assert!(
        matches!(second_create, Err(StoreError::AlreadyExists { .. })),
        "{second_create:?}"
    );
    assert!(
        matches!(
            stale_update,
            Err(StoreError::VersionConflict { expected: 2, .. })
        ),
        "{stale_update:?}"
    );
    let stored = app
        .connections
        .get(&user_id, DENO_PROVIDER)
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.version, 2);
}

#[tokio::test]
async fn sandbox_concurrent_updates_one_wins() {
    // GIVEN a record at version 1
    let app = stack_app().await;
    let session_id = unique_id("session");
    app.sandboxes
        .create(&sandbox(&session_id, "sbx-race", None))
        .await
        .expect("create");
    let mut first = sandbox(&session_id, "sbx-race", None);
    first.version = 2;
    first.expires_at = 1_796_421_111;
    let mut second = sandbox(&session_id, "sbx-race", None);
    second.version = 2;
    second.expires_at = 1_796_422_222;

    // WHEN two writers update from version 1 at the same time
    let (first_outcome, second_outcome) = tokio::join!(
        app.sandboxes.update(&first, 1),
        app.sandboxes.update(&second, 1)
    );

    // THEN exactly one wins, the other gets a conflict, and the stored record is the winner's
    let outcomes = [&first_outcome, &second_outcome];
    let wins = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let conflicts = outcomes
        .iter()
        .filter(|outcome| {
            matches!(
                outcome,
                Err(StoreError::VersionConflict { expected: 1, .. })
            )
        })
        .count();
    assert_eq!(wins, 1, "{first_outcome:?} {second_outcome:?}");
    assert_eq!(conflicts, 1, "{first_outcome:?} {second_outcome:?}");
    let stored = app
        .sandboxes
        .get(&session_id, "sbx-race")
        .await
        .expect("get")
        .expect("stored");
    let winner = if first_outcome.is_ok() {
        &first
    } else {
        &second
    };
    assert_eq!(&stored, winner);
}

#[tokio::test]
async fn sandbox_create_conditional_and_idempotent() {
    let app = stack_app().await;
    let session_id = unique_id("session");
    let original = sandbox(&session_id, "sbx-1", Some("call-1"));
    app.sandboxes.create(&original).await.expect("create");

    let same_id = app
        .sandboxes
        .create(&sandbox(&session_id, "sbx-1", None))
        .await;
    let same_call = app
        .sandboxes
        .create(&sandbox(&session_id, "sbx-2", Some("call-1")))
        .await;
    let found = app
        .sandboxes
        .find_by_idempotency_key(&session_id, "call-1")
        .await
        .expect("find");
    let not_found = app
        .sandboxes
        .find_by_idempotency_key(&session_id, "call-2")
        .await
        .expect("find");

    assert!(
        matches!(same_id, Err(StoreError::AlreadyExists { .. })),
        "{same_id:?}"
    );
    assert!(
        matches!(same_call, Err(StoreError::DuplicateIdempotencyKey { .. })),
        "{same_call:?}"
    );
    assert_eq!(found, Some(original));
    assert_eq!(not_found, None);
    assert!(
        app.sandboxes
            .get(&session_id, "sbx-2")
            .await
            .expect("get")
            .is_none(),
        "the failed transaction must not leave sbx-2 behind"
    );
}

#[tokio::test]
async fn sandbox_query_by_session() {
    let app = stack_app().await;
    let session_id = unique_id("session");
    let other_session = unique_id("session");
    app.sandboxes
        .create(&sandbox(&session_id, "sbx-b", Some("call-b")))
        .await
        .expect("create b");
    app.sandboxes
        .create(&sandbox(&session_id, "sbx-a", None))
        .await
        .expect("create a");
    app.sandboxes
        .create(&sandbox(&other_session, "sbx-c", None))
        .await
        .expect("create c");

    let listed = app
        .sandboxes
        .list_by_session(&session_id)
        .await
        .expect("list");

    let ids: Vec<&str> = listed
        .iter()
        .map(|record| record.sandbox_id.as_str())
        .collect();
    assert_eq!(ids, ["sbx-a", "sbx-b"]);
    assert_eq!(listed[1].tool_call_id.as_deref(), Some("call-b"));
    assert!(
        app.sandboxes
            .list_by_session(&unique_id("session"))
            .await
            .expect("list empty")
            .is_empty()
    );
}

#[tokio::test]
async fn sandbox_record_has_ttl_attribute() {
    let app = stack_app().await;
    let session_id = unique_id("session");
    app.sandboxes
        .create(&sandbox(&session_id, "sbx-ttl", Some("call-ttl")))
        .await
        .expect("create");

    let item = app
        .dynamodb
        .get_item()
        .table_name(&app.config.sandboxes_table)
        .key("session_id", AttributeValue::S(session_id.clone()))
        .key("sandbox_id", AttributeValue::S("sbx-ttl".into()))
        .send()
        .await
        .expect("raw get")
        .item
        .expect("item");
    let claim = app
        .dynamodb
        .get_item()
        .table_name(&app.config.sandboxes_table)
        .key("session_id", AttributeValue::S(session_id.clone()))
        .key("sandbox_id", AttributeValue::S("idem#call-ttl".into()))
        .send()
        .await
        .expect("raw get claim")
        .item
        .expect("claim item");
    let ttl = app
        .dynamodb
        .describe_time_to_live()
        .table_name(&app.config.sandboxes_table)
        .send()
        .await
        .expect("describe ttl")
        .time_to_live_description
        .expect("ttl description");

    assert_eq!(
        item.get(EXPIRES_AT),
        Some(&AttributeValue::N("1796420000".into()))
    );
    assert_eq!(
        claim.get(EXPIRES_AT),
        Some(&AttributeValue::N("1796420000".into()))
    );
    assert_eq!(ttl.attribute_name(), Some(EXPIRES_AT));
    assert!(matches!(
        item.get("sealed_state"),
        Some(AttributeValue::B(_))
    ));
}

#[tokio::test]
async fn sandbox_mark_deleted() {
    let app = stack_app().await;
    let session_id = unique_id("session");
    app.sandboxes
        .create(&sandbox(&session_id, "sbx-del", None))
        .await
        .expect("create");
    let now = datetime!(2026-12-04 21:30 UTC);

    let deleted = app
        .sandboxes
        .mark_deleted(&session_id, "sbx-del", now)
        .await
        .expect("mark")
        .expect("record");
    let again = app
        .sandboxes
        .mark_deleted(&session_id, "sbx-del", now)
        .await
        .expect("mark again")
        .expect("record");
    let missing = app
        .sandboxes
        .mark_deleted(&session_id, "sbx-missing", now)
        .await
        .expect("mark missing");

    assert_eq!(deleted.status, SandboxStatus::Deleted);
    assert_eq!(deleted.version, 2);
    assert_eq!(deleted.updated_at, now);
    assert_eq!(again.version, 3);
    assert_eq!(missing, None);
    assert!(
        app.sandboxes
            .get(&session_id, "sbx-missing")
            .await
            .expect("get")
            .is_none(),
        "marking a missing record must not create it"
    );
}

#[tokio::test]
async fn sandbox_state_sealed_with_kms() {
    let app = stack_app().await;
    let session_id = unique_id("session");
    let state = SandboxState {
        region: "ams".into(),
        workspace_path: "/home/app".into(),
        started_at: datetime!(2026-12-04 21:00 UTC),
        stop_at: datetime!(2026-12-04 21:20 UTC),
        title: Some("integration".into()),
        memory_mb: 2048,
    };
    let mut record = sandbox(&session_id, "sbx-state", None);
    record.sealed_state = state
        .seal(&app.sealer, &session_id, "sbx-state")
        .await
        .expect("seal");
    app.sandboxes.create(&record).await.expect("create");

    let stored = app
        .sandboxes
        .get(&session_id, "sbx-state")
        .await
        .expect("get")
        .expect("record");
    let opened = SandboxState::open(&app.sealer, &stored)
        .await
        .expect("open");

    assert_eq!(opened, state);
    let raw = String::from_utf8_lossy(stored.sealed_state.as_bytes()).to_string();
    assert!(!raw.contains("integration"), "title stored in plain text");
}

#[tokio::test]
async fn capability_put_get_conflict() {
    let app = stack_app().await;
    let org_id = unique_id("org");
    let record = CapabilityRecord {
        org_id: org_id.clone(),
        capability: DENO_CAPABILITY.into(),
        enabled: true,
        updated_by: "admin-1".into(),
        updated_at: datetime!(2026-12-04 21:00 UTC),
        version: 1,
    };
    app.capabilities.put(&record, None).await.expect("create");

    let duplicate = app.capabilities.put(&record, None).await;
    let stored = app
        .capabilities
        .get(&org_id, DENO_CAPABILITY)
        .await
        .expect("get");

    assert!(matches!(duplicate, Err(StoreError::AlreadyExists { .. })));
    assert_eq!(stored, Some(record));
}

#[tokio::test]
async fn missing_table_is_typed_error() {
    let app = stack_app().await;
    let connections = DynamoConnectionStore::new(app.dynamodb.clone(), "no-such-table");
    let sandboxes = DynamoSandboxStore::new(app.dynamodb.clone(), "no-such-table");

    let get = deno_sandbox_tools::store::ConnectionStore::get(&connections, "user", "deno").await;
    let list = deno_sandbox_tools::store::SandboxStore::list_by_session(&sandboxes, "s").await;

    assert!(
        matches!(&get, Err(StoreError::TableNotFound { table }) if table == "no-such-table"),
        "{get:?}"
    );
    assert!(
        matches!(list, Err(StoreError::TableNotFound { .. })),
        "{list:?}"
    );
    let tool_error: deno_sandbox_tools::contract::ToolError =
        get.expect_err("missing table").into();
    assert_eq!(tool_error.code.as_str(), "internal");
}
