//! Sandbox ids, regions and the URLs of Deno's sandbox and console APIs, resolved the way Deno's
//! SDKs resolve them.
//!
//! Resolution: `DENO_SANDBOX_ENDPOINT` (an origin used for every region) wins over
//! `DENO_SANDBOX_BASE_DOMAIN` (`https://{region}.{domain}`); the console API is
//! `DENO_DEPLOY_ENDPOINT`. Websocket URLs swap `http` for `ws`, so `http://` origins of a local
//! server become `ws://`. Connect, delete and extend use the region inside the sandbox id.

use std::fmt;
use std::str::FromStr;

use url::Url;

use super::error::DenoError;
use crate::config::Config;

/// A Deno Deploy sandbox region.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Region {
    /// Chicago, the default region.
    #[default]
    Ord,
    /// Amsterdam.
    Ams,
}

impl Region {
    /// Every region, default first.
    pub const ALL: [Region; 2] = [Region::Ord, Region::Ams];

    /// Returns the three-letter code used in host names and sandbox ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ord => "ord",
            Self::Ams => "ams",
        }
    }
}

impl fmt::Display for Region {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl FromStr for Region {
    type Err = DenoError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "ord" => Ok(Self::Ord),
            "ams" => Ok(Self::Ams),
            _ => Err(DenoError::InvalidArgument {
                name: "region",
                reason: format!("{text:?} is not a Deno sandbox region; use ord or ams"),
            }),
        }
    }
}

/// Length of the random part of a sandbox id.
const SANDBOX_ID_SUFFIX_LEN: usize = 20;

/// A validated sandbox id: `sbx_`, a three-letter region, `_`, then 20 characters of lowercase
/// Crockford base32 (`0-9`, `a-z` without `i`, `l`, `o`, `u`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SandboxId(String);

impl SandboxId {
    /// Validates `text` as a sandbox id.
    ///
    /// # Errors
    /// [`DenoError::InvalidArgument`] when `text` does not have the id's shape.
    pub fn parse(text: &str) -> Result<Self, DenoError> {
        let invalid = || DenoError::InvalidArgument {
            name: "sandbox_id",
            reason: format!(
                "{text:?} is not a sandbox id; ids look like sbx_ord_0123456789abcdefghjk"
            ),
        };
        let rest = text.strip_prefix("sbx_").ok_or_else(invalid)?;
        let (region, suffix) = rest.split_once('_').ok_or_else(invalid)?;
        let region_ok = region.len() == 3 && region.bytes().all(|b| b.is_ascii_lowercase());
        let suffix_ok = suffix.len() == SANDBOX_ID_SUFFIX_LEN
            && suffix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b.is_ascii_lowercase() && !b"ilou".contains(&b)));
        if !region_ok || !suffix_ok {
            return Err(invalid());
        }
        Ok(Self(text.to_owned()))
    }

    /// Returns the id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns the three-letter region code inside the id, such as `ord`.
    pub fn region_code(&self) -> &str {
        &self.0[4..7]
    }
}

impl fmt::Display for SandboxId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

/// Origins of the sandbox API (per region) and of the console API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// Origin used for every region instead of `https://{region}.{base_domain}`.
    sandbox_endpoint: Option<Url>,
    /// Base domain of the per-region hosts, such as `sandbox-api.deno.net`.
    sandbox_base_domain: String,
    /// Origin of the console API, such as `https://console.deno.com`.
    deploy_endpoint: Url,
}

impl Endpoints {
    /// Builds endpoints from explicit values; origins keep only scheme, host and port, as Deno's
    /// SDKs do.
    ///
    /// # Errors
    /// [`DenoError::InvalidArgument`] when an origin is not an `http://` or `https://` URL.
    pub fn new(
        sandbox_endpoint: Option<&str>,
        sandbox_base_domain: &str,
        deploy_endpoint: &str,
    ) -> Result<Self, DenoError> {
        Ok(Self {
            sandbox_endpoint: sandbox_endpoint
                .map(|text| parse_origin("sandbox_endpoint", text))
                .transpose()?,
            sandbox_base_domain: sandbox_base_domain.to_owned(),
            deploy_endpoint: parse_origin("deploy_endpoint", deploy_endpoint)?,
        })
    }

    /// Builds endpoints from the configuration read at cold start.
    ///
    /// # Errors
    /// [`DenoError::InvalidArgument`] when a configured origin is not a URL.
    pub fn from_config(config: &Config) -> Result<Self, DenoError> {
        Self::new(
            config.sandbox_endpoint.as_deref(),
            &config.sandbox_base_domain,
            &config.deploy_endpoint,
        )
    }

    /// Returns the HTTP origin of the sandbox API for the region code, without trailing slash.
    pub fn sandbox_origin(&self, region_code: &str) -> String {
        match &self.sandbox_endpoint {
            Some(origin) => origin_text(origin),
            None => format!("https://{region_code}.{}", self.sandbox_base_domain),
        }
    }

    /// Returns the websocket URL that creates a sandbox in `region`.
    pub fn create_url(&self, region: Region) -> String {
        let origin = websocket_origin(&self.sandbox_origin(region.as_str()));
        format!("{origin}/api/v3/sandboxes/create")
    }

    /// Returns the websocket URL that connects to an existing sandbox, on its region's host.
    pub fn connect_url(&self, id: &SandboxId) -> String {
        let origin = websocket_origin(&self.sandbox_origin(id.region_code()));
        format!("{origin}/api/v3/sandbox/{id}/connect")
    }

