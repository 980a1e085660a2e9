//! One device connection after its TLS handshake: CSM first, then requests routed to the
//! provisioning resources until the device leaves, errs, or idles out.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use uuid::Uuid;

use crate::enrollment::CertId;
pub use crate::profile::Profile;
use crate::proto::body::{self, ContentFormat};
use crate::proto::coap::{option, Code, Frame, CSM_TOKEN_LEN, MIN_FRAME_LEN};
use crate::proto::stream::{FramedIo, StreamError};
use crate::provision::{IssuedCredentials, ProvisionError, Provisioner, Requester};
use crate::records::Step;
use crate::records::StoreError;
use crate::store::{IssuedIdentity, RecordWriter, StepEvent};
use crate::tpm::{Attestor, ChallengeSlot};

/// Resource paths of the spec.
pub mod paths {
    /// GET: current time.
    pub const TIME: &str = "/x.plgd.dev/time";
    /// GET: owner.
    pub const OWNERSHIP: &str = "/api/v1/provisioning/ownership";
    /// POST: cloud configuration.
    pub const CLOUD_CONFIGURATION: &str = "/api/v1/provisioning/cloud-configuration";
    /// POST: identity credentials from a CSR.
    pub const CREDENTIALS: &str = "/api/v1/provisioning/credentials";
    /// GET: access control lists.
    pub const ACLS: &str = "/api/v1/provisioning/acls";
    /// POST: TPM nonce challenge (MakeCredential + nonce).
    pub const TPM_CHALLENGE: &str = "/api/v1/provisioning/tpm/challenge";
    /// POST: TPM answer (activated secret + quote).
    pub const TPM_ATTEST: &str = "/api/v1/provisioning/tpm/attest";
}

/// Options a request may carry; any other critical (odd) option is refused with 4.02.
const UNDERSTOOD_OPTIONS: [u16; 8] = [
    option::URI_HOST,
    option::URI_PORT,
    option::URI_PATH,
    option::CONTENT_FORMAT,
    option::URI_QUERY,
    option::ACCEPT,
    option::OCF_ACCEPT_CONTENT_FORMAT_VERSION,
    option::OCF_CONTENT_FORMAT_VERSION,
];

/// Who is on the other end of a connection, as attestation established it.
#[derive(Debug, Clone)]
pub struct DeviceSession {
    /// The selected enrollment group or TPM enrollment (as it was when the device attested).
    pub profile: Profile,
    /// The manufacturer certificate's CN (for an identity-certificate session, the identity
    /// certificate's CN, `uuid:<device id>`; for a TPM, its registration id).
    pub common_name: String,
    /// Fingerprint of the manufacturer (leaf) certificate: the key of the device's provisioning
    /// record. An identity-certificate session carries its record's key; a TPM the SHA-256 of
    /// its EK TPM2B_PUBLIC.
    pub leaf: CertId,
    /// Set when the device authenticated with the identity certificate this DPS issued it: its
    /// device id, the only one it may request credentials for.
    pub device_id: Option<Uuid>,
}

impl DeviceSession {
    fn requester(&self) -> Requester {
        Requester {
            record: Some(self.leaf),
            identity: self.device_id,
            name: self.device_id.is_none().then(|| self.common_name.clone()),
        }
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Largest message accepted (whole frame).
    pub max_message_size: usize,
    /// Close after this long without a frame from the device.
    pub inactivity_timeout: Duration,
}

/// A server-wide token bucket for provisioning requests (refilled continuously).
#[derive(Debug)]
pub struct RequestRate {
    per_second: f64,
    state: std::sync::Mutex<(f64, std::time::Instant)>,
}

impl RequestRate {
    /// `per_second` requests per second with a burst of one second's worth; 0 = unlimited.
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second);
        Self {
            per_second,
            state: std::sync::Mutex::new((per_second, std::time::Instant::now())),
        }
    }

    /// Take one token; `false` when the bucket is empty.
    pub fn try_take(&self) -> bool {
        if self.per_second <= 0.0 {
            return true;
        }
        let Ok(mut state) = self.state.lock() else {
            return true;
        };
        let now = std::time::Instant::now();
        let (tokens, last) = *state;
        let tokens = (tokens + now.duration_since(last).as_secs_f64() * self.per_second)
            .min(self.per_second);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            true
        } else {
            *state = (tokens, now);
            false
        }
    }
}

