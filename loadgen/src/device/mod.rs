//! One simulated device running the real protocol: TCP, TLS with its manufacturer chain, then the
//! CoAP flow in iotivity-lite's order (time, ownership, cloud configuration, credentials from a
//! fresh CSR, ACLs), checking every answer as a device would. Uses the server crate's codec.
//!
//! Variants: handshake-only; `identity` devices reconnect with the identity certificate they were
//! issued and provision again; TPM devices connect without a client certificate and attest with
//! the TPM nonce challenge first ([`tpm`]); under the hold executor a device then stays connected
//! and pings until released.

mod flow;
pub mod hold;
mod session;
pub mod strict;
#[cfg(feature = "tpm-sim")]
pub mod swtpm;
pub mod tls;
mod tpm;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_server::proto::coap::Code;
use dps_server::proto::stream::StreamError;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};

use crate::fleet::tpm::TpmStep;
use crate::fleet::{Device, DeviceClass};
use crate::metrics::Phase;
pub use session::{DeviceIo, SessionError};
pub use strict::StrictCheck;
pub use tls::expected_alert;

/// A device's CoAP session over TLS.
pub type Session = DeviceIo<tokio_rustls::client::TlsStream<TcpStream>>;

/// Largest CoAP message a device accepts (the identity chain in the credentials answer fits).
const MAX_MESSAGE: usize = 64 * 1024;

/// What a device saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "observed", rename_all = "snake_case")]
pub enum Observed {
    /// The whole flow succeeded; the owner it was given.
    Provisioned {
        /// `devowneruuid` from the ownership resource.
        owner: String,
    },
    /// The whole flow succeeded, and again over a session authenticated by the identity
    /// certificate it was issued, with the same owner both times.
    Reconnected {
        /// `devowneruuid` from the ownership resource.
        owner: String,
    },
    /// Handshake-only mode: the handshake was accepted (a TPM device: its attestation).
    Attested,
    /// A TPM device was refused at this step with this CoAP code, and the server then closed the
    /// connection.
    TpmRefused {
        /// The step.
        step: TpmStep,
        /// The CoAP code, `c.dd`.
        code: String,
    },
    /// The server refused the handshake with this TLS alert.
    Rejected {
        /// The alert description (rustls's name, e.g. `UnknownCA`).
        alert: String,
    },
    /// The server sent something iotivity-lite's real client would refuse (a frame too short to
    /// read, an answer missing what the client requires): the check it failed.
    Strict {
        /// The check.
        check: StrictCheck,
        /// What exactly failed it.
        detail: String,
    },
    /// Anything else: timeout, I/O error, unexpected response, a held connection lost.
    Failed {
        /// What happened.
        error: String,
    },
}

impl Observed {
    /// Provisioned (once, or again after reconnecting).
    pub fn provisioned(&self) -> bool {
        matches!(
            self,
            Observed::Provisioned { .. } | Observed::Reconnected { .. }
        )
    }
}

/// One device's run.
#[derive(Debug, Clone)]
pub struct DeviceRun {
    /// What it saw.
    pub observed: Observed,
    /// Measured phases.
    pub phases: Vec<(Phase, Duration)>,
    /// When the device was through its flow (before any hold): its place on the run's timeline.
    pub through: Instant,
}

/// What all devices of a run share.
#[derive(Debug, Clone)]
pub struct DeviceContext {
    /// The server's device port.
    pub addr: SocketAddr,
    /// Stop after the handshake.
    pub handshake_only: bool,
    /// The devices' TLS client: how they verify the server (the CA its certificate chains to, or
    /// none) and the TLS version and key exchange they offer.
    pub tls: Arc<tls::ClientBase>,
    /// The target is a TLS server that is not a DPS (`[target] tls_only`): no CSM comes after the
    /// handshake, so the device closes and reads the verdict from the server's end of the
    /// connection ([`handshake_then_close`]).
    pub tls_only: bool,
    /// Per-device deadline (connect, handshake, flow; not the hold).
    pub timeout: Duration,
    /// Source addresses to spread connections over (device i uses `i % len`); empty: the OS picks.
    pub sources: Vec<IpAddr>,
    /// Set under the hold executor.
    pub hold: Option<Arc<hold::HoldControl>>,
    /// The swtpm processes `tpm_swtpm` devices run on (started for runs that have such devices).
    #[cfg(feature = "tpm-sim")]
    pub swtpm: Option<Arc<swtpm::SwtpmPool>>,
}

