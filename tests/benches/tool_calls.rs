//! Measures what the tool functions cost on top of the sandbox protocol, against the local stack
//! (DynamoDB Local, the KMS emulator and the local sandbox server):
//!
//! 1. tool-call overhead: `deno_exec` of `true` through the handler against the bare protocol
//!    round trip (this crate's client, and Deno's npm SDK), with the handler's steps timed alone;
//! 2. cold start of every function binary under a fake Lambda Runtime API;
//! 3. the output path: 1 GiB of command output and a 100 MiB file read in windows;
//! 4. 50 sandboxes with exec calls in parallel;
//! 5. the local sandbox server: create to ready, and the exec round trip.
//!
//! Run with `bash scripts/bench.sh` (or `make bench`), which starts and stops the stack. With a
//! stack already running: `cargo bench --profile dev -p integration-tests --bench tool_calls`.
//! The function binaries of sections 2 and 3 and the warm `deno_exec` row of section 1 always
//! come from the release build when it exists, whatever profile builds this harness. It prints
//! Markdown tables for BENCHMARKS.md. `BENCH_ITERATIONS` (default 200) sets the samples of the
//! round-trip measurements and `BENCH_SANDBOXES` (default 50) the sandboxes of the scale run.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use deno_sandbox_tools::bootstrap::App;
use deno_sandbox_tools::capability::set_capability;
use deno_sandbox_tools::connections::put_connection;
use deno_sandbox_tools::contract::CallContext;
use deno_sandbox_tools::crypto::EncryptionContext;
use deno_sandbox_tools::deno::{Region, SandboxConfig, SandboxId, SpawnOptions};
use deno_sandbox_tools::secret::DenoToken;
use deno_sandbox_tools::store::{DENO_CAPABILITY, DENO_PROVIDER, SandboxState};
use deno_sandbox_tools::tools::command::{CaptureLimits, run_command};
use deno_sandbox_tools::tools::{self, Tool, access};
use integration_tests::{stack_app, stack_env};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Deadline of the RPC measurements, as a tool call's default.
const RPC_DEADLINE: Duration = Duration::from_secs(25);
/// Bytes `deno_exec` prints in the output-path measurement unless `BENCH_STREAM_BYTES` names
/// another amount: 1 GiB, which fits the 25 s exec deadline only above 43 MB/s.
const STREAMED_BYTES: u64 = 1 << 30;
/// Size of the file read in windows: 100 MiB.
const READ_FILE_BYTES: u64 = 100 << 20;
/// Window of one `deno_read_file` call: 1 MiB, the largest the tool allows.
const READ_WINDOW: u64 = 1 << 20;
/// Every function binary, with the event its cold-start invocation receives.
const FUNCTIONS: [&str; 9] = [
    "deno_create_sandbox",
    "deno_write_file",
    "deno_read_file",
    "deno_exec",
    "deno_list_sandboxes",
    "deno_manage_sandbox",
    "deno_connection",
    "deno_capability_admin",
    "deno_session_cleanup",
];

#[tokio::main]
async fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; this harness takes its settings from the environment.
    let iterations = env_number("BENCH_ITERATIONS", 200);
    let sandbox_count = env_number("BENCH_SANDBOXES", 50);
    let stack = stack_env();
    let app = Arc::new(stack_app().await);
    let token_text = stack
        .get("LOCAL_DENO_TOKEN")
        .cloned()
        .context("the stack was started without --sandbox-server")?;
    let token = DenoToken::new(&token_text);
    let caller = Caller::new("bench");
    connect_caller(&app, &caller, &token).await?;

    let mut report = Report::default();
    report.line(format!("Machine: {}", machine_description()));
    report.line(format!(
        "Samples: {iterations} per round-trip measurement, {sandbox_count} sandboxes at scale."
    ));

    let sandbox_id = create_via_handler(&app, &caller, "bench").await?;
    let workspace = app.config.workspace_path.clone();
    eprintln!("bench: sandbox ready; measuring the tool-call overhead");
    tool_call_overhead(
        &mut report,
        &app,
        &caller,
        &token,
        &sandbox_id,
        &stack,
        iterations,
    )
    .await?;

    eprintln!("bench: cold starts of the function binaries");
    cold_starts(&mut report, &app, &caller, &sandbox_id, &stack).await?;

    eprintln!("bench: output path");
    output_path(&mut report, &app, &caller, &sandbox_id, &stack).await?;

    eprintln!("bench: {sandbox_count} sandboxes in parallel");
    scale(&mut report, &app, sandbox_count).await?;

    eprintln!("bench: local sandbox server");
    local_server(&mut report, &app, &token, &workspace, iterations).await?;

    delete_via_handler(&app, &caller, &sandbox_id).await?;
    println!("{}", report.text);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 1. Tool-call overhead

