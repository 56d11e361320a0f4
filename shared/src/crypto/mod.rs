//! Envelope encryption for the secrets and state the functions store: Deno tokens and sandbox
//! records.
//!
//! Every seal requests from a [`KeyProvider`] (KMS in AWS) a fresh 256-bit data key bound to an
//! [`EncryptionContext`], encrypts with AES-256-GCM under a random 96-bit nonce, and stores the
//! wrapped data key beside the ciphertext in a versioned [`SealedEnvelope`]. Because each data key
//! encrypts exactly one message, random nonces never repeat under one key.
//!
//! Decision: the encryption context is also bound into the GCM associated data together with the
//! envelope header, so an envelope copied to another record fails to open even with a key
//! provider that ignores the context. The context values (user, session and sandbox ids) are not
//! secret: KMS writes them to CloudTrail in plain text.

mod envelope;
mod kms;
mod local;

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;
use zeroize::Zeroizing;

pub use envelope::{
    ALGORITHM_AES_256_GCM, ENVELOPE_VERSION, EnvelopeSealer, NONCE_LENGTH, Plaintext,
    SealedEnvelope, TAG_LENGTH,
};
pub use kms::KmsKeyProvider;
pub use local::LocalKeyProvider;

/// Encryption-context key naming what a sealed value is.
pub const PURPOSE_KEY: &str = "purpose";
/// `purpose` of a sealed Deno token; its owner is named by `user_id`.
pub const DENO_CONNECTION_PURPOSE: &str = "deno-connection";
/// `purpose` of sealed sandbox state; its owner is named by `session_id` and `sandbox_id`.
pub const SANDBOX_RECORD_PURPOSE: &str = "sandbox-record";
/// Length of a data key in bytes (AES-256).
pub const DATA_KEY_LENGTH: usize = 32;

/// A failure to seal or open an envelope. Messages name the envelope's key id or the failing
/// check but never contain key material, plaintext or ciphertext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The envelope ends before a field it declares.
    #[error("sealed envelope is truncated: {field} needs {needed} more bytes but {found} remain")]
    Truncated {
        /// Field that does not fit.
        field: &'static str,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the envelope.
        found: usize,
    },
    /// The envelope was written in a format version this build cannot read.
    #[error("unsupported envelope version {found}; this build reads version {ENVELOPE_VERSION}")]
    UnsupportedVersion {
        /// Version byte found.
        found: u8,
    },
    /// The envelope names an algorithm this build does not implement.
    #[error(
        "unsupported envelope algorithm {found}; this build implements {ALGORITHM_AES_256_GCM} (AES-256-GCM)"
    )]
    UnsupportedAlgorithm {
        /// Algorithm byte found.
        found: u8,
    },
    /// A field of the envelope has an impossible value.
    #[error("malformed envelope: {reason}")]
    Malformed {
        /// Description of the fault.
        reason: &'static str,
    },
    /// The key provider refused to unwrap the data key: the encryption context differs, the key
    /// is another one, or the wrapped key was altered.
    #[error(
        "key provider rejected the wrapped data key of key {key_id}: wrong encryption context, wrong key or altered wrapped key"
    )]
    KeyRejected {
        /// Key id recorded in the envelope.
        key_id: String,
        /// The provider's error, if it returned one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A call to KMS failed for a reason other than a rejected key.
    #[error("KMS {operation} failed")]
    Kms {
        /// KMS operation, such as `GenerateDataKey`.
        operation: &'static str,
        /// Whether the same call may succeed later (throttling, network, KMS internal error).
        retryable: bool,
        /// The SDK error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The key provider returned a data key of the wrong length.
    #[error("key provider returned a {found}-byte data key; AES-256 needs {DATA_KEY_LENGTH}")]
    InvalidDataKey {
        /// Length returned.
        found: usize,
    },
    /// AES-GCM authentication failed: the envelope was altered, or it belongs to another record.
    #[error(
        "failed to decrypt envelope: authentication failed, so it was altered or belongs to another record"
    )]
    Decryption,
    /// AES-GCM refused to encrypt; only possible for messages far beyond any record size.
    #[error("failed to encrypt: the plaintext is too long for AES-GCM")]
    Encryption,
}

impl CryptoError {
    /// Returns whether the same operation may succeed when retried unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Kms {
                retryable: true,
                ..
            }
        )
    }
}

/// The non-secret key-value pairs that name what a sealed value is and whom it belongs to. KMS
/// binds them to the wrapped data key, and the envelope binds them into the GCM associated data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptionContext {
    pairs: BTreeMap<String, String>,
}

impl EncryptionContext {
    /// Creates a context with only `purpose` set.
    pub fn new(purpose: &str) -> Self {
        let mut pairs = BTreeMap::new();
        pairs.insert(PURPOSE_KEY.to_owned(), purpose.to_owned());
        Self { pairs }
    }

    /// Adds or replaces the pair `key`=`value`.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.pairs.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Creates the context of the Deno token connected by `user_id`.
    pub fn deno_connection(user_id: &str) -> Self {
        Self::new(DENO_CONNECTION_PURPOSE).with("user_id", user_id)
    }

    /// Creates the context of the state of sandbox `sandbox_id` in session `session_id`.
    pub fn sandbox_record(session_id: &str, sandbox_id: &str) -> Self {
        Self::new(SANDBOX_RECORD_PURPOSE)
            .with("session_id", session_id)
            .with("sandbox_id", sandbox_id)
    }

