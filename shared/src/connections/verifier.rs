//! Token verification against the Deno Deploy console API before a token is stored.
//!
//! Decision: an HTTP 401 means the token is invalid or expired and becomes `upstream_rejected`
//! (422), because Deno refused it and only a new token helps. An HTTP 403 is also
//! `upstream_rejected`. Any other status, and every transport failure, is `upstream_unavailable`
//! (retryable), because it does not show whether the token is valid.

use std::time::Duration;

use futures_util::future::BoxFuture;
use subtle::ConstantTimeEq;

use crate::contract::{ErrorCode, ToolError};
use crate::secret::DenoToken;

/// Path of the console API call used to verify a token: listing sandboxes needs a valid token
/// and changes nothing.
pub const VERIFY_PATH: &str = "/api/v2/sandboxes";
/// Deadline of one verification request, connect included.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);
/// Error code Deno's APIs send with HTTP 401 for an invalid or expired token.
pub const INVALID_TOKEN_CODE: &str = "INVALID_TOKEN";

/// Instructions for creating an organization token in the Deno Deploy console, used in messages.
pub const CREATE_TOKEN_HINT: &str = "create an organization token (ddo_…) in the Deno Deploy console at https://console.deno.com under your organization's Settings > Access Tokens";

/// Reason a token failed verification. Never contains the token.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Deno returned HTTP 401, so the token is invalid or expired.
    #[error("Deno Deploy returned HTTP 401 with code {code:?}: token invalid or expired")]
    InvalidToken {
        /// The `code` of the error body, such as `INVALID_TOKEN`; empty when the body had none.
        code: String,
    },
    /// Deno returned HTTP 403, so the token is valid but may not list sandboxes.
    #[error("Deno Deploy returned HTTP 403 with code {code:?}")]
    Forbidden {
        /// The `code` of the error body; empty when the body had none.
        code: String,
    },
    /// Deno returned another non-success status.
    #[error("Deno Deploy console API returned HTTP {status}")]
    UnexpectedStatus {
        /// HTTP status.
        status: u16,
    },
    /// The request failed before a response arrived.
    #[error("failed to reach the Deno Deploy console API")]
    Transport(#[source] reqwest::Error),
}

impl From<VerifyError> for ToolError {
    fn from(error: VerifyError) -> Self {
        match &error {
            VerifyError::InvalidToken { .. } => ToolError::new(
                ErrorCode::UpstreamRejected,
                format!(
                    "Deno Deploy rejected the token: token invalid or expired; {CREATE_TOKEN_HINT} and connect it again"
                ),
            ),
            VerifyError::Forbidden { .. } => ToolError::new(
                ErrorCode::UpstreamRejected,
                format!(
                    "Deno Deploy refused the token with HTTP 403, so it cannot manage sandboxes; {CREATE_TOKEN_HINT} and connect it again"
                ),
            ),
            VerifyError::UnexpectedStatus { status } => ToolError::new(
                ErrorCode::UpstreamUnavailable,
                format!(
                    "could not verify the token because the Deno Deploy console API returned HTTP {status}; retry in a minute"
                ),
            ),
            VerifyError::Transport(_) => ToolError::new(
                ErrorCode::UpstreamUnavailable,
                "could not verify the token because the Deno Deploy console API is unreachable; retry in a minute",
            ),
        }
        .with_source(error)
    }
}

/// Checks a token with Deno before it is stored.
pub trait TokenVerifier: Send + Sync + std::fmt::Debug {
    /// Returns `Ok` when Deno accepts `token`.
    fn verify<'a>(&'a self, token: &'a DenoToken) -> BoxFuture<'a, Result<(), VerifyError>>;
}

/// Verifies tokens with `GET {DENO_DEPLOY_ENDPOINT}/api/v2/sandboxes`. Holds one HTTP client,
/// built once per cold start, with a 10 s deadline per request and no retries.
#[derive(Debug, Clone)]
pub struct HttpTokenVerifier {
    client: reqwest::Client,
    url: String,
}

impl HttpTokenVerifier {
    /// Creates a verifier for the console API at `deploy_endpoint`, an origin without a trailing
    /// slash such as `https://console.deno.com`.
    ///
    /// # Errors
    /// The `reqwest` error when the TLS backend cannot be initialized.
    pub fn new(deploy_endpoint: &str) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(VERIFY_TIMEOUT)
            .user_agent(concat!("deno-sandbox-tools/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            url: format!("{deploy_endpoint}{VERIFY_PATH}"),
        })
    }
}

/// Reads the `code` of a `{"code", "message"}` error body; empty for other bodies.
fn error_code(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| value.get("code")?.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl TokenVerifier for HttpTokenVerifier {
    fn verify<'a>(&'a self, token: &'a DenoToken) -> BoxFuture<'a, Result<(), VerifyError>> {
        Box::pin(async move {
            let response = self
                .client
                .get(&self.url)
                .bearer_auth(token.expose())
                .send()
                .await
                .map_err(VerifyError::Transport)?;
            let status = response.status().as_u16();
            if response.status().is_success() {
                return Ok(());
            }
            // The error body is at most a small JSON object; a failed read only loses the code.
            let body = response.bytes().await.unwrap_or_default();
            match status {
                401 => Err(VerifyError::InvalidToken {
                    code: error_code(&body),
                }),
                403 => Err(VerifyError::Forbidden {
                    code: error_code(&body),
                }),
                _ => Err(VerifyError::UnexpectedStatus { status }),
            }
        })
    }
}

/// A verifier that accepts a fixed set of tokens and answers every other one like Deno answers an
/// invalid token. For unit tests and local runs without a console API.
pub struct StaticTokenVerifier {
    accepted: Vec<DenoToken>,
}

impl StaticTokenVerifier {
    /// Creates a verifier accepting exactly `tokens`.
    pub fn accepting<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            accepted: tokens.into_iter().map(DenoToken::new).collect(),
        }
    }
}

