//! Authentication and group selection against one snapshot, exactly as `docs/enrollment.md` says.
//!
//! Path validation is rustls-webpki's: the anchors it gets are the few configured certificates whose
//! subject names an issuer of some presented certificate (a hash lookup, never a scan), the
//! intermediates are the presented certificates. From the anchor the path continues along the
//! configured chain, whose links were verified when the group was created; here only what can
//! change with time or with the path below is checked for them (validity now, pathLenConstraint).

use std::sync::Arc;

use rustls_pki_types::{CertificateDer, SignatureVerificationAlgorithm, TrustAnchor, UnixTime};
use x509_parser::certificate::{X509Certificate, X509CertificateParser};
use x509_parser::nom::Parser as _;

use super::arena::Snapshot;
use super::cert::{borrowed_anchor, clamp_time, common_name, verify_signed, CertId, TrustedCert};
use super::link_cache::{Link, Parent};
use super::presented::{Offered, Presented, Purpose};
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

impl Snapshot {
    /// Authenticate a presented chain (leaf first) and select its group, at time `now`.
    ///
    /// Possession of the leaf key is not checked here: the TLS handshake does that.
    /// Only X.509 enrollment groups can be selected.
    pub fn authenticate(&self, presented: &[CertificateDer<'_>], now: UnixTime) -> Verdict {
        match self.try_authenticate(presented, now, Purpose::Tls) {
            Ok(accepted) => Verdict::Accepted(accepted),
            Err(reason) => Verdict::Rejected(reason),
        }
    }

    /// Authenticate a TPM's EK certificate chain (EK certificate first) and select its TPM
    /// enrollment group, by the same rules; the allow / deny lists are checked against the TPM's
    /// `registration_id` (EK certificates often have no CN), which is also the accepted name.
    pub fn authenticate_ek(
        &self,
        presented: &[CertificateDer<'_>],
        now: UnixTime,
        registration_id: &str,
    ) -> Verdict {
        match self.try_authenticate(presented, now, Purpose::Ek { registration_id }) {
            Ok(accepted) => Verdict::Accepted(accepted),
            Err(reason) => Verdict::Rejected(reason),
        }
    }

    fn try_authenticate(
        &self,
        presented: &[CertificateDer<'_>],
        now: UnixTime,
        purpose: Purpose<'_>,
    ) -> Result<Accepted, RejectReason> {
        let (leaf_der, rest) = presented.split_first().ok_or(RejectReason::Malformed)?;
        let leaf = Leaf::parse(leaf_der, now)?;
        let presented = self.offered(leaf_der, rest);
        if leaf.validity.is_none() {
            if let Some((used, anchor)) = self.cached_path(&leaf.ee, now, purpose, &presented) {
                let used = used.iter().collect();
                return self.finish(now, leaf_der, (leaf.cn, purpose), None, (used, anchor));
            }
        }
        let intermediates = presented
            .iter()
            .map(|p| Presented::parse(p.der, p.id))
            .collect::<Option<Vec<_>>>()
            .ok_or(RejectReason::Malformed)?;
        let candidates = self.candidate_anchors(leaf.cert.issuer().as_raw(), &intermediates);
        if candidates.is_empty() {
            return Err(RejectReason::NoPath);
        }
        let path_time = leaf.path_time(now);
        let full = FullPath {
            ee: &leaf.ee,
            path_time,
            purpose,
            intermediates: &intermediates,
            candidates: &candidates,
        };
        let (used, anchor) = match full.verify(now) {
            Ok(found) => found.ok_or(RejectReason::NoPath)?,
            // An expired (or future) leaf under a CA that was not valid at the leaf's time: no
            // single time suits the whole path, so the leaf link and the CA links are checked apart.
            Err(webpki::Error::CertExpired { .. } | webpki::Error::CertNotValidYet { .. })
                if leaf.validity.is_some() =>
            {
                let split = split_path(&leaf.ee, path_time, purpose, &candidates, &intermediates)?;
                return self.finish(now, leaf_der, (leaf.cn, purpose), leaf.validity, split);
            }
            Err(e) => return Err(RejectReason::from_webpki(&e)),
        };
        let used_refs: Vec<&Presented<'_>> =
            used.iter().filter_map(|&i| intermediates.get(i)).collect();
        let accepted = self.finish(
            now,
            leaf_der,
            (leaf.cn, purpose),
            leaf.validity,
            (used_refs, anchor),
        )?;
        if leaf.validity.is_none() {
            self.remember_links(purpose, &intermediates, &used, anchor);
        }
        Ok(accepted)
    }

    /// The presented intermediates worth offering: duplicates (and copies of the leaf) ignored,
    /// order irrelevant, configured certificates sent along left out (they are anchor candidates).
    fn offered<'p>(
        &self,
        leaf_der: &CertificateDer<'_>,
        rest: &'p [CertificateDer<'_>],
    ) -> Vec<Offered<'p>> {
        let mut presented: Vec<Offered<'p>> = Vec::with_capacity(rest.len());
        for der in rest {
            if der.as_ref() == leaf_der.as_ref() || presented.iter().any(|p| p.der == der.as_ref())
            {
                continue;
            }
            // The identity is SHA-256 of the DER; a certificate met before with these exact bytes
            // has it memoised (with its anchor), so it is not hashed again.
            let known = self.links.known(der);
            let id = known.as_ref().map_or_else(|| CertId::of(der), |k| k.id);
            if self.certs.contains_key(&id) {
                // A configured certificate sent along: it is an anchor candidate already (its
                // subject names the issuer of the certificate below it), so it need not be parsed
                // or offered as an intermediate.
                if known.is_none() {
                    self.links.learn_configured(der, id);
                }
                continue;
            }
            presented.push(Offered {
                der: der.as_ref(),
                id,
                anchor: known.and_then(|k| k.anchor),
            });
        }
        presented
    }

