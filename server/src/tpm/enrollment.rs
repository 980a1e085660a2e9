//! Individual TPM enrollments (one EK public key each, found by registration id) and the check
//! that an EK certificate certifies the EK a device presents. TPM enrollment *groups* are ordinary
//! enrollment groups of kind [`Attestation::Tpm`](crate::enrollment::Attestation) in the arena.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use uuid::Uuid;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey as X509PublicKey;

use super::make_credential::check_storage_key;
use super::marshal::{Public, PublicKey};
use crate::enrollment::{Attestation, EnrollmentGroup};

/// One `[[tpm_enrollment]]` table (and the admin API's JSON for it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TpmEnrollmentConfig {
    /// UUID of the enrollment (the provisioning records' group id).
    pub id: String,
    /// Human name.
    pub name: String,
    /// Owner of the device (a UUID or any string), as for a group.
    pub owner: String,
    /// The EK's marshalled TPM2B_PUBLIC, standard base64 (as Azure DPS takes `endorsementKey`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement_key: Option<String>,
    /// A file holding the marshalled TPM2B_PUBLIC (`tpm2_readpublic -o`), relative to the config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endorsement_key_file: Option<String>,
    /// The expected registration id; refused when it is not the EK's (catches a wrong file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    /// Hubs (UUIDs).
    #[serde(default)]
    pub hub_ids: Vec<String>,
    /// Optional pre-shared key (at least 16 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_shared_key: Option<String>,
}

/// Why an individual TPM enrollment is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TPM enrollment {enrollment}: {reason}")]
pub struct TpmEnrollmentError {
    /// `"<name>" (<id>)`.
    pub enrollment: String,
    /// Why.
    pub reason: String,
}

/// An individual TPM enrollment: the EK it admits and what its device is provisioned with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmEnrollment {
    /// Registration id of the EK.
    pub registration_id: String,
    /// The EK's marshalled TPM2B_PUBLIC.
    pub ek_public: Vec<u8>,
    /// Provisioning parameters (id, name, owner, hubs, pre-shared key) in the shape the
    /// provisioner takes; its chain is empty and its kind is TPM.
    pub def: EnrollmentGroup,
}

impl TpmEnrollmentConfig {
    /// Resolve into the model; `base` resolves `endorsement_key_file`.
    pub fn resolve(&self, base: &Path) -> Result<TpmEnrollment, TpmEnrollmentError> {
        let err = |reason: String| TpmEnrollmentError {
            enrollment: format!("{:?} ({})", self.name, self.id),
            reason,
        };
        let id = Uuid::parse_str(&self.id).map_err(|_| err("id is not a UUID".into()))?;
        if self.name.trim().is_empty() || self.owner.trim().is_empty() {
            return Err(err("name and owner must not be empty".into()));
        }
        if self.pre_shared_key.as_ref().is_some_and(|k| k.len() < 16) {
            return Err(err("pre_shared_key must be at least 16 bytes".into()));
        }
        let hub_ids = self
            .hub_ids
            .iter()
            .map(|h| Uuid::parse_str(h).map_err(|_| err(format!("hub id {h:?} is not a UUID"))))
            .collect::<Result<Vec<_>, _>>()?;
        let ek_public = match (&self.endorsement_key, &self.endorsement_key_file) {
            (Some(b64), None) => base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .map_err(|e| err(format!("endorsement_key is not base64: {e}")))?,
            (None, Some(file)) => {
                let path = base.join(file);
                std::fs::read(&path).map_err(|e| err(format!("{}: {e}", path.display())))?
            }
            _ => {
                return Err(err(
                    "exactly one of endorsement_key and endorsement_key_file is required".into(),
                ))
            }
        };
        let ek = Public::from_tpm2b(&ek_public)
            .map_err(|e| err(format!("endorsement key is not a TPM2B_PUBLIC: {e}")))?;
        check_storage_key(&ek).map_err(|e| err(e.to_string()))?;
        let registration_id = super::registration_id(&ek_public);
        if let Some(expected) = &self.registration_id {
            if !expected.eq_ignore_ascii_case(&registration_id) {
                return Err(err(format!(
                    "registration_id {expected:?} is not the EK's ({registration_id})"
                )));
            }
        }
        let mut def = EnrollmentGroup::new(self.name.clone(), self.owner.clone(), Vec::new());
        def.id = id;
        def.hub_ids = hub_ids;
        def.pre_shared_key = self.pre_shared_key.clone();
        def.attestation = Attestation::Tpm;
        Ok(TpmEnrollment {
            registration_id,
            ek_public,
            def,
        })
    }
}

