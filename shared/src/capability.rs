//! The per-organization switch for the Deno sandbox capability: the `deno_capability_admin`
//! function (`PUT|GET /admin/orgs/{org_id}/capabilities/deno`) and the
//! [`require_enabled`] check that every tool call and every token connect runs first.
//!
//! Request body of `PUT`: `{"context": {"user_id": "<admin id>"}, "arguments": {"enabled": true}}`.
//! `GET` takes no body. The organization comes from the path parameter `org_id`.
//!
//! Decision: an organization without a record is disabled, so the capability is off until an
//! administrator turns it on. The check uses a strongly consistent read, so disabling takes
//! effect on the next call.

use std::time::Instant;

use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::bootstrap::App;
use crate::connections::log_outcome;
use crate::contract::{self, ErrorCode, ToolError, validate_id};
use crate::store::{CapabilityRecord, DENO_CAPABILITY};

/// Name of the function, used in logs.
pub const FUNCTION_NAME: &str = "deno_capability_admin";
/// Name of the path parameter holding the organization id.
pub const ORG_ID_PATH_PARAMETER: &str = "org_id";

/// Returns `Ok` when `org_id` has the Deno capability enabled.
///
/// # Errors
/// `capability_disabled` (HTTP 403) when it is disabled or was never enabled;
/// `upstream_unavailable` or `internal` when the store fails.
pub async fn require_enabled(app: &App, org_id: &str) -> Result<(), ToolError> {
    let record = app.capabilities.get(org_id, DENO_CAPABILITY).await?;
    if record.is_some_and(|record| record.enabled) {
        return Ok(());
    }
    Err(ToolError::new(
        ErrorCode::CapabilityDisabled,
        format!(
            "Deno sandboxes are disabled for organization {org_id}; an administrator of the organization must enable the Deno capability before agents can use these tools"
        ),
    ))
}

