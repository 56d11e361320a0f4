//! Server configuration, read once from `DENO_LOCAL_*` environment variables.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Network policy for sandboxes whose create request has no `allow_net` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkMode {
    /// Every sandbox gets an empty network namespace (loopback only).
    None,
    /// Sandboxes without `allow_net` share the host network namespace, host loopback included.
    Host,
}

/// Settings of one server process.
///
/// | Variable | Default | Meaning |
/// |---|---|---|
/// | `DENO_LOCAL_TOKENS` | required | comma-separated bearer tokens the server accepts |
/// | `DENO_LOCAL_PORT` | 18787 | listen port on 127.0.0.1 (0 picks a free port) |
/// | `DENO_LOCAL_STATE` | `$TMPDIR/deno-sandbox-local` | directory for per-sandbox workspaces |
/// | `DENO_LOCAL_WORKSPACE_PATH` | `/home/app` | workspace and `HOME` path inside sandboxes |
/// | `DENO_LOCAL_MAX_LIFETIME_SECS` | 3600 | longest lifetime a `stop_at_ms` may request |
/// | `DENO_LOCAL_PIDS_MAX` | 512 | process limit per sandbox (pids cgroup) |
/// | `DENO_LOCAL_NETWORK` | `none` | `none` or `host`, see [`NetworkMode`] |
/// | `DENO_LOCAL_DENO_BIN` | `deno` found on `PATH` | host path of the `deno` binary mounted into sandboxes |
/// | `DENO_LOCAL_SANDBOX_UID` | 65534 | host uid and gid that own sandbox processes and files |
#[derive(Debug, Clone)]
pub struct Config {
    pub tokens: Vec<String>,
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    pub workspace_path: String,
    pub max_lifetime: Duration,
    pub pids_max: u32,
    pub network: NetworkMode,
    pub deno_bin: Option<PathBuf>,
    pub host_uid: u32,
}

/// Maximum extension a single `PATCH` may grant, counted from the time of the request.
pub const MAX_EXTENSION: Duration = Duration::from_secs(30 * 60);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing {0}: set it to a comma-separated list of accepted tokens")]
    Missing(&'static str),
    #[error("invalid {name}={value}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// Fails when `DENO_LOCAL_TOKENS` is missing or empty, or when a variable does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, so tests need not touch the process environment.
    ///
    /// # Errors
    /// Same as [`Config::from_env`].
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let tokens: Vec<String> = lookup("DENO_LOCAL_TOKENS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .map(String::from)
            .collect();
        if tokens.is_empty() {
            return Err(ConfigError::Missing("DENO_LOCAL_TOKENS"));
        }

        let port: u16 = parse_or(&lookup, "DENO_LOCAL_PORT", 18787, "expected a port number")?;
        let state_dir = lookup("DENO_LOCAL_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("deno-sandbox-local"));
        let workspace_path =
            lookup("DENO_LOCAL_WORKSPACE_PATH").unwrap_or_else(|| "/home/app".to_string());
        if !workspace_path.starts_with('/')
            || workspace_path == "/"
            || workspace_path.contains("..")
        {
            return Err(ConfigError::Invalid {
                name: "DENO_LOCAL_WORKSPACE_PATH",
                value: workspace_path,
                reason: "expected an absolute path below /",
            });
        }
        let max_lifetime_secs: u64 = parse_or(
            &lookup,
            "DENO_LOCAL_MAX_LIFETIME_SECS",
            3600,
            "expected whole seconds",
        )?;
        let pids_max: u32 = parse_or(&lookup, "DENO_LOCAL_PIDS_MAX", 512, "expected a count")?;
        let network = match lookup("DENO_LOCAL_NETWORK").as_deref() {
            None | Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    name: "DENO_LOCAL_NETWORK",
                    value: other.to_string(),
                    reason: "expected none or host",
                });
            }
        };
        let deno_bin = lookup("DENO_LOCAL_DENO_BIN")
            .map(PathBuf::from)
            .or_else(|| find_on_path(&lookup, "deno"));
        let host_uid: u32 = parse_or(&lookup, "DENO_LOCAL_SANDBOX_UID", 65534, "expected a uid")?;
        if host_uid == 0 {
            return Err(ConfigError::Invalid {
                name: "DENO_LOCAL_SANDBOX_UID",
                value: "0".to_string(),
                reason: "sandboxes must not run as host root",
            });
        }

        Ok(Self {
            tokens,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            state_dir,
            workspace_path,
            max_lifetime: Duration::from_secs(max_lifetime_secs),
            pids_max,
            network,
            deno_bin,
            host_uid,
        })
    }
}

fn parse_or<T: std::str::FromStr>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    reason: &'static str,
) -> Result<T, ConfigError> {
    match lookup(name) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            value,
            reason,
        }),
    }
}

fn find_on_path(lookup: &impl Fn(&str) -> Option<String>, program: &str) -> Option<PathBuf> {
    let path = lookup("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lookup_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        move |name| {
            owned
                .iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        }
    }

    #[test]
    fn tokens_are_required() {
        let error = Config::from_lookup(lookup_from(&[])).unwrap_err();
        assert!(matches!(error, ConfigError::Missing("DENO_LOCAL_TOKENS")));
    }

    #[test]
    fn defaults_apply() {
        let config = Config::from_lookup(lookup_from(&[("DENO_LOCAL_TOKENS", " a, b ,")])).unwrap();
        assert_eq!(config.tokens, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(config.listen.port(), 18787);
        assert_eq!(config.workspace_path, "/home/app");
        assert_eq!(config.network, NetworkMode::None);
        assert_eq!(config.pids_max, 512);
    }

    #[test]
    fn invalid_network_is_rejected() {
        let error = Config::from_lookup(lookup_from(&[
            ("DENO_LOCAL_TOKENS", "a"),
            ("DENO_LOCAL_NETWORK", "bridge"),
        ]))
        .unwrap_err();
        assert!(error.to_string().contains("DENO_LOCAL_NETWORK=bridge"));
    }
}
