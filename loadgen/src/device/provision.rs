//! The CoAP provisioning steps of one session, in iotivity-lite's order (time, ownership, cloud
//! configuration, credentials from a fresh CSR, ACLs), each answer checked as iotivity-lite's
//! client checks it ([`super::strict`]), then as the spec requires beyond that. X.509 and TPM
//! devices run the same steps once attested.

use std::time::{Duration, Instant};

use dps_server::proto::body::{
    self, CloudConfigurationRequest, ContentFormat, CredentialsRequest, Csr,
};
use dps_server::proto::coap::{Code, Frame};
use rcgen::PublicKeyData as _;
use rustls::pki_types::CertificateDer;

use super::observed::{stream_failure, Observed};
use super::session::Session;
use super::strict::{self, DpsClock, StrictCheck, Violation};
use crate::metrics::Phase;

type Phases = Vec<(Phase, Duration)>;

/// What a successful provisioning left the device with.
pub(super) struct Provisioned {
    /// `devowneruuid`.
    pub(super) owner: String,
    /// The identity certificate it was issued.
    pub(super) identity: CertificateDer<'static>,
    /// The key of that certificate.
    pub(super) key: rcgen::KeyPair,
}

pub(super) fn request(code: Code, token: u64, path: &str) -> Frame {
    Frame::request(code, &token.to_be_bytes(), path).with_accept(ContentFormat::OcfCbor.as_u16())
}

pub(super) fn post<T: serde::Serialize>(
    token: u64,
    path: &str,
    body: &T,
) -> Result<Frame, Observed> {
    let payload = body::to_cbor(body).map_err(|e| Observed::device(e.to_string()))?;
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
        return Err(Observed::unexpected_answer(phase, &resp));
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
        return Err(Observed::protocol(format!(
            "ownership: not a UUID: {owner:?}"
        )));
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
        return Err(Observed::protocol(
            "cloud configuration without cis or a UUID sid",
        ));
    }
    let key = rcgen::KeyPair::generate().map_err(|e| Observed::device(e.to_string()))?;
    let csr = dps_server::pki::device_csr(&device_id, &key)
        .map_err(|e| Observed::device(e.to_string()))?;
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
        return Err(Observed::protocol(format!(
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
        return Err(Observed::protocol("acls: empty"));
    }
    Ok(Provisioned {
        owner,
        identity: applied.identity,
        key,
    })
}
