//! The enrollment group model and its validation: a group is checked completely (PEM, chain that
//! verifies against itself up to a self-signed root, lead certificate) before it can reach the arena.

use std::collections::HashSet;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cert::{CertId, TrustedCert};

/// Which certificate of the group chain represents the group during selection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LeadSelector {
    /// Position in the chain, 0 = leaf-most.
    Index(usize),
    /// `sha256:<hex>` of the DER, or a CN that is unique within the chain.
    Name(String),
}

impl Default for LeadSelector {
    fn default() -> Self {
        LeadSelector::Index(0)
    }
}

/// How the devices of a group attest; the group's chain is searched for one kind only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attestation {
    /// Manufacturer certificate chains presented in the TLS handshake.
    #[default]
    X509,
    /// TPM endorsement key certificates chaining to a TPM manufacturer CA (the TPM nonce
    /// challenge); configured as `[[tpm_enrollment_group]]`.
    Tpm,
}

/// An enrollment group as an operator defines it (config file, admin API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentGroup {
    /// Stable identity.
    pub id: Uuid,
    /// Human name.
    pub name: String,
    /// Owner of the devices provisioned through this group (a UUID or any string).
    pub owner: String,
    /// The configured chain, leaf-most first, ending in a self-signed root.
    pub chain: Vec<CertificateDer<'static>>,
    /// The lead certificate.
    pub lead: LeadSelector,
    /// Accept device leaves outside their validity window (CA certificates must still be valid).
    pub expired_certificates_allowed: bool,
    /// Device CNs admitted; empty admits every CN.
    pub allow_common_names: Vec<String>,
    /// Device CNs refused; wins over the allow list.
    pub deny_common_names: Vec<String>,
    /// Hubs the devices of this group are provisioned to.
    pub hub_ids: Vec<Uuid>,
    /// Optional pre-shared key handed to devices (at least 16 bytes).
    pub pre_shared_key: Option<String>,
    /// What the chain admits: TLS device certificates or TPM EK certificates.
    pub attestation: Attestation,
}

impl EnrollmentGroup {
    /// A group with a fresh id, lead certificate 0, no lists and no hubs.
    pub fn new(
        name: impl Into<String>,
        owner: impl Into<String>,
        chain: Vec<CertificateDer<'static>>,
    ) -> Self {
        Self {
            id: Uuid::new_v4(),
            name: name.into(),
            owner: owner.into(),
            chain,
            lead: LeadSelector::Index(0),
            expired_certificates_allowed: false,
            allow_common_names: Vec::new(),
            deny_common_names: Vec::new(),
            hub_ids: Vec::new(),
            pre_shared_key: None,
            attestation: Attestation::X509,
        }
    }
}

/// What is wrong with a group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupErrorKind {
    /// The chain is empty.
    #[error("certificate_chain is empty")]
    EmptyChain,
    /// A certificate does not parse.
    #[error("certificate #{index} does not parse: {reason}")]
    BadCertificate {
        /// 0-based position in the chain.
        index: usize,
        /// Parser message.
        reason: String,
    },
    /// A certificate of the chain is not a CA.
    #[error(
        "certificate #{index} ({name}) is not a CA certificate (needs cA=TRUE and keyCertSign)"
    )]
    NotCa {
        /// 0-based position.
        index: usize,
        /// Its CN.
        name: String,
    },
    /// A link does not verify.
    #[error("certificate #{index} ({name}) is not signed by certificate #{} ({issuer}): {reason}", index + 1)]
    BrokenLink {
        /// 0-based position of the child.
        index: usize,
        /// Child CN.
        name: String,
        /// Parent CN.
        issuer: String,
        /// Why.
        reason: String,
    },
    /// The last certificate is not a self-signed root.
    #[error(
        "the chain does not end in a self-signed root: certificate #{index} ({name}) {reason}"
    )]
    NoRoot {
        /// 0-based position of the last certificate.
        index: usize,
        /// Its CN.
        name: String,
        /// Why.
        reason: String,
    },
    /// A pathLenConstraint in the chain is already exceeded by the chain itself.
    #[error("certificate #{index} ({name}) has pathLenConstraint {limit} but {below} CA certificates below it in the chain")]
    PathLen {
        /// 0-based position.
        index: usize,
        /// Its CN.
        name: String,
        /// The constraint.
        limit: u32,
        /// CA certificates below it.
        below: usize,
    },
    /// The same certificate twice in one chain.
    #[error("certificate #{index} appears twice in the chain")]
    DuplicateInChain {
        /// 0-based position of the second occurrence.
        index: usize,
    },
    /// The lead selector does not name exactly one certificate of the chain.
    #[error("lead_certificate {selector}: {reason}")]
    BadLead {
        /// The selector as configured.
        selector: String,
        /// Why.
        reason: String,
    },
    /// Another group already has this lead certificate.
    #[error("lead certificate {lead} is already the lead certificate of group {other}")]
    DuplicateLead {
        /// The lead's identity.
        lead: CertId,
        /// The group that has it.
        other: Uuid,
    },
    /// The same certificate is configured under two different issuers.
    #[error("certificate {cert} ({name}) is configured with issuer {here} here but {there} in another group; cross-signed chains are not supported")]
    ConflictingIssuer {
        /// The certificate.
        cert: CertId,
        /// Its CN.
        name: String,
        /// Issuer in this group.
        here: String,
        /// Issuer elsewhere.
        there: String,
    },
    /// Name or owner empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// Pre-shared key shorter than 16 bytes.
    #[error("pre_shared_key must be at least 16 bytes")]
    ShortKey,
    /// A group id that is not a UUID (config and API input).
    #[error("id {0:?} is not a UUID")]
    BadId(String),
    /// Another group in the same batch has the same id.
    #[error("id is used by two groups")]
    DuplicateId,
}

