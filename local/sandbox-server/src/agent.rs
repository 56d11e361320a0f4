//! The in-sandbox agent: the long-lived process that bubblewrap starts inside each sandbox.
//!
//! It reads one JSON request per line on stdin from the server and writes replies and process
//! events as JSON lines on stdout. Every process it spawns inherits the sandbox's namespaces,
//! cgroup, dropped capabilities and `no_new_privs`, so nothing needs to enter namespaces later.
//!
//! Requests (`id` is the server's correlation number):
//! `{"id","op":"fs","method","params"}`, `{"id","op":"spawn",...}`, `{"id","op":"ping"}`, and without reply `{"op":"stdin","pid","data"}` / `{"op":"stdinEnd","pid"}`.
//! Replies: `{"id","result":{...}}` or `{"id","invalid":"<message>"}`. Events:
//! `{"event":"data","pid","fd","data"}`, `{"event":"eof","pid","fd"}`, `{"event":"exit","pid","code","signal"}`.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::{errors, fsops};

/// `oom_score_adj` of spawned processes: half the sandbox's memory limit added to their score.
const CHILD_OOM_SCORE_ADJ: &str = "500";
/// Largest chunk of process output carried by one event, matching the 64 KiB stream chunks.
const CHUNK: usize = 64 * 1024;

#[derive(Deserialize)]
struct SpawnRequest {
    command: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: HashMap<String, String>,
    cwd: Option<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
}

struct Agent {
    out: mpsc::UnboundedSender<String>,
    handles: fsops::Handles,
    /// Stdin writers of live processes that were spawned with a stdin stream.
    stdin: Mutex<HashMap<u32, mpsc::UnboundedSender<Option<Vec<u8>>>>>,
}

/// Runs the agent until stdin closes; returns the process exit code.
pub fn run() -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(4)
        .thread_keep_alive(std::time::Duration::from_secs(24 * 3600))
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("deno-sandbox-agent: failed to start runtime: {error}");
            return 1;
        }
    };
    runtime.block_on(serve());
    0
}

async fn serve() {
    // Start the file-system threads now and keep them: under the sandbox's pids limit a fork bomb
    // could otherwise stop the agent from creating a thread when the first file call arrives.
    let warm: Vec<_> = (0..2)
        .map(|_| {
            tokio::task::spawn_blocking(|| std::thread::sleep(std::time::Duration::from_millis(5)))
        })
        .collect();
    for thread in warm {
        let _ = thread.await;
    }

    let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = out_rx.recv().await {
            let mut batch = line;
            batch.push('\n');
            while let Ok(more) = out_rx.try_recv() {
                batch.push_str(&more);
                batch.push('\n');
            }
            if stdout.write_all(batch.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });

    let agent = Arc::new(Agent {
        out,
        handles: fsops::Handles::default(),
        stdin: Mutex::new(HashMap::new()),
    });
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(request) = serde_json::from_str::<Value>(&line) else {
            eprintln!("deno-sandbox-agent: ignoring a request that is not JSON");
            continue;
        };
        handle(&agent, request);
    }
    drop(agent);
    let _ = writer.await;
}

fn handle(agent: &Arc<Agent>, mut request: Value) {
    let id = request["id"].clone();
    let op = request["op"].as_str().unwrap_or_default().to_string();
    match op.as_str() {
        "ping" => agent.reply(id, json!({ "ok": Value::Null })),
        "fs" => {
            let method = request["method"].as_str().unwrap_or_default().to_string();
            let params = request["params"].take();
            let agent = Arc::clone(agent);
            tokio::task::spawn_blocking(move || {
                match fsops::call(&agent.handles, &method, params) {
                    fsops::Outcome::Result(result) => agent.reply(id, result),
                    fsops::Outcome::InvalidParams(message) => {
                        agent.send(json!({ "id": id, "invalid": message }))
                    }
                }
            });
        }
        "spawn" => match serde_json::from_value::<SpawnRequest>(request) {
            Ok(spawn) => {
                let result = spawn_process(agent, spawn);
                agent.reply(id, result);
            }
            Err(error) => agent.send(json!({ "id": id, "invalid": error.to_string() })),
        },
        "stdin" | "stdinEnd" => {
            let pid = request["pid"]
                .as_u64()
                .and_then(|pid| u32::try_from(pid).ok());
            let data = if op == "stdin" {
                request["data"]
                    .as_str()
                    .and_then(|data| BASE64.decode(data).ok())
            } else {
                None
            };
            if let Some(pid) = pid
                && let Ok(mut writers) = agent.stdin.lock()
            {
                if let Some(writer) = writers.get(&pid) {
                    let _ = writer.send(data.clone());
                }
                if data.is_none() {
                    writers.remove(&pid);
                }
            }
        }
        _ => agent.send(json!({ "id": id, "invalid": format!("unknown op {op}") })),
    }
}

