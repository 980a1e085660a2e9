//! The `oauth2` provider: an OAuth 2.0 client-credentials grant (RFC 6749 §4.4) against the hub's
//! token endpoint, with the result cached per (owner, device) until shortly before it expires.
//!
//! What plgd does (plgd-dev/hub `device-provisioning-service`: `service/cloudConfiguration.go`,
//! `service/linkedHub.go`, `security/oauth/clientcredentials/{cache,config}.go`): the form carries
//! `grant_type=client_credentials`, the client id and secret (Go's oauth2 package: HTTP Basic
//! first), `scope` (space-separated), `audience` when configured, and one extra form value per
//! claim, named after the configured claim itself: `<ownerClaim>=<owner>` and, when a device-id
//! claim is configured, `<deviceIdClaim>=<di>`. The returned access token is parsed as a JWT and
//! each of those claims must equal the value sent (`checkRequiredClaims`). plgd sends the group's
//! owner string; this server sends the ownerUUID, the owner the device is told in the ownership
//! step, so the hub sees one owner id for the device.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use hyper::header::AUTHORIZATION;
use hyper::Uri;
use serde::Deserialize;
use time::OffsetDateTime;

use super::config::{ClientAuth, OAuth2Config};
use super::error::TokenError;
use super::http::{form_encode, form_escape, HttpClient, HttpError};
use super::jwt::unverified_claims;

/// Cached tokens at most per hub; beyond, expired ones are dropped, then an arbitrary one.
pub const CACHE_CAPACITY: usize = 100_000;
/// A cached token is handed out only while it has at least this long left (or a quarter of its
/// lifetime, if shorter), so the device still has time to use it.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// A token obtained from the endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obtained {
    /// The access token.
    pub token: String,
    /// When it expires, if the endpoint said.
    pub expires_at: Option<OffsetDateTime>,
    /// Whether it came from the cache.
    pub cached: bool,
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    expires_at: OffsetDateTime,
    /// Until when it is handed out.
    fresh_until: Instant,
}

/// The hub's token endpoint and its cache.
pub struct OAuth2Client {
    url: Uri,
    client_id: String,
    secret: String,
    audience: Option<String>,
    scopes: Vec<String>,
    client_auth: ClientAuth,
    owner_claim: String,
    device_id_claim: String,
    timeout: Duration,
    retry_after_s: u32,
    http: HttpClient,
    cache: Mutex<HashMap<(String, String), Cached>>,
}

