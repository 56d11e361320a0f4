//! Tests of the client against in-process peers on 127.0.0.1 that script the server side.

mod console;
mod handshake;
mod rpc;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};

use super::{DenoClient, Endpoints, Timeouts};
use crate::secret::DenoToken;

pub(super) const TOKEN: &str = "ddo_test_token_0001";
pub(super) const SANDBOX_ID: &str = "sbx_ord_0123456789abcdefghjk";

pub(super) fn token() -> DenoToken {
    DenoToken::new(TOKEN)
}

/// Short deadlines so failure tests finish in well under a second each.
pub(super) fn test_timeouts() -> Timeouts {
    Timeouts {
        handshake: Duration::from_secs(2),
        call: Duration::from_secs(2),
        keepalive_interval: Duration::from_millis(100),
        idle_limit: Duration::from_millis(600),
        http: Duration::from_secs(2),
        close: Duration::from_millis(500),
    }
}

/// Builds a client whose sandbox and console endpoints both point at `addr`.
pub(super) fn client_for(addr: SocketAddr, timeouts: Timeouts) -> DenoClient {
    let origin = format!("http://{addr}");
    let endpoints =
        Endpoints::new(Some(&origin), "sandbox-api.deno.net", &origin).expect("endpoints");
    DenoClient::new(endpoints, timeouts).expect("client")
}

/// What the peer saw of the upgrade request.
#[derive(Debug, Clone, Default)]
pub(super) struct SeenRequest {
    pub path: String,
    pub authorization: Option<String>,
    pub config: Option<String>,
}

/// Response of the peer to the upgrade.
pub(super) enum Answer {
    /// 101 with `x-deno-sandbox-id` when given.
    Accept { sandbox_id: Option<&'static str> },
    /// A refusal with this status, body and trace id.
    Reject {
        status: u16,
        body: &'static str,
        trace_id: Option<&'static str>,
    },
}

/// The server side of one websocket, as a test scripts it.
pub(super) struct Peer {
    pub ws: WebSocketStream<TcpStream>,
    /// Count of text `ping` frames received, each replied to with `pong`.
    pub pings: usize,
    /// Count of protocol Ping frames received.
    pub protocol_pings: usize,
}

impl Peer {
    /// Returns the next frame that is not a keepalive `ping`, replying `pong` to each ping on the way; `None`
    /// when the socket ended.
    pub async fn next_frame(&mut self) -> Option<Message> {
        loop {
            let message = self.ws.next().await?.ok()?;
            if message == Message::text("ping") {
                self.pings += 1;
                // After the peer sent a close frame, replies fail; the test checks other frames.
                let _ = self.ws.send(Message::text("pong")).await;
                continue;
            }
            if let Message::Ping(_) = message {
                // tungstenite queues the Pong itself and sends it with the next read or write.
                self.protocol_pings += 1;
                continue;
            }
            return Some(message);
        }
    }

    /// Returns the next JSON message from the client.
    pub async fn recv(&mut self) -> Value {
        match self.next_frame().await {
            Some(Message::Text(text)) => serde_json::from_str(text.as_str()).expect("client JSON"),
            other => panic!("expected a JSON text frame, got {other:?}"),
        }
    }

    pub async fn send(&mut self, value: Value) {
        self.ws
            .send(Message::text(value.to_string()))
            .await
            .expect("send to client");
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text.to_owned()))
            .await
            .expect("send text to client");
    }
}

/// Serves one upgrade on a fresh 127.0.0.1 port, answers it with `answer`, then runs `script`.
/// Returns the address and a handle yielding the seen request once the script finished.
pub(super) async fn serve<F, Fut>(
    answer: Answer,
    script: F,
) -> (SocketAddr, JoinHandle<SeenRequest>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let handle = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.expect("accept");
        let seen = Arc::new(Mutex::new(SeenRequest::default()));
        let seen_in_callback = Arc::clone(&seen);
        // The refusal type is tungstenite's; its size does not matter in a test peer.
        #[allow(clippy::result_large_err)]
        let callback = move |request: &Request, mut response: Response| {
            let header = |name: &str| {
                request
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            *seen_in_callback.lock().expect("seen lock") = SeenRequest {
                path: request.uri().path().to_owned(),
                authorization: header("authorization"),
                config: header("x-deno-sandbox-config"),
            };
            match answer {
                Answer::Accept { sandbox_id } => {
                    if let Some(id) = sandbox_id {
                        response
                            .headers_mut()
                            .insert("x-deno-sandbox-id", HeaderValue::from_static(id));
                    }
                    Ok(response)
                }
                Answer::Reject {
                    status,
                    body,
                    trace_id,
                } => {
                    let mut refusal = ErrorResponse::new(Some(body.to_owned()));
                    *refusal.status_mut() = StatusCode::from_u16(status).expect("status");
                    if let Some(trace_id) = trace_id {
                        refusal
                            .headers_mut()
                            .insert("x-deno-trace-id", HeaderValue::from_static(trace_id));
                    }
                    Err(refusal)
                }
            }
        };
        if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
            script(Peer {
                ws,
                pings: 0,
                protocol_pings: 0,
            })
            .await;
        }
        seen.lock().expect("seen lock").clone()
    });
    (addr, handle)
}

/// Serves one accepted connection for `SANDBOX_ID` and returns a client already connected to it.
pub(super) async fn connected<F, Fut>(
    timeouts: Timeouts,
    script: F,
) -> (super::Sandbox, JoinHandle<SeenRequest>)
where
    F: FnOnce(Peer) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (addr, handle) = serve(
        Answer::Accept {
            sandbox_id: Some(SANDBOX_ID),
        },
        script,
    )
    .await;
    let client = client_for(addr, timeouts);
    let id = super::SandboxId::parse(SANDBOX_ID).expect("id");
    let sandbox = client.connect(&token(), &id).await.expect("connect");
    (sandbox, handle)
}
