//! One WebSocket connection to a sandbox: JSON-RPC requests, stream notifications, keepalive.
//!
//! Requests run as separate tasks, so a pending `processWait` or `writeFile` does not hold up the
//! reader. Every outgoing frame goes through one channel to the writer task, which keeps each
//! response ahead of the `start` of the streams it names.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::fsops::{is_fs_method, strip_nulls};
use crate::sandbox::{AgentReply, Chunk, OutputSinks, Sandbox, SandboxGone, wait_stopped};
use crate::{errors, signals};

/// Close code for a frame that is neither `ping`/`pong` nor JSON.
const CLOSE_INVALID_JSON: u16 = 4000;
/// Close code for JSON that is not a JSON-RPC 2.0 message.
const CLOSE_INVALID_JSON_RPC: u16 = 4001;
/// Time the writer gets to send the last frames (such as a close frame) after the connection ends.
const CLOSE_FLUSH: std::time::Duration = std::time::Duration::from_secs(1);
/// Next id of a server-produced stream. The ids are unique across all connections because the npm
/// SDK (0.13.2) keeps server-produced streams in one process-wide table, so two sandboxes opened from
/// one Node process would otherwise mix their output.
static NEXT_SERVER_STREAM: AtomicU64 = AtomicU64::new(1);
/// Frames queued for the writer before senders wait.
const OUTGOING_QUEUE: usize = 1024;

/// A chunk of a client-produced stream (stdin or file content).
#[derive(Debug)]
enum ClientChunk {
    Data(Vec<u8>),
    End,
    Error,
}

struct ClientStream {
    sender: mpsc::UnboundedSender<ClientChunk>,
    receiver: Option<mpsc::UnboundedReceiver<ClientChunk>>,
}

/// Shared state of one connection.
struct Connection {
    sandbox: Arc<Sandbox>,
    out: mpsc::Sender<Message>,
    /// Client-produced streams by client id; created by `start` or by the request naming them.
    client_streams: Mutex<HashMap<u64, ClientStream>>,
    /// Server-produced streams the client cancelled.
    cancelled: Mutex<HashSet<u64>>,
    /// Abortable requests by `abortId`.
    aborts: Mutex<HashMap<u64, oneshot::Sender<()>>>,
    /// Pause between a spawn response and the first notification of its output streams.
    stream_delay: std::time::Duration,
    /// Request and output tasks, aborted when the connection ends so none outlives it.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

/// Outcome of a request handler.
enum Reply {
    /// A `result` envelope (`{"ok": ...}` or `{"error": ...}`).
    Result(Value),
    /// A JSON-RPC protocol error.
    Protocol {
        code: i64,
        message: &'static str,
        data: Option<Value>,
    },
    /// The handler already sent its response.
    Sent,
}

fn invalid_params(message: &str) -> Reply {
    // The clients expect zod's issue list: a JSON array of {code, path, message}.
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("missing field"));
    let issues = json!([{
        "code": if field.is_some() { "invalid_type" } else { "custom" },
        "path": field.map(|field| vec![field]).unwrap_or_default(),
        "message": message,
    }]);
    let mut data = errors::serialized("ZodError", None, &issues.to_string());
    data["name"] = json!("ZodError");
    Reply::Protocol {
        code: -32602,
        message: "Invalid params",
        data: Some(data),
    }
}

fn ok(value: Value) -> Reply {
    Reply::Result(json!({ "ok": value }))
}

fn error(value: Value) -> Reply {
    Reply::Result(json!({ "error": value }))
}

fn gone() -> Reply {
    error(errors::serialized("Error", None, "the sandbox has stopped"))
}

fn parse<T: for<'de> Deserialize<'de>>(params: Value) -> Result<T, Reply> {
    serde_json::from_value(strip_nulls(params))
        .map_err(|failure| invalid_params(&failure.to_string()))
}

