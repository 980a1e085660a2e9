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
#[cfg(feature = "tpm-sim")]
pub mod swtpm;
pub mod tls;
mod tpm;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_server::proto::coap::Code;
use dps_server::proto::stream::{FramedIo, StreamError};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpSocket, TcpStream};

use crate::fleet::tpm::TpmStep;
use crate::fleet::{Device, DeviceClass};
use crate::metrics::Phase;
pub use tls::expected_alert;

/// A device's CoAP session over TLS.
pub type Session = FramedIo<tokio_rustls::client::TlsStream<TcpStream>>;

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
    /// The CA the server certificate chains to; `None`: accept any server certificate.
    pub server_ca: Option<CertificateDer<'static>>,
    /// Stop after the handshake.
    pub handshake_only: bool,
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

fn stream_failure(step: &str, e: &StreamError) -> Observed {
    if let StreamError::Io(io) = e {
        if let Some(alert) = tls::alert_of(io) {
            return Observed::Rejected { alert };
        }
    }
    Observed::Failed {
        error: format!("{step}: {e}"),
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
    let config = tls::client_config(client, ctx.server_ca.as_ref())
        .map_err(|error| Observed::Failed { error })?;
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
    let mut io = FramedIo::new(tls, MAX_MESSAGE);
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
}