/// 5.03 Service Unavailable with Max-Age: the device should come back after `retry_after_s`.
pub fn service_unavailable(request: &Frame, retry_after_s: u32) -> Frame {
    Frame::response(Code::SERVICE_UNAVAILABLE, &request.token)
        .with_uint_option(option::MAX_AGE, u64::from(retry_after_s))
        .with_payload(b"server busy, retry later".to_vec())
}

/// The answer to a credentials request whose identity was not stored. What the server tells a
/// device must survive a crash: an identity that could not be stored is not handed out (5.03);
/// one a shared store refused (another replica took the device id meanwhile) is refused 4.00, as
/// a single server refuses it.
fn not_stored(request: &Frame, error: &StoreError, cn: &str) -> Frame {
    if let StoreError::Refused(reason) = error {
        tracing::info!(reason = %reason, cn = %cn, "identity refused by the shared store; answering 4.00");
        return Frame::response(Code::BAD_REQUEST, &request.token)
            .with_payload(reason.clone().into_bytes());
    }
    tracing::error!(error = %error, cn = %cn, "identity not stored; answering 5.03");
    service_unavailable(request, 1).with_payload(b"cannot store the identity, retry later".to_vec())
}

/// The server's side of a connection: no frame it writes is shorter than [`MIN_FRAME_LEN`].
fn server_framed<S: AsyncRead + AsyncWrite + Unpin>(io: S, max_message_size: usize) -> FramedIo<S> {
    FramedIo::new(io, max_message_size).with_min_frame_len(MIN_FRAME_LEN)
}

/// The CSM the server opens every connection with: an 8-byte random token, as go-coap sends.
pub fn server_csm(max_message_size: Option<u32>) -> Frame {
    let mut token = [0u8; CSM_TOKEN_LEN];
    if aws_lc_rs::rand::fill(&mut token).is_err() {
        // The token only has to be present (it is never echoed): a fixed one will do.
        token = *b"dps-csm!";
    }
    Frame::csm_with_token(&token, max_message_size)
}

/// Serve a connection the server has no room for: answer its first request with 5.03 and Max-Age
/// (instead of queueing it without bound), then close.
pub async fn refuse_busy<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    retry_after_s: u32,
    max_message_size: usize,
) {
    refuse_first_request(io, max_message_size, |frame| {
        service_unavailable(frame, retry_after_s)
    })
    .await;
}

/// Serve a connection whose handshake completed but which cannot be provisioned (its group was
/// removed meanwhile, or it is refused when judged after the handshake): its first request is
/// answered with `code` and `diagnostic` instead of a bare close, which a TLS 1.3 device (it
/// finished its handshake before the server judged it) would only see as the end of the stream.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    max_message_size: usize,
    code: Code,
    diagnostic: &str,
) {
    refuse_first_request(io, max_message_size, |frame| error(code, frame, diagnostic)).await;
}