async fn tool_call_overhead(
    report: &mut Report,
    app: &Arc<App>,
    caller: &Caller,
    token: &DenoToken,
    sandbox_id: &str,
    stack: &HashMap<String, String>,
    iterations: usize,
) -> Result<()> {
    let id = SandboxId::parse(sandbox_id).map_err(|error| anyhow!("sandbox id: {error}"))?;
    let workspace = app.config.workspace_path.clone();

    // Warm-up: connection pools of the AWS clients, the server's caches.
    for _ in 0..5 {
        exec_via_handler(app, caller, sandbox_id, "true").await?;
        bare_round_trip(app, token, &id, &workspace).await?;
    }

    let mut handler = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let result = exec_via_handler(app, caller, sandbox_id, "true").await?;
        handler.push(started.elapsed());
        if result["exit_code"] != 0 {
            bail!(
                "deno_exec of true did not exit with 0: {}",
                result["exit_code"]
            );
        }
    }

    let mut bare = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        bare.push(bare_round_trip(app, token, &id, &workspace).await?);
    }

    let npm = npm_round_trip(stack, sandbox_id, iterations)?;
    let binary = warm_binary_invocations(caller, sandbox_id, stack, iterations).await?;

    let handler = Samples::new(handler);
    let bare = Samples::new(bare);
    report.heading("1. Tool-call overhead: `deno_exec` of `true`");
    report.line(
        "Each sample opens a connection to the sandbox, runs `bash -lc true` with both streams \
         piped, waits for the exit status and closes the connection. The handler also checks the \
         capability, reads and decrypts the token and the sandbox record, and builds the JSON \
         response."
            .to_owned(),
    );
    report.table_header(&["path", "p50 ms", "p95 ms", "p99 ms", "p50 ratio to bare"]);
    let bare_p50 = bare.percentile(0.50);
    for (name, samples) in [
        ("handler (`tools::handle_http`, in process)", &handler),
        ("bare round trip, this crate's client", &bare),
        (binary.0.as_str(), &binary.1),
    ] {
        report.row(&[
            name.to_owned(),
            ms(samples.percentile(0.50)),
            ms(samples.percentile(0.95)),
            ms(samples.percentile(0.99)),
            ratio(samples.percentile(0.50), bare_p50),
        ]);
    }
    match npm {
        Ok(npm) => report.row(&[
            "bare round trip, Deno's npm SDK 0.13.2 (Node 24)".to_owned(),
            ms(npm.percentile(0.50)),
            ms(npm.percentile(0.95)),
            ms(npm.percentile(0.99)),
            ratio(npm.percentile(0.50), bare_p50),
        ]),
        Err(error) => report.row(&[
            "bare round trip, Deno's npm SDK".to_owned(),
            format!("not measured: {error}"),
            String::new(),
            String::new(),
            String::new(),
        ]),
    }

    handler_breakdown(report, app, caller, &id, &handler, iterations / 2).await
}

/// Runs `deno_exec` of `true` in the `deno_exec` binary under the fake Runtime API, five warm-up
/// invocations first, and returns the row name and the warm invocations' latencies.
async fn warm_binary_invocations(
    caller: &Caller,
    sandbox_id: &str,
    stack: &HashMap<String, String>,
    iterations: usize,
) -> Result<(String, Samples)> {
    let (directory, profile) = function_binaries();
    let warm_up = 5;
    let events = (0..warm_up + iterations)
        .map(|_| {
            tool_event(
                "deno_exec",
                caller,
                json!({"sandbox_id": sandbox_id, "command": "true"}),
            )
        })
        .collect();
    let run = run_function(&directory.join("deno_exec"), "deno_exec", stack, events).await?;
    let failures = run
        .invocations
        .iter()
        .filter(|call| call.status != 200 || call.body["result"]["exit_code"] != 0)
        .count();
    if failures > 0 {
        bail!("{failures} invocations of the deno_exec binary failed");
    }
    let samples = run
        .invocations
        .iter()
        .skip(warm_up)
        .map(|call| call.latency)
        .collect();
    let short_profile = profile.split(':').next().unwrap_or(profile);
    Ok((
        format!(
            "handler in the `deno_exec` binary ({short_profile}), warm, via the fake Runtime API"
        ),
        Samples::new(samples),
    ))
}

/// Times each step of the handler alone, in the order the handler needs their results.
async fn handler_breakdown(
    report: &mut Report,
    app: &Arc<App>,
    caller: &Caller,
    id: &SandboxId,
    handler: &Samples,
    iterations: usize,
) -> Result<()> {
    let context = caller.context();
    let mut steps: Vec<(&str, Vec<Duration>)> = [
        "capability get (DynamoDB)",
        "connection get (DynamoDB)",
        "token decrypt (KMS Decrypt + AES-GCM)",
        "sandbox record get (DynamoDB)",
        "record decrypt (KMS Decrypt + AES-GCM)",
        "websocket connect",
        "spawn + wait RPC (`bash -lc true`)",
        "close",
        "the three reads joined (`access::authorize_with_sandbox`)",
    ]
    .into_iter()
    .map(|name| (name, Vec::with_capacity(iterations)))
    .collect();

    for _ in 0..iterations {
        let started = Instant::now();
        app.capabilities
            .get(&context.org_id, DENO_CAPABILITY)
            .await?
            .context("capability")?;
        steps[0].1.push(started.elapsed());

        let started = Instant::now();
        let connection = app
            .connections
            .get(&context.user_id, DENO_PROVIDER)
            .await?
            .context("connection")?;
        steps[1].1.push(started.elapsed());

        let started = Instant::now();
        let opened = app
            .sealer
            .open(
                &EncryptionContext::deno_connection(&context.user_id),
                &connection.sealed_token,
            )
            .await?;
        steps[2].1.push(started.elapsed());
        let opened_token = DenoToken::new(std::str::from_utf8(opened.expose())?);

        let started = Instant::now();
        let record = app
            .sandboxes
            .get(&context.session_id, id.as_str())
            .await?
            .context("sandbox record")?;
        steps[3].1.push(started.elapsed());

        let started = Instant::now();
        let state = SandboxState::open(&app.sealer, &record).await?;
        steps[4].1.push(started.elapsed());

        let started = Instant::now();
        let sandbox = app.deno.connect(&opened_token, id).await?;
        steps[5].1.push(started.elapsed());

        let started = Instant::now();
        let outcome = run_command(
            &sandbox,
            bash_true(&state.workspace_path),
            RPC_DEADLINE,
            CaptureLimits::default(),
        )
        .await?;
        steps[6].1.push(started.elapsed());
        if outcome.status.map(|status| status.code) != Some(0) {
            bail!("bash -lc true failed in the breakdown");
        }

        let started = Instant::now();
        sandbox.close().await;
        steps[7].1.push(started.elapsed());

        let started = Instant::now();
        access::authorize_with_sandbox(app, &context, id).await?;
        steps[8].1.push(started.elapsed());
    }
    let steps: Vec<(&str, Samples)> = steps
        .into_iter()
        .map(|(name, samples)| (name, Samples::new(samples)))
        .collect();
    report.heading("1b. Where the handler's time goes");
    report.line(format!(
        "Each step timed alone, {iterations} samples, one after another. The handler runs the three \
         reads (capability; connection then token decrypt; record then record decrypt) concurrently \
         with `tokio::join!` (shared/src/tools/access.rs), then connects, runs the command and \
         closes."
    ));
    report.table_header(&["step", "p50 ms", "p95 ms"]);
    for (name, samples) in &steps {
        report.row(&[
            (*name).to_owned(),
            ms(samples.percentile(0.50)),
            ms(samples.percentile(0.95)),
        ]);
    }
    let p50 = |index: usize| steps[index].1.percentile(0.50);
    let serial: Duration = (0..8).map(p50).sum();
    let reads_concurrent = p50(0).max(p50(1) + p50(2)).max(p50(3) + p50(4));
    let critical = reads_concurrent + p50(5) + p50(6) + p50(7);
    report.row(&[
        "sum of the steps' p50 (all serial)".to_owned(),
        ms(serial),
        String::new(),
    ]);
    report.row(&[
        "critical path at p50 (reads concurrent)".to_owned(),
        ms(critical),
        String::new(),
    ]);
    report.row(&[
        "measured handler p50".to_owned(),
        ms(handler.percentile(0.50)),
        String::new(),
    ]);
    Ok(())
}

