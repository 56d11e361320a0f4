//! The Deno client built once per cold start: endpoints, the TLS configuration, the HTTP client
//! and deadlines. It opens one [`Sandbox`] connection per tool call.
//!
//! Decision: only organization tokens are supported, so no `X-Deno-Org` header is ever sent.
//! The client has no pooling and no retries; a caller that retries decides with
//! [`DenoError::is_retryable`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;

use super::connection::{Connection, ConnectionTimeouts, SANDBOX_CONFIG_HEADER};
use super::endpoint::{Endpoints, Region, SandboxId};
use super::error::DenoError;
use super::sandbox::Sandbox;
use crate::config::Config;
use crate::secret::DenoToken;

/// Memory of a sandbox when the caller names none, in MiB (Deno's default).
pub const DEFAULT_MEMORY_MB: u32 = 1280;
/// Smallest memory Deno accepts, in MiB.
pub const MIN_MEMORY_MB: u32 = 768;
/// Largest memory Deno accepts, in MiB.
pub const MAX_MEMORY_MB: u32 = 4096;
/// Maximum number of labels Deno keeps on one sandbox.
pub const MAX_LABELS: usize = 5;

/// Deadlines and intervals of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Maximum wait for the TCP, TLS and websocket handshake.
    pub handshake: Duration,
    /// Maximum wait for an RPC response when the caller names no deadline.
    pub call: Duration,
    /// Interval of the text `ping` keepalive frames.
    pub keepalive_interval: Duration,
    /// A socket that delivers no frame for this long is treated as dead.
    pub idle_limit: Duration,
    /// Maximum wait for a whole HTTP call to the sandbox or console API.
    pub http: Duration,
    /// Maximum wait for the close frame to be sent when a connection closes.
    pub close: Duration,
}

impl Default for Timeouts {
    /// Handshake 10 s, calls 30 s, keepalive every 2 s (as Deno's npm SDK), idle limit 10 s,
    /// HTTP 10 s (the npm SDK's kill timeout), close 2 s.
    fn default() -> Self {
        Self {
            handshake: Duration::from_secs(10),
            call: Duration::from_secs(30),
            keepalive_interval: Duration::from_secs(2),
            idle_limit: Duration::from_secs(10),
            http: Duration::from_secs(10),
            close: Duration::from_secs(2),
        }
    }
}

/// Configuration of a new sandbox, sent base64-encoded in the `x-deno-sandbox-config` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Unix time in milliseconds at which Deno stops the sandbox. `None` makes a session sandbox
    /// that dies when the creating websocket closes, which tool calls must avoid.
    pub stop_at_ms: Option<u64>,
    /// Memory in MiB, 768 to 4096.
    pub memory_mb: u32,
    /// Labels, at most 5; keys up to 64 bytes, values up to 128 bytes.
    pub labels: BTreeMap<String, String>,
    /// Outbound allow-list (`host`, `host:port`, `*.domain`, IPs); `None` allows everything.
    pub allow_net: Option<Vec<String>>,
}

/// The header's JSON, in the key order Deno's npm SDK sends. `volumes` is always present.
#[derive(Serialize)]
struct WireConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_at_ms: Option<u64>,
    memory_mb: u32,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: &'a BTreeMap<String, String>,
    volumes: [(); 0],
    #[serde(skip_serializing_if = "Option::is_none")]
    allow_net: Option<&'a Vec<String>>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            stop_at_ms: None,
            memory_mb: DEFAULT_MEMORY_MB,
            labels: BTreeMap::new(),
            allow_net: None,
        }
    }
}

impl SandboxConfig {
    /// Creates a configuration that stops the sandbox at `stop_at_ms`, with default memory.
    pub fn with_stop_at(stop_at_ms: u64) -> Self {
        Self {
            stop_at_ms: Some(stop_at_ms),
            ..Self::default()
        }
    }