/// CSM, then the first request (within 2 s) answered with `answer`, then close.
async fn refuse_first_request<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    max_message_size: usize,
    answer: impl Fn(&Frame) -> Frame,
) {
    let mut framed = server_framed(io, max_message_size);
    if framed.write_frame(&server_csm(None)).await.is_err() {
        return;
    }
    let wait = Duration::from_secs(2);
    while let Ok(Ok(Some(frame))) = tokio::time::timeout(wait, framed.read_frame()).await {
        if frame.code == Code::PING {
            if framed
                .write_frame(&Frame::pong(&frame.token))
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        if frame.code.is_request() {
            let _ = framed.write_frame(&answer(&frame)).await;
            return;
        }
    }
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ending {
    /// The device closed the stream, or sent Release.
    Closed,
    /// Nothing arrived within the inactivity timeout.
    Idle,
    /// A request was answered with an error code; the connection is closed after it (as plgd does).
    ErrorResponse(Code),
    /// Bad framing (or a transport error); an Abort was sent where possible.
    Protocol(String),
}

impl Ending {
    /// The counted reason of this ending.
    pub fn reason(&self) -> crate::metrics::CloseReason {
        use crate::metrics::CloseReason;
        match self {
            Ending::Closed => CloseReason::DeviceClosed,
            Ending::Idle => CloseReason::Idle,
            Ending::ErrorResponse(_) => CloseReason::ErrorResponse,
            Ending::Protocol(_) => CloseReason::ProtocolError,
        }
    }
}

/// Serve one connection until it ends. Every answered provisioning request of an attested
/// device is handed to `records` (never waiting on it).
/// A connection without a device session may use the TPM resources of `attestor`; once the TPM
/// attests, the session is that TPM's.
#[allow(clippy::too_many_arguments)]
pub async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    mut device: Option<DeviceSession>,
    provisioner: &Provisioner,
    attestor: &Attestor,
    limits: ConnectionLimits,
    rate: &RequestRate,
    records: &RecordWriter,
    metrics: &crate::metrics::Metrics,
) -> Ending {
    let mut slot = ChallengeSlot::new();
    let mut framed = server_framed(io, limits.max_message_size);
    let csm = server_csm(u32::try_from(limits.max_message_size).ok());
    if let Err(e) = framed.write_frame(&csm).await {
        return Ending::Protocol(e.to_string());
    }
    loop {
        let frame = match tokio::time::timeout(limits.inactivity_timeout, framed.read_frame()).await
        {
            Err(_) => return Ending::Idle,
            Ok(Ok(None)) => return Ending::Closed,
            Ok(Ok(Some(frame))) => frame,
            Ok(Err(StreamError::Codec(e))) => {
                let _ = framed.write_frame(&Frame::abort(&e.to_string())).await;
                return Ending::Protocol(e.to_string());
            }
            // Gone without close_notify (as most devices leave): a close.
            Ok(Err(StreamError::Io(e))) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ending::Closed
            }
            Ok(Err(e)) => return Ending::Protocol(e.to_string()),
        };
        let reply = match frame.code {
            Code::PING => Some(Frame::pong(&frame.token)),
            Code::RELEASE | Code::ABORT => return Ending::Closed,
            Code::CSM => match unknown_critical_csm_option(&frame) {
                // RFC 8323 §5.3: a CSM with an option the receiver does not understand and
                // cannot ignore aborts the connection, naming the option.
                Some(number) => {
                    let diagnostic = format!("unsupported critical CSM option {number}");
                    let abort = Frame::abort(&diagnostic).with_uint_option(
                        crate::proto::coap::signal_option::BAD_CSM_OPTION,
                        u64::from(number),
                    );
                    let _ = framed.write_frame(&abort).await;
                    return Ending::Protocol(diagnostic);
                }
                None => None, // tolerated, not required
            },
            code if code.is_signal() => None, // Pong
            code if code.is_request() && !rate.try_take() => Some(service_unavailable(&frame, 1)),
            code if code.is_request() && is_tpm_path(&frame) => {
                let started = std::time::Instant::now();
                let frame = respond_tpm(&frame, &mut device, attestor, &mut slot);
                metrics.record_request(None, frame.code, started.elapsed());
                Some(frame)
            }
            code if code.is_request() => {
                let started = std::time::Instant::now();
                let mut answer = respond(&frame, device.as_ref(), provisioner).await;
                if let (Some(device), Some(step)) = (&device, answer.step) {
                    let event = step_event(device, step, &answer);
                    if answer.issued.is_none() {
                        records.record_step(event);
                    } else if let Err(e) = records.record_durable(event).await {
                        answer.frame = not_stored(&frame, &e, &device.common_name);
                    }
                }
                metrics.record_request(answer.step, answer.frame.code, started.elapsed());
                Some(answer.frame)
            }
            _ => None, // responses from the device (e.g. to a discovery query) are not needed
        };
        if let Some(reply) = reply {
            if let Err(e) = framed.write_frame(&reply).await {
                return Ending::Protocol(e.to_string());
            }
            if reply.code.is_error() {
                return Ending::ErrorResponse(reply.code);
            }
        }
    }
}

/// The first critical option of a client CSM: every CSM option the server knows (Max-Message-Size,
/// Block-Wise-Transfer) is elective, so any critical one is unknown to it.
fn unknown_critical_csm_option(csm: &Frame) -> Option<u16> {
    csm.options
        .iter()
        .map(|o| o.number)
        .find(|n| crate::proto::coap::is_critical(*n))
}

