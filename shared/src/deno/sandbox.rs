//! Typed sandbox operations over one open connection: processes, files and file handles.
//!
//! Every method waits at most the client's call deadline except [`Sandbox::process_wait`], whose
//! caller names the deadline because commands run for as long as the caller allows.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::connection::{Connection, StreamReceiver};
use super::endpoint::SandboxId;
use super::error::DenoError;

/// Largest file content sent inline in one `writeFile` message, and the chunk size of content
/// streams: 64 KiB, as Deno's SDKs chunk their streams.
pub const STREAM_CHUNK_BYTES: usize = 64 * 1024;

/// Program, arguments, environment and stdin of a process to spawn. Stdin is closed unless
/// `stdin` contains bytes.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SpawnOptions {
    /// Program name (resolved through `PATH`) or path.
    pub command: String,
    /// Arguments after the program name.
    pub args: Vec<String>,
    /// Variables added to the inherited environment.
    pub env: BTreeMap<String, String>,
    /// Start from an empty environment instead of the sandbox's.
    pub clear_env: bool,
    /// Working directory; the sandbox's workspace when `None`.
    pub cwd: Option<String>,
    /// Bytes written to stdin, which is then closed; `None` connects stdin to `/dev/null`.
    pub stdin: Option<Vec<u8>>,
}

impl std::fmt::Debug for SpawnOptions {
    // Command text, arguments, environment values and stdin may hold secrets: only sizes show.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SpawnOptions")
            .field("args", &self.args.len())
            .field("env", &self.env.len())
            .field("clear_env", &self.clear_env)
            .field("cwd", &self.cwd.is_some())
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .finish_non_exhaustive()
    }
}

/// A process started by [`Sandbox::spawn`], with its output streams.
///
/// The receivers and [`Sandbox::process_wait`] may be awaited concurrently.
#[derive(Debug)]
pub struct Process {
    /// Process id inside the sandbox.
    pub pid: u64,
    /// Receiver of stdout.
    pub stdout: Option<StreamReceiver>,
    /// Receiver of stderr.
    pub stderr: Option<StreamReceiver>,
    /// Whether stdin was fully delivered; `false` when the sandbox cancelled the stdin stream.
    pub stdin_delivered: bool,
}

/// Exit status of a process, as `processWait` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExitStatus {
    /// Whether the exit code is 0.
    pub success: bool,
    /// Exit code; 128 + N for a death by signal N.
    pub code: i32,
    /// Name of the signal that ended the process, such as `SIGKILL`.
    #[serde(default)]
    pub signal: Option<String>,
    /// `high-confidence` or `low-confidence` when the process ran out of memory.
    #[serde(default)]
    pub oom: Option<String>,
}

/// Options of `writeFile`; the defaults create or overwrite the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WriteOptions {
    /// Append instead of overwrite.
    pub append: bool,
    /// Create the file when missing.
    pub create: bool,
    /// Fail when anything exists at the path; overrides `create`.
    pub create_new: bool,
    /// Permission bits of a created file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            append: false,
            create: true,
            create_new: false,
            mode: None,
        }
    }
}

/// Options of `open`; the defaults open for reading only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenOptions {
    /// Open for reading.
    pub read: bool,
    /// Open for writing.
    pub write: bool,
    /// Append writes.
    pub append: bool,
    /// Truncate on open.
    pub truncate: bool,
    /// Create when missing.
    pub create: bool,
    /// Fail when the file exists.
    pub create_new: bool,
    /// Permission bits of a created file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            read: true,
            write: false,
            append: false,
            truncate: false,
            create: false,
            create_new: false,
            mode: None,
        }
    }
}

/// Origin of a [`Sandbox::file_seek`] offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whence {
    /// From the start of the file.
    Start,
    /// From the current position.
    Current,
    /// From the end of the file.
    End,
}

impl Whence {
    fn code(self) -> u8 {
        match self {
            Self::Start => 0,
            Self::Current => 1,
            Self::End => 2,
        }
    }
}