    /// Checks the limits Deno documents: memory range and label count and sizes.
    ///
    /// # Errors
    /// [`DenoError::InvalidArgument`] naming the first value out of range.
    pub fn validate(&self) -> Result<(), DenoError> {
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&self.memory_mb) {
            return Err(DenoError::InvalidArgument {
                name: "memory_mb",
                reason: format!(
                    "{} is outside {MIN_MEMORY_MB}..={MAX_MEMORY_MB} MiB",
                    self.memory_mb
                ),
            });
        }
        if self.labels.len() > MAX_LABELS {
            return Err(DenoError::InvalidArgument {
                name: "labels",
                reason: format!(
                    "{} labels given, Deno keeps at most {MAX_LABELS}",
                    self.labels.len()
                ),
            });
        }
        for (key, value) in &self.labels {
            if key.is_empty() || key.len() > 64 || value.len() > 128 {
                return Err(DenoError::InvalidArgument {
                    name: "labels",
                    reason: format!(
                        "label {key:?} must have a key of 1 to 64 bytes and a value of at most 128 bytes"
                    ),
                });
            }
        }
        Ok(())
    }

    /// Encodes the configuration as the `x-deno-sandbox-config` header value: compact JSON,
    /// UTF-8, standard base64 with padding.
    pub fn header_value(&self) -> String {
        let wire = WireConfig {
            stop_at_ms: self.stop_at_ms,
            memory_mb: self.memory_mb,
            labels: &self.labels,
            volumes: [],
            allow_net: self.allow_net.as_ref(),
        };
        // serde_json fails only on non-string map keys and failing Serialize impls; none occur here.
        let json = serde_json::to_vec(&wire).unwrap_or_default();
        BASE64.encode(json)
    }
}

/// Client of Deno Deploy's sandbox and console APIs, built once per cold start and shared by the
/// calls of a warm function.
#[derive(Clone)]
pub struct DenoClient {
    /// Origins of the sandbox and console APIs.
    pub(crate) endpoints: Endpoints,
    /// TLS configuration offering only HTTP/1.1 in ALPN, shared by websockets and HTTP.
    pub(crate) tls: Arc<rustls::ClientConfig>,
    /// HTTP client for delete, extend and list; keeps connections alive between calls.
    pub(crate) http: reqwest::Client,
    /// Deadlines of every call.
    pub(crate) timeouts: Timeouts,
}

impl std::fmt::Debug for DenoClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DenoClient")
            .field("endpoints", &self.endpoints)
            .field("timeouts", &self.timeouts)
            .finish_non_exhaustive()
    }
}

impl DenoClient {
    /// Builds a client for `endpoints`, loading the system's root certificates.
    ///
    /// # Errors
    /// [`DenoError::Tls`] when the TLS configuration cannot be built, [`DenoError::Http`] when the
    /// HTTP client cannot be built.
    pub fn new(endpoints: Endpoints, timeouts: Timeouts) -> Result<Self, DenoError> {
        let tls = tls_config()?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls.clone())
            .http1_only()
            .timeout(timeouts.http)
            .connect_timeout(timeouts.handshake)
            .build()
            .map_err(|source| DenoError::Http {
                operation: "build the HTTP client",
                source,
            })?;
        Ok(Self {
            endpoints,
            tls: Arc::new(tls),
            http,
            timeouts,
        })
    }

    /// Builds a client from the configuration read at cold start, with default timeouts.
    ///
    /// # Errors
    /// As [`DenoClient::new`], and [`DenoError::InvalidArgument`] for a malformed endpoint.
    pub fn from_config(config: &Config) -> Result<Self, DenoError> {
        Self::new(Endpoints::from_config(config)?, Timeouts::default())
    }

    /// Returns the endpoints this client uses.
    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Returns the deadlines this client uses.
    pub fn timeouts(&self) -> &Timeouts {
        &self.timeouts
    }

    /// Creates a sandbox in `region` and returns the open connection to it and its id.
    ///
    /// Create a sandbox with a `stop_at_ms`: a session sandbox dies when this connection closes.
    ///
    /// # Errors
    /// [`DenoError::InvalidArgument`] for a configuration outside Deno's limits,
    /// [`DenoError::InvalidToken`], [`DenoError::Rejected`] (plan or quota refusals),
    /// [`DenoError::Timeout`] or [`DenoError::Transport`] from the handshake, and
    /// [`DenoError::InvalidMessage`] when the upgrade response carries no valid sandbox id.
    pub async fn create_sandbox(
        &self,
        token: &DenoToken,
        region: Region,
        config: &SandboxConfig,
    ) -> Result<(Sandbox, SandboxId), DenoError> {
        config.validate()?;
        let url = self.endpoints.create_url(region);
        let headers = [(SANDBOX_CONFIG_HEADER, config.header_value())];
        let (connection, handshake) = Connection::open(
            "create sandbox",
            &url,
            token,
            &headers,
            None,
            Arc::clone(&self.tls),
            self.connection_timeouts(),
        )
        .await?;

        let id_text = handshake.sandbox_id.ok_or_else(|| {
            DenoError::InvalidMessage(
                "the create response has no x-deno-sandbox-id header".to_owned(),
            )
        })?;
        let id = SandboxId::parse(&id_text).map_err(|_| {
            DenoError::InvalidMessage(format!(
                "the create response named an invalid sandbox id {id_text:?}"
            ))
        })?;
        tracing::info!(sandbox_id = %id, region = %region, trace_id = handshake.trace_id.as_deref(), "sandbox created");
        Ok((Sandbox::new(connection, id.clone(), self.timeouts.call), id))
    }

    /// Opens a connection to an existing sandbox, on the host of the region inside its id.
    ///
    /// # Errors
    /// [`DenoError::SandboxNotFound`] when Deno responds with 404 or 410, otherwise as
    /// [`DenoClient::create_sandbox`].
    pub async fn connect(&self, token: &DenoToken, id: &SandboxId) -> Result<Sandbox, DenoError> {
        let url = self.endpoints.connect_url(id);
        let (connection, _handshake) = Connection::open(
            "connect to sandbox",
            &url,
            token,
            &[],
            Some(id.as_str()),
            Arc::clone(&self.tls),
            self.connection_timeouts(),
        )
        .await?;
        Ok(Sandbox::new(connection, id.clone(), self.timeouts.call))
    }

    fn connection_timeouts(&self) -> ConnectionTimeouts {
        ConnectionTimeouts {
            handshake: self.timeouts.handshake,
            keepalive_interval: self.timeouts.keepalive_interval,
            idle_limit: self.timeouts.idle_limit,
            close: self.timeouts.close,
        }
    }
}

