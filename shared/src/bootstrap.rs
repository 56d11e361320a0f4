//! Cold-start wiring shared by every function binary: tracing, configuration, AWS clients,
//! stores, the envelope sealer, and the `lambda_http` loop. Each `main.rs` calls [`run`] with its
//! handler.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use lambda_http::{Body, Error, Request, Response, service_fn};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::{LevelFilter, filter_fn};
use tracing_subscriber::layer::SubscriberExt;

use crate::config::{Config, ConfigError};
use crate::connections::{HttpTokenVerifier, StaticTokenVerifier, TokenVerifier};
use crate::crypto::{EnvelopeSealer, KmsKeyProvider, LocalKeyProvider};
use crate::deno::DenoClient;
use crate::store::dynamo::{DynamoCapabilityStore, DynamoConnectionStore, DynamoSandboxStore};
use crate::store::memory::{MemoryCapabilityStore, MemoryConnectionStore, MemorySandboxStore};
use crate::store::{CapabilityStore, ConnectionStore, SandboxStore};

/// Attempts per AWS call, the first included. The SDK's standard retry mode backs off
/// exponentially with jitter between attempts and retries throttling, timeouts and 5xx errors.
pub const AWS_MAX_ATTEMPTS: u32 = 4;
/// Deadline of one attempt of an AWS call.
pub const AWS_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Deadline of an AWS call across all its attempts; well inside API Gateway's 29 s limit.
pub const AWS_OPERATION_TIMEOUT: Duration = Duration::from_secs(12);

/// State built once per cold start and shared by every invocation of the process.
#[derive(Debug)]
pub struct App {
    /// Settings read from the environment.
    pub config: Config,
    /// KMS client for envelope encryption.
    pub kms: aws_sdk_kms::Client,
    /// DynamoDB client for the three tables.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// Seals and opens tokens and sandbox state with data keys from KMS.
    pub sealer: EnvelopeSealer,
    /// The connections table (sealed Deno tokens).
    pub connections: Arc<dyn ConnectionStore>,
    /// The sandboxes table (per-session sandbox records).
    pub sandboxes: Arc<dyn SandboxStore>,
    /// The capabilities table (per-organization switches).
    pub capabilities: Arc<dyn CapabilityStore>,
    /// Checks a token with the Deno Deploy console API before it is stored.
    pub token_verifier: Arc<dyn TokenVerifier>,
    /// Client of Deno's sandbox and console APIs; holds the TLS and HTTP clients, no token.
    pub deno: DenoClient,
}