/// Metadata of a file, as `stat` and `fileStat` report it. Times are ISO-8601 strings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileInfo {
    /// Whether this is a regular file.
    pub is_file: bool,
    /// Whether this is a directory.
    pub is_directory: bool,
    /// Whether this is a symbolic link (only from `lstat`).
    pub is_symlink: bool,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    #[serde(default)]
    pub mtime: Option<String>,
    /// Last access time.
    #[serde(default)]
    pub atime: Option<String>,
    /// Creation time.
    #[serde(default)]
    pub birthtime: Option<String>,
    /// Last status change time.
    #[serde(default)]
    pub ctime: Option<String>,
    /// Full `st_mode`, such as 33188 (0o100644).
    #[serde(default)]
    pub mode: Option<u32>,
    /// Owner user id.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Owner group id.
    #[serde(default)]
    pub gid: Option<u32>,
}

/// One open connection to a sandbox, for the duration of one tool call.
///
/// Methods take `&self`, so a process wait, stream reads and other calls can run concurrently.
/// Dropping the sandbox closes the connection; [`Sandbox::close`] also waits for the close frame.
#[derive(Debug)]
pub struct Sandbox {
    connection: Connection,
    id: SandboxId,
    call_timeout: Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpawnResult {
    pid: u64,
    stdout_stream_id: Option<u64>,
    stderr_stream_id: Option<u64>,
}

impl Sandbox {
    pub(crate) fn new(connection: Connection, id: SandboxId, call_timeout: Duration) -> Self {
        Self {
            connection,
            id,
            call_timeout,
        }
    }

    /// Returns the sandbox id.
    pub fn id(&self) -> &SandboxId {
        &self.id
    }

    /// Returns whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.connection.is_closed()
    }

