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

/// A device that went through the whole provisioning flow.
pub struct Provisioned {
    /// The device id of its CSR.
    pub device_id: uuid::Uuid,
    /// The key of its CSR (and of its identity certificate).
    pub key: rcgen::KeyPair,
    /// The identity certificate the server issued.
    pub identity: CertificateDer<'static>,
}

impl Provisioned {
    /// TLS client credentials made of the identity certificate and its key.
    pub fn identity_auth(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        (vec![self.identity.clone()], key_der(&self.key))
    }
}

/// A private key in the form rustls takes.
pub fn key_der(key: &rcgen::KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(key.serialize_der().into())
}

/// A PEM CSR with subject `CN=uuid:<device_id>` signed by `key`.
pub fn csr_pem(device_id: &uuid::Uuid, key: &rcgen::KeyPair) -> String {
    dps_server::pki::device_csr(device_id, key).expect("csr")
}

/// The credentials request for `device_id` with a CSR signed by `key`.
pub fn credentials_request(
    device_id: &uuid::Uuid,
    key: &rcgen::KeyPair,
) -> dps_server::proto::body::CredentialsRequest {
    dps_server::proto::body::CredentialsRequest {
        di: device_id.to_string(),
        csr: dps_server::proto::body::Csr {
            data: csr_pem(device_id, key),
            encoding: "oic.sec.encoding.pem".into(),
        },
    }
}

/// The identity certificate in a credentials response.
pub fn identity_of(frame: &Frame) -> CertificateDer<'static> {
    let creds: dps_server::proto::body::CredentialsResponse = decoded(frame, Code::CHANGED);
    let cert = creds
        .creds
        .iter()
        .find(|c| c.credusage == "oic.sec.cred.cert")
        .and_then(|c| c.publicdata.as_ref())
        .expect("identity credential");
    CertificateDer::from_pem_slice(cert.data.as_bytes()).expect("identity pem")
}

/// Run time, ownership, cloud-configuration, credentials and ACLs on one session with
/// `client_auth`, for a fresh device id and key; every step must succeed.
pub async fn provision(
    dir: &Path,
    addr: std::net::SocketAddr,
    client_auth: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> Provisioned {
    use dps_server::proto::body::CloudConfigurationRequest;
    let tls = connect(dir, addr, Some(client_auth))
        .await
        .expect("handshake");
    let mut dev = dps_server::proto::stream::FramedIo::new(tls, 64 * 1024);
    let device_id = uuid::Uuid::new_v4();
    let key = rcgen::KeyPair::generate().expect("key");
    for (token, path) in [
        (1, "/x.plgd.dev/time"),
        (2, "/api/v1/provisioning/ownership"),
    ] {
        let resp = dev
            .exchange(&request(Code::GET, token, path))
            .await
            .expect(path);
        assert_eq!(resp.code, Code::CONTENT, "{path}");
    }
    let cloud = CloudConfigurationRequest {
        di: device_id.to_string(),
        selected_gateway: None,
    };
    let resp = dev
        .exchange(&post(3, "/api/v1/provisioning/cloud-configuration", &cloud))
        .await
        .expect("cloud");
    assert_eq!(resp.code, Code::CHANGED);
    let resp = dev
        .exchange(&post(
            4,
            "/api/v1/provisioning/credentials",
            &credentials_request(&device_id, &key),
        ))
        .await
        .expect("credentials");
    let identity = identity_of(&resp);
    let resp = dev
        .exchange(&request(Code::GET, 5, "/api/v1/provisioning/acls"))
        .await
        .expect("acls");
    assert_eq!(resp.code, Code::CONTENT);
    Provisioned {
        device_id,
        key,
        identity,
    }
}

/// Whether the server refuses a handshake with `client_auth` (TLS 1.3 clients may finish before
/// the server's alert; then the first read fails instead of yielding the server's CSM).
pub async fn handshake_refused(
    dir: &Path,
    addr: std::net::SocketAddr,
    client_auth: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
) -> bool {
    match connect(dir, addr, Some(client_auth)).await {
        Err(_) => true,
        Ok(tls) => {
            let mut dev = dps_server::proto::stream::FramedIo::new(tls, 4096);
            dev.read_frame().await.is_err()
        }
    }
}

/// Always offers one chain and key, without rustls's check that they belong together (so a test
/// can present garbage or a chain whose leaf is not the key's).
#[derive(Debug)]
struct AlwaysPresent(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for AlwaysPresent {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Connect presenting `chain` as it is (any bytes) with `key` for the handshake signature.
pub async fn connect_presenting(
    dir: &Path,
    addr: std::net::SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&dir.join("server-ca.pem")) {
        roots.add(c).expect("root");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(key)
        .expect("usable key");
    let certified = Arc::new(rustls::sign::CertifiedKey::new(chain, signing));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .expect("versions")
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(AlwaysPresent(certified)));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
}
