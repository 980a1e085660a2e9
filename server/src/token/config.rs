//! `[hub.authorization]`: how the access token (`at`) of a hub's devices is obtained, and the
//! checks that reject an unusable section when the config is loaded or a hub is posted.

use serde::{Deserialize, Serialize};

/// Claim (and, for `oauth2`, form field) carrying the owner UUID unless configured otherwise.
pub const DEFAULT_OWNER_CLAIM: &str = "https://plgd.dev/owner";
/// Claim (and, for `oauth2`, form field) carrying the device id unless configured otherwise.
pub const DEFAULT_DEVICE_ID_CLAIM: &str = "https://plgd.dev/deviceId";
/// Lifetime of a DPS-signed token unless configured otherwise, seconds.
pub const DEFAULT_JWT_VALIDITY_S: u64 = 3600;
/// Allowed lifetimes of a DPS-signed token, seconds (one second to 366 days).
pub const JWT_VALIDITY_RANGE_S: std::ops::RangeInclusive<u64> = 1..=366 * 24 * 3600;
/// Deadline of one token-endpoint request unless configured otherwise, milliseconds.
pub const DEFAULT_OAUTH2_TIMEOUT_MS: u64 = 2000;
/// Allowed token-endpoint deadlines, milliseconds: at most 5 s, half of the default handshake
/// timeout, so a device waiting for a token is answered long before it gives up.
pub const OAUTH2_TIMEOUT_RANGE_MS: std::ops::RangeInclusive<u64> = 1..=5000;
/// Max-Age of the 5.03 a device gets when its token cannot be obtained, unless configured.
pub const DEFAULT_RETRY_AFTER_S: u32 = 10;
/// Allowed Max-Age values of that 5.03, seconds.
pub const RETRY_AFTER_RANGE_S: std::ops::RangeInclusive<u32> = 1..=3600;

/// Which provider issues a hub's access tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    /// The DPS signs the token itself (ES256); the default.
    #[default]
    Jwt,
    /// OAuth 2.0 client-credentials grant against the hub's token endpoint.
    Oauth2,
}

impl ProviderKind {
    /// The name used in the config, the records and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Jwt => "jwt",
            ProviderKind::Oauth2 => "oauth2",
        }
    }
}

/// `[hub.authorization]` as written (absent: provider `jwt` with every default).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// `"jwt"` (default) or `"oauth2"`.
    #[serde(default)]
    pub provider: ProviderKind,
    /// Claim naming the owner (ownerUUID).
    #[serde(default = "default_owner_claim")]
    pub owner_claim: String,
    /// Claim naming the device id (`di` of the request).
    #[serde(default = "default_device_id_claim")]
    pub device_id_claim: String,
    /// Settings of the `jwt` provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// Settings of the `oauth2` provider (required when it is the provider).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Config>,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        Self {
            provider: ProviderKind::Jwt,
            owner_claim: default_owner_claim(),
            device_id_claim: default_device_id_claim(),
            jwt: None,
            oauth2: None,
        }
    }
}

fn default_owner_claim() -> String {
    DEFAULT_OWNER_CLAIM.into()
}

fn default_device_id_claim() -> String {
    DEFAULT_DEVICE_ID_CLAIM.into()
}

/// `[hub.authorization.jwt]`: tokens the DPS signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// P-256 private key, PEM (PKCS#8 or SEC1), relative to the config file. Absent: a key the
    /// server generates at start (its tokens do not survive a restart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_key: Option<String>,
    /// The `aud` claim; default: the hub id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Token lifetime, seconds (see [`JWT_VALIDITY_RANGE_S`]).
    #[serde(default = "default_validity")]
    pub validity_s: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            signing_key: None,
            audience: None,
            validity_s: DEFAULT_JWT_VALIDITY_S,
        }
    }
}

fn default_validity() -> u64 {
    DEFAULT_JWT_VALIDITY_S
}

/// How the DPS authenticates itself to the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 §2.3.1; the default).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` as form values.
    ClientSecretPost,
}

/// `[hub.authorization.oauth2]`: the hub's OAuth 2.0 token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// Token endpoint, `http://` or `https://`.
    pub token_url: String,
    /// The DPS's client id there.
    pub client_id: String,
    /// File holding the client secret (relative to the config file; surrounding whitespace is
    /// trimmed).
    pub client_secret_file: String,
    /// Sent as the `audience` form value when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Sent space-separated as `scope` when not empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Client authentication (default `client_secret_basic`).
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// CA certificates (PEM, relative to the config file) trusted for an `https` endpoint instead
    /// of the built-in web roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    /// Deadline of one token request, milliseconds (see [`OAUTH2_TIMEOUT_RANGE_MS`]).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Max-Age of the 5.03 answered when no token could be obtained, seconds.
    #[serde(default = "default_retry_after")]
    pub retry_after_s: u32,
}