    /// Sends a raw RPC call and returns the `ok` value; for methods without a typed wrapper.
    ///
    /// # Errors
    /// See [`DenoError`]: application, protocol, timeout and connection errors.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        deadline: Duration,
    ) -> Result<Value, DenoError> {
        self.connection.call(method, params, deadline).await
    }

    async fn call_typed<T: DeserializeOwned>(
        &self,
        method: &str,
        params: Value,
    ) -> Result<T, DenoError> {
        let value = self.call(method, params, self.call_timeout).await?;
        serde_json::from_value(value).map_err(|error| {
            DenoError::InvalidMessage(format!(
                "result of {method} has an unexpected shape: {error}"
            ))
        })
    }

    async fn call_unit(&self, method: &str, params: Value) -> Result<(), DenoError> {
        self.call(method, params, self.call_timeout).await.map(drop)
    }

    /// Starts a process with piped stdout and stderr.
    ///
    /// When `stdin` contains bytes they are sent on a client stream (start before the request,
    /// 64 KiB chunks, then end); otherwise no stdin stream is named and stdin is `/dev/null`.
    ///
    /// # Errors
    /// [`DenoError::Application`] when the program cannot start, such as `NotFound`.
    pub async fn spawn(&self, options: SpawnOptions) -> Result<Process, DenoError> {
        let stdin_stream = match &options.stdin {
            Some(_) => Some(self.connection.start_client_stream()?),
            None => None,
        };

        let mut params = json!({
            "command": options.command,
            "stdout": "piped",
            "stderr": "piped",
        });
        if !options.args.is_empty() {
            params["args"] = json!(options.args);
        }
        if !options.env.is_empty() {
            params["env"] = json!(options.env);
        }
        if options.clear_env {
            params["clearEnv"] = json!(true);
        }
        if let Some(cwd) = &options.cwd {
            params["cwd"] = json!(cwd);
        }
        if let Some(id) = stdin_stream {
            params["stdinStreamId"] = json!(id);
        }

        let calling = self.call_typed::<SpawnResult>("spawn", params);
        let mut stdin_delivered = true;
        let result = match (stdin_stream, &options.stdin) {
            (Some(id), Some(bytes)) => {
                // The request is queued before the stream data, so the server receives it first.
                let (result, sent) = tokio::join!(calling, async {
                    self.connection
                        .send_client_stream(id, bytes, STREAM_CHUNK_BYTES)
                });
                stdin_delivered = sent?;
                result?
            }
            _ => calling.await?,
        };

        let stdout = result
            .stdout_stream_id
            .map(|id| self.connection.take_stream(id))
            .transpose()?;
        let stderr = result
            .stderr_stream_id
            .map(|id| self.connection.take_stream(id))
            .transpose()?;
        tracing::debug!(sandbox_id = %self.id, pid = result.pid, "process spawned");
        Ok(Process {
            pid: result.pid,
            stdout,
            stderr,
            stdin_delivered,
        })
    }

    /// Waits at most `deadline` for process `pid` to exit.
    ///
    /// # Errors
    /// [`DenoError::Timeout`] past the deadline (the process keeps running);
    /// [`DenoError::Application`] for an unknown pid.
    pub async fn process_wait(
        &self,
        pid: u64,
        deadline: Duration,
    ) -> Result<ExitStatus, DenoError> {
        let value = self
            .call("processWait", json!({"pid": pid}), deadline)
            .await?;
        serde_json::from_value(value).map_err(|error| {
            DenoError::InvalidMessage(format!(
                "result of processWait has an unexpected shape: {error}"
            ))
        })
    }

    /// Sends `signal` (such as `SIGTERM` or `SIGKILL`) to process `pid`; returns once it is sent.
    ///
    /// Returns `false` when the process was already gone (`TypeError` with code `ENOENT`).
    ///
    /// # Errors
    /// Other application errors, such as an unknown signal name.
    pub async fn process_kill(&self, pid: u64, signal: &str) -> Result<bool, DenoError> {
        let outcome = self
            .call_unit("processKill", json!({"pid": pid, "signal": signal}))
            .await;
        match outcome {
            Ok(()) => Ok(true),
            Err(DenoError::Application { error, .. })
                if error.code.as_deref() == Some("ENOENT") =>
            {
                Ok(false)
            }
            Err(other) => Err(other),
        }
    }

    /// Cancels a server-produced stream, such as the stdout of a process whose output is no
    /// longer wanted. Its receiver then ends.
    ///
    /// # Errors
    /// The connection's error when it has closed.
    pub fn cancel_stream(&self, stream_id: u64) -> Result<(), DenoError> {
        self.connection.cancel_stream(stream_id)
    }

    /// Reads a whole file as bytes.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `NotFound` or `IsADirectory`.
    pub async fn read_file(&self, path: &str) -> Result<Vec<u8>, DenoError> {
        let encoded: String = self.call_typed("readFile", json!({"path": path})).await?;
        BASE64.decode(encoded).map_err(|_| {
            DenoError::InvalidMessage("result of readFile is not base64 data".to_owned())
        })
    }

    /// Reads a whole file as text, decoded by the sandbox.
    ///
    /// # Errors
    /// As [`Sandbox::read_file`].
    pub async fn read_text_file(&self, path: &str) -> Result<String, DenoError> {
        self.call_typed("readTextFile", json!({"path": path})).await
    }

    /// Writes `content` to a file. Content up to 64 KiB goes inline; larger content goes through a
    /// content stream in 64 KiB chunks.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `NotFound` for a missing parent or `AlreadyExists` with
    /// `create_new`.
    pub async fn write_file(
        &self,
        path: &str,
        content: &[u8],
        options: WriteOptions,
    ) -> Result<(), DenoError> {
        if content.len() <= STREAM_CHUNK_BYTES {
            let params =
                json!({"path": path, "content": BASE64.encode(content), "options": options});
            return self.call_unit("writeFile", params).await;
        }

        let stream_id = self.connection.start_client_stream()?;
        let params = json!({"path": path, "contentStreamId": stream_id, "options": options});
        let calling = self.call_unit("writeFile", params);
        let (result, sent) = tokio::join!(calling, async {
            self.connection
                .send_client_stream(stream_id, content, STREAM_CHUNK_BYTES)
        });
        sent?;
        result
    }

    /// Writes text to a file, creating or overwriting it.
    ///
    /// # Errors
    /// As [`Sandbox::write_file`].
    pub async fn write_text_file(&self, path: &str, content: &str) -> Result<(), DenoError> {
        self.write_file(path, content.as_bytes(), WriteOptions::default())
            .await
    }

    /// Creates a directory; with `recursive`, creates parents and accepts an existing directory.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `AlreadyExists` without `recursive`.
    pub async fn mkdir(&self, path: &str, recursive: bool) -> Result<(), DenoError> {
        self.call_unit(
            "mkdir",
            json!({"path": path, "options": {"recursive": recursive}}),
        )
        .await
    }

    /// Returns the metadata of a path, following symbolic links.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `NotFound`.
    pub async fn stat(&self, path: &str) -> Result<FileInfo, DenoError> {
        self.call_typed("stat", json!({"path": path})).await
    }

    /// Removes a file or directory; a non-empty directory needs `recursive`.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `NotFound`.
    pub async fn remove(&self, path: &str, recursive: bool) -> Result<(), DenoError> {
        self.call_unit(
            "remove",
            json!({"path": path, "options": {"recursive": recursive}}),
        )
        .await
    }

    /// Returns the canonical absolute path, resolving relative paths and links.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `NotFound`.
    pub async fn real_path(&self, path: &str) -> Result<String, DenoError> {
        self.call_typed("realPath", json!({"path": path})).await
    }

    /// Opens a file and returns its handle id.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `NotFound`.
    pub async fn open(&self, path: &str, options: OpenOptions) -> Result<u64, DenoError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Opened {
            file_handle_id: u64,
        }
        let opened: Opened = self
            .call_typed("open", json!({"path": path, "options": options}))
            .await?;
        Ok(opened.file_handle_id)
    }

    /// Reads at most `length` bytes at the handle's position; `None` at end of file. A short or
    /// empty chunk is not the end of the file.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `BadResource` for a closed handle.
    pub async fn file_read(&self, handle: u64, length: u64) -> Result<Option<Vec<u8>>, DenoError> {
        #[derive(Deserialize)]
        struct Read {
            data: Option<String>,
        }
        let read: Read = self
            .call_typed(
                "fileRead",
                json!({"fileHandleId": handle, "length": length}),
            )
            .await?;
        read.data
            .map(|data| {
                BASE64.decode(data).map_err(|_| {
                    DenoError::InvalidMessage("result of fileRead is not base64 data".to_owned())
                })
            })
            .transpose()
    }

    /// Moves the handle's position and returns the new position from the start.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `InvalidData` for a position before the start.
    pub async fn file_seek(
        &self,
        handle: u64,
        offset: i64,
        whence: Whence,
    ) -> Result<u64, DenoError> {
        #[derive(Deserialize)]
        struct Seeked {
            position: u64,
        }
        let params = json!({"fileHandleId": handle, "offset": offset, "whence": whence.code()});
        let seeked: Seeked = self.call_typed("fileSeek", params).await?;
        Ok(seeked.position)
    }

    /// Returns the metadata of an open file.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `BadResource`.
    pub async fn file_stat(&self, handle: u64) -> Result<FileInfo, DenoError> {
        self.call_typed("fileStat", json!({"fileHandleId": handle}))
            .await
    }

    /// Closes a file handle.
    ///
    /// # Errors
    /// [`DenoError::Application`] such as `BadResource`.
    pub async fn file_close(&self, handle: u64) -> Result<(), DenoError> {
        self.call_unit("fileClose", json!({"fileHandleId": handle}))
            .await
    }

    /// Closes the connection with code 1000 and waits briefly for the close frame to be sent.
    pub async fn close(self) {
        self.connection.close().await;
    }
}
