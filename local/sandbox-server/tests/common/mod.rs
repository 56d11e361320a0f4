//! Test harness: starts the server binary on a free loopback port and drives it over WebSocket.
//!
//! The server needs root (bubblewrap as another uid, cgroups), like in production use.

#![allow(clippy::unwrap_used)]
#![allow(dead_code)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub const TOKEN: &str = "ddo_test_token_one";
pub const OTHER_TOKEN: &str = "ddo_test_token_two";
/// Maximum time any single wait in these tests may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running server process; killed on drop.
pub struct Server {
    child: tokio::process::Child,
    pub port: u16,
    pub state: std::path::PathBuf,
}

impl Server {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    pub async fn start_with(extra_env: &[(&str, &str)]) -> Self {
        let state = std::env::temp_dir().join(format!("deno-sandbox-local-test-{}", rand_suffix()));
        let deno = concat!(env!("CARGO_MANIFEST_DIR"), "/../../.venv/bin/deno");
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_deno-sandbox-local"));
        command
            .env("DENO_LOCAL_TOKENS", format!("{TOKEN},{OTHER_TOKEN}"))
            .env("DENO_LOCAL_PORT", "0")
            .env("DENO_LOCAL_STATE", &state)
            .env("DENO_LOCAL_DENO_BIN", deno)
            .env("RUST_LOG", "warn")
            .envs(extra_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = command.spawn().expect("server binary starts");
        let stdout = child.stdout.take().expect("server stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("server prints its address in time")
            .expect("server stdout readable")
            .expect("server printed a line before exiting");
        let port = line
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self { child, port, state }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Creates a sandbox with `config` (the JSON of `x-deno-sandbox-config`).
    pub async fn create(&self, config: Value) -> (Client, String) {
        self.open("/api/v3/sandboxes/create", Some(config), TOKEN)
            .await
            .unwrap_or_else(|(status, body)| panic!("create failed with {status}: {body}"))
    }

    pub async fn connect(&self, id: &str) -> Result<(Client, String), (u16, String)> {
        self.open(&format!("/api/v3/sandbox/{id}/connect"), None, TOKEN)
            .await
    }

    pub async fn open(
        &self,
        path: &str,
        config: Option<Value>,
        token: &str,
    ) -> Result<(Client, String), (u16, String)> {
        let mut request = format!("ws://127.0.0.1:{}{path}", self.port)
            .into_client_request()
            .expect("valid websocket url");
        let headers = request.headers_mut();
        if !token.is_empty() {
            headers.insert(
                "authorization",
                format!("Bearer {token}").parse().expect("header"),
            );
        }
        if let Some(config) = config {
            let encoded = BASE64.encode(config.to_string());
            headers.insert("x-deno-sandbox-config", encoded.parse().expect("header"));
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok((socket, response)) => {
                let id = response
                    .headers()
                    .get("x-deno-sandbox-id")
                    .and_then(|value| value.to_str().ok())
                    .expect("x-deno-sandbox-id header")
                    .to_string();
                assert!(response.headers().contains_key("x-deno-trace-id"));
                Ok((Client::new(socket), id))
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_ref()
                    .map(|body| String::from_utf8_lossy(body).into_owned())
                    .unwrap_or_default();
                Err((status, body))
            }
            Err(error) => panic!("websocket connect failed: {error}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM lets the server stop its sandboxes and remove their cgroups; SIGKILL would leave
        // the cgroups until the next server start removes them.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("/usr/bin/kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            for _ in 0..100 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

fn rand_suffix() -> String {
    use rand::Rng;
    format!("{:016x}", rand::thread_rng().r#gen::<u64>())
}

#[derive(Default)]
struct Streams {
    data: HashMap<u64, Vec<u8>>,
    ended: std::collections::HashSet<u64>,
}

/// A JSON-RPC client on one WebSocket connection.
pub struct Client {
    out: mpsc::UnboundedSender<Message>,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    streams: Arc<Mutex<Streams>>,
    stream_change: Arc<Notify>,
    texts: tokio::sync::Mutex<mpsc::UnboundedReceiver<String>>,
    next_id: AtomicU64,
    closed: watch::Receiver<Option<u16>>,
}

/// Result of a shell command: exit code, stdout, stderr and the `processWait` value.
pub struct Output {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
    pub status: Value,
}

impl Client {
    fn new<S>(socket: tokio_tungstenite::WebSocketStream<S>) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut stream) = socket.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                if sink.send(message).await.is_err() {
                    break;
                }
            }
        });
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();
        let streams: Arc<Mutex<Streams>> = Arc::default();
        let stream_change = Arc::new(Notify::new());
        let (text_tx, texts) = mpsc::unbounded_channel();
        let (closed_tx, closed) = watch::channel(None);
        let (reader_pending, reader_streams, reader_change) = (
            Arc::clone(&pending),
            Arc::clone(&streams),
            Arc::clone(&stream_change),
        );
        tokio::spawn(async move {
            while let Some(frame) = stream.next().await {
                let text = match frame {
                    Ok(Message::Text(text)) => text.to_string(),
                    Ok(Message::Close(frame)) => {
                        let code = frame.map_or(1005, |frame| u16::from(frame.code));
                        closed_tx.send_replace(Some(code));
                        return;
                    }
                    Ok(_) => continue,
                    Err(_) => break,
                };
                let Ok(message) = serde_json::from_str::<Value>(&text) else {
                    let _ = text_tx.send(text);
                    continue;
                };
                if let Some(id) = message["id"].as_u64() {
                    if let Some(sender) = reader_pending.lock().unwrap().remove(&id) {
                        let _ = sender.send(message);
                    }
                    continue;
                }
                let stream_id = message["params"]["streamId"].as_u64().unwrap_or(u64::MAX);
                let mut streams = reader_streams.lock().unwrap();
                match message["method"].as_str() {
                    Some("$sandbox.stream.enqueue") => {
                        let chunk = BASE64
                            .decode(message["params"]["data"].as_str().unwrap_or_default())
                            .unwrap();
                        streams.data.entry(stream_id).or_default().extend(chunk);
                    }
                    Some("$sandbox.stream.end") => {
                        streams.ended.insert(stream_id);
                    }
                    _ => {}
                }
                drop(streams);
                reader_change.notify_waiters();
            }
            closed_tx.send_replace(Some(1006));
        });
        Self {
            out,
            pending,
            streams,
            stream_change,
            texts: tokio::sync::Mutex::new(texts),
            next_id: AtomicU64::new(0),
            closed,
        }
    }

    pub fn send_text(&self, text: &str) {
        self.out
            .send(Message::text(text.to_string()))
            .expect("connection open");
    }

    pub fn notify(&self, method: &str, params: Value) {
        self.send_text(
            &json!({ "jsonrpc": "2.0", "method": method, "params": params }).to_string(),
        );
    }

    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }

    /// Returns the next non-JSON text frame (such as `pong`).
    pub async fn next_text(&self) -> String {
        let mut texts = self.texts.lock().await;
        tokio::time::timeout(WAIT, texts.recv())
            .await
            .expect("text in time")
            .expect("connection open")
    }

    /// Waits for the server to close the connection and returns the close code.
    pub async fn closed(&self) -> u16 {
        let mut closed = self.closed.clone();
        let code = tokio::time::timeout(WAIT, closed.wait_for(Option::is_some))
            .await
            .expect("connection closed in time")
            .expect("close state");
        code.unwrap_or(0)
    }

    /// Sends a request and returns the whole response message.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, sender);
        self.send_text(
            &json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params }).to_string(),
        );
        tokio::time::timeout(WAIT, receiver)
            .await
            .unwrap_or_else(|_| panic!("{method} answered in time"))
            .expect("connection open")
    }

    /// Sends a request and returns `result.ok`, failing the test on any error.
    pub async fn ok(&self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(
            response["result"].get("ok").is_some(),
            "{method} failed: {response}"
        );
        response["result"]["ok"].clone()
    }

    /// Sends a request that must fail and returns `result.error`.
    pub async fn err(&self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(
            response["result"].get("error").is_some(),
            "{method} succeeded: {response}"
        );
        response["result"]["error"].clone()
    }

    /// Waits until server stream `id` has ended and returns its bytes.
    pub async fn stream_text(&self, id: u64) -> String {
        let wait = async {
            loop {
                let changed = self.stream_change.notified();
                {
                    let streams = self.streams.lock().unwrap();
                    if streams.ended.contains(&id) {
                        return String::from_utf8_lossy(
                            streams.data.get(&id).map_or(&[][..], Vec::as_slice),
                        )
                        .into_owned();
                    }
                }
                changed.await;
            }
        };
        tokio::time::timeout(WAIT, wait)
            .await
            .expect("stream ended in time")
    }

    /// Runs `script` with `bash -c` and collects its output and exit status.
    pub async fn sh(&self, script: &str) -> Output {
        let spawned = self
            .ok("spawn", json!({ "command": "bash", "args": ["-c", script], "stdout": "piped", "stderr": "piped" }))
            .await;
        let status = self
            .ok("processWait", json!({ "pid": spawned["pid"] }))
            .await;
        let stdout = self
            .stream_text(spawned["stdoutStreamId"].as_u64().expect("stdout id"))
            .await;
        let stderr = self
            .stream_text(spawned["stderrStreamId"].as_u64().expect("stderr id"))
            .await;
        Output {
            code: status["code"].as_i64().expect("exit code"),
            stdout,
            stderr,
            status,
        }
    }
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis() as i64)
        .unwrap_or(0)
}