fn default_timeout() -> u64 {
    DEFAULT_OAUTH2_TIMEOUT_MS
}

fn default_retry_after() -> u32 {
    DEFAULT_RETRY_AFTER_S
}

/// An unusable `[hub.authorization]`: which hub, which key, why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hub {hub}: authorization.{key}: {reason}")]
pub struct AuthorizationError {
    /// The hub (its id as written).
    pub hub: String,
    /// The offending key below `authorization`, e.g. `jwt.validity_s`.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

impl AuthorizationConfig {
    /// Check the values that need no file: ranges, required keys, URL shape. `hub` names the
    /// hub in the error.
    pub fn validate(&self, hub: &str) -> Result<(), AuthorizationError> {
        let bad = |key, reason: String| AuthorizationError {
            hub: hub.to_owned(),
            key,
            reason,
        };
        if self.owner_claim.trim().is_empty() {
            return Err(bad("owner_claim", "must not be empty".into()));
        }
        if self.device_id_claim.trim().is_empty() {
            return Err(bad("device_id_claim", "must not be empty".into()));
        }
        if self.owner_claim == self.device_id_claim {
            return Err(bad(
                "device_id_claim",
                format!("must differ from owner_claim ({:?})", self.owner_claim),
            ));
        }
        if let Some(jwt) = &self.jwt {
            if !JWT_VALIDITY_RANGE_S.contains(&jwt.validity_s) {
                return Err(bad(
                    "jwt.validity_s",
                    out_of_range(jwt.validity_s, &JWT_VALIDITY_RANGE_S),
                ));
            }
            if jwt.audience.as_deref().is_some_and(|a| a.trim().is_empty()) {
                return Err(bad(
                    "jwt.audience",
                    "must not be empty (leave it out for the hub id)".into(),
                ));
            }
        }
        match (&self.oauth2, self.provider) {
            (None, ProviderKind::Oauth2) => Err(bad(
                "oauth2",
                "provider \"oauth2\" needs an [hub.authorization.oauth2] section".into(),
            )),
            (Some(o), _) => o.validate(&bad),
            (None, ProviderKind::Jwt) => Ok(()),
        }
    }
}

impl OAuth2Config {
    fn validate(
        &self,
        bad: &dyn Fn(&'static str, String) -> AuthorizationError,
    ) -> Result<(), AuthorizationError> {
        let uri: Result<hyper::Uri, _> = self.token_url.parse();
        let scheme_ok = uri
            .as_ref()
            .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
        if !scheme_ok {
            return Err(bad(
                "oauth2.token_url",
                format!("{:?} is not an http:// or https:// URL", self.token_url),
            ));
        }
        if self.client_id.trim().is_empty() {
            return Err(bad("oauth2.client_id", "must not be empty".into()));
        }
        if self.client_secret_file.trim().is_empty() {
            return Err(bad("oauth2.client_secret_file", "must not be empty".into()));
        }
        if !OAUTH2_TIMEOUT_RANGE_MS.contains(&self.timeout_ms) {
            return Err(bad(
                "oauth2.timeout_ms",
                out_of_range(self.timeout_ms, &OAUTH2_TIMEOUT_RANGE_MS),
            ));
        }
        if !RETRY_AFTER_RANGE_S.contains(&self.retry_after_s) {
            return Err(bad(
                "oauth2.retry_after_s",
                out_of_range(self.retry_after_s, &RETRY_AFTER_RANGE_S),
            ));
        }
        Ok(())
    }
}

fn out_of_range<T: std::fmt::Display>(value: T, range: &std::ops::RangeInclusive<T>) -> String {
    format!(
        "{value} is out of range (allowed {}..={})",
        range.start(),
        range.end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oauth2() -> OAuth2Config {
        OAuth2Config {
            token_url: "http://127.0.0.1:9/token".into(),
            client_id: "dps".into(),
            client_secret_file: "secret".into(),
            audience: None,
            scopes: vec![],
            client_auth: ClientAuth::default(),
            ca_file: None,
            timeout_ms: DEFAULT_OAUTH2_TIMEOUT_MS,
            retry_after_s: DEFAULT_RETRY_AFTER_S,
        }
    }

    fn with_oauth2(o: OAuth2Config) -> AuthorizationConfig {
        AuthorizationConfig {
            provider: ProviderKind::Oauth2,
            oauth2: Some(o),
            ..AuthorizationConfig::default()
        }
    }

    fn key_of(c: &AuthorizationConfig) -> &'static str {
        c.validate("h").expect_err("invalid").key
    }

    #[test]
    fn defaults_and_a_complete_oauth2_section_are_valid() {
        AuthorizationConfig::default()
            .validate("h")
            .expect("default");
        with_oauth2(oauth2()).validate("h").expect("oauth2");
        let parsed: AuthorizationConfig = toml::from_str("").expect("empty table");
        assert_eq!(parsed, AuthorizationConfig::default());
        assert_eq!(parsed.owner_claim, "https://plgd.dev/owner");
        assert_eq!(parsed.device_id_claim, "https://plgd.dev/deviceId");
    }

    #[test]
    fn zero_validity_names_the_key_and_the_range() {
        let c = AuthorizationConfig {
            jwt: Some(JwtConfig {
                validity_s: 0,
                ..JwtConfig::default()
            }),
            ..AuthorizationConfig::default()
        };
        let e = c.validate("3a6b").expect_err("zero");
        assert_eq!(e.key, "jwt.validity_s");
        let msg = e.to_string();
        assert!(
            msg.contains("hub 3a6b")
                && msg.contains("authorization.jwt.validity_s")
                && msg.contains("1..=31622400"),
            "{msg}"
        );
    }

    #[test]
    fn empty_claim_names_are_refused() {
        let c = AuthorizationConfig {
            owner_claim: " ".into(),
            ..AuthorizationConfig::default()
        };
        assert_eq!(key_of(&c), "owner_claim");
        let c = AuthorizationConfig {
            device_id_claim: String::new(),
            ..AuthorizationConfig::default()
        };
        assert_eq!(key_of(&c), "device_id_claim");
        let c = AuthorizationConfig {
            device_id_claim: DEFAULT_OWNER_CLAIM.into(),
            ..AuthorizationConfig::default()
        };
        assert_eq!(key_of(&c), "device_id_claim");
    }

    #[test]
    fn empty_jwt_audience_is_refused() {
        let c = AuthorizationConfig {
            jwt: Some(JwtConfig {
                audience: Some(String::new()),
                ..JwtConfig::default()
            }),
            ..AuthorizationConfig::default()
        };
        assert_eq!(key_of(&c), "jwt.audience");
    }

    #[test]
    fn oauth2_provider_needs_its_section() {
        let c = AuthorizationConfig {
            provider: ProviderKind::Oauth2,
            ..AuthorizationConfig::default()
        };
        assert_eq!(key_of(&c), "oauth2");
    }

    #[test]
    fn oauth2_token_url_must_be_http_or_https() {
        for url in ["ftp://x/token", "not a url", "/token", ""] {
            let mut o = oauth2();
            o.token_url = url.into();
            assert_eq!(key_of(&with_oauth2(o)), "oauth2.token_url", "{url}");
        }
        let mut o = oauth2();
        o.token_url = "https://auth.example/oauth/token".into();
        with_oauth2(o).validate("h").expect("https");
    }

    #[test]
    fn oauth2_client_id_and_secret_file_are_required() {
        let mut o = oauth2();
        o.client_id = String::new();
        assert_eq!(key_of(&with_oauth2(o)), "oauth2.client_id");
        let mut o = oauth2();
        o.client_secret_file = String::new();
        assert_eq!(key_of(&with_oauth2(o)), "oauth2.client_secret_file");
    }

    #[test]
    fn oauth2_timeout_and_retry_after_are_bounded() {
        for t in [0, 5001] {
            let mut o = oauth2();
            o.timeout_ms = t;
            let e = with_oauth2(o).validate("h").expect_err("timeout");
            assert_eq!(e.key, "oauth2.timeout_ms");
            assert!(e.reason.contains("1..=5000"), "{e}");
        }
        let mut o = oauth2();
        o.retry_after_s = 0;
        assert_eq!(key_of(&with_oauth2(o)), "oauth2.retry_after_s");
    }

    #[test]
    fn unknown_keys_and_providers_are_refused() {
        assert!(toml::from_str::<AuthorizationConfig>("provider = \"ldap\"").is_err());
        assert!(toml::from_str::<AuthorizationConfig>("colour = 1").is_err());
        let c: AuthorizationConfig =
            toml::from_str("provider = \"oauth2\"\n[oauth2]\ntoken_url = \"http://a/t\"\nclient_id = \"c\"\nclient_secret_file = \"s\"\nclient_auth = \"client_secret_post\"\n")
                .expect("oauth2 table");
        assert_eq!(
            c.oauth2.map(|o| o.client_auth),
            Some(ClientAuth::ClientSecretPost)
        );
    }
}
