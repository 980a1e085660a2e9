//! Authentication and group selection against one snapshot, exactly as `spec/enrollment.md` says.
//!
//! Path validation is rustls-webpki's: the anchors it gets are the few configured certificates whose
//! subject names an issuer of some presented certificate (a hash lookup, never a scan), the
//! intermediates are the presented certificates. From the anchor the path continues along the
//! configured chain, whose links were verified when the group was created; here only what can
//! change with time or with the path below is checked for them (validity now, pathLenConstraint).

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::arena::Snapshot;
use super::cert::{clamp_time, common_name, CertId, TrustedCert};
use super::verdict::{Accepted, RejectReason, Verdict};

/// Signature algorithms a device chain may use (aws-lc-rs implementations).
static ALGORITHMS: &[&dyn SignatureVerificationAlgorithm] = &[
    webpki::aws_lc_rs::ECDSA_P256_SHA256,
    webpki::aws_lc_rs::ECDSA_P256_SHA384,
    webpki::aws_lc_rs::ECDSA_P384_SHA256,
    webpki::aws_lc_rs::ECDSA_P384_SHA384,
    webpki::aws_lc_rs::ECDSA_P521_SHA256,
    webpki::aws_lc_rs::ECDSA_P521_SHA384,
    webpki::aws_lc_rs::ECDSA_P521_SHA512,
    webpki::aws_lc_rs::ED25519,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA256,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA384,
    webpki::aws_lc_rs::RSA_PKCS1_2048_8192_SHA512,
    webpki::aws_lc_rs::RSA_PKCS1_3072_8192_SHA384,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
    webpki::aws_lc_rs::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
];

/// Longest configured chain walked above the anchor (configured chains are finite and acyclic by
/// construction; this only bounds the loop).
const MAX_CONFIGURED_DEPTH: usize = 64;

/// What one presented intermediate contributes: its bytes and the facts webpki does not check.
struct Presented<'a> {
    der: &'a [u8],
    issuer: &'a [u8],
    lacks_cert_sign: bool,
    not_before: u64,
    not_after: u64,
}

impl<'a> Presented<'a> {
    fn parse(der: &'a [u8]) -> Option<Self> {
        let (rest, cert) = X509Certificate::from_der(der).ok()?;
        if !rest.is_empty() {
            return None;
        }
        let lacks_cert_sign = match cert.key_usage() {
            Ok(Some(ku)) => !ku.value.key_cert_sign(),
            Ok(None) => false,
            Err(_) => return None,
        };
        let validity = cert.validity();
        Some(Self {
            der,
            issuer: cert.tbs_certificate.issuer.as_raw(),
            lacks_cert_sign,
            not_before: clamp_time(validity.not_before.timestamp()),
            not_after: clamp_time(validity.not_after.timestamp()),
        })
    }

