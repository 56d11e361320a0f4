//! One websocket to a sandbox: the upgrade, JSON-RPC id matching, stream notifications routed to
//! receivers, keepalive, and deadlines.
//!
//! Decision: a reader task and a writer task own the two halves of the socket, so a pending
//! `processWait` never blocks other calls or stream data. Every keepalive interval the writer
//! sends the text frame `ping` (as Deno's npm SDK does) and a protocol Ping, which every peer must
//! answer with a Pong. A socket that delivers no frame at all for the idle limit is therefore dead,
//! and every pending call fails promptly. Protocol Pings from the server are answered by
//! tungstenite itself. Nothing here logs payloads: only
//! methods, ids, sizes and close codes.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::capture::OutputCapture;
use super::error::{self, DenoError, SerializedError};
use crate::secret::DenoToken;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Notification that announces a stream.
pub const STREAM_START: &str = "$sandbox.stream.start";
/// Notification that carries one base64 chunk of a stream.
pub const STREAM_ENQUEUE: &str = "$sandbox.stream.enqueue";
/// Notification that ends a stream normally.
pub const STREAM_END: &str = "$sandbox.stream.end";
/// Notification that ends a stream with an error.
pub const STREAM_ERROR: &str = "$sandbox.stream.error";
/// Notification from a stream's consumer telling the producer to stop.
pub const STREAM_CANCEL: &str = "$sandbox.stream.cancel";

/// Close code for a frame that is neither `ping`/`pong` nor JSON.
pub const CLOSE_INVALID_JSON: u16 = 4000;
/// Close code for JSON that is not a JSON-RPC 2.0 message.
pub const CLOSE_INVALID_JSON_RPC: u16 = 4001;

/// Header carrying the sandbox id on the upgrade response.
pub const SANDBOX_ID_HEADER: &str = "x-deno-sandbox-id";
/// Header carrying Deno's trace id on responses.
pub const TRACE_ID_HEADER: &str = "x-deno-trace-id";
/// Header carrying the base64 JSON configuration of a create upgrade.
pub const SANDBOX_CONFIG_HEADER: &str = "x-deno-sandbox-config";

/// Deadlines of one connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionTimeouts {
    pub handshake: Duration,
    pub keepalive_interval: Duration,
    pub idle_limit: Duration,
    pub close: Duration,
}

/// Cause of a connection's end, turned into a fresh [`DenoError`] for every waiter.
#[derive(Debug, Clone)]
enum CloseCause {
    Remote { code: Option<u16>, reason: String },
    Idle(Duration),
    InvalidMessage(String),
    Transport(String),
    Local,
}

impl CloseCause {
    fn to_error(&self) -> DenoError {
        match self {
            Self::Remote { code, reason } => DenoError::Closed {
                code: *code,
                reason: reason.clone(),
            },
            Self::Idle(limit) => DenoError::Timeout {
                operation: "waiting for any frame from the sandbox (keepalive)".to_owned(),
                after: *limit,
            },
            Self::InvalidMessage(reason) => DenoError::InvalidMessage(reason.clone()),
            Self::Transport(reason) => DenoError::Closed {
                code: None,
                reason: reason.clone(),
            },
            Self::Local => DenoError::Closed {
                code: Some(1000),
                reason: "closed by the client".to_owned(),
            },
        }
    }
}

/// One event of a server-produced stream.
#[derive(Debug)]
enum StreamEvent {
    Chunk(Vec<u8>),
    End,
    Failed(DenoError),
}

/// Routing entry of a server-produced stream. `start` and the RPC response naming the stream may
/// arrive in either order, so the entry exists as soon as either side mentions the id.
#[derive(Debug)]
struct ServerStream {
    // NOTE: unbounded so that a slow consumer never stalls the reader and with it every pending
    // call. Memory stays bounded only while the consumer drains its receiver, for example into
    // an `OutputCapture`. A receiver that is kept but never read buffers the whole stream.
    sender: mpsc::UnboundedSender<StreamEvent>,
    /// The receiving side until the client takes it.
    receiver: Option<mpsc::UnboundedReceiver<StreamEvent>>,
    /// Whether `$sandbox.stream.start` arrived; data before it is dropped, as the npm SDK does.
    started: bool,
    /// Whether `end` or `error` arrived while the receiver was still untaken.
    finished: bool,
}