impl App {
    /// Reads the configuration and builds the AWS clients, honouring the emulator endpoint
    /// overrides when they are set.
    ///
    /// # Errors
    /// [`ConfigError`] naming a missing or malformed variable.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        Ok(Self::with_config(config).await)
    }

    /// Builds the AWS clients for `config` from the default credential and region chain.
    pub async fn with_config(config: Config) -> Self {
        let sdk_config = aws_config::load_from_env().await;
        Self::with_sdk_config(config, &sdk_config)
    }

    /// Builds the AWS clients, stores and verifier for `config` from an explicit SDK
    /// configuration. Tests use this to pass the emulators' credentials without changing the
    /// process environment. AWS calls use the standard retry mode with [`AWS_MAX_ATTEMPTS`]
    /// attempts and the timeouts above.
    ///
    /// # Panics
    /// When the HTTP client's TLS backend cannot be initialized, which only happens at cold start.
    pub fn with_sdk_config(config: Config, sdk_config: &aws_config::SdkConfig) -> Self {
        let retry = RetryConfig::standard().with_max_attempts(AWS_MAX_ATTEMPTS);
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(AWS_ATTEMPT_TIMEOUT)
            .operation_timeout(AWS_OPERATION_TIMEOUT)
            .build();

        let mut kms = aws_sdk_kms::config::Builder::from(sdk_config)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone());
        if let Some(endpoint) = &config.kms_endpoint {
            kms = kms.endpoint_url(endpoint);
        }
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk_config)
            .retry_config(retry)
            .timeout_config(timeouts);
        if let Some(endpoint) = &config.dynamodb_endpoint {
            dynamodb = dynamodb.endpoint_url(endpoint);
        }
        let kms = aws_sdk_kms::Client::from_conf(kms.build());
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(dynamodb.build());

        let token_verifier = HttpTokenVerifier::new(&config.deploy_endpoint)
            .expect("token_verifier: the HTTP client's TLS backend failed to initialize");
        let deno = DenoClient::from_config(&config)
            .expect("deno: the Deno client's endpoints or TLS backend failed to initialize");
        Self {
            sealer: EnvelopeSealer::new(Arc::new(KmsKeyProvider::new(
                kms.clone(),
                &config.kms_key_id,
            ))),
            connections: Arc::new(DynamoConnectionStore::new(
                dynamodb.clone(),
                &config.connections_table,
            )),
            sandboxes: Arc::new(DynamoSandboxStore::new(
                dynamodb.clone(),
                &config.sandboxes_table,
            )),
            capabilities: Arc::new(DynamoCapabilityStore::new(
                dynamodb.clone(),
                &config.capabilities_table,
            )),
            token_verifier: Arc::new(token_verifier),
            deno,
            kms,
            dynamodb,
            config,
        }
    }

    /// Builds an app for unit tests: in-memory stores, an in-process key provider, and a token
    /// verifier accepting exactly `accepted_tokens`. The AWS clients point at a closed local
    /// port (127.0.0.1:9), and the in-memory parts never call them.
    ///
    /// # Panics
    /// Never for the fixed configuration it uses.
    pub fn in_memory_for_tests<I, S>(accepted_tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let config = Config::from_lookup(|name| {
            let value = match name {
                crate::config::CONNECTIONS_TABLE_VAR => "connections",
                crate::config::SANDBOXES_TABLE_VAR => "sandboxes",
                crate::config::CAPABILITIES_TABLE_VAR => "capabilities",
                crate::config::KMS_KEY_ID_VAR => "local-test-key",
                crate::config::DYNAMODB_ENDPOINT_VAR | crate::config::KMS_ENDPOINT_VAR => {
                    "http://127.0.0.1:9"
                }
                _ => return None,
            };
            Some(value.to_owned())
        })
        .expect("the fixed unit-test configuration is complete");
        let sdk_config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .build();
        let mut app = Self::with_sdk_config(config, &sdk_config);
        app.sealer = EnvelopeSealer::new(Arc::new(LocalKeyProvider::new("local-test-key")));
        app.connections = Arc::new(MemoryConnectionStore::default());
        app.sandboxes = Arc::new(MemorySandboxStore::default());
        app.capabilities = Arc::new(MemoryCapabilityStore::default());
        app.token_verifier = Arc::new(StaticTokenVerifier::accepting(accepted_tokens));
        app
    }
}

/// Runs a function: initializes tracing, builds [`App`] once, then serves events with `handler`
/// until the runtime stops the process.
///
/// # Errors
/// A configuration error at cold start, or a runtime failure from `lambda_http`.
pub async fn run<F, Fut>(handler: F) -> Result<(), Error>
where
    F: Fn(&'static App, Request) -> Fut + Send + Sync,
    Fut: Future<Output = Response<Body>> + Send,
{
    init_tracing();
    let app: &'static App = match App::from_env().await {
        Ok(app) => Box::leak(Box::new(app)),
        Err(error) => {
            tracing::error!(error = %error, "cold start failed");
            return Err(error.into());
        }
    };
    let handler = &handler;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Error>(handler(app, request).await)
    }))
    .await
}

/// Crates whose TRACE events print whole payloads, so those events are always dropped. The AWS
/// SDK's HTTP layer (`aws_smithy_runtime*`, 1.16 and 1.22) prints request and response bodies,
/// which for DynamoDB include sealed tokens and sandbox state. `lambda_runtime` (1.5) prints the
/// raw invocation event, which for `PUT /connections/deno` includes the plaintext token.
const PAYLOAD_LOGGING_TARGETS: [&str; 3] = [
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "lambda_runtime",
];

