//! The provisioning flow of one device, step by step, with the checks a device makes on each
//! answer.

use std::time::{Duration, Instant};

use dps_server::proto::body::{
    self, AclsResponse, CloudConfigurationRequest, CloudConfigurationResponse, ContentFormat,
    CredentialsRequest, CredentialsResponse, Csr, OwnershipResponse, TimeResponse,
};
use dps_server::proto::coap::{Code, Frame};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

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

async fn step<T: serde::de::DeserializeOwned>(
    io: &mut Session,
    phase: Phase,
    req: Frame,
    want: Code,
    phases: &mut Phases,
) -> Result<T, Observed> {
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
    body::from_cbor(&resp.payload).map_err(|e| failed(format!("{phase}: {e}")))
}

/// Time, ownership, cloud configuration, credentials (for `device_id`, with a fresh key) and ACLs
/// on one session.
pub(super) async fn provision(
    io: &mut Session,
    index: usize,
    device_id: uuid::Uuid,
    phases: &mut Phases,
) -> Result<Provisioned, Observed> {
    let token = (index as u64) << 8;
    let time: TimeResponse = step(
        io,
        Phase::Time,
        request(Code::GET, token, "/x.plgd.dev/time"),
        Code::CONTENT,
        phases,
    )
    .await?;
    if time::OffsetDateTime::parse(&time.time, &time::format_description::well_known::Rfc3339)
        .is_err()
    {
        return Err(failed(format!("time: not RFC 3339: {:?}", time.time)));
    }
    let own: OwnershipResponse = step(
        io,
        Phase::Ownership,
        request(Code::GET, token + 1, "/api/v1/provisioning/ownership"),
        Code::CONTENT,
        phases,
    )
    .await?;
    if uuid::Uuid::parse_str(&own.devowneruuid).is_err() {
        return Err(failed(format!(
            "ownership: not a UUID: {:?}",
            own.devowneruuid
        )));
    }
    let cloud_req = CloudConfigurationRequest {
        di: device_id.to_string(),
        selected_gateway: None,
    };
    let cloud: CloudConfigurationResponse = step(
        io,
        Phase::CloudConfiguration,
        post(
            token + 2,
            "/api/v1/provisioning/cloud-configuration",
            &cloud_req,
        )?,
        Code::CHANGED,
        phases,
    )
    .await?;
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
    let creds: CredentialsResponse = step(
        io,
        Phase::Credentials,
        post(token + 3, "/api/v1/provisioning/credentials", &cred_req)?,
        Code::CHANGED,
        phases,
    )
    .await?;
    let identity = creds
        .creds
        .iter()
        .find(|c| c.credusage == "oic.sec.cred.cert" && c.subjectuuid == device_id.to_string())
        .and_then(|c| c.publicdata.as_ref())
        .and_then(|p| CertificateDer::from_pem_slice(p.data.as_bytes()).ok())
        .ok_or_else(|| failed("credentials: no identity certificate for this device"))?;
    if !creds
        .creds
        .iter()
        .any(|c| c.credusage == "oic.sec.cred.trustca")
    {
        return Err(failed("credentials: no trust CA"));
    }
    let acls: AclsResponse = step(
        io,
        Phase::Acls,
        request(Code::GET, token + 4, "/api/v1/provisioning/acls"),
        Code::CONTENT,
        phases,
    )
    .await?;
    if acls.aclist2.is_empty() {
        return Err(failed("acls: empty"));
    }
    Ok(Provisioned {
        owner: own.devowneruuid,
        identity,
        key,
    })
}
