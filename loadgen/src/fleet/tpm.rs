//! The TPM devices of a fleet: soft TPMs (EK and AK in the fleet, so the cache brings them back
//! with the same enrollments), TPMs in swtpm processes (only a seed in the fleet: the EK is derived
//! in the swtpm at run time and enrolled then), and the adversarial TPM classes.
//!
//! Enrollments:
//! - `tpm-individual`: one individual TPM enrollment per EK (owner `tpm-individual-owner`); soft
//!   `tpm` devices of even index, and the EKs `tpm_wrong_ek` and `tpm_replayed_nonce` devices
//!   present.
//! - `tpm-vendor`: a TPM enrollment group over the fleet's TPM manufacturer chain (EK CA ← TPM
//!   root, lead the EK CA); soft `tpm` devices of odd index and `tpm_tampered_blob` devices of odd
//!   index present an EK certificate from it. The group is in the embedded (and spawned) server's
//!   config; a remote target gets it over its admin API, like the X.509 groups.
//! - `tpm-swtpm`: `tpm_swtpm` devices, enrolled individually at run time (their EKs are only known
//!   once the swtpm processes run).

use base64::Engine as _;
use dps_server::config::GroupConfig;
use dps_server::enrollment::LeadSelector;
use dps_server::pki::{chain_pem, CertSpec, Issued};
use dps_server::tpm::soft::{AkKind, EkKind, SoftEk, SoftTpm};
use dps_server::tpm::TpmEnrollmentConfig;

use super::model::{Expected, FleetError, HUB};
pub use super::model::{TpmDevice, TpmKeys, TpmStep};
use super::pki::ca;
use crate::spec::DeviceClass;

/// Group name (in [`super::model::Fleet::groups`]) of individually enrolled soft TPMs.
pub const INDIVIDUAL: &str = "tpm-individual";
/// Group name of the TPM enrollment group (EK certificates of the fleet's TPM vendor).
pub const VENDOR: &str = "tpm-vendor";
/// Group name of the swtpm devices' individual enrollments.
pub const SWTPM: &str = "tpm-swtpm";

/// The fleet's TPM manufacturer, and a foreign one for EK certificates no group trusts.
pub struct TpmVendors {
    root: Issued,
    ek_ca: Issued,
    foreign_ca: Issued,
}

impl TpmVendors {
    /// New vendor PKIs for the fleet `org`.
    pub fn new(org: &str) -> Result<Self, FleetError> {
        let root = Issued::self_signed(&ca("TPM Manufacturer Root CA", org))?;
        let ek_ca = root.issue(&ca("TPM Manufacturer EK CA", org))?;
        let foreign_ca = Issued::self_signed(&ca("TPM Manufacturer EK CA", "someone else"))?;
        Ok(Self {
            root,
            ek_ca,
            foreign_ca,
        })
    }

    /// The `tpm-vendor` TPM enrollment group (chain inline, lead: the EK CA).
    pub fn group(&self, id: String) -> GroupConfig {
        GroupConfig {
            id,
            name: VENDOR.into(),
            owner: owner(VENDOR),
            certificate_chain: chain_pem([self.ek_ca.der(), self.root.der()]),
            lead_certificate: LeadSelector::Index(0),
            expired_certificates_allowed: false,
            allow_common_names: Vec::new(),
            deny_common_names: Vec::new(),
            hub_ids: vec![HUB.into()],
            pre_shared_key: None,
        }
    }
}

/// The owner of a TPM group name.
pub fn owner(group: &str) -> String {
    format!("{group}-owner")
}

/// An individual enrollment of `ek_public` (TPM2B_PUBLIC) under `group` (its owner), named `name`.
pub fn enrollment(id: String, name: &str, group: &str, ek_public: &[u8]) -> TpmEnrollmentConfig {
    TpmEnrollmentConfig {
        id,
        name: name.into(),
        owner: owner(group),
        endorsement_key: Some(base64::engine::general_purpose::STANDARD.encode(ek_public)),
        endorsement_key_file: None,
        registration_id: Some(dps_server::tpm::registration_id(ek_public)),
        hub_ids: vec![HUB.into()],
        pre_shared_key: None,
    }
}

/// A generated TPM device and the individual enrollment it needs, if any.
pub struct Generated {
    /// The device.
    pub device: TpmDevice,
    /// What it must get.
    pub expected: Expected,
    /// Its individual enrollment (name `cn`), to be written into the server's config.
    pub enrollment: Option<TpmEnrollmentConfig>,
    /// Whether it needs the `tpm-vendor` group.
    pub uses_group: bool,
}

/// Soft TPM key types of device `index`: one in twenty RSA-2048 (key generation takes tens of
/// milliseconds), the others ECC P-256.
fn kinds(index: usize) -> (EkKind, AkKind) {
    if index % 20 == 7 || index % 20 == 12 {
        (EkKind::Rsa2048, AkKind::Rsa2048)
    } else {
        (EkKind::EccP256, AkKind::EccP256)
    }
}

