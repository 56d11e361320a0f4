//! The sealed envelope format and the seal and open operations.
//!
//! Format version 1, all integers big-endian:
//!
//! | Field | Size |
//! |---|---|
//! | version (`1`) | 1 byte |
//! | algorithm (`1` = AES-256-GCM, 96-bit nonce, 128-bit tag) | 1 byte |
//! | key id length, then key id (UTF-8) | 2 bytes + 1..=2048 bytes |
//! | wrapped data key length, then wrapped data key | 2 bytes + 1..=8192 bytes |
//! | nonce | 12 bytes |
//! | ciphertext followed by the GCM tag | 16 bytes or more |
//!
//! The header is every byte before the ciphertext. The GCM associated data is the canonical
//! encoding of the encryption context followed by the header, so changing any header byte, the
//! context or the ciphertext makes opening fail.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use std::sync::Arc;
use zeroize::Zeroizing;

use super::{CryptoError, EncryptionContext, KeyProvider, WrappedKey};

/// Envelope format version this build writes and reads.
pub const ENVELOPE_VERSION: u8 = 1;
/// Algorithm id of AES-256-GCM with a 96-bit nonce and a 128-bit tag.
pub const ALGORITHM_AES_256_GCM: u8 = 1;
/// Nonce length of AES-GCM in bytes.
pub const NONCE_LENGTH: usize = 12;
/// Authentication tag length of AES-GCM in bytes.
pub const TAG_LENGTH: usize = 16;

/// Maximum key id length in bytes. A KMS key ARN is about 80 bytes long.
const MAX_KEY_ID_LENGTH: usize = 2048;
/// Maximum wrapped data key length in bytes, far above the few hundred bytes KMS returns for a
/// 32-byte key.
const MAX_WRAPPED_KEY_LENGTH: usize = 8192;

/// A sealed value as stored: header and ciphertext in one byte string. `Debug` prints only the
/// length, never the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedEnvelope(Vec<u8>);

impl SealedEnvelope {
    /// Wraps bytes read from storage; they are checked when opened.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Returns the stored form.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Returns the stored form, consuming the envelope.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// Returns the key id the envelope names, if its header parses.
    ///
    /// # Errors
    /// [`CryptoError`] describing the first malformed field.
    pub fn key_id(&self) -> Result<&str, CryptoError> {
        Ok(EnvelopeParts::parse(&self.0)?.key_id)
    }
}

impl std::fmt::Debug for SealedEnvelope {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "SealedEnvelope({} bytes)", self.0.len())
    }
}

/// The fields of an envelope, borrowed from its bytes.
struct EnvelopeParts<'a> {
    header: &'a [u8],
    key_id: &'a str,
    wrapped_key: &'a [u8],
    nonce: &'a [u8],
    ciphertext: &'a [u8],
}

/// Reads fields from the front of an envelope, reporting which one is cut short.
struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, field: &'static str, count: usize) -> Result<&'a [u8], CryptoError> {
        let remaining = self.bytes.len() - self.position;
        if count > remaining {
            return Err(CryptoError::Truncated {
                field,
                needed: count,
                found: remaining,
            });
        }
        let slice = &self.bytes[self.position..self.position + count];
        self.position += count;
        Ok(slice)
    }

    fn take_u8(&mut self, field: &'static str) -> Result<u8, CryptoError> {
        Ok(self.take(field, 1)?[0])
    }

    fn take_length_prefixed(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<&'a [u8], CryptoError> {
        let length = self.take(field, 2)?;
        let length = usize::from(u16::from_be_bytes([length[0], length[1]]));
        if length == 0 || length > max {
            return Err(CryptoError::Malformed {
                reason: "a length field is zero or above its maximum",
            });
        }
        self.take(field, length)
    }
}

impl<'a> EnvelopeParts<'a> {
    fn parse(bytes: &'a [u8]) -> Result<Self, CryptoError> {
        let mut reader = Reader { bytes, position: 0 };

        let version = reader.take_u8("version")?;
        if version != ENVELOPE_VERSION {
            return Err(CryptoError::UnsupportedVersion { found: version });
        }
        let algorithm = reader.take_u8("algorithm")?;
        if algorithm != ALGORITHM_AES_256_GCM {
            return Err(CryptoError::UnsupportedAlgorithm { found: algorithm });
        }
        let key_id = reader.take_length_prefixed("key id", MAX_KEY_ID_LENGTH)?;
        let key_id = std::str::from_utf8(key_id).map_err(|_| CryptoError::Malformed {
            reason: "the key id is not UTF-8",
        })?;
        let wrapped_key =
            reader.take_length_prefixed("wrapped data key", MAX_WRAPPED_KEY_LENGTH)?;
        let nonce = reader.take("nonce", NONCE_LENGTH)?;
        let header_end = reader.position;
        reader.take("authentication tag", TAG_LENGTH)?;

        Ok(Self {
            header: &bytes[..header_end],
            key_id,
            wrapped_key,
            nonce,
            ciphertext: &bytes[header_end..],
        })
    }
}