impl Agent {
    fn send(&self, message: Value) {
        let _ = self.out.send(message.to_string());
    }

    fn reply(&self, id: Value, result: Value) {
        self.send(json!({ "id": id, "result": result }));
    }
}

/// First argument that starts this binary in exec-child mode.
pub const EXEC_CHILD: &str = "exec-child";

/// Raises the OOM score of the current process and replaces it with `program`, passing `arg0` and
/// `args`. Returns the exit code only when the program cannot be executed.
///
/// Spawned processes get a higher OOM score so the OOM killer picks them before the agent and
/// bubblewrap, whose death would end the sandbox. (Lowering the agent's own score would need
/// CAP_SYS_RESOURCE.)
pub fn exec_child(program: &str, arg0: &str, args: &[String]) -> i32 {
    use std::os::unix::process::CommandExt;
    let _ = std::fs::write("/proc/self/oom_score_adj", CHILD_OOM_SCORE_ADJ);
    let error = std::process::Command::new(program)
        .arg0(arg0)
        .args(args)
        .exec();
    eprintln!("{arg0}: {error}");
    // Shells use 126 for a program that exists but cannot be executed.
    126
}

/// Finds `command` the way execvp would: a name with a slash is used as given (relative to `cwd`),
/// other names are searched in `path`. Returns `None` when no such file exists.
fn resolve_program(command: &str, path: Option<&String>, cwd: Option<&str>) -> Option<String> {
    if command.contains('/') {
        let candidate = match cwd {
            Some(cwd) if !command.starts_with('/') => {
                format!("{}/{command}", cwd.trim_end_matches('/'))
            }
            _ => command.to_string(),
        };
        return std::path::Path::new(&candidate)
            .is_file()
            .then_some(candidate);
    }
    path?
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| format!("{}/{command}", dir.trim_end_matches('/')))
        .find(|candidate| std::path::Path::new(candidate).is_file())
}

fn spawn_process(agent: &Arc<Agent>, spawn: SpawnRequest) -> Value {
    let Some(program) =
        resolve_program(&spawn.command, spawn.env.get("PATH"), spawn.cwd.as_deref())
    else {
        const ENOENT: i32 = 2;
        let error = std::io::Error::from_raw_os_error(ENOENT);
        return json!({ "error": errors::from_io(&error, "spawn", &spawn.command) });
    };
    let launcher = match std::env::current_exe() {
        Ok(launcher) => launcher,
        Err(error) => return json!({ "error": errors::from_io(&error, "spawn", &spawn.command) }),
    };

    // The process starts as this binary in exec-child mode, which raises its own OOM score and
    // then executes the program, so even its first fork inherits the raised score.
    let mut command = tokio::process::Command::new(launcher);
    command
        .arg(EXEC_CHILD)
        .arg(&program)
        .arg(&spawn.command)
        .args(&spawn.args)
        .env_clear()
        .envs(&spawn.env)
        .stdin(if spawn.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if spawn.stdout {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if spawn.stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    if let Some(cwd) = &spawn.cwd {
        command.current_dir(cwd);
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            return json!({ "error": errors::from_io(&error, "spawn", &spawn.command) });
        }
    };
    let Some(pid) = child.id() else {
        return json!({ "error": errors::serialized("Error", None, "process exited during spawn") });
    };

    // The reply is queued before any event of this pid, because the caller sends it right after
    // this function returns and the reader tasks below only run once the caller yields.
    if let Some(mut stdin) = child.stdin.take() {
        let (tx, mut rx) = mpsc::unbounded_channel::<Option<Vec<u8>>>();
        if let Ok(mut writers) = agent.stdin.lock() {
            writers.insert(pid, tx);
        }
        tokio::spawn(async move {
            while let Some(Some(chunk)) = rx.recv().await {
                if stdin.write_all(&chunk).await.is_err() {
                    break;
                }
            }
        });
    }
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(pump(Arc::clone(agent), pid, 1, stdout));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(pump(Arc::clone(agent), pid, 2, stderr));
    }
    let waiter = Arc::clone(agent);
    tokio::spawn(async move {
        let status = child.wait().await;
        if let Ok(mut writers) = waiter.stdin.lock() {
            writers.remove(&pid);
        }
        let (code, signal) = match status {
            Ok(status) => (status.code(), status.signal()),
            Err(_) => (None, None),
        };
        waiter.send(json!({ "event": "exit", "pid": pid, "code": code, "signal": signal }));
    });
    json!({ "ok": { "pid": pid } })
}

async fn pump(agent: Arc<Agent>, pid: u32, fd: u8, mut source: impl tokio::io::AsyncRead + Unpin) {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        match source.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => agent.send(json!({
                "event": "data",
                "pid": pid,
                "fd": fd,
                "data": BASE64.encode(&buffer[..read]),
            })),
        }
    }
    agent.send(json!({ "event": "eof", "pid": pid, "fd": fd }));
}
