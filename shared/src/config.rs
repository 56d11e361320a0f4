//! Settings read once per cold start from environment variables.
//!
//! Decision: table names and the KMS key id have no defaults, because a function pointed at the
//! wrong table or key fails late and confusingly. Only harmless values (Deno's public endpoints,
//! lifetimes, limits) have defaults.

use std::time::Duration;

/// Environment variable naming the DynamoDB table of connections (sealed Deno tokens).
pub const CONNECTIONS_TABLE_VAR: &str = "CONNECTIONS_TABLE";
/// Environment variable naming the DynamoDB table of per-session sandbox records.
pub const SANDBOXES_TABLE_VAR: &str = "SANDBOXES_TABLE";
/// Environment variable naming the DynamoDB table of per-organization capability switches.
pub const CAPABILITIES_TABLE_VAR: &str = "CAPABILITIES_TABLE";
/// Environment variable holding the KMS key id or ARN used for envelope encryption.
pub const KMS_KEY_ID_VAR: &str = "KMS_KEY_ID";
/// Environment variable overriding the DynamoDB endpoint; only for DynamoDB Local.
pub const DYNAMODB_ENDPOINT_VAR: &str = "DYNAMODB_ENDPOINT";
/// Environment variable overriding the KMS endpoint; only for the KMS emulator.
pub const KMS_ENDPOINT_VAR: &str = "KMS_ENDPOINT";
/// Environment variable overriding the sandbox API origin for every region, as in Deno's SDKs.
pub const DENO_SANDBOX_ENDPOINT_VAR: &str = "DENO_SANDBOX_ENDPOINT";
/// Environment variable replacing `sandbox-api.deno.net` in `https://{region}.{domain}`.
pub const DENO_SANDBOX_BASE_DOMAIN_VAR: &str = "DENO_SANDBOX_BASE_DOMAIN";
/// Environment variable overriding the Deno Deploy console API origin.
pub const DENO_DEPLOY_ENDPOINT_VAR: &str = "DENO_DEPLOY_ENDPOINT";
/// Environment variable with the sandbox lifetime used when a create call names none.
pub const SANDBOX_DEFAULT_TIMEOUT_VAR: &str = "SANDBOX_DEFAULT_TIMEOUT";
/// Environment variable with the longest sandbox lifetime a create call may request.
pub const SANDBOX_MAX_TIMEOUT_VAR: &str = "SANDBOX_MAX_TIMEOUT";
/// Environment variable with the command deadline used when an exec call names none, in seconds.
pub const EXEC_DEFAULT_TIMEOUT_VAR: &str = "EXEC_DEFAULT_TIMEOUT_SECONDS";
/// Environment variable with the longest command deadline an exec call may request, in seconds.
pub const EXEC_MAX_TIMEOUT_VAR: &str = "EXEC_MAX_TIMEOUT_SECONDS";
/// Environment variable with the sandbox workspace directory that relative paths resolve against.
pub const SANDBOX_WORKSPACE_PATH_VAR: &str = "SANDBOX_WORKSPACE_PATH";

/// Default origin of the Deno Deploy console API.
pub const DEFAULT_DEPLOY_ENDPOINT: &str = "https://console.deno.com";
/// Default base domain of the per-region sandbox API hosts.
pub const DEFAULT_SANDBOX_BASE_DOMAIN: &str = "sandbox-api.deno.net";
/// Workspace directory of a Deno Deploy sandbox, as observed live in April 2026.
pub const DEFAULT_WORKSPACE_PATH: &str = "/home/app";

