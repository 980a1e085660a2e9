//! A TPM device: TLS without a client certificate, the TPM nonce challenge (challenge, then
//! ActivateCredential and Quote, then attest), then the same provisioning flow as an X.509 device.
//!
//! The adversarial classes play their attack inside the same exchange:
//! - `tpm_wrong_ek` presents an enrolled EK it has no key for: its ActivateCredential must fail,
//!   it answers with a made-up secret;
//! - `tpm_tampered_blob` flips a bit of the credential blob (a man in the middle): its
//!   ActivateCredential must fail, it answers with a made-up secret;
//! - `tpm_replayed_nonce` attests correctly on a first connection (which must succeed), then on a
//!   new connection activates the fresh credential correctly but sends the first connection's
//!   quote, over the old nonce;
//! - `tpm_unenrolled` is refused at the challenge.
//!
//! A refused device also checks that the server closed the connection after the error.

use std::time::Instant;

use dps_server::proto::body::{
    self, TpmAttestRequest, TpmAttestResponse, TpmChallengeRequest, TpmChallengeResponse,
};
use dps_server::proto::coap::Code;
use dps_server::tpm::soft::SoftTpm;
use tokio_rustls::TlsConnector;

use super::connect::open_session;
use super::context::DeviceContext;
use super::ledger::Ledger;
use super::observed::{stream_failure, Observed};
use super::prepare::Prepared;
use super::provision::{post, provision};
use super::session::{Session, SessionError};
use crate::fleet::tpm::{TpmDevice, TpmKeys, TpmStep};
use crate::fleet::{Device, DeviceClass};
use crate::metrics::Phase;

type Phases = Ledger;

const CHALLENGE: &str = "/api/v1/provisioning/tpm/challenge";
const ATTEST: &str = "/api/v1/provisioning/tpm/attest";

/// The device's run up to holding: what it observed, and its session when it ended attested or
/// provisioned.
pub(super) async fn flow(
    dev: &Device,
    tpm: &TpmDevice,
    prepared: &Prepared,
    ctx: &DeviceContext,
    phases: &mut Phases,
) -> (Observed, Option<Session>) {
    let connector = match &prepared.connector {
        Ok(connector) => connector,
        Err(e) => return (Observed::device(e.clone()), None),
    };
    // What the device does before it connects (its challenge request, a swtpm's key) is its own
    // work, not the generator's lateness.
    phases.end_lateness();
    let dev_at = Anonymous {
        dev,
        ctx,
        connector,
    };
    let attested = match &tpm.keys {
        TpmKeys::Soft(soft) => soft_attest(&dev_at, tpm, soft, phases).await,
        TpmKeys::Swtpm { ek_seed } => swtpm_attest(&dev_at, ek_seed, phases).await,
    };
    let (mut io, done, registration_id) = match attested {
        Ok(a) => a,
        Err(observed) => return (observed, None),
    };
    if done.registration_id != registration_id {
        return (
            Observed::protocol(format!(
                "attest: registration id {}, expected {registration_id}",
                done.registration_id
            )),
            None,
        );
    }
    if done.group != tpm.group_id {
        return (
            Observed::protocol(format!(
                "attest: admitted by group {:?}, expected {:?}",
                done.group, tpm.group_id
            )),
            None,
        );
    }
    if ctx.mode.handshake_only() {
        return (Observed::Attested, Some(io));
    }
    let key = prepared.csr_key(0);
    match provision(&mut io, dev.index, uuid::Uuid::new_v4(), key, phases).await {
        Ok(p) => (
            Observed::Provisioned {
                owner: p.owner,
                device_id: p.device_id.to_string(),
            },
            Some(io),
        ),
        Err(observed) => (observed, None),
    }
}

/// An attested session, the attest answer, and the registration id the device expects.
type Attested = (Session, TpmAttestResponse, String);

fn token(dev: &Device, k: u64) -> u64 {
    ((dev.index as u64) << 8) + 0x40 + k
}

/// A TPM device in a run: what it needs to open its connections.
struct Anonymous<'a> {
    dev: &'a Device,
    ctx: &'a DeviceContext,
    /// Its TLS client, without a client certificate.
    connector: &'a TlsConnector,
}

/// A connection without a client certificate.
async fn anonymous(a: &Anonymous<'_>, phases: &mut Phases) -> Result<Session, Observed> {
    let dev = (a.dev.index, a.dev.class);
    open_session(a.ctx, dev, a.connector, Phase::Handshake, phases).await
}

/// After an error the server must close the connection: the next read ends the stream.
async fn refused(io: &mut Session, step: TpmStep, code: Code) -> Observed {
    loop {
        match io.read_frame().await {
            Ok(Some(f)) if f.code.is_signal() => continue,
            Ok(Some(f)) => {
                return Observed::protocol(format!(
                    "{}: the server sent {} after refusing with {code} instead of closing",
                    step.as_str(),
                    f.code
                ))
            }
            Err(e @ SessionError::ShortFrame { .. }) => return stream_failure(step.as_str(), &e),
            Ok(None) | Err(_) => {
                return Observed::TpmRefused {
                    step,
                    code: code.to_string(),
                }
            }
        }
    }
}