    /// Candidate anchors: configured certificates named as issuer by any presented certificate.
    fn candidate_anchors(
        &self,
        leaf_issuer: &[u8],
        intermediates: &[Presented<'_>],
    ) -> Vec<&Arc<TrustedCert>> {
        let mut candidates: Vec<&Arc<TrustedCert>> = Vec::new();
        let issuers = std::iter::once(leaf_issuer).chain(intermediates.iter().map(|p| p.issuer));
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
        candidates
    }

    /// The path through the verified-link cache, if the presented intermediates allow one: each
    /// presented CA certificate whose link upward is cached is offered to webpki as an anchor, so
    /// webpki checks the leaf (signature, validity, EKU) and any presented link not cached; the
    /// path then continues along cached links, each of whose certificates must be presented in
    /// this handshake too. Cached certificates are not parsed again (their facts are cached).
    /// `None`: no cached link applies, take the full path.
    fn cached_path<'p>(
        &self,
        ee: &webpki::EndEntityCert<'_>,
        now: UnixTime,
        purpose: Purpose<'_>,
        presented: &[Offered<'p>],
    ) -> Option<(Vec<Presented<'p>>, CertId)> {
        let lp = purpose.link_purpose();
        let links: Vec<Option<Link>> = presented
            .iter()
            .map(|p| self.links.get(&p.id, lp))
            .collect();
        if links.iter().all(Option::is_none) {
            return None;
        }
        let mut anchors: Vec<(usize, Arc<TrustAnchor<'static>>)> = Vec::new();
        let mut others: Vec<CertificateDer<'_>> = Vec::new();
        // Uncached certificates are parsed as on the full path, so a malformed one is refused
        // whether or not the cache is warm (the verdict must not depend on it).
        let mut parsed: Vec<Presented<'p>> = Vec::new();
        for (i, (p, link)) in presented.iter().zip(&links).enumerate() {
            let cert = CertificateDer::from(p.der);
            match link {
                Some(_) => {
                    // The memoised anchor is `anchor_from_trusted_cert` of these same bytes.
                    let anchor = match &p.anchor {
                        Some(a) => Arc::clone(a),
                        None => Arc::new(webpki::anchor_from_trusted_cert(&cert).ok()?.to_owned()),
                    };
                    anchors.push((i, anchor));
                }
                None => {
                    parsed.push(Presented::parse(p.der, p.id)?);
                    others.push(cert);
                }
            }
        }
        let trust: Vec<TrustAnchor<'_>> = anchors.iter().map(|(_, a)| borrowed_anchor(a)).collect();
        let path = ee
            .verify_for_usage(
                ALGORITHMS,
                &trust,
                &others,
                now,
                purpose.usage(),
                None,
                None,
            )
            .ok()?;
        // Presented links below the first cached certificate were verified just now.
        let used: Vec<Presented<'p>> = path
            .intermediate_certificates()
            .map(|c| {
                let i = parsed.iter().position(|p| p.der == c.der().as_ref())?;
                Some(parsed.swap_remove(i))
            })
            .collect::<Option<Vec<_>>>()?;
        let a = path.anchor();
        let (top, _) = anchors.iter().find(|(_, b)| {
            b.subject.as_ref() == a.subject.as_ref()
                && b.subject_public_key_info.as_ref() == a.subject_public_key_info.as_ref()
        })?;
        self.climb_cached(presented, &links, *top, used)
    }

    /// Up the cached links from `presented[top]` to the configured chain, appended to `used`;
    /// every step must be presented now, and none twice.
    fn climb_cached<'p>(
        &self,
        presented: &[Offered<'p>],
        links: &[Option<Link>],
        top: usize,
        mut used: Vec<Presented<'p>>,
    ) -> Option<(Vec<Presented<'p>>, CertId)> {
        let mut cur = top;
        for _ in 0..=MAX_PRESENTED_DEPTH {
            let Offered { der, id, .. } = presented.get(cur)?;
            let link = links.get(cur).copied().flatten()?;
            if used.iter().any(|p| p.id == *id) {
                return None;
            }
            used.push(Presented::from_facts(der, *id, link.facts));
            match link.parent {
                Parent::Configured(anchor) => {
                    self.links.hit();
                    return Some((used, anchor));
                }
                Parent::Presented(next) => {
                    cur = presented.iter().position(|p| p.id == next)?;
                }
            }
        }
        None
    }

    /// After a full validation accepted the device: remember the links among the presented CA
    /// certificates of its path (never the leaf), unless a name constraint applies anywhere on it.
    fn remember_links(
        &self,
        purpose: Purpose<'_>,
        intermediates: &[Presented<'_>],
        used: &[usize],
        anchor: CertId,
    ) {
        let path: Vec<&Presented<'_>> = used.iter().filter_map(|&i| intermediates.get(i)).collect();
        if path.is_empty()
            || path.len() != used.len()
            || path.iter().any(|p| p.name_constrained)
            || self.name_constrained_from(anchor)
        {
            return;
        }
        for (k, p) in path.iter().enumerate() {
            let parent = match path.get(k + 1) {
                Some(next) => Parent::Presented(next.id),
                None => Parent::Configured(anchor),
            };
            self.links.remember(
                p.id,
                purpose.link_purpose(),
                Link {
                    parent,
                    facts: p.facts(),
                },
            );
            self.links.learn_presented(p.der, p.id);
        }
    }

    /// Does any configured certificate from `id` up carry name constraints?
    fn name_constrained_from(&self, id: CertId) -> bool {
        let mut next = Some(id);
        for _ in 0..MAX_CONFIGURED_DEPTH {
            let Some(slot) = next.and_then(|id| self.certs.get(&id)) else {
                return false;
            };
            if slot.cert.anchor.name_constraints.is_some() {
                return true;
            }
            next = slot.parent;
        }
        true
    }

    /// Everything after the presented part of the path is known: presented CAs checked at `now`,
    /// the configured chain walked from the anchor, then selection, lists and the leaf policy.
    fn finish(
        &self,
        now: UnixTime,
        leaf_der: &CertificateDer<'_>,
        (leaf_cn, purpose): (String, Purpose<'_>),
        leaf_validity: Option<RejectReason>,
        (used, anchor): (Vec<&Presented<'_>>, CertId),
    ) -> Result<Accepted, RejectReason> {
        let mut chain: Vec<CertificateDer<'static>> = Vec::with_capacity(used.len() + 4);
        // Identities of the CA part of the verified chain (the leaf is never a lead candidate, so
        // its hash is not computed here).
        let mut ids: Vec<CertId> = Vec::with_capacity(used.len() + 4);
        chain.push(leaf_der.clone().into_owned());
        for (below, p) in used.into_iter().enumerate() {
            if !p.is_ca || p.lacks_cert_sign {
                return Err(RejectReason::NotCa);
            }
            // webpki checks this on a full path; a path through cached links needs it here.
            if p.path_len.is_some_and(|limit| below > limit as usize) {
                return Err(RejectReason::PathLen);
            }
            if let Some(r) = p.validity_at(now) {
                return Err(r);
            }
            ids.push(p.id);
            chain.push(CertificateDer::from(p.der.to_vec()));
        }
        self.walk_configured(now, anchor, &mut chain, &mut ids)?;
        let (group, common_name, expired_leaf_allowed) =
            self.select(&ids, (leaf_cn, purpose), leaf_validity)?;
        Ok(Accepted {
            group,
            common_name,
            chain,
            expired_leaf_allowed,
        })
    }

    /// The configured chain from `anchor` up, each certificate valid at `now` and within its
    /// pathLenConstraint, appended to `chain` and `ids`.
    fn walk_configured(
        &self,
        now: UnixTime,
        anchor: CertId,
        chain: &mut Vec<CertificateDer<'static>>,
        ids: &mut Vec<CertId>,
    ) -> Result<(), RejectReason> {
        let mut next = Some(anchor);
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
        Ok(())
    }

    /// Selection: the first lead on the walk (leaf-most intermediate first, up to the root)
    /// decides; then its kind, its allow / deny lists and its expired-leaf policy. The group, the
    /// name the lists judged, and whether an expired leaf was let in.
    fn select(
        &self,
        ids: &[CertId],
        (leaf_cn, purpose): (String, Purpose<'_>),
        leaf_validity: Option<RejectReason>,
    ) -> Result<(uuid::Uuid, String, bool), RejectReason> {
        let group_id = ids
            .iter()
            .find_map(|id| self.leads.get(id))
            .ok_or(RejectReason::NoGroup)?;
        let group = self.groups.get(group_id).ok_or(RejectReason::NoGroup)?;
        // A group of the other kind admits nobody here.
        if group.def.attestation != purpose.attestation() {
            return Err(RejectReason::NoGroup);
        }
        let name = match purpose {
            Purpose::Tls => leaf_cn,
            Purpose::Ek { registration_id } => registration_id.to_owned(),
        };
        if group.deny.contains(&name) {
            return Err(RejectReason::Denied);
        }
        if !group.allow.is_empty() && !group.allow.contains(&name) {
            return Err(RejectReason::NotAllowed);
        }
        let expired_leaf_allowed = match leaf_validity {
            None => false,
            Some(_) if group.def.expired_certificates_allowed => true,
            Some(r) => return Err(r),
        };
        Ok((*group_id, name, expired_leaf_allowed))
    }
}

/// The leaf's facts the verdict needs, parsed once: its names, its validity window and where now
/// falls in it, and webpki's view of it.
struct Leaf<'a> {
    cn: String,
    cert: X509Certificate<'a>,
    not_before: u64,
    not_after: u64,
    /// `Some` when now is outside the leaf's window (the selected group decides whether it may).
    validity: Option<RejectReason>,
    ee: webpki::EndEntityCert<'a>,
}

impl<'a> Leaf<'a> {
    /// Only the leaf's names and validity are read here, so its extensions are not parsed into
    /// their contents (x509-parser never fails a certificate over an extension's contents, only
    /// over the extensions' framing, which it still parses).
    fn parse(leaf_der: &'a CertificateDer<'_>, now: UnixTime) -> Result<Self, RejectReason> {
        let (tail, leaf) = X509CertificateParser::new()
            .with_deep_parse_extensions(false)
            .parse(leaf_der.as_ref())
            .map_err(|_| RejectReason::Malformed)?;
        if !tail.is_empty() {
            return Err(RejectReason::Malformed);
        }
        let not_before = clamp_time(leaf.validity().not_before.timestamp());
        let not_after = clamp_time(leaf.validity().not_after.timestamp());
        let validity = if now.as_secs() < not_before {
            Some(RejectReason::NotYetValid)
        } else if now.as_secs() > not_after {
            Some(RejectReason::Expired)
        } else {
            None
        };
        let ee = webpki::EndEntityCert::try_from(leaf_der).map_err(|_| RejectReason::Malformed)?;
        Ok(Leaf {
            cn: common_name(&leaf).unwrap_or_default(),
            cert: leaf,
            not_before,
            not_after,
            validity,
            ee,
        })
    }

    /// The leaf's own validity is the selected group's business (expired_certificates_allowed),
    /// so the path is validated at a time inside the leaf's window; CA validity is then checked
    /// against `now` by `finish`.
    fn path_time(&self, now: UnixTime) -> UnixTime {
        match self.validity {
            None => now,
            Some(RejectReason::NotYetValid) => {
                UnixTime::since_unix_epoch(std::time::Duration::from_secs(self.not_before))
            }
            Some(_) => UnixTime::since_unix_epoch(std::time::Duration::from_secs(self.not_after)),
        }
    }
}

/// One full-path validation: webpki with every candidate anchor and the presented intermediates.
struct FullPath<'r, 'a> {
    ee: &'r webpki::EndEntityCert<'a>,
    path_time: UnixTime,
    purpose: Purpose<'r>,
    intermediates: &'r [Presented<'r>],
    candidates: &'r [&'r Arc<TrustedCert>],
}

impl FullPath<'_, '_> {
    /// The positions (in `intermediates`) of the certificates the path used and the configured
    /// anchor it ended at (of equal ones, one valid at `now` first); `Ok(None)` when webpki's
    /// path cannot be mapped back to them.
    fn verify(&self, now: UnixTime) -> Result<Option<(Vec<usize>, CertId)>, webpki::Error> {
        let anchors: Vec<TrustAnchor<'_>> = self.candidates.iter().map(|c| c.anchor()).collect();
        let intermediate_ders: Vec<CertificateDer<'_>> = self
            .intermediates
            .iter()
            .map(|p| CertificateDer::from(p.der))
            .collect();
        let path = self.ee.verify_for_usage(
            ALGORITHMS,
            &anchors,
            &intermediate_ders,
            self.path_time,
            self.purpose.usage(),
            None,
            None,
        )?;
        let used = path
            .intermediate_certificates()
            .map(|c| {
                self.intermediates
                    .iter()
                    .position(|p| p.der == c.der().as_ref())
            })
            .collect::<Option<Vec<usize>>>();
        let a = path.anchor();
        let anchor = self
            .candidates
            .iter()
            .filter(|c| {
                c.anchor.subject.as_ref() == a.subject.as_ref()
                    && c.anchor.subject_public_key_info.as_ref()
                        == a.subject_public_key_info.as_ref()
            })
            .min_by_key(|c| c.validity_at(now).is_some())
            .map(|c| c.id);
        Ok(used.zip(anchor))
    }
}

/// Longest run of presented intermediates the split path walks (webpki's own limit is 6).
const MAX_PRESENTED_DEPTH: usize = 6;

/// The path of a leaf that is outside its validity window under CAs that were not valid at any
/// time inside it. webpki checks the leaf (at a time inside its window), its EKU and its signature,
/// with every candidate issuer offered as an anchor; the links above the leaf's issuer are then
/// checked one by one (issuer name, CA, keyCertSign, pathLen, signature); validity of those CAs is
/// checked against now by `finish`.
fn split_path<'a>(
    ee: &webpki::EndEntityCert<'_>,
    path_time: UnixTime,
    purpose: Purpose<'_>,
    candidates: &[&Arc<TrustedCert>],
    intermediates: &'a [Presented<'a>],
) -> Result<(Vec<&'a Presented<'a>>, CertId), RejectReason> {
    let presented_anchors = intermediates
        .iter()
        .map(|p| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(p.der))
                .map(|a| a.to_owned())
                .map_err(|_| RejectReason::Malformed)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let anchors: Vec<TrustAnchor<'_>> = candidates
        .iter()
        .map(|c| c.anchor())
        .chain(presented_anchors.iter().cloned())
        .collect();
    let path = ee
        .verify_for_usage(
            ALGORITHMS,
            &anchors,
            &[],
            path_time,
            purpose.usage(),
            None,
            None,
        )
        .map_err(|e| RejectReason::from_webpki(&e))?;
    let a = path.anchor();
    let same = |b: &TrustAnchor<'_>| {
        b.subject.as_ref() == a.subject.as_ref()
            && b.subject_public_key_info.as_ref() == a.subject_public_key_info.as_ref()
    };
    if let Some(c) = candidates.iter().find(|c| same(&c.anchor)) {
        return Ok((Vec::new(), c.id));
    }
    let first = presented_anchors
        .iter()
        .position(same)
        .and_then(|i| intermediates.get(i))
        .ok_or(RejectReason::NoPath)?;
    climb_presented(first, candidates, intermediates)
}

