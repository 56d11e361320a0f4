//! Running one command in a sandbox with a deadline. Both streams are captured within a fixed
//! bound while they arrive. Past the deadline the whole process tree gets TERM, then KILL. After
//! the command exits, streams that background children hold open get a short wait.
//!
//! Decision: a command past its deadline is stopped by signalling its process tree from inside
//! the sandbox (a second, fixed `bash` script that walks children with `pgrep -P`), because
//! `processKill` reaches only the shell and leaves its children running.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use crate::deno::{DenoError, ExitStatus, OutputCapture, Sandbox, SpawnOptions, StreamReceiver};

/// Memory bounds of one command's capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureLimits {
    /// Bytes kept from the start of each stream.
    pub head_bytes: usize,
    /// Bytes kept from the end of each stream.
    pub tail_bytes: usize,
}

impl Default for CaptureLimits {
    /// 32 KiB head and 32 KiB tail per stream and for the combined output: at most 192 KiB kept
    /// per command whatever it prints.
    fn default() -> Self {
        Self {
            head_bytes: 32 * 1024,
            tail_bytes: 32 * 1024,
        }
    }
}

/// Time between TERM and KILL for a command past its deadline.
pub const KILL_GRACE: Duration = Duration::from_millis(1500);
/// Silence on both output streams after the command exited, past which a background child is
/// assumed to hold the pipes and the streams are cancelled. Each chunk that still arrives
/// restarts it, so output in transit is kept until the hard stop at the deadline plus
/// [`SHUTDOWN_ALLOWANCE`].
pub const STREAM_GRACE: Duration = Duration::from_millis(1000);
/// Maximum time a call takes past its deadline: the TERM signal (its helper process is waited
/// for at most [`KILL_GRACE`]), the grace before KILL, the KILL signal, and [`STREAM_GRACE`].
pub const SHUTDOWN_ALLOWANCE: Duration = Duration::from_millis(3 * 1500 + 1000);

/// Signals a process and every descendant, deepest first. Run as `bash -c SCRIPT _ PID SIGNAL`;
/// both arguments are formatted by this module, never taken from the request.
const KILL_TREE_SCRIPT: &str = r#"kill_tree() {
  local child
  for child in $(pgrep -P "$1"); do kill_tree "$child" "$2"; done
  kill -s "$2" "$1" 2>/dev/null
}
kill_tree "$1" "$2""#;

/// Outcome of one command: its exit status, captured output and how it ended.
#[derive(Debug)]
pub struct CommandOutcome {
    /// Exit status; `None` only when the process could not be waited for after a KILL.
    pub status: Option<ExitStatus>,
    /// Captured stdout.
    pub stdout: OutputCapture,
    /// Captured stderr.
    pub stderr: OutputCapture,
    /// Both streams in arrival order, for display.
    pub combined: OutputCapture,
    /// Whether the deadline passed and the command was signalled.
    pub timed_out: bool,
    /// Whether the streams were still open after the command exited and [`STREAM_GRACE`].
    pub streams_held_open: bool,
    /// Whether the call stopped reading [`SHUTDOWN_ALLOWANCE`] past the deadline while output
    /// was still arriving or the exit status was not yet reported.
    pub abandoned: bool,
    /// Time from spawn to result.
    pub duration: Duration,
}