/// Who is changing the switch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminContext {
    user_id: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetCapabilityArguments {
    enabled: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetCapabilityRequest {
    context: Option<AdminContext>,
    arguments: Option<SetCapabilityArguments>,
}

fn capability_view(org_id: &str, record: Option<&CapabilityRecord>) -> Value {
    match record {
        Some(record) => json!({
            "org_id": org_id,
            "capability": DENO_CAPABILITY,
            "enabled": record.enabled,
            "updated_by": record.updated_by,
            "updated_at": record.updated_at.format(&Rfc3339).unwrap_or_default(),
            "version": record.version,
        }),
        None => json!({
            "org_id": org_id,
            "capability": DENO_CAPABILITY,
            "enabled": false,
            "updated_by": null,
            "updated_at": null,
            "version": 0,
        }),
    }
}

/// Returns the switch of `org_id`; never set reads as disabled.
///
/// # Errors
/// `upstream_unavailable` or `internal` when the store fails.
pub async fn get_capability(app: &App, org_id: &str) -> Result<Value, ToolError> {
    let record = app.capabilities.get(org_id, DENO_CAPABILITY).await?;
    Ok(capability_view(org_id, record.as_ref()))
}

/// Sets the switch of `org_id`, recording `admin_user_id` and the time.
///
/// # Errors
/// `conflict` when another administrator changed it at the same moment.
pub async fn set_capability(
    app: &App,
    org_id: &str,
    admin_user_id: &str,
    enabled: bool,
) -> Result<Value, ToolError> {
    let existing = app.capabilities.get(org_id, DENO_CAPABILITY).await?;
    let record = CapabilityRecord {
        org_id: org_id.to_owned(),
        capability: DENO_CAPABILITY.to_owned(),
        enabled,
        updated_by: admin_user_id.to_owned(),
        updated_at: OffsetDateTime::now_utc(),
        version: existing.as_ref().map_or(1, |record| record.version + 1),
    };
    app.capabilities
        .put(&record, existing.as_ref().map(|record| record.version))
        .await?;
    tracing::info!(
        org_id,
        admin_user_id,
        enabled,
        version = record.version,
        "deno capability changed"
    );

    let mut view = capability_view(org_id, Some(&record));
    view["previously_enabled"] = json!(existing.is_some_and(|record| record.enabled));
    Ok(view)
}

/// Reads the organization id from the `org_id` path parameter, or, where no route set it (plain
/// HTTP against `cargo lambda watch`), from the path `…/orgs/{org_id}/capabilities/deno`.
fn org_id_of(request: &Request) -> Result<String, ToolError> {
    let from_parameters = request
        .path_parameters_ref()
        .and_then(|parameters| parameters.first(ORG_ID_PATH_PARAMETER))
        .map(str::to_owned);
    let org_id = from_parameters.or_else(|| {
        let segments: Vec<&str> = request.uri().path().split('/').collect();
        segments
            .windows(3)
            .find(|window| window[0] == "orgs" && window[2] == "capabilities")
            .map(|window| window[1].to_owned())
    });
    let org_id = org_id.ok_or_else(|| {
        ToolError::invalid_argument(
            "missing organization id; call /admin/orgs/{org_id}/capabilities/deno",
        )
    })?;
    validate_id("path parameter org_id", &org_id)?;
    Ok(org_id)
}

async fn dispatch(app: &App, request: &Request) -> Result<Value, ToolError> {
    let org_id = org_id_of(request)?;
    match *request.method() {
        http::Method::GET => get_capability(app, &org_id).await,
        http::Method::PUT => {
            let body: SetCapabilityRequest = serde_json::from_slice(request.body().as_ref())
                .map_err(|err| {
                    ToolError::invalid_argument(format!(
                        "request body is not a valid request: {err}; send {{\"context\": {{\"user_id\": \"<admin id>\"}}, \"arguments\": {{\"enabled\": true}}}}"
                    ))
                })?;
            let context = body.context.ok_or_else(|| {
                ToolError::invalid_argument(
                    "request body has no context; send context.user_id naming the administrator",
                )
            })?;
            validate_id("context.user_id", &context.user_id)?;
            let arguments = body.arguments.ok_or_else(|| {
                ToolError::invalid_argument(
                    "request body has no arguments; send arguments.enabled as true or false",
                )
            })?;
            set_capability(app, &org_id, &context.user_id, arguments.enabled).await
        }
        ref other => Err(ToolError::invalid_argument(format!(
            "method {other} is not supported on /admin/orgs/{{org_id}}/capabilities/deno; use PUT to change or GET to show the switch"
        ))),
    }
}

/// Handles one API Gateway request to `/admin/orgs/{org_id}/capabilities/deno` and always
/// returns a contract response.
pub async fn handle_http(app: &App, request: Request) -> Response<Body> {
    let started = Instant::now();
    let outcome = dispatch(app, &request).await;
    log_outcome(FUNCTION_NAME, request.method().as_str(), &outcome, started);
    contract::respond(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn request(method: http::Method, org_id: &str, body: &str) -> Request {
        let mut request = Request::new(Body::Text(body.to_owned()));
        *request.method_mut() = method;
        request.with_path_parameters(HashMap::from([(
            ORG_ID_PATH_PARAMETER.to_owned(),
            org_id.to_owned(),
        )]))
    }

    fn body_of(response: &Response<Body>) -> Value {
        let Body::Text(text) = response.body() else {
            panic!("text body")
        };
        serde_json::from_str(text).expect("json body")
    }

    #[tokio::test]
    async fn require_enabled_follows_switch() {
        let app = App::in_memory_for_tests(Vec::<String>::new());

        let never_set = require_enabled(&app, "org-1").await.expect_err("never set");
        assert_eq!(never_set.code, ErrorCode::CapabilityDisabled);
        assert!(
            never_set.message.contains("an administrator"),
            "{}",
            never_set.message
        );

        set_capability(&app, "org-1", "admin-1", true)
            .await
            .expect("enable");
        require_enabled(&app, "org-1").await.expect("enabled");
        require_enabled(&app, "org-2").await.expect_err("other org");

        set_capability(&app, "org-1", "admin-2", false)
            .await
            .expect("disable");
        let disabled = require_enabled(&app, "org-1").await.expect_err("disabled");
        assert_eq!(disabled.code.http_status(), 403);
    }

    #[tokio::test]
    async fn handler_put_records_who_and_when() {
        let app = App::in_memory_for_tests(Vec::<String>::new());
        let before = OffsetDateTime::now_utc();

        let response = handle_http(
            &app,
            request(
                http::Method::PUT,
                "org-7",
                r#"{"context":{"user_id":"admin-1"},"arguments":{"enabled":true}}"#,
            ),
        )
        .await;

        assert_eq!(response.status(), 200);
        let body = body_of(&response);
        assert_eq!(body["result"]["enabled"], true);
        assert_eq!(body["result"]["updated_by"], "admin-1");
        assert_eq!(body["result"]["org_id"], "org-7");
        let stored = app
            .capabilities
            .get("org-7", DENO_CAPABILITY)
            .await
            .expect("get")
            .expect("record");
        assert_eq!(stored.updated_by, "admin-1");
        assert!(stored.updated_at >= before);

        let shown = handle_http(&app, request(http::Method::GET, "org-7", "")).await;
        assert_eq!(body_of(&shown)["result"]["enabled"], true);
    }

    #[tokio::test]
    async fn handler_put_rejects_bad_bodies() {
        let app = App::in_memory_for_tests(Vec::<String>::new());
        let cases = [
            ("", "not a valid request"),
            (r#"{"arguments":{"enabled":true}}"#, "no context"),
            (r#"{"context":{"user_id":"a"}}"#, "no arguments"),
            (
                r#"{"context":{"user_id":" "},"arguments":{"enabled":true}}"#,
                "context.user_id must not be empty",
            ),
            (
                r#"{"context":{"user_id":"a"},"arguments":{"enabled":"yes"}}"#,
                "invalid type",
            ),
        ];
        for (body, expected) in cases {
            let response = handle_http(&app, request(http::Method::PUT, "org-1", body)).await;
            assert_eq!(response.status(), 400, "{body}");
            let message = body_of(&response)["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            assert!(message.contains(expected), "{body}: {message}");
        }
    }

    #[tokio::test]
    async fn org_id_falls_back_to_path() {
        let app = App::in_memory_for_tests(Vec::<String>::new());
        let mut plain = Request::new(Body::Empty);
        *plain.uri_mut() = "/admin/orgs/org-path/capabilities/deno"
            .parse()
            .expect("uri");

        let response = handle_http(&app, plain).await;

        assert_eq!(response.status(), 200);
        assert_eq!(body_of(&response)["result"]["org_id"], "org-path");
        assert_eq!(body_of(&response)["result"]["enabled"], false);
    }
}
