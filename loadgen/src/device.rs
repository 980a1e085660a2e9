//! One simulated device running the real protocol: TCP, TLS with its manufacturer chain, then the
//! CoAP flow in iotivity-lite's order (time, ownership, cloud configuration, credentials from a
//! fresh CSR, ACLs), checking every answer as a device would. Uses the server crate's codec.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dps_server::proto::body::{
    self, AclsResponse, CloudConfigurationRequest, CloudConfigurationResponse, ContentFormat,
    CredentialsRequest, CredentialsResponse, Csr, OwnershipResponse, TimeResponse,
};
use dps_server::proto::coap::{Code, Frame};
use dps_server::proto::stream::{FramedIo, StreamError};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::fleet::Device;
use crate::metrics::Phase;

/// What a device saw.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "observed", rename_all = "snake_case")]
pub enum Observed {
    /// The whole flow succeeded; the owner it was given.
    Provisioned {
        /// `devowneruuid` from the ownership resource.
        owner: String,
    },
    /// Handshake-only mode: the handshake was accepted.
    Attested,
    /// The server refused the handshake with this TLS alert.
    Rejected {
        /// The alert description (rustls's name, e.g. `UnknownCA`).
        alert: String,
    },
    /// Anything else: timeout, I/O error, unexpected response.
    Failed {
        /// What happened.
        error: String,
    },
}

/// One device's run.
#[derive(Debug, Clone)]
pub struct DeviceRun {
    /// What it saw.
    pub observed: Observed,
    /// Measured phases.
    pub phases: Vec<(Phase, Duration)>,
}

/// What all devices of a run share.
#[derive(Debug, Clone)]
pub struct DeviceContext {
    /// The server's device port.
    pub addr: SocketAddr,
    /// The CA the server certificate chains to.
    pub server_ca: CertificateDer<'static>,
    /// Accept any server certificate.
    pub skip_server_verification: bool,
    /// Stop after the handshake.
    pub handshake_only: bool,
    /// Per-device deadline.
    pub timeout: Duration,
}

/// The alert a server sends for each rejection reason (rustls's mapping of certificate errors).
pub fn expected_alert(reason: dps_server::enrollment::RejectReason) -> &'static str {
    use dps_server::enrollment::RejectReason as R;
    match reason {
        R::NoPath => "UnknownCA",
        R::BadSignature => "DecryptError",
        R::Expired | R::NotYetValid => "CertificateExpired",
        R::BadEku => "UnsupportedCertificate",
        R::NoGroup | R::Denied | R::NotAllowed => "AccessDenied",
        R::Malformed => "BadCertificate",
        R::NotCa | R::PathLen => "CertificateUnknown",
    }
}

#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(dev: &Device, ctx: &DeviceContext) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if ctx.skip_server_verification {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ctx.server_ca.clone())
            .map_err(|e| e.to_string())?;
        builder.with_root_certificates(roots)
    };
    builder
        .with_client_auth_cert(dev.chain.clone(), dev.key.clone_key())
        .map_err(|e| e.to_string())
}

/// The alert behind an I/O error from a TLS stream, if there is one.
fn alert_of(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match inner {
        rustls::Error::AlertReceived(alert) => Some(format!("{alert:?}")),
        _ => None,
    }
}

fn stream_failure(step: &str, e: &StreamError) -> Observed {
    if let StreamError::Io(io) = e {
        if let Some(alert) = alert_of(io) {
            return Observed::Rejected { alert };
        }
    }
    Observed::Failed {
        error: format!("{step}: {e}"),
    }
}

/// Run one device; latency of `Total` counts from `scheduled` (coordinated omission).
pub async fn run(dev: &Device, ctx: &DeviceContext, scheduled: Instant) -> DeviceRun {
    let mut phases = Vec::with_capacity(8);
    let observed = match tokio::time::timeout(ctx.timeout, flow(dev, ctx, &mut phases)).await {
        Ok(observed) => observed,
        Err(_) => Observed::Failed {
            error: format!("timed out after {:?}", ctx.timeout),
        },
    };
    phases.push((Phase::Total, scheduled.elapsed()));
    DeviceRun { observed, phases }
}

fn request(code: Code, token: u64, path: &str) -> Frame {
    Frame::request(code, &token.to_be_bytes(), path).with_accept(ContentFormat::OcfCbor.as_u16())
}

