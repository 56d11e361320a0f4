//! Envelope encryption against the KMS emulator: round trip, and every way an envelope must fail
//! to open (wrong context, moved to another record, flipped byte, truncation, wrong key, unknown
//! version).

mod support;

use std::sync::Arc;

use deno_sandbox_tools::crypto::{
    CryptoError, EncryptionContext, EnvelopeSealer, KmsKeyProvider, SealedEnvelope,
};
use integration_tests::stack_app;

async fn kms_sealer() -> (EnvelopeSealer, aws_sdk_kms::Client) {
    let app = stack_app().await;
    let provider = KmsKeyProvider::new(app.kms.clone(), &app.config.kms_key_id);
    (EnvelopeSealer::new(Arc::new(provider)), app.kms)
}

#[tokio::test]
async fn kms_seal_open_round_trip() {
    let (sealer, _) = kms_sealer().await;
    let context = EncryptionContext::deno_connection("user-kms-1");

    let envelope = sealer
        .seal(&context, b"ddo_roundtriptoken0000000000000")
        .await
        .expect("seal");
    let opened = sealer.open(&context, &envelope).await.expect("open");

    assert_eq!(opened.expose(), b"ddo_roundtriptoken0000000000000");
    let key_id = envelope.key_id().expect("key id");
    assert!(key_id.starts_with("arn:aws:kms:"), "{key_id}");
}

#[tokio::test]
async fn kms_two_seals_differ() {
    let (sealer, _) = kms_sealer().await;
    let context = EncryptionContext::deno_connection("user-kms-2");

    let first = sealer.seal(&context, b"same").await.expect("seal");
    let second = sealer.seal(&context, b"same").await.expect("seal");

    assert_ne!(first.as_bytes(), second.as_bytes());
    let (first_wrapped, first_ciphertext) = support::envelope_parts(first.as_bytes());
    let (second_wrapped, second_ciphertext) = support::envelope_parts(second.as_bytes());
    assert_ne!(first_wrapped, second_wrapped);
    assert_ne!(first_ciphertext, second_ciphertext);
}

#[tokio::test]
async fn kms_open_rejects_wrong_context() {
    let (sealer, _) = kms_sealer().await;
    let envelope = sealer
        .seal(&EncryptionContext::deno_connection("user-a"), b"secret")
        .await
        .expect("seal");

    let wrong_user = sealer
        .open(&EncryptionContext::deno_connection("user-b"), &envelope)
        .await
        .expect_err("another user");
    let wrong_purpose = sealer
        .open(
            &EncryptionContext::new("sandbox-record").with("user_id", "user-a"),
            &envelope,
        )
        .await
        .expect_err("another purpose");

    assert!(
        matches!(wrong_user, CryptoError::KeyRejected { .. }),
        "{wrong_user:?}"
    );
    assert!(
        matches!(wrong_purpose, CryptoError::KeyRejected { .. }),
        "{wrong_purpose:?}"
    );
    assert!(
        wrong_user.to_string().contains("wrong encryption context"),
        "{wrong_user}"
    );
}

#[tokio::test]
async fn kms_open_rejects_envelope_of_other_record() {
    let (sealer, _) = kms_sealer().await;
    let envelope = sealer
        .seal(
            &EncryptionContext::sandbox_record("session-1", "sbx-1"),
            b"{\"region\":\"ord\"}",
        )
        .await
        .expect("seal");

    let error = sealer
        .open(
            &EncryptionContext::sandbox_record("session-1", "sbx-2"),
            &envelope,
        )
        .await
        .expect_err("copied to sbx-2");

    assert!(
        matches!(error, CryptoError::KeyRejected { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn kms_open_rejects_every_flipped_byte() {
    let (sealer, _) = kms_sealer().await;
    let context = EncryptionContext::deno_connection("user-flip");
    let envelope = sealer.seal(&context, b"secret value").await.expect("seal");
    let bytes = envelope.as_bytes();
    let ciphertext_start = bytes.len() - support::envelope_parts(bytes).1.len();

    for index in 0..bytes.len() {
        let mut flipped = bytes.to_vec();
        flipped[index] ^= 0x01;
        let result = sealer
            .open(&context, &SealedEnvelope::from_bytes(flipped))
            .await;
        let Err(error) = result else {
            panic!("envelope with byte {index} flipped still opened");
        };
        if index >= ciphertext_start {
            assert!(
                matches!(error, CryptoError::Decryption),
                "byte {index}: {error:?}"
            );
        }
    }
}

#[tokio::test]
async fn kms_open_rejects_truncated_envelope() {
    let (sealer, _) = kms_sealer().await;
    let context = EncryptionContext::deno_connection("user-truncate");
    let envelope = sealer.seal(&context, b"secret value").await.expect("seal");
    let bytes = envelope.as_bytes();

    for length in [
        0,
        1,
        3,
        10,
        bytes.len() / 2,
        bytes.len() - 17,
        bytes.len() - 1,
    ] {
        let error = sealer
            .open(
                &context,
                &SealedEnvelope::from_bytes(bytes[..length].to_vec()),
            )
            .await
            .expect_err("truncated envelope opened");
        assert!(
            matches!(
                error,
                CryptoError::Truncated { .. } | CryptoError::Decryption
            ),
            "length {length}: {error:?}"
        );
    }
    let cut_header = sealer
        .open(&context, &SealedEnvelope::from_bytes(bytes[..10].to_vec()))
        .await
        .expect_err("cut in key id");
    assert!(
        cut_header
            .to_string()
            .starts_with("sealed envelope is truncated: key id"),
        "{cut_header}"
    );
}

#[tokio::test]
async fn kms_open_rejects_wrong_key() {
    // GIVEN an envelope sealed under the stack's key and a second key in the emulator
    let (sealer, kms) = kms_sealer().await;
    let context = EncryptionContext::deno_connection("user-wrong-key");
    let envelope = sealer.seal(&context, b"secret").await.expect("seal");
    let other_key = kms
        .create_key()
        .description("second key for the wrong-key test")
        .send()
        .await
        .expect("create second key")
        .key_metadata
        .expect("key metadata")
        .arn
        .expect("key arn");

    // WHEN the envelope names the other key
    let renamed = SealedEnvelope::from_bytes(support::with_key_id(envelope.as_bytes(), &other_key));
    let error = sealer
        .open(&context, &renamed)
        .await
        .expect_err("other key");

    // THEN KMS refuses to unwrap the data key with it
    assert!(
        matches!(error, CryptoError::KeyRejected { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn kms_open_rejects_unknown_version() {
    let (sealer, _) = kms_sealer().await;
    let context = EncryptionContext::deno_connection("user-version");
    let envelope = sealer.seal(&context, b"secret").await.expect("seal");
    let mut bytes = envelope.as_bytes().to_vec();
    bytes[0] = 7;

    let error = sealer
        .open(&context, &SealedEnvelope::from_bytes(bytes))
        .await
        .expect_err("version 7");

    assert!(matches!(
        error,
        CryptoError::UnsupportedVersion { found: 7 }
    ));
    assert_eq!(
        error.to_string(),
        "unsupported envelope version 7; this build reads version 1"
    );
}