impl ServerStream {
    fn new() -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        Self {
            sender,
            receiver: Some(receiver),
            started: false,
            finished: false,
        }
    }
}

struct PendingCall {
    method: String,
    reply: oneshot::Sender<Result<Value, DenoError>>,
}

#[derive(Default)]
struct State {
    pending: HashMap<u64, PendingCall>,
    /// Streams the server produces, keyed by server-chosen id.
    server_streams: HashMap<u64, ServerStream>,
    /// Client-produced streams the server cancelled; their ids are a separate space.
    cancelled_client_streams: HashSet<u64>,
    closed: Option<CloseCause>,
}

enum Outgoing {
    Frame(Message),
    Shutdown(Option<CloseFrame>),
}

/// State shared by the connection handle and its two tasks.
struct Shared {
    state: Mutex<State>,
    outgoing: mpsc::UnboundedSender<Outgoing>,
    next_request_id: AtomicU64,
    next_client_stream_id: AtomicU64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters
        // more than losing the connection, so a poisoned lock is used as it is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the connection closed once and fails every pending call and open stream.
    fn fail(&self, cause: CloseCause) {
        let (pending, streams) = {
            let mut state = self.lock();
            if state.closed.is_some() {
                return;
            }
            state.closed = Some(cause.clone());
            (
                std::mem::take(&mut state.pending),
                std::mem::take(&mut state.server_streams),
            )
        };
        tracing::debug!(
            pending = pending.len(),
            streams = streams.len(),
            cause = ?cause,
            "sandbox connection ended"
        );
        for (_, call) in pending {
            let _ = call.reply.send(Err(cause.to_error()));
        }
        for (_, stream) in streams {
            let _ = stream.sender.send(StreamEvent::Failed(cause.to_error()));
        }
        let _ = self.outgoing.send(Outgoing::Shutdown(None));
    }

    fn closed_error(&self) -> Option<DenoError> {
        self.lock().closed.as_ref().map(CloseCause::to_error)
    }

    fn send_json(&self, value: &Value) -> Result<(), DenoError> {
        if let Some(error) = self.closed_error() {
            return Err(error);
        }
        let frame = Message::text(value.to_string());
        self.outgoing
            .send(Outgoing::Frame(frame))
            .map_err(|_| CloseCause::Local.to_error())
    }

    fn send_notification(&self, method: &str, params: Value) -> Result<(), DenoError> {
        self.send_json(&json!({"jsonrpc": "2.0", "method": method, "params": params}))
    }

    fn close_with(&self, code: u16, reason: &str, cause: CloseCause) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = self.outgoing.send(Outgoing::Shutdown(Some(frame)));
        self.fail(cause);
    }
}

/// Removes a pending call when its future is dropped before the response arrives.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.lock().pending.remove(&self.id);
    }
}

/// Receiver of one server-produced stream, such as a process's stdout.
///
/// Chunks arrive in order. The stream ends with `Ok(None)` after `$sandbox.stream.end` or after
/// [`Sandbox::cancel_stream`](crate::deno::Sandbox::cancel_stream). `$sandbox.stream.error` and a lost connection become errors.
/// Dropping the receiver cancels the stream at the sandbox when the next chunk arrives.
#[derive(Debug)]
pub struct StreamReceiver {
    id: u64,
    events: mpsc::UnboundedReceiver<StreamEvent>,
    done: bool,
}

