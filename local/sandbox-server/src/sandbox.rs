//! Sandboxes and their registry: creation, the agent link, processes, expiry and termination.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::config::{Config, MAX_EXTENSION, NetworkMode};
use crate::isolation::{self, Cgroup, CgroupVersion, SandboxDirs};
use crate::signals;

/// Lowercase Crockford base32, the alphabet of sandbox ids.
const ID_ALPHABET: &[u8] = b"0123456789abcdefghjkmnpqrstvwxyz";
/// Stopped sandboxes the console list keeps showing; older ones are forgotten.
const MAX_STOPPED_LISTED: usize = 1000;
/// Time bubblewrap gets to exit after its init was killed, before it is killed too.
const BWRAP_EXIT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a new sandbox gets to reply to its first agent ping.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Settings decoded from the `x-deno-sandbox-config` header.
#[derive(Debug, Default, Clone)]
pub struct CreateOptions {
    pub stop_at_ms: Option<i64>,
    pub memory_mb: u64,
    pub labels: BTreeMap<String, String>,
    pub allow_net: Option<Vec<String>>,
    pub env: BTreeMap<String, String>,
}

/// Failure to create a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("failed to prepare sandbox {id}: {source}")]
    Prepare {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox {id} did not become ready: {reason}")]
    NotReady { id: String, reason: String },
}

/// The sandbox ended before or while a call was running.
#[derive(Debug, thiserror::Error)]
#[error("the sandbox has stopped")]
pub struct SandboxGone;

/// An agent reply: a result envelope or a parameter error message.
#[derive(Debug)]
pub enum AgentReply {
    Result(Value),
    Invalid(String),
}

/// One chunk of process output on its way to a client stream.
#[derive(Debug)]
pub enum Chunk {
    /// Base64 text exactly as it goes into `$sandbox.stream.enqueue`.
    Data(String),
    End,
}

/// Destinations of a new process's piped stdout and stderr.
#[derive(Debug, Default)]
pub struct OutputSinks {
    pub stdout: Option<mpsc::UnboundedSender<Chunk>>,
    pub stderr: Option<mpsc::UnboundedSender<Chunk>>,
}

/// Exit status in the shape of the `processWait` result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: i32,
    pub signal: Option<&'static str>,
    pub oom: bool,
}

struct Pending {
    reply: oneshot::Sender<AgentReply>,
    sinks: Option<OutputSinks>,
}

struct Process {
    sinks: OutputSinks,
    status: watch::Sender<Option<ExitInfo>>,
}

/// Summary row of the console list.
#[derive(Debug, Clone)]
pub struct Summary {
    pub id: String,
    pub owner: usize,
    pub created_at: OffsetDateTime,
    pub stopped_at: Option<OffsetDateTime>,
    pub labels: BTreeMap<String, String>,
}

impl Summary {
    /// Renders the row as the console API returns it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "createdAt": iso(self.created_at),
            "stoppedAt": self.stopped_at.map(iso),
            "region": "ord",
            "status": if self.stopped_at.is_some() { "stopped" } else { "running" },
            "labels": self.labels,
        })
    }
}

fn iso(moment: OffsetDateTime) -> String {
    let nanos = moment.unix_timestamp_nanos();
    let seconds = i64::try_from(nanos.div_euclid(1_000_000_000)).unwrap_or(0);
    let rest = i64::try_from(nanos.rem_euclid(1_000_000_000)).unwrap_or(0);
    crate::fsops::iso(seconds, rest)
}

