//! HTTP routes: WebSocket upgrades for create and connect, kill, extend and the console list.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::rpc;
use crate::sandbox::{CreateOptions, Registry, now_ms};

const SANDBOX_ID_HEADER: &str = "x-deno-sandbox-id";
const TRACE_ID_HEADER: &str = "x-deno-trace-id";
const CONFIG_HEADER: &str = "x-deno-sandbox-config";
/// Default sandbox memory in MiB, as Deno's SDKs use.
const DEFAULT_MEMORY_MB: u64 = 1280;
/// Largest request body the server reads (PATCH bodies are a few bytes).
const MAX_BODY: usize = 64 * 1024;

type HttpResponse = Response<Full<Bytes>>;

/// Routes one request. Failures become JSON `{code, message}` responses, so the result is always `Ok`.
pub async fn handle(
    request: Request<Incoming>,
    registry: Arc<Registry>,
) -> Result<HttpResponse, Infallible> {
    let trace_id = trace_id();
    let mut response = route(request, &registry).await;
    if let Ok(value) = HeaderValue::from_str(&trace_id) {
        response.headers_mut().insert(TRACE_ID_HEADER, value);
    }
    Ok(response)
}

async fn route(request: Request<Incoming>, registry: &Arc<Registry>) -> HttpResponse {
    let path = request.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = request.method().clone();

    if method == Method::GET && (path == "/" || path == "/health") {
        return json_response(
            StatusCode::OK,
            &json!({ "status": "ok", "sandboxes": registry.running_count() }),
        );
    }
    let Some(owner) = authenticate(&request, registry) else {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "The token is missing or not accepted by this server; set DENO_DEPLOY_TOKEN to one of DENO_LOCAL_TOKENS",
        );
    };

    match (method, segments.as_slice()) {
        (Method::GET, ["api", "v3", "sandboxes", "create"]) => {
            create(request, registry, owner).await
        }
        (Method::GET, ["api", "v3", "sandbox", id, "connect"]) => {
            let id = id.to_string();
            connect(request, registry, owner, &id)
        }
        (Method::DELETE, ["api", "v3", "sandbox" | "sandboxes", id]) => {
            let Some(sandbox) = registry.get(id, owner) else {
                return not_found(id);
            };
            sandbox.terminate("deleted").await;
            json_response(StatusCode::OK, &json!({}))
        }
        (Method::PATCH, ["api", "v3", "sandbox", id]) => {
            let id = id.to_string();
            extend(request, registry, owner, &id).await
        }
        (Method::GET, ["api", "v2" | "v3", "sandboxes"]) => {
            let filter = label_filter(request.uri().query().unwrap_or_default());
            let rows: Vec<Value> = registry
                .list(owner, &filter)
                .iter()
                .map(|row| row.to_json())
                .collect();
            json_response(StatusCode::OK, &Value::Array(rows))
        }
        (Method::POST, ["api", "v3", "sandbox", _, "expose", _]) => error_response(
            StatusCode::NOT_IMPLEMENTED,
            "NOT_SUPPORTED",
            "The local sandbox server does not expose sandbox ports, SSH or VS Code",
        ),
        _ => error_response(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("No route for {path}"),
        ),
    }
}

fn authenticate(request: &Request<Incoming>, registry: &Registry) -> Option<usize> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    // Compare against every token in constant time, so timing does not reveal a prefix match.
    let mut found = None;
    for (index, accepted) in registry.config.tokens.iter().enumerate() {
        if bool::from(accepted.as_bytes().ct_eq(token.as_bytes())) {
            found = Some(index);
        }
    }
    found
}