/// Serves one upgraded connection until either side closes it or the sandbox stops.
/// When `creator` is set and the sandbox is a session sandbox, closing ends the sandbox.
///
/// `stream_delay` holds back the first notification of every output stream; see [`stream_delay`].
pub async fn serve<S>(
    socket: WebSocketStream<S>,
    sandbox: Arc<Sandbox>,
    creator: bool,
    stream_delay: std::time::Duration,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = socket.split();
    let (out, mut out_rx) = mpsc::channel::<Message>(OUTGOING_QUEUE);
    let mut writer = tokio::spawn(async move {
        while let Some(message) = out_rx.recv().await {
            let closing = matches!(message, Message::Close(_));
            if sink.send(message).await.is_err() || closing {
                break;
            }
        }
        let _ = sink.close().await;
    });

    let connection = Arc::new(Connection {
        sandbox: Arc::clone(&sandbox),
        out: out.clone(),
        client_streams: Mutex::new(HashMap::new()),
        cancelled: Mutex::new(HashSet::new()),
        aborts: Mutex::new(HashMap::new()),
        tasks: Mutex::new(Vec::new()),
        stream_delay,
    });
    let mut stopped = sandbox.stopped();

    loop {
        let frame = tokio::select! {
            frame = stream.next() => frame,
            () = wait_stopped(&mut stopped) => {
                let _ = out.send(close(CloseCode::Normal, "sandbox stopped")).await;
                break;
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(text))) => text.to_string(),
            Some(Ok(Message::Binary(bytes))) => String::from_utf8_lossy(&bytes).into_owned(),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
            Some(Ok(_)) => continue,
        };
        match text.as_str() {
            "ping" => {
                let _ = out.send(Message::text("pong")).await;
                continue;
            }
            "pong" => continue,
            _ => {}
        }
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            let _ = out
                .send(close(CloseCode::from(CLOSE_INVALID_JSON), "Invalid JSON"))
                .await;
            break;
        };
        if message["jsonrpc"] != "2.0" || !message.is_object() {
            let _ = out
                .send(close(
                    CloseCode::from(CLOSE_INVALID_JSON_RPC),
                    "Invalid message",
                ))
                .await;
            break;
        }
        let Some(method) = message["method"].as_str().map(String::from) else {
            // A response from the client: the server never sends requests, so there is nothing to match.
            continue;
        };
        let params = message.get("params").cloned().unwrap_or(Value::Null);
        match message.get("id").cloned() {
            Some(id) if !id.is_null() => {
                let task_connection = Arc::clone(&connection);
                connection.track(tokio::spawn(async move {
                    let reply = task_connection.handle(&method, params, &id).await;
                    task_connection.respond(&id, reply).await;
                }));
            }
            _ => connection.on_notification(&method, &params),
        }
    }

    // Pending requests and output forwarders end with the connection. Dropping the connection
    // also drops the client streams, which ends the stdin of processes fed by this client.
    if let Ok(mut tasks) = connection.tasks.lock() {
        for task in tasks.drain(..) {
            task.abort();
        }
    }
    drop(connection);
    drop(out);
    if tokio::time::timeout(CLOSE_FLUSH, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    if creator && sandbox.session {
        sandbox.terminate("creating connection closed").await;
    }
}

/// Returns the pause before output streams for a client with this `User-Agent`.
///
/// The Python SDK (deno-sandbox 0.16.0) registers its stream readers only after its listener has
/// moved on from the spawn response, and it drops data for streams it does not know yet. Output
/// that arrives in the same read as the response is therefore lost. Its `websockets` library
/// identifies itself in `User-Agent`, and a short pause gives the SDK time to register. The npm SDK
/// buffers early data itself and sends no `User-Agent`, so it gets no pause.
pub fn stream_delay(user_agent: Option<&str>) -> std::time::Duration {
    // NOTE: 20 ms is an estimate that held in local runs; a Python client stalled for longer
    // still loses output.
    match user_agent {
        Some(agent) if agent.contains("websockets/") => std::time::Duration::from_millis(20),
        _ => std::time::Duration::ZERO,
    }
}

