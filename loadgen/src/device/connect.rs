//! Opening a device's connection: TCP from its source address (through its class's link profile,
//! if it has one), TLS with its credentials, then the server's verdict, read from its CSM or alert ([`open_session`]), or against a TLS-only target
//! from how the server ends the connection ([`handshake_then_close`]).

use std::time::Instant;

use dps_server::proto::coap::Code;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::context::DeviceContext;
use super::ledger::Ledger;
use super::link::LinkStream;
use super::observed::{stream_failure, FailureKind, Observed};
use super::session::{DeviceIo, Session};
use super::tls;
use super::trace::Traced;
use crate::fleet::DeviceClass;
use crate::link::model::connect_delay;
use crate::metrics::Phase;
use crate::saturation::ConnectMeter;

/// TCP connect from this device's source address, through the link of its class: a link's
/// connect first waits out the SYN / SYN-ACK round trip, so the server accepts when the device's
/// first bytes are half a round trip away, as with a real link.
pub(super) async fn connect_tcp(
    ctx: &DeviceContext,
    index: usize,
    class: DeviceClass,
) -> std::io::Result<LinkStream<Traced>> {
    let Some(profile) = ctx.links.for_class(class) else {
        return Ok(LinkStream::direct(traced_connect(ctx, index).await?));
    };
    let mut rng = ctx.links.rng(index);
    tokio::time::sleep(connect_delay(profile, &mut rng)).await;
    let tcp = traced_connect(ctx, index).await?;
    Ok(LinkStream::emulated(tcp, profile, rng))
}

/// The socket of device `index`, connected without Nagle, its connection recorded in the run's
/// connection log from just before its SYN.
async fn traced_connect(ctx: &DeviceContext, index: usize) -> std::io::Result<Traced> {
    let syn = Instant::now();
    let tcp = tcp_connect(ctx, index).await?;
    let _ = tcp.set_nodelay(true);
    Ok(Traced::new(tcp, syn, index, ctx.connections.as_ref()))
}

/// The TCP connect itself, the CPU time of its calls counted in [`DeviceContext::connects`]. A
/// bound source defers its port to connect() (`IP_BIND_ADDRESS_NO_PORT`), where the kernel picks
/// one unique for the whole 4-tuple.
async fn tcp_connect(ctx: &DeviceContext, index: usize) -> std::io::Result<TcpStream> {
    let started = ConnectMeter::now();
    let Some(source) = ctx.sources.get(index % ctx.sources.len().max(1)) else {
        return ctx.connects.time(TcpStream::connect(ctx.addr)).await;
    };
    let socket = dps_server::client::connect::bound_socket(*source)?;
    ctx.connects
        .add(ConnectMeter::now().saturating_sub(started));
    ctx.connects.time(socket.connect(ctx.addr)).await
}

/// Open a session: TCP, TLS with `connector` (the device's chain and key; none for a TPM device,
/// see [`super::prepare`]), then the server's
/// verdict (its CSM, or the alert). Records `Tcp` and `Handshake` (a refusal is a completed
/// handshake too: its latency is the time to the alert).
pub(super) async fn open_session(
    ctx: &DeviceContext,
    (index, class): (usize, DeviceClass),
    connector: &TlsConnector,
    handshake: Phase,
    phases: &mut Ledger,
) -> Result<Session, Observed> {
    let started = Instant::now();
    let tcp = connect_tcp(ctx, index, class)
        .await
        .map_err(|e| Observed::failed(FailureKind::Connect, format!("connect: {e}")))?;
    phases.record(Phase::Tcp, started);
    phases.watch(tcp.get_ref().read_delay());
    let started = Instant::now();
    let name = ServerName::IpAddress(ctx.addr.ip().into());
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| handshake_failure(&e))?;
    let mut io = DeviceIo::new(tls, dps_server::client::coap::MAX_MESSAGE);
    // TLS 1.3 clients finish before the server has judged their certificate: the verdict (CSM or
    // alert) is the first thing the server sends.
    match io.read_frame().await {
        Ok(Some(f)) if f.code == Code::CSM => {}
        Ok(Some(f)) => return Err(Observed::protocol(format!("expected CSM, got {}", f.code))),
        Ok(None) => return Err(Observed::failed(FailureKind::Reset, "closed before CSM")),
        Err(e) => {
            let observed = stream_failure("handshake", &e);
            if matches!(observed, Observed::Rejected { .. }) {
                phases.record(handshake, started);
            }
            return Err(observed);
        }
    }
    phases.record(handshake, started);
    Ok(io)
}

