//! Arguments of the six tools as the agent sends them, and their validation into values the tool
//! logic can use without further checks. Every rejection names the field and the allowed values.
//!
//! Decision: unknown fields are rejected (`deny_unknown_fields`), because a misspelt optional
//! argument that is silently ignored gives the agent a result it did not ask for.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::{Config, parse_duration_literal};
use crate::contract::ToolError;
use crate::deno::{Region, SandboxId};

/// Longest command text, in bytes: Linux's limit on one `execve` argument (`MAX_ARG_STRLEN`).
pub const MAX_COMMAND_BYTES: usize = 128 * 1024;
/// Deno's limit on labels per sandbox.
pub const MAX_LABELS: usize = 5;
/// Deno's limit on a label key, in bytes.
pub const MAX_LABEL_KEY_BYTES: usize = 64;
/// Deno's limit on a label value, in bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 128;
/// Smallest sandbox memory Deno accepts, in MiB.
pub const MIN_MEMORY_MB: u32 = 768;
/// Largest sandbox memory Deno accepts, in MiB.
pub const MAX_MEMORY_MB: u32 = 4096;
/// Sandbox memory when a create call names none, in MiB (Deno's own default).
pub const DEFAULT_MEMORY_MB: u32 = 1280;
/// Longest extension Deno grants per call.
pub const MAX_EXTENSION: Duration = Duration::from_secs(30 * 60);
/// Label keys the product sets on every sandbox; agents may not set them.
pub const PRODUCT_LABEL: &str = "managed-by";
/// Value of [`PRODUCT_LABEL`].
pub const PRODUCT_LABEL_VALUE: &str = "deno-sandbox-tools";
/// Label carrying the owning session id.
pub const SESSION_LABEL: &str = "session";
/// Label carrying the sandbox title, when one is given.
pub const TITLE_LABEL: &str = "title";

/// Arguments of `deno_create_sandbox`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSandboxArguments {
    /// Human-readable name shown to operators as a label.
    pub title: Option<String>,
    /// Region; `ord` when absent.
    pub region: Option<Region>,
    /// Lifetime as `"Ns"` or `"Nm"`.
    pub timeout: Option<String>,
    /// Memory in MiB.
    pub memory_mb: Option<u32>,
    /// Outbound network allow-list; unrestricted when absent.
    pub allow_net: Option<Vec<String>>,
    /// Extra labels for operators.
    pub labels: Option<BTreeMap<String, String>>,
}

/// A validated create request.
#[derive(Debug, Clone, PartialEq)]
pub struct CreatePlan {
    /// Title, if given.
    pub title: Option<String>,
    /// Region.
    pub region: Region,
    /// Lifetime from now.
    pub lifetime: Duration,
    /// Memory in MiB.
    pub memory_mb: u32,
    /// Outbound allow-list.
    pub allow_net: Option<Vec<String>>,
    /// Every label sent to Deno: the product's and the agent's.
    pub labels: BTreeMap<String, String>,
}

impl CreateSandboxArguments {
    /// Validates the arguments against Deno's limits and the configured lifetimes.
    ///
    /// # Errors
    /// `invalid_argument` naming the first bad field and what is allowed.
    pub fn validate(self, config: &Config, session_id: &str) -> Result<CreatePlan, ToolError> {
        let title = match self.title {
            Some(title) if title.trim().is_empty() => {
                return Err(ToolError::invalid_argument(
                    "title must not be empty; omit it instead",
                ));
            }
            Some(title) if title.len() > MAX_LABEL_VALUE_BYTES => {
                return Err(ToolError::invalid_argument(format!(
                    "title is {} bytes long; the maximum is {MAX_LABEL_VALUE_BYTES}",
                    title.len()
                )));
            }
            other => other,
        };

        let lifetime = match self.timeout.as_deref() {
            None => config.sandbox_default_timeout,
            Some(text) => parse_lifetime("timeout", text, config.sandbox_max_timeout)?,
        };

        let memory_mb = self.memory_mb.unwrap_or(DEFAULT_MEMORY_MB);
        if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&memory_mb) {
            return Err(ToolError::invalid_argument(format!(
                "memory_mb {memory_mb} is out of range; use a value from {MIN_MEMORY_MB} to {MAX_MEMORY_MB}"
            )));
        }