/// The event recorded for an answered step.
fn step_event(device: &DeviceSession, step: Step, answer: &Answer) -> StepEvent {
    let diagnostic = if answer.frame.code.is_error() {
        String::from_utf8_lossy(&answer.frame.payload).into_owned()
    } else {
        String::new()
    };
    StepEvent {
        record: device.leaf,
        common_name: device
            .device_id
            .is_none()
            .then(|| device.common_name.clone()),
        group: device.profile.def().id,
        step,
        code: answer.frame.code,
        diagnostic,
        issued: answer.issued.as_ref().map(|i| IssuedIdentity {
            device_id: i.device_id,
            certificate: CertId::of(&i.certificate),
            not_after: i.not_after,
        }),
        token: answer.token,
        at: time::OffsetDateTime::now_utc(),
    }
}

/// A response and what the record needs to know about it.
struct Answer {
    frame: Frame,
    /// The provisioning step the request addressed, if any.
    step: Option<Step>,
    /// Credentials issued by it.
    issued: Option<IssuedCredentials>,
    /// The access token a cloud configuration handed out.
    token: Option<crate::token::TokenInfo>,
}

impl From<Frame> for Answer {
    fn from(frame: Frame) -> Self {
        Answer {
            frame,
            step: None,
            issued: None,
            token: None,
        }
    }
}

fn error(code: Code, request: &Frame, diagnostic: &str) -> Frame {
    Frame::response(code, &request.token).with_payload(diagnostic.as_bytes().to_vec())
}

fn reply<T: Serialize>(code: Code, request: &Frame, format: ContentFormat, value: &T) -> Frame {
    match body::encode(format, value) {
        Ok(payload) => Frame::response(code, &request.token)
            .with_content_format(format.as_u16())
            .with_payload(payload),
        Err(e) => error(Code::INTERNAL, request, &e.to_string()),
    }
}

fn decode_request<T: DeserializeOwned>(request: &Frame) -> Result<T, Frame> {
    let format = request
        .content_format()
        .ok_or_else(|| error(Code::BAD_REQUEST, request, "missing content format"))?;
    body::decode_as(format, &request.payload)
        .map_err(|e| error(Code::BAD_REQUEST, request, &e.to_string()))
}

fn provision_error(request: &Frame, e: ProvisionError) -> Frame {
    match e {
        ProvisionError::Internal(_) => error(Code::INTERNAL, request, &e.to_string()),
        ProvisionError::Forbidden(_) => error(Code::FORBIDDEN, request, &e.to_string()),
        ProvisionError::Unavailable { retry_after_s, .. } => {
            error(Code::SERVICE_UNAVAILABLE, request, &e.to_string())
                .with_uint_option(option::MAX_AGE, u64::from(retry_after_s))
        }
        _ => error(Code::BAD_REQUEST, request, &e.to_string()),
    }
}

/// Answer one request.
pub async fn handle(
    request: &Frame,
    device: Option<&DeviceSession>,
    provisioner: &Provisioner,
) -> Frame {
    respond(request, device, provisioner).await.frame
}

