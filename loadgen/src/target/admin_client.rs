//! A small client for the DPS admin API (plain HTTP/1.1 on a trusted network, as the server
//! serves it): upsert the fleet's hub and groups, read histograms and Prometheus counters.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest admin answer read (histogram snapshots are a few hundred kB at most).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// What to do when a POST finds the id taken.
#[derive(Debug, Clone, Copy)]
enum Existing {
    /// Replace it with PUT.
    Put,
    /// Delete it, then POST again.
    DeleteAndCreate,
    /// Refuse: another generator may be using it.
    Refuse,
}

/// What setting up one object (a hub, a group, an enrollment) found on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// It was not there: this run created it.
    Created,
    /// An identical one was there (another generator of the same fleet, or an earlier run): left
    /// as it was, and not this run's to delete.
    Unchanged,
    /// A different one with the same id was there (a regenerated fleet): replaced.
    Replaced,
}

/// Whether the server's `theirs` is the definition `ours` sent: every field we send has the same
/// value there (a field the server adds, such as `static`, is not ours to compare; a field we send
/// as null or empty may be left out by the server).
fn same_definition(ours: &serde_json::Value, theirs: &serde_json::Value) -> bool {
    use serde_json::Value;
    let absent = |v: &Value| match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::String(s) => s.is_empty(),
        _ => false,
    };
    match (ours, theirs) {
        (Value::Object(o), Value::Object(t)) => o.iter().all(|(k, v)| match t.get(k) {
            Some(tv) => same_definition(v, tv),
            None => absent(v),
        }),
        (Value::String(o), Value::String(t)) => o.trim() == t.trim(),
        (Value::Array(o), Value::Array(t)) => {
            o.len() == t.len() && o.iter().zip(t).all(|(a, b)| same_definition(a, b))
        }
        (o, t) => o == t,
    }
}

/// Why an admin API call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The URL is not `http://host:port`.
    #[error("target.admin {url:?}: {why}")]
    Url {
        /// As given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The admin API could not be reached.
    #[error("admin API {authority}: {source}")]
    Connect {
        /// `host:port`.
        authority: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// HTTP failed (handshake, request, body).
    #[error("admin API {method} {path}: {source}")]
    Http {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
        /// hyper's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The API answered with an error status.
    #[error("admin API {method} {path}: {status}: {body}")]
    Status {
        /// The request method.
        method: Method,
        /// The request path.
        path: String,
        /// The status.
        status: StatusCode,
        /// Its body, as text.
        body: String,
    },
    /// A request body could not be encoded or an answer decoded.
    #[error("admin API {path}: JSON: {source}")]
    Json {
        /// The request path.
        path: String,
        /// serde_json's error.
        source: serde_json::Error,
    },
    /// A segment found a different definition with the same id on a shared server: another
    /// build of the fleet (segments must share one) or a stale one left by an earlier run.
    #[error(
        "admin API {path}: the server holds a different definition with this id; every segment \
         must use one build of the fleet (copy the fleet cache to each generator), or, if it is \
         stale, DELETE {path} first"
    )]
    Differs {
        /// The object's path.
        path: String,
    },
    /// `/metrics` lacks a sample.
    #[error("/metrics has no {0}")]
    NoSample(String),
}

/// An admin API at `http://host:port` with an optional bearer token.
#[derive(Debug, Clone)]
pub struct AdminClient {
    authority: String,
    token: Option<String>,
}

impl AdminClient {
    /// A client for `url` (`http://host:port`, a trailing `/` allowed).
    pub fn new(url: &str, token: Option<String>) -> Result<Self, AdminError> {
        let bad = |why| AdminError::Url {
            url: url.to_owned(),
            why,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported (the admin API is plain HTTP)"))?;
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(bad("expected http://host:port without a path"));
        }
        Ok(Self {
            authority: authority.to_owned(),
            token,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), AdminError> {
        let http = |source: Box<dyn std::error::Error + Send + Sync>| AdminError::Http {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let tcp = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|source| AdminError::Connect {
                authority: self.authority.clone(),
                source,
            })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| http(e.into()))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if let Some(token) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            req = req.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| http(e.into()))?;
        let resp = sender.send_request(req).await.map_err(|e| http(e.into()))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(http)?
            .to_bytes();
        Ok((status, body))
    }

    fn failed(method: Method, path: &str, status: StatusCode, body: &[u8]) -> AdminError {
        AdminError::Status {
            method,
            path: path.to_owned(),
            status,
            body: String::from_utf8_lossy(body).trim().to_owned(),
        }
    }