        if let Some(hosts) = &self.allow_net {
            for host in hosts {
                if host.trim().is_empty()
                    || host.chars().any(|c| c.is_whitespace() || c.is_control())
                {
                    return Err(ToolError::invalid_argument(format!(
                        "allow_net entry {host:?} is not a host; use forms like example.com, \
                         *.example.com, example.com:443 or 203.0.113.7"
                    )));
                }
            }
        }

        let mut labels = BTreeMap::new();
        labels.insert(PRODUCT_LABEL.to_owned(), PRODUCT_LABEL_VALUE.to_owned());
        labels.insert(SESSION_LABEL.to_owned(), session_id.to_owned());
        if let Some(title) = &title {
            labels.insert(TITLE_LABEL.to_owned(), title.clone());
        }
        let product_count = labels.len();
        for (key, value) in self.labels.unwrap_or_default() {
            if labels.contains_key(&key) {
                return Err(ToolError::invalid_argument(format!(
                    "label {key:?} is set by the product; choose another key \
                     ({PRODUCT_LABEL}, {SESSION_LABEL} and {TITLE_LABEL} are reserved)"
                )));
            }
            if key.is_empty() || key.len() > MAX_LABEL_KEY_BYTES {
                return Err(ToolError::invalid_argument(format!(
                    "label key {key:?} must be 1 to {MAX_LABEL_KEY_BYTES} bytes long"
                )));
            }
            if value.len() > MAX_LABEL_VALUE_BYTES {
                return Err(ToolError::invalid_argument(format!(
                    "label {key:?} has a value of {} bytes; the maximum is {MAX_LABEL_VALUE_BYTES}",
                    value.len()
                )));
            }
            labels.insert(key, value);
        }
        if labels.len() > MAX_LABELS {
            return Err(ToolError::invalid_argument(format!(
                "too many labels: Deno allows {MAX_LABELS} per sandbox and the product uses {product_count} \
                 ({}), so pass at most {} labels",
                if title.is_some() {
                    "managed-by, session, title"
                } else {
                    "managed-by, session"
                },
                MAX_LABELS - product_count
            )));
        }

        Ok(CreatePlan {
            title,
            region: self.region.unwrap_or(Region::Ord),
            lifetime,
            memory_mb,
            allow_net: self.allow_net,
            labels,
        })
    }
}

/// Parses a lifetime argument (`"Ns"`/`"Nm"`) and checks it against `max`.
///
/// # Errors
/// `invalid_argument` naming `field`; `"session"` is rejected with the reason.
pub fn parse_lifetime(field: &str, text: &str, max: Duration) -> Result<Duration, ToolError> {
    if text == "session" {
        return Err(ToolError::invalid_argument(format!(
            "{field} \"session\" is not supported: a session sandbox dies when the connection that \
             created it closes, and every tool call closes its connection; use a duration such as \"20m\""
        )));
    }
    let duration = parse_duration_literal(text).ok_or_else(|| {
        ToolError::invalid_argument(format!(
            "{field} {text:?} is invalid; use a positive whole number followed by s or m, such as \"90s\" or \"20m\""
        ))
    })?;
    if duration > max {
        return Err(ToolError::invalid_argument(format!(
            "{field} {text:?} exceeds the maximum of {}; use a shorter duration",
            describe_duration(max)
        )));
    }
    Ok(duration)
}

/// Formats a duration as the largest whole unit, such as `60m` or `90s`.
pub fn describe_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    if seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// Checks that `value` has the shape of a Deno sandbox id: `sbx_`, a region code, `_`, then 20
/// lowercase Crockford base32 characters.
///
/// # Errors
/// `invalid_argument` naming `sandbox_id`.
pub fn validate_sandbox_id(value: &str) -> Result<SandboxId, ToolError> {
    if value.is_empty() {
        return Err(ToolError::invalid_argument(
            "sandbox_id must not be empty; use an id returned by deno_create_sandbox or deno_list_sandboxes",
        ));
    }
    if value.len() > 64 {
        return Err(ToolError::invalid_argument(format!(
            "sandbox_id is {} bytes long, but a Deno sandbox id has 28 characters \
             (sbx_<region>_<20 characters>); use an id returned by deno_create_sandbox or deno_list_sandboxes",
            value.len()
        )));
    }
    SandboxId::parse(value).map_err(|_| {
        ToolError::invalid_argument(format!(
            "sandbox_id {value:?} is not a Deno sandbox id (sbx_<region>_<20 characters>); use an id \
             returned by deno_create_sandbox or deno_list_sandboxes"
        ))
    })
}