impl StreamReceiver {
    /// Returns the server-chosen stream id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Waits for the next chunk; `Ok(None)` once the stream has ended.
    ///
    /// The wait has no deadline of its own: a dead connection ends it within the idle limit, and
    /// callers that need a shorter bound wrap it in `tokio::time::timeout`.
    ///
    /// # Errors
    /// [`DenoError::Application`] with method `$sandbox.stream.error` when the producer failed the
    /// stream; the connection's error when it closed first.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, DenoError> {
        if self.done {
            return Ok(None);
        }
        let event = self.events.recv().await;
        match event {
            Some(StreamEvent::Chunk(bytes)) => Ok(Some(bytes)),
            Some(StreamEvent::End) | None => {
                self.done = true;
                Ok(None)
            }
            Some(StreamEvent::Failed(error)) => {
                self.done = true;
                Err(error)
            }
        }
    }

    /// Reads the stream to its end into `capture`, which bounds the memory kept.
    ///
    /// # Errors
    /// As [`StreamReceiver::next_chunk`]; bytes read before the error stay in `capture`.
    pub async fn read_into(&mut self, capture: &mut OutputCapture) -> Result<(), DenoError> {
        while let Some(chunk) = self.next_chunk().await? {
            capture.push(&chunk);
        }
        Ok(())
    }
}

/// One open websocket to a sandbox, shared by the calls of one tool invocation.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
    writer: Option<JoinHandle<()>>,
    close_timeout: Duration,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Connection")
            .field("closed", &self.shared.lock().closed.is_some())
            .finish_non_exhaustive()
    }
}

/// Headers of the upgrade response that describe the sandbox.
#[derive(Debug)]
pub(crate) struct Handshake {
    pub sandbox_id: Option<String>,
    pub trace_id: Option<String>,
}

