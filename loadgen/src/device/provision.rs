//! The CoAP provisioning steps of one session, in iotivity-lite's order (time, ownership, cloud
//! configuration, credentials from a fresh CSR, ACLs), each answer checked as iotivity-lite's
//! client checks it ([`super::strict`]), then as the spec requires beyond that. X.509 and TPM
//! devices run the same steps once attested.

use std::time::Instant;

use dps_server::client::provision::{self as steps, Step, StepError};
use dps_server::client::{coap, ClientError};
use dps_server::proto::coap::Frame;
use rcgen::PublicKeyData as _;
use rustls::pki_types::CertificateDer;

use super::ledger::Ledger;
use super::observed::{stream_failure, Observed};
use super::session::Session;
use super::strict::{self, DpsClock, StrictCheck, Violation};
use crate::metrics::Phase;

type Phases = Ledger;

/// What a successful provisioning left the device with.
pub(super) struct Provisioned {
    /// `devowneruuid`.
    pub(super) owner: String,
    /// The device id the identity certificate was issued for.
    pub(super) device_id: uuid::Uuid,
    /// The identity certificate it was issued.
    pub(super) identity: CertificateDer<'static>,
    /// The key of that certificate (PKCS#8 DER).
    pub(super) key_der: Vec<u8>,
}

/// A POST of `body` (CBOR) with token `token` to `path`.
pub(super) fn post<T: serde::Serialize>(
    token: u64,
    path: &str,
    body: &T,
) -> Result<Frame, Observed> {
    coap::post(&token.to_be_bytes(), path, body).map_err(|e| Observed::device(e.to_string()))
}

/// A request the device could not build, in the words of what failed.
fn device_error(e: ClientError) -> Observed {
    match e {
        ClientError::Body(e) => Observed::device(e.to_string()),
        ClientError::Csr(e) => Observed::device(e.to_string()),
        other => Observed::device(other.to_string()),
    }
}

/// The phase a step's exchange is timed in.
fn phase(step: Step) -> Phase {
    match step {
        Step::Time => Phase::Time,
        Step::Ownership => Phase::Ownership,
        Step::CloudConfiguration => Phase::CloudConfiguration,
        Step::Credentials => Phase::Credentials,
        Step::Acls => Phase::Acls,
    }
}

/// One request and its answer (the exchange timed as the step's phase), parsed as the real
/// client's `oc_rep` parser would (a body it cannot parse fails `check`, the check of this
/// answer).
async fn step(
    io: &mut Session,
    step: Step,
    req: Frame,
    check: StrictCheck,
    phases: &mut Phases,
) -> Result<strict::rep::Object, Observed> {
    let phase = phase(step);
    let started = Instant::now();
    let resp = match steps::run(io, step, &req).await {
        Ok(resp) => resp,
        Err(StepError::Session(_, e)) => return Err(stream_failure(phase.as_str(), &e)),
        Err(StepError::Unexpected { answer, .. }) => {
            phases.record(phase, started);
            return Err(Observed::unexpected_answer(phase, &answer));
        }
        Err(StepError::Request(e)) => return Err(device_error(e)),
    };
    phases.record(phase, started);
    strict::parse_root(&resp.payload)
        .map_err(|e| Violation::new(check, format!("{phase}: cannot parse the body: {e}")).into())
}

/// Time, ownership, cloud configuration, credentials (for `device_id`, with `key`, made ahead of
/// the schedule, or a fresh one made now) and ACLs on one session, each answer checked as iotivity-lite's client checks it ([`strict`]), then as
/// the spec requires beyond that.
pub(super) async fn provision(
    io: &mut Session,
    index: usize,
    device_id: uuid::Uuid,
    key: Option<&rcgen::KeyPair>,
    phases: &mut Phases,
) -> Result<Provisioned, Observed> {
    let token = |step: Step| (((index as u64) << 8) + step.index() as u64).to_be_bytes();
    let time = step(
        io,
        Step::Time,
        steps::time(&token(Step::Time)),
        StrictCheck::Time,
        phases,
    )
    .await?;
    let clock = DpsClock::new(strict::time(&time)?);
    let own = step(
        io,
        Step::Ownership,
        steps::ownership(&token(Step::Ownership)),
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
    let cloud_req = steps::cloud_configuration(&token(Step::CloudConfiguration), &device_id)
        .map_err(device_error)?;
    let cloud = step(
        io,
        Step::CloudConfiguration,
        cloud_req,
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
    let made;
    let key = match key {
        Some(key) => key,
        None => {
            made = rcgen::KeyPair::generate().map_err(|e| Observed::device(e.to_string()))?;
            &made
        }
    };
    let cred_req =
        steps::credentials(&token(Step::Credentials), &device_id, key).map_err(device_error)?;
    let creds = step(
        io,
        Step::Credentials,
        cred_req,
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
        Step::Acls,
        steps::acls(&token(Step::Acls)),
        StrictCheck::Acls,
        phases,
    )
    .await?;
    if strict::acls(&acls)? == 0 {
        return Err(Observed::protocol("acls: empty"));
    }
    Ok(Provisioned {
        owner,
        device_id,
        identity: applied.identity,
        key_der: key.serialize_der(),
    })
}