/// Source addresses for `devices` connections to `target`: on IPv4 loopback, `count` addresses
/// `127.0.0.1, 127.0.0.2, ...` (0 = one per 20,000 devices), since each has only about 28,000
/// ephemeral ports; elsewhere none (the OS picks).
pub fn source_addresses(target: &SocketAddr, count: u8, devices: usize) -> Vec<IpAddr> {
    let IpAddr::V4(ip) = target.ip() else {
        return Vec::new();
    };
    if !ip.is_loopback() {
        return Vec::new();
    }
    let n = if count == 0 {
        u8::try_from(devices.div_ceil(20_000).clamp(1, 250)).unwrap_or(250)
    } else {
        count.min(250)
    };
    (1..=n)
        .map(|k| IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, k)))
        .collect()
}

/// Run one device; latency of `Total` counts from `scheduled` (coordinated omission). Under the
/// hold executor the device then stays connected until released; its held time is not in `Total`.
pub async fn run(dev: &Device, ctx: &DeviceContext, scheduled: Instant) -> DeviceRun {
    run_then(dev, ctx, scheduled, || {}).await
}

/// [`run`], calling `through` as soon as the device is through its flow (before any hold).
pub async fn run_then(
    dev: &Device,
    ctx: &DeviceContext,
    scheduled: Instant,
    through: impl FnOnce() + Send,
) -> DeviceRun {
    let mut phases = Vec::with_capacity(14);
    // Boxed: the flow's state is large and only needed until the device is through; a held
    // device's task then keeps just the session.
    let flow = Box::pin(flow::flow(dev, ctx, &mut phases));
    let result = tokio::time::timeout(ctx.timeout, flow).await;
    let (observed, session) = match result {
        Ok(done) => done,
        Err(_) => (
            Observed::Failed {
                error: format!("timed out after {:?}", ctx.timeout),
            },
            None,
        ),
    };
    phases.push((Phase::Total, scheduled.elapsed()));
    let through_at = Instant::now();
    through();
    let observed = match (&ctx.hold, session) {
        (Some(control), Some(session)) => hold::hold(session, control, observed, &mut phases).await,
        (Some(control), None) => {
            control.connected(false);
            observed
        }
        (None, _) => observed,
    };
    DeviceRun {
        observed,
        phases,
        through: through_at,
    }
}

fn stream_failure(step: &str, e: &SessionError) -> Observed {
    match e {
        SessionError::Stream(StreamError::Io(io)) => {
            if let Some(alert) = tls::alert_of(io) {
                return Observed::Rejected { alert };
            }
        }
        SessionError::ShortFrame { .. } => {
            return Observed::Strict {
                check: StrictCheck::ShortFrame,
                detail: format!("{step}: {e}"),
            }
        }
        _ => {}
    }
    Observed::Failed {
        error: format!("{step}: {e}"),
    }
}

impl From<strict::Violation> for Observed {
    fn from(v: strict::Violation) -> Self {
        Observed::Strict {
            check: v.check,
            detail: v.detail,
        }
    }
}

/// TCP connect from this device's source address.
async fn connect_tcp(ctx: &DeviceContext, index: usize) -> std::io::Result<TcpStream> {
    let Some(source) = ctx.sources.get(index % ctx.sources.len().max(1)) else {
        return TcpStream::connect(ctx.addr).await;
    };
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(*source, 0))?;
    socket.connect(ctx.addr).await
}

/// Open a session: TCP, TLS with `client` (chain, key; none for a TPM device), then the server's
/// verdict (its CSM, or the alert). Records `Tcp` and `Handshake` (a refusal is a completed
/// handshake too: its latency is the time to the alert).
async fn open_session(
    ctx: &DeviceContext,
    index: usize,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    handshake: Phase,
    phases: &mut Vec<(Phase, Duration)>,
) -> Result<Session, Observed> {
    let config =
        tls::client_config(client, &ctx.tls).map_err(|error| Observed::Failed { error })?;
    let started = Instant::now();
    let tcp = connect_tcp(ctx, index)
        .await
        .map_err(|e| Observed::Failed {
            error: format!("connect: {e}"),
        })?;
    let _ = tcp.set_nodelay(true);
    phases.push((Phase::Tcp, started.elapsed()));
    let started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(ctx.addr.ip().into());
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| match tls::alert_of(&e) {
            Some(alert) => Observed::Rejected { alert },
            None => Observed::Failed {
                error: format!("handshake: {e}"),
            },
        })?;
    let mut io = DeviceIo::new(tls, MAX_MESSAGE);
    // TLS 1.3 clients finish before the server has judged their certificate: the verdict (CSM or
    // alert) is the first thing the server sends.
    match io.read_frame().await {
        Ok(Some(f)) if f.code == Code::CSM => {}
        Ok(Some(f)) => {
            return Err(Observed::Failed {
                error: format!("expected CSM, got {}", f.code),
            })
        }
        Ok(None) => {
            return Err(Observed::Failed {
                error: "closed before CSM".into(),
            })
        }
        Err(e) => {
            let observed = stream_failure("handshake", &e);
            if matches!(observed, Observed::Rejected { .. }) {
                phases.push((handshake, started.elapsed()));
            }
            return Err(observed);
        }
    }
    phases.push((handshake, started.elapsed()));
    Ok(io)
}