/// One bare protocol round trip with this crate's client, as the handler does it without the
/// store, KMS and JSON work.
async fn bare_round_trip(
    app: &App,
    token: &DenoToken,
    id: &SandboxId,
    workspace: &str,
) -> Result<Duration> {
    let started = Instant::now();
    let sandbox = app.deno.connect(token, id).await?;
    let outcome = run_command(
        &sandbox,
        bash_true(workspace),
        RPC_DEADLINE,
        CaptureLimits::default(),
    )
    .await?;
    sandbox.close().await;
    let elapsed = started.elapsed();
    if outcome.status.map(|status| status.code) != Some(0) {
        bail!("bash -lc true failed on the bare path");
    }
    Ok(elapsed)
}

/// Spawn options of `bash -lc true` in the workspace, as `deno_exec` sends them.
fn bash_true(workspace: &str) -> SpawnOptions {
    SpawnOptions {
        command: "bash".to_owned(),
        args: vec!["-lc".to_owned(), "true".to_owned()],
        env: Default::default(),
        clear_env: false,
        cwd: Some(workspace.to_owned()),
        stdin: None,
    }
}

/// Runs `local/bench/npm_round_trip.mjs` with Node 24 and returns its samples. The outer
/// `Result` fails the run; the inner error gives the reason the SDK was not measured.
fn npm_round_trip(
    stack: &HashMap<String, String>,
    sandbox_id: &str,
    iterations: usize,
) -> Result<Result<Samples>> {
    let root = repository_root();
    let node = root.join("local/node_modules/.bin/node");
    if !node.exists() {
        return Ok(Err(anyhow!(
            "{} missing; run local/install.sh",
            node.display()
        )));
    }
    let output = Command::new(&node)
        .arg(root.join("local/bench/npm_round_trip.mjs"))
        .arg(sandbox_id)
        .arg(iterations.to_string())
        .env(
            "DENO_SANDBOX_ENDPOINT",
            stack
                .get("DENO_SANDBOX_ENDPOINT")
                .cloned()
                .unwrap_or_default(),
        )
        .env(
            "DENO_DEPLOY_ENDPOINT",
            stack
                .get("DENO_DEPLOY_ENDPOINT")
                .cloned()
                .unwrap_or_default(),
        )
        .env(
            "DENO_DEPLOY_TOKEN",
            stack.get("LOCAL_DENO_TOKEN").cloned().unwrap_or_default(),
        )
        .stderr(Stdio::inherit())
        .output()
        .context("run node")?;
    if !output.status.success() {
        return Ok(Err(anyhow!("node exited with {}", output.status)));
    }
    let parsed: Value = serde_json::from_slice(&output.stdout).context("node printed no JSON")?;
    let samples = parsed["samples_ms"]
        .as_array()
        .context("samples_ms")?
        .iter()
        .filter_map(Value::as_f64)
        .map(|millis| Duration::from_secs_f64(millis / 1000.0))
        .collect();
    Ok(Ok(Samples::new(samples)))
}

// ---------------------------------------------------------------------------------------------
// 2. Cold start

async fn cold_starts(
    report: &mut Report,
    app: &Arc<App>,
    caller: &Caller,
    sandbox_id: &str,
    stack: &HashMap<String, String>,
) -> Result<()> {
    let (directory, profile) = function_binaries();
    // The read and write functions work on a file the harness writes first.
    exec_via_handler(
        app,
        caller,
        sandbox_id,
        "mkdir -p bench && echo cold > bench/small.txt",
    )
    .await?;
    let empty_session = Caller::new("bench-empty");

    report.heading("2. Cold start of each function binary");
    report.line(format!(
        "Binaries: `{}` ({profile}). Init is the time from process start to the first \
         `GET /2018-06-01/runtime/invocation/next` on a fake Runtime API on 127.0.0.1; first \
         invocation is from handing out the event to the posted response; peak RSS is VmHWM of \
         the function process when it posts that response.",
        directory.display()
    ));
    report.table_header(&[
        "function",
        "size MiB",
        "init ms",
        "first invocation ms",
        "peak RSS MiB",
        "status",
    ]);
    for function in FUNCTIONS {
        let binary = directory.join(function);
        let size = std::fs::metadata(&binary)
            .map(|metadata| metadata.len())
            .with_context(|| format!("{} was not built", binary.display()))?;
        let event = cold_start_event(function, caller, &empty_session, sandbox_id);
        let run = run_function(&binary, function, stack, vec![event]).await?;
        let first = run
            .invocations
            .first()
            .context("the function posted no response")?;
        report.row(&[
            format!("`{function}`"),
            format!("{:.1}", size as f64 / 1_048_576.0),
            ms(run.init),
            ms(first.latency),
            format!("{:.1}", run.peak_rss_kib as f64 / 1024.0),
            first.status.to_string(),
        ]);
        if first.status != 200 {
            eprintln!(
                "bench: {function} answered {}: {}",
                first.status, first.body["error"]["code"]
            );
        }
        // The sandbox created by the cold-start event is deleted again.
        if function == "deno_create_sandbox"
            && let Some(created) = first.body["result"]["sandbox_id"].as_str()
        {
            delete_via_handler(app, caller, created).await?;
        }
    }
    Ok(())
}