    /// Make `value` the one with `id` under `collection`: create it, leave an identical one as
    /// it is, or replace a different one (PUT). Idempotent, so N generators of one fleet may all
    /// set it up on one server, in any order, without disturbing each other's devices.
    pub async fn upsert<T: Serialize>(
        &self,
        collection: &str,
        id: &str,
        value: &T,
    ) -> Result<Ensured, AdminError> {
        self.ensure(collection, id, value, Existing::Put).await
    }

    /// As [`AdminClient::upsert`], for collections without PUT (such as
    /// `/api/v1/tpm-enrollments`): a different existing one is deleted and created again.
    pub async fn replace<T: Serialize>(
        &self,
        collection: &str,
        id: &str,
        value: &T,
    ) -> Result<Ensured, AdminError> {
        self.ensure(collection, id, value, Existing::DeleteAndCreate)
            .await
    }

    /// Create `value`, or find it there identical; a different one is refused
    /// ([`AdminError::Differs`]), not replaced: on a server N generators share, replacing it
    /// would refuse the devices of the generator that set it up.
    pub async fn create_or_same<T: Serialize>(
        &self,
        collection: &str,
        id: &str,
        value: &T,
    ) -> Result<Ensured, AdminError> {
        self.ensure(collection, id, value, Existing::Refuse).await
    }

    /// POST `value`; on 409, compare with the existing `id` and, if it differs, deal with it as
    /// `existing` says.
    async fn ensure<T: Serialize>(
        &self,
        collection: &str,
        id: &str,
        value: &T,
        existing: Existing,
    ) -> Result<Ensured, AdminError> {
        let json_err = |source| AdminError::Json {
            path: collection.to_owned(),
            source,
        };
        let ours = serde_json::to_value(value).map_err(json_err)?;
        let json = serde_json::to_vec(&ours).map_err(json_err)?;
        let (status, body) = self
            .send(Method::POST, collection, Some(json.clone()))
            .await?;
        if status.is_success() {
            return Ok(Ensured::Created);
        }
        if status != StatusCode::CONFLICT {
            return Err(Self::failed(Method::POST, collection, status, &body));
        }
        let path = format!("{collection}/{id}");
        let theirs: serde_json::Value = self.get_json(&path).await?;
        if same_definition(&ours, &theirs) {
            return Ok(Ensured::Unchanged);
        }
        let (method, target) = match existing {
            Existing::Refuse => return Err(AdminError::Differs { path }),
            Existing::Put => (Method::PUT, path.as_str()),
            Existing::DeleteAndCreate => {
                self.delete(&path).await?;
                (Method::POST, collection)
            }
        };
        let (status, body) = self.send(method.clone(), target, Some(json)).await?;
        if status.is_success() {
            Ok(Ensured::Replaced)
        } else {
            Err(Self::failed(method, target, status, &body))
        }
    }

    /// Delete `path`.
    pub async fn delete(&self, path: &str) -> Result<(), AdminError> {
        let (status, body) = self.send(Method::DELETE, path, None).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(Self::failed(Method::DELETE, path, status, &body))
        }
    }

    /// GET `path` as JSON.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, AdminError> {
        let (status, body) = self.send(Method::GET, path, None).await?;
        if !status.is_success() {
            return Err(Self::failed(Method::GET, path, status, &body));
        }
        serde_json::from_slice(&body).map_err(|source| AdminError::Json {
            path: path.to_owned(),
            source,
        })
    }

    async fn prometheus(&self) -> Result<String, AdminError> {
        let (status, body) = self.send(Method::GET, "/metrics", None).await?;
        if !status.is_success() {
            return Err(Self::failed(Method::GET, "/metrics", status, &body));
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// A gauge without labels from `/metrics`.
    pub async fn gauge(&self, name: &str) -> Result<u64, AdminError> {
        let text = self.prometheus().await?;
        sample(&text, name).ok_or_else(|| AdminError::NoSample(name.to_owned()))
    }

    /// `dps_requests_total` of `resource` (e.g. `other`, where the TPM resources count) answered
    /// with `code` (e.g. `4.01`); 0 when the server has not answered any.
    pub async fn requests(&self, resource: &str, code: &str) -> Result<u64, AdminError> {
        let name = format!("dps_requests_total{{resource=\"{resource}\",code=\"{code}\"}}");
        Ok(sample(&self.prometheus().await?, &name).unwrap_or(0))
    }

    /// One sample of `/metrics` by its full name (labels included); 0 when absent.
    pub async fn requests_sample(&self, name: &str) -> Result<u64, AdminError> {
        Ok(sample(&self.prometheus().await?, name).unwrap_or(0))
    }

    /// `dps_rejections_total` by reason, `dps_connections_closed_total` by reason and
    /// `dps_requests_total{resource="other",code=tpm_code}`, from one read of `/metrics`.
    pub async fn counters(
        &self,
        tpm_code: &str,
    ) -> Result<(BTreeMap<String, u64>, BTreeMap<String, u64>, u64), AdminError> {
        let text = self.prometheus().await?;
        let tpm = format!("dps_requests_total{{resource=\"other\",code=\"{tpm_code}\"}}");
        Ok((
            rejections(&text),
            by_reason(&text, "dps_connections_closed_total"),
            sample(&text, &tpm).unwrap_or(0),
        ))
    }

    /// The API's URL, `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.authority)
    }

    /// `dps_rejections_total` by reason.
    pub async fn rejections(&self) -> Result<BTreeMap<String, u64>, AdminError> {
        Ok(rejections(&self.prometheus().await?))
    }

    /// `dps_connections_closed_total` by reason.
    pub async fn closes(&self) -> Result<BTreeMap<String, u64>, AdminError> {
        Ok(by_reason(
            &self.prometheus().await?,
            "dps_connections_closed_total",
        ))
    }
}

fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
}

fn rejections(text: &str) -> BTreeMap<String, u64> {
    by_reason(text, "dps_rejections_total")
}

/// The samples of `metric{reason="..."}` by reason.
fn by_reason(text: &str, metric: &str) -> BTreeMap<String, u64> {
    let prefix = format!("{metric}{{reason=\"");
    text.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .filter_map(|rest| {
            let (reason, value) = rest.split_once("\"} ")?;
            Some((reason.to_owned(), value.trim().parse::<f64>().ok()? as u64))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_prometheus_samples() {
        let text = "# HELP dps_open_connections x\ndps_open_connections 12\ndps_open_connections_other 3\ndps_rejections_total{reason=\"no_path\"} 4\ndps_rejections_total{reason=\"denied\"} 0\n";
        assert_eq!(sample(text, "dps_open_connections"), Some(12));
        assert_eq!(sample(text, "dps_missing"), None);
        let requests = "dps_requests_total{resource=\"other\",code=\"4.01\"} 7\n";
        assert_eq!(
            sample(
                requests,
                "dps_requests_total{resource=\"other\",code=\"4.01\"}"
            ),
            Some(7)
        );
        let r = rejections(text);
        assert_eq!(r.get("no_path"), Some(&4));
        assert_eq!(r.get("denied"), Some(&0));
        let closes = "dps_connections_closed_total{reason=\"shed\"} 3\ndps_connections_closed_total{reason=\"busy\"} 9\n";
        let c = by_reason(closes, "dps_connections_closed_total");
        assert_eq!((c.get("shed"), c.get("busy")), (Some(&3), Some(&9)));
    }

    #[test]
    fn a_definition_is_the_same_when_every_field_sent_is() {
        let ours = serde_json::json!({"id": "a", "name": "g", "allow": [], "psk": null,
            "chain": "-----BEGIN X-----\nAA\n-----END X-----\n", "auth": {"provider": "jwt"}});
        let theirs = serde_json::json!({"id": "a", "name": "g", "static": false,
            "chain": "-----BEGIN X-----\nAA\n-----END X-----", "auth": {"provider": "jwt", "validity_s": 3600}});
        assert!(same_definition(&ours, &theirs));
        let renamed = serde_json::json!({"id": "a", "name": "h",
            "chain": "-----BEGIN X-----\nAA\n-----END X-----\n", "auth": {"provider": "jwt"}});
        assert!(!same_definition(&ours, &renamed));
        let other_auth = serde_json::json!({"id": "a", "name": "g",
            "chain": "-----BEGIN X-----\nAA\n-----END X-----\n", "auth": {"provider": "oauth2"}});
        assert!(!same_definition(&ours, &other_auth));
        let more_allowed = serde_json::json!({"id": "a", "name": "g", "allow": ["x"],
            "chain": "-----BEGIN X-----\nAA\n-----END X-----\n", "auth": {"provider": "jwt"}});
        assert!(!same_definition(&ours, &more_allowed));
    }

    #[test]
    fn only_plain_http_urls() {
        assert!(AdminClient::new("http://127.0.0.1:8080/", None).is_ok());
        assert!(matches!(
            AdminClient::new("https://x:1", None),
            Err(AdminError::Url { .. })
        ));
        let e = AdminClient::new("http://x:1/api", None).expect_err("a path");
        assert!(e.to_string().contains("without a path"), "{e}");
    }
}