impl Connection {
    /// Opens the websocket at `url` with the token and any extra headers, within the handshake
    /// deadline.
    ///
    /// `sandbox_id` names the sandbox a connect addresses, so a 404 becomes
    /// [`DenoError::SandboxNotFound`].
    pub async fn open(
        operation: &'static str,
        url: &str,
        token: &DenoToken,
        extra_headers: &[(&'static str, String)],
        sandbox_id: Option<&str>,
        tls: Arc<rustls::ClientConfig>,
        timeouts: ConnectionTimeouts,
    ) -> Result<(Self, Handshake), DenoError> {
        let request = build_request(url, token, extra_headers)?;
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            true,
            Some(Connector::Rustls(tls)),
        );
        let outcome = tokio::time::timeout(timeouts.handshake, connecting)
            .await
            .map_err(|_| DenoError::Timeout {
                operation: format!("{operation} (websocket handshake)"),
                after: timeouts.handshake,
            })?;
        let (socket, response) = match outcome {
            Ok(pair) => pair,
            Err(tungstenite::Error::Http(response)) => {
                let status = response.status().as_u16();
                let trace_id = header_text(response.headers(), TRACE_ID_HEADER);
                let body = response.body().as_deref().unwrap_or_default();
                return Err(error::rejection(
                    operation, sandbox_id, status, trace_id, body,
                ));
            }
            Err(other) => return Err(DenoError::Transport(Box::new(other))),
        };

        let handshake = Handshake {
            sandbox_id: header_text(response.headers(), SANDBOX_ID_HEADER),
            trace_id: header_text(response.headers(), TRACE_ID_HEADER),
        };
        tracing::debug!(
            operation,
            sandbox_id = handshake.sandbox_id.as_deref(),
            trace_id = handshake.trace_id.as_deref(),
            "sandbox websocket open"
        );
        Ok((Self::start(socket, timeouts), handshake))
    }

    fn start(socket: Socket, timeouts: ConnectionTimeouts) -> Self {
        let (sink, stream) = socket.split();
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            outgoing,
            next_request_id: AtomicU64::new(0),
            next_client_stream_id: AtomicU64::new(0),
        });
        let writer = tokio::spawn(run_writer(sink, outgoing_rx, Arc::clone(&shared), timeouts));
        let reader = tokio::spawn(run_reader(stream, Arc::clone(&shared), timeouts));
        Self {
            shared,
            reader,
            writer: Some(writer),
            close_timeout: timeouts.close,
        }
    }

    /// Sends a request and waits at most `deadline` for its result.
    ///
    /// Returns the `ok` value of the result envelope.
    ///
    /// # Errors
    /// [`DenoError::Application`] for `result.error`, [`DenoError::Protocol`] for a top-level
    /// `error`, [`DenoError::Timeout`] past the deadline, and the connection's error when it closes.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        deadline: Duration,
    ) -> Result<Value, DenoError> {
        let id = self.shared.next_request_id.fetch_add(1, Ordering::Relaxed);
        let (reply, answer) = oneshot::channel();
        {
            let mut state = self.shared.lock();
            if let Some(cause) = &state.closed {
                return Err(cause.to_error());
            }
            let method = method.to_owned();
            state.pending.insert(id, PendingCall { method, reply });
        }
        let _guard = PendingGuard {
            shared: &self.shared,
            id,
        };

        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.shared.send_json(&request)?;
        tracing::debug!(method, id, "sandbox call sent");

        match tokio::time::timeout(deadline, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self
                .shared
                .closed_error()
                .unwrap_or_else(|| CloseCause::Local.to_error())),
            Err(_) => Err(DenoError::Timeout {
                operation: method.to_owned(),
                after: deadline,
            }),
        }
    }

    /// Returns the receiver of a server-produced stream named by a result, such as
    /// `stdoutStreamId`. Data that arrived before this call is kept.
    ///
    /// # Errors
    /// [`DenoError::InvalidArgument`] when the receiver of this stream was already taken; the
    /// connection's error when it has closed.
    pub fn take_stream(&self, id: u64) -> Result<StreamReceiver, DenoError> {
        let mut state = self.shared.lock();
        if let Some(cause) = &state.closed {
            return Err(cause.to_error());
        }
        let entry = state
            .server_streams
            .entry(id)
            .or_insert_with(ServerStream::new);
        let receiver = entry.receiver.take().ok_or(DenoError::InvalidArgument {
            name: "stream_id",
            reason: format!("the receiver of stream {id} was already taken"),
        })?;
        if entry.finished {
            state.server_streams.remove(&id);
        }
        Ok(StreamReceiver {
            id,
            events: receiver,
            done: false,
        })
    }

    /// Cancels a server-produced stream: later data for it is dropped and
    /// `$sandbox.stream.cancel` requests that the server stop. Its receiver then ends with `Ok(None)`.
    ///
    /// # Errors
    /// The connection's error when it has closed.
    pub fn cancel_stream(&self, id: u64) -> Result<(), DenoError> {
        let removed = self.shared.lock().server_streams.remove(&id);
        if let Some(stream) = removed {
            let _ = stream.sender.send(StreamEvent::End);
        }
        self.shared
            .send_notification(STREAM_CANCEL, json!({"streamId": id, "reason": null}))
    }

    /// Allocates a client-produced stream id and sends `$sandbox.stream.start` for it. Send it
    /// before the request that names the id.
    pub fn start_client_stream(&self) -> Result<u64, DenoError> {
        let id = self
            .shared
            .next_client_stream_id
            .fetch_add(1, Ordering::Relaxed);
        self.shared
            .send_notification(STREAM_START, json!({"streamId": id}))?;
        Ok(id)
    }

    /// Sends `data` on a client-produced stream in chunks of at most `chunk_size` bytes, then
    /// `$sandbox.stream.end`. Stops early, without `end`, when the server cancelled the stream.
    ///
    /// Returns whether the whole stream was sent.
    pub fn send_client_stream(
        &self,
        id: u64,
        data: &[u8],
        chunk_size: usize,
    ) -> Result<bool, DenoError> {
        for chunk in data.chunks(chunk_size.max(1)) {
            if self.shared.lock().cancelled_client_streams.contains(&id) {
                return Ok(false);
            }
            let params = json!({"streamId": id, "data": BASE64.encode(chunk)});
            self.shared.send_notification(STREAM_ENQUEUE, params)?;
        }
        if self.shared.lock().cancelled_client_streams.contains(&id) {
            return Ok(false);
        }
        self.shared
            .send_notification(STREAM_END, json!({"streamId": id}))?;
        Ok(true)
    }

    /// Returns whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Sends a normal close frame (1000) and waits briefly for the writer to flush it.
    pub async fn close(mut self) {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = self.shared.outgoing.send(Outgoing::Shutdown(Some(frame)));
        self.shared.fail(CloseCause::Local);

        // The reader keeps running until the server's close frame, so the socket is not reset
        // while the server still sends.
        let writer = self.writer.take();
        let reader = &mut self.reader;
        let finishing = async move {
            if let Some(writer) = writer {
                let _ = writer.await;
            }
            let _ = reader.await;
        };
        let _ = tokio::time::timeout(self.close_timeout, finishing).await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Dropping without `close` still sends a close frame, and the writer finishes on its own.
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = self.shared.outgoing.send(Outgoing::Shutdown(Some(frame)));
        self.shared.fail(CloseCause::Local);
        self.reader.abort();
    }
}

