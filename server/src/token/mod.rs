//! Access tokens (`at` of the cloud configuration): each hub's authorization provider, built from
//! its `[hub.authorization]` section, issues one per device.
//!
//! - `jwt` (the default): the DPS signs an ES256 JWT itself ([`jwt`]); its public keys are served
//!   as a JWK set by the admin API (`/.well-known/jwks.json`).
//! - `oauth2`: client-credentials grant against the hub's token endpoint ([`oauth2`]), cached.
//!
//! A provider failure is a [`TokenError`]: the device is answered 5.03 with Max-Age, the failure
//! is logged and counted ([`TokenMetrics`]).

pub mod config;
mod error;
pub mod http;
pub mod jwt;
pub mod oauth2;

use std::fmt::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

pub use config::{AuthorizationConfig, AuthorizationError, ProviderKind};
pub use error::TokenError;
use jwt::SigningKey;
use oauth2::OAuth2Client;

/// `iss` of DPS-signed tokens until the admin API is bound (or `[admin] issuer` is set).
pub const DEFAULT_ISSUER: &str = "dps-server";

/// What the provisioning record keeps about a device's token (never the token itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenInfo {
    /// The provider that issued it.
    pub provider: ProviderKind,
    /// Its expiry, when known.
    pub expires_at: Option<OffsetDateTime>,
}

/// A token for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The access token sent as `at`.
    pub token: String,
    /// Provider and expiry.
    pub info: TokenInfo,
}

enum Provider {
    Jwt {
        /// `None`: the server's generated key.
        key: Option<Arc<SigningKey>>,
        audience: Option<String>,
        validity: Duration,
    },
    OAuth2(Box<OAuth2Client>),
}

/// One hub's authorization provider, built from its `[hub.authorization]`.
pub struct Authority {
    config: AuthorizationConfig,
    provider: Provider,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("provider", &self.config.provider)
            .finish_non_exhaustive()
    }
}

/// Two authorities are equal when built from the same section.
impl PartialEq for Authority {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
    }
}

impl Eq for Authority {}

impl Default for Authority {
    /// Provider `jwt` with every default: the server's generated key, `aud` = the hub id.
    fn default() -> Self {
        Self {
            config: AuthorizationConfig::default(),
            provider: Provider::Jwt {
                key: None,
                audience: None,
                validity: Duration::from_secs(config::DEFAULT_JWT_VALIDITY_S),
            },
        }
    }
}

impl Authority {
    /// Validate `config` (`None`: every default) and load the files it names, relative to
    /// `base`. `hub` names the hub in errors.
    pub fn from_config(
        config: Option<&AuthorizationConfig>,
        hub: &str,
        base: &Path,
    ) -> Result<Self, String> {
        let config = config.cloned().unwrap_or_default();
        config
            .validate(hub)
            .map_err(|e| format!("{hub}: authorization.{}: {}", e.key, e.reason))?;
        let read = |key: &str, file: &str| {
            let path = base.join(file);
            std::fs::read(&path)
                .map_err(|e| format!("{hub}: authorization.{key} {}: {e}", path.display()))
        };
        let provider = match config.provider {
            ProviderKind::Jwt => {
                let jwt = config.jwt.clone().unwrap_or_default();
                let key = match &jwt.signing_key {
                    None => None,
                    Some(file) => {
                        let pem = read("jwt.signing_key", file)?;
                        let key = SigningKey::from_pem(&pem).map_err(|e| {
                            format!(
                                "{hub}: authorization.jwt.signing_key {}: {e}",
                                base.join(file).display()
                            )
                        })?;
                        Some(Arc::new(key))
                    }
                };
                Provider::Jwt {
                    key,
                    audience: jwt.audience,
                    validity: Duration::from_secs(jwt.validity_s),
                }
            }
            ProviderKind::Oauth2 => {
                let Some(o) = &config.oauth2 else {
                    return Err(format!("{hub}: authorization.oauth2 is missing"));
                };
                let secret = read("oauth2.client_secret_file", &o.client_secret_file)?;
                let secret = String::from_utf8_lossy(&secret).trim().to_owned();
                let ca = match &o.ca_file {
                    Some(f) => Some((f.as_str(), read("oauth2.ca_file", f)?)),
                    None => None,
                };
                let http = http::HttpClient::new(ca.as_ref().map(|(f, pem)| (*f, pem.as_slice())))
                    .map_err(|e| format!("{hub}: authorization.oauth2: {e}"))?;
                let client = OAuth2Client::new(
                    o,
                    secret,
                    http,
                    &config.owner_claim,
                    &config.device_id_claim,
                )
                .map_err(|e| format!("{hub}: authorization.oauth2.{e}"))?;
                Provider::OAuth2(Box::new(client))
            }
        };
        Ok(Self { config, provider })
    }

