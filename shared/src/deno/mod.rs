//! Client of Deno Deploy's sandbox API: create and connect over a websocket speaking JSON-RPC 2.0
//! with stream notifications, plus the HTTP calls that delete, extend and list sandboxes.
//!
//! - [`endpoint`]: regions, sandbox ids and URL resolution.
//! - [`error`]: [`DenoError`], the one error type.
//! - `connection`: one websocket, id matching, streams, keepalive and deadlines.
//! - [`client`]: [`DenoClient`], built once per cold start; [`SandboxConfig`] and [`Timeouts`].
//! - [`sandbox`]: [`Sandbox`], the typed operations on one connection.
//! - [`console`]: delete, extend and list over HTTP.
//! - [`capture`]: [`OutputCapture`], bounded head and tail capture of output.
//!
//! Create a sandbox, run a command, read a file and delete the sandbox:
//!
//! ```no_run
//! use std::time::{Duration, SystemTime, UNIX_EPOCH};
//!
//! use deno_sandbox_tools::deno::{
//!     DenoClient, Endpoints, OutputCapture, Region, SandboxConfig, SpawnOptions, Timeouts,
//! };
//! use deno_sandbox_tools::secret::DenoToken;
//!
//! # async fn example() -> Result<(), deno_sandbox_tools::deno::DenoError> {
//! let endpoints = Endpoints::new(None, "sandbox-api.deno.net", "https://console.deno.com")?;
//! let client = DenoClient::new(endpoints, Timeouts::default())?;
//! let token = DenoToken::new("ddo_example");
//!
//! // A fixed stop time keeps the sandbox alive after this connection closes.
//! let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
//! let config = SandboxConfig::with_stop_at(now_ms + 20 * 60 * 1000);
//! let (sandbox, id) = client.create_sandbox(&token, Region::Ord, &config).await?;
//!
//! let mut process = sandbox
//!     .spawn(SpawnOptions {
//!         command: "bash".to_owned(),
//!         args: vec!["-c".to_owned(), "echo hello > greeting.txt; echo done".to_owned()],
//!         ..SpawnOptions::default()
//!     })
//!     .await?;
//! let mut stdout = OutputCapture::new(64 * 1024, 64 * 1024);
//! if let Some(receiver) = process.stdout.as_mut() {
//!     receiver.read_into(&mut stdout).await?;
//! }
//! let status = sandbox.process_wait(process.pid, Duration::from_secs(25)).await?;
//! println!("exit {} stdout {:?}", status.code, stdout.render().text);
//!
//! let greeting = sandbox.read_text_file("greeting.txt").await?;
//! assert_eq!(greeting, "hello\n");
//! sandbox.close().await;
//!
//! client.delete_sandbox(&token, &id).await?;
//! # Ok(())
//! # }
//! ```

pub mod capture;
pub mod client;
mod connection;
pub mod console;
pub mod endpoint;
pub mod error;
pub mod sandbox;

pub use capture::{CapturedText, OutputCapture};
pub use client::{DenoClient, SandboxConfig, Timeouts};
pub use connection::StreamReceiver;
pub use console::SandboxSummary;
pub use endpoint::{Endpoints, Region, SandboxId};
pub use error::{DenoError, SerializedError};
pub use sandbox::{
    ExitStatus, FileInfo, OpenOptions, Process, Sandbox, SpawnOptions, Whence, WriteOptions,
};

#[cfg(test)]
mod tests;