/// The API Gateway event a function receives on its first invocation.
fn cold_start_event(
    function: &str,
    caller: &Caller,
    empty_session: &Caller,
    sandbox_id: &str,
) -> Value {
    let tool_arguments = match function {
        "deno_create_sandbox" => Some(json!({"title": "cold start", "timeout": "5m"})),
        "deno_write_file" => Some(
            json!({"sandbox_id": sandbox_id, "path": "bench/written.txt", "content": "cold\n"}),
        ),
        "deno_read_file" => Some(json!({"sandbox_id": sandbox_id, "path": "bench/small.txt"})),
        "deno_exec" => Some(json!({"sandbox_id": sandbox_id, "command": "true"})),
        "deno_list_sandboxes" => Some(json!({})),
        "deno_manage_sandbox" => {
            Some(json!({"sandbox_id": sandbox_id, "action": "extend", "duration": "15m"}))
        }
        _ => None,
    };
    if let Some(arguments) = tool_arguments {
        return tool_event(function, caller, arguments);
    }
    match function {
        "deno_connection" => {
            let mut event = fixture("connection_get.json");
            event["body"] = json!(json!({"context": caller.context_json()}).to_string());
            event
        }
        "deno_capability_admin" => {
            let mut event = fixture("capability_get.json");
            let path = format!("/admin/orgs/{}/capabilities/deno", caller.org_id);
            event["pathParameters"]["org_id"] = json!(caller.org_id);
            event["rawPath"] = json!(path);
            event["requestContext"]["http"]["path"] = json!(path);
            event
        }
        _ => {
            // Session cleanup of a session without sandboxes.
            let mut event = fixture("deno_list_sandboxes.json");
            let path = format!("/sessions/{}/sandboxes", empty_session.session_id);
            event["routeKey"] = json!("DELETE /sessions/{session_id}/sandboxes");
            event["requestContext"]["routeKey"] = event["routeKey"].clone();
            event["requestContext"]["http"]["method"] = json!("DELETE");
            event["requestContext"]["http"]["path"] = json!(path);
            event["rawPath"] = json!(path);
            event["pathParameters"] = json!({"session_id": empty_session.session_id});
            event["body"] = json!(json!({"context": empty_session.context_json()}).to_string());
            event
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Output path

async fn output_path(
    report: &mut Report,
    app: &Arc<App>,
    caller: &Caller,
    sandbox_id: &str,
    stack: &HashMap<String, String>,
) -> Result<()> {
    let (directory, profile) = function_binaries();
    report.heading("3. Output path");
    report.line(format!(
        "Both run the function binary (`{profile}`) under the fake Runtime API, so peak RSS is \
         VmHWM of that process alone, cold start included. Throughput counts the bytes that \
         crossed the websocket over the invocation time."
    ));
    report.table_header(&[
        "case",
        "bytes",
        "time s",
        "throughput MB/s",
        "peak RSS MiB",
        "result",
    ]);

    // NOTE: the debug local sandbox agent streams about 6 MB/s on two cores, so the 1 GiB run
    // stops at the deadline and measures that agent, not the function.
    let streamed = env_number("BENCH_STREAM_BYTES", STREAMED_BYTES as usize);
    let command = format!("head -c {streamed} /dev/zero");
    let event = tool_event(
        "deno_exec",
        caller,
        json!({"sandbox_id": sandbox_id, "command": command, "timeout_seconds": 25}),
    );
    let run = run_function(
        &directory.join("deno_exec"),
        "deno_exec",
        stack,
        vec![event],
    )
    .await?;
    let invocation = run
        .invocations
        .first()
        .context("deno_exec posted no response")?;
    let result = &invocation.body["result"];
    let bytes = result["stdout_bytes"].as_u64().unwrap_or_default();
    let outcome = if invocation.status != 200 {
        format!("HTTP {}", invocation.status)
    } else if result["timed_out"] == true {
        "stopped at the 25 s deadline".to_owned()
    } else if result["background_output_open"] == true {
        format!(
            "exit {}, output still arriving was cut off after the exit",
            result["exit_code"]
        )
    } else {
        format!(
            "exit {}, {} bytes kept",
            result["exit_code"],
            result["stdout"].as_str().map(str::len).unwrap_or_default()
        )
    };
    report.row(&[
        format!("`deno_exec` `head -c {streamed} /dev/zero`"),
        bytes.to_string(),
        format!("{:.2}", invocation.latency.as_secs_f64()),
        megabytes_per_second(bytes, invocation.latency),
        format!("{:.1}", run.peak_rss_kib as f64 / 1024.0),
        outcome,
    ]);

    let make_file = format!(
        "yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ | head -c {READ_FILE_BYTES} > bench/big.txt"
    );
    let made = exec_via_handler(app, caller, sandbox_id, &make_file).await?;
    if made["exit_code"] != 0 {
        bail!("could not write the 100 MiB file");
    }
    let events = (0..READ_FILE_BYTES / READ_WINDOW)
        .map(|window| {
            tool_event(
                "deno_read_file",
                caller,
                json!({
                    "sandbox_id": sandbox_id,
                    "path": "bench/big.txt",
                    "offset": window * READ_WINDOW,
                    "limit": READ_WINDOW,
                }),
            )
        })
        .collect();
    let run = run_function(
        &directory.join("deno_read_file"),
        "deno_read_file",
        stack,
        events,
    )
    .await?;
    let total: Duration = run.invocations.iter().map(|call| call.latency).sum();
    let bytes: u64 = run
        .invocations
        .iter()
        .map(|call| {
            call.body["result"]["content"]
                .as_str()
                .map(|text| text.len() as u64)
                .unwrap_or_default()
        })
        .sum();
    let failures = run
        .invocations
        .iter()
        .filter(|call| call.status != 200)
        .count();
    let windows = Samples::new(run.invocations.iter().map(|call| call.latency).collect());
    report.row(&[
        format!(
            "`deno_read_file` 100 MiB in {} windows of 1 MiB",
            run.invocations.len()
        ),
        bytes.to_string(),
        format!("{:.2}", total.as_secs_f64()),
        megabytes_per_second(bytes, total),
        format!("{:.1}", run.peak_rss_kib as f64 / 1024.0),
        format!(
            "{failures} failed; window p50 {} ms, p95 {} ms",
            ms(windows.percentile(0.50)),
            ms(windows.percentile(0.95))
        ),
    ]);
    exec_via_handler(app, caller, sandbox_id, "rm -f bench/big.txt").await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// 4. Scale

async fn scale(report: &mut Report, app: &Arc<App>, count: usize) -> Result<()> {
    let caller = Arc::new(Caller::new("bench-scale"));
    let token = stack_env()
        .get("LOCAL_DENO_TOKEN")
        .cloned()
        .context("token")?;
    connect_caller(app, &caller, &DenoToken::new(&token)).await?;

    let started = Instant::now();
    let creates = parallel(count, |index| {
        let app = Arc::clone(app);
        let caller = Arc::clone(&caller);
        async move {
            let title = format!("scale {index}");
            let (status, body) = call(
                &app,
                Tool::CreateSandbox,
                &caller,
                json!({"title": title, "timeout": "10m"}),
            )
            .await;
            match body["result"]["sandbox_id"].as_str() {
                Some(id) if status == 200 => Ok(id.to_owned()),
                _ => Err(anyhow!(
                    "create answered {status}: {}",
                    body["error"]["code"]
                )),
            }
        }
    })
    .await;
    let create_wall = started.elapsed();
    let mut create_errors = 0;
    let mut create_latencies = Vec::new();
    let mut sandboxes = Vec::new();
    for (latency, outcome) in creates {
        create_latencies.push(latency);
        match outcome {
            Ok(id) => sandboxes.push(id),
            Err(error) => {
                create_errors += 1;
                eprintln!("bench: scale create failed: {error}");
            }
        }
    }

    let rounds = 3;
    let mut exec_latencies = Vec::new();
    let mut exec_errors = 0;
    let started = Instant::now();
    for _ in 0..rounds {
        let sandboxes = Arc::new(sandboxes.clone());
        let execs = parallel(sandboxes.len(), |index| {
            let app = Arc::clone(app);
            let caller = Arc::clone(&caller);
            let sandboxes = Arc::clone(&sandboxes);
            async move {
                let (status, body) = call(
                    &app,
                    Tool::Exec,
                    &caller,
                    json!({"sandbox_id": sandboxes[index], "command": "echo ok"}),
                )
                .await;
                if status == 200 && body["result"]["stdout"] == "ok\n" {
                    Ok(())
                } else {
                    Err(anyhow!("exec answered {status}: {}", body["error"]["code"]))
                }
            }
        })
        .await;
        for (latency, outcome) in execs {
            exec_latencies.push(latency);
            if let Err(error) = outcome {
                exec_errors += 1;
                eprintln!("bench: scale exec failed: {error}");
            }
        }
    }
    let exec_wall = started.elapsed();

    let deletes = parallel(sandboxes.len(), |index| {
        let app = Arc::clone(app);
        let caller = Arc::clone(&caller);
        let id = sandboxes[index].clone();
        async move { delete_via_handler(&app, &caller, &id).await }
    })
    .await;
    let delete_errors = deletes
        .iter()
        .filter(|(_, outcome)| outcome.is_err())
        .count();

    let creates = Samples::new(create_latencies);
    let execs = Samples::new(exec_latencies);
    report.heading(format!("4. Scale: {count} sandboxes, exec calls in parallel").as_str());
    report.line(format!(
        "All {count} `deno_create_sandbox` calls start at once, then {rounds} rounds of {count} \
         parallel `deno_exec` calls (`echo ok`, one per sandbox), through the handlers in this \
         process; then every sandbox is deleted with `deno_manage_sandbox`."
    ));
    report.table_header(&[
        "calls", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "wall s", "errors",
    ]);
    for (name, samples, wall, errors) in [
        (
            "`deno_create_sandbox`",
            &creates,
            create_wall,
            create_errors,
        ),
        ("`deno_exec`", &execs, exec_wall, exec_errors),
    ] {
        report.row(&[
            name.to_owned(),
            samples.len().to_string(),
            ms(samples.percentile(0.50)),
            ms(samples.percentile(0.95)),
            ms(samples.percentile(0.99)),
            ms(samples.percentile(1.0)),
            format!("{:.2}", wall.as_secs_f64()),
            errors.to_string(),
        ]);
    }
    report.line(format!("Deletes that failed: {delete_errors}."));
    Ok(())
}

/// Runs `count` tasks at once on the runtime's worker threads and returns each one's latency
/// and outcome.
async fn parallel<F, Fut, T>(count: usize, make: F) -> Vec<(Duration, Result<T>)>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..count)
        .map(|index| {
            let work = make(index);
            tokio::spawn(async move {
                let started = Instant::now();
                let outcome = work.await;
                (started.elapsed(), outcome)
            })
        })
        .collect();
    let mut results = Vec::with_capacity(count);
    for task in tasks {
        match task.await {
            Ok(result) => results.push(result),
            Err(error) => results.push((Duration::ZERO, Err(anyhow!("task failed: {error}")))),
        }
    }
    results
}

// ---------------------------------------------------------------------------------------------
// 5. Local sandbox server

async fn local_server(
    report: &mut Report,
    app: &Arc<App>,
    token: &DenoToken,
    workspace: &str,
    iterations: usize,
) -> Result<()> {
    let creates = 10;
    let mut connected = Vec::new();
    let mut ready = Vec::new();
    for _ in 0..creates {
        let stop_at = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
        let config = SandboxConfig::with_stop_at((stop_at.unix_timestamp() * 1000) as u64);
        let started = Instant::now();
        let (sandbox, id) = app
            .deno
            .create_sandbox(token, Region::ALL[0], &config)
            .await?;
        connected.push(started.elapsed());
        let outcome = run_command(
            &sandbox,
            plain_true(workspace),
            RPC_DEADLINE,
            CaptureLimits::default(),
        )
        .await?;
        ready.push(started.elapsed());
        if outcome.status.map(|status| status.code) != Some(0) {
            bail!("true failed in a new sandbox");
        }
        sandbox.close().await;
        app.deno.delete_sandbox(token, &id).await?;
    }

    let stop_at = time::OffsetDateTime::now_utc() + time::Duration::minutes(5);
    let config = SandboxConfig::with_stop_at((stop_at.unix_timestamp() * 1000) as u64);
    let (sandbox, id) = app
        .deno
        .create_sandbox(token, Region::ALL[0], &config)
        .await?;
    let mut round_trips = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        let outcome = run_command(
            &sandbox,
            plain_true(workspace),
            RPC_DEADLINE,
            CaptureLimits::default(),
        )
        .await?;
        round_trips.push(started.elapsed());
        if outcome.status.map(|status| status.code) != Some(0) {
            bail!("true failed on an open connection");
        }
    }
    sandbox.close().await;
    app.deno.delete_sandbox(token, &id).await?;

    let connected = Samples::new(connected);
    let ready = Samples::new(ready);
    let round_trips = Samples::new(round_trips);
    report.heading("5. Local sandbox server");
    report.line(
        "With this crate's client, no handler. Deno's documentation (https://docs.deno.com/sandbox) \
         says each sandbox boots in under a second; the local server starts a bubblewrap process on this \
         machine instead of a microVM in a Deno region, so the two are not the same thing."
            .to_owned(),
    );
    report.table_header(&["measure", "n", "p50 ms", "p95 ms", "vendor figure"]);
    for (name, samples, vendor) in [
        (
            "create (websocket upgrade answered)",
            &connected,
            "boot under 1 s",
        ),
        (
            "create to ready (first `true` exited)",
            &ready,
            "boot under 1 s",
        ),
        (
            "exec round trip `true` (spawn + wait, open connection)",
            &round_trips,
            "none published",
        ),
    ] {
        report.row(&[
            name.to_owned(),
            samples.len().to_string(),
            ms(samples.percentile(0.50)),
            ms(samples.percentile(0.95)),
            vendor.to_owned(),
        ]);
    }
    Ok(())
}

/// Spawn options of `true` itself, without a shell.
fn plain_true(workspace: &str) -> SpawnOptions {
    SpawnOptions {
        command: "true".to_owned(),
        args: Vec::new(),
        env: Default::default(),
        clear_env: false,
        cwd: Some(workspace.to_owned()),
        stdin: None,
    }
}

// ---------------------------------------------------------------------------------------------
// The fake Lambda Runtime API

/// What one function process did under the fake runtime.
#[derive(Debug)]
struct FunctionRun {
    /// From process start to its first request for an event.
    init: Duration,
    /// One per event, in order.
    invocations: Vec<Invocation>,
    /// VmHWM when the process posted its last response, in KiB.
    peak_rss_kib: u64,
}

#[derive(Debug)]
struct Invocation {
    /// From handing out the event to the posted response.
    latency: Duration,
    /// `statusCode` of the API Gateway response.
    status: u16,
    /// The response body, parsed as JSON (`Null` when it is not JSON).
    body: Value,
}

/// What the fake runtime saw, sent to the harness as it happens.
#[derive(Debug)]
enum RuntimeNotice {
    /// The process asked for an event.
    Next { at: Instant, served: bool },
    /// The process posted a response; VmHWM read before the runtime acknowledged it.
    Response {
        at: Instant,
        body: Vec<u8>,
        peak_rss_kib: u64,
    },
    /// The process reported an init or invocation error.
    Failed { body: Vec<u8> },
}

struct RuntimeState {
    events: Mutex<VecDeque<Value>>,
    pid: Mutex<Option<u32>>,
    notices: mpsc::UnboundedSender<RuntimeNotice>,
}

/// Starts `binary` as a Lambda function against a fake Runtime API on 127.0.0.1 that hands out
/// `events` one by one, and stops the process after the last response.
async fn run_function(
    binary: &Path,
    name: &str,
    stack: &HashMap<String, String>,
    events: Vec<Value>,
) -> Result<FunctionRun> {
    let expected = events.len();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let (notices, mut received) = mpsc::unbounded_channel();
    let state = Arc::new(RuntimeState {
        events: Mutex::new(events.into()),
        pid: Mutex::new(None),
        notices,
    });
    let server_state = Arc::clone(&state);
    let server = tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(serve_runtime(socket, Arc::clone(&server_state)));
        }
    });

    let started = Instant::now();
    let mut child = Command::new(binary)
        .env_clear()
        .envs(stack)
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    *state.pid.lock().map_err(|_| anyhow!("pid lock"))? = Some(child.id());

    let outcome = collect_run(&mut received, started, expected).await;
    // Stop the function process this run started, by its own handle.
    let _ = child.kill();
    let _ = child.wait();
    server.abort();
    outcome.with_context(|| format!("{name} under the fake runtime"))
}