fn build_request(
    url: &str,
    token: &DenoToken,
    extra_headers: &[(&'static str, String)],
) -> Result<tungstenite::handshake::client::Request, DenoError> {
    let invalid_url = |reason: String| DenoError::InvalidArgument {
        name: "sandbox endpoint",
        reason,
    };
    let mut request = url
        .into_client_request()
        .map_err(|error| invalid_url(format!("{url:?} is not a websocket URL: {error}")))?;

    let mut authorization =
        HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
            DenoError::InvalidArgument {
                name: "token",
                reason: "the token contains characters not allowed in an HTTP header".to_owned(),
            }
        })?;
    authorization.set_sensitive(true);
    let headers = request.headers_mut();
    headers.insert("authorization", authorization);
    for (name, value) in extra_headers {
        let value = HeaderValue::from_str(value).map_err(|_| DenoError::InvalidArgument {
            name,
            reason: "the value is not a valid HTTP header value".to_owned(),
        })?;
        headers.insert(*name, value);
    }
    Ok(request)
}

fn header_text(headers: &tungstenite::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

async fn run_writer(
    mut sink: futures_util::stream::SplitSink<Socket, Message>,
    mut outgoing: mpsc::UnboundedReceiver<Outgoing>,
    shared: Arc<Shared>,
    timeouts: ConnectionTimeouts,
) {
    let mut keepalive = tokio::time::interval(timeouts.keepalive_interval);
    keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let messages = tokio::select! {
            next = outgoing.recv() => match next {
                Some(Outgoing::Frame(message)) => vec![message],
                Some(Outgoing::Shutdown(frame)) => {
                    if let Some(frame) = frame {
                        let closing = sink.send(Message::Close(Some(frame)));
                        let _ = tokio::time::timeout(timeouts.close, closing).await;
                    }
                    break;
                }
                None => break,
            },
            // Deno's npm SDK sends the text ping. Every RFC 6455 peer must reply to the protocol
            // Ping with a Pong, so the idle limit works even for a server that ignores text.
            _ = keepalive.tick() => vec![Message::text("ping"), Message::Ping(Vec::new().into())],
        };
        for message in messages {
            // A peer that stops reading fills the TCP buffers; the idle limit bounds that wait too.
            match tokio::time::timeout(timeouts.idle_limit, sink.send(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    shared.fail(CloseCause::Transport(format!("sending failed: {error}")));
                    return;
                }
                Err(_) => {
                    shared.fail(CloseCause::Idle(timeouts.idle_limit));
                    return;
                }
            }
        }
    }
    let _ = tokio::time::timeout(timeouts.close, sink.close()).await;
}

