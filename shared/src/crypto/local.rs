//! An in-process key provider for unit tests and local experiments: it wraps data keys under a
//! random master key held in memory, so nothing it seals survives the process.

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use futures_util::future::BoxFuture;
use rand::RngCore;
use zeroize::Zeroizing;

use super::envelope::NONCE_LENGTH;
use super::{
    CryptoError, DATA_KEY_LENGTH, DataKey, EncryptionContext, GeneratedDataKey, KeyProvider,
    WrappedKey,
};

/// A key provider with a random in-memory master key. Like KMS it binds each wrapped data key to
/// its key id and encryption context, so tests of context and key checks mean the same thing
/// against it and against KMS. Not for production: the master key dies with the process.
pub struct LocalKeyProvider {
    key_id: String,
    master_key: Zeroizing<[u8; DATA_KEY_LENGTH]>,
}

impl LocalKeyProvider {
    /// Creates a provider named `key_id` with a fresh random master key. Two providers never
    /// share a master key, even under the same id.
    pub fn new(key_id: impl Into<String>) -> Self {
        let mut master_key = Zeroizing::new([0u8; DATA_KEY_LENGTH]);
        OsRng.fill_bytes(master_key.as_mut_slice());
        Self {
            key_id: key_id.into(),
            master_key,
        }
    }

    fn wrapping_aad(&self, context: &EncryptionContext) -> Vec<u8> {
        let mut aad = self.key_id.as_bytes().to_vec();
        aad.push(0);
        aad.extend_from_slice(&context.canonical_bytes());
        aad
    }

    fn rejected(&self, key_id: &str) -> CryptoError {
        CryptoError::KeyRejected {
            key_id: key_id.to_owned(),
            source: None,
        }
    }
}

impl std::fmt::Debug for LocalKeyProvider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalKeyProvider")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl KeyProvider for LocalKeyProvider {
    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedDataKey, CryptoError>> {
        Box::pin(async move {
            let mut plaintext = Zeroizing::new([0u8; DATA_KEY_LENGTH]);
            OsRng.fill_bytes(plaintext.as_mut_slice());

            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.master_key.as_slice()));
            let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
            let aad = self.wrapping_aad(context);
            let sealed = cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: plaintext.as_slice(),
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::Encryption)?;
            let mut wrapped = nonce.to_vec();
            wrapped.extend_from_slice(&sealed);

            Ok(GeneratedDataKey {
                key_id: self.key_id.clone(),
                plaintext: DataKey::from_slice(plaintext.as_slice())?,
                wrapped: WrappedKey::new(wrapped),
            })
        })
    }

    fn decrypt_data_key<'a>(
        &'a self,
        key_id: &'a str,
        wrapped: &'a WrappedKey,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<DataKey, CryptoError>> {
        Box::pin(async move {
            if key_id != self.key_id || wrapped.as_bytes().len() <= NONCE_LENGTH {
                return Err(self.rejected(key_id));
            }
            let (nonce, sealed) = wrapped.as_bytes().split_at(NONCE_LENGTH);
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(self.master_key.as_slice()));
            let aad = self.wrapping_aad(context);
            let plaintext = cipher
                .decrypt(
                    Nonce::from_slice(nonce),
                    Payload {
                        msg: sealed,
                        aad: &aad,
                    },
                )
                .map_err(|_| self.rejected(key_id))?;
            let plaintext = Zeroizing::new(plaintext);
            DataKey::from_slice(&plaintext)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unwraps_only_with_same_id_and_context() {
        let provider = LocalKeyProvider::new("key-a");
        let context = EncryptionContext::deno_connection("user-1");
        let generated = provider
            .generate_data_key(&context)
            .await
            .expect("generate");

        let unwrapped = provider
            .decrypt_data_key("key-a", &generated.wrapped, &context)
            .await
            .expect("same id and context");
        assert_eq!(unwrapped.expose(), generated.plaintext.expose());

        let wrong_id = provider
            .decrypt_data_key("key-b", &generated.wrapped, &context)
            .await;
        assert!(matches!(wrong_id, Err(CryptoError::KeyRejected { .. })));

        let wrong_context = provider
            .decrypt_data_key(
                "key-a",
                &generated.wrapped,
                &EncryptionContext::deno_connection("user-2"),
            )
            .await;
        assert!(matches!(
            wrong_context,
            Err(CryptoError::KeyRejected { .. })
        ));
    }

    #[test]
    fn debug_hides_master_key() {
        let provider = LocalKeyProvider::new("key-a");
        assert_eq!(
            format!("{provider:?}"),
            "LocalKeyProvider { key_id: \"key-a\", .. }"
        );
    }
}