async fn collect_run(
    received: &mut mpsc::UnboundedReceiver<RuntimeNotice>,
    started: Instant,
    expected: usize,
) -> Result<FunctionRun> {
    let mut init = None;
    let mut served_at = None;
    let mut invocations = Vec::with_capacity(expected);
    let mut peak = 0;
    while invocations.len() < expected {
        let notice = tokio::time::timeout(Duration::from_secs(120), received.recv())
            .await
            .context("timed out: no request from the function for 120 s")?
            .context("the fake runtime stopped")?;
        match notice {
            RuntimeNotice::Next { at, served } => {
                init.get_or_insert(at - started);
                if served {
                    served_at = Some(at);
                }
            }
            RuntimeNotice::Response {
                at,
                body,
                peak_rss_kib,
            } => {
                let handed_out = served_at.take().context("a response without an event")?;
                let response: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let status = response["statusCode"].as_u64().unwrap_or_default() as u16;
                let body = response["body"]
                    .as_str()
                    .and_then(|text| serde_json::from_str(text).ok())
                    .unwrap_or(Value::Null);
                invocations.push(Invocation {
                    latency: at - handed_out,
                    status,
                    body,
                });
                peak = peak_rss_kib;
            }
            RuntimeNotice::Failed { body } => {
                bail!(
                    "the function reported an error: {}",
                    String::from_utf8_lossy(&body)
                );
            }
        }
    }
    Ok(FunctionRun {
        init: init.context("the function never asked for an event")?,
        invocations,
        peak_rss_kib: peak,
    })
}

