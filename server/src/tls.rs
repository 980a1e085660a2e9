//! TLS for the device port: a rustls `ClientCertVerifier` that runs attestation (authentication and
//! group selection) during the handshake, so a refused device fails the handshake with a
//! certificate alert, and hands the verdict to the connection without verifying anything twice.
//!
//! A chain that does not authenticate against the enrollment groups may still be an identity
//! certificate this DPS issued: it is verified against the identity CA and admitted as its
//! provisioned device (group from its record) if it is the certificate issued last for its device
//! id. A superseded or foreign identity certificate is refused as `no_path`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CipherSuite, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, TrustAnchor, UnixTime};
use uuid::Uuid;
use x509_parser::prelude::{FromDer, X509Certificate};

mod counting_key;
pub mod refusal;

use crate::enrollment::{Accepted, Arena, CertId, RejectReason, Snapshot, Verdict};
use crate::provision::Identities;
use crate::tpm::TpmEnrollments;

/// Verdicts older than this are dropped from the hand-off (their handshake failed after the
/// certificate check, e.g. on CertificateVerify).
const HANDOFF_TTL: Duration = Duration::from_secs(60);

/// Bytes at the end of each certificate (its signature) that the hand-off key covers.
const CHAIN_KEY_TAIL: usize = 32;

/// Where a presented chain's verdict waits in the hand-off: SipHash under a secret per-process key
/// of the number of certificates and each one's length and last [`CHAIN_KEY_TAIL`] bytes (its
/// signature). The key only places the entry: a pending verdict is handed over only to the chain
/// whose bytes equal the ones it was judged for, all of them (see [`PresentedChain`]). A
/// collision, accidental or not, only means a miss, and a miss only means the verdict is computed
/// again.
#[derive(Debug, Clone, Default)]
struct ChainKeys(std::hash::RandomState);