/// Returns the current time in Unix milliseconds.
pub fn now_ms() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// One running sandbox. Shared by every connection to it; it ends through [`Sandbox::terminate`].
pub struct Sandbox {
    pub id: String,
    /// Index of the token that created the sandbox; only that token may see or use it.
    pub owner: usize,
    /// Whether the sandbox ends with its creating connection.
    pub session: bool,
    pub labels: BTreeMap<String, String>,
    pub created_at: OffsetDateTime,
    /// Environment that later spawns inherit, changed by `envSet` and `envDelete`.
    pub env: Mutex<BTreeMap<String, String>>,
    stop_at_ms: Mutex<Option<i64>>,
    stop_changed: Notify,
    to_agent: mpsc::UnboundedSender<String>,
    next_request: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    processes: Mutex<HashMap<u64, Process>>,
    /// OOM kills already attributed to a process, so each kill is reported once.
    oom_seen: Mutex<u64>,
    stopped: watch::Sender<bool>,
    bwrap: Mutex<Option<tokio::process::Child>>,
    cgroup: Cgroup,
    dir: PathBuf,
    registry: std::sync::Weak<Registry>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Sandbox")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// All sandboxes of the server, plus summaries of stopped ones for the console list.
#[derive(Debug)]
pub struct Registry {
    pub config: Arc<Config>,
    cgroup_version: CgroupVersion,
    agent_binary: PathBuf,
    running: Mutex<HashMap<String, Arc<Sandbox>>>,
    stopped: Mutex<Vec<Summary>>,
}

impl Registry {
    pub fn new(
        config: Arc<Config>,
        cgroup_version: CgroupVersion,
        agent_binary: PathBuf,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            cgroup_version,
            agent_binary,
            running: Mutex::new(HashMap::new()),
            stopped: Mutex::new(Vec::new()),
        })
    }

    /// Returns the running sandbox `id` if `owner` created it. A sandbox that is stopping counts as
    /// gone, because its connections may close before it leaves the registry.
    pub fn get(&self, id: &str, owner: usize) -> Option<Arc<Sandbox>> {
        let running = self.running.lock().ok()?;
        running
            .get(id)
            .filter(|sandbox| sandbox.owner == owner && !*sandbox.stopped.borrow())
            .cloned()
    }

    /// Lists running and stopped sandboxes of `owner` that carry every label in `filter`.
    pub fn list(&self, owner: usize, filter: &BTreeMap<String, String>) -> Vec<Summary> {
        let mut rows: Vec<Summary> = Vec::new();
        if let Ok(running) = self.running.lock() {
            rows.extend(running.values().map(|sandbox| sandbox.summary(None)));
        }
        if let Ok(stopped) = self.stopped.lock() {
            rows.extend(stopped.iter().cloned());
        }
        rows.retain(|row| {
            row.owner == owner
                && filter
                    .iter()
                    .all(|(key, value)| row.labels.get(key) == Some(value))
        });
        rows.sort_by_key(|row| std::cmp::Reverse(row.created_at));
        rows
    }

    /// Returns every running sandbox, for shutdown.
    pub fn list_all_running(&self) -> Vec<Arc<Sandbox>> {
        self.running
            .lock()
            .map(|running| running.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Returns the number of running sandboxes.
    pub fn running_count(&self) -> usize {
        self.running
            .lock()
            .map(|running| running.len())
            .unwrap_or(0)
    }

    /// Creates a sandbox and waits until its agent replies.
    ///
    /// # Errors
    /// Fails when directories, cgroups or bubblewrap cannot be set up, or the agent never replies.
    pub async fn create(
        self: &Arc<Self>,
        options: CreateOptions,
        owner: usize,
    ) -> Result<Arc<Sandbox>, CreateError> {
        let id = new_id();
        let prepare = |source| CreateError::Prepare {
            id: id.clone(),
            source,
        };
        let config = &self.config;

        let dirs = SandboxDirs::create(&config.state_dir, &id, config.host_uid).map_err(prepare)?;
        let memory_bytes = options.memory_mb.max(16) * 1024 * 1024;
        let cgroup = match Cgroup::create(self.cgroup_version, &id, memory_bytes, config.pids_max) {
            Ok(cgroup) => cgroup,
            Err(source) => {
                let _ = std::fs::remove_dir_all(&dirs.root);
                return Err(prepare(source));
            }
        };
        // NOTE: a non-empty allow_net list is enforced as "no network" because a network
        // namespace cannot filter by host name; only an absent list with DENO_LOCAL_NETWORK=host
        // gives network access.
        let isolate_network = options.allow_net.is_some() || config.network == NetworkMode::None;
        let mut command =
            isolation::sandbox_command(config, &dirs, &cgroup, &self.agent_binary, isolate_network);
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(source) => {
                cgroup.remove().await;
                let _ = std::fs::remove_dir_all(&dirs.root);
                return Err(prepare(source));
            }
        };
        let (Some(mut agent_stdin), Some(agent_stdout)) = (child.stdin.take(), child.stdout.take())
        else {
            return Err(CreateError::NotReady {
                id,
                reason: "agent pipes missing".to_string(),
            });
        };

        let mut env = BTreeMap::from([
            ("PATH".to_string(), isolation::SANDBOX_PATH.to_string()),
            ("HOME".to_string(), config.workspace_path.clone()),
            ("USER".to_string(), "app".to_string()),
            ("LANG".to_string(), "C.UTF-8".to_string()),
            (
                "DENO_DEPLOY_ORGANIZATION_ID".to_string(),
                "local".to_string(),
            ),
        ]);
        env.extend(options.env.clone());
        let stop_at_ms = options
            .stop_at_ms
            .map(|stop| stop.min(now_ms().saturating_add(duration_ms(config.max_lifetime))));

        let (to_agent, mut agent_rx) = mpsc::unbounded_channel::<String>();
        let sandbox = Arc::new(Sandbox {
            id: id.clone(),
            owner,
            session: stop_at_ms.is_none(),
            labels: options.labels,
            created_at: OffsetDateTime::now_utc(),
            env: Mutex::new(env),
            stop_at_ms: Mutex::new(stop_at_ms),
            stop_changed: Notify::new(),
            to_agent,
            next_request: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            processes: Mutex::new(HashMap::new()),
            oom_seen: Mutex::new(0),
            stopped: watch::channel(false).0,
            bwrap: Mutex::new(Some(child)),
            cgroup,
            dir: dirs.root,
            registry: Arc::downgrade(self),
        });

        // Writer: request lines to the agent's stdin.
        tokio::spawn(async move {
            while let Some(line) = agent_rx.recv().await {
                let mut bytes = line.into_bytes();
                bytes.push(b'\n');
                if agent_stdin.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
        // Reader: replies and process events from the agent's stdout.
        let reader = Arc::clone(&sandbox);
        tokio::spawn(async move {
            let mut lines = BufReader::new(agent_stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                reader.on_agent_line(&line);
            }
            reader.terminate("agent exited").await;
        });

        let ready =
            tokio::time::timeout(READY_TIMEOUT, sandbox.call(json!({ "op": "ping" }), None)).await;
        match ready {
            Ok(Ok(_)) => {}
            Ok(Err(SandboxGone)) => {
                sandbox.terminate("failed to start").await;
                return Err(CreateError::NotReady {
                    id,
                    reason: "bubblewrap or the agent exited".to_string(),
                });
            }
            Err(_) => {
                sandbox.terminate("failed to start").await;
                return Err(CreateError::NotReady {
                    id,
                    reason: "timed out".to_string(),
                });
            }
        }

        if let Ok(mut running) = self.running.lock() {
            running.insert(id.clone(), Arc::clone(&sandbox));
        }
        tokio::spawn(Arc::clone(&sandbox).expire());
        tracing::info!(sandbox_id = %id, session = sandbox.session, "sandbox created");
        Ok(sandbox)
    }
}

/// Resolves once the receiver from [`Sandbox::stopped`] reports `true` (or its sender is gone).
pub async fn wait_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stopped| *stopped).await;
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Mints an id of the form `sbx_ord_` plus 20 lowercase Crockford base32 characters.
pub fn new_id() -> String {
    let mut rng = rand::thread_rng();
    let suffix: String = (0..20)
        .map(|_| char::from(ID_ALPHABET[rng.gen_range(0..ID_ALPHABET.len())]))
        .collect();
    format!("sbx_ord_{suffix}")
}

impl Sandbox {
    fn summary(&self, stopped_at: Option<OffsetDateTime>) -> Summary {
        Summary {
            id: self.id.clone(),
            owner: self.owner,
            created_at: self.created_at,
            stopped_at,
            labels: self.labels.clone(),
        }
    }

    /// Returns a receiver that turns `true` once the sandbox has stopped.
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.subscribe()
    }

    /// Sends one request to the agent and waits for its reply.
    ///
    /// # Errors
    /// [`SandboxGone`] when the sandbox stops first.
    pub async fn call(
        &self,
        mut request: Value,
        sinks: Option<OutputSinks>,
    ) -> Result<AgentReply, SandboxGone> {
        if *self.stopped.borrow() {
            return Err(SandboxGone);
        }
        let id = self.next_request.fetch_add(1, Ordering::Relaxed);
        request["id"] = json!(id);
        let (reply, receiver) = oneshot::channel();
        self.pending
            .lock()
            .map_err(|_| SandboxGone)?
            .insert(id, Pending { reply, sinks });
        if self.to_agent.send(request.to_string()).is_err() {
            return Err(SandboxGone);
        }
        receiver.await.map_err(|_| SandboxGone)
    }

    /// Sends a request that has no reply (stdin data).
    pub fn notify_agent(&self, request: &Value) {
        let _ = self.to_agent.send(request.to_string());
    }

    fn on_agent_line(&self, line: &str) {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            tracing::warn!(sandbox_id = %self.id, "agent sent a line that is not JSON");
            return;
        };
        if let Some(id) = message["id"].as_u64() {
            let Some(pending) = self
                .pending
                .lock()
                .ok()
                .and_then(|mut pending| pending.remove(&id))
            else {
                return;
            };
            let reply = if let Some(invalid) = message["invalid"].as_str() {
                AgentReply::Invalid(invalid.to_string())
            } else {
                AgentReply::Result(message["result"].clone())
            };
            // Register a spawned process before any of its events is read, so no output is lost.
            if let (AgentReply::Result(result), Some(sinks)) = (&reply, pending.sinks)
                && let Some(pid) = result["ok"]["pid"].as_u64()
                && let Ok(mut processes) = self.processes.lock()
            {
                processes.insert(
                    pid,
                    Process {
                        sinks,
                        status: watch::channel(None).0,
                    },
                );
            }
            let _ = pending.reply.send(reply);
            return;
        }

        let pid = message["pid"].as_u64().unwrap_or(0);
        let Ok(mut processes) = self.processes.lock() else {
            return;
        };
        let Some(process) = processes.get_mut(&pid) else {
            return;
        };
        let sink = |process: &mut Process, fd: u64| match fd {
            1 => process.sinks.stdout.take(),
            _ => process.sinks.stderr.take(),
        };
        match message["event"].as_str() {
            Some("data") => {
                let fd = message["fd"].as_u64().unwrap_or(1);
                let target = if fd == 1 {
                    &process.sinks.stdout
                } else {
                    &process.sinks.stderr
                };
                if let (Some(target), Some(data)) = (target, message["data"].as_str()) {
                    let _ = target.send(Chunk::Data(data.to_string()));
                }
            }
            Some("eof") => {
                if let Some(target) = sink(process, message["fd"].as_u64().unwrap_or(1)) {
                    let _ = target.send(Chunk::End);
                }
            }
            Some("exit") => {
                let signal = message["signal"]
                    .as_i64()
                    .and_then(|number| i32::try_from(number).ok());
                let code = match (message["code"].as_i64(), signal) {
                    (Some(code), _) => i32::try_from(code).unwrap_or(1),
                    (None, Some(signal)) => 128 + signal,
                    (None, None) => 1,
                };
                let oom = signal == Some(9) && self.take_oom_kill();
                let info = ExitInfo {
                    code,
                    signal: signal.and_then(signals::name),
                    oom,
                };
                process.status.send_replace(Some(info));
            }
            _ => {}
        }
    }

    /// Returns whether the cgroup recorded an OOM kill that no process has been charged with yet.
    fn take_oom_kill(&self) -> bool {
        let kills = self.cgroup.oom_kills();
        let Ok(mut seen) = self.oom_seen.lock() else {
            return false;
        };
        if kills > *seen {
            *seen = kills;
            true
        } else {
            false
        }
    }

    /// Waits for process `pid` to exit; `None` when the pid is unknown.
    ///
    /// # Errors
    /// [`SandboxGone`] when the sandbox stops first.
    pub async fn wait(&self, pid: u64) -> Result<Option<ExitInfo>, SandboxGone> {
        let receiver = self.processes.lock().ok().and_then(|processes| {
            processes
                .get(&pid)
                .map(|process| process.status.subscribe())
        });
        let Some(mut receiver) = receiver else {
            return Ok(None);
        };
        let mut stopped = self.stopped();
        tokio::select! {
            status = receiver.wait_for(Option::is_some) => match status {
                Ok(status) => Ok(status.clone()),
                Err(_) => Err(SandboxGone),
            },
            () = wait_stopped(&mut stopped) => Err(SandboxGone),
        }
    }

    /// Returns whether process `pid` is known and has not exited.
    pub fn is_running(&self, pid: u64) -> bool {
        self.processes
            .lock()
            .ok()
            .and_then(|processes| {
                processes
                    .get(&pid)
                    .map(|process| process.status.borrow().is_none())
            })
            .unwrap_or(false)
    }

    /// Sends signal `number` to process `pid` from the host, so it works even when the sandbox has
    /// exhausted its pids limit. Returns the serialized error when the process is gone.
    pub async fn signal(&self, pid: u64, number: i32) -> Result<(), Value> {
        let Some(host_pid) = self.cgroup.host_pid(pid) else {
            return Err(crate::errors::process_not_found(pid));
        };
        // The server has no signal syscall without unsafe code, so it runs procps `kill`.
        let status = tokio::process::Command::new("/usr/bin/kill")
            .arg(format!("-{number}"))
            .arg(host_pid.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        match status {
            Ok(status) if status.success() => Ok(()),
            Ok(_) => Err(crate::errors::process_not_found(pid)),
            Err(error) => Err(crate::errors::from_io(&error, "kill", &pid.to_string())),
        }
    }

    /// Current stop time, `None` for a session sandbox that was never extended.
    pub fn stop_at_ms(&self) -> Option<i64> {
        self.stop_at_ms.lock().ok().and_then(|stop| *stop)
    }

    /// Moves the stop time to `requested`, but at most [`MAX_EXTENSION`] past now, and never
    /// earlier than the current stop time. Returns the granted stop time.
    pub fn extend(&self, requested: i64) -> i64 {
        let now = now_ms();
        let ceiling = now.saturating_add(duration_ms(MAX_EXTENSION));
        let Ok(mut stop) = self.stop_at_ms.lock() else {
            return now;
        };
        let granted = requested.min(ceiling).max(stop.unwrap_or(now)).max(now);
        *stop = Some(granted);
        drop(stop);
        self.stop_changed.notify_waiters();
        granted
    }

    async fn expire(self: Arc<Self>) {
        let mut stopped = self.stopped();
        loop {
            let stop_at = self.stop_at_ms();
            let changed = self.stop_changed.notified();
            let wait = match stop_at {
                Some(stop) => Duration::from_millis(u64::try_from(stop - now_ms()).unwrap_or(0)),
                None => Duration::from_secs(3600 * 24 * 365),
            };
            if stop_at.is_some_and(|stop| stop <= now_ms()) {
                self.terminate("stop time reached").await;
                return;
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = changed => {}
                () = wait_stopped(&mut stopped) => return,
            }
        }
    }

    /// Stops the sandbox: kills every process, closes connections, removes its files and cgroups.
    /// Later calls do nothing.
    pub async fn terminate(&self, reason: &str) {
        if self.stopped.send_replace(true) {
            return;
        }
        tracing::info!(sandbox_id = %self.id, reason, "sandbox stopping");
        if let Some(registry) = self.registry.upgrade() {
            if let Ok(mut running) = registry.running.lock() {
                running.remove(&self.id);
            }
            if let Ok(mut stopped) = registry.stopped.lock() {
                if stopped.len() >= MAX_STOPPED_LISTED {
                    stopped.remove(0);
                }
                stopped.push(self.summary(Some(OffsetDateTime::now_utc())));
            }
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
        if let Ok(mut processes) = self.processes.lock() {
            for process in processes.values_mut() {
                process.sinks = OutputSinks::default();
            }
        }

        // Killing the sandbox's PID 1 (bubblewrap's init) makes the kernel kill every process of
        // the PID namespace, and the dying init reaps them all. The outer bubblewrap then reaps
        // the init and exits. Killing only the outer one would leave the init and its processes
        // to the host's PID 1, and their cgroups could not be removed until it reaped them.
        let killed_init = self.signal(1, 9).await.is_ok();
        let child = self.bwrap.lock().ok().and_then(|mut child| child.take());
        if let Some(mut child) = child {
            let exited = killed_init
                && tokio::time::timeout(BWRAP_EXIT_TIMEOUT, child.wait())
                    .await
                    .is_ok();
            if !exited {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
        self.cgroup.remove().await;
        if let Err(error) = tokio::fs::remove_dir_all(&self.dir).await {
            tracing::warn!(sandbox_id = %self.id, error = %error, "failed to remove sandbox files");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_deno_shape() {
        let id = new_id();
        assert_eq!(id.len(), 28);
        assert!(id.starts_with("sbx_ord_"));
        assert!(id[8..].bytes().all(|byte| ID_ALPHABET.contains(&byte)));
    }
}
