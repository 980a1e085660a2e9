//! The provisioning flow of one device, step by step, with the checks a device makes on each
//! answer (iotivity-lite's, from [`super::strict`], then the spec's).

use std::time::{Duration, Instant};

use dps_server::proto::body::{
    self, CloudConfigurationRequest, ContentFormat, CredentialsRequest, Csr,
};
use dps_server::proto::coap::{Code, Frame};
use rcgen::PublicKeyData as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::strict::{self, DpsClock, StrictCheck, Violation};
use super::{open_session, reconnects, stream_failure, DeviceContext, Observed, Session};
use crate::fleet::{Credentials, Device};
use crate::metrics::Phase;

type Phases = Vec<(Phase, Duration)>;

/// What a successful provisioning left the device with.
pub(super) struct Provisioned {
    /// `devowneruuid`.
    pub(super) owner: String,
    identity: CertificateDer<'static>,
    key: rcgen::KeyPair,
}

pub(super) fn failed(error: impl Into<String>) -> Observed {
    Observed::Failed {
        error: error.into(),
    }
}

/// The device's whole run up to holding: what it observed, and its open session when it ended
/// attested or provisioned (for the hold executor).
pub(super) async fn flow(
    dev: &Device,
    ctx: &DeviceContext,
    phases: &mut Phases,
) -> (Observed, Option<Session>) {
    let (chain, key) = match &dev.credentials {
        Credentials::X509 { chain, key } => (chain.clone(), key.clone_key()),
        Credentials::Tpm(tpm) => return super::tpm::flow(dev, tpm, ctx, phases).await,
    };
    if ctx.tls_only {
        let observed = super::handshake_then_close(ctx, dev.index, (chain, key), phases).await;
        return (observed, None);
    }
    let mut io =
        match open_session(ctx, dev.index, Some((chain, key)), Phase::Handshake, phases).await {
            Ok(io) => io,
            Err(observed) => return (observed, None),
        };
    if ctx.handshake_only {
        return (Observed::Attested, Some(io));
    }
    let device_id = uuid::Uuid::new_v4();
    let first = match provision(&mut io, dev.index, device_id, phases).await {
        Ok(p) => p,
        Err(observed) => return (observed, None),
    };
    if !reconnects(dev) {
        return (Observed::Provisioned { owner: first.owner }, Some(io));
    }
    // Like a device after a reboot: a new session authenticated by the identity certificate.
    drop(io);
    let identity_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(first.key.serialize_der()));
    let mut io = match open_session(
        ctx,
        dev.index,
        Some((vec![first.identity], identity_key)),
        Phase::IdentityHandshake,
        phases,
    )
    .await
    {
        Ok(io) => io,
        Err(observed) => return (observed, None),
    };
    match provision(&mut io, dev.index, device_id, phases).await {
        Ok(again) if again.owner == first.owner => {
            (Observed::Reconnected { owner: again.owner }, Some(io))
        }
        Ok(again) => (
            failed(format!(
                "identity session got owner {}, the first session {}",
                again.owner, first.owner
            )),
            None,
        ),
        Err(observed) => (observed, None),
    }
}

fn request(code: Code, token: u64, path: &str) -> Frame {
    Frame::request(code, &token.to_be_bytes(), path).with_accept(ContentFormat::OcfCbor.as_u16())
}

pub(super) fn post<T: serde::Serialize>(
    token: u64,
    path: &str,
    body: &T,
) -> Result<Frame, Observed> {
    let payload = body::to_cbor(body).map_err(|e| failed(e.to_string()))?;
    Ok(request(Code::POST, token, path)
        .with_content_format(ContentFormat::OcfCbor.as_u16())
        .with_payload(payload))
}

