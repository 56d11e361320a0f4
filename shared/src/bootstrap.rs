//! Cold-start wiring shared by every function binary: tracing, configuration, AWS clients, and
//! the `lambda_http` loop. Each `main.rs` calls [`run`] with its handler.

use std::future::Future;

use lambda_http::{Body, Error, Request, Response, service_fn};

use crate::config::{Config, ConfigError};

/// State built once per cold start and shared by every invocation of the process.
#[derive(Debug)]
pub struct App {
    /// Settings read from the environment.
    pub config: Config,
    /// KMS client for envelope encryption.
    pub kms: aws_sdk_kms::Client,
    /// DynamoDB client for the three tables.
    pub dynamodb: aws_sdk_dynamodb::Client,
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

    /// Builds the AWS clients for `config` from an explicit SDK configuration; tests use this to
    /// pass the emulators' credentials without changing the process environment.
    pub fn with_sdk_config(config: Config, sdk_config: &aws_config::SdkConfig) -> Self {
        let mut kms = aws_sdk_kms::config::Builder::from(sdk_config);
        if let Some(endpoint) = &config.kms_endpoint {
            kms = kms.endpoint_url(endpoint);
        }
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk_config);
        if let Some(endpoint) = &config.dynamodb_endpoint {
            dynamodb = dynamodb.endpoint_url(endpoint);
        }

        Self {
            kms: aws_sdk_kms::Client::from_conf(kms.build()),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            config,
        }
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
    lambda_http::tracing::init_default_subscriber();
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