/// Settings shared by every function, read once per cold start by [`Config::from_env`].
///
/// Required: the three table names and the KMS key id. Optional with defaults: the Deno
/// endpoints (Deno Deploy's public hosts), sandbox lifetimes (20 minutes default, 60 minutes
/// maximum), command deadlines (20 s default and maximum, so a call with its kill and stream
/// grace periods fits in API Gateway's 29 s limit) and the workspace path (`/home/app`). The emulator endpoints are unset in AWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// DynamoDB table of connections.
    pub connections_table: String,
    /// DynamoDB table of sandbox records.
    pub sandboxes_table: String,
    /// DynamoDB table of capability switches.
    pub capabilities_table: String,
    /// KMS key id or ARN for envelope encryption.
    pub kms_key_id: String,
    /// DynamoDB endpoint override (DynamoDB Local); `None` in AWS.
    pub dynamodb_endpoint: Option<String>,
    /// KMS endpoint override (the KMS emulator); `None` in AWS.
    pub kms_endpoint: Option<String>,
    /// Sandbox API origin used for every region, overriding the base domain.
    pub sandbox_endpoint: Option<String>,
    /// Base domain of the per-region sandbox API hosts.
    pub sandbox_base_domain: String,
    /// Origin of the Deno Deploy console API.
    pub deploy_endpoint: String,
    /// Sandbox lifetime when a create call names none.
    pub sandbox_default_timeout: Duration,
    /// Longest sandbox lifetime a create call may request.
    pub sandbox_max_timeout: Duration,
    /// Command deadline when an exec call names none.
    pub exec_default_timeout: Duration,
    /// Longest command deadline an exec call may request.
    pub exec_max_timeout: Duration,
    /// Directory inside the sandbox that relative paths resolve against.
    pub workspace_path: String,
}