/// Builds the rustls configuration: system roots, aws-lc-rs, ALPN `http/1.1` only, because a
/// websocket upgrade over HTTP/2 fails.
fn tls_config() -> Result<rustls::ClientConfig, DenoError> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        // NOTE: without system roots every TLS call fails with a certificate error; plain
        // http:// and ws:// endpoints of a local server still work.
        tracing::warn!(
            ignored,
            errors = loaded.errors.len(),
            "no system root certificates found"
        );
    }

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(DenoError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_header(config: &SandboxConfig) -> String {
        let bytes = BASE64.decode(config.header_value()).expect("base64");
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn default_config_header_matches_sdk() {
        assert_eq!(
            decode_header(&SandboxConfig::default()),
            r#"{"memory_mb":1280,"volumes":[]}"#
        );
    }

    #[test]
    fn full_config_header_keeps_field_order() {
        let config = SandboxConfig {
            stop_at_ms: Some(1_796_412_713_923),
            memory_mb: 1024,
            labels: BTreeMap::from([("a".to_owned(), "b".to_owned())]),
            allow_net: Some(vec!["x.com".to_owned()]),
        };
        assert_eq!(
            decode_header(&config),
            r#"{"stop_at_ms":1796412713923,"memory_mb":1024,"labels":{"a":"b"},"volumes":[],"allow_net":["x.com"]}"#
        );
    }

    #[test]
    fn config_validation_names_limits() {
        let low_memory = SandboxConfig {
            memory_mb: 512,
            ..SandboxConfig::default()
        };
        let too_many_labels = SandboxConfig {
            labels: (0..6).map(|i| (format!("k{i}"), "v".to_owned())).collect(),
            ..SandboxConfig::default()
        };
        let long_value = SandboxConfig {
            labels: BTreeMap::from([("k".to_owned(), "v".repeat(129))]),
            ..SandboxConfig::default()
        };

        assert!(SandboxConfig::default().validate().is_ok());
        for (config, name) in [
            (low_memory, "memory_mb"),
            (too_many_labels, "labels"),
            (long_value, "labels"),
        ] {
            match config.validate() {
                Err(DenoError::InvalidArgument { name: reported, .. }) => {
                    assert_eq!(reported, name)
                }
                other => panic!("expected InvalidArgument for {name}, got {other:?}"),
            }
        }
    }

    #[test]
    fn tls_offers_only_http1() {
        let config = tls_config().expect("tls config");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