async fn run_reader(
    mut stream: futures_util::stream::SplitStream<Socket>,
    shared: Arc<Shared>,
    timeouts: ConnectionTimeouts,
) {
    let idle_limit = timeouts.idle_limit;
    loop {
        let next = match tokio::time::timeout(idle_limit, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                shared.fail(CloseCause::Idle(idle_limit));
                return;
            }
        };
        let message = match next {
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                shared.fail(CloseCause::Transport(error.to_string()));
                return;
            }
            None => {
                shared.fail(CloseCause::Remote {
                    code: None,
                    reason: "socket ended without a close frame".to_owned(),
                });
                return;
            }
        };
        let flow = match message {
            Message::Text(text) => handle_text(&shared, text.as_str()),
            Message::Binary(bytes) => match std::str::from_utf8(&bytes) {
                Ok(text) => handle_text(&shared, text),
                Err(_) => {
                    reject_frame(
                        &shared,
                        CLOSE_INVALID_JSON,
                        "Invalid JSON",
                        "binary frame is not UTF-8",
                    );
                    Flow::Drain
                }
            },
            Message::Close(frame) => {
                let (code, reason) = match frame {
                    Some(frame) => (Some(u16::from(frame.code)), frame.reason.to_string()),
                    None => (None, "closed without a status code".to_owned()),
                };
                shared.fail(CloseCause::Remote { code, reason });
                Flow::Stop
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => Flow::Continue,
        };
        match flow {
            Flow::Continue => {}
            Flow::Stop => return,
            Flow::Drain => {
                drain_until_close(&mut stream, timeouts.close).await;
                return;
            }
        }
    }
}

/// Next step of the reader after a frame.
enum Flow {
    Continue,
    Stop,
    /// This side sent a close frame: read until the peer's close frame, so that closing the socket
    /// with unread data does not reset it before the peer has read our close frame.
    Drain,
}