/// One request and its answer, parsed as the real client's `oc_rep` parser would (a body it
/// cannot parse fails `check`, the check of this answer).
async fn step(
    io: &mut Session,
    phase: Phase,
    req: Frame,
    want: Code,
    check: StrictCheck,
    phases: &mut Phases,
) -> Result<strict::rep::Object, Observed> {
    let started = Instant::now();
    let resp = io
        .exchange(&req)
        .await
        .map_err(|e| stream_failure(phase.as_str(), &e))?;
    phases.push((phase, started.elapsed()));
    if resp.code != want {
        return Err(failed(format!(
            "{phase}: {} {}",
            resp.code,
            String::from_utf8_lossy(&resp.payload)
        )));
    }
    strict::parse_root(&resp.payload)
        .map_err(|e| Violation::new(check, format!("{phase}: cannot parse the body: {e}")).into())
}

/// Time, ownership, cloud configuration, credentials (for `device_id`, with a fresh key) and ACLs
/// on one session, each answer checked as iotivity-lite's client checks it ([`strict`]), then as
/// the spec requires beyond that.
pub(super) async fn provision(
    io: &mut Session,
    index: usize,
    device_id: uuid::Uuid,
    phases: &mut Phases,
) -> Result<Provisioned, Observed> {
    let token = (index as u64) << 8;
    let time = step(
        io,
        Phase::Time,
        request(Code::GET, token, "/x.plgd.dev/time"),
        Code::CONTENT,
        StrictCheck::Time,
        phases,
    )
    .await?;
    let clock = DpsClock::new(strict::time(&time)?);
    let own = step(
        io,
        Phase::Ownership,
        request(Code::GET, token + 1, "/api/v1/provisioning/ownership"),
        Code::CONTENT,
        StrictCheck::Ownership,
        phases,
    )
    .await?;
    let owner = strict::ownership(&own)?;
    if uuid::Uuid::parse_str(&owner).is_err() {
        return Err(failed(format!("ownership: not a UUID: {owner:?}")));
    }
    let cloud_req = CloudConfigurationRequest {
        di: device_id.to_string(),
        selected_gateway: None,
    };
    let cloud = step(
        io,
        Phase::CloudConfiguration,
        post(
            token + 2,
            "/api/v1/provisioning/cloud-configuration",
            &cloud_req,
        )?,
        Code::CHANGED,
        StrictCheck::CloudConfiguration,
        phases,
    )
    .await?;
    let cloud = strict::cloud_configuration(&cloud)?;
    if cloud.cis.is_empty() || uuid::Uuid::parse_str(&cloud.sid).is_err() {
        return Err(failed("cloud configuration without cis or a UUID sid"));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| failed(e.to_string()))?;
    let csr = dps_server::pki::device_csr(&device_id, &key).map_err(|e| failed(e.to_string()))?;
    let cred_req = CredentialsRequest {
        di: device_id.to_string(),
        csr: Csr {
            data: csr,
            encoding: "oic.sec.encoding.pem".into(),
        },
    };
    let creds = step(
        io,
        Phase::Credentials,
        post(token + 3, "/api/v1/provisioning/credentials", &cred_req)?,
        Code::CHANGED,
        StrictCheck::Credentials,
        phases,
    )
    .await?;
    let spki = key.subject_public_key_info();
    let device = strict::DeviceKey {
        device_id,
        spki: &spki,
    };
    let applied = strict::credentials(&creds, &device, &clock)?;
    if applied.identity_subject != device_id.to_string() {
        return Err(failed(format!(
            "credentials: the identity certificate is for subject {:?}, not this device",
            applied.identity_subject
        )));
    }
    let acls = step(
        io,
        Phase::Acls,
        request(Code::GET, token + 4, "/api/v1/provisioning/acls"),
        Code::CONTENT,
        StrictCheck::Acls,
        phases,
    )
    .await?;
    if strict::acls(&acls)? == 0 {
        return Err(failed("acls: empty"));
    }
    Ok(Provisioned {
        owner,
        identity: applied.identity,
        key,
    })
}