/// A refused group: which one and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("enrollment group {group}: {kind}")]
pub struct GroupError {
    /// `"<name>" (<id>)` or whatever identifies the group best.
    pub group: String,
    /// Why.
    pub kind: GroupErrorKind,
}

impl GroupError {
    /// An error about the group `def`.
    pub fn new(def: &EnrollmentGroup, kind: GroupErrorKind) -> Self {
        Self {
            group: format!("{:?} ({})", def.name, def.id),
            kind,
        }
    }
}

/// A group that passed validation, with its certificates parsed for the arena.
#[derive(Debug)]
pub struct ValidatedGroup {
    /// The definition as given.
    pub def: EnrollmentGroup,
    /// The chain, parsed, leaf-most first.
    pub certs: Vec<Arc<TrustedCert>>,
    /// Index of the lead certificate in `certs`.
    pub lead_index: usize,
    /// Allow list as a set.
    pub allow: HashSet<String>,
    /// Deny list as a set.
    pub deny: HashSet<String>,
}

impl ValidatedGroup {
    /// The lead certificate's identity.
    pub fn lead(&self) -> CertId {
        self.certs[self.lead_index].id
    }

    /// The issuer of `certs[i]` in this chain (`None` for the root).
    pub fn parent_of(&self, i: usize) -> Option<CertId> {
        self.certs.get(i + 1).map(|c| c.id)
    }
}

/// A certificate's CN for messages.
fn cn_or_unnamed(c: &TrustedCert) -> String {
    c.common_name.clone().unwrap_or_else(|| "no CN".into())
}

/// Remembers which chain links were already verified, so bulk loads that share CAs verify each
/// link once. `parent == None` stands for a root's self-signature.
pub trait LinkMemo: Sync {
    /// Was `child` already verified as signed by `parent`?
    fn known(&self, child: CertId, parent: Option<CertId>) -> bool;
    /// Record a verified link.
    fn verified(&self, child: CertId, parent: Option<CertId>);
    /// An already parsed certificate with this identity, so groups that share CAs share one copy.
    fn parsed(&self, id: CertId) -> Option<Arc<TrustedCert>>;
    /// Record a parsed certificate.
    fn remember(&self, cert: &Arc<TrustedCert>);
}

/// Validate a group definition, skipping the signature checks of links `memo` already knows.
pub fn validate(def: EnrollmentGroup, memo: &dyn LinkMemo) -> Result<ValidatedGroup, GroupError> {
    let checked = check_fields(&def).and_then(|()| {
        let certs = parse_chain(&def, memo)?;
        verify_links(&certs, memo)?;
        verify_root(&certs, memo)?;
        check_path_len(&certs)?;
        let lead_index = lead(&def.lead, &certs)?;
        Ok((certs, lead_index))
    });
    let (certs, lead_index) = checked.map_err(|kind| GroupError::new(&def, kind))?;
    let allow = def.allow_common_names.iter().cloned().collect();
    let deny = def.deny_common_names.iter().cloned().collect();
    Ok(ValidatedGroup {
        def,
        certs,
        lead_index,
        allow,
        deny,
    })
}

/// The fields that must not be empty (name, owner, chain) or too short (the PSK).
fn check_fields(def: &EnrollmentGroup) -> Result<(), GroupErrorKind> {
    if def.name.trim().is_empty() {
        return Err(GroupErrorKind::Empty("name"));
    }
    if def.owner.trim().is_empty() {
        return Err(GroupErrorKind::Empty("owner"));
    }
    if def.pre_shared_key.as_ref().is_some_and(|k| k.len() < 16) {
        return Err(GroupErrorKind::ShortKey);
    }
    if def.chain.is_empty() {
        return Err(GroupErrorKind::EmptyChain);
    }
    Ok(())
}

