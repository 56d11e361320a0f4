//! Round trips against the local AWS emulators, proving the stack the other tests rely on works:
//! DynamoDB Local behind its loopback relay and the KMS emulator.

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_kms::primitives::Blob;
use integration_tests::stack_app;

#[tokio::test]
async fn dynamodb_local_put_then_get() {
    let app = stack_app().await;
    let table = &app.config.capabilities_table;
    let org_id = format!("org-roundtrip-{}", std::process::id());

    app.dynamodb
        .put_item()
        .table_name(table)
        .item("org_id", AttributeValue::S(org_id.clone()))
        .item("capability", AttributeValue::S("roundtrip".into()))
        .item("enabled", AttributeValue::Bool(true))
        .send()
        .await
        .expect("put_item on DynamoDB Local");
    let item = app
        .dynamodb
        .get_item()
        .table_name(table)
        .key("org_id", AttributeValue::S(org_id.clone()))
        .key("capability", AttributeValue::S("roundtrip".into()))
        .consistent_read(true)
        .send()
        .await
        .expect("get_item on DynamoDB Local")
        .item
        .expect("item just written");

    assert_eq!(item.get("enabled"), Some(&AttributeValue::Bool(true)));
    assert_eq!(item.get("org_id"), Some(&AttributeValue::S(org_id)));
}

#[tokio::test]
async fn kms_emulator_data_key_decrypts_with_context() {
    let app = stack_app().await;

    let generated = app
        .kms
        .generate_data_key()
        .key_id(&app.config.kms_key_id)
        .key_spec(aws_sdk_kms::types::DataKeySpec::Aes256)
        .encryption_context("purpose", "roundtrip")
        .send()
        .await
        .expect("GenerateDataKey on the KMS emulator");
    let plaintext = generated.plaintext.expect("plaintext key").into_inner();
    let wrapped = generated.ciphertext_blob.expect("wrapped key");
    assert_eq!(plaintext.len(), 32);

    let decrypted = app
        .kms
        .decrypt()
        .ciphertext_blob(wrapped.clone())
        .encryption_context("purpose", "roundtrip")
        .send()
        .await
        .expect("Decrypt with the same context");
    assert_eq!(
        decrypted.plaintext.expect("plaintext").into_inner(),
        plaintext
    );

    let wrong_context = app
        .kms
        .decrypt()
        .ciphertext_blob(Blob::new(wrapped.into_inner()))
        .encryption_context("purpose", "other")
        .send()
        .await;
    assert!(
        wrong_context.is_err(),
        "the emulator must enforce the encryption context"
    );
}