/// The presented links above the leaf's issuer `first`, checked one by one (CA, keyCertSign,
/// pathLen, the issuer's signature) until a configured candidate signs the top one.
fn climb_presented<'a>(
    first: &'a Presented<'a>,
    candidates: &[&Arc<TrustedCert>],
    intermediates: &'a [Presented<'a>],
) -> Result<(Vec<&'a Presented<'a>>, CertId), RejectReason> {
    let mut path: Vec<&Presented<'_>> = vec![first];
    loop {
        let below = path.len() - 1;
        let Some(cur) = path.last().copied() else {
            return Err(RejectReason::NoPath);
        };
        if !cur.is_ca || cur.lacks_cert_sign {
            return Err(RejectReason::NotCa);
        }
        if cur.path_len.is_some_and(|limit| below > limit as usize) {
            return Err(RejectReason::PathLen);
        }
        let mut failure = RejectReason::NoPath;
        for c in candidates.iter().filter(|c| *c.subject == *cur.issuer) {
            match verify_signed(&c.der, cur.der) {
                Ok(()) => return Ok((path, c.id)),
                Err(_) => failure = RejectReason::BadSignature,
            }
        }
        if path.len() >= MAX_PRESENTED_DEPTH {
            return Err(failure);
        }
        let next = intermediates.iter().find(|p| {
            p.subject == cur.issuer
                && !path.iter().any(|q| q.der == p.der)
                && verify_signed(p.der, cur.der).is_ok()
        });
        match next {
            Some(p) => path.push(p),
            None => {
                let named = intermediates.iter().any(|p| p.subject == cur.issuer);
                return Err(if named {
                    RejectReason::BadSignature
                } else {
                    failure
                });
            }
        }
    }
}
