//! One simulated device running the real protocol: TCP, TLS with its manufacturer chain, then the
//! CoAP flow in iotivity-lite's order (time, ownership, cloud configuration, credentials from a
//! fresh CSR, ACLs), checking every answer as a device would. Uses the server crate's codec.
//!
//! Variants ([`crate::scenario::DeviceMode`]): the whole flow, handshake only, or against a
//! TLS-only target the handshake and the server's end of the connection; `identity` devices
//! reconnect with the identity certificate they were issued and provision again ([`x509`]); TPM
//! devices connect without a client certificate and attest with the TPM nonce challenge first
//! ([`tpm`]); under the hold executor a device then stays connected and pings until released
//! ([`hold`]).
//!
//! Inside, each file has one job and imports only the ones below it: `link` (the socket through
//! the device's link profile), `session` (framing as the real client reads it), `strict` (its checks), `tls` (the TLS client), `observed` (outcomes and
//! failure kinds), `context`, `connect` (TCP, TLS, verdict), `provision` (the CoAP steps), `x509`
//! and `tpm` (the two ways to attest), `hold`; this module only dispatches.

mod connect;
mod context;
pub mod hold;
pub mod link;
mod observed;
mod provision;
mod session;
pub mod strict;
#[cfg(feature = "tpm-sim")]
pub mod swtpm;
pub mod tls;
mod tpm;
mod x509;

use std::time::Instant;

pub use connect::handshake_then_close;
pub use context::{source_addresses, DeviceContext};
pub use observed::{DeviceRun, FailureKind, Observed};
pub use session::{DeviceIo, Session, SessionError};
pub use strict::StrictCheck;
pub use tls::expected_alert;

use crate::fleet::{Credentials, Device};
use crate::metrics::Phase;

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
    let flow = Box::pin(flow(dev, ctx, &mut phases));
    let result = tokio::time::timeout(ctx.timeout, flow).await;
    let (observed, session) = match result {
        Ok(done) => done,
        Err(_) => (
            Observed::failed(
                FailureKind::Timeout,
                format!("timed out after {:?}", ctx.timeout),
            ),
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

/// The device's run up to holding, by how it attests.
async fn flow(
    dev: &Device,
    ctx: &DeviceContext,
    phases: &mut Vec<(Phase, std::time::Duration)>,
) -> (Observed, Option<Session>) {
    match &dev.credentials {
        Credentials::X509 { chain, key } => {
            x509::flow(dev, (chain.clone(), key.clone_key()), ctx, phases).await
        }
        Credentials::Tpm(tpm) => tpm::flow(dev, tpm, ctx, phases).await,
    }
}