/// Arguments of `deno_exec`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecArguments {
    /// Target sandbox.
    pub sandbox_id: String,
    /// Shell command, run with `bash -lc`.
    pub command: String,
    /// Working directory; the workspace when absent.
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env: Option<BTreeMap<String, String>>,
    /// Deadline in seconds.
    pub timeout_seconds: Option<u64>,
    /// Text fed to standard input; stdin is closed when absent.
    pub stdin: Option<String>,
    /// Also return the raw bytes of both streams as base64.
    #[serde(default)]
    pub include_raw: bool,
}

impl ExecArguments {
    /// Validates the arguments and returns the command deadline.
    ///
    /// # Errors
    /// `invalid_argument` naming the first bad field.
    pub fn validate(&self, config: &Config) -> Result<Duration, ToolError> {
        let _ = validate_sandbox_id(&self.sandbox_id)?;
        if self.command.trim().is_empty() {
            return Err(ToolError::invalid_argument("command must not be empty"));
        }
        if self.command.len() >= MAX_COMMAND_BYTES {
            return Err(ToolError::invalid_argument(format!(
                "command is {} bytes long; Linux limits one argument to {MAX_COMMAND_BYTES} bytes, so \
                 write long scripts to a file with deno_write_file and run that file",
                self.command.len()
            )));
        }
        if self.command.contains('\0') {
            return Err(ToolError::invalid_argument(
                "command must not contain NUL characters",
            ));
        }
        if let Some(cwd) = &self.cwd {
            validate_path("cwd", cwd)?;
        }
        for (name, value) in self.env.iter().flatten() {
            let valid_name = !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid_name {
                return Err(ToolError::invalid_argument(format!(
                    "env name {name:?} is invalid; use letters, digits and underscores, not starting with a digit"
                )));
            }
            if value.contains('\0') {
                return Err(ToolError::invalid_argument(format!(
                    "env {name} must not contain NUL characters"
                )));
            }
        }
        let max = config.exec_max_timeout.as_secs();
        match self.timeout_seconds {
            None => Ok(config.exec_default_timeout),
            Some(0) => Err(ToolError::invalid_argument(format!(
                "timeout_seconds 0 is out of range; use 1 to {max}"
            ))),
            Some(seconds) if seconds > max => Err(ToolError::invalid_argument(format!(
                "timeout_seconds {seconds} exceeds the maximum of {max}; run long jobs in the background \
                 (for example with nohup … &) and poll their output"
            ))),
            Some(seconds) => Ok(Duration::from_secs(seconds)),
        }
    }
}

/// Encoding of the content `deno_read_file` returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ReadEncoding {
    /// UTF-8 text when the window is valid UTF-8, base64 otherwise.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// UTF-8 text; invalid bytes are replaced and flagged.
    #[serde(rename = "utf-8")]
    Utf8,
    /// Base64 always.
    #[serde(rename = "base64")]
    Base64,
}

/// Arguments of `deno_read_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadFileArguments {
    /// Target sandbox.
    pub sandbox_id: String,
    /// File path; relative paths resolve against the workspace.
    pub path: String,
    /// First byte of the window.
    #[serde(default)]
    pub offset: u64,
    /// Window length in bytes.
    pub limit: Option<u64>,
    /// How to return the content.
    #[serde(default)]
    pub encoding: ReadEncoding,
}

impl ReadFileArguments {
    /// Validates the arguments.
    ///
    /// # Errors
    /// `invalid_argument` naming the first bad field.
    pub fn validate(&self, max_window: u64) -> Result<(), ToolError> {
        let _ = validate_sandbox_id(&self.sandbox_id)?;
        validate_path("path", &self.path)?;
        if let Some(limit) = self.limit
            && (limit == 0 || limit > max_window)
        {
            return Err(ToolError::invalid_argument(format!(
                "limit {limit} is out of range; use 1 to {max_window} bytes and read larger files in \
                 windows with offset"
            )));
        }
        Ok(())
    }
}

