//! In-memory TLS 1.3 mTLS handshakes (no sockets): a rustls `ClientConnection` and a
//! `ServerConnection` pump bytes to each other, and only the server's calls are timed.
//!
//! The two verifiers are configured to do the same job, validating the device's presented path up
//! to a trust anchor, over the fixtures of [`crate::pki`]:
//!
//! - **stock_root**: rustls `WebPkiClientVerifier` (mandatory client auth) with `{Root}` as its
//!   root store: webpki verifies every link of leaf → … → Int1 → Root on every handshake.
//! - **stock_configured**: `WebPkiClientVerifier` with every configured certificate of the group,
//!   `{Int1, Root}`, as trust anchors (the same trust set our verifier has); webpki stops at Int1.
//! - **ours**: `dps_server::tls::server_config` with `AttestationVerifier` over an arena holding one
//!   enrollment group configured `[Int1, Root]`, lead Int1. Int1 ← Root was verified when the group
//!   was created; per handshake webpki verifies leaf → … → Int1 with Int1 as anchor, then the group
//!   is selected, and after the handshake the verdict is taken from the hand-off
//!   (`AttestationVerifier::admission_for`, as the server does) — that call is timed too.
//!
//! Both sides: aws-lc-rs provider, TLS 1.3 only on the client, X25519 key exchange (what devices
//! offer; the default provider would pick the post-quantum hybrid), no session resumption
//! (`NoServerSessionStorage`, no tickets), the server's P-256 certificate from the server CA.
//!
//! A later variant (e.g. ours with the verified-link cache warm or cold) is one more entry in
//! [`HandshakeFixture::variants`], with a `reset` hook run (untimed) before each handshake.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_server::enrollment::{Arena, EnrollmentGroup, LeadSelector};
use dps_server::tls::{server_config, AttestationVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::ServerName;

use crate::pki::{BenchPki, DeviceKey};

/// One server configuration under test.
pub struct Variant {
    /// Short name (`stock_root`, `stock_configured`, `ours`).
    pub name: &'static str,
    /// The server configuration.
    pub config: Arc<ServerConfig>,
    /// For ours: the verifier whose verdict is taken after the handshake.
    pub verifier: Option<Arc<AttestationVerifier>>,
    /// Run before each handshake, untimed (e.g. to empty a cache for a cold variant).
    pub reset: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant").field("name", &self.name).finish()
    }
}

/// A device topology (leaf+`depth`, device key) and the server variants to run it against.
#[derive(Debug)]
pub struct HandshakeFixture {
    /// Number of presented intermediates.
    pub depth: usize,
    /// Device key algorithm.
    pub key: DeviceKey,
    /// The device's client configuration.
    pub client: Arc<ClientConfig>,
    /// The server configurations.
    pub variants: Vec<Variant>,
}

/// The server's provider, also for the stock variant: the same suites in the same order, so the
/// variants differ only in the client-certificate verifier.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(dps_server::tls::device_port_provider())
}

/// Our server configuration over `pki`: one group `[Int1, Root]`, lead Int1.
pub fn ours(pki: &BenchPki) -> (Arc<ServerConfig>, Arc<AttestationVerifier>, Arc<Arena>) {
    let mut group = EnrollmentGroup::new("bench-handshake", "bench", pki.group_chain());
    group.id = uuid::uuid!("0b7e7c1e-1c59-4c1b-8d3a-6f3f4a2b9c10");
    group.lead = LeadSelector::Index(0);
    let arena = Arc::new(Arena::with_groups(vec![group]).expect("valid group"));
    let verifier = Arc::new(AttestationVerifier::new(arena.clone()));
    let config = server_config(
        verifier.clone(),
        vec![pki.server_cert.clone()],
        pki.server_key(),
    )
    .expect("server config");
    (Arc::new(config), verifier, arena)
}

/// Stock rustls: `WebPkiClientVerifier` over `roots`, otherwise configured as ours.
pub fn stock(
    pki: &BenchPki,
    roots: &[rustls_pki_types::CertificateDer<'static>],
) -> Arc<ServerConfig> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).expect("trust anchor");
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
        .build()
        .expect("client verifier");
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server_cert.clone()], pki.server_key())
        .expect("server certificate");
    config.session_storage = Arc::new(NoServerSessionStorage {});
    dps_server::tls::prefer_server_suites(&mut config);
    Arc::new(config)
}