/// Serves one keep-alive connection of the function's runtime client.
async fn serve_runtime(socket: TcpStream, state: Arc<RuntimeState>) -> Result<()> {
    let mut stream = BufReader::new(socket);
    loop {
        let mut request_line = String::new();
        if stream.read_line(&mut request_line).await? == 0 {
            return Ok(());
        }
        let mut content_length = 0usize;
        let mut chunked = false;
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                if name.eq_ignore_ascii_case("content-length") {
                    content_length = value.parse()?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                }
            }
        }
        let body = if chunked {
            read_chunked(&mut stream).await?
        } else {
            let mut body = vec![0; content_length];
            stream.read_exact(&mut body).await?;
            body
        };

        let mut parts = request_line.split_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();
        let now = Instant::now();
        if method == "GET" && path.ends_with("/runtime/invocation/next") {
            let event = state
                .events
                .lock()
                .map_err(|_| anyhow!("events lock"))?
                .pop_front();
            let _ = state.notices.send(RuntimeNotice::Next {
                at: now,
                served: event.is_some(),
            });
            // No more events: leave the request open until the harness stops the process.
            let Some(event) = event else {
                std::future::pending::<()>().await;
                return Ok(());
            };
            let body = event.to_string();
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
                + 60_000;
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                 lambda-runtime-aws-request-id: bench-{}\r\nlambda-runtime-deadline-ms: {deadline}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:us-east-1:123456789012:function:bench\r\n\
                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\
                 content-length: {}\r\n\r\n",
                deadline,
                body.len()
            );
            stream.get_mut().write_all(head.as_bytes()).await?;
            stream.get_mut().write_all(body.as_bytes()).await?;
        } else if method == "POST" && path.ends_with("/response") {
            let pid = *state.pid.lock().map_err(|_| anyhow!("pid lock"))?;
            let peak_rss_kib = pid.map(peak_rss_kib).unwrap_or_default();
            let _ = state.notices.send(RuntimeNotice::Response {
                at: now,
                body,
                peak_rss_kib,
            });
            accepted(&mut stream).await?;
        } else if method == "POST" && path.ends_with("/error") {
            let _ = state.notices.send(RuntimeNotice::Failed { body });
            accepted(&mut stream).await?;
        } else {
            stream
                .get_mut()
                .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                .await?;
        }
    }
}