    /// The section it was built from (defaults filled in).
    pub fn config(&self) -> &AuthorizationConfig {
        &self.config
    }

    /// The provider kind.
    pub fn kind(&self) -> ProviderKind {
        self.config.provider
    }

    /// Max-Age of the 5.03 a device gets when this provider fails it.
    pub fn retry_after_s(&self) -> u32 {
        match &self.provider {
            Provider::OAuth2(c) => c.retry_after_s(),
            Provider::Jwt { .. } => config::DEFAULT_RETRY_AFTER_S,
        }
    }

    /// For `jwt`: its configured key (`Some(None)` when it uses the server's generated key).
    fn jwt_key(&self) -> Option<Option<&Arc<SigningKey>>> {
        match &self.provider {
            Provider::Jwt { key, .. } => Some(key.as_ref()),
            Provider::OAuth2(_) => None,
        }
    }
}

/// Counters of issued tokens and provider failures, exported by `/metrics`.
#[derive(Debug, Default)]
pub struct TokenMetrics {
    signed: AtomicU64,
    fetched: AtomicU64,
    cached: AtomicU64,
    failures: [[AtomicU64; TokenError::LABELS.len()]; 2],
}

impl TokenMetrics {
    /// Tokens handed out by `provider`; for `oauth2`, `(from the endpoint, from the cache)`.
    pub fn issued(&self, provider: ProviderKind) -> (u64, u64) {
        match provider {
            ProviderKind::Jwt => (self.signed.load(Ordering::Relaxed), 0),
            ProviderKind::Oauth2 => (
                self.fetched.load(Ordering::Relaxed),
                self.cached.load(Ordering::Relaxed),
            ),
        }
    }

    /// Failures of `provider` with this [`TokenError::label`].
    pub fn failures(&self, provider: ProviderKind, label: &str) -> u64 {
        TokenError::LABELS
            .iter()
            .position(|l| *l == label)
            .map_or(0, |i| {
                self.failures[provider as usize][i].load(Ordering::Relaxed)
            })
    }

