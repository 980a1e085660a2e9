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
//! the device's link profile), `session` (framing as the real client reads it), `strict` (its
//! checks), `tls` (the TLS client: the scenario's options on [`dps_server::client`], which also
//! builds the requests and runs the provisioning steps), `observed` (outcomes and failure kinds),
//! `context`, `connect` (TCP, TLS, verdict), `provision` (the CoAP steps, checked), `x509`
//! and `tpm` (the two ways to attest), `hold`; this module dispatches, and runs a device's
//! attempts as its retry policy ([`crate::retry`]) says.

mod connect;
mod context;
pub mod hold;
pub mod ledger;
pub mod link;
mod observed;
mod prepare;
mod provision;
pub mod rx_stamp;
mod session;
pub mod strict;
#[cfg(feature = "tpm-sim")]
pub mod swtpm;
pub mod tls;
mod tpm;
pub mod trace;
mod x509;

use std::time::{Duration, Instant};

pub use connect::handshake_then_close;
pub use context::DeviceContext;
pub use ledger::Ledger;
pub use observed::{DeviceRun, FailureKind, Observed};
pub use prepare::{prepare, Prepared};
pub use session::{DeviceIo, Session, SessionError};
pub use strict::StrictCheck;
pub use tls::expected_alert;

use crate::fleet::{Credentials, Device};
use crate::metrics::Phase;
use crate::retry::{AttemptEnd, Jitter, Next, Schedule};

/// Run one device, prepared ahead ([`prepare`]); latency of `Total` counts from `scheduled`
/// (coordinated omission). Under the hold executor the device then stays connected until
/// released; its held time is not in `Total`.
pub async fn run(
    dev: &Device,
    ctx: &DeviceContext,
    prepared: &Prepared,
    scheduled: Instant,
) -> DeviceRun {
    run_then(dev, ctx, prepared, scheduled, || {}).await
}

/// [`run`], calling `through` as soon as the device is through its flow (before any hold).
///
/// An attempt that ends in an error (not a verdict: a refusal its class may expect is final) is
/// followed by another one, from scratch (new TCP and TLS), as the device's retry policy says
/// ([`crate::retry`]). Each attempt's phases are recorded ([`Ledger`]: they add up to its
/// `Total`), its `Total` from its own start (the first attempt's from `scheduled`); a device that
/// got in also records `ProvisionedAfterRetries`, from `scheduled` to the end of its last attempt.
pub async fn run_then(
    dev: &Device,
    ctx: &DeviceContext,
    prepared: &Prepared,
    scheduled: Instant,
    through: impl FnOnce() + Send,
) -> DeviceRun {
    let mut phases = Ledger::new(scheduled);
    let mut schedule = Schedule::new(ctx.retry.policy(dev.class), ctx.retry.deadline);
    let mut jitter = Jitter::for_device(dev.index);
    let mut attempt_errors = Vec::new();
    let mut timeout = schedule.first_timeout();
    let (observed, session) = loop {
        schedule.started();
        let first = phases.len();
        let (observed, session) = attempt(dev, ctx, prepared, timeout, &mut phases).await;
        phases.end_attempt();
        let Some(label) = observed.error_label() else {
            break (observed, session);
        };
        attempt_errors.push(label);
        // The time step was answered: iotivity-lite's client resets its retry counter then.
        let progressed = phases
            .since(first)
            .iter()
            .any(|(p, _)| *p == Phase::Ownership);
        match schedule.after_failure(
            attempt_end(&observed),
            progressed,
            scheduled.elapsed(),
            &mut jitter,
        ) {
            Next::GiveUp => break (observed, session),
            Next::Retry {
                delay,
                timeout: next,
            } => {
                drop(session);
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                timeout = next;
                phases.begin_attempt(Instant::now());
            }
        }
    };
    let since_scheduled = scheduled.elapsed();
    if matches!(
        observed,
        Observed::Provisioned { .. } | Observed::Reconnected { .. } | Observed::Attested
    ) {
        phases.push(Phase::ProvisionedAfterRetries, since_scheduled);
    }
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
        phases: phases.into_phases(),
        through: through_at,
        attempts: schedule.attempts(),
        since_scheduled,
        attempt_errors,
    }
}

/// How a failed attempt ended, for the retry schedule.
fn attempt_end(observed: &Observed) -> AttemptEnd {
    match observed {
        Observed::Failed {
            kind: FailureKind::Timeout,
            ..
        } => AttemptEnd::Timeout,
        Observed::Failed {
            kind: FailureKind::Busy,
            ..
        } => AttemptEnd::Busy {
            max_age: observed.max_age(),
        },
        _ => AttemptEnd::Other,
    }
}

/// One attempt under `timeout`: what the device observed, and its session if it is attested or
/// provisioned.
async fn attempt(
    dev: &Device,
    ctx: &DeviceContext,
    prepared: &Prepared,
    timeout: Duration,
    phases: &mut Ledger,
) -> (Observed, Option<Session>) {
    // Boxed: the flow's state is large and only needed until the device is through; a held
    // device's task then keeps just the session, and a device waiting to retry nothing.
    let flow = Box::pin(flow(dev, ctx, prepared, phases));
    match tokio::time::timeout(timeout, flow).await {
        Ok(done) => done,
        Err(_) => (
            Observed::failed(FailureKind::Timeout, format!("timed out after {timeout:?}")),
            None,
        ),
    }
}

/// The device's run up to holding, by how it attests.
async fn flow(
    dev: &Device,
    ctx: &DeviceContext,
    prepared: &Prepared,
    phases: &mut Ledger,
) -> (Observed, Option<Session>) {
    match &dev.credentials {
        Credentials::X509 { .. } => x509::flow(dev, prepared, ctx, phases).await,
        Credentials::Tpm(tpm) => tpm::flow(dev, tpm, prepared, ctx, phases).await,
    }
}