/// Builds the header of a version 1 envelope.
fn encode_header(key_id: &str, wrapped: &WrappedKey, nonce: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let key_id_length = u16::try_from(key_id.len())
        .ok()
        .filter(|length| *length > 0 && usize::from(*length) <= MAX_KEY_ID_LENGTH)
        .ok_or(CryptoError::Malformed {
            reason: "the key provider returned an empty or oversized key id",
        })?;
    let wrapped_length = u16::try_from(wrapped.as_bytes().len())
        .ok()
        .filter(|length| *length > 0 && usize::from(*length) <= MAX_WRAPPED_KEY_LENGTH)
        .ok_or(CryptoError::Malformed {
            reason: "the key provider returned an empty or oversized wrapped data key",
        })?;

    let mut header = Vec::with_capacity(6 + key_id.len() + wrapped.as_bytes().len() + NONCE_LENGTH);
    header.push(ENVELOPE_VERSION);
    header.push(ALGORITHM_AES_256_GCM);
    header.extend_from_slice(&key_id_length.to_be_bytes());
    header.extend_from_slice(key_id.as_bytes());
    header.extend_from_slice(&wrapped_length.to_be_bytes());
    header.extend_from_slice(wrapped.as_bytes());
    header.extend_from_slice(nonce);
    Ok(header)
}

fn associated_data(context: &EncryptionContext, header: &[u8]) -> Vec<u8> {
    let mut aad = context.canonical_bytes();
    aad.extend_from_slice(header);
    aad
}

/// An opened plaintext: zeroized on drop, redacted in `Debug`.
pub struct Plaintext(Zeroizing<Vec<u8>>);

impl Plaintext {
    /// Returns the plaintext bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Plaintext {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Plaintext([REDACTED])")
    }
}

/// Seals and opens envelopes with data keys from a [`KeyProvider`]. Cheap to clone; built once
/// per cold start.
#[derive(Debug, Clone)]
pub struct EnvelopeSealer {
    provider: Arc<dyn KeyProvider>,
}

impl EnvelopeSealer {
    /// Creates a sealer over `provider`.
    pub fn new(provider: Arc<dyn KeyProvider>) -> Self {
        Self { provider }
    }

    /// Encrypts `plaintext` under a fresh data key bound to `context`.
    ///
    /// # Errors
    /// [`CryptoError::Kms`] when the key provider fails; retryable when KMS was unavailable.
    pub async fn seal(
        &self,
        context: &EncryptionContext,
        plaintext: &[u8],
    ) -> Result<SealedEnvelope, CryptoError> {
        // 1. A fresh data key per envelope, bound to the context by the key provider.
        let data_key = self.provider.generate_data_key(context).await?;

        // 2. A random nonce; it never repeats because the key encrypts only this message.
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);

