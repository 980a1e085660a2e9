//! A running server on 127.0.0.1:0 and a device client on the shared codec, for the tests that
//! talk to the server over TLS.

use std::path::Path;
use std::sync::Arc;

use dps_server::client::{coap, ClientAuth, DeviceTls, ServerTrust, TlsChoices};
use dps_server::config::Config;
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
    let choices = TlsChoices {
        versions: versions.to_vec(),
        kx_groups: None,
        cipher_suites: suites,
    };
    let auth = match client_auth {
        Some((chain, key)) => ClientAuth::Certificate(chain, key),
        None => ClientAuth::None,
    };
    handshake(dir, addr, choices, auth).await
}

/// The devices' TLS client of the set-up in `dir`: trusts its server CA, offers `choices`.
pub fn device_tls(dir: &Path, choices: TlsChoices) -> DeviceTls {
    let server_ca = pem_certs(&dir.join("server-ca.pem"));
    DeviceTls::new(ServerTrust::Ca(server_ca), choices).expect("device TLS")
}

/// The name devices connect to the test server by (its certificate's).
pub fn server_name() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("name")
}

/// TCP to `addr`, then TLS presenting `auth`.
async fn handshake(
    dir: &Path,
    addr: std::net::SocketAddr,
    choices: TlsChoices,
    auth: ClientAuth,
) -> std::io::Result<TlsStream<TcpStream>> {
    let connector = device_tls(dir, choices)
        .connector(auth)
        .expect("client cert");
    let tcp = dps_server::client::connect::connect_from(None, addr).await?;
    connector.connect(server_name(), tcp).await
}

pub fn demo_device(dir: &Path) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let chain = pem_certs(&dir.join("device-chain.pem"));
    let key = PrivateKeyDer::from_pem_file(dir.join("device.key")).expect("key");
    (chain, key)
}

pub fn request(code: Code, token: u8, path: &str) -> Frame {
    coap::request(code, &[token; 8], path)
}

pub fn post<T: serde::Serialize>(token: u8, path: &str, body: &T) -> Frame {
    coap::post(&[token; 8], path, body).expect("cbor")
}

pub fn decoded<T: serde::de::DeserializeOwned>(frame: &Frame, code: Code) -> T {
    coap::decode(frame, code).unwrap_or_else(|e| panic!("{e}"))
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
    dps_server::client::provision::credentials_body(device_id, key).expect("csr")
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
    let tls = connect(dir, addr, Some(client_auth))
        .await
        .expect("handshake");
    let mut dev = dps_server::proto::stream::FramedIo::new(tls, coap::MAX_MESSAGE);
    let device_id = uuid::Uuid::new_v4();
    let key = rcgen::KeyPair::generate().expect("key");
    let token = |step: dps_server::client::provision::Step| vec![step.index() as u8 + 1; 8];
    let answers = dps_server::client::provision::provision(&mut dev, &device_id, &key, token)
        .await
        .unwrap_or_else(|e| panic!("provisioning: {e}"));
    let identity = identity_of(&answers.credentials);
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

/// Connect presenting `chain` as it is (any bytes) with `key` for the handshake signature.
pub async fn connect_presenting(
    dir: &Path,
    addr: std::net::SocketAddr,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let auth = ClientAuth::Presenting(chain, key);
    handshake(dir, addr, TlsChoices::default(), auth).await
}