/// Against a TLS-only target: TCP, TLS with `client` (chain, key), then the device's close_notify
/// and a read until the server ends the connection.
///
/// In TLS 1.3 a client has finished its handshake before the server has judged its certificate,
/// and a server such as nginx sends nothing after accepting one (no tickets: they are off), so the
/// verdict is how the server ends the connection once the device has said goodbye: an alert is a
/// refusal; the end of the stream, with or without the server's close_notify, is an acceptance
/// (whatever the server sent first, such as our server's CSM, is skipped). A server that refuses
/// only above TLS (nginx answers a failed client verification with HTTP 400 on the first request)
/// looks accepted here: that is for the caller to check another way. Every server is measured the
/// same way: `Tcp`, then `Handshake` up to the verdict, which includes the close.
pub async fn handshake_then_close(
    ctx: &DeviceContext,
    index: usize,
    client: (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>),
    phases: &mut Vec<(Phase, Duration)>,
) -> Observed {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let config = match tls::client_config(Some(client), &ctx.tls) {
        Ok(config) => config,
        Err(error) => return Observed::Failed { error },
    };
    let started = Instant::now();
    let tcp = match connect_tcp(ctx, index).await {
        Ok(tcp) => tcp,
        Err(e) => {
            return Observed::Failed {
                error: format!("connect: {e}"),
            }
        }
    };
    let _ = tcp.set_nodelay(true);
    phases.push((Phase::Tcp, started.elapsed()));
    let started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(ctx.addr.ip().into());
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(e) => {
            return match tls::alert_of(&e) {
                Some(alert) => Observed::Rejected { alert },
                None => Observed::Failed {
                    error: format!("handshake: {e}"),
                },
            }
        }
    };
    // close_notify, but no FIN: the server ends the connection first, so the TIME_WAIT of each
    // of thousands of short connections is the server's (keyed by the device's port, which is then
    // free again at once) rather than the device's, whose port would stay taken for a minute and
    // make every later connect search longer for a free one.
    tls.get_mut().1.send_close_notify();
    let closed = tls.flush().await;
    let mut buf = [0u8; 1024];
    let observed = loop {
        match tls.read(&mut buf).await {
            Ok(0) => break Observed::Attested,
            Ok(_) => {}
            Err(e) => {
                if let Some(alert) = tls::alert_of(&e) {
                    break Observed::Rejected { alert };
                }
                break match closed {
                    Ok(()) if e.kind() == std::io::ErrorKind::UnexpectedEof => Observed::Attested,
                    Ok(()) => Observed::Failed {
                        error: format!("after the handshake: {e}"),
                    },
                    Err(c) => Observed::Failed {
                        error: format!("closing after the handshake: {c}; then {e}"),
                    },
                };
            }
        }
    };
    if !matches!(observed, Observed::Failed { .. }) {
        phases.push((Phase::Handshake, started.elapsed()));
    }
    observed
}