    /// Returns the pairs sorted by key.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Returns the pairs as the map the KMS SDK takes.
    pub fn to_map(&self) -> std::collections::HashMap<String, String> {
        self.pairs
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Encodes the context canonically: the pair count, then each key and value sorted by key,
    /// every item prefixed with its length as a 32-bit big-endian integer. Length prefixes make
    /// the encoding unambiguous, so `{"a": "bc"}` and `{"ab": "c"}` never encode alike.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(self.pairs.len() as u32).to_be_bytes());
        for (key, value) in &self.pairs {
            push_length_prefixed(&mut bytes, key.as_bytes());
            push_length_prefixed(&mut bytes, value.as_bytes());
        }
        bytes
    }
}

fn push_length_prefixed(bytes: &mut Vec<u8>, item: &[u8]) {
    bytes.extend_from_slice(&(item.len() as u32).to_be_bytes());
    bytes.extend_from_slice(item);
}

/// A plaintext 256-bit data key: zeroized on drop, redacted in `Debug`, neither `Clone` nor
/// serializable.
pub struct DataKey(Zeroizing<[u8; DATA_KEY_LENGTH]>);

impl DataKey {
    /// Copies `bytes` into a data key; the caller zeroizes its own copy.
    ///
    /// # Errors
    /// [`CryptoError::InvalidDataKey`] unless `bytes` is exactly 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        let mut key = Zeroizing::new([0u8; DATA_KEY_LENGTH]);
        if bytes.len() != DATA_KEY_LENGTH {
            return Err(CryptoError::InvalidDataKey { found: bytes.len() });
        }
        key.copy_from_slice(bytes);
        Ok(Self(key))
    }

    /// Returns the key bytes, for the cipher only.
    pub fn expose(&self) -> &[u8; DATA_KEY_LENGTH] {
        &self.0
    }
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DataKey([REDACTED])")
    }
}

/// A data key encrypted by the key provider; only the provider can unwrap it. Not secret on its
/// own, but `Debug` prints only its length because logs have no use for it.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedKey(Vec<u8>);

impl WrappedKey {
    /// Wraps bytes returned by a key provider.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    /// Returns the wrapped bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for WrappedKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "WrappedKey({} bytes)", self.0.len())
    }
}

/// A fresh data key as returned by [`KeyProvider::generate_data_key`].
#[derive(Debug)]
pub struct GeneratedDataKey {
    /// Id of the key that wrapped the data key; KMS returns the key ARN.
    pub key_id: String,
    /// The plaintext data key.
    pub plaintext: DataKey,
    /// The data key wrapped under `key_id`, bound to the encryption context.
    pub wrapped: WrappedKey,
}

/// Source of data keys: KMS in AWS ([`KmsKeyProvider`]) or an in-process key for tests
/// ([`LocalKeyProvider`]).
pub trait KeyProvider: Send + Sync + std::fmt::Debug {
    /// Generates a fresh 256-bit data key bound to `context`.
    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedDataKey, CryptoError>>;

    /// Unwraps a data key that `key_id` wrapped under `context`.
    ///
    /// # Errors
    /// [`CryptoError::KeyRejected`] when the context, the key or the wrapped bytes do not match.
    fn decrypt_data_key<'a>(
        &'a self,
        key_id: &'a str,
        wrapped: &'a WrappedKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, CryptoError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_bytes_sorted_and_length_prefixed() {
        let context = EncryptionContext::new("p").with("b", "2").with("a", "1");

        let bytes = context.canonical_bytes();

        let expected: Vec<u8> = [
            &3u32.to_be_bytes()[..],
            &1u32.to_be_bytes(),
            b"a",
            &1u32.to_be_bytes(),
            b"1",
            &1u32.to_be_bytes(),
            b"b",
            &1u32.to_be_bytes(),
            b"2",
            &7u32.to_be_bytes(),
            b"purpose",
            &1u32.to_be_bytes(),
            b"p",
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn canonical_bytes_distinguish_split_points() {
        let first = EncryptionContext::new("p").with("a", "bc");
        let second = EncryptionContext::new("p").with("ab", "c");
        assert_ne!(first.canonical_bytes(), second.canonical_bytes());
    }

    #[test]
    fn contexts_name_purpose_and_owner() {
        let connection = EncryptionContext::deno_connection("user-1");
        assert_eq!(
            connection.pairs().collect::<Vec<_>>(),
            vec![("purpose", "deno-connection"), ("user_id", "user-1")]
        );

        let sandbox = EncryptionContext::sandbox_record("session-1", "sbx-1");
        assert_eq!(
            sandbox.pairs().collect::<Vec<_>>(),
            vec![
                ("purpose", "sandbox-record"),
                ("sandbox_id", "sbx-1"),
                ("session_id", "session-1"),
            ]
        );
    }

    #[test]
    fn data_key_rejects_wrong_length_and_redacts() {
        let error = DataKey::from_slice(&[7u8; 16]).expect_err("16 bytes");
        assert!(matches!(error, CryptoError::InvalidDataKey { found: 16 }));

        let key = DataKey::from_slice(&[7u8; 32]).expect("32 bytes");
        assert_eq!(format!("{key:?}"), "DataKey([REDACTED])");
        assert_eq!(key.expose(), &[7u8; 32]);
    }

    #[test]
    fn wrapped_key_debug_shows_length_only() {
        let wrapped = WrappedKey::new(vec![1, 2, 3]);
        assert_eq!(format!("{wrapped:?}"), "WrappedKey(3 bytes)");
    }
}