async fn flow(dev: &Device, ctx: &DeviceContext, phases: &mut Vec<(Phase, Duration)>) -> Observed {
    let config = match client_config(dev, ctx) {
        Ok(c) => c,
        Err(error) => return Observed::Failed { error },
    };
    let started = Instant::now();
    let tcp = match TcpStream::connect(ctx.addr).await {
        Ok(t) => t,
        Err(e) => {
            return Observed::Failed {
                error: format!("connect: {e}"),
            }
        }
    };
    let _ = tcp.set_nodelay(true);
    phases.push((Phase::Tcp, started.elapsed()));
    let started = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::IpAddress(ctx.addr.ip().into());
    let tls = match connector.connect(name, tcp).await {
        Ok(t) => t,
        Err(e) => {
            return match alert_of(&e) {
                Some(alert) => Observed::Rejected { alert },
                None => Observed::Failed {
                    error: format!("handshake: {e}"),
                },
            }
        }
    };
    let mut io = FramedIo::new(tls, 64 * 1024);
    // TLS 1.3 clients finish before the server has judged their certificate: the verdict (CSM or
    // alert) is the first thing the server sends.
    match io.read_frame().await {
        Ok(Some(f)) if f.code == Code::CSM => {}
        Ok(Some(f)) => {
            return Observed::Failed {
                error: format!("expected CSM, got {}", f.code),
            }
        }
        Ok(None) => {
            return Observed::Failed {
                error: "closed before CSM".into(),
            }
        }
        Err(e) => {
            let observed = stream_failure("handshake", &e);
            if matches!(observed, Observed::Rejected { .. }) {
                // A refusal is a completed handshake too: its latency is the time to the alert.
                phases.push((Phase::Handshake, started.elapsed()));
            }
            return observed;
        }
    }
    phases.push((Phase::Handshake, started.elapsed()));
    if ctx.handshake_only {
        return Observed::Attested;
    }
    match provision(&mut io, dev, phases).await {
        Ok(owner) => Observed::Provisioned { owner },
        Err(o) => o,
    }
}

async fn step<T: serde::de::DeserializeOwned>(
    io: &mut FramedIo<tokio_rustls::client::TlsStream<TcpStream>>,
    phase: Phase,
    req: Frame,
    want: Code,
    phases: &mut Vec<(Phase, Duration)>,
) -> Result<T, Observed> {
    let started = Instant::now();
    let resp = io
        .exchange(&req)
        .await
        .map_err(|e| stream_failure(phase.as_str(), &e))?;
    phases.push((phase, started.elapsed()));
    if resp.code != want {
        return Err(Observed::Failed {
            error: format!(
                "{phase}: {} {}",
                resp.code,
                String::from_utf8_lossy(&resp.payload)
            ),
        });
    }
    body::from_cbor(&resp.payload).map_err(|e| Observed::Failed {
        error: format!("{phase}: {e}"),
    })
}

async fn provision(
    io: &mut FramedIo<tokio_rustls::client::TlsStream<TcpStream>>,
    dev: &Device,
    phases: &mut Vec<(Phase, Duration)>,
) -> Result<String, Observed> {
    let token = (dev.index as u64) << 8;
    let fail = |error: String| Observed::Failed { error };
    let time: TimeResponse = step(
        io,
        Phase::Time,
        request(Code::GET, token, "/x.plgd.dev/time"),
        Code::CONTENT,
        phases,
    )
    .await?;
    if time.time.is_empty() {
        return Err(fail("time: empty".into()));
    }
    let own: OwnershipResponse = step(
        io,
        Phase::Ownership,
        request(Code::GET, token + 1, "/api/v1/provisioning/ownership"),
        Code::CONTENT,
        phases,
    )
    .await?;
    let device_id = uuid::Uuid::new_v4();
    let cloud_req = CloudConfigurationRequest {
        di: device_id.to_string(),
        selected_gateway: None,
    };
    let post = |t: u64,
                path: &str,
                payload: Result<Vec<u8>, body::BodyError>|
     -> Result<Frame, Observed> {
        Ok(request(Code::POST, t, path)
            .with_content_format(ContentFormat::OcfCbor.as_u16())
            .with_payload(payload.map_err(|e| Observed::Failed {
                error: e.to_string(),
            })?))
    };
    let cloud: CloudConfigurationResponse = step(
        io,
        Phase::CloudConfiguration,
        post(
            token + 2,
            "/api/v1/provisioning/cloud-configuration",
            body::to_cbor(&cloud_req),
        )?,
        Code::CHANGED,
        phases,
    )
    .await?;
    if cloud.cis.is_empty() || cloud.sid.is_empty() {
        return Err(fail("cloud configuration without cis or sid".into()));
    }
    let csr = make_csr(device_id).map_err(fail)?;
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
        post(
            token + 3,
            "/api/v1/provisioning/credentials",
            body::to_cbor(&cred_req),
        )?,
        Code::CHANGED,
        phases,
    )
    .await?;
    let has_cert = creds
        .creds
        .iter()
        .any(|c| c.credusage == "oic.sec.cred.cert" && c.subjectuuid == device_id.to_string());
    let has_trust = creds
        .creds
        .iter()
        .any(|c| c.credusage == "oic.sec.cred.trustca");
    if !(has_cert && has_trust) {
        return Err(fail(
            "credentials: identity certificate or trust CA missing".into(),
        ));
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
        return Err(fail("acls: empty".into()));
    }
    Ok(own.devowneruuid)
}

fn make_csr(device_id: uuid::Uuid) -> Result<String, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
    dps_server::pki::device_csr(&device_id, &key).map_err(|e| e.to_string())
}
