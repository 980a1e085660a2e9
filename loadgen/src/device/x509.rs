//! An X.509 device's run: TLS with its manufacturer chain, then the provisioning steps; an
//! `identity` device then reconnects with the identity certificate it was issued and provisions
//! again. Against a TLS-only target, the handshake and the server's end of the connection only.

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::connect::{handshake_then_close, open_session};
use super::context::DeviceContext;
use super::ledger::Ledger;
use super::observed::Observed;
use super::prepare::Prepared;
use super::provision::provision;
use super::session::Session;
use crate::fleet::{Device, DeviceClass};
use crate::metrics::Phase;
use crate::scenario::DeviceMode;

type Phases = Ledger;

/// The device's whole run up to holding: what it observed, and its open session when it ended
/// attested or provisioned (for the hold executor).
pub(super) async fn flow(
    dev: &Device,
    prepared: &Prepared,
    ctx: &DeviceContext,
    phases: &mut Phases,
) -> (Observed, Option<Session>) {
    let connector = match &prepared.connector {
        Ok(connector) => connector,
        Err(e) => return (Observed::device(e.clone()), None),
    };
    if ctx.mode == DeviceMode::TlsOnly {
        let observed = handshake_then_close(ctx, (dev.index, dev.class), connector, phases).await;
        return (observed, None);
    }
    let mut io = match open_session(
        ctx,
        (dev.index, dev.class),
        connector,
        Phase::Handshake,
        phases,
    )
    .await
    {
        Ok(io) => io,
        Err(observed) => return (observed, None),
    };
    if ctx.mode.handshake_only() {
        return (Observed::Attested, Some(io));
    }
    let device_id = uuid::Uuid::new_v4();
    let first = match provision(&mut io, dev.index, device_id, prepared.csr_key(0), phases).await {
        Ok(p) => p,
        Err(observed) => return (observed, None),
    };
    if dev.class != DeviceClass::Identity {
        return (
            Observed::Provisioned {
                owner: first.owner,
                device_id: first.device_id.to_string(),
            },
            Some(io),
        );
    }
    // Like a device after a reboot: a new session authenticated by the identity certificate.
    drop(io);
    let identity_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(first.key_der));
    let connector = match ctx
        .tls
        .connector(Some((vec![first.identity], identity_key)))
    {
        Ok(connector) => connector,
        Err(e) => return (Observed::device(e), None),
    };
    let mut io = match open_session(
        ctx,
        (dev.index, dev.class),
        &connector,
        Phase::IdentityHandshake,
        phases,
    )
    .await
    {
        Ok(io) => io,
        Err(observed) => return (observed, None),
    };
    match provision(&mut io, dev.index, device_id, prepared.csr_key(1), phases).await {
        Ok(again) if again.owner == first.owner => {
            let device_id = again.device_id.to_string();
            (
                Observed::Reconnected {
                    owner: again.owner,
                    device_id,
                },
                Some(io),
            )
        }
        Ok(again) => (
            Observed::protocol(format!(
                "identity session got owner {}, the first session {}",
                again.owner, first.owner
            )),
            None,
        ),
        Err(observed) => (observed, None),
    }
}