/// POST `body` to the TPM resource of `step`; the decoded 2.04 answer, or what the device saw.
async fn exchange<Req: serde::Serialize, Resp: serde::de::DeserializeOwned>(
    io: &mut Session,
    step: TpmStep,
    token: u64,
    body: &Req,
    phases: &mut Phases,
) -> Result<Resp, Observed> {
    let (path, phase) = match step {
        TpmStep::Challenge => (CHALLENGE, Phase::TpmChallenge),
        TpmStep::Attest => (ATTEST, Phase::TpmAttest),
    };
    let started = Instant::now();
    let resp = io
        .exchange(&post(token, path, body)?)
        .await
        .map_err(|e| stream_failure(phase.as_str(), &e))?;
    phases.record(phase, started);
    if resp.code == Code::CHANGED {
        return body::from_cbor(&resp.payload)
            .map_err(|e| Observed::protocol(format!("{phase}: {e}")));
    }
    // A 4.xx is the server's verdict on the attestation; a 5.xx (busy, a failure) is not.
    if resp.code.is_error() && resp.code.class() == 4 {
        return Err(refused(io, step, resp.code).await);
    }
    if resp.code.is_error() {
        return Err(Observed::unexpected_answer(phase, &resp));
    }
    Err(Observed::protocol(format!(
        "{phase}: unexpected {}",
        resp.code
    )))
}

/// The soft TPM's exchange, with its class's attack.
async fn soft_attest(
    a: &Anonymous<'_>,
    tpm: &TpmDevice,
    soft: &SoftTpm,
    phases: &mut Phases,
) -> Result<Attested, Observed> {
    let dev = a.dev;
    let mut req: TpmChallengeRequest = soft.challenge_request();
    if let Some(ek) = &tpm.presented_ek {
        req.ek_public = ek.clone();
    }
    let registration_id = dps_server::tpm::registration_id(&req.ek_public);
    let mut io = anonymous(a, phases).await?;
    let ch: TpmChallengeResponse =
        exchange(&mut io, TpmStep::Challenge, token(dev, 0), &req, phases).await?;
    let answer = match dev.class {
        DeviceClass::TpmWrongEk | DeviceClass::TpmTamperedBlob => {
            let mut blob = ch.credential_blob.clone();
            if dev.class == DeviceClass::TpmTamperedBlob {
                if let Some(last) = blob.last_mut() {
                    *last ^= 1;
                }
            }
            if soft
                .activate_credential(&blob, &ch.encrypted_secret)
                .is_ok()
            {
                return Err(Observed::device(format!(
                    "{}: ActivateCredential recovered a secret it must not",
                    dev.class.as_str()
                )));
            }
            let (quote, signature) = soft
                .quote(&ch.nonce)
                .map_err(|e| Observed::device(e.to_string()))?;
            TpmAttestRequest {
                secret: vec![0; 32],
                quote,
                signature,
            }
        }
        DeviceClass::TpmReplayedNonce => {
            let first = soft
                .attest_request(&ch)
                .map_err(|e| Observed::device(format!("first answer: {e}")))?;
            let honest: Result<TpmAttestResponse, Observed> =
                exchange(&mut io, TpmStep::Attest, token(dev, 1), &first, phases).await;
            if let Err(observed) = honest {
                return Err(Observed::protocol(format!(
                    "the first, honest attest did not succeed: {observed:?}"
                )));
            }
            drop(io);
            io = anonymous(a, phases).await?;
            let fresh: TpmChallengeResponse =
                exchange(&mut io, TpmStep::Challenge, token(dev, 2), &req, phases).await?;
            let secret = soft
                .activate_credential(&fresh.credential_blob, &fresh.encrypted_secret)
                .map_err(|e| Observed::device(format!("second ActivateCredential: {e}")))?;
            TpmAttestRequest {
                secret,
                quote: first.quote,
                signature: first.signature,
            }
        }
        _ => soft
            .attest_request(&ch)
            .map_err(|e| Observed::device(format!("ActivateCredential or Quote: {e}")))?,
    };
    let done = exchange(&mut io, TpmStep::Attest, token(dev, 3), &answer, phases).await?;
    Ok((io, done, registration_id))
}

/// The exchange on a swtpm of the run's pool, which this device holds until it has answered.
#[cfg(feature = "tpm-sim")]
async fn swtpm_attest(
    a: &Anonymous<'_>,
    ek_seed: &[u8; 32],
    phases: &mut Phases,
) -> Result<Attested, Observed> {
    let dev = a.dev;
    let pool = a
        .ctx
        .swtpm
        .as_ref()
        .ok_or_else(|| Observed::device("tpm_swtpm device without a swtpm pool"))?;
    let mut lease = pool.lease(dev.index).await.map_err(Observed::device)?;
    let req = lease.create(*ek_seed).await.map_err(Observed::device)?;
    let registration_id = dps_server::tpm::registration_id(&req.ek_public);
    let mut io = anonymous(a, phases).await?;
    let ch: TpmChallengeResponse =
        exchange(&mut io, TpmStep::Challenge, token(dev, 0), &req, phases).await?;
    let answer = lease.answer(ch).await.map_err(Observed::device)?;
    drop(lease);
    let done = exchange(&mut io, TpmStep::Attest, token(dev, 3), &answer, phases).await?;
    Ok((io, done, registration_id))
}

/// Without the `tpm-sim` feature there is no swtpm (scenarios with such devices are refused
/// before they run).
#[cfg(not(feature = "tpm-sim"))]
async fn swtpm_attest(
    _a: &Anonymous<'_>,
    _ek_seed: &[u8; 32],
    _phases: &mut Phases,
) -> Result<Attested, Observed> {
    Err(Observed::device(
        "tpm_swtpm devices need dps-loadgen built with --features tpm-sim",
    ))
}