/// Every chain certificate parsed (or shared from `memo`), each a CA and none twice.
fn parse_chain(
    def: &EnrollmentGroup,
    memo: &dyn LinkMemo,
) -> Result<Vec<Arc<TrustedCert>>, GroupErrorKind> {
    let mut certs = Vec::with_capacity(def.chain.len());
    for (index, der) in def.chain.iter().enumerate() {
        let cert = match memo.parsed(CertId::of(der)) {
            Some(cert) => cert,
            None => {
                let cert = Arc::new(
                    TrustedCert::parse(der.clone())
                        .map_err(|reason| GroupErrorKind::BadCertificate { index, reason })?,
                );
                memo.remember(&cert);
                cert
            }
        };
        if certs.iter().any(|c: &Arc<TrustedCert>| c.id == cert.id) {
            return Err(GroupErrorKind::DuplicateInChain { index });
        }
        if !cert.is_ca || cert.lacks_cert_sign {
            return Err(GroupErrorKind::NotCa {
                index,
                name: cn_or_unnamed(&cert),
            });
        }
        certs.push(cert);
    }
    Ok(certs)
}

/// Each certificate is issued and signed by the next one (links `memo` knows are not checked).
fn verify_links(certs: &[Arc<TrustedCert>], memo: &dyn LinkMemo) -> Result<(), GroupErrorKind> {
    for (index, pair) in certs.windows(2).enumerate() {
        let (child, parent) = (&pair[0], &pair[1]);
        if memo.known(child.id, Some(parent.id)) {
            continue;
        }
        let broken = |reason: String| GroupErrorKind::BrokenLink {
            index,
            name: cn_or_unnamed(child),
            issuer: cn_or_unnamed(parent),
            reason,
        };
        if child.issuer != parent.subject {
            return Err(broken(
                "issuer name differs from the next certificate's subject".into(),
            ));
        }
        parent.signed(&child.der).map_err(broken)?;
        memo.verified(child.id, Some(parent.id));
    }
    Ok(())
}

/// The last certificate is a root: self-issued and self-signed.
fn verify_root(certs: &[Arc<TrustedCert>], memo: &dyn LinkMemo) -> Result<(), GroupErrorKind> {
    let last = certs.len() - 1;
    let root = &certs[last];
    if memo.known(root.id, None) {
        return Ok(());
    }
    let no_root = |reason: String| GroupErrorKind::NoRoot {
        index: last,
        name: cn_or_unnamed(root),
        reason,
    };
    if !root.self_issued {
        return Err(no_root("is not self-issued".into()));
    }
    root.signed(&root.der)
        .map_err(|e| no_root(format!("does not verify its own signature: {e}")))?;
    memo.verified(root.id, None);
    Ok(())
}

/// No certificate has more non-self-issued CAs below it than its pathLenConstraint allows.
fn check_path_len(certs: &[Arc<TrustedCert>]) -> Result<(), GroupErrorKind> {
    for (index, cert) in certs.iter().enumerate() {
        if let Some(limit) = cert.path_len {
            let below = certs[..index].iter().filter(|c| !c.self_issued).count();
            if below > limit as usize {
                return Err(GroupErrorKind::PathLen {
                    index,
                    name: cn_or_unnamed(cert),
                    limit,
                    below,
                });
            }
        }
    }
    Ok(())
}

/// The lead certificate's index, or why the selector names none.
fn lead(sel: &LeadSelector, certs: &[Arc<TrustedCert>]) -> Result<usize, GroupErrorKind> {
    resolve_lead(sel, certs).map_err(|reason| GroupErrorKind::BadLead {
        selector: match sel {
            LeadSelector::Index(i) => i.to_string(),
            LeadSelector::Name(s) => format!("{s:?}"),
        },
        reason,
    })
}

/// The index `sel` names in the chain, or why it names none (in words).
fn resolve_lead(sel: &LeadSelector, certs: &[Arc<TrustedCert>]) -> Result<usize, String> {
    match sel {
        LeadSelector::Index(i) if *i < certs.len() => Ok(*i),
        LeadSelector::Index(i) => Err(format!(
            "index {i} is past the end of a chain of {} certificates",
            certs.len()
        )),
        LeadSelector::Name(s) if s.starts_with("sha256:") => {
            let id = CertId::parse(s).ok_or("not a valid sha256:<64 hex digits> fingerprint")?;
            certs
                .iter()
                .position(|c| c.id == id)
                .ok_or_else(|| "no certificate of the chain has this fingerprint".into())
        }
        LeadSelector::Name(cn) => {
            let mut hits = certs
                .iter()
                .enumerate()
                .filter(|(_, c)| c.common_name.as_deref() == Some(cn.as_str()));
            match (hits.next(), hits.next()) {
                (Some((i, _)), None) => Ok(i),
                (None, _) => Err("no certificate of the chain has this CN".into()),
                (Some(_), Some(_)) => Err("several certificates of the chain have this CN; use an index or a sha256: fingerprint".into()),
            }
        }
    }
}
