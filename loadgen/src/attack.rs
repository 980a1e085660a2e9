//! Attackers beside the devices: floods a provisioning service must survive. Each `[[attack]]`
//! of a scenario runs `connections` hostile connections from `start` for `duration`, while the
//! executor keeps starting real devices; the run then tells how the devices fared before and during
//! the attack, and whether the server gave its resources back once the attackers left.
//!
//! Kinds:
//! - `idle-tcp`: TCP connections that never start TLS (the server's handshake timeout must close
//!   them, and they must not starve devices of connection slots).
//! - `half-frame`: TLS without a client certificate (allowed, for TPM attestation), then half a
//!   CoAP frame and silence (the inactivity timeout must close them).
//! - `oversized`: TLS, then a frame header claiming a body far beyond the message size limit (the
//!   server must refuse it at once, without buffering).
//! - `handshake-storm`: full TLS handshakes with a certificate from an unknown CA, back to back on
//!   every connection slot (each costs the server a handshake and a refusal).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_server::pki::{CertSpec, Issued};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};

pub use crate::spec::{AttackKind, AttackSpec};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What the attackers saw, in the summary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttackReport {
    /// The kind.
    pub kind: AttackKind,
    /// Connections attempted.
    pub attempted: u64,
    /// Connections the server accepted at the TCP level.
    pub opened: u64,
    /// Of those, closed (or refused) by the server before the attacker left.
    pub closed_by_server: u64,
    /// Median time from connect to the server closing, ms (0 if it never did).
    pub p50_close_ms: u64,
}

#[derive(Default)]
struct Counters {
    attempted: AtomicU64,
    opened: AtomicU64,
    closed_by_server: AtomicU64,
    close_ms: std::sync::Mutex<Vec<u64>>,
}

impl Counters {
    /// The server closed a connection opened at `started`.
    fn closed_by_server_after(&self, started: Instant) {
        self.closed_by_server.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut v) = self.close_ms.lock() {
            v.push(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX));
        }
    }
}

/// A running attack; [`Running::finish`] waits for it to end.
pub struct Running {
    spec: AttackSpec,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

/// Credentials of a device nobody enrolled (for the handshake storm).
struct Stranger {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn stranger() -> Option<Stranger> {
    let root = Issued::self_signed(&CertSpec::ca("dps-loadgen attacker CA")).ok()?;
    let leaf = root.issue(&CertSpec::device("attacker")).ok()?;
    Some(Stranger {
        chain: vec![leaf.der().clone()],
        key: leaf.key_der(),
    })
}

/// The source address of attack number `index` against `target`: on IPv4 loopback
/// `127.0.0.(200 + index)`, apart from the devices' addresses (as attackers come from elsewhere);
/// otherwise whatever the OS picks.
pub fn source_address(target: &SocketAddr, index: usize) -> Option<std::net::IpAddr> {
    match target.ip() {
        std::net::IpAddr::V4(ip) if ip.is_loopback() => {
            Some(std::net::IpAddr::V4(std::net::Ipv4Addr::new(
                127,
                0,
                0,
                200u8.saturating_add(u8::try_from(index).unwrap_or(50)),
            )))
        }
        _ => None,
    }
}

async fn connect(addr: SocketAddr, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    dps_server::client::connect::connect_from(source, addr).await
}

/// Start `spec` against `addr` from `source`, timed from `t0`.
pub fn start(
    spec: &AttackSpec,
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    t0: Instant,
) -> Running {
    let counters = Arc::new(Counters::default());
    let spec2 = spec.clone();
    let c = counters.clone();
    let task = tokio::spawn(async move {
        tokio::time::sleep_until((t0 + spec2.start).into()).await;
        let end = Instant::now() + spec2.duration;
        let client = Arc::new(client_config(spec2.kind));
        let mut handles = Vec::with_capacity(spec2.connections);
        for i in 0..spec2.connections {
            if spec2.rate > 0.0 {
                let at = Instant::now()
                    .max(t0 + spec2.start + Duration::from_secs_f64(i as f64 / spec2.rate));
                tokio::time::sleep_until(at.into()).await;
            }
            if Instant::now() >= end {
                break;
            }
            let (c, client) = (c.clone(), client.clone());
            let kind = spec2.kind;
            handles.push(tokio::spawn(async move {
                attacker(kind, (addr, source), end, &c, client).await;
            }));
        }
        for h in handles {
            let _ = h.await;
        }
    });
    Running {
        spec: spec.clone(),
        counters,
        task,
    }
}

impl Running {
    /// Wait for the attackers to leave; their report.
    pub async fn finish(self) -> AttackReport {
        let _ = self.task.await;
        let c = &self.counters;
        let mut close = c.close_ms.lock().map(|v| v.clone()).unwrap_or_default();
        close.sort_unstable();
        AttackReport {
            kind: self.spec.kind,
            attempted: c.attempted.load(Ordering::Relaxed),
            opened: c.opened.load(Ordering::Relaxed),
            closed_by_server: c.closed_by_server.load(Ordering::Relaxed),
            p50_close_ms: close.get(close.len() / 2).copied().unwrap_or(0),
        }
    }