/// Does this class reconnect with its identity certificate?
fn reconnects(dev: &Device) -> bool {
    dev.class == DeviceClass::Identity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_targets_get_spread_sources_and_others_none() {
        let lo: SocketAddr = "127.0.0.1:15684".parse().expect("addr");
        assert_eq!(source_addresses(&lo, 0, 10).len(), 1);
        assert_eq!(source_addresses(&lo, 0, 50_000).len(), 3);
        let four = source_addresses(&lo, 4, 10);
        assert_eq!(four.len(), 4);
        assert_eq!(four[3], IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 4)));
        let remote: SocketAddr = "192.0.2.1:15684".parse().expect("addr");
        assert!(source_addresses(&remote, 8, 50_000).is_empty());
        let v6: SocketAddr = "[::1]:15684".parse().expect("addr");
        assert!(source_addresses(&v6, 8, 50_000).is_empty());
    }

    use crate::scenario::{KeyExchange, TlsVersion};
    use dps_server::pki::{CertSpec, Issued};
    use rcgen::{ExtendedKeyUsagePurpose, SanType};

    /// What the peer server saw of one connection: version and group, or its handshake error.
    type Seen = Result<(rustls::ProtocolVersion, rustls::NamedGroup), String>;

    /// A TLS server standing in for nginx: verifies client certificates against `root`, and after
    /// an accepted handshake optionally writes `greeting` (as our server's CSM), then reads to the
    /// end of the stream and closes.
    async fn peer_server(
        root: &Issued,
        greeting: &'static [u8],
    ) -> (
        SocketAddr,
        CertificateDer<'static>,
        tokio::task::JoinHandle<Vec<Seen>>,
    ) {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let server_ca = Issued::self_signed(&CertSpec::ca("test server CA")).expect("ca");
        let mut spec = CertSpec::device("localhost");
        spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        spec.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        let server = server_ca.issue(&spec).expect("server");
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.der().clone()).expect("root");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .expect("verifier");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![server.der().clone()], server.key_der())
            .expect("config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for _ in 0..3 {
                let (tcp, _) = listener.accept().await.expect("accept");
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let conn = tls.get_ref().1;
                        seen.push(Ok((
                            conn.protocol_version().expect("version"),
                            conn.negotiated_key_exchange_group().expect("group").name(),
                        )));
                        let _ = tls.write_all(greeting).await;
                        let mut rest = Vec::new();
                        let _ = tls.read_to_end(&mut rest).await;
                        let _ = tls.shutdown().await;
                    }
                    Err(e) => seen.push(Err(e.to_string())),
                }
            }
            seen
        });
        (addr, server_ca.der().clone(), task)
    }

    fn tls_only_context(
        addr: SocketAddr,
        ca: CertificateDer<'static>,
        kx: KeyExchange,
    ) -> DeviceContext {
        DeviceContext {
            addr,
            handshake_only: true,
            tls: Arc::new(
                tls::ClientBase::new(
                    Some(&ca),
                    tls::TlsOptions {
                        version: Some(TlsVersion::Tls13),
                        key_exchange: kx,
                    },
                )
                .expect("client base"),
            ),
            tls_only: true,
            timeout: Duration::from_secs(10),
            sources: Vec::new(),
            hold: None,
            #[cfg(feature = "tpm-sim")]
            swtpm: None,
        }
    }

    #[tokio::test]
    async fn tls_only_devices_read_the_verdict_from_the_servers_end_of_the_connection() {
        let root = Issued::self_signed(&CertSpec::ca("test device root")).expect("root");
        let device = root.issue(&CertSpec::device("DEV-1")).expect("device");
        let stranger_root =
            Issued::self_signed(&CertSpec::ca("someone else's root")).expect("root");
        let stranger = stranger_root
            .issue(&CertSpec::device("DEV-2"))
            .expect("stranger");
        let own = |d: &Issued| (vec![d.der().clone()], d.key_der());
        for greeting in [&b""[..], b"CSM"] {
            let (addr, ca, server) = peer_server(&root, greeting).await;
            let mut phases = Vec::new();
            let ctx = tls_only_context(addr, ca.clone(), KeyExchange::X25519);
            let accepted = handshake_then_close(&ctx, 0, own(&device), &mut phases).await;
            assert_eq!(accepted, Observed::Attested, "greeting {greeting:?}");
            assert!(phases.iter().any(|(p, _)| *p == Phase::Handshake));
            let ctx = tls_only_context(addr, ca.clone(), KeyExchange::P256);
            let p256 = handshake_then_close(&ctx, 0, own(&device), &mut phases).await;
            assert_eq!(p256, Observed::Attested);
            let refused = handshake_then_close(&ctx, 0, own(&stranger), &mut phases).await;
            assert!(
                matches!(&refused, Observed::Rejected { alert } if alert == "UnknownCA"),
                "{refused:?}"
            );
            let seen = server.await.expect("server");
            use rustls::{NamedGroup, ProtocolVersion};
            assert_eq!(seen[0], Ok((ProtocolVersion::TLSv1_3, NamedGroup::X25519)));
            assert_eq!(
                seen[1],
                Ok((ProtocolVersion::TLSv1_3, NamedGroup::secp256r1))
            );
            assert!(seen[2].is_err(), "{:?}", seen[2]);
        }
    }
}