/// A handshake that did not complete: the server's alert, else a TLS failure (or the connection
/// reset under it).
fn handshake_failure(e: &std::io::Error) -> Observed {
    if let Some(alert) = tls::alert_of(e) {
        return Observed::Rejected { alert };
    }
    let kind = match FailureKind::of_io(e) {
        FailureKind::Io => FailureKind::Tls,
        other => other,
    };
    Observed::failed(kind, format!("handshake: {e}"))
}

/// Against a TLS-only target: TCP, TLS with `connector` (the device's chain and key), then the device's close_notify
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
    (index, class): (usize, DeviceClass),
    connector: &TlsConnector,
    phases: &mut Ledger,
) -> Observed {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let started = Instant::now();
    let tcp = match connect_tcp(ctx, index, class).await {
        Ok(tcp) => tcp,
        Err(e) => return Observed::failed(FailureKind::Connect, format!("connect: {e}")),
    };
    phases.record(Phase::Tcp, started);
    phases.watch(tcp.get_ref().read_delay());
    let started = Instant::now();
    let name = ServerName::IpAddress(ctx.addr.ip().into());
    let mut tls = match connector.connect(name, tcp).await {
        Ok(tls) => tls,
        Err(e) => return handshake_failure(&e),
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
                    Ok(()) => Observed::failed(
                        FailureKind::of_io(&e),
                        format!("after the handshake: {e}"),
                    ),
                    Err(c) => Observed::failed(
                        FailureKind::of_io(&c),
                        format!("closing after the handshake: {c}; then {e}"),
                    ),
                };
            }
        }
    };
    if !matches!(observed, Observed::Failed { .. }) {
        phases.record(Phase::Handshake, started);
    }
    observed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::DeviceMode;
    use crate::spec::{KeyExchange, TlsVersion};
    use dps_server::pki::{CertSpec, Issued};
    use rcgen::{ExtendedKeyUsagePurpose, SanType};
    use rustls::pki_types::CertificateDer;
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::Duration;

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
            mode: DeviceMode::TlsOnly,
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
            timeout: Duration::from_secs(10),
            retry: Arc::new(crate::retry::RetryPlan::none(Duration::from_secs(10))),
            sources: Vec::new(),
            connects: Arc::default(),
            connections: None,
            links: Default::default(),
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
            let mut phases = Ledger::new(std::time::Instant::now());
            let ctx = tls_only_context(addr, ca.clone(), KeyExchange::X25519);
            let connector = |ctx: &DeviceContext, d: &Issued| {
                ctx.tls.connector(Some(own(d))).expect("connector")
            };
            let valid = (0, DeviceClass::Valid);
            let accepted =
                handshake_then_close(&ctx, valid, &connector(&ctx, &device), &mut phases).await;
            assert_eq!(accepted, Observed::Attested, "greeting {greeting:?}");
            assert!(phases.since(0).iter().any(|(p, _)| *p == Phase::Handshake));
            let ctx = tls_only_context(addr, ca.clone(), KeyExchange::P256);
            let p256 =
                handshake_then_close(&ctx, valid, &connector(&ctx, &device), &mut phases).await;
            assert_eq!(p256, Observed::Attested);
            let refused =
                handshake_then_close(&ctx, valid, &connector(&ctx, &stranger), &mut phases).await;
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
