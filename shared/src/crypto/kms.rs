//! The KMS key provider: `GenerateDataKey` (AES_256) to seal, `Decrypt` to open, both with the
//! encryption context.

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use futures_util::future::BoxFuture;
use zeroize::Zeroize;

use super::{CryptoError, DataKey, EncryptionContext, GeneratedDataKey, KeyProvider, WrappedKey};

/// KMS error codes meaning "this wrapped key does not open with this context or key": AWS
/// answers `InvalidCiphertextException` for a wrong context or altered blob and
/// `IncorrectKeyException` for another key. The moto emulator answers `AccessDeniedException`
/// for another key, as AWS does when IAM conditions on the encryption context deny the call.
const REJECTED_CODES: [&str; 3] = [
    "InvalidCiphertextException",
    "IncorrectKeyException",
    "AccessDeniedException",
];

/// KMS error codes of failures that may pass on retry. The SDK has already retried these with
/// backoff when they reach this code.
const TRANSIENT_CODES: [&str; 4] = [
    "ThrottlingException",
    "LimitExceededException",
    "KMSInternalException",
    "DependencyTimeoutException",
];

/// Key provider backed by AWS KMS. Data keys are generated under `key_id` (an id, ARN or alias)
/// and opened with the key ARN recorded in each envelope.
#[derive(Debug, Clone)]
pub struct KmsKeyProvider {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl KmsKeyProvider {
    /// Creates a provider that generates data keys under `key_id`.
    pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> Self {
        Self {
            client,
            key_id: key_id.into(),
        }
    }
}

/// Converts an SDK error, keeping it only as the logged source.
fn kms_error<E, R>(operation: &'static str, key_id: &str, error: SdkError<E, R>) -> CryptoError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = error.code().unwrap_or_default().to_owned();
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(_) => TRANSIENT_CODES.contains(&code.as_str()),
        _ => false,
    };
    if operation == "Decrypt" && REJECTED_CODES.contains(&code.as_str()) {
        return CryptoError::KeyRejected {
            key_id: key_id.to_owned(),
            source: Some(Box::new(error)),
        };
    }
    CryptoError::Kms {
        operation,
        retryable,
        source: Box::new(error),
    }
}

impl KeyProvider for KmsKeyProvider {
    fn generate_data_key<'a>(
        &'a self,
        context: &'a EncryptionContext,
    ) -> BoxFuture<'a, Result<GeneratedDataKey, CryptoError>> {
        Box::pin(async move {
            let output = self
                .client
                .generate_data_key()
                .key_id(&self.key_id)
                .key_spec(DataKeySpec::Aes256)
                .set_encryption_context(Some(context.to_map()))
                .send()
                .await
                .map_err(|error| kms_error("GenerateDataKey", &self.key_id, error))?;

            let mut plaintext = output
                .plaintext
                .ok_or(CryptoError::Malformed {
                    reason: "KMS GenerateDataKey returned no plaintext key",
                })?
                .into_inner();
            let data_key = DataKey::from_slice(&plaintext);
            plaintext.zeroize();
            let wrapped = output.ciphertext_blob.ok_or(CryptoError::Malformed {
                reason: "KMS GenerateDataKey returned no wrapped key",
            })?;
            Ok(GeneratedDataKey {
                key_id: output.key_id.unwrap_or_else(|| self.key_id.clone()),
                plaintext: data_key?,
                wrapped: WrappedKey::new(wrapped.into_inner()),
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
            let output = self
                .client
                .decrypt()
                .key_id(key_id)
                .ciphertext_blob(Blob::new(wrapped.as_bytes()))
                .set_encryption_context(Some(context.to_map()))
                .send()
                .await
                .map_err(|error| kms_error("Decrypt", key_id, error))?;

            let mut plaintext = output
                .plaintext
                .ok_or(CryptoError::Malformed {
                    reason: "KMS Decrypt returned no plaintext key",
                })?
                .into_inner();
            let data_key = DataKey::from_slice(&plaintext);
            plaintext.zeroize();
            data_key
        })
    }
}