    /// Returns the HTTP URL for deleting (`DELETE`) or extending (`PATCH`) a sandbox.
    pub fn sandbox_url(&self, id: &SandboxId) -> String {
        format!(
            "{}/api/v3/sandbox/{id}",
            self.sandbox_origin(id.region_code())
        )
    }

    /// Returns the console URL that lists sandboxes having every `labels` pair, one
    /// `labels[key]=value` query parameter per pair.
    pub fn list_url(&self, labels: &[(String, String)]) -> Url {
        let mut url = self.deploy_endpoint.clone();
        url.set_path("/api/v2/sandboxes");
        if !labels.is_empty() {
            let mut query = url.query_pairs_mut();
            for (key, value) in labels {
                query.append_pair(&format!("labels[{key}]"), value);
            }
        }
        url
    }
}

fn parse_origin(name: &'static str, text: &str) -> Result<Url, DenoError> {
    let invalid = |reason: &str| DenoError::InvalidArgument {
        name,
        reason: format!("{text:?} {reason}"),
    };
    let mut url = Url::parse(text).map_err(|_| invalid("is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid("is not an http:// or https:// origin"));
    }
    url.set_path("");
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

fn origin_text(url: &Url) -> String {
    url.as_str().trim_end_matches('/').to_owned()
}

/// Replaces the leading `http` of an origin with `ws` (`https` becomes `wss`).
fn websocket_origin(http_origin: &str) -> String {
    match http_origin.strip_prefix("http") {
        Some(rest) => format!("ws{rest}"),
        None => http_origin.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "sbx_ams_0123456789abcdefghjk";

    fn default_endpoints() -> Endpoints {
        Endpoints::new(None, "sandbox-api.deno.net", "https://console.deno.com").expect("endpoints")
    }

    #[test]
    fn sandbox_id_parses_region() {
        let id = SandboxId::parse(ID).expect("valid id");
        assert_eq!(id.region_code(), "ams");
        assert_eq!(id.as_str(), ID);
    }

    #[test]
    fn sandbox_id_rejects_bad_shapes() {
        for text in [
            "",
            "sbx_ord_0123456789abcdefghj",
            "sbx_ord_0123456789abcdefghjkm",
            "sbx_ord_0123456789abcdefghji",
            "sbx_ord_0123456789abcdefghjl",
            "sbx_ord_0123456789abcdefghjO",
            "sbx_or_0123456789abcdefghjkm",
            "sbx_ORD_0123456789abcdefghjk",
            "sbo_ord_0123456789abcdefghjk",
            "sbx_ord_0123456789/bcdefghjk",
        ] {
            assert!(SandboxId::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn default_hosts_follow_region() {
        let endpoints = default_endpoints();
        let id = SandboxId::parse(ID).expect("valid id");

        assert_eq!(
            endpoints.create_url(Region::Ord),
            "wss://ord.sandbox-api.deno.net/api/v3/sandboxes/create"
        );
        assert_eq!(
            endpoints.connect_url(&id),
            "wss://ams.sandbox-api.deno.net/api/v3/sandbox/sbx_ams_0123456789abcdefghjk/connect"
        );
        assert_eq!(
            endpoints.sandbox_url(&id),
            "https://ams.sandbox-api.deno.net/api/v3/sandbox/sbx_ams_0123456789abcdefghjk"
        );
    }

    #[test]
    fn base_domain_replaces_host_suffix() {
        let endpoints =
            Endpoints::new(None, "sandbox.example.test", "https://console.deno.com").expect("ok");
        assert_eq!(
            endpoints.create_url(Region::Ams),
            "wss://ams.sandbox.example.test/api/v3/sandboxes/create"
        );
    }

    #[test]
    fn endpoint_override_ignores_region_and_path() {
        let endpoints = Endpoints::new(
            Some("http://127.0.0.1:8787/ignored/path?x=1"),
            "sandbox-api.deno.net",
            "http://127.0.0.1:8788",
        )
        .expect("endpoints");
        let id = SandboxId::parse(ID).expect("valid id");

        assert_eq!(
            endpoints.create_url(Region::Ams),
            "ws://127.0.0.1:8787/api/v3/sandboxes/create"
        );
        assert_eq!(
            endpoints.connect_url(&id),
            "ws://127.0.0.1:8787/api/v3/sandbox/sbx_ams_0123456789abcdefghjk/connect"
        );
        assert_eq!(
            endpoints.sandbox_url(&id),
            "http://127.0.0.1:8787/api/v3/sandbox/sbx_ams_0123456789abcdefghjk"
        );
    }

    #[test]
    fn list_url_encodes_label_filters() {
        let labels = vec![
            ("env".to_owned(), "prod".to_owned()),
            ("k y".to_owned(), "v&w".to_owned()),
        ];
        assert_eq!(
            default_endpoints().list_url(&labels).as_str(),
            "https://console.deno.com/api/v2/sandboxes?labels%5Benv%5D=prod&labels%5Bk+y%5D=v%26w"
        );
        assert_eq!(
            default_endpoints().list_url(&[]).as_str(),
            "https://console.deno.com/api/v2/sandboxes"
        );
    }

    #[test]
    fn endpoints_reject_non_http_origins() {
        for text in ["ftp://example.test", "example.test", "ws://127.0.0.1:1"] {
            assert!(
                Endpoints::new(
                    Some(text),
                    "sandbox-api.deno.net",
                    "https://console.deno.com"
                )
                .is_err(),
                "{text}"
            );
        }
    }

    #[test]
    fn region_parses_known_codes() {
        assert_eq!("ams".parse::<Region>().expect("ams"), Region::Ams);
        assert_eq!("ord".parse::<Region>().expect("ord"), Region::Ord);
        assert!("fra".parse::<Region>().is_err());
    }
}