/// Runs `options` in `sandbox` until it exits or `deadline` passes.
///
/// # Errors
/// [`DenoError`] when the spawn fails or the connection is lost; output read before a lost
/// connection is not returned.
pub async fn run_command(
    sandbox: &Sandbox,
    options: SpawnOptions,
    deadline: Duration,
    limits: CaptureLimits,
) -> Result<CommandOutcome, DenoError> {
    let started = Instant::now();
    let process = sandbox.spawn(options).await?;
    let pid = process.pid;

    let mut stdout = StreamState::new(process.stdout);
    let mut stderr = StreamState::new(process.stderr);
    let mut stdout_capture = OutputCapture::new(limits.head_bytes, limits.tail_bytes);
    let mut stderr_capture = OutputCapture::new(limits.head_bytes, limits.tail_bytes);
    let mut combined = OutputCapture::new(limits.head_bytes, limits.tail_bytes);

    // The wait outlives the deadline by the kill grace plus a margin, since this loop enforces
    // the deadline itself and only needs the wait to end once the process is gone.
    let wait_limit = deadline + KILL_GRACE * 2 + Duration::from_secs(5);
    let wait = sandbox.process_wait(pid, wait_limit);
    tokio::pin!(wait);

    let deadline_at = started + deadline;
    let mut status: Option<ExitStatus> = None;
    let mut waiting = true;
    let mut timed_out = false;
    let mut kill_at: Option<Instant> = None;
    let mut give_up_at: Option<Instant> = None;
    let mut streams_held_open = false;
    // A signal in flight is polled alongside the streams, so output keeps draining into the
    // bounded captures while the helper process runs.
    let mut signalling: Option<SignalFuture<'_>> = None;
    // Output the sandbox already buffered keeps arriving after the process died, and the exit
    // status comes after it, so a slow link could hold the call long past the deadline.
    let hard_stop_at = deadline_at + SHUTDOWN_ALLOWANCE;
    let mut abandoned = false;

    loop {
        if !waiting && stdout.done && stderr.done {
            break;
        }
        tokio::select! {
            chunk = stdout.next(), if !stdout.done => {
                if let Some(bytes) = chunk? {
                    stdout_capture.push(&bytes);
                    combined.push(&bytes);
                    if !waiting {
                        give_up_at = Some(Instant::now() + STREAM_GRACE);
                    }
                }
            }
            chunk = stderr.next(), if !stderr.done => {
                if let Some(bytes) = chunk? {
                    stderr_capture.push(&bytes);
                    combined.push(&bytes);
                    if !waiting {
                        give_up_at = Some(Instant::now() + STREAM_GRACE);
                    }
                }
            }
            exited = &mut wait, if waiting => {
                waiting = false;
                match exited {
                    Ok(exit) => status = Some(exit),
                    // The process could not be waited for within the limit even after KILL.
                    Err(DenoError::Timeout { .. }) if timed_out => {}
                    Err(other) => return Err(other),
                }
                give_up_at = Some(Instant::now() + STREAM_GRACE);
            }
            () = sleep_until(deadline_at), if waiting && !timed_out => {
                timed_out = true;
                signalling = Some(Box::pin(signal_tree(sandbox, pid, "TERM")));
                kill_at = Some(Instant::now() + KILL_GRACE);
            }
            () = sleep_until(kill_at.unwrap_or(deadline_at)), if waiting && kill_at.is_some() => {
                kill_at = None;
                signalling = Some(Box::pin(signal_tree(sandbox, pid, "KILL")));
            }
            () = finish_signal(&mut signalling), if signalling.is_some() => {}
            () = sleep_until(hard_stop_at) => {
                // Output was still arriving. It is a backlog in transit or a background child
                // that keeps printing, and the client cannot distinguish the two.
                abandoned = true;
                stdout.cancel(sandbox);
                stderr.cancel(sandbox);
                break;
            }
            () = sleep_until(give_up_at.unwrap_or(deadline_at)), if !waiting && give_up_at.is_some() => {
                streams_held_open = true;
                stdout.cancel(sandbox);
                stderr.cancel(sandbox);
                break;
            }
        }
    }

    Ok(CommandOutcome {
        status,
        stdout: stdout_capture,
        stderr: stderr_capture,
        combined,
        timed_out,
        streams_held_open,
        abandoned,
        duration: started.elapsed(),
    })
}

type SignalFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs the signal in flight to its end, or never resolves when there is none.
async fn finish_signal(signalling: &mut Option<SignalFuture<'_>>) {
    match signalling.as_mut() {
        Some(signal) => {
            signal.await;
            *signalling = None;
        }
        None => std::future::pending().await,
    }
}

/// Sends `signal` to `pid` and its descendants from inside the sandbox, and to `pid` through
/// `processKill` in case `pgrep` is missing there. A failure is logged, not returned: the
/// process wait reports whether the process ended, and a lost connection fails the wait too.
async fn signal_tree(sandbox: &Sandbox, pid: u64, signal: &'static str) {
    let killer = SpawnOptions {
        command: "bash".to_owned(),
        args: vec![
            "-c".to_owned(),
            KILL_TREE_SCRIPT.to_owned(),
            "kill_tree".to_owned(),
            pid.to_string(),
            signal.to_owned(),
        ],
        ..SpawnOptions::default()
    };
    match sandbox.spawn(killer).await {
        Ok(process) => {
            let _ = sandbox.process_wait(process.pid, KILL_GRACE).await;
        }
        Err(error) => tracing::debug!(error = %error, "process tree signal could not be sent"),
    }
    if let Err(error) = sandbox.process_kill(pid, &format!("SIG{signal}")).await {
        tracing::debug!(error = %error, signal, "processKill failed");
    }
}

/// One output stream and whether it ended.
struct StreamState {
    receiver: Option<StreamReceiver>,
    done: bool,
}

impl StreamState {
    fn new(receiver: Option<StreamReceiver>) -> Self {
        let done = receiver.is_none();
        Self { receiver, done }
    }

    async fn next(&mut self) -> Result<Option<Vec<u8>>, DenoError> {
        let Some(receiver) = self.receiver.as_mut() else {
            self.done = true;
            return Ok(None);
        };
        let chunk = receiver.next_chunk().await?;
        if chunk.is_none() {
            self.done = true;
        }
        Ok(chunk)
    }

    fn cancel(&mut self, sandbox: &Sandbox) {
        if let Some(receiver) = &self.receiver
            && !self.done
        {
            let _ = sandbox.cancel_stream(receiver.id());
        }
        self.done = true;
    }
}