/// Encoding of the `content` of `deno_write_file`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum WriteEncoding {
    /// `content` is text, written as UTF-8.
    #[default]
    #[serde(rename = "utf-8")]
    Utf8,
    /// `content` is base64 of the bytes to write.
    #[serde(rename = "base64")]
    Base64,
}

/// Behaviour of `deno_write_file` when the file exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Replace the file.
    #[default]
    Overwrite,
    /// Append to the file, creating it if missing.
    Append,
    /// Fail if the file exists.
    CreateNew,
}

/// Arguments of `deno_write_file`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WriteFileArguments {
    /// Target sandbox.
    pub sandbox_id: String,
    /// File path; relative paths resolve against the workspace.
    pub path: String,
    /// Text or base64, per `encoding`.
    pub content: String,
    /// How to read `content`.
    #[serde(default)]
    pub encoding: WriteEncoding,
    /// Behaviour when the file exists.
    #[serde(default)]
    pub mode: WriteMode,
}

impl WriteFileArguments {
    /// Validates the arguments and returns the bytes to write.
    ///
    /// # Errors
    /// `invalid_argument` naming the first bad field.
    pub fn validate(&self) -> Result<Vec<u8>, ToolError> {
        use base64::Engine as _;

        let _ = validate_sandbox_id(&self.sandbox_id)?;
        validate_path("path", &self.path)?;
        if self.path.ends_with('/') {
            return Err(ToolError::invalid_argument(format!(
                "path {:?} names a directory; give a file name",
                self.path
            )));
        }
        match self.encoding {
            WriteEncoding::Utf8 => Ok(self.content.as_bytes().to_vec()),
            WriteEncoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(self.content.trim())
                .map_err(|err| {
                    ToolError::invalid_argument(format!(
                        "content is not valid base64 ({err}); send standard base64 with padding or use \
                         encoding \"utf-8\" for text"
                    ))
                }),
        }
    }
}

/// Arguments of `deno_list_sandboxes`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSandboxesArguments {
    /// Ask Deno for the current state of each sandbox instead of computing it from stop times.
    #[serde(default)]
    pub refresh: bool,
    /// Also list sandboxes that were deleted or expired.
    #[serde(default = "default_true")]
    pub include_inactive: bool,
}

fn default_true() -> bool {
    true
}

/// Action of `deno_manage_sandbox`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ManageAction {
    /// Delete the sandbox; deleting a sandbox that is already gone succeeds.
    Delete,
    /// Move the stop time to now plus `duration`.
    Extend,
    /// Report the sandbox's state.
    Status,
}

/// Arguments of `deno_manage_sandbox`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManageSandboxArguments {
    /// Target sandbox.
    pub sandbox_id: String,
    /// Action to take.
    pub action: ManageAction,
    /// For `extend`: how long the sandbox should live from now (`"Ns"`/`"Nm"`, at most 30m).
    pub duration: Option<String>,
}

impl ManageSandboxArguments {
    /// Validates the arguments and returns the extension for `extend`.
    ///
    /// # Errors
    /// `invalid_argument` naming the first bad field.
    pub fn validate(&self) -> Result<Option<Duration>, ToolError> {
        let _ = validate_sandbox_id(&self.sandbox_id)?;
        match (self.action, self.duration.as_deref()) {
            (ManageAction::Extend, None) => Err(ToolError::invalid_argument(
                "duration is required for action \"extend\"; use a value such as \"10m\" (at most 30m)",
            )),
            (ManageAction::Extend, Some(text)) => {
                parse_lifetime("duration", text, MAX_EXTENSION).map(Some)
            }
            (_, Some(_)) => Err(ToolError::invalid_argument(
                "duration is only allowed with action \"extend\"; remove it",
            )),
            (_, None) => Ok(None),
        }
    }
}