impl std::fmt::Debug for OAuth2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Client")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl OAuth2Client {
    /// A client for `config` (already validated) with the secret read from its file and the
    /// claims under which owner and device id are sent and checked.
    pub fn new(
        config: &OAuth2Config,
        secret: String,
        http: HttpClient,
        owner_claim: &str,
        device_id_claim: &str,
    ) -> Result<Self, String> {
        let url = config
            .token_url
            .parse()
            .map_err(|e| format!("token_url {:?}: {e}", config.token_url))?;
        Ok(Self {
            url,
            client_id: config.client_id.clone(),
            secret,
            audience: config.audience.clone(),
            scopes: config.scopes.clone(),
            client_auth: config.client_auth,
            owner_claim: owner_claim.to_owned(),
            device_id_claim: device_id_claim.to_owned(),
            timeout: Duration::from_millis(config.timeout_ms),
            retry_after_s: config.retry_after_s,
            http,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Max-Age of the 5.03 a device gets when this endpoint fails it.
    pub fn retry_after_s(&self) -> u32 {
        self.retry_after_s
    }

    /// A token for `owner` and `device_id`: the cached one while fresh, else a new one from the
    /// endpoint within the configured deadline.
    pub async fn token(&self, owner: &str, device_id: &str) -> Result<Obtained, TokenError> {
        let key = (owner.to_owned(), device_id.to_owned());
        let now = Instant::now();
        if let Some(c) = self.lock_cache().get(&key).filter(|c| c.fresh_until > now) {
            return Ok(Obtained {
                token: c.token.clone(),
                expires_at: Some(c.expires_at),
                cached: true,
            });
        }
        let obtained = tokio::time::timeout(self.timeout, self.fetch(owner, device_id))
            .await
            .map_err(|_| TokenError::Timeout(self.timeout))??;
        if let Some(expires_at) = obtained.expires_at {
            let left = expires_at - OffsetDateTime::now_utc();
            let left = Duration::try_from(left).unwrap_or_default();
            let margin = REFRESH_MARGIN.min(left / 4);
            if let Some(fresh) = left.checked_sub(margin).filter(|d| !d.is_zero()) {
                self.insert(
                    key,
                    Cached {
                        token: obtained.token.clone(),
                        expires_at,
                        fresh_until: now + fresh,
                    },
                );
            }
        }
        Ok(obtained)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), Cached>> {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn insert(&self, key: (String, String), value: Cached) {
        let mut cache = self.lock_cache();
        if cache.len() >= CACHE_CAPACITY && !cache.contains_key(&key) {
            let now = Instant::now();
            cache.retain(|_, c| c.fresh_until > now);
            if cache.len() >= CACHE_CAPACITY {
                if let Some(k) = cache.keys().next().cloned() {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(key, value);
    }

    /// The form of one token request, in plgd's terms (see the module doc).
    fn form(&self, owner: &str, device_id: &str) -> String {
        let scope = self.scopes.join(" ");
        let mut pairs = vec![("grant_type", "client_credentials")];
        if self.client_auth == ClientAuth::ClientSecretPost {
            pairs.push(("client_id", &self.client_id));
            pairs.push(("client_secret", &self.secret));
        }
        if !scope.is_empty() {
            pairs.push(("scope", &scope));
        }
        if let Some(aud) = &self.audience {
            pairs.push(("audience", aud));
        }
        pairs.push((&self.owner_claim, owner));
        pairs.push((&self.device_id_claim, device_id));
        form_encode(pairs)
    }

    async fn fetch(&self, owner: &str, device_id: &str) -> Result<Obtained, TokenError> {
        let mut headers = Vec::new();
        if self.client_auth == ClientAuth::ClientSecretBasic {
            // RFC 6749 §2.3.1: id and secret are form-encoded before the Basic encoding.
            let pair = format!(
                "{}:{}",
                form_escape(&self.client_id),
                form_escape(&self.secret)
            );
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            headers.push((AUTHORIZATION, format!("Basic {b64}")));
        }
        let (status, body) = self
            .http
            .post_form(&self.url, &headers, self.form(owner, device_id))
            .await
            .map_err(|e| match e {
                HttpError::Connect { .. } | HttpError::Url(_) => {
                    TokenError::Unreachable(e.to_string())
                }
                HttpError::Exchange(_) => TokenError::Response(e.to_string()),
            })?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(TokenError::Status(status.as_u16(), text));
        }
        let resp: TokenResponse = serde_json::from_slice(&body)
            .map_err(|e| TokenError::Response(format!("token response: {e}")))?;
        if resp.access_token.is_empty() {
            return Err(TokenError::Response("empty access_token".into()));
        }
        let claims = unverified_claims(&resp.access_token);
        if let Some(claims) = &claims {
            for (claim, want) in [
                (&self.owner_claim, owner),
                (&self.device_id_claim, device_id),
            ] {
                match claims.get(claim.as_str()) {
                    Some(serde_json::Value::String(got)) if got == want => {}
                    got => {
                        return Err(TokenError::Claims(format!(
                            "claim {claim:?}: expected {want:?}, got {}",
                            got.map_or("nothing".to_owned(), ToString::to_string)
                        )))
                    }
                }
            }
        }
        let from_exp = claims
            .as_ref()
            .and_then(|c| c.get("exp"))
            .and_then(serde_json::Value::as_i64)
            .and_then(|exp| OffsetDateTime::from_unix_timestamp(exp).ok());
        let expires_at = resp
            .expires_in
            .and_then(|s| i64::try_from(s).ok())
            .map(|s| OffsetDateTime::now_utc() + time::Duration::seconds(s))
            .or(from_exp);
        Ok(Obtained {
            token: resp.access_token,
            expires_at,
            cached: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::config::{DEFAULT_DEVICE_ID_CLAIM, DEFAULT_OWNER_CLAIM};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn client(url: &str, timeout_ms: u64) -> OAuth2Client {
        let config = OAuth2Config {
            token_url: url.into(),
            client_id: "dps".into(),
            client_secret_file: "unused".into(),
            audience: Some("https://hub".into()),
            scopes: vec!["a".into(), "b".into()],
            client_auth: ClientAuth::ClientSecretBasic,
            ca_file: None,
            timeout_ms,
            retry_after_s: 7,
        };
        OAuth2Client::new(
            &config,
            "s3cret".into(),
            HttpClient::new(None).expect("http"),
            DEFAULT_OWNER_CLAIM,
            DEFAULT_DEVICE_ID_CLAIM,
        )
        .expect("client")
    }

    /// A token endpoint answering every request with `body` (status 200), counting requests.
    async fn endpoint(body: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = count.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        (url, count)
    }

    fn jwt(claims: serde_json::Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        format!("{}.{}.sig", b64(b"{}"), b64(claims.to_string().as_bytes()))
    }

    #[test]
    fn form_sends_owner_and_device_under_their_claim_names() {
        let c = client("http://127.0.0.1:9/token", 100);
        assert_eq!(
            c.form("o-1", "d-1"),
            "grant_type=client_credentials&scope=a+b&audience=https%3A%2F%2Fhub\
             &https%3A%2F%2Fplgd.dev%2Fowner=o-1&https%3A%2F%2Fplgd.dev%2FdeviceId=d-1"
        );
    }

    #[tokio::test]
    async fn token_is_cached_per_owner_and_device() {
        let token = jwt(serde_json::json!({
            DEFAULT_OWNER_CLAIM: "o", DEFAULT_DEVICE_ID_CLAIM: "d",
        }));
        let (url, count) = endpoint(format!(
            r#"{{"access_token":"{token}","expires_in":300,"token_type":"Bearer"}}"#
        ))
        .await;
        let c = client(&url, 2000);
        let first = c.token("o", "d").await.expect("first");
        assert!(!first.cached && first.token == token && first.expires_at.is_some());
        let second = c.token("o", "d").await.expect("second");
        assert!(second.cached && second.token == token);
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
        // Another device is another request (whose claims do not match this endpoint's token).
        assert!(matches!(
            c.token("o", "other").await,
            Err(TokenError::Claims(_))
        ));
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn opaque_token_without_expiry_is_used_but_not_cached() {
        let (url, count) = endpoint(r#"{"access_token":"opaque"}"#.into()).await;
        let c = client(&url, 2000);
        for _ in 0..2 {
            let t = c.token("o", "d").await.expect("token");
            assert_eq!(
                (t.token.as_str(), t.cached, t.expires_at),
                ("opaque", false, None)
            );
        }
        assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn bad_answers_are_errors() {
        let (url, _) = endpoint(r#"{"token":"x"}"#.into()).await;
        assert!(matches!(
            client(&url, 2000).token("o", "d").await,
            Err(TokenError::Response(_))
        ));
        let (url, _) = endpoint(r#"{"access_token":""}"#.into()).await;
        assert!(matches!(
            client(&url, 2000).token("o", "d").await,
            Err(TokenError::Response(_))
        ));
    }

    #[tokio::test]
    async fn silent_endpoint_times_out_and_closed_port_is_unreachable() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}/token", listener.local_addr().expect("addr"));
        // Accepts (the backlog does) but never answers.
        let c = client(&url, 200);
        let started = Instant::now();
        assert!(matches!(
            c.token("o", "d").await,
            Err(TokenError::Timeout(_))
        ));
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
        assert!(matches!(
            c.token("o", "d").await,
            Err(TokenError::Unreachable(_))
        ));
        assert_eq!(c.retry_after_s(), 7);
    }
}