        // 3. Header and associated data, then AES-256-GCM.
        let header = encode_header(&data_key.key_id, &data_key.wrapped, nonce.as_slice())?;
        let aad = associated_data(context, &header);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(data_key.plaintext.expose()));
        let ciphertext = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Encryption)?;

        let mut bytes = header;
        bytes.extend_from_slice(&ciphertext);
        Ok(SealedEnvelope(bytes))
    }

    /// Decrypts `envelope`, which must have been sealed under the same `context`.
    ///
    /// # Errors
    /// [`CryptoError::Truncated`], [`CryptoError::UnsupportedVersion`],
    /// [`CryptoError::UnsupportedAlgorithm`] or [`CryptoError::Malformed`] for a damaged header;
    /// [`CryptoError::KeyRejected`] when the key provider refuses the context or key;
    /// [`CryptoError::Decryption`] when the ciphertext, header or context was altered.
    pub async fn open(
        &self,
        context: &EncryptionContext,
        envelope: &SealedEnvelope,
    ) -> Result<Plaintext, CryptoError> {
        // 1. Parse the header; a damaged one fails before any KMS call.
        let parts = EnvelopeParts::parse(&envelope.0)?;

        // 2. Unwrap the data key with the same context.
        let wrapped = WrappedKey::new(parts.wrapped_key.to_vec());
        let data_key = self
            .provider
            .decrypt_data_key(parts.key_id, &wrapped, context)
            .await?;

        // 3. AES-256-GCM with the context and the header as associated data.
        let aad = associated_data(context, parts.header);
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(data_key.expose()));
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(parts.nonce),
                Payload {
                    msg: parts.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Decryption)?;
        Ok(Plaintext(Zeroizing::new(plaintext)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{DataKey, GeneratedDataKey, LocalKeyProvider};
    use futures_util::future::BoxFuture;

    fn sealer() -> EnvelopeSealer {
        EnvelopeSealer::new(Arc::new(LocalKeyProvider::new("local-key-1")))
    }

    fn connection_context() -> EncryptionContext {
        EncryptionContext::deno_connection("user-1")
    }

    #[tokio::test]
    async fn seal_then_open_round_trip() {
        let sealer = sealer();
        let context = connection_context();

        let envelope = sealer.seal(&context, b"ddo_secret").await.expect("seal");
        let opened = sealer.open(&context, &envelope).await.expect("open");

        assert_eq!(opened.expose(), b"ddo_secret");
        assert_eq!(envelope.key_id().expect("key id"), "local-key-1");
        assert_eq!(envelope.as_bytes()[0], ENVELOPE_VERSION);
        assert_eq!(envelope.as_bytes()[1], ALGORITHM_AES_256_GCM);
    }

    #[tokio::test]
    async fn round_trip_across_sizes() {
        let sealer = sealer();
        let context = connection_context();

        for size in [0usize, 1, 15, 16, 17, 255, 4096, 65_537] {
            let plaintext: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            let envelope = sealer.seal(&context, &plaintext).await.expect("seal");
            let opened = sealer.open(&context, &envelope).await.expect("open");

            assert_eq!(opened.expose(), plaintext.as_slice(), "size {size}");
            let parts = EnvelopeParts::parse(envelope.as_bytes()).expect("parse");
            assert_eq!(parts.ciphertext.len(), size + TAG_LENGTH, "size {size}");
        }
    }

    #[tokio::test]
    async fn seal_twice_differs() {
        let sealer = sealer();
        let context = connection_context();

        let first = sealer.seal(&context, b"same value").await.expect("seal");
        let second = sealer.seal(&context, b"same value").await.expect("seal");

        assert_ne!(first, second);
        let first_parts = EnvelopeParts::parse(first.as_bytes()).expect("parse");
        let second_parts = EnvelopeParts::parse(second.as_bytes()).expect("parse");
        assert_ne!(first_parts.nonce, second_parts.nonce);
        assert_ne!(first_parts.wrapped_key, second_parts.wrapped_key);
        assert_ne!(first_parts.ciphertext, second_parts.ciphertext);
    }

    #[tokio::test]
    async fn open_rejects_wrong_context() {
        let sealer = sealer();
        let envelope = sealer
            .seal(&connection_context(), b"secret")
            .await
            .expect("seal");

        let error = sealer
            .open(&EncryptionContext::deno_connection("user-2"), &envelope)
            .await
            .expect_err("other user");

        assert!(
            matches!(error, CryptoError::KeyRejected { .. }),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn open_rejects_every_flipped_byte() {
        let sealer = sealer();
        let context = connection_context();
        let envelope = sealer.seal(&context, b"secret value").await.expect("seal");

        for index in 0..envelope.as_bytes().len() {
            let mut bytes = envelope.as_bytes().to_vec();
            bytes[index] ^= 0x01;
            let result = sealer
                .open(&context, &SealedEnvelope::from_bytes(bytes))
                .await;
            assert!(result.is_err(), "flipped byte {index} still opened");
        }
    }

    #[tokio::test]
    async fn open_rejects_every_truncation() {
        let sealer = sealer();
        let context = connection_context();
        let envelope = sealer.seal(&context, b"secret value").await.expect("seal");

        for length in 0..envelope.as_bytes().len() {
            let bytes = envelope.as_bytes()[..length].to_vec();
            let error = sealer
                .open(&context, &SealedEnvelope::from_bytes(bytes))
                .await
                .expect_err("truncated envelope opened");
            assert!(
                matches!(
                    error,
                    CryptoError::Truncated { .. }
                        | CryptoError::Malformed { .. }
                        | CryptoError::Decryption
                ),
                "length {length}: {error:?}"
            );
        }
    }

    #[tokio::test]
    async fn open_truncated_names_field() {
        let sealer = sealer();
        let context = connection_context();
        let envelope = sealer.seal(&context, b"x").await.expect("seal");
        let bytes = envelope.as_bytes()[..envelope.as_bytes().len() - 17].to_vec();

        let error = sealer
            .open(&context, &SealedEnvelope::from_bytes(bytes))
            .await
            .expect_err("cut into the tag");

        assert_eq!(
            error.to_string(),
            "sealed envelope is truncated: authentication tag needs 16 more bytes but 0 remain"
        );
    }

    #[tokio::test]
    async fn open_rejects_unknown_version_and_algorithm() {
        let sealer = sealer();
        let context = connection_context();
        let envelope = sealer.seal(&context, b"secret").await.expect("seal");

        let mut bytes = envelope.as_bytes().to_vec();
        bytes[0] = 2;
        let error = sealer
            .open(&context, &SealedEnvelope::from_bytes(bytes))
            .await
            .expect_err("version 2");
        assert!(matches!(
            error,
            CryptoError::UnsupportedVersion { found: 2 }
        ));
        assert_eq!(
            error.to_string(),
            "unsupported envelope version 2; this build reads version 1"
        );

        let mut bytes = envelope.as_bytes().to_vec();
        bytes[1] = 9;
        let error = sealer
            .open(&context, &SealedEnvelope::from_bytes(bytes))
            .await
            .expect_err("algorithm 9");
        assert!(matches!(
            error,
            CryptoError::UnsupportedAlgorithm { found: 9 }
        ));
    }

    #[tokio::test]
    async fn open_rejects_other_key() {
        let envelope = sealer()
            .seal(&connection_context(), b"secret")
            .await
            .expect("seal");
        let other = EnvelopeSealer::new(Arc::new(LocalKeyProvider::new("local-key-1")));

        let error = other
            .open(&connection_context(), &envelope)
            .await
            .expect_err("another master key with the same id");

        assert!(
            matches!(error, CryptoError::KeyRejected { .. }),
            "{error:?}"
        );
    }

    /// A key provider that ignores the encryption context, as some emulators do.
    #[derive(Debug)]
    struct ContextBlindProvider(LocalKeyProvider);

    impl KeyProvider for ContextBlindProvider {
        fn generate_data_key<'a>(
            &'a self,
            _context: &'a EncryptionContext,
        ) -> BoxFuture<'a, Result<GeneratedDataKey, CryptoError>> {
            self.0.generate_data_key(&BLIND_CONTEXT)
        }

        fn decrypt_data_key<'a>(
            &'a self,
            key_id: &'a str,
            wrapped: &'a WrappedKey,
            _context: &'a EncryptionContext,
        ) -> BoxFuture<'a, Result<DataKey, CryptoError>> {
            self.0.decrypt_data_key(key_id, wrapped, &BLIND_CONTEXT)
        }
    }

    static BLIND_CONTEXT: std::sync::LazyLock<EncryptionContext> =
        std::sync::LazyLock::new(|| EncryptionContext::new("blind"));

    #[tokio::test]
    async fn associated_data_binds_record_without_provider_check() {
        // GIVEN a provider that unwraps the data key whatever the context
        let sealer = EnvelopeSealer::new(Arc::new(ContextBlindProvider(LocalKeyProvider::new(
            "blind-key",
        ))));
        let owner = EncryptionContext::sandbox_record("session-1", "sbx-1");
        let envelope = sealer.seal(&owner, b"state").await.expect("seal");
        assert_eq!(
            sealer
                .open(&owner, &envelope)
                .await
                .expect("own record")
                .expose(),
            b"state"
        );

        // WHEN the envelope is opened as another record's
        let moved = sealer
            .open(
                &EncryptionContext::sandbox_record("session-1", "sbx-2"),
                &envelope,
            )
            .await;

        // THEN the GCM associated data rejects it
        assert!(matches!(moved, Err(CryptoError::Decryption)), "{moved:?}");
    }

    #[test]
    fn debug_hides_bytes() {
        let envelope = SealedEnvelope::from_bytes(vec![1, 2, 3, 4]);
        assert_eq!(format!("{envelope:?}"), "SealedEnvelope(4 bytes)");
    }
}