    /// Append the token counters in the Prometheus text format.
    pub fn write_prometheus(&self, out: &mut String) {
        out.push_str("# HELP dps_tokens_issued_total Access tokens handed to devices, by provider and source.\n# TYPE dps_tokens_issued_total counter\n");
        for (provider, source, n) in [
            ("jwt", "signed", &self.signed),
            ("oauth2", "endpoint", &self.fetched),
            ("oauth2", "cache", &self.cached),
        ] {
            let _ = writeln!(
                out,
                "dps_tokens_issued_total{{provider=\"{provider}\",source=\"{source}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP dps_token_failures_total Devices answered 5.03 because no access token could be had, by provider and reason.\n# TYPE dps_token_failures_total counter\n");
        for kind in [ProviderKind::Jwt, ProviderKind::Oauth2] {
            for (label, n) in TokenError::LABELS.iter().zip(&self.failures[kind as usize]) {
                let _ = writeln!(
                    out,
                    "dps_token_failures_total{{provider=\"{}\",reason=\"{label}\"}} {}",
                    kind.as_str(),
                    n.load(Ordering::Relaxed)
                );
            }
        }
    }
}

/// The server-wide part of token issuing: the issuer, the generated fallback key, the counters.
pub struct Tokens {
    issuer: ArcSwap<String>,
    fallback: Option<Arc<SigningKey>>,
    metrics: Arc<TokenMetrics>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("issuer", &self.issuer.load())
            .finish_non_exhaustive()
    }
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokens {
    /// Issuer [`DEFAULT_ISSUER`], a freshly generated fallback key, zero counters.
    pub fn new() -> Self {
        Self {
            issuer: ArcSwap::from_pointee(DEFAULT_ISSUER.to_owned()),
            fallback: SigningKey::generate().ok().map(Arc::new),
            metrics: Arc::new(TokenMetrics::default()),
        }
    }

    /// The `iss` of DPS-signed tokens (and `issuer` of the OpenID configuration).
    pub fn issuer(&self) -> Arc<String> {
        self.issuer.load_full()
    }

    /// Change the issuer (the admin API's URL once it is bound, or `[admin] issuer`).
    pub fn set_issuer(&self, issuer: String) {
        self.issuer.store(Arc::new(issuer));
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<TokenMetrics> {
        &self.metrics
    }

    /// The public keys that verify tokens of `authorities` (each key once), as a JWK set.
    pub fn jwks<'a>(&self, authorities: impl IntoIterator<Item = &'a Authority>) -> Value {
        let mut keys: Vec<Value> = Vec::new();
        let mut push = |k: &SigningKey| {
            if !keys.iter().any(|j| j["kid"] == k.kid()) {
                keys.push(k.jwk().clone());
            }
        };
        for a in authorities {
            match a.jwt_key() {
                Some(Some(k)) => push(k),
                Some(None) => {
                    if let Some(k) = &self.fallback {
                        push(k);
                    }
                }
                None => {}
            }
        }
        serde_json::json!({ "keys": keys })
    }

    /// A token from `authority` for the device `device_id` of `owner` on `hub`. A failure is
    /// logged and counted before it is returned.
    pub async fn issue(
        &self,
        authority: &Authority,
        hub: Uuid,
        owner: Uuid,
        device_id: &str,
    ) -> Result<IssuedToken, TokenError> {
        let result = self.try_issue(authority, hub, owner, device_id).await;
        let kind = authority.kind();
        match &result {
            Ok(_) => {}
            Err(e) => {
                self.metrics.failures[kind as usize][e.index()].fetch_add(1, Ordering::Relaxed);
                tracing::warn!(hub = %hub, owner = %owner, device = %device_id, provider = kind.as_str(), reason = e.label(), error = %e, "no access token for the device");
            }
        }
        result
    }

    async fn try_issue(
        &self,
        authority: &Authority,
        hub: Uuid,
        owner: Uuid,
        device_id: &str,
    ) -> Result<IssuedToken, TokenError> {
        let c = &authority.config;
        match &authority.provider {
            Provider::Jwt {
                key,
                audience,
                validity,
            } => {
                let key = key
                    .as_ref()
                    .or(self.fallback.as_ref())
                    .ok_or_else(|| TokenError::Sign("no signing key".into()))?;
                let now = OffsetDateTime::now_utc();
                let validity_s = i64::try_from(validity.as_secs()).unwrap_or(i64::MAX);
                let exp = now.unix_timestamp().saturating_add(validity_s);
                let mut claims = Map::new();
                claims.insert("iss".into(), self.issuer().as_str().into());
                claims.insert(
                    "aud".into(),
                    audience.clone().unwrap_or_else(|| hub.to_string()).into(),
                );
                claims.insert("iat".into(), now.unix_timestamp().into());
                claims.insert("exp".into(), exp.into());
                claims.insert("jti".into(), Uuid::new_v4().to_string().into());
                claims.insert(c.owner_claim.clone(), owner.to_string().into());
                claims.insert(c.device_id_claim.clone(), device_id.into());
                let token = key
                    .sign(&claims)
                    .map_err(|e| TokenError::Sign(e.to_string()))?;
                self.metrics.signed.fetch_add(1, Ordering::Relaxed);
                Ok(IssuedToken {
                    token,
                    info: TokenInfo {
                        provider: ProviderKind::Jwt,
                        expires_at: OffsetDateTime::from_unix_timestamp(exp).ok(),
                    },
                })
            }
            Provider::OAuth2(client) => {
                let got = client.token(&owner.to_string(), device_id).await?;
                let counter = if got.cached {
                    &self.metrics.cached
                } else {
                    &self.metrics.fetched
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Ok(IssuedToken {
                    token: got.token,
                    info: TokenInfo {
                        provider: ProviderKind::Oauth2,
                        expires_at: got.expires_at,
                    },
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