    fn validity_at(&self, now: UnixTime) -> Option<RejectReason> {
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

impl Snapshot {
    /// Authenticate a presented chain (leaf first) and select its group, at time `now`.
    ///
    /// Possession of the leaf key is not checked here: the TLS handshake does that.
    pub fn authenticate(&self, presented: &[CertificateDer<'_>], now: UnixTime) -> Verdict {
        match self.try_authenticate(presented, now) {
            Ok(accepted) => Verdict::Accepted(accepted),
            Err(reason) => Verdict::Rejected(reason),
        }
    }

    fn try_authenticate(
        &self,
        presented: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<Accepted, RejectReason> {
        let (leaf_der, rest) = presented.split_first().ok_or(RejectReason::Malformed)?;
        let (tail, leaf) =
            X509Certificate::from_der(leaf_der).map_err(|_| RejectReason::Malformed)?;
        if !tail.is_empty() {
            return Err(RejectReason::Malformed);
        }
        let leaf_cn = common_name(&leaf).unwrap_or_default();
        let leaf_not_before = clamp_time(leaf.validity().not_before.timestamp());
        let leaf_not_after = clamp_time(leaf.validity().not_after.timestamp());

        // Presented intermediates: duplicates (and copies of the leaf) ignored, order irrelevant.
        let mut intermediates: Vec<Presented<'_>> = Vec::with_capacity(rest.len());
        for der in rest {
            if der.as_ref() == leaf_der.as_ref()
                || intermediates.iter().any(|p| p.der == der.as_ref())
            {
                continue;
            }
            intermediates.push(Presented::parse(der).ok_or(RejectReason::Malformed)?);
        }

        // Candidate anchors: configured certificates named as issuer by any presented certificate.
        let mut candidates: Vec<&Arc<TrustedCert>> = Vec::new();
        let issuers =
            std::iter::once(leaf.issuer().as_raw()).chain(intermediates.iter().map(|p| p.issuer));
        for issuer in issuers {
            if let Some(ids) = self.by_subject.get(issuer) {
                for id in ids.iter() {
                    if let Some(slot) = self.certs.get(id) {
                        if !candidates.iter().any(|c| c.id == *id) {
                            candidates.push(&slot.cert);
                        }
                    }
                }
            }
        }
        if candidates.is_empty() {
            return Err(RejectReason::NoPath);
        }
        let anchors: Vec<TrustAnchor<'_>> = candidates.iter().map(|c| c.anchor()).collect();
        let intermediate_ders: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .map(|p| CertificateDer::from(p.der))
            .collect();

        // The leaf's own validity is the selected group's business (expired_certificates_allowed),
        // so the path is validated at a time inside the leaf's window; CA validity is then
        // checked against `now` below.
        let leaf_validity = if now.as_secs() < leaf_not_before {
            Some(RejectReason::NotYetValid)
        } else if now.as_secs() > leaf_not_after {
            Some(RejectReason::Expired)
        } else {
            None
        };
        let path_time = match leaf_validity {
            None => now,
            Some(RejectReason::NotYetValid) => {
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(leaf_not_before))
            }
            Some(_) => UnixTime::since_unix_epoch(std::time::Duration::from_secs(leaf_not_after)),
        };

        let ee = webpki::EndEntityCert::try_from(leaf_der).map_err(|_| RejectReason::Malformed)?;
        let path = ee
            .verify_for_usage(
                ALGORITHMS,
                &anchors,
                &intermediate_ders,
                path_time,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|e| RejectReason::from_webpki(&e))?;

        // Assemble the verified chain: leaf, presented intermediates used, anchor, configured chain.
        let mut chain: Vec<CertificateDer<'static>> = Vec::with_capacity(8);
        let mut ids: Vec<CertId> = Vec::with_capacity(8);
        chain.push(leaf_der.clone().into_owned());
        ids.push(CertId::of(leaf_der));
        for cert in path.intermediate_certificates() {
            let der = cert.der();
            let p = intermediates
                .iter()
                .find(|p| p.der == der.as_ref())
                .ok_or(RejectReason::NoPath)?;
            if p.lacks_cert_sign {
                return Err(RejectReason::NotCa);
            }
            if let Some(r) = p.validity_at(now) {
                return Err(r);
            }
            ids.push(CertId::of(p.der));
            chain.push(CertificateDer::from(p.der.to_vec()));
        }
        let anchor = path.anchor();
        let mut next = candidates
            .iter()
            .filter(|c| {
                c.anchor.subject.as_ref() == anchor.subject.as_ref()
                    && c.anchor.subject_public_key_info.as_ref()
                        == anchor.subject_public_key_info.as_ref()
            })
            .min_by_key(|c| c.validity_at(now).is_some())
            .map(|c| c.id);
        let mut below = chain.len() - 1; // CA certificates between the next one and the leaf
        let mut depth = 0;
        while let Some(id) = next {
            depth += 1;
            let slot = self.certs.get(&id).ok_or(RejectReason::NoPath)?;
            if depth > MAX_CONFIGURED_DEPTH {
                return Err(RejectReason::NoPath);
            }
            let cert = &slot.cert;
            if let Some(r) = cert.validity_at(now) {
                return Err(r);
            }
            if cert.path_len.is_some_and(|limit| below > limit as usize) {
                return Err(RejectReason::PathLen);
            }
            if !cert.self_issued {
                below += 1;
            }
            ids.push(id);
            chain.push(cert.der.clone());
            next = slot.parent;
        }

        // Selection: leaf-most intermediate first, up to the root.
        let group_id = ids[1..]
            .iter()
            .find_map(|id| self.leads.get(id))
            .ok_or(RejectReason::NoGroup)?;
        let group = self.groups.get(group_id).ok_or(RejectReason::NoGroup)?;
        if group.deny.contains(&leaf_cn) {
            return Err(RejectReason::Denied);
        }
        if !group.allow.is_empty() && !group.allow.contains(&leaf_cn) {
            return Err(RejectReason::NotAllowed);
        }
        let expired_leaf_allowed = match leaf_validity {
            None => false,
            Some(_) if group.def.expired_certificates_allowed => true,
            Some(r) => return Err(r),
        };
        Ok(Accepted {
            group: *group_id,
            common_name: leaf_cn,
            chain,
            expired_leaf_allowed,
        })
    }
}