fn close(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

impl Connection {
    fn track(&self, task: tokio::task::JoinHandle<()>) {
        if let Ok(mut tasks) = self.tasks.lock() {
            tasks.retain(|task| !task.is_finished());
            tasks.push(task.abort_handle());
        }
    }

    async fn send(&self, message: Value) -> bool {
        self.out
            .send(Message::text(message.to_string()))
            .await
            .is_ok()
    }

    async fn respond(&self, id: &Value, reply: Reply) {
        let message = match reply {
            Reply::Sent => return,
            Reply::Result(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
            Reply::Protocol {
                code,
                message,
                data,
            } => {
                let mut error = json!({ "code": code, "message": message });
                if let Some(data) = data {
                    error["data"] = data;
                }
                json!({ "jsonrpc": "2.0", "id": id, "error": error })
            }
        };
        self.send(message).await;
    }

    fn on_notification(&self, method: &str, params: &Value) {
        let Some(stream_id) = params["streamId"].as_u64() else {
            return;
        };
        match method {
            "$sandbox.stream.start" => {
                self.client_stream(stream_id);
            }
            "$sandbox.stream.enqueue" => {
                let data = params["data"]
                    .as_str()
                    .and_then(|data| BASE64.decode(data).ok());
                let sender = self.client_stream(stream_id);
                let _ = sender.send(data.map_or(ClientChunk::Error, ClientChunk::Data));
            }
            "$sandbox.stream.end" => {
                let _ = self.client_stream(stream_id).send(ClientChunk::End);
            }
            "$sandbox.stream.error" => {
                let _ = self.client_stream(stream_id).send(ClientChunk::Error);
            }
            "$sandbox.stream.cancel" => {
                if let Ok(mut cancelled) = self.cancelled.lock() {
                    cancelled.insert(stream_id);
                }
            }
            _ => {}
        }
    }

    /// Returns the sender of client stream `id`, creating the stream on first use.
    fn client_stream(&self, id: u64) -> mpsc::UnboundedSender<ClientChunk> {
        let Ok(mut streams) = self.client_streams.lock() else {
            return mpsc::unbounded_channel().0;
        };
        streams
            .entry(id)
            .or_insert_with(|| {
                let (sender, receiver) = mpsc::unbounded_channel();
                ClientStream {
                    sender,
                    receiver: Some(receiver),
                }
            })
            .sender
            .clone()
    }

    /// Takes the receiving end of client stream `id` for the request that names it.
    fn pick_up(&self, id: u64) -> Option<mpsc::UnboundedReceiver<ClientChunk>> {
        self.client_stream(id);
        self.client_streams
            .lock()
            .ok()?
            .get_mut(&id)?
            .receiver
            .take()
    }

    fn register_abort(&self, abort_id: Option<u64>) -> Option<oneshot::Receiver<()>> {
        let abort_id = abort_id?;
        let (sender, receiver) = oneshot::channel();
        self.aborts.lock().ok()?.insert(abort_id, sender);
        Some(receiver)
    }

    async fn handle(self: &Arc<Self>, method: &str, params: Value, id: &Value) -> Reply {
        match method {
            "spawn" => self.spawn(params, id).await,
            "processWait" => self.process_wait(params).await,
            "processKill" => self.process_kill(params).await,
            "envGet" | "envSet" | "envDelete" | "envToObject" => self.env(method, params),
            "abort" => {
                let abort_id = params["abortId"].as_u64();
                let sender = abort_id.and_then(|id| self.aborts.lock().ok()?.remove(&id));
                if let Some(sender) = sender {
                    let _ = sender.send(());
                }
                ok(Value::Null)
            }
            "writeFile" | "writeTextFile" if params["contentStreamId"].is_u64() => {
                self.write_from_stream(method, params).await
            }
            method if is_fs_method(method) => {
                let abort = self.register_abort(params["abortId"].as_u64());
                let mut params = params;
                if let Some(map) = params.as_object_mut() {
                    map.remove("abortId");
                }
                let call = self.agent_fs(method, params);
                match abort {
                    Some(abort) => tokio::select! {
                        reply = call => reply,
                        _ = abort => error(errors::aborted()),
                    },
                    None => call.await,
                }
            }
            _ => Reply::Protocol {
                code: -32601,
                message: "Method not found",
                data: None,
            },
        }
    }

    async fn agent_fs(&self, method: &str, params: Value) -> Reply {
        let request = json!({ "op": "fs", "method": method, "params": params });
        match self.sandbox.call(request, None).await {
            Ok(AgentReply::Result(result)) => Reply::Result(result),
            Ok(AgentReply::Invalid(message)) => invalid_params(&message),
            Err(SandboxGone) => gone(),
        }
    }

    async fn write_from_stream(&self, method: &str, params: Value) -> Reply {
        let Some(stream_id) = params["contentStreamId"].as_u64() else {
            return invalid_params("contentStreamId: expected a number");
        };
        let Some(mut receiver) = self.pick_up(stream_id) else {
            return invalid_params("contentStreamId: stream already used by another request");
        };
        let mut abort = self.register_abort(params["abortId"].as_u64());
        let mut content = Vec::new();
        loop {
            let chunk = match abort.as_mut() {
                Some(abort) => tokio::select! {
                    chunk = receiver.recv() => chunk,
                    _ = abort => return error(errors::aborted()),
                },
                None => receiver.recv().await,
            };
            match chunk {
                Some(ClientChunk::Data(bytes)) => content.extend_from_slice(&bytes),
                Some(ClientChunk::End) => break,
                Some(ClientChunk::Error) | None => {
                    return error(errors::serialized(
                        "Error",
                        None,
                        "the content stream failed",
                    ));
                }
            }
        }

        let mut params = params;
        if let Some(map) = params.as_object_mut() {
            map.remove("contentStreamId");
            map.remove("abortId");
            if method == "writeFile" {
                map.insert("content".to_string(), json!(BASE64.encode(&content)));
            } else {
                map.insert(
                    "content".to_string(),
                    json!(String::from_utf8_lossy(&content)),
                );
            }
        }
        self.agent_fs(method, params).await
    }

    fn env(&self, method: &str, params: Value) -> Reply {
        #[derive(Deserialize)]
        struct Key {
            key: String,
        }
        #[derive(Deserialize)]
        struct KeyValue {
            key: String,
            value: String,
        }
        let Ok(mut env) = self.sandbox.env.lock() else {
            return gone();
        };
        match method {
            "envGet" => match parse::<Key>(params) {
                Ok(p) => ok(env.get(&p.key).map_or(Value::Null, |value| json!(value))),
                Err(reply) => reply,
            },
            "envSet" => match parse::<KeyValue>(params) {
                Ok(p) => {
                    env.insert(p.key, p.value);
                    ok(Value::Null)
                }
                Err(reply) => reply,
            },
            "envDelete" => match parse::<Key>(params) {
                Ok(p) => {
                    env.remove(&p.key);
                    ok(Value::Null)
                }
                Err(reply) => reply,
            },
            _ => ok(json!(*env)),
        }
    }

    async fn spawn(self: &Arc<Self>, params: Value, id: &Value) -> Reply {
        #[derive(Deserialize, PartialEq, Eq, Clone, Copy)]
        #[serde(rename_all = "lowercase")]
        enum Output {
            Piped,
            Null,
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct SpawnParams {
            command: String,
            args: Option<Vec<String>>,
            env: Option<BTreeMap<String, String>>,
            clear_env: Option<bool>,
            cwd: Option<String>,
            stdin_stream_id: Option<u64>,
            stdout: Output,
            stderr: Output,
        }
        let p: SpawnParams = match parse(params) {
            Ok(p) => p,
            Err(reply) => return reply,
        };

        let mut env = if p.clear_env.unwrap_or(false) {
            BTreeMap::new()
        } else {
            self.sandbox
                .env
                .lock()
                .map(|env| env.clone())
                .unwrap_or_default()
        };
        env.extend(p.env.unwrap_or_default());
        let stdin = match p.stdin_stream_id {
            Some(id) => match self.pick_up(id) {
                Some(receiver) => Some(receiver),
                None => {
                    return invalid_params("stdinStreamId: stream already used by another request");
                }
            },
            None => None,
        };

        let mut sinks = OutputSinks::default();
        let mut forwarders = Vec::new();
        for (mode, slot) in [(p.stdout, &mut sinks.stdout), (p.stderr, &mut sinks.stderr)] {
            if mode == Output::Piped {
                let (sender, receiver) = mpsc::unbounded_channel();
                *slot = Some(sender);
                forwarders.push((NEXT_SERVER_STREAM.fetch_add(1, Ordering::Relaxed), receiver));
            } else {
                forwarders.push((0, mpsc::unbounded_channel().1));
            }
        }

        let request = json!({
            "op": "spawn",
            "command": p.command,
            "args": p.args.unwrap_or_default(),
            "env": env,
            "cwd": p.cwd,
            "stdin": stdin.is_some(),
            "stdout": p.stdout == Output::Piped,
            "stderr": p.stderr == Output::Piped,
        });
        let result = match self.sandbox.call(request, Some(sinks)).await {
            Ok(AgentReply::Result(result)) => result,
            Ok(AgentReply::Invalid(message)) => return invalid_params(&message),
            Err(SandboxGone) => return gone(),
        };
        let Some(pid) = result["ok"]["pid"].as_u64() else {
            return Reply::Result(result);
        };

        let stream_id = |index: usize| match forwarders[index].0 {
            0 => Value::Null,
            id => json!(id),
        };
        let reply = json!({
            "ok": { "pid": pid, "stdoutStreamId": stream_id(0), "stderrStreamId": stream_id(1) }
        });
        // The response goes out before the streams' `start`, as clients register readers on it.
        self.respond(id, Reply::Result(reply)).await;
        for (stream_id, receiver) in forwarders {
            if stream_id != 0 {
                self.track(tokio::spawn(
                    Arc::clone(self).forward_output(stream_id, receiver),
                ));
            }
        }
        if let Some(receiver) = stdin {
            tokio::spawn(forward_stdin(Arc::clone(&self.sandbox), pid, receiver));
        }
        Reply::Sent
    }

    async fn forward_output(
        self: Arc<Self>,
        stream_id: u64,
        mut receiver: mpsc::UnboundedReceiver<Chunk>,
    ) {
        let notification = |method: &str, params: Value| json!({ "jsonrpc": "2.0", "method": method, "params": params });
        if !self.stream_delay.is_zero() {
            tokio::time::sleep(self.stream_delay).await;
        }
        if !self
            .send(notification(
                "$sandbox.stream.start",
                json!({ "streamId": stream_id }),
            ))
            .await
        {
            return;
        }
        while let Some(chunk) = receiver.recv().await {
            let cancelled = self
                .cancelled
                .lock()
                .is_ok_and(|cancelled| cancelled.contains(&stream_id));
            if cancelled {
                continue;
            }
            let message = match chunk {
                Chunk::Data(data) => notification(
                    "$sandbox.stream.enqueue",
                    json!({ "streamId": stream_id, "data": data }),
                ),
                Chunk::End => notification("$sandbox.stream.end", json!({ "streamId": stream_id })),
            };
            if !self.send(message).await {
                return;
            }
        }
    }

    async fn process_wait(&self, params: Value) -> Reply {
        #[derive(Deserialize)]
        struct Pid {
            pid: u64,
        }
        let p: Pid = match parse(params) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        match self.sandbox.wait(p.pid).await {
            Ok(Some(info)) => ok(json!({
                "success": info.code == 0,
                "code": info.code,
                "signal": info.signal,
                "oom": if info.oom { json!("high-confidence") } else { Value::Null },
            })),
            Ok(None) => error(errors::process_not_found(p.pid)),
            Err(SandboxGone) => gone(),
        }
    }

    async fn process_kill(&self, params: Value) -> Reply {
        #[derive(Deserialize)]
        struct Kill {
            pid: u64,
            signal: Option<String>,
        }
        let p: Kill = match parse(params) {
            Ok(p) => p,
            Err(reply) => return reply,
        };
        if !self.sandbox.is_running(p.pid) {
            return error(errors::process_not_found(p.pid));
        }
        let name = p.signal.unwrap_or_else(|| "SIGTERM".to_string());
        let Some(number) = signals::number(&name) else {
            return error(errors::serialized(
                "TypeError",
                None,
                &format!("Unknown signal {name}"),
            ));
        };
        match self.sandbox.signal(p.pid, number).await {
            Ok(()) => ok(Value::Null),
            Err(failure) => error(failure),
        }
    }
}

async fn forward_stdin(
    sandbox: Arc<Sandbox>,
    pid: u64,
    mut receiver: mpsc::UnboundedReceiver<ClientChunk>,
) {
    while let Some(chunk) = receiver.recv().await {
        match chunk {
            ClientChunk::Data(bytes) => {
                sandbox.notify_agent(
                    &json!({ "op": "stdin", "pid": pid, "data": BASE64.encode(bytes) }),
                );
            }
            ClientChunk::End | ClientChunk::Error => break,
        }
    }
    sandbox.notify_agent(&json!({ "op": "stdinEnd", "pid": pid }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_python_clients_get_stream_delay() {
        let python = stream_delay(Some("Python/3.11 websockets/15.0.1"));
        assert_eq!(python, std::time::Duration::from_millis(20));
        assert_eq!(stream_delay(None), std::time::Duration::ZERO);
        assert_eq!(stream_delay(Some("node")), std::time::Duration::ZERO);
    }
}
