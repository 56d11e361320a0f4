//! Local stand-in for Deno Deploy's sandbox service, with bubblewrap and cgroup isolation.
//!
//! `deno-sandbox-local` serves the sandbox and console APIs on 127.0.0.1; the same binary run as
//! `deno-sandbox-local agent` is the agent that bubblewrap starts inside every sandbox, and
//! `deno-sandbox-local exec-child` the launcher the agent starts each sandbox process through.

mod agent;
mod config;
mod errors;
mod fsops;
mod http;
mod isolation;
mod rpc;
mod sandbox;
mod signals;

use std::sync::Arc;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("agent") => std::process::exit(agent::run()),
        Some(agent::EXEC_CHILD) if args.len() >= 4 => {
            std::process::exit(agent::exec_child(&args[2], &args[3], &args[4..]));
        }
        _ => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("deno-sandbox-local: failed to start the async runtime: {error}");
            std::process::exit(1);
        }
    };
    if let Err(message) = runtime.block_on(run()) {
        eprintln!("deno-sandbox-local: {message}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), String> {
    let config = config::Config::from_env().map_err(|error| error.to_string())?;
    let cgroup_version =
        isolation::preflight().map_err(|error| format!("cannot isolate sandboxes: {error}"))?;
    isolation::prepare_state(&config).map_err(|error| error.to_string())?;
    if config.deno_bin.is_none() {
        tracing::warn!(
            "deno not found on PATH and DENO_LOCAL_DENO_BIN unset; sandboxes will lack deno"
        );
    }
    let agent_binary = std::env::current_exe()
        .map_err(|error| format!("failed to locate the server binary for the agent: {error}"))?;
    let registry = sandbox::Registry::new(Arc::new(config.clone()), cgroup_version, agent_binary);

    // A throwaway sandbox proves bubblewrap, cgroups and the agent work before any client arrives.
    let probe = registry
        .create(
            sandbox::CreateOptions {
                memory_mb: 256,
                ..Default::default()
            },
            0,
        )
        .await
        .map_err(|error| {
            format!("cannot isolate sandboxes: the startup sandbox failed: {error}")
        })?;
    probe.terminate("startup check finished").await;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| format!("failed to listen on {}: {error}", config.listen))?;
    let address = listener.local_addr().map_err(|error| error.to_string())?;
    println!("deno-sandbox-local listening on http://{address}");
    tracing::info!(%address, ?cgroup_version, network = ?config.network, "listening");

    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, _) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(error = %error, "accept failed");
                continue;
            }
        };
        // Small JSON-RPC frames would otherwise wait for delayed ACKs (about 40 ms each).
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(error = %error, "failed to set TCP_NODELAY");
        }
        let registry = Arc::clone(&registry);
        tokio::spawn(async move {
            let service = service_fn(move |request| http::handle(request, Arc::clone(&registry)));
            if let Err(error) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
            {
                tracing::debug!(error = %error, "http connection ended with an error");
            }
        });
    }

    tracing::info!("shutting down, stopping all sandboxes");
    for row in registry.list_all_running() {
        row.terminate("server shutting down").await;
    }
    Ok(())
}

async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