impl ChainKeys {
    fn of(&self, certs: &[CertificateDer<'_>]) -> u64 {
        use std::hash::{BuildHasher as _, Hasher as _};
        let mut h = self.0.build_hasher();
        h.write_usize(certs.len());
        for c in certs {
            let tail = c.get(c.len().saturating_sub(CHAIN_KEY_TAIL)..).unwrap_or(c);
            h.write_usize(c.len());
            h.write(tail);
        }
        h.finish()
    }
}

/// The exact bytes of a presented chain: each certificate's length (8 bytes, little-endian) then
/// its DER, in order.
#[derive(Debug)]
struct PresentedChain(Box<[u8]>);

impl PresentedChain {
    fn of(certs: &[CertificateDer<'_>]) -> Self {
        let mut out = Vec::with_capacity(certs.iter().map(|c| c.len() + 8).sum());
        for c in certs {
            out.extend_from_slice(&(c.len() as u64).to_le_bytes());
            out.extend_from_slice(c);
        }
        Self(out.into_boxed_slice())
    }

    /// Is this exactly `certs`, certificate by certificate?
    fn is(&self, certs: &[CertificateDer<'_>]) -> bool {
        let mut rest: &[u8] = &self.0;
        for c in certs {
            let Some((len, tail)) = rest.split_first_chunk::<8>() else {
                return false;
            };
            if u64::from_le_bytes(*len) != c.len() as u64 {
                return false;
            }
            let Some((der, tail)) = tail.split_at_checked(c.len()) else {
                return false;
            };
            if der != c.as_ref() {
                return false;
            }
            rest = tail;
        }
        rest.is_empty()
    }
}

/// Counters of attestation outcomes at the TLS layer (exported by the metrics endpoint later).
#[derive(Debug, Default)]
pub struct AttestationStats {
    /// Chains accepted (manufacturer chains and identity certificates).
    pub accepted: AtomicU64,
    /// Of those, identity certificates this DPS issued.
    pub identity_accepted: AtomicU64,
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

/// A device recognised by the identity certificate this DPS issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdentitySession {
    /// Its device id (CN `uuid:<id>` of the certificate).
    pub device_id: Uuid,
    /// Its provisioning record: fingerprint of its manufacturer certificate.
    pub record: CertId,
}

/// An admitted device: the attestation verdict, and for identity certificates who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Group, CN and verified chain.
    pub accepted: Accepted,
    /// Set when the device presented the identity certificate this DPS issued it.
    pub identity: Option<IdentitySession>,
}

/// Verdicts waiting for their connection, placed by the presented chain's [`ChainKeys`] and
/// handed over only to exactly that chain.
#[derive(Debug, Default)]
struct Handoff {
    keys: ChainKeys,
    pending: Mutex<HashMap<u64, (PresentedChain, Admission, Instant)>>,
}

impl Handoff {
    fn put(&self, chain: &[CertificateDer<'_>], accepted: Admission) {
        let key = self.keys.of(chain);
        let presented = PresentedChain::of(chain);
        let Ok(mut map) = self.pending.lock() else {
            return;
        };
        if map.len() >= 1024 {
            let now = Instant::now();
            map.retain(|_, (_, _, at)| now.duration_since(*at) < HANDOFF_TTL);
        }
        map.insert(key, (presented, accepted, Instant::now()));
    }

    fn take(&self, chain: &[CertificateDer<'_>]) -> Option<Admission> {
        let key = self.keys.of(chain);
        let mut map = self.pending.lock().ok()?;
        // Another chain under the same key is left for its own connection.
        if !map.get(&key)?.0.is(chain) {
            return None;
        }
        let (_, accepted, at) = map.remove(&key)?;
        (at.elapsed() < HANDOFF_TTL).then_some(accepted)
    }
}

/// What recognises identity certificates: the identity CA as trust anchors and the issued
/// identities.
#[derive(Debug)]
struct IdentityTrust {
    anchors: Vec<TrustAnchor<'static>>,
    identities: Arc<Identities>,
}

impl IdentityTrust {
    /// Admit `chain` (leaf first) as the identity certificate issued last to its device id.
    fn admit(
        &self,
        snapshot: &Snapshot,
        tpm: Option<&TpmEnrollments>,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Admission, RejectReason> {
        let (leaf, rest) = chain.split_first().ok_or(RejectReason::Malformed)?;
        let ee = webpki::EndEntityCert::try_from(leaf).map_err(|_| RejectReason::Malformed)?;
        ee.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &self.anchors,
            rest,
            now,
            webpki::KeyUsage::client_auth(),
            None,
            None,
        )
        .map_err(|e| match e {
            webpki::Error::CertExpired { .. } => RejectReason::Expired,
            webpki::Error::CertNotValidYet { .. } => RejectReason::NotYetValid,
            _ => RejectReason::NoPath,
        })?;
        let (_, cert) = X509Certificate::from_der(leaf).map_err(|_| RejectReason::Malformed)?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .ok_or(RejectReason::NoPath)?;
        let device_id = cn
            .strip_prefix("uuid:")
            .and_then(|id| Uuid::try_parse(id).ok())
            .ok_or(RejectReason::NoPath)?;
        let Some(holder) = self.identities.find(&device_id, &CertId::of(leaf)) else {
            tracing::info!(device = %device_id, "identity certificate is not the one on record");
            return Err(RejectReason::NoPath);
        };
        let record = holder.record.ok_or(RejectReason::NoPath)?;
        // Its enrollment as it is now: a group whose allow / deny lists still admit the name the
        // device attested with (revoking the manufacturer CN or TPM registration id revokes the
        // identity too), or (for a TPM provisioned that way) an individual enrollment that still
        // exists.
        match snapshot.group(&holder.group) {
            Some(group) => {
                if group.deny.contains(&holder.name) {
                    tracing::info!(device = %device_id, name = %holder.name, "identity certificate of a denied device");
                    return Err(RejectReason::Denied);
                }
                if !group.allow.is_empty() && !group.allow.contains(&holder.name) {
                    tracing::info!(device = %device_id, name = %holder.name, "identity certificate of a device no longer allowed");
                    return Err(RejectReason::NotAllowed);
                }
            }
            None if tpm.and_then(|t| t.by_id(&holder.group)).is_some() => {}
            None => return Err(RejectReason::NoGroup),
        }
        Ok(Admission {
            accepted: Accepted {
                group: holder.group,
                common_name: cn.to_owned(),
                chain: chain.iter().map(|c| c.clone().into_owned()).collect(),
                expired_leaf_allowed: false,
            },
            identity: Some(IdentitySession { device_id, record }),
        })
    }
}

/// Why the identity CA could not be used to recognise identity certificates.
#[derive(Debug, thiserror::Error)]
#[error("identity CA certificate is not a usable trust anchor: {0:?}")]
pub struct IdentityAnchorError(#[source] webpki::Error);

/// The device-port client certificate verifier.
#[derive(Debug)]
pub struct AttestationVerifier {
    arena: Arc<Arena>,
    identity: Option<IdentityTrust>,
    tpm: Option<Arc<TpmEnrollments>>,
    provider: Arc<CryptoProvider>,
    handoff: Handoff,
    /// Outcome counters.
    pub stats: AttestationStats,
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl AttestationVerifier {
    /// A verifier over `arena` (manufacturer chains only).
    pub fn new(arena: Arc<Arena>) -> Self {
        Self {
            arena,
            identity: None,
            tpm: None,
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            handoff: Handoff::default(),
            stats: AttestationStats::default(),
            metrics: None,
        }
    }

    /// Also record matching latency and rejections by reason in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Also recognise identity certificates signed by `identity_ca` (the identity CA chain,
    /// signing CA first; each of its certificates is a trust anchor) that are the certificate
    /// issued last to their device id in `identities`.
    pub fn with_identities(
        mut self,
        identity_ca: &[CertificateDer<'static>],
        identities: Arc<Identities>,
    ) -> Result<Self, IdentityAnchorError> {
        let anchors = identity_ca
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .map(|a| a.to_owned())
                    .map_err(IdentityAnchorError)
            })
            .collect::<Result<_, _>>()?;
        self.identity = Some(IdentityTrust {
            anchors,
            identities,
        });
        Ok(self)
    }

    /// Also recognise identity certificates of TPMs provisioned through an individual TPM
    /// enrollment in `tpm`.
    pub fn with_tpm_enrollments(mut self, tpm: Arc<TpmEnrollments>) -> Self {
        self.tpm = Some(tpm);
        self
    }

    /// Judge a presented chain: the enrollment groups first, then (for a chain without a path to
    /// any group) the identity CA.
    pub fn judge(
        &self,
        chain: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Admission, RejectReason> {
        let snapshot = self.arena.load();
        match snapshot.authenticate(chain, now) {
            Verdict::Accepted(accepted) => Ok(Admission {
                accepted,
                identity: None,
            }),
            Verdict::Rejected(RejectReason::NoPath) => match &self.identity {
                Some(trust) => trust.admit(&snapshot, self.tpm.as_deref(), chain, now),
                None => Err(RejectReason::NoPath),
            },
            Verdict::Rejected(reason) => Err(reason),
        }
    }

    /// The admission of a connection whose handshake completed with `peer_certificates`.
    /// Resumed sessions (which skip the certificate check) are judged here instead.
    pub fn admission_for(
        &self,
        peer_certificates: &[CertificateDer<'_>],
    ) -> Result<Admission, RejectReason> {
        if let Some(a) = self.handoff.take(peer_certificates) {
            return Ok(a);
        }
        self.judge(peer_certificates, UnixTime::now())
    }

    /// The verdict for a connection whose handshake completed with `peer_certificates` (see
    /// [`AttestationVerifier::admission_for`]).
    pub fn verdict_for(&self, peer_certificates: &[CertificateDer<'_>]) -> Verdict {
        match self.admission_for(peer_certificates) {
            Ok(a) => Verdict::Accepted(a.accepted),
            Err(reason) => Verdict::Rejected(reason),
        }
    }
}

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
        let started = std::time::Instant::now();
        let judged = self.judge(&chain, now);
        if let Some(m) = &self.metrics {
            m.record_matching(started.elapsed());
            if let Err(reason) = &judged {
                m.record_rejection(*reason);
            }
        }
        match judged {
            Ok(admission) => {
                self.stats.accepted.fetch_add(1, Ordering::Relaxed);
                if admission.identity.is_some() {
                    self.stats.identity_accepted.fetch_add(1, Ordering::Relaxed);
                }
                tracing::debug!(group = %admission.accepted.group, cn = %admission.accepted.common_name, identity = admission.identity.is_some(), "device chain accepted");
                self.handoff.put(&chain, admission);
                Ok(ClientCertVerified::assertion())
            }
            Err(reason) => {
                self.stats.count_rejection(reason);
                tracing::info!(%reason, "device chain rejected");
                Err(rustls::Error::InvalidCertificate(
                    refusal::certificate_error(reason),
                ))
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

/// The device port's crypto: aws-lc-rs with the AES-128-GCM / SHA-256 suites preferred over
/// AES-256-GCM / SHA-384, in the order Go's crypto/tls (which plgd's DPS is built on) uses on
/// hardware with AES: TLS 1.3's mandatory suite first. Every handshake's key schedule and
/// transcript hash then run on SHA-256, which cost the server about 93,000 fewer instructions per
/// leaf+2 P-256 handshake than SHA-384 did (3.3 %, `dps-instructions`); both AES key sizes stay
/// allowed.
pub fn device_port_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    // Stable: within each group, the provider's own order is kept.
    provider.cipher_suites.sort_by_key(|suite| {
        matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
        )
    });
    provider
}

/// Applies the device port's suite preference: the server's order, not the client's, picks the
/// suite (devices' TLS stacks commonly list AES-256 first).
pub fn prefer_server_suites(config: &mut rustls::ServerConfig) {
    config.ignore_client_order = true;
}

/// The device port's rustls configuration: TLS 1.2 and 1.3, aws-lc-rs
/// ([`device_port_provider`]), attestation verifier, no session resumption (every connection is
/// attested) and so no session tickets.
pub fn server_config(
    verifier: Arc<AttestationVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, TlsConfigError> {
    server_config_counting(verifier, chain, key, None)
}

/// [`server_config`], counting the server's handshake signatures in `signatures` when given (the
/// server does; benches measure the plain key).
pub fn server_config_counting(
    verifier: Arc<AttestationVerifier>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    signatures: Option<Arc<crate::overload::OverloadCounters>>,
) -> Result<rustls::ServerConfig, TlsConfigError> {
    let provider = Arc::new(device_port_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier);
    let mut config = match signatures {
        None => builder.with_single_cert(chain, key)?,
        Some(counters) => {
            let key = rustls::sign::CertifiedKey::from_der(chain, key, &provider)?;
            let counted = counting_key::counting(&key, counters);
            builder.with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(counted)))
        }
    };
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    // No resumption, so no tickets: rustls would otherwise build two per TLS 1.3 handshake (ticket
    // PSK derivation, random nonces, the session value encoded with a copy of the device's
    // chain) only to find the storage refuses them and send none.
    config.send_tls13_tickets = 0;
    prefer_server_suites(&mut config);
    Ok(config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::pki::{CertSpec, Issued};

    #[test]
    fn the_handoff_hands_a_verdict_only_to_exactly_the_judged_chain() {
        let admission = |cn: &str| Admission {
            accepted: Accepted {
                group: Uuid::nil(),
                common_name: cn.to_owned(),
                chain: Vec::new(),
                expired_leaf_allowed: false,
            },
            identity: None,
        };
        let der = |bytes: &[u8]| CertificateDer::from(bytes.to_vec());
        let tail = [9u8; 40];
        let a = [[&[1u8; 10][..], &tail].concat(), tail.to_vec()];
        let chain = [der(&a[0]), der(&a[1])];
        // Same lengths and tails (so the same key), other bytes.
        let forged = [der(&[&[2u8; 10][..], &tail].concat()), der(&a[1])];
        let handoff = Handoff::default();
        assert_eq!(handoff.keys.of(&chain), handoff.keys.of(&forged));
        handoff.put(&chain, admission("a"));
        assert_eq!(handoff.take(&forged), None);
        assert_eq!(handoff.take(&chain[..1]), None);
        assert_eq!(
            handoff.take(&chain).map(|a| a.accepted.common_name),
            Some("a".to_owned())
        );
        assert_eq!(handoff.take(&chain), None);
        assert!(PresentedChain::of(&chain).is(&chain));
        assert!(!PresentedChain::of(&chain).is(&forged));
        assert!(!PresentedChain::of(&chain[..1]).is(&chain));
        assert!(PresentedChain::of(&[]).is(&[]));
    }

    /// Moves TLS records between the two ends until neither has anything to send.
    fn drive(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) {
        for _ in 0..16 {
            let mut moved = false;
            while client.wants_write() {
                let mut buf = Vec::new();
                client.write_tls(&mut buf).unwrap();
                server.read_tls(&mut buf.as_slice()).unwrap();
                server.process_new_packets().unwrap();
                moved = true;
            }
            while server.wants_write() {
                let mut buf = Vec::new();
                server.write_tls(&mut buf).unwrap();
                client.read_tls(&mut buf.as_slice()).unwrap();
                client.process_new_packets().unwrap();
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }

    #[test]
    fn the_device_port_prefers_tls13_mandatory_suite_over_the_clients_order() {
        let provider = device_port_provider();
        let default = rustls::crypto::aws_lc_rs::default_provider();
        assert_eq!(
            provider.cipher_suites[0].suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
        );
        assert_eq!(provider.cipher_suites.len(), default.cipher_suites.len());
        for suite in &default.cipher_suites {
            assert!(provider.cipher_suites.contains(suite), "{suite:?} dropped");
        }

        let ca = Issued::self_signed(&CertSpec::ca("tls test CA")).unwrap();
        let mut spec = CertSpec::device("localhost");
        spec.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        spec.subject_alt_names = vec![rcgen::SanType::DnsName("localhost".try_into().unwrap())];
        let server_cert = ca.issue(&spec).unwrap();
        let arena = Arc::new(Arena::with_groups(Vec::new()).unwrap());
        let verifier = Arc::new(AttestationVerifier::new(arena));
        let config = server_config(
            verifier,
            vec![server_cert.der().clone()],
            server_cert.key_der(),
        )
        .unwrap();
        // A stock client lists AES-256-GCM / SHA-384 first; the server's order wins.
        use crate::client::{ClientAuth, DeviceTls, ServerTrust, TlsChoices};
        let choices = TlsChoices {
            versions: vec![&rustls::version::TLS13],
            ..TlsChoices::default()
        };
        let devices = DeviceTls::new(ServerTrust::Ca(vec![ca.der().clone()]), choices).unwrap();
        assert_eq!(
            devices.provider().cipher_suites[0].suite(),
            CipherSuite::TLS13_AES_256_GCM_SHA384
        );
        let client_config = devices.config(ClientAuth::None).unwrap();
        let mut client =
            rustls::ClientConnection::new(Arc::new(client_config), "localhost".try_into().unwrap())
                .unwrap();
        let mut server = rustls::ServerConnection::new(Arc::new(config)).unwrap();
        drive(&mut client, &mut server);
        assert!(!client.is_handshaking() && !server.is_handshaking());
        assert_eq!(
            server.negotiated_cipher_suite().map(|s| s.suite()),
            Some(CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
    }
}