async fn create(
    request: Request<Incoming>,
    registry: &Arc<Registry>,
    owner: usize,
) -> HttpResponse {
    let options = match request
        .headers()
        .get(CONFIG_HEADER)
        .map(|value| decode_config(value.as_bytes()))
    {
        None => CreateOptions {
            memory_mb: DEFAULT_MEMORY_MB,
            ..CreateOptions::default()
        },
        Some(Ok(options)) => options,
        Some(Err(message)) => {
            return error_response(StatusCode::BAD_REQUEST, "INVALID_CONFIG", &message);
        }
    };
    let Some(accept) = websocket_accept(&request) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "UPGRADE_REQUIRED",
            "Expected a WebSocket upgrade",
        );
    };
    let sandbox = match registry.create(options, owner).await {
        Ok(sandbox) => sandbox,
        Err(failure) => {
            tracing::error!(error = %failure, "sandbox creation failed");
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "SANDBOX_CREATE_FAILED",
                "Failed to create the sandbox",
            );
        }
    };
    upgrade(request, accept, sandbox, true)
}

fn connect(
    request: Request<Incoming>,
    registry: &Arc<Registry>,
    owner: usize,
    id: &str,
) -> HttpResponse {
    let Some(accept) = websocket_accept(&request) else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "UPGRADE_REQUIRED",
            "Expected a WebSocket upgrade",
        );
    };
    let Some(sandbox) = registry.get(id, owner) else {
        return not_found(id);
    };
    upgrade(request, accept, sandbox, false)
}

fn upgrade(
    mut request: Request<Incoming>,
    accept: String,
    sandbox: Arc<crate::sandbox::Sandbox>,
    creator: bool,
) -> HttpResponse {
    let stream_delay = rpc::stream_delay(
        request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|value| value.to_str().ok()),
    );
    let on_upgrade = hyper::upgrade::on(&mut request);
    let id = sandbox.id.clone();
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let socket =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                rpc::serve(socket, sandbox, creator, stream_delay).await;
            }
            Err(error) => {
                tracing::warn!(sandbox_id = %sandbox.id, error = %error, "websocket upgrade failed");
                if creator && sandbox.session {
                    sandbox.terminate("upgrade failed").await;
                }
            }
        }
    });

    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(value) = HeaderValue::from_str(&accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(SANDBOX_ID_HEADER, value);
    }
    response
}

fn websocket_accept(request: &Request<Incoming>) -> Option<String> {
    let headers = request.headers();
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY)?;
    Some(derive_accept_key(key.as_bytes()))
}

async fn extend(
    request: Request<Incoming>,
    registry: &Arc<Registry>,
    owner: usize,
    id: &str,
) -> HttpResponse {
    let Some(sandbox) = registry.get(id, owner) else {
        return not_found(id);
    };
    let body = match http_body_util::Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "INVALID_BODY",
                "Failed to read the request body",
            );
        }
    };
    let requested = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|value| value["stop_at_ms"].as_i64());
    let Some(requested) = requested else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "INVALID_BODY",
            "Expected a JSON body with an integer stop_at_ms",
        );
    };
    let granted = sandbox.extend(requested);
    json_response(StatusCode::OK, &json!({ "stop_at_ms": granted }))
}

