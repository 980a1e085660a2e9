//! A running server on 127.0.0.1:0 and a device client on the shared codec, for the tests that
//! talk to the server over TLS.

use std::path::Path;
use std::sync::Arc;

use dps_server::config::Config;
use dps_server::proto::body::{self, ContentFormat};
use dps_server::proto::coap::{Code, Frame};
use dps_server::server::Server;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

pub struct Running {
    pub addr: std::net::SocketAddr,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<()>,
    pub server: Arc<Server>,
}

pub async fn start(dir: &Path) -> Running {
    let config = Config::load(&dir.join("config.toml")).expect("config");
    start_with(&config).await
}

pub async fn start_with(config: &Config) -> Running {
    let server = Arc::new(Server::from_config(config).expect("server"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.clone().run(listener, async {
        let _ = rx.await;
    }));
    Running {
        addr,
        stop: Some(tx),
        task,
        server,
    }
}

pub fn pem_certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .expect("open")
        .collect::<Result<_, _>>()
        .expect("pem")
}

pub async fn connect(
    dir: &Path,
    addr: std::net::SocketAddr,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    connect_with(dir, addr, client_auth, rustls::DEFAULT_VERSIONS, None).await
}

pub async fn connect_with(
    dir: &Path,
    addr: std::net::SocketAddr,
    client_auth: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    versions: &[&'static rustls::SupportedProtocolVersion],
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&dir.join("server-ca.pem")) {
        roots.add(c).expect("root");
    }
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites = suites;
    }
    let provider = Arc::new(provider);
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client_auth {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let tls = connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await?;
    Ok(tls)
}

pub fn demo_device(dir: &Path) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = pem_certs(&dir.join("device-chain.pem"));
    let key = PrivateKeyDer::from_pem_file(dir.join("device.key")).expect("key");
    (chain, key)
}

pub fn request(code: Code, token: u8, path: &str) -> Frame {
    Frame::request(code, &[token; 8], path).with_accept(ContentFormat::OcfCbor.as_u16())
}

pub fn post<T: serde::Serialize>(token: u8, path: &str, body: &T) -> Frame {
    request(Code::POST, token, path)
        .with_content_format(ContentFormat::OcfCbor.as_u16())
        .with_payload(body::to_cbor(body).expect("cbor"))
}

pub fn decoded<T: serde::de::DeserializeOwned>(frame: &Frame, code: Code) -> T {
    assert_eq!(
        frame.code,
        code,
        "diagnostic: {}",
        String::from_utf8_lossy(&frame.payload)
    );
    assert_eq!(
        frame.content_format(),
        Some(ContentFormat::OcfCbor.as_u16())
    );
    body::from_cbor(&frame.payload).expect("body")
}

impl Running {
    /// Stop the server and wait for its drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.expect("server task");
    }
}