async fn drain_until_close(
    stream: &mut futures_util::stream::SplitStream<Socket>,
    close_timeout: Duration,
) {
    let draining = async {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Close(_) = message {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(close_timeout, draining).await;
}

fn reject_frame(shared: &Shared, code: u16, reason: &str, description: &str) {
    tracing::warn!(close_code = code, description, "invalid frame from sandbox");
    shared.close_with(
        code,
        reason,
        CloseCause::InvalidMessage(description.to_owned()),
    );
}

/// Handles one text frame.
fn handle_text(shared: &Shared, text: &str) -> Flow {
    match text {
        "pong" => return Flow::Continue,
        "ping" => {
            let _ = shared.outgoing.send(Outgoing::Frame(Message::text("pong")));
            return Flow::Continue;
        }
        _ => {}
    }
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        reject_frame(
            shared,
            CLOSE_INVALID_JSON,
            "Invalid JSON",
            "frame is not JSON",
        );
        return Flow::Drain;
    };
    if value.get("jsonrpc").and_then(Value::as_str) != Some("2.0") || !value.is_object() {
        reject_frame(
            shared,
            CLOSE_INVALID_JSON_RPC,
            "Invalid message",
            "JSON frame is not a JSON-RPC 2.0 message",
        );
        return Flow::Drain;
    }

    let id = value.get("id");
    let method = value.get("method").and_then(Value::as_str);
    match (id, method) {
        (Some(_), Some(method)) => {
            tracing::debug!(method, "ignoring request from the sandbox");
        }
        (Some(id), None) => handle_response(shared, id, &value),
        (None, Some(method)) => handle_notification(shared, method, value.get("params")),
        (None, None) => {
            reject_frame(
                shared,
                CLOSE_INVALID_JSON_RPC,
                "Invalid message",
                "JSON-RPC message has neither id nor method",
            );
            return Flow::Drain;
        }
    }
    Flow::Continue
}

fn handle_response(shared: &Shared, id: &Value, message: &Value) {
    let Some(id) = id.as_u64() else {
        tracing::debug!("ignoring response with a non-numeric id");
        return;
    };
    let Some(call) = shared.lock().pending.remove(&id) else {
        tracing::debug!(id, "ignoring response for an unknown request id");
        return;
    };
    let outcome = decode_response(&call.method, message);
    if let Err(error) = &outcome {
        tracing::debug!(method = %call.method, id, error = %error, "sandbox call failed");
    }
    let _ = call.reply.send(outcome);
}

fn decode_response(method: &str, message: &Value) -> Result<Value, DenoError> {
    if let Some(error) = message.get("error").filter(|error| !error.is_null()) {
        return Err(DenoError::Protocol {
            method: method.to_owned(),
            code: error.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_owned(),
        });
    }
    let Some(result) = message.get("result").and_then(Value::as_object) else {
        return Err(DenoError::InvalidMessage(format!(
            "response to {method} has neither a result object nor an error"
        )));
    };
    if let Some(ok) = result.get("ok") {
        return Ok(ok.clone());
    }
    match result.get("error") {
        Some(error) => Err(DenoError::Application {
            method: method.to_owned(),
            error: decode_serialized_error(error),
        }),
        None => Err(DenoError::InvalidMessage(format!(
            "result of {method} has neither ok nor error"
        ))),
    }
}

/// Decodes a SerializedError; accepts the plain strings Python's SDK sends and null.
fn decode_serialized_error(value: &Value) -> SerializedError {
    match value {
        Value::String(message) => SerializedError::from_message(message.clone()),
        Value::Null => SerializedError::from_message("the sandbox sent no error details"),
        other => serde_json::from_value(other.clone()).unwrap_or_else(|_| {
            SerializedError::from_message("the sandbox sent an error object of unknown shape")
        }),
    }
}

fn handle_notification(shared: &Shared, method: &str, params: Option<&Value>) {
    let stream_id = params
        .and_then(|params| params.get("streamId"))
        .and_then(Value::as_u64);
    let Some(stream_id) = stream_id else {
        tracing::debug!(method, "ignoring notification without a stream id");
        return;
    };

    let mut state = shared.lock();
    match method {
        STREAM_START => {
            state
                .server_streams
                .entry(stream_id)
                .or_insert_with(ServerStream::new)
                .started = true;
        }
        STREAM_ENQUEUE => {
            let Some(stream) = state
                .server_streams
                .get(&stream_id)
                .filter(|stream| stream.started && !stream.finished)
            else {
                tracing::debug!(stream_id, "dropping data for an unknown stream");
                return;
            };
            let data = params
                .and_then(|params| params.get("data"))
                .and_then(Value::as_str)
                .map(|data| BASE64.decode(data));
            let event = match data {
                Some(Ok(bytes)) => StreamEvent::Chunk(bytes),
                _ => StreamEvent::Failed(DenoError::InvalidMessage(format!(
                    "stream {stream_id} chunk is not base64 data"
                ))),
            };
            let failed = matches!(event, StreamEvent::Failed(_));
            let delivered = stream.sender.send(event).is_ok();
            if failed || !delivered {
                state.server_streams.remove(&stream_id);
            }
            if !delivered {
                // The receiver was dropped, so ask the producer to stop.
                drop(state);
                let _ = shared.send_notification(
                    STREAM_CANCEL,
                    json!({"streamId": stream_id, "reason": null}),
                );
            }
        }
        STREAM_END | STREAM_ERROR => {
            let Some(stream) = state.server_streams.get_mut(&stream_id) else {
                tracing::debug!(stream_id, method, "ignoring end of an unknown stream");
                return;
            };
            if !stream.started || stream.finished {
                return;
            }
            let event = if method == STREAM_END {
                StreamEvent::End
            } else {
                let error = params
                    .and_then(|params| params.get("error"))
                    .unwrap_or(&Value::Null);
                StreamEvent::Failed(DenoError::Application {
                    method: STREAM_ERROR.to_owned(),
                    error: decode_serialized_error(error),
                })
            };
            let _ = stream.sender.send(event);
            if stream.receiver.is_some() {
                stream.finished = true;
            } else {
                state.server_streams.remove(&stream_id);
            }
        }
        STREAM_CANCEL => {
            state.cancelled_client_streams.insert(stream_id);
        }
        _ => tracing::debug!(method, "ignoring unknown notification"),
    }
}
