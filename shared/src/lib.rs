//! Library behind the Deno sandbox tool functions. Every Lambda binary in `functions/` is a thin
//! `main` that calls [`bootstrap`]; everything worth testing lives here.
//!
//! Layout:
//! - [`config`]: settings read once per cold start from environment variables.
//! - [`contract`]: the HTTP contract: request envelope, success and error bodies, status codes.
//! - [`bootstrap`]: tracing, configuration, AWS clients and stores for a function's cold start.
//! - [`secret`]: the Deno token type, zeroized and redacted.
//! - [`deno`]: the Deno Deploy sandbox client: websocket RPC, streams, delete, extend, list.
//! - [`crypto`]: envelope encryption with KMS data keys and AES-256-GCM.
//! - [`store`]: the connections, sandboxes and capabilities tables (DynamoDB and in-memory).
//! - [`connections`]: the `deno_connection` function: connect, show and remove a Deno token.
//! - [`capability`]: the `deno_capability_admin` function and the per-organization check.
//! - [`credentials`]: token resolution and the checks every tool call starts with.
//! - [`tools`]: the six agent tools behind the function binaries.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod capability;
pub mod config;
pub mod connections;
pub mod contract;
pub mod credentials;
pub mod crypto;
pub mod deno;
pub mod secret;
pub mod store;
pub mod tools;
