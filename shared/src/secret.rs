//! Deno Deploy access tokens as a secret type: zeroized on drop, redacted in `Debug`, never
//! serialized. Only [`DenoToken::expose`] reveals the text, at the one place a header is built.

use secrecy::{ExposeSecret, SecretString};

/// Prefix of a Deno Deploy organization token.
pub const ORGANIZATION_TOKEN_PREFIX: &str = "ddo_";
/// Prefix of a Deno Deploy personal token.
pub const PERSONAL_TOKEN_PREFIX: &str = "ddp_";

/// A Deno Deploy access token.
pub struct DenoToken(SecretString);

impl DenoToken {
    /// Wraps `text`; the caller validates its form (see the connection functions).
    pub fn new(text: impl Into<String>) -> Self {
        Self(SecretString::from(text.into()))
    }

    /// Returns the token text, for building an `Authorization` header or sealing it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Returns a non-secret hint: the prefix and the last four characters, such as `ddo_…a1b2`.
    pub fn hint(&self) -> String {
        let text = self.expose();
        let prefix: String = text.chars().take(4).collect();
        let tail: Vec<char> = text.chars().rev().take(4).collect();
        let tail: String = tail.into_iter().rev().collect();
        format!("{prefix}…{tail}")
    }
}

impl std::fmt::Debug for DenoToken {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DenoToken([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_token() {
        let token = DenoToken::new("ddo_supersecretvalue1234");
        assert_eq!(format!("{token:?}"), "DenoToken([REDACTED])");
    }

    #[test]
    fn hint_keeps_prefix_and_last_four() {
        assert_eq!(
            DenoToken::new("ddo_supersecretvalue1234").hint(),
            "ddo_…1234"
        );
    }
}