async fn accepted(stream: &mut BufReader<TcpStream>) -> Result<()> {
    let body = br#"{"status":"OK"}"#;
    let head = format!(
        "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.get_mut().write_all(head.as_bytes()).await?;
    stream.get_mut().write_all(body).await?;
    Ok(())
}

async fn read_chunked(stream: &mut BufReader<TcpStream>) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        stream.read_line(&mut size_line).await?;
        let size_text = size_line.trim().split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size_text, 16)?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let mut line = String::new();
                stream.read_line(&mut line).await?;
                if line.trim_end().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        stream.read_exact(&mut body[start..]).await?;
        let mut crlf = [0u8; 2];
        stream.read_exact(&mut crlf).await?;
    }
}

/// VmHWM of `pid` in KiB, 0 when unreadable.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or_default()
}

/// The directory of the function binaries: the release build when present, else debug.
fn function_binaries() -> (PathBuf, &'static str) {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target"));
    let release = target.join("release");
    if FUNCTIONS
        .iter()
        .all(|function| release.join(function).exists())
    {
        (release, "release profile: opt-level 3, thin LTO, stripped")
    } else {
        (
            target.join("debug"),
            "debug profile; release binaries not built",
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Calls through the handlers

/// Ids of the organization, user and session the harness acts as.
#[derive(Debug, Clone)]
struct Caller {
    org_id: String,
    user_id: String,
    session_id: String,
}

impl Caller {
    fn new(prefix: &str) -> Self {
        let stamp = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|elapsed| elapsed.as_nanos())
                .unwrap_or_default()
        );
        Self {
            org_id: format!("{prefix}-org-{stamp}"),
            user_id: format!("{prefix}-user-{stamp}"),
            session_id: format!("{prefix}-session-{stamp}"),
        }
    }

    fn context(&self) -> CallContext {
        CallContext {
            org_id: self.org_id.clone(),
            user_id: self.user_id.clone(),
            session_id: self.session_id.clone(),
            tool_call_id: None,
        }
    }

    fn context_json(&self) -> Value {
        json!({
            "org_id": self.org_id,
            "user_id": self.user_id,
            "session_id": self.session_id,
        })
    }
}

/// Enables the capability for the caller's organization and connects `token` for the caller.
async fn connect_caller(app: &App, caller: &Caller, token: &DenoToken) -> Result<()> {
    set_capability(app, &caller.org_id, "bench-admin", true).await?;
    put_connection(app, &caller.context(), token).await?;
    Ok(())
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/events")
        .join(name);
    std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_else(|| panic!("fixture {} is missing or not JSON", path.display()))
}

/// Builds an API Gateway v2 event for `POST /tools/{tool}`.
fn tool_event(tool: &str, caller: &Caller, arguments: Value) -> Value {
    let mut event = fixture("deno_list_sandboxes.json");
    let path = format!("/tools/{tool}");
    event["routeKey"] = json!(format!("POST {path}"));
    event["requestContext"]["routeKey"] = event["routeKey"].clone();
    event["requestContext"]["http"]["path"] = json!(path);
    event["rawPath"] = json!(path);
    event["body"] =
        json!(json!({"context": caller.context_json(), "arguments": arguments}).to_string());
    event
}

/// Calls `tool` through its handler in this process and returns the status and JSON body.
async fn call(app: &App, tool: Tool, caller: &Caller, arguments: Value) -> (u16, Value) {
    let event = tool_event(tool.name(), caller, arguments);
    let request = match lambda_http::request::from_str(&event.to_string()) {
        Ok(request) => request,
        Err(error) => return (0, json!({"error": {"code": error.to_string()}})),
    };
    let response = tools::handle_http(app, tool, request).await;
    let text = match response.body() {
        lambda_http::Body::Text(text) => text.clone(),
        lambda_http::Body::Binary(bytes) => String::from_utf8_lossy(bytes).to_string(),
        _ => String::new(),
    };
    (
        response.status().as_u16(),
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

async fn exec_via_handler(
    app: &App,
    caller: &Caller,
    sandbox_id: &str,
    command: &str,
) -> Result<Value> {
    let (status, body) = call(
        app,
        Tool::Exec,
        caller,
        json!({"sandbox_id": sandbox_id, "command": command}),
    )
    .await;
    if status != 200 {
        bail!("deno_exec answered {status}: {}", body["error"]["code"]);
    }
    Ok(body["result"].clone())
}

async fn create_via_handler(app: &App, caller: &Caller, title: &str) -> Result<String> {
    let (status, body) = call(
        app,
        Tool::CreateSandbox,
        caller,
        json!({"title": title, "timeout": "15m"}),
    )
    .await;
    match body["result"]["sandbox_id"].as_str() {
        Some(id) if status == 200 => Ok(id.to_owned()),
        _ => bail!(
            "deno_create_sandbox answered {status}: {}",
            body["error"]["code"]
        ),
    }
}

async fn delete_via_handler(app: &App, caller: &Caller, sandbox_id: &str) -> Result<()> {
    let (status, body) = call(
        app,
        Tool::ManageSandbox,
        caller,
        json!({"sandbox_id": sandbox_id, "action": "delete"}),
    )
    .await;
    if status != 200 {
        bail!("delete answered {status}: {}", body["error"]["code"]);
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Statistics and the printed report

/// Sorted latency samples.
#[derive(Debug)]
struct Samples(Vec<Duration>);

impl Samples {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        Self(samples)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// Nearest-rank percentile; `fraction` 1.0 is the maximum.
    fn percentile(&self, fraction: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = (fraction * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }
}

#[derive(Debug, Default)]
struct Report {
    text: String,
}

impl Report {
    fn heading(&mut self, title: &str) {
        self.text.push_str(&format!("\n### {title}\n\n"));
    }

    fn line(&mut self, line: String) {
        // A table ends at a blank line.
        if self.text.ends_with("|\n") {
            self.text.push('\n');
        }
        self.text.push_str(&line);
        self.text.push_str("\n\n");
    }

    fn table_header(&mut self, columns: &[&str]) {
        self.text
            .push_str(&format!("| {} |\n", columns.join(" | ")));
        let rule: Vec<&str> = columns.iter().map(|_| "---").collect();
        self.text.push_str(&format!("|{}|\n", rule.join("|")));
    }

    fn row(&mut self, cells: &[String]) {
        self.text.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

fn ratio(value: Duration, base: Duration) -> String {
    if base.is_zero() {
        return "n/a".to_owned();
    }
    format!("{:.2}x", value.as_secs_f64() / base.as_secs_f64())
}

fn megabytes_per_second(bytes: u64, elapsed: Duration) -> String {
    if elapsed.is_zero() {
        return "n/a".to_owned();
    }
    format!("{:.0}", bytes as f64 / 1_000_000.0 / elapsed.as_secs_f64())
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Cores, CPU model and memory of this machine, from /proc.
fn machine_description() -> String {
    let cores = std::thread::available_parallelism()
        .map(|count| count.get())
        .unwrap_or(1);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find_map(|line| line.strip_prefix("MemTotal:"))
                .and_then(|value| {
                    value
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map(|kib| format!("{:.1} GiB", kib as f64 / 1_048_576.0))
        .unwrap_or_else(|| "unknown memory".to_owned());
    format!("{cores} cores ({cpu}), {memory} RAM, Linux")
}
