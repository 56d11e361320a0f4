//! HTTP calls beside the websocket: delete and extend on the sandbox API host of the sandbox's
//! region, and the sandbox list on the console API.

use std::collections::BTreeMap;

use reqwest::{Method, RequestBuilder, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::client::DenoClient;
use super::connection::TRACE_ID_HEADER;
use super::endpoint::SandboxId;
use super::error::{self, DenoError};
use crate::secret::DenoToken;

/// One sandbox as the console API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SandboxSummary {
    /// Sandbox id.
    pub id: String,
    /// Creation time, ISO-8601.
    pub created_at: String,
    /// Stop time, ISO-8601, or `None` while running.
    #[serde(default)]
    pub stopped_at: Option<String>,
    /// Region code, such as `ord`.
    pub region: String,
    /// `running` or `stopped`.
    pub status: String,
    /// Labels given at creation.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl DenoClient {
    /// Deletes a sandbox (`DELETE /api/v3/sandbox/{id}`): Deno stops it and closes its sockets.
    ///
    /// # Errors
    /// [`DenoError::SandboxNotFound`] for 404 or 410, so callers that delete idempotently can
    /// treat it as done; [`DenoError::InvalidToken`], [`DenoError::Rejected`] and
    /// [`DenoError::Http`] otherwise.
    pub async fn delete_sandbox(&self, token: &DenoToken, id: &SandboxId) -> Result<(), DenoError> {
        let url = self.endpoints.sandbox_url(id);
        let request = self.http.request(Method::DELETE, url);
        self.send("delete sandbox", Some(id), token, request)
            .await?;
        tracing::info!(sandbox_id = %id, "sandbox deleted");
        Ok(())
    }

    /// Moves a sandbox's stop time to `stop_at_ms` (Unix milliseconds) and returns the stop time
    /// Deno granted, which may differ: Deno extends by at most 30 minutes per call.
    ///
    /// # Errors
    /// As [`DenoClient::delete_sandbox`], and [`DenoError::InvalidMessage`] for a body without
    /// `stop_at_ms`.
    pub async fn extend_timeout(
        &self,
        token: &DenoToken,
        id: &SandboxId,
        stop_at_ms: u64,
    ) -> Result<u64, DenoError> {
        #[derive(Deserialize)]
        struct Extended {
            stop_at_ms: u64,
        }
        let url = self.endpoints.sandbox_url(id);
        let request = self
            .http
            .request(Method::PATCH, url)
            .json(&json!({"stop_at_ms": stop_at_ms}));
        let response = self
            .send("extend timeout", Some(id), token, request)
            .await?;
        let extended: Extended = read_json("extend timeout", response).await?;
        Ok(extended.stop_at_ms)
    }

    /// Lists the organization's sandboxes that carry every label in `labels`.
    ///
    /// # Errors
    /// [`DenoError::InvalidToken`], [`DenoError::Rejected`], [`DenoError::Http`], and
    /// [`DenoError::InvalidMessage`] for a body that is not a sandbox array.
    pub async fn list_sandboxes(
        &self,
        token: &DenoToken,
        labels: &[(String, String)],
    ) -> Result<Vec<SandboxSummary>, DenoError> {
        let url = self.endpoints.list_url(labels);
        let request = self.http.request(Method::GET, url);
        let response = self.send("list sandboxes", None, token, request).await?;
        read_json("list sandboxes", response).await
    }

    /// Sends a request with the token and maps a non-2xx response to an error.
    async fn send(
        &self,
        operation: &'static str,
        sandbox_id: Option<&SandboxId>,
        token: &DenoToken,
        request: RequestBuilder,
    ) -> Result<Response, DenoError> {
        let response = request
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|source| http_error(operation, source))?;
        if response.status().is_success() {
            return Ok(response);
        }

        let status = response.status().as_u16();
        let trace_id = response
            .headers()
            .get(TRACE_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|source| http_error(operation, source))?;
        let error = error::rejection(
            operation,
            sandbox_id.map(SandboxId::as_str),
            status,
            trace_id,
            &body,
        );
        tracing::debug!(
            operation,
            status,
            trace_id = error.trace_id(),
            "Deno API refused the request"
        );
        Err(error)
    }
}

fn http_error(operation: &'static str, source: reqwest::Error) -> DenoError {
    // reqwest puts the URL into its errors. The URL contains no secret because the token is a header.
    DenoError::Http { operation, source }
}

async fn read_json<T: DeserializeOwned>(
    operation: &'static str,
    response: Response,
) -> Result<T, DenoError> {
    let body = response
        .bytes()
        .await
        .map_err(|source| http_error(operation, source))?;
    serde_json::from_slice(&body).map_err(|error| {
        DenoError::InvalidMessage(format!(
            "response to {operation} has an unexpected shape: {error}"
        ))
    })
}