/// Builds the log subscriber of every function. `filter` selects events and `json` picks Lambda's
/// JSON format over plain text. TRACE events of the crates in [`PAYLOAD_LOGGING_TARGETS`] are
/// dropped even when `filter` enables them. Tests pass their own writer to inspect the output.
pub fn log_subscriber<W>(
    filter: EnvFilter,
    json: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    let drop_payloads = filter_fn(|metadata| {
        let from_payload_logger = PAYLOAD_LOGGING_TARGETS.iter().any(|target| {
            metadata.target() == *target
                || metadata
                    .target()
                    .strip_prefix(target)
                    .is_some_and(|rest| rest.starts_with("::"))
        });
        !(from_payload_logger && *metadata.level() == tracing::Level::TRACE)
    });
    let builder = tracing_subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_env_filter(filter)
        .with_writer(writer);
    if json {
        Box::new(builder.json().finish().with(drop_payloads))
    } else {
        Box::new(builder.finish().with(drop_payloads))
    }
}

/// Installs [`log_subscriber`] on stdout with the level and format Lambda's advanced logging
/// controls set: `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG`, else INFO; JSON when
/// `AWS_LAMBDA_LOG_FORMAT` is `JSON`. These are the same rules as
/// `lambda_runtime::tracing::init_default_subscriber`, which has no way to drop payload logging.
fn init_tracing() {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok()
        .and_then(|text| text.parse::<LevelFilter>().ok())
        .unwrap_or(LevelFilter::INFO);
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env_lossy();
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT")
        .is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    if tracing::subscriber::set_global_default(log_subscriber(filter, json, std::io::stdout))
        .is_err()
    {
        tracing::warn!("a log subscriber was already installed; keeping it");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
        type Writer = Buffer;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[test]
    fn log_subscriber_drops_payload_traces() {
        let buffer = Buffer::default();
        let subscriber = log_subscriber(EnvFilter::new("trace"), true, buffer.clone());

        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(
                target: "lambda_runtime::layers::api_response",
                body = "raw-event-payload",
                "raw JSON event received from Lambda"
            );
            tracing::trace!(
                target: "aws_smithy_runtime::client::orchestrator::http",
                response = "dynamodb-response-body",
                "read HTTP response body"
            );
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "beginning attempt #1");
            tracing::trace!(target: "aws_smithy_runtime_apis", "similar-prefix-kept");
            tracing::trace!("own-trace-kept");
        });

        let logs = String::from_utf8_lossy(&buffer.0.lock().expect("lock")).to_string();
        assert!(!logs.contains("raw-event-payload"), "{logs}");
        assert!(!logs.contains("dynamodb-response-body"), "{logs}");
        assert!(logs.contains("beginning attempt #1"), "{logs}");
        assert!(logs.contains("similar-prefix-kept"), "{logs}");
        assert!(logs.contains("own-trace-kept"), "{logs}");
    }

    #[test]
    fn sdk_clients_use_standard_retries() {
        let app = App::in_memory_for_tests(Vec::<String>::new());

        let dynamodb_retry = app.dynamodb.config().retry_config().expect("retry config");
        let kms_retry = app.kms.config().retry_config().expect("retry config");

        assert_eq!(
            dynamodb_retry.mode(),
            aws_config::retry::RetryMode::Standard
        );
        assert_eq!(dynamodb_retry.max_attempts(), AWS_MAX_ATTEMPTS);
        assert_eq!(kms_retry.max_attempts(), AWS_MAX_ATTEMPTS);
        assert_eq!(
            app.dynamodb
                .config()
                .timeout_config()
                .and_then(|timeouts| timeouts.operation_timeout()),
            Some(AWS_OPERATION_TIMEOUT)
        );
    }
}