/// A missing or malformed environment variable, named so the operator can fix the deployment.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("missing environment variable {name}: set it in the function's configuration")]
    Missing {
        /// Name of the variable.
        name: &'static str,
    },
    /// A variable is set but its value cannot be used.
    #[error("invalid environment variable {name}={value:?}: expected {expected}")]
    Invalid {
        /// Name of the variable.
        name: &'static str,
        /// The value found.
        value: String,
        /// What the value should look like.
        expected: &'static str,
    },
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first missing or malformed variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup`, which returns a variable's value if it is set.
    /// Tests pass a map here instead of changing the process environment.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first missing or malformed variable.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let optional = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let required = |name: &'static str| optional(name).ok_or(ConfigError::Missing { name });

        let sandbox_endpoint = optional(DENO_SANDBOX_ENDPOINT_VAR)
            .map(|value| parse_origin(DENO_SANDBOX_ENDPOINT_VAR, value))
            .transpose()?;
        let deploy_endpoint = optional(DENO_DEPLOY_ENDPOINT_VAR)
            .map(|value| parse_origin(DENO_DEPLOY_ENDPOINT_VAR, value))
            .transpose()?
            .unwrap_or_else(|| DEFAULT_DEPLOY_ENDPOINT.to_owned());
        let dynamodb_endpoint = optional(DYNAMODB_ENDPOINT_VAR)
            .map(|value| parse_origin(DYNAMODB_ENDPOINT_VAR, value))
            .transpose()?;
        let kms_endpoint = optional(KMS_ENDPOINT_VAR)
            .map(|value| parse_origin(KMS_ENDPOINT_VAR, value))
            .transpose()?;

        let sandbox_default_timeout = match optional(SANDBOX_DEFAULT_TIMEOUT_VAR) {
            Some(value) => parse_lifetime(SANDBOX_DEFAULT_TIMEOUT_VAR, value)?,
            None => Duration::from_secs(20 * 60),
        };
        let sandbox_max_timeout = match optional(SANDBOX_MAX_TIMEOUT_VAR) {
            Some(value) => parse_lifetime(SANDBOX_MAX_TIMEOUT_VAR, value)?,
            None => Duration::from_secs(60 * 60),
        };
        if sandbox_default_timeout > sandbox_max_timeout {
            return Err(ConfigError::Invalid {
                name: SANDBOX_DEFAULT_TIMEOUT_VAR,
                value: optional(SANDBOX_DEFAULT_TIMEOUT_VAR).unwrap_or_default(),
                expected: "a lifetime no longer than SANDBOX_MAX_TIMEOUT",
            });
        }

        let exec_default_timeout = match optional(EXEC_DEFAULT_TIMEOUT_VAR) {
            Some(value) => parse_seconds(EXEC_DEFAULT_TIMEOUT_VAR, value)?,
            None => Duration::from_secs(20),
        };
        let exec_max_timeout = match optional(EXEC_MAX_TIMEOUT_VAR) {
            Some(value) => parse_seconds(EXEC_MAX_TIMEOUT_VAR, value)?,
            None => Duration::from_secs(20),
        };
        if exec_default_timeout > exec_max_timeout {
            return Err(ConfigError::Invalid {
                name: EXEC_DEFAULT_TIMEOUT_VAR,
                value: exec_default_timeout.as_secs().to_string(),
                expected: "a number of seconds no larger than EXEC_MAX_TIMEOUT_SECONDS",
            });
        }

        let workspace_path = optional(SANDBOX_WORKSPACE_PATH_VAR)
            .unwrap_or_else(|| DEFAULT_WORKSPACE_PATH.to_owned());
        if !workspace_path.starts_with('/') {
            return Err(ConfigError::Invalid {
                name: SANDBOX_WORKSPACE_PATH_VAR,
                value: workspace_path,
                expected: "an absolute path such as /home/app",
            });
        }

        Ok(Self {
            connections_table: required(CONNECTIONS_TABLE_VAR)?,
            sandboxes_table: required(SANDBOXES_TABLE_VAR)?,
            capabilities_table: required(CAPABILITIES_TABLE_VAR)?,
            kms_key_id: required(KMS_KEY_ID_VAR)?,
            dynamodb_endpoint,
            kms_endpoint,
            sandbox_endpoint,
            sandbox_base_domain: optional(DENO_SANDBOX_BASE_DOMAIN_VAR)
                .unwrap_or_else(|| DEFAULT_SANDBOX_BASE_DOMAIN.to_owned()),
            deploy_endpoint,
            sandbox_default_timeout,
            sandbox_max_timeout,
            exec_default_timeout,
            exec_max_timeout,
            workspace_path,
        })
    }
}

/// Parses a lifetime in the strict `^[1-9][0-9]*(s|m)$` grammar that sandbox timeouts use.
///
/// Deno's npm SDK accepts looser forms (`"1.5m"` as one minute, `"10ms"` as ten seconds); this
/// parser rejects them so that a typo never silently changes a lifetime.
pub fn parse_duration_literal(text: &str) -> Option<Duration> {
    let (digits, unit_seconds) = match text.as_bytes().last()? {
        b's' => (&text[..text.len() - 1], 1),
        b'm' => (&text[..text.len() - 1], 60),
        _ => return None,
    };
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let count: u64 = digits.parse().ok()?;
    count.checked_mul(unit_seconds).map(Duration::from_secs)
}

fn parse_lifetime(name: &'static str, value: String) -> Result<Duration, ConfigError> {
    parse_duration_literal(&value).ok_or(ConfigError::Invalid {
        name,
        value,
        expected: "a positive whole number followed by s or m, such as 20m",
    })
}

fn parse_seconds(name: &'static str, value: String) -> Result<Duration, ConfigError> {
    match value.parse::<u64>() {
        Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
        _ => Err(ConfigError::Invalid {
            name,
            value,
            expected: "a positive whole number of seconds",
        }),
    }
}

/// Checks that `value` is an `http://` or `https://` origin without a trailing slash, the form
/// Deno's SDKs require of endpoint overrides.
fn parse_origin(name: &'static str, value: String) -> Result<String, ConfigError> {
    let has_scheme = value.starts_with("http://") || value.starts_with("https://");
    if !has_scheme || value.ends_with('/') {
        return Err(ConfigError::Invalid {
            name,
            value,
            expected: "an http:// or https:// origin without a trailing slash",
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const REQUIRED: [(&str, &str); 4] = [
        (CONNECTIONS_TABLE_VAR, "connections"),
        (SANDBOXES_TABLE_VAR, "sandboxes"),
        (CAPABILITIES_TABLE_VAR, "capabilities"),
        (KMS_KEY_ID_VAR, "alias/deno-sandbox-tools"),
    ];

    #[test]
    fn from_lookup_applies_defaults() {
        let config = Config::from_lookup(lookup_from(&REQUIRED)).expect("config");

        assert_eq!(config.connections_table, "connections");
        assert_eq!(config.kms_key_id, "alias/deno-sandbox-tools");
        assert_eq!(config.deploy_endpoint, "https://console.deno.com");
        assert_eq!(config.sandbox_base_domain, "sandbox-api.deno.net");
        assert_eq!(config.sandbox_endpoint, None);
        assert_eq!(config.sandbox_default_timeout, Duration::from_secs(1200));
        assert_eq!(config.sandbox_max_timeout, Duration::from_secs(3600));
        assert_eq!(config.exec_default_timeout, Duration::from_secs(20));
        assert_eq!(config.exec_max_timeout, Duration::from_secs(20));
        assert_eq!(config.workspace_path, "/home/app");
    }

    #[test]
    fn from_lookup_names_missing_variable() {
        for (missing, _) in REQUIRED {
            let pairs: Vec<_> = REQUIRED
                .iter()
                .copied()
                .filter(|(k, _)| *k != missing)
                .collect();
            let error = Config::from_lookup(lookup_from(&pairs)).expect_err("missing variable");
            assert_eq!(error, ConfigError::Missing { name: missing });
        }
    }

    #[test]
    fn from_lookup_treats_blank_as_missing() {
        let mut pairs = REQUIRED.to_vec();
        pairs[3] = (KMS_KEY_ID_VAR, "   ");
        let error = Config::from_lookup(lookup_from(&pairs)).expect_err("blank key id");
        assert_eq!(
            error,
            ConfigError::Missing {
                name: KMS_KEY_ID_VAR
            }
        );
    }

    #[test]
    fn from_lookup_rejects_malformed_values() {
        let cases = [
            (SANDBOX_DEFAULT_TIMEOUT_VAR, "20"),
            (SANDBOX_MAX_TIMEOUT_VAR, "1h"),
            (EXEC_DEFAULT_TIMEOUT_VAR, "0"),
            (EXEC_MAX_TIMEOUT_VAR, "ten"),
            (DENO_SANDBOX_ENDPOINT_VAR, "http://127.0.0.1:8787/"),
            (DENO_DEPLOY_ENDPOINT_VAR, "console.deno.com"),
            (SANDBOX_WORKSPACE_PATH_VAR, "home/app"),
        ];
        for (name, value) in cases {
            let mut pairs = REQUIRED.to_vec();
            pairs.push((name, value));
            let error = Config::from_lookup(lookup_from(&pairs)).expect_err(name);
            let ConfigError::Invalid {
                name: reported,
                value: found,
                ..
            } = error
            else {
                panic!("expected Invalid for {name}, got {error:?}");
            };
            assert_eq!(reported, name);
            assert_eq!(found, value);
        }
    }

    #[test]
    fn from_lookup_rejects_default_above_maximum() {
        let mut pairs = REQUIRED.to_vec();
        pairs.push((SANDBOX_DEFAULT_TIMEOUT_VAR, "90m"));
        let error = Config::from_lookup(lookup_from(&pairs)).expect_err("default above max");
        assert!(matches!(
            error,
            ConfigError::Invalid {
                name: SANDBOX_DEFAULT_TIMEOUT_VAR,
                ..
            }
        ));
    }

    #[test]
    fn duration_literal_strict_grammar() {
        assert_eq!(parse_duration_literal("45s"), Some(Duration::from_secs(45)));
        assert_eq!(
            parse_duration_literal("20m"),
            Some(Duration::from_secs(1200))
        );
        for rejected in [
            "", "s", "0s", "05m", "1.5m", "10ms", "5mm", " 7m", "7", "2h", "-3s", "session",
        ] {
            assert_eq!(parse_duration_literal(rejected), None, "{rejected:?}");
        }
    }
}
