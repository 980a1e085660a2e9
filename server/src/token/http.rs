//! A minimal HTTP/1.1 client for token endpoints: one connection per request (tokens are cached,
//! so requests are rare), plain `http` or `https` over rustls, a bounded response size. The caller
//! bounds the time; dropping the future closes the connection.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// Largest response body read, bytes.
pub const MAX_RESPONSE: usize = 64 * 1024;

/// Why a request failed before a response was read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL cannot be requested.
    #[error("bad URL {0:?}")]
    Url(String),
    /// TCP connect or TLS handshake failed.
    #[error("cannot connect to {authority}: {source}")]
    Connect {
        /// host:port.
        authority: String,
        /// Why (TCP connect or the TLS handshake).
        source: std::io::Error,
    },
    /// The exchange failed (reset, malformed response, body over [`MAX_RESPONSE`]).
    #[error("HTTP exchange failed: {0}")]
    Exchange(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The CA file could not be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS: {0}")]
    Tls(#[source] rustls::Error),
}

/// Posts forms to one kind of endpoint: `https` ones verified against its roots.
#[derive(Clone)]
pub struct HttpClient {
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl HttpClient {
    /// A client trusting the CA certificates of `ca_pem`, or the built-in web roots for `None`.
    pub fn new(ca_pem: Option<(&str, &[u8])>) -> Result<Self, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_pem {
            Some((path, pem)) => {
                let bad = |reason: String| ClientError::CaFile {
                    path: path.to_owned(),
                    reason,
                };
                let certs = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| bad(e.to_string()))?;
                if certs.is_empty() {
                    return Err(bad("no CERTIFICATE block".into()));
                }
                for c in certs {
                    roots.add(c).map_err(|e| bad(e.to_string()))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(ClientError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// POST `body` (`application/x-www-form-urlencoded`) to `url` with the extra `headers`;
    /// returns the status and at most [`MAX_RESPONSE`] bytes of body.
    pub async fn post_form(
        &self,
        url: &Uri,
        headers: &[(hyper::header::HeaderName, String)],
        body: String,
    ) -> Result<(StatusCode, Bytes), HttpError> {
        let bad_url = || HttpError::Url(url.to_string());
        let https = match url.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad_url()),
        };
        let host = url.host().ok_or_else(bad_url)?;
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = url
            .authority()
            .map(|a| a.as_str().to_owned())
            .ok_or_else(bad_url)?;
        let connect_err = |source: std::io::Error| HttpError::Connect {
            authority: authority.clone(),
            source,
        };
        // `[::1]` in a URI is the bare address to connect to.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((bare, port))
            .await
            .map_err(connect_err)?;
        let _ = tcp.set_nodelay(true);
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(HOST, authority.as_str())
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            )
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            req = req.header(name, value.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| HttpError::Exchange(e.into()))?;
        if https {
            let name = ServerName::try_from(bare.to_owned()).map_err(|_| bad_url())?;
            let tls = self.tls.connect(name, tcp).await.map_err(connect_err)?;
            exchange(tls, req).await
        } else {
            exchange(tcp, req).await
        }
    }
}

/// Aborts the connection task when the request future is dropped (deadline passed).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<S>(io: S, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes), HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| HttpError::Exchange(e.into());
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(failed)?;
    let _conn = AbortOnDrop(tokio::spawn(async move {
        let _ = conn.await;
    }));
    let resp = sender.send_request(req).await.map_err(failed)?;
    let status = resp.status();
    let body = Limited::new(resp.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(HttpError::Exchange)?
        .to_bytes();
    Ok((status, body))
}

/// `application/x-www-form-urlencoded` escaping of one name or value (WHATWG URL standard: bytes
/// other than ASCII alphanumerics and `*-._` are percent-encoded, space as `+`).
pub fn form_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `application/x-www-form-urlencoded` serialization of `pairs`.
pub fn form_encode<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", form_escape(k), form_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn form_encoding_escapes_everything_but_the_safe_set() {
        assert_eq!(
            form_encode([("https://plgd.dev/owner", "a b&c=d"), ("x", "é*-._")]),
            "https%3A%2F%2Fplgd.dev%2Fowner=a+b%26c%3Dd&x=%C3%A9*-._"
        );
        assert_eq!(form_encode([]), "");
    }

    #[tokio::test]
    async fn posts_a_form_and_reads_the_answer() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("a=1") {
                let n = s.read(&mut buf).await.expect("read");
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok")
                .await
                .expect("write");
            String::from_utf8_lossy(&got).into_owned()
        });
        let client = HttpClient::new(None).expect("client");
        let url: Uri = format!("http://{addr}/oauth/token?x=y")
            .parse()
            .expect("uri");
        let (status, body) = client
            .post_form(
                &url,
                &[(hyper::header::AUTHORIZATION, "Basic eA==".into())],
                "a=1".into(),
            )
            .await
            .expect("post");
        assert_eq!(status, StatusCode::CREATED);
        assert_eq!(&body[..], b"ok");
        let request = server.await.expect("server");
        assert!(
            request.starts_with("POST /oauth/token?x=y HTTP/1.1\r\n"),
            "{request}"
        );
        let lower = request.to_ascii_lowercase();
        assert!(lower.contains("content-type: application/x-www-form-urlencoded"));
        assert!(lower.contains("authorization: basic ea=="));
        assert!(lower.contains(&format!("host: {addr}")));
    }

    #[tokio::test]
    async fn https_is_verified_against_the_configured_ca() {
        use crate::pki::{CertSpec, Issued};
        use rcgen::{ExtendedKeyUsagePurpose, SanType};
        let ca = Issued::self_signed(&CertSpec::ca("Token endpoint CA")).expect("ca");
        let mut spec = CertSpec::device("auth.test");
        spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        spec.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        let leaf = ca.issue(&spec).expect("leaf");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], leaf.key_der())
        .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut buf = vec![0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        let url: Uri = format!("https://{addr}/token").parse().expect("uri");
        let trusted = HttpClient::new(Some(("ca.pem", ca.pem().as_bytes()))).expect("client");
        let (status, body) = trusted
            .post_form(&url, &[], "a=1".into())
            .await
            .expect("verified https");
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"{}"[..]));
        // The built-in web roots do not know this CA.
        let web = HttpClient::new(None).expect("client");
        assert!(matches!(
            web.post_form(&url, &[], "a=1".into()).await,
            Err(HttpError::Connect { .. })
        ));
    }

    #[tokio::test]
    async fn refused_connection_and_bad_ca_file_are_errors() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let client = HttpClient::new(None).expect("client");
        let url: Uri = format!("http://{addr}/t").parse().expect("uri");
        assert!(matches!(
            client.post_form(&url, &[], String::new()).await,
            Err(HttpError::Connect { .. })
        ));
        assert!(matches!(
            HttpClient::new(Some(("ca.pem", b"nothing"))),
            Err(ClientError::CaFile { .. })
        ));
    }
}