/// Decodes the create configuration: base64 of JSON, UTF-8 with a Latin-1 fallback. Accepts
/// the npm dialect (`stop_at_ms`) and the Python one (`timeout` like `"5m"`, `env`).
fn decode_config(header: &[u8]) -> Result<CreateOptions, String> {
    let bytes = BASE64
        .decode(header)
        .map_err(|_| "x-deno-sandbox-config is not valid base64".to_string())?;
    let text = String::from_utf8(bytes.clone())
        .unwrap_or_else(|_| bytes.iter().map(|&byte| char::from(byte)).collect());
    let value: Value = serde_json::from_str(&text)
        .map_err(|_| "x-deno-sandbox-config is not valid JSON".to_string())?;

    let string_map = |value: &Value| -> BTreeMap<String, String> {
        value
            .as_object()
            .map(|map| {
                map.iter()
                    .filter_map(|(key, value)| Some((key.clone(), value.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut stop_at_ms = value["stop_at_ms"].as_i64();
    if stop_at_ms.is_none()
        && let Some(timeout) = value["timeout"].as_str()
    {
        stop_at_ms = parse_timeout(timeout).map(|millis| now_ms().saturating_add(millis));
    }
    let allow_net = value["allow_net"].as_array().map(|hosts| {
        hosts
            .iter()
            .filter_map(|host| host.as_str().map(String::from))
            .collect()
    });
    Ok(CreateOptions {
        stop_at_ms,
        memory_mb: value["memory_mb"].as_u64().unwrap_or(DEFAULT_MEMORY_MB),
        labels: string_map(&value["labels"]),
        allow_net,
        env: string_map(&value["env"]),
    })
}

/// Parses `"<n>s"` or `"<n>m"` into milliseconds; `"session"` and anything else give `None`.
fn parse_timeout(timeout: &str) -> Option<i64> {
    let (number, unit) = timeout.split_at(timeout.len().checked_sub(1)?);
    let number: i64 = number.parse().ok().filter(|number| *number > 0)?;
    match unit {
        "s" => Some(number * 1000),
        "m" => Some(number * 60_000),
        _ => None,
    }
}

/// Reads `labels[key]=value` filters; also Python's `labels={'k': 'v'}` form.
fn label_filter(query: &str) -> BTreeMap<String, String> {
    let mut filter = BTreeMap::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if let Some(label) = key
            .strip_prefix("labels[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            filter.insert(label.to_string(), value.into_owned());
        } else if key == "labels"
            && let Ok(Value::Object(map)) =
                serde_json::from_str::<Value>(&value.replace('\'', "\""))
        {
            filter.extend(
                map.into_iter()
                    .filter_map(|(key, value)| Some((key, value.as_str()?.to_string()))),
            );
        }
    }
    filter
}

fn trace_id() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::thread_rng().r#gen();
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn json_response(status: StatusCode, body: &Value) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error_response(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    json_response(status, &json!({ "code": code, "message": message }))
}

fn not_found(id: &str) -> HttpResponse {
    error_response(
        StatusCode::NOT_FOUND,
        "SANDBOX_NOT_FOUND",
        &format!("Sandbox {id} not found or already stopped"),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn label_filter_reads_both_dialects() {
        let npm = label_filter("labels%5Benv%5D=prod&labels%5Bk+y%5D=v%26w");
        assert_eq!(npm.get("env").map(String::as_str), Some("prod"));
        assert_eq!(npm.get("k y").map(String::as_str), Some("v&w"));
        let python = label_filter("labels=%7B%27env%27%3A+%27prod%27%7D");
        assert_eq!(python.get("env").map(String::as_str), Some("prod"));
    }

    #[test]
    fn config_accepts_npm_and_python_dialects() {
        let npm = BASE64.encode(r#"{"stop_at_ms":1796412713923,"memory_mb":1024,"labels":{"a":"b"},"volumes":[],"allow_net":[]}"#);
        let options = decode_config(npm.as_bytes()).unwrap();
        assert_eq!(options.stop_at_ms, Some(1_796_412_713_923));
        assert_eq!(options.memory_mb, 1024);
        assert_eq!(options.labels.get("a").map(String::as_str), Some("b"));
        assert_eq!(options.allow_net, Some(Vec::new()));

        let python =
            BASE64.encode(r#"{"memory_mb":1280,"timeout":"5m","volumes":{},"env":{"A":"1"}}"#);
        let options = decode_config(python.as_bytes()).unwrap();
        let remaining = options.stop_at_ms.unwrap() - now_ms();
        assert!((299_000..=300_000).contains(&remaining), "{remaining}");
        assert_eq!(options.env.get("A").map(String::as_str), Some("1"));
        assert_eq!(options.allow_net, None);
    }

    #[test]
    fn timeout_grammar() {
        assert_eq!(parse_timeout("30s"), Some(30_000));
        assert_eq!(parse_timeout("2m"), Some(120_000));
        assert_eq!(parse_timeout("session"), None);
        assert_eq!(parse_timeout("0s"), None);
        assert_eq!(parse_timeout(""), None);
    }
}