/// The device's client configuration: TLS 1.3, X25519, trusts the server CA, presents the
/// leaf+`depth` chain.
pub fn client(pki: &BenchPki, depth: usize, key: DeviceKey) -> Arc<ClientConfig> {
    use dps_server::client::{ClientAuth, DeviceTls, ServerTrust, TlsChoices};
    let choices = TlsChoices {
        versions: vec![&rustls::version::TLS13],
        kx_groups: Some(vec![rustls::crypto::aws_lc_rs::kx_group::X25519]),
        cipher_suites: None,
    };
    let devices =
        DeviceTls::new(ServerTrust::Ca(vec![pki.server_ca.clone()]), choices).expect("device TLS");
    let auth = ClientAuth::Certificate(pki.presented(depth, key), pki.device_key(depth, key));
    Arc::new(devices.config(auth).expect("client certificate"))
}

impl HandshakeFixture {
    /// The three variants for the leaf+`depth` device with `key`.
    pub fn new(pki: &BenchPki, depth: usize, key: DeviceKey) -> Self {
        let (ours_config, verifier, _arena) = ours(pki);
        let variants = vec![
            Variant {
                name: "stock_root",
                config: stock(pki, std::slice::from_ref(&pki.root)),
                verifier: None,
                reset: None,
            },
            Variant {
                name: "stock_configured",
                config: stock(pki, &pki.group_chain()),
                verifier: None,
                reset: None,
            },
            Variant {
                name: "ours",
                config: ours_config,
                verifier: Some(verifier),
                reset: None,
            },
        ];
        Self {
            depth,
            key,
            client: client(pki, depth, key),
            variants,
        }
    }

    /// `leaf+2/p256` style label.
    pub fn label(&self) -> String {
        format!("leaf+{}/{}", self.depth, self.key.name())
    }

    /// The variant called `name`.
    pub fn variant(&self, name: &str) -> &Variant {
        self.variants
            .iter()
            .find(|v| v.name == name)
            .expect("known variant")
    }

    /// One complete handshake against `variant`; returns the time spent in server-side calls.
    pub fn server_time(&self, variant: &Variant) -> Duration {
        if let Some(reset) = &variant.reset {
            reset();
        }
        let mut timer = Timer::default();
        handshake(&self.client, variant, &mut timer);
        timer.total
    }
}

/// Accumulates the time of the server-side calls.
#[derive(Debug, Default)]
struct Timer {
    total: Duration,
}

impl ServerSide for Timer {
    fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let r = f();
        self.total += started.elapsed();
        r
    }
}

/// How the server-side calls of a handshake are run: timed (criterion) or wrapped in a function
/// the instruction counter collects in (callgrind).
pub trait ServerSide {
    /// Run one server-side step.
    fn run<R>(&mut self, f: impl FnOnce() -> R) -> R;
}

/// One complete in-memory handshake of `client` against `variant`, the server's calls run
/// through `side`. Panics unless both sides finish and (for ours) the device was admitted.
pub fn handshake(client: &Arc<ClientConfig>, variant: &Variant, side: &mut impl ServerSide) {
    let name = ServerName::try_from("dps.bench.invalid").expect("server name");
    let mut client = ClientConnection::new(client.clone(), name).expect("client connection");
    let mut server = side.run(|| ServerConnection::new(variant.config.clone()).expect("server"));
    let mut to_server = Vec::with_capacity(8192);
    let mut to_client = Vec::with_capacity(8192);
    for _ in 0..10 {
        to_server.clear();
        while client.wants_write() {
            client.write_tls(&mut to_server).expect("client write");
        }
        if !to_server.is_empty() {
            side.run(|| {
                let mut rd = &to_server[..];
                while !rd.is_empty() {
                    server.read_tls(&mut rd).expect("server read");
                    server.process_new_packets().expect("server handshake");
                }
            });
        }
        to_client.clear();
        side.run(|| {
            while server.wants_write() {
                server.write_tls(&mut to_client).expect("server write");
            }
        });
        if !to_client.is_empty() {
            let mut rd = &to_client[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).expect("client read");
                client.process_new_packets().expect("client handshake");
            }
        }
        if !server.is_handshaking() && !client.is_handshaking() && !client.wants_write() {
            break;
        }
    }
    assert!(
        !server.is_handshaking() && !client.is_handshaking(),
        "handshake did not complete"
    );
    if let Some(verifier) = &variant.verifier {
        let admitted = side.run(|| {
            let certs = server.peer_certificates().expect("client certificates");
            verifier.admission_for(certs)
        });
        assert!(admitted.is_ok(), "device not admitted: {admitted:?}");
    } else {
        assert!(
            server.peer_certificates().is_some(),
            "no client certificate"
        );
    }
}
