//! A presented chain as the walk in [`super::authenticate`] sees it: what it is authenticated for
//! ([`Purpose`]), and each presented certificate parsed once into the facts webpki does not check
//! ([`Presented`], [`Offered`]). Kept apart from the walk so that the snapshot's methods, whose
//! signatures name these types, do not make `arena` and `authenticate` import each other.

use std::sync::Arc;

use rustls_pki_types::{TrustAnchor, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::cert::{clamp_time, CertId};
use super::group::Attestation;
use super::link_cache::{CaFacts, LinkPurpose};
use super::verdict::RejectReason;

/// DER value of the OID tcg-kp-EKCertificate (2.23.133.8.1), the EKU of EK certificates.
const TCG_KP_EK_CERTIFICATE: &[u8] = &[0x67, 0x81, 0x05, 0x08, 0x01];

/// What a chain is authenticated for: the leaf's required usage, the kind of group it may select,
/// and the name the allow / deny lists are checked against.
#[derive(Debug, Clone, Copy)]
pub(super) enum Purpose<'a> {
    /// A device certificate in the TLS handshake (EKU clientAuth if present; lists by CN).
    Tls,
    /// A TPM EK certificate (EKU tcg-kp-EKCertificate if present; lists by registration id).
    Ek { registration_id: &'a str },
}

impl Purpose<'_> {
    /// The key usage webpki requires of the leaf.
    pub(super) fn usage(self) -> webpki::KeyUsage {
        match self {
            Purpose::Tls => webpki::KeyUsage::client_auth(),
            Purpose::Ek { .. } => webpki::KeyUsage::required_if_present(TCG_KP_EK_CERTIFICATE),
        }
    }

    /// The purpose verified links are cached under.
    pub(super) fn link_purpose(self) -> LinkPurpose {
        match self {
            Purpose::Tls => LinkPurpose::Tls,
            Purpose::Ek { .. } => LinkPurpose::Ek,
        }
    }

    /// The kind of group the chain may select.
    pub(super) fn attestation(self) -> Attestation {
        match self {
            Purpose::Tls => Attestation::X509,
            Purpose::Ek { .. } => Attestation::Tpm,
        }
    }
}

/// A presented certificate that is not configured: its bytes, its identity and, when the
/// known-certificate memo had it, its trust anchor.
pub(super) struct Offered<'a> {
    pub(super) der: &'a [u8],
    pub(super) id: CertId,
    pub(super) anchor: Option<Arc<TrustAnchor<'static>>>,
}

/// What one presented intermediate contributes: its bytes and the facts webpki does not check.
pub(super) struct Presented<'a> {
    pub(super) der: &'a [u8],
    /// Its identity, hashed once per handshake (cache lookups and the verified chain use it).
    pub(super) id: CertId,
    pub(super) subject: &'a [u8],
    pub(super) issuer: &'a [u8],
    pub(super) is_ca: bool,
    pub(super) path_len: Option<u32>,
    pub(super) lacks_cert_sign: bool,
    pub(super) name_constrained: bool,
    pub(super) not_before: u64,
    pub(super) not_after: u64,
}

impl<'a> Presented<'a> {
    /// Parse a presented certificate; `None` if it is not DER or an extension is malformed.
    pub(super) fn parse(der: &'a [u8], id: CertId) -> Option<Self> {
        let (rest, cert) = X509Certificate::from_der(der).ok()?;
        if !rest.is_empty() {
            return None;
        }
        let lacks_cert_sign = match cert.key_usage() {
            Ok(Some(ku)) => !ku.value.key_cert_sign(),
            Ok(None) => false,
            Err(_) => return None,
        };
        let (is_ca, path_len) = match cert.basic_constraints() {
            Ok(Some(bc)) => (bc.value.ca, bc.value.path_len_constraint),
            Ok(None) => (false, None),
            Err(_) => return None,
        };
        let name_constrained = match cert.name_constraints() {
            Ok(nc) => nc.is_some(),
            Err(_) => return None,
        };
        let validity = cert.validity();
        Some(Self {
            der,
            id,
            name_constrained,
            subject: cert.tbs_certificate.subject.as_raw(),
            is_ca,
            path_len,
            issuer: cert.tbs_certificate.issuer.as_raw(),
            lacks_cert_sign,
            not_before: clamp_time(validity.not_before.timestamp()),
            not_after: clamp_time(validity.not_after.timestamp()),
        })
    }

    /// A cached certificate's facts, without parsing it again (its names are not needed on a
    /// path through cached links).
    pub(super) fn from_facts(der: &'a [u8], id: CertId, f: CaFacts) -> Self {
        Self {
            der,
            id,
            subject: &[],
            issuer: &[],
            is_ca: f.is_ca,
            path_len: f.path_len,
            lacks_cert_sign: f.lacks_cert_sign,
            name_constrained: false,
            not_before: f.not_before,
            not_after: f.not_after,
        }
    }

    /// The facts the link cache keeps of it.
    pub(super) fn facts(&self) -> CaFacts {
        CaFacts {
            is_ca: self.is_ca,
            path_len: self.path_len,
            lacks_cert_sign: self.lacks_cert_sign,
            not_before: self.not_before,
            not_after: self.not_after,
        }
    }

    /// Why it is not valid at `now` (`None`: it is).
    pub(super) fn validity_at(&self, now: UnixTime) -> Option<RejectReason> {
        let t = now.as_secs();
        if t < self.not_before {
            Some(RejectReason::NotYetValid)
        } else if t > self.not_after {
            Some(RejectReason::Expired)
        } else {
            None
        }
    }
}