/// Rejects empty paths and paths with NUL, naming `field`.
///
/// # Errors
/// `invalid_argument` naming `field`.
pub fn validate_path(field: &str, path: &str) -> Result<(), ToolError> {
    if path.is_empty() {
        return Err(ToolError::invalid_argument(format!(
            "{field} must not be empty; use a path relative to the workspace or an absolute path"
        )));
    }
    if path.contains('\0') {
        return Err(ToolError::invalid_argument(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

/// Resolves `path` against the sandbox workspace when it is relative, and drops `.` and empty
/// segments, which would make a recursive `mkdir` of the parent fail. `..` segments stay, so the
/// sandbox's kernel resolves them through any symlinks. No shell interprets the result.
pub fn resolve_path(workspace: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{workspace}/{path}")
    };
    let segments: Vec<&str> = joined
        .split('/')
        .filter(|segment| !segment.is_empty() && *segment != ".")
        .collect();
    let mut resolved = format!("/{}", segments.join("/"));
    if path.ends_with('/') && resolved.len() > 1 {
        resolved.push('/');
    }
    resolved
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{ErrorCode, decode_request};

    fn config() -> Config {
        Config::from_lookup(|name| match name {
            "CONNECTIONS_TABLE" | "SANDBOXES_TABLE" | "CAPABILITIES_TABLE" | "KMS_KEY_ID" => {
                Some("x".into())
            }
            _ => None,
        })
        .expect("config")
    }

    fn message<T: std::fmt::Debug>(result: Result<T, ToolError>) -> String {
        let error = result.expect_err("expected a rejection");
        assert_eq!(error.code, ErrorCode::InvalidArgument);
        error.message
    }

    fn create(json: &str) -> Result<CreatePlan, ToolError> {
        let body = format!(
            r#"{{"context":{{"org_id":"o","user_id":"u","session_id":"s1"}},"arguments":{json}}}"#
        );
        let request = decode_request::<CreateSandboxArguments>(body.as_bytes())?;
        request.arguments.validate(&config(), "s1")
    }

    #[test]
    fn create_defaults() {
        let plan = create("{}").expect("defaults");

        assert_eq!(plan.region, Region::Ord);
        assert_eq!(plan.lifetime, Duration::from_secs(20 * 60));
        assert_eq!(plan.memory_mb, 1280);
        assert_eq!(
            plan.labels.get("managed-by").map(String::as_str),
            Some("deno-sandbox-tools")
        );
        assert_eq!(plan.labels.get("session").map(String::as_str), Some("s1"));
        assert_eq!(plan.labels.len(), 2);
    }

    #[test]
    fn create_accepts_full_arguments() {
        let plan = create(
            r#"{"title":"build","region":"ams","timeout":"90s","memory_mb":4096,"allow_net":["deno.land"],"labels":{"team":"a","job":"b"}}"#,
        )
        .expect("valid");

        assert_eq!(plan.region, Region::Ams);
        assert_eq!(plan.lifetime, Duration::from_secs(90));
        assert_eq!(plan.memory_mb, 4096);
        assert_eq!(plan.labels.len(), 5);
        assert_eq!(plan.labels.get("title").map(String::as_str), Some("build"));
    }

    #[test]
    fn create_rejections_name_field() {
        let cases = [
            (
                r#"{"timeout":"session"}"#,
                "every tool call closes its connection",
            ),
            (r#"{"timeout":"1.5m"}"#, "timeout \"1.5m\" is invalid"),
            (r#"{"timeout":"0s"}"#, "timeout \"0s\" is invalid"),
            (r#"{"timeout":"61m"}"#, "exceeds the maximum of 60m"),
            (r#"{"timeout":20}"#, "invalid argument timeout"),
            (
                r#"{"memory_mb":512}"#,
                "memory_mb 512 is out of range; use a value from 768 to 4096",
            ),
            (r#"{"memory_mb":4097}"#, "memory_mb 4097"),
            (
                r#"{"region":"fra"}"#,
                "invalid argument region: unknown variant `fra`, expected `ord` or `ams`",
            ),
            (r#"{"title":"  "}"#, "title must not be empty"),
            (
                r#"{"labels":{"a":"1","b":"2","c":"3","d":"4"}}"#,
                "pass at most 3 labels",
            ),
            (
                r#"{"title":"t","labels":{"a":"1","b":"2","c":"3"}}"#,
                "pass at most 2 labels",
            ),
            (
                r#"{"labels":{"session":"other"}}"#,
                "label \"session\" is set by the product",
            ),
            (r#"{"allow_net":["a b"]}"#, "allow_net entry \"a b\""),
            (r#"{"image":"ubuntu"}"#, "unknown field `image`"),
        ];
        for (json, expected) in cases {
            let text = message(create(json));
            assert!(text.contains(expected), "{json}: {text}");
        }
    }

    #[test]
    fn sandbox_id_shape() {
        assert!(validate_sandbox_id("sbx_ord_0123456789abcdefghjk").is_ok());
        for bad in [
            "",
            "sbx_ord_0123456789abcdefghji",
            "sbx_ord_short",
            "xyz_ord_0123456789abcdefghjk",
        ] {
            let text = message(validate_sandbox_id(bad));
            assert!(text.contains("sandbox_id"), "{bad}: {text}");
        }
    }

    #[test]
    fn exec_deadline_rules() {
        let mut arguments = ExecArguments {
            sandbox_id: "sbx_ord_0123456789abcdefghjk".into(),
            command: "true".into(),
            cwd: None,
            env: None,
            timeout_seconds: None,
            stdin: None,
            include_raw: false,
        };
        assert_eq!(
            arguments.validate(&config()).expect("default"),
            Duration::from_secs(20)
        );
        arguments.timeout_seconds = Some(3);
        assert_eq!(
            arguments.validate(&config()).expect("explicit"),
            Duration::from_secs(3)
        );
        arguments.timeout_seconds = Some(21);
        assert!(
            message(arguments.validate(&config()))
                .contains("timeout_seconds 21 exceeds the maximum of 20")
        );
        arguments.timeout_seconds = Some(0);
        assert!(
            message(arguments.validate(&config()))
                .contains("timeout_seconds 0 is out of range; use 1 to 20")
        );
        arguments.timeout_seconds = None;
        arguments.command = "  ".into();
        assert!(message(arguments.validate(&config())).contains("command must not be empty"));
        arguments.command = "env".into();
        arguments.env = Some(BTreeMap::from([("1X".to_owned(), "v".to_owned())]));
        assert!(message(arguments.validate(&config())).contains("env name \"1X\" is invalid"));
    }

    #[test]
    fn manage_duration_rules() {
        let manage = |action, duration: Option<&str>| ManageSandboxArguments {
            sandbox_id: "sbx_ord_0123456789abcdefghjk".into(),
            action,
            duration: duration.map(str::to_owned),
        };
        assert_eq!(
            manage(ManageAction::Extend, Some("30m"))
                .validate()
                .expect("30m"),
            Some(MAX_EXTENSION)
        );
        assert!(
            message(manage(ManageAction::Extend, Some("31m")).validate())
                .contains("maximum of 30m")
        );
        assert!(
            message(manage(ManageAction::Extend, None).validate()).contains("duration is required")
        );
        assert!(
            message(manage(ManageAction::Delete, Some("5m")).validate()).contains("only allowed")
        );
        assert_eq!(
            manage(ManageAction::Status, None)
                .validate()
                .expect("status"),
            None
        );
    }

    #[test]
    fn write_decodes_base64() {
        let mut arguments = WriteFileArguments {
            sandbox_id: "sbx_ord_0123456789abcdefghjk".into(),
            path: "bin/blob.dat".into(),
            content: "AP8=".into(),
            encoding: WriteEncoding::Base64,
            mode: WriteMode::Overwrite,
        };
        assert_eq!(arguments.validate().expect("base64"), vec![0x00, 0xff]);
        arguments.content = "not base64!".into();
        assert!(message(arguments.validate()).contains("content is not valid base64"));
    }

    #[test]
    fn resolve_path_uses_workspace() {
        assert_eq!(
            resolve_path("/home/app", "a b/it's $(x).txt"),
            "/home/app/a b/it's $(x).txt"
        );
        assert_eq!(
            resolve_path("/home/app/", "../../tmp/up.txt"),
            "/home/app/../../tmp/up.txt"
        );
        assert_eq!(resolve_path("/home/app", "/etc/hostname"), "/etc/hostname");
        assert_eq!(resolve_path("/home/app", "./a/./b//c/."), "/home/app/a/b/c");
        assert_eq!(resolve_path("/home/app", "out/"), "/home/app/out/");
        assert_eq!(resolve_path("/home/app", "."), "/home/app");
        assert_eq!(resolve_path("/", "/"), "/");
    }
}
