//! The provisioning steps of a device session in iotivity-lite's order: time, ownership, cloud
//! configuration, credentials from a fresh CSR, ACLs. Each step's request is built first
//! ([`Step`]'s builders) and then run over the session ([`run`]), so that a caller timing the
//! steps times only the exchange; [`provision`] runs the whole flow.

use crate::pki::device_csr;
use crate::proto::body::{CloudConfigurationRequest, CredentialsRequest, Csr};
use crate::proto::coap::{Code, Frame};

use super::coap::{post, request, Exchange};
use super::error::ClientError;

/// One provisioning step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// GET the server's time.
    Time,
    /// GET the device's owner.
    Ownership,
    /// POST the device id for its cloud configuration.
    CloudConfiguration,
    /// POST a CSR for the identity certificate.
    Credentials,
    /// GET the device's ACLs.
    Acls,
}

impl Step {
    /// The steps in the order a device runs them.
    pub const ALL: [Step; 5] = [
        Step::Time,
        Step::Ownership,
        Step::CloudConfiguration,
        Step::Credentials,
        Step::Acls,
    ];

    /// The resource the step's request goes to.
    pub fn path(self) -> &'static str {
        match self {
            Step::Time => "/x.plgd.dev/time",
            Step::Ownership => "/api/v1/provisioning/ownership",
            Step::CloudConfiguration => "/api/v1/provisioning/cloud-configuration",
            Step::Credentials => "/api/v1/provisioning/credentials",
            Step::Acls => "/api/v1/provisioning/acls",
        }
    }

    /// The response code of a successful step.
    pub fn success(self) -> Code {
        match self {
            Step::Time | Step::Ownership | Step::Acls => Code::CONTENT,
            Step::CloudConfiguration | Step::Credentials => Code::CHANGED,
        }
    }

    /// The step's place in [`Step::ALL`] (0 for the time).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The time request.
pub fn time(token: &[u8]) -> Frame {
    request(Code::GET, token, Step::Time.path())
}

/// The ownership request.
pub fn ownership(token: &[u8]) -> Frame {
    request(Code::GET, token, Step::Ownership.path())
}

/// The cloud configuration request of `device_id` (no gateway selected).
pub fn cloud_configuration(token: &[u8], device_id: &uuid::Uuid) -> Result<Frame, ClientError> {
    let body = CloudConfigurationRequest {
        di: device_id.to_string(),
        selected_gateway: None,
    };
    Ok(post(token, Step::CloudConfiguration.path(), &body)?)
}

/// The credentials request body of `device_id`: a PEM CSR with subject `CN=uuid:<device_id>`
/// signed by `key`.
pub fn credentials_body(
    device_id: &uuid::Uuid,
    key: &rcgen::KeyPair,
) -> Result<CredentialsRequest, ClientError> {
    Ok(CredentialsRequest {
        di: device_id.to_string(),
        csr: Csr {
            data: device_csr(device_id, key)?,
            encoding: "oic.sec.encoding.pem".into(),
        },
    })
}

/// The credentials request of `device_id` ([`credentials_body`]).
pub fn credentials(
    token: &[u8],
    device_id: &uuid::Uuid,
    key: &rcgen::KeyPair,
) -> Result<Frame, ClientError> {
    Ok(post(
        token,
        Step::Credentials.path(),
        &credentials_body(device_id, key)?,
    )?)
}

/// The ACLs request.
pub fn acls(token: &[u8]) -> Frame {
    request(Code::GET, token, Step::Acls.path())
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum StepError<E> {
    /// Its request could not be built.
    #[error("request: {0}")]
    Request(#[from] ClientError),
    /// The session failed.
    #[error("{0:?}: {1}")]
    Session(Step, E),
    /// The server answered, but not with the step's success code.
    #[error("{step:?}: answered {}", answer.code)]
    Unexpected {
        /// The step.
        step: Step,
        /// The answer.
        answer: Frame,
    },
}

/// Run `step` with `request` over `session`: its answer, which must have the step's success code.
pub async fn run<S: Exchange>(
    session: &mut S,
    step: Step,
    request: &Frame,
) -> Result<Frame, StepError<S::Error>> {
    let answer = session
        .exchange(request)
        .await
        .map_err(|e| StepError::Session(step, e))?;
    if answer.code != step.success() {
        return Err(StepError::Unexpected { step, answer });
    }
    Ok(answer)
}

/// The answers of a whole provisioning flow, one per step.
#[derive(Debug)]
pub struct Answers {
    /// The time answer.
    pub time: Frame,
    /// The ownership answer.
    pub ownership: Frame,
    /// The cloud configuration answer.
    pub cloud_configuration: Frame,
    /// The credentials answer (with the identity certificate).
    pub credentials: Frame,
    /// The ACLs answer.
    pub acls: Frame,
}

/// Every step in order for `device_id`, its CSR signed by `key`, each request with the token
/// `token(step)`; every step must succeed.
pub async fn provision<S: Exchange>(
    session: &mut S,
    device_id: &uuid::Uuid,
    key: &rcgen::KeyPair,
    token: impl Fn(Step) -> Vec<u8>,
) -> Result<Answers, StepError<S::Error>> {
    let time = run(session, Step::Time, &self::time(&token(Step::Time))).await?;
    let ownership = run(
        session,
        Step::Ownership,
        &self::ownership(&token(Step::Ownership)),
    )
    .await?;
    let cloud = self::cloud_configuration(&token(Step::CloudConfiguration), device_id)?;
    let cloud_configuration = run(session, Step::CloudConfiguration, &cloud).await?;
    let creds = self::credentials(&token(Step::Credentials), device_id, key)?;
    let credentials = run(session, Step::Credentials, &creds).await?;
    let acls = run(session, Step::Acls, &self::acls(&token(Step::Acls))).await?;
    Ok(Answers {
        time,
        ownership,
        cloud_configuration,
        credentials,
        acls,
    })
}