impl TpmEnrollment {
    /// The config (and admin JSON) form, with the EK inline.
    pub fn to_config(&self) -> TpmEnrollmentConfig {
        TpmEnrollmentConfig {
            id: self.def.id.to_string(),
            name: self.def.name.clone(),
            owner: self.def.owner.clone(),
            endorsement_key: Some(
                base64::engine::general_purpose::STANDARD.encode(&self.ek_public),
            ),
            endorsement_key_file: None,
            registration_id: Some(self.registration_id.clone()),
            hub_ids: self.def.hub_ids.iter().map(Uuid::to_string).collect(),
            pre_shared_key: self.def.pre_shared_key.clone(),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Index {
    by_registration: HashMap<String, Arc<TpmEnrollment>>,
    by_id: HashMap<Uuid, Arc<TpmEnrollment>>,
}

/// The published individual TPM enrollments: lock-free reads by registration id or id; writers
/// are serialized and swap in a new index.
#[derive(Debug, Default)]
pub struct TpmEnrollments {
    current: ArcSwap<Index>,
    writer: Mutex<()>,
}

impl TpmEnrollments {
    /// None.
    pub fn new() -> Self {
        Self::default()
    }

    /// Exactly `all`; two enrollments with the same id or the same EK are refused.
    pub fn with(all: Vec<TpmEnrollment>) -> Result<Self, TpmEnrollmentError> {
        let me = Self::new();
        me.replace_all(all)?;
        Ok(me)
    }

    /// The enrollment of this registration id.
    pub fn get(&self, registration_id: &str) -> Option<Arc<TpmEnrollment>> {
        self.current
            .load()
            .by_registration
            .get(registration_id)
            .cloned()
    }

    /// The enrollment with this id.
    pub fn by_id(&self, id: &Uuid) -> Option<Arc<TpmEnrollment>> {
        self.current.load().by_id.get(id).cloned()
    }

    /// Every enrollment (unordered).
    pub fn list(&self) -> Vec<Arc<TpmEnrollment>> {
        self.current.load().by_id.values().cloned().collect()
    }

    /// Number of enrollments.
    pub fn len(&self) -> usize {
        self.current.load().by_id.len()
    }

    /// No enrollment at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replace every enrollment at once (all or nothing).
    pub fn replace_all(&self, all: Vec<TpmEnrollment>) -> Result<(), TpmEnrollmentError> {
        let mut next = Index::default();
        for e in all {
            insert(&mut next, Arc::new(e))?;
        }
        let _w = self.lock();
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Insert, or replace the enrollment with the same id.
    pub fn upsert(&self, e: TpmEnrollment) -> Result<(), TpmEnrollmentError> {
        let _w = self.lock();
        let mut next = (**self.current.load()).clone();
        if let Some(old) = next.by_id.remove(&e.def.id) {
            next.by_registration.remove(&old.registration_id);
        }
        insert(&mut next, Arc::new(e))?;
        self.current.store(Arc::new(next));
        Ok(())
    }

    /// Remove by id; `false` if there was none.
    pub fn remove(&self, id: &Uuid) -> bool {
        let _w = self.lock();
        let mut next = (**self.current.load()).clone();
        let Some(old) = next.by_id.remove(id) else {
            return false;
        };
        next.by_registration.remove(&old.registration_id);
        self.current.store(Arc::new(next));
        true
    }
}

fn insert(index: &mut Index, e: Arc<TpmEnrollment>) -> Result<(), TpmEnrollmentError> {
    let err = |reason: String| TpmEnrollmentError {
        enrollment: format!("{:?} ({})", e.def.name, e.def.id),
        reason,
    };
    if index.by_id.contains_key(&e.def.id) {
        return Err(err("id is used by two TPM enrollments".into()));
    }
    if let Some(other) = index.by_registration.get(&e.registration_id) {
        return Err(err(format!(
            "EK {} is already enrolled by {}",
            e.registration_id, other.def.id
        )));
    }
    index
        .by_registration
        .insert(e.registration_id.clone(), e.clone());
    index.by_id.insert(e.def.id, e);
    Ok(())
}

/// Does the DER certificate `cert` certify exactly the key of `ek`?
pub fn certificate_certifies(cert: &[u8], ek: &Public) -> bool {
    let Ok((rest, cert)) = X509Certificate::from_der(cert) else {
        return false;
    };
    if !rest.is_empty() {
        return false;
    }
    let Ok(key) = cert.public_key().parsed() else {
        return false;
    };
    match (&ek.key, key) {
        (
            PublicKey::Rsa {
                exponent, modulus, ..
            },
            X509PublicKey::RSA(rsa),
        ) => {
            strip_zeros(rsa.modulus) == strip_zeros(modulus)
                && strip_zeros(rsa.exponent)
                    == strip_zeros(&PublicKey::rsa_exponent_bytes(*exponent))
        }
        (PublicKey::Ecc { curve, x, y }, X509PublicKey::EC(point)) => {
            PublicKey::sec1_point(*curve, x, y).is_some_and(|p| p == point.data())
        }
        _ => false,
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[first..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tpm::soft::{AkKind, EkKind, SoftTpm};

    fn config(tpm: &SoftTpm) -> TpmEnrollmentConfig {
        TpmEnrollmentConfig {
            id: Uuid::new_v4().to_string(),
            name: "tpm-1".into(),
            owner: "acme".into(),
            endorsement_key: Some(
                base64::engine::general_purpose::STANDARD.encode(tpm.ek().public().to_tpm2b()),
            ),
            endorsement_key_file: None,
            registration_id: None,
            hub_ids: vec![],
            pre_shared_key: None,
        }
    }

    #[test]
    fn resolves_and_indexes_by_registration_id() {
        let tpm = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
        let e = config(&tpm).resolve(Path::new(".")).expect("resolves");
        assert_eq!(e.registration_id, tpm.registration_id());
        assert_eq!(e.def.attestation, Attestation::Tpm);
        let all = TpmEnrollments::with(vec![e.clone()]).expect("index");
        assert_eq!(
            all.get(&tpm.registration_id()).map(|x| x.def.id),
            Some(e.def.id)
        );
        // Same EK under another id: refused.
        let mut twin = e.clone();
        twin.def.id = Uuid::new_v4();
        assert!(all.upsert(twin).is_err());
        assert!(all.remove(&e.def.id));
        assert!(all.get(&tpm.registration_id()).is_none());
    }

    #[test]
    fn refuses_signing_keys_wrong_registration_ids_and_two_sources() {
        let tpm = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
        let mut c = config(&tpm);
        c.endorsement_key =
            Some(base64::engine::general_purpose::STANDARD.encode(tpm.ak().public().to_tpm2b()));
        assert!(c.resolve(Path::new(".")).is_err());
        let mut c = config(&tpm);
        c.registration_id = Some("aaaa".into());
        assert!(c.resolve(Path::new(".")).is_err());
        let mut c = config(&tpm);
        c.endorsement_key_file = Some("ek.pub".into());
        assert!(c.resolve(Path::new(".")).is_err());
    }

    #[test]
    fn certificate_key_must_be_the_ek() {
        let tpm = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
        let other = SoftTpm::generate(EkKind::EccP256, AkKind::EccP256).expect("tpm");
        let ca = crate::pki::Issued::self_signed(&crate::pki::CertSpec::ca("TPM Manufacturer CA"))
            .expect("ca");
        let cert = ca
            .issue_for_public_key(
                &crate::pki::CertSpec::endorsement_key("tpm-ek"),
                tpm.ek().spki_der(),
            )
            .expect("ek cert");
        assert!(certificate_certifies(&cert, tpm.ek().public()));
        assert!(!certificate_certifies(&cert, other.ek().public()));
    }
}
