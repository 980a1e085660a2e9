//! TLS for the device port: a rustls `ClientCertVerifier` that runs attestation (authentication and
//! group selection) during the handshake, so a refused device fails the handshake with a
//! certificate alert, and hands the verdict to the connection without verifying anything twice.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use crate::enrollment::{Accepted, Arena, RejectReason, Verdict};

/// Verdicts older than this are dropped from the hand-off (their handshake failed after the
/// certificate check, e.g. on CertificateVerify).
const HANDOFF_TTL: Duration = Duration::from_secs(60);

/// Identity of a presented chain, the key of the hand-off.
fn chain_key(certs: &[CertificateDer<'_>]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for c in certs {
        ctx.update(&(c.len() as u64).to_be_bytes());
        ctx.update(c);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Counters of attestation outcomes at the TLS layer (exported by the metrics endpoint later).
#[derive(Debug, Default)]
pub struct AttestationStats {
    /// Chains accepted.
    pub accepted: AtomicU64,
    rejected: [AtomicU64; RejectReason::ALL.len()],
}

impl AttestationStats {
    /// Rejections so far for `reason`.
    pub fn rejected(&self, reason: RejectReason) -> u64 {
        let i = RejectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .unwrap_or(0);
        self.rejected[i].load(Ordering::Relaxed)
    }

    fn count_rejection(&self, reason: RejectReason) {
        if let Some(i) = RejectReason::ALL.iter().position(|r| *r == reason) {
            self.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Verdicts waiting for their connection, keyed by the presented chain.
#[derive(Debug, Default)]
struct Handoff {
    pending: Mutex<HashMap<[u8; 32], (Accepted, Instant)>>,
}

impl Handoff {
    fn put(&self, key: [u8; 32], accepted: Accepted) {
        let Ok(mut map) = self.pending.lock() else {
            return;
        };
        if map.len() >= 1024 {
            let now = Instant::now();
            map.retain(|_, (_, at)| now.duration_since(*at) < HANDOFF_TTL);
        }
        map.insert(key, (accepted, Instant::now()));
    }

    fn take(&self, key: &[u8; 32]) -> Option<Accepted> {
        let (accepted, at) = self.pending.lock().ok()?.remove(key)?;
        (at.elapsed() < HANDOFF_TTL).then_some(accepted)
    }
}

/// The device-port client certificate verifier.
#[derive(Debug)]
pub struct AttestationVerifier {
    arena: Arc<Arena>,
    provider: Arc<CryptoProvider>,
    handoff: Handoff,
    /// Outcome counters.
    pub stats: AttestationStats,
}

impl AttestationVerifier {
    /// A verifier over `arena`.
    pub fn new(arena: Arc<Arena>) -> Self {
        Self {
            arena,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            handoff: Handoff::default(),
            stats: AttestationStats::default(),
        }
    }

    /// The verdict for a connection whose handshake completed with `peer_certificates`. Resumed
    /// sessions (which skip the certificate check) are judged here instead.
    pub fn verdict_for(&self, peer_certificates: &[CertificateDer<'_>]) -> Verdict {
        if let Some(a) = self.handoff.take(&chain_key(peer_certificates)) {
            return Verdict::Accepted(a);
        }
        self.arena
            .load()
            .authenticate(peer_certificates, UnixTime::now())
    }
}

fn certificate_error(reason: RejectReason) -> CertificateError {
    match reason {
        RejectReason::Malformed => CertificateError::BadEncoding,
        RejectReason::Expired => CertificateError::Expired,
        RejectReason::NotYetValid => CertificateError::NotValidYet,
        RejectReason::NoPath => CertificateError::UnknownIssuer,
        RejectReason::BadSignature => CertificateError::BadSignature,
        RejectReason::BadEku => CertificateError::InvalidPurpose,
        RejectReason::NotCa | RejectReason::PathLen => {
            CertificateError::Other(rustls::OtherError(Arc::new(Rejected(reason))))
        }
        RejectReason::NoGroup | RejectReason::Denied | RejectReason::NotAllowed => {
            CertificateError::ApplicationVerificationFailure
        }
    }
}

/// A rejection carried inside rustls's error.
#[derive(Debug)]
struct Rejected(RejectReason);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "device chain rejected: {}", self.0)
    }
}

impl std::error::Error for Rejected {}

impl ClientCertVerifier for AttestationVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    /// Optional: connections without a certificate may only use the TPM resources.
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No CA names are sent: with many groups the list would be huge, and devices send their
    /// manufacturer chain regardless.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone());
        chain.extend(intermediates.iter().cloned());
        match self.arena.load().authenticate(&chain, now) {
            Verdict::Accepted(accepted) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(group = %accepted.group, cn = %accepted.common_name, "device chain accepted");
                self.handoff.put(chain_key(&chain), accepted);
                Ok(ClientCertVerified::assertion())
            }
            Verdict::Rejected(reason) => {
                self.stats.count_rejection(reason);
                tracing::info!(%reason, "device chain rejected");
                Err(rustls::Error::InvalidCertificate(certificate_error(reason)))
            }
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// rustls refused the certificate, key or versions.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The device port's rustls configuration: TLS 1.2 and 1.3, aws-lc-rs, attestation verifier,
/// no session resumption (every connection is attested).
pub fn server_config(
    verifier: Arc<AttestationVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsConfigError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(config)
}