/// Answer one request; only the cloud configuration awaits anything (its access token).
async fn respond(
    request: &Frame,
    device: Option<&DeviceSession>,
    provisioner: &Provisioner,
) -> Answer {
    if let Some(o) = request.options.iter().find(|o| {
        crate::proto::coap::is_critical(o.number) && !UNDERSTOOD_OPTIONS.contains(&o.number)
    }) {
        return error(
            Code::BAD_OPTION,
            request,
            &format!("unsupported critical option {}", o.number),
        )
        .into();
    }
    let path = request.uri_path();
    let allowed: &[Code] = match path.as_str() {
        paths::TIME | paths::OWNERSHIP | paths::ACLS => &[Code::GET],
        paths::CLOUD_CONFIGURATION | paths::CREDENTIALS => &[Code::POST],
        _ => return error(Code::NOT_FOUND, request, "no such resource").into(),
    };
    let step = Step::for_path(&path);
    let answer = |frame: Frame| Answer {
        frame,
        step,
        issued: None,
        token: None,
    };
    if !allowed.contains(&request.code) {
        return answer(error(
            Code::FORBIDDEN,
            request,
            "method not allowed on this resource",
        ));
    }
    let Some(device) = device else {
        return answer(error(Code::FORBIDDEN, request, "device is not attested"));
    };
    let format = match ContentFormat::from_accept(request.accept()) {
        Ok(f) => f,
        Err(e) => return answer(error(Code::BAD_REQUEST, request, &e.to_string())),
    };
    let group = device.profile.def();
    let frame = match path.as_str() {
        paths::TIME => reply(Code::CONTENT, request, format, &provisioner.time()),
        paths::OWNERSHIP => reply(
            Code::CONTENT,
            request,
            format,
            &provisioner.ownership(group),
        ),
        paths::ACLS => reply(Code::CONTENT, request, format, &provisioner.acls(group)),
        paths::CLOUD_CONFIGURATION => match decode_request(request) {
            Err(f) => f,
            Ok(req) => match provisioner.cloud_configuration(group, &req).await {
                Ok((resp, token)) => {
                    return Answer {
                        token: Some(token),
                        ..answer(reply(Code::CHANGED, request, format, &resp))
                    }
                }
                Err(e) => provision_error(request, e),
            },
        },
        _ => match decode_request(request) {
            Err(f) => f,
            Ok(req) => match provisioner.credentials_for(group, &req, &device.requester()) {
                Ok(issued) => {
                    tracing::info!(device = %issued.device_id, group = %group.id, cn = %device.common_name, renewal = device.device_id.is_some(), "identity certificate issued");
                    let frame = reply(Code::CHANGED, request, format, &issued.response);
                    return Answer {
                        issued: Some(issued),
                        ..answer(frame)
                    };
                }
                Err(e) => provision_error(request, e),
            },
        },
    };
    answer(frame)
}

fn is_tpm_path(request: &Frame) -> bool {
    matches!(
        request.uri_path().as_str(),
        paths::TPM_CHALLENGE | paths::TPM_ATTEST
    )
}

/// Answer a request to a TPM resource; a successful attestation makes `device` the TPM's session.
fn respond_tpm(
    request: &Frame,
    device: &mut Option<DeviceSession>,
    attestor: &Attestor,
    slot: &mut ChallengeSlot,
) -> Frame {
    if request.code != Code::POST {
        return error(
            Code::FORBIDDEN,
            request,
            "method not allowed on this resource",
        );
    }
    let is_challenge = request.uri_path() == paths::TPM_CHALLENGE;
    if is_challenge && device.is_some() {
        return error(Code::FORBIDDEN, request, "session is already attested");
    }
    let format = match ContentFormat::from_accept(request.accept()) {
        Ok(f) => f,
        Err(e) => return error(Code::BAD_REQUEST, request, &e.to_string()),
    };
    let refused = |e: crate::tpm::AttestError| {
        tracing::info!(reason = e.label(), error = %e, "TPM attestation refused");
        error(e.code(), request, &e.to_string())
    };
    if is_challenge {
        let req: crate::proto::body::TpmChallengeRequest = match decode_request(request) {
            Ok(r) => r,
            Err(f) => return f,
        };
        return match attestor.challenge(&req, slot) {
            Ok(resp) => reply(Code::CHANGED, request, format, &resp),
            Err(e) => refused(e),
        };
    }
    let req: crate::proto::body::TpmAttestRequest = match decode_request(request) {
        Ok(r) => r,
        Err(f) => {
            slot.take(std::time::Instant::now()).ok(); // single-use even when unreadable
            return f;
        }
    };
    match attestor.attest(&req, slot) {
        Ok(attested) => {
            let group = match &attested.profile {
                Profile::Group(g) => g.def.id.to_string(),
                Profile::Individual(_) => String::new(),
            };
            tracing::info!(registration_id = %attested.registration_id, enrollment = %attested.profile.def().id, "TPM attested");
            let resp = crate::proto::body::TpmAttestResponse {
                registration_id: attested.registration_id.clone(),
                group,
            };
            *device = Some(DeviceSession {
                profile: attested.profile,
                common_name: attested.registration_id,
                leaf: attested.record,
                device_id: None,
            });
            reply(Code::CHANGED, request, format, &resp)
        }
        Err(e) => refused(e),
    }
}