    /// When the attack is active, relative to the start of the devices.
    pub fn window(&self) -> (Duration, Duration) {
        (self.spec.start, self.spec.start + self.spec.duration)
    }
}

/// The attackers' TLS client, built once per attack and shared by its connections.
///
/// It offers X25519 only: the default provider's first key share is X25519MLKEM768, whose key
/// generation cost the attacker (which shares the machine with the devices here) about as much as
/// the server spends shedding it, and a real storm's CPU is somebody else's. The server's work is
/// the same either way: it sheds the storm at accept, before any TLS.
fn client_config(kind: AttackKind) -> Option<Arc<rustls::ClientConfig>> {
    use dps_server::client::{ClientAuth, DeviceTls, ServerTrust, TlsChoices};
    let choices = TlsChoices {
        kx_groups: Some(vec![rustls::crypto::aws_lc_rs::kx_group::X25519]),
        ..TlsChoices::default()
    };
    let tls = DeviceTls::new(ServerTrust::AnyServer, choices).ok()?;
    let auth = match kind {
        AttackKind::HandshakeStorm => {
            let s = stranger()?;
            ClientAuth::Certificate(s.chain, s.key)
        }
        _ => ClientAuth::None,
    };
    Some(Arc::new(tls.config(auth).ok()?))
}

/// How long a storm connection opened near the attack's end may wait for its refusal.
const STORM_GRACE: Duration = Duration::from_secs(2);

/// Wait until the server closes `stream` or `end` comes; true if the server closed it.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, end: Instant) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout_at(end.into(), stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

async fn attacker(
    kind: AttackKind,
    (addr, source): (SocketAddr, Option<std::net::IpAddr>),
    end: Instant,
    c: &Counters,
    client: Arc<Option<Arc<rustls::ClientConfig>>>,
) {
    loop {
        if Instant::now() >= end {
            return;
        }
        c.attempted.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let mut tcp = match tokio::time::timeout_at(end.into(), connect(addr, source)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                // Accepted and reset before the connect call returned: a server shedding at
                // accept is that fast. The connection was opened and closed by the server; a
                // storm comes straight back.
                c.opened.fetch_add(1, Ordering::Relaxed);
                c.closed_by_server_after(started);
                if kind == AttackKind::HandshakeStorm {
                    continue;
                }
                tokio::time::sleep_until(end.into()).await;
                return;
            }
            _ => {
                // Refused or out of time: pause a little so a refusing server is not spun against.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        c.opened.fetch_add(1, Ordering::Relaxed);
        // A storm connection opened just before the end still gets its refusal: it waits up to
        // STORM_GRACE for it instead of giving up mid-handshake (and counting as left open).
        let end = match kind {
            AttackKind::HandshakeStorm => end.max(started + STORM_GRACE),
            _ => end,
        };
        let closed = match (kind, client.as_ref()) {
            (AttackKind::IdleTcp, _) => until_closed(&mut tcp, end).await,
            (_, None) => return,
            (kind, Some(config)) => {
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let name = ServerName::IpAddress(addr.ip().into());
                match tokio::time::timeout_at(end.into(), connector.connect(name, tcp)).await {
                    Err(_) => false,
                    Ok(Err(_)) => true,
                    Ok(Ok(mut tls)) => match kind {
                        AttackKind::HalfFrame => {
                            // A request header promising 200 bytes of options and payload.
                            let _ = tls.write_all(&[0xd0, 200 - 13, 0x01, 0xb4]).await;
                            let _ = tls.flush().await;
                            until_closed(&mut tls, end).await
                        }
                        AttackKind::Oversized => {
                            // Extended length of 4 bytes: about 4 GiB.
                            let _ = tls.write_all(&[0xf0, 0xff, 0xff, 0xff, 0x00, 0x01]).await;
                            let _ = tls.flush().await;
                            until_closed(&mut tls, end).await
                        }
                        // The storm's certificate is refused: the alert closes the session.
                        _ => until_closed(&mut tls, end).await,
                    },
                }
            }
        };
        if closed {
            c.closed_by_server_after(started);
        }
        // Only the storm comes back for more; the others hold their one connection.
        if kind != AttackKind::HandshakeStorm {
            // Hold the slot until the attack ends, like a patient attacker.
            tokio::time::sleep_until(end.into()).await;
            return;
        }
    }
}