impl std::fmt::Debug for StaticTokenVerifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "StaticTokenVerifier({} tokens)",
            self.accepted.len()
        )
    }
}

impl TokenVerifier for StaticTokenVerifier {
    fn verify<'a>(&'a self, token: &'a DenoToken) -> BoxFuture<'a, Result<(), VerifyError>> {
        let presented = token.expose().as_bytes();
        let known = self
            .accepted
            .iter()
            .any(|accepted| bool::from(accepted.expose().as_bytes().ct_eq(presented)));
        Box::pin(async move {
            if known {
                Ok(())
            } else {
                Err(VerifyError::InvalidToken {
                    code: INVALID_TOKEN_CODE.to_owned(),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    const GOOD_TOKEN: &str = "ddo_verifiertestgood0000000000000";

    /// Console stand-in: answers each request with the response `respond` picks for its
    /// `Authorization` header, and records the request lines.
    async fn spawn_console(
        respond: fn(Option<&str>) -> (u16, &'static str),
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&requests);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buffer = vec![0u8; 8192];
                let mut length = 0;
                while !buffer[..length].windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buffer[length..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => length += read,
                    }
                }
                let head = String::from_utf8_lossy(&buffer[..length]).to_string();
                let authorization = head
                    .lines()
                    .filter_map(|line| line.split_once(':'))
                    .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
                    .map(|(_, value)| value.trim().to_owned());
                seen.lock()
                    .expect("lock")
                    .push(head.lines().next().unwrap_or_default().to_owned());
                let (status, body) = respond(authorization.as_deref());
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            }
        });
        (format!("http://{address}"), requests)
    }

    fn console_like_deno(authorization: Option<&str>) -> (u16, &'static str) {
        if authorization == Some(&format!("Bearer {GOOD_TOKEN}")) {
            (200, "[]")
        } else {
            (
                401,
                r#"{"code":"INVALID_TOKEN","message":"The provided token is invalid or expired"}"#,
            )
        }
    }

    #[tokio::test]
    async fn verify_accepts_valid_token() {
        let (endpoint, requests) = spawn_console(console_like_deno).await;
        let verifier = HttpTokenVerifier::new(&endpoint).expect("client");

        verifier
            .verify(&DenoToken::new(GOOD_TOKEN))
            .await
            .expect("valid token");

        assert_eq!(
            requests.lock().expect("lock").as_slice(),
            ["GET /api/v2/sandboxes HTTP/1.1"]
        );
    }

    #[tokio::test]
    async fn verify_maps_invalid_token() {
        let (endpoint, _) = spawn_console(console_like_deno).await;
        let verifier = HttpTokenVerifier::new(&endpoint).expect("client");

        let error = verifier
            .verify(&DenoToken::new("ddo_expiredtoken000000000000000"))
            .await
            .expect_err("unknown token");

        assert!(
            matches!(&error, VerifyError::InvalidToken { code } if code == "INVALID_TOKEN"),
            "{error:?}"
        );
        let tool_error = ToolError::from(error);
        assert_eq!(tool_error.code, ErrorCode::UpstreamRejected);
        assert!(!tool_error.retryable);
        assert!(
            tool_error.message.contains("token invalid or expired"),
            "{}",
            tool_error.message
        );
    }

    #[tokio::test]
    async fn verify_maps_forbidden_and_server_errors() {
        let (endpoint, _) =
            spawn_console(|_| (403, r#"{"code":"FORBIDDEN","message":"no"}"#)).await;
        let error = HttpTokenVerifier::new(&endpoint)
            .expect("client")
            .verify(&DenoToken::new(GOOD_TOKEN))
            .await
            .expect_err("403");
        assert!(matches!(&error, VerifyError::Forbidden { code } if code == "FORBIDDEN"));
        assert_eq!(ToolError::from(error).code, ErrorCode::UpstreamRejected);

        let (endpoint, _) = spawn_console(|_| (502, "bad gateway")).await;
        let error = HttpTokenVerifier::new(&endpoint)
            .expect("client")
            .verify(&DenoToken::new(GOOD_TOKEN))
            .await
            .expect_err("502");
        assert!(matches!(
            error,
            VerifyError::UnexpectedStatus { status: 502 }
        ));
        let tool_error = ToolError::from(error);
        assert_eq!(tool_error.code, ErrorCode::UpstreamUnavailable);
        assert!(tool_error.retryable);
    }

    #[tokio::test]
    async fn verify_maps_refused_connection() {
        // A port that was just free: nothing listens there any more.
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        drop(listener);
        let verifier = HttpTokenVerifier::new(&format!("http://{address}")).expect("client");

        let error = verifier
            .verify(&DenoToken::new(GOOD_TOKEN))
            .await
            .expect_err("refused");

        assert!(matches!(error, VerifyError::Transport(_)), "{error:?}");
        assert_eq!(ToolError::from(error).code, ErrorCode::UpstreamUnavailable);
    }

    #[tokio::test]
    async fn static_verifier_accepts_listed_tokens_only() {
        let verifier = StaticTokenVerifier::accepting([GOOD_TOKEN]);
        assert!(verifier.verify(&DenoToken::new(GOOD_TOKEN)).await.is_ok());
        assert!(matches!(
            verifier.verify(&DenoToken::new("ddo_other")).await,
            Err(VerifyError::InvalidToken { .. })
        ));
        assert_eq!(format!("{verifier:?}"), "StaticTokenVerifier(1 tokens)");
    }
}
