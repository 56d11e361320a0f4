//! Library behind the Deno sandbox tool functions. Every Lambda binary in `functions/` is a thin
//! `main` that calls [`bootstrap`]; everything worth testing lives here.
//!
//! Layout:
//! - [`config`]: settings read once per cold start from environment variables.
//! - [`contract`]: the HTTP contract: request envelope, success and error bodies, status codes.
//! - [`bootstrap`]: tracing, configuration and AWS clients for a function's cold start.
//! - [`secret`]: the Deno token type, zeroized and redacted.
//! - [`deno`]: the Deno Deploy sandbox client: websocket RPC, streams, delete, extend, list.
//! - [`tools`]: the six agent tools behind the function binaries.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod bootstrap;
pub mod config;
pub mod contract;
pub mod deno;
pub mod secret;
pub mod tools;