/// Generate the TPM device `index` of `class` named `cn`: `enrollment_id` is the id its individual
/// enrollment gets (if it has one), `group_id` the `tpm-vendor` group's id, `swtpm_seed` the EK
/// seed of a swtpm device.
pub fn generate(
    class: DeviceClass,
    index: usize,
    cn: &str,
    vendors: &TpmVendors,
    (enrollment_id, group_id): (&str, &str),
    swtpm_seed: [u8; 32],
) -> Result<Generated, FleetError> {
    let slot = Slot {
        index,
        cn,
        enrollment_id,
        group_id,
    };
    let accepted = |g: &str| Expected::Accepted { group: g.into() };
    let refused = |step| Expected::TpmRefused {
        step,
        code: "4.01".into(),
    };
    match class {
        DeviceClass::Tpm if index % 2 == 0 => slot.enrolled(accepted(INDIVIDUAL)),
        DeviceClass::Tpm => slot.vendor_certified(&vendors.ek_ca, accepted(VENDOR)),
        DeviceClass::TpmSwtpm => Ok(Generated {
            device: device(
                TpmKeys::Swtpm {
                    ek_seed: swtpm_seed,
                },
                "",
            ),
            expected: accepted(SWTPM),
            enrollment: None,
            uses_group: false,
        }),
        DeviceClass::TpmWrongEk => slot.wrong_ek(refused(TpmStep::Attest)),
        DeviceClass::TpmReplayedNonce => slot.enrolled(refused(TpmStep::Attest)),
        DeviceClass::TpmTamperedBlob if index % 2 == 0 => slot.enrolled(refused(TpmStep::Attest)),
        DeviceClass::TpmTamperedBlob => {
            slot.vendor_certified(&vendors.ek_ca, refused(TpmStep::Attest))
        }
        DeviceClass::TpmUnenrolled => {
            // Even: no enrollment and no EK certificate; odd: a certificate of a foreign vendor.
            let tpm = if index % 2 == 0 {
                slot.soft()?
            } else {
                slot.certified(slot.soft()?, &vendors.foreign_ca)?
            };
            Ok(Generated {
                device: device(TpmKeys::Soft(Box::new(tpm)), ""),
                expected: refused(TpmStep::Challenge),
                enrollment: None,
                uses_group: false,
            })
        }
        other => Err(FleetError::NotTpm(other)),
    }
}

/// A device presenting its own EK, of the `tpm-vendor` group (`group_id`) or none (empty).
fn device(keys: TpmKeys, group_id: &str) -> TpmDevice {
    TpmDevice {
        keys,
        presented_ek: None,
        group_id: group_id.into(),
    }
}

/// One TPM device's place in the fleet: its index, name and the ids it is enrolled under.
struct Slot<'a> {
    index: usize,
    cn: &'a str,
    enrollment_id: &'a str,
    group_id: &'a str,
}

impl Slot<'_> {
    /// A new soft TPM with this index's key types.
    fn soft(&self) -> Result<SoftTpm, FleetError> {
        let (ek, ak) = kinds(self.index);
        Ok(SoftTpm::generate(ek, ak)?)
    }

    /// `tpm` with an EK certificate from `ca`; every fourth also sends the EK CA, which the
    /// group's chain has anyway.
    fn certified(&self, tpm: SoftTpm, ca: &Issued) -> Result<SoftTpm, FleetError> {
        let cert =
            ca.issue_for_public_key(&CertSpec::endorsement_key(self.cn), tpm.ek().spki_der())?;
        let chain = if self.index % 4 == 3 {
            vec![ca.der().to_vec()]
        } else {
            Vec::new()
        };
        Ok(tpm.with_ek_certificate(cert.to_vec(), chain))
    }

    /// The individual enrollment of `ek_public` under `tpm-individual`, named after the device.
    fn individual(&self, ek_public: &[u8]) -> TpmEnrollmentConfig {
        enrollment(self.enrollment_id.into(), self.cn, INDIVIDUAL, ek_public)
    }

    /// A soft TPM enrolled individually by its own EK.
    fn enrolled(&self, expected: Expected) -> Result<Generated, FleetError> {
        let tpm = self.soft()?;
        let enrollment = Some(self.individual(&tpm.ek().public().to_tpm2b()));
        Ok(Generated {
            device: device(TpmKeys::Soft(Box::new(tpm)), ""),
            expected,
            enrollment,
            uses_group: false,
        })
    }

    /// A soft TPM with an EK certificate from `ca`, for the `tpm-vendor` group.
    fn vendor_certified(&self, ca: &Issued, expected: Expected) -> Result<Generated, FleetError> {
        Ok(Generated {
            device: device(
                TpmKeys::Soft(Box::new(self.certified(self.soft()?, ca)?)),
                self.group_id,
            ),
            expected,
            enrollment: None,
            uses_group: true,
        })
    }

    /// The EK of another TPM is enrolled; this device presents it without its key.
    fn wrong_ek(&self, expected: Expected) -> Result<Generated, FleetError> {
        let victim = SoftEk::generate(EkKind::EccP256)?;
        let presented = victim.public().to_tpm2b();
        Ok(Generated {
            enrollment: Some(self.individual(&presented)),
            device: TpmDevice {
                keys: TpmKeys::Soft(Box::new(self.soft()?)),
                presented_ek: Some(presented),
                group_id: String::new(),
            },
            expected,
            uses_group: false,
        })
    }
}
