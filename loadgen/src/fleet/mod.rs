//! The simulated fleet: a manufacturer PKI, the enrollment groups of the embedded server, and
//! devices of every class, each with its own key and certificate and the outcome it must get.
//!
//! Topology (all under one manufacturer root R):
//! - `factory-a` = [IntA, R], lead IntA, deny list = the `blacklisted` CNs. Valid devices sit under
//!   IntA (present `[leaf]`) or under Line1 ← IntA (present `[leaf, Line1]`).
//! - `factory-b` = [IntB, R], lead IntB.
//! - `legacy` = [IntL, R], lead IntL, expired manufacturer certificates allowed.
//! - `premium` = [IntP, R], lead IntP, allow list = the CNs of the valid premium devices.
//! - IntS ← R is configured nowhere: its devices authenticate through R but meet no lead.
//!
//! TPM classes attest without a client certificate through the TPM nonce challenge; their
//! enrollments are described in [`tpm`].
//!
//! Class assignment and names follow the seed; keys are fresh randomness, so a fleet is reproduced
//! exactly by the on-disk cache ([`cache`]), which a rerun with the same `[fleet]` reuses.

pub mod cache;
pub mod export;
pub mod tpm;

use std::collections::BTreeMap;
use std::path::Path;

use dps_server::config::{ConfigFile, GroupConfig, HubConfig, LimitsSection, ServerSection};
use dps_server::enrollment::{LeadSelector, RejectReason};
use dps_server::pki::{chain_pem, CertSpec, Issued, KeyAlg, PkiError};
use dps_server::provision::owner_uuid;
use dps_server::tpm::TpmEnrollmentConfig;
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::scenario::{FleetSpec, KeyType};

/// A device class and, through [`Expected`], the outcome it must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// Valid chain, spread over groups and chain depths: accepted.
    Valid,
    /// Missing intermediate: `no_path`.
    Truncated,
    /// Unknown root: `no_path`.
    Unmatched,
    /// Authenticates, no lead certificate in its chain: `no_group`.
    NoGroup,
    /// CN on the group's deny list: `denied`.
    Blacklisted,
    /// CN not on the group's allow list: `not_allowed`.
    NotAllowed,
    /// Expired leaf: `expired` in a strict group, accepted in `legacy`.
    Expired,
    /// Signed by a CA with a configured CA's name and another key: `bad_signature`.
    Forged,
    /// Leaf without clientAuth EKU: `bad_eku`.
    BadEku,
    /// Valid in `factory-b`; after provisioning it reconnects with the identity certificate it was
    /// issued and provisions again (renewal) in the same group.
    Identity,
    /// Soft TPM, enrolled individually (even index) or through the `tpm-vendor` EK-certificate
    /// group (odd index): attests, then provisions in that enrollment.
    Tpm,
    /// A TPM in a swtpm process (build feature `tpm-sim`), enrolled individually at run time:
    /// attests, then provisions in `tpm-swtpm`.
    TpmSwtpm,
    /// Presents an enrolled EK without its private key: cannot activate the credential, so its
    /// attest is refused with 4.01.
    TpmWrongEk,
    /// Attests correctly on one connection, then on a new one answers a fresh challenge with the
    /// right secret but the first connection's quote (the old nonce): attest refused with 4.01.
    TpmReplayedNonce,
    /// The credential blob is altered on the way: ActivateCredential fails, the attest (with no
    /// valid secret) is refused with 4.01.
    TpmTamperedBlob,
    /// No enrollment and no EK certificate (even index) or a foreign vendor's EK certificate
    /// (odd): the challenge is refused with 4.01.
    TpmUnenrolled,
}

impl DeviceClass {
    /// Every class.
    pub const ALL: [DeviceClass; 16] = [
        DeviceClass::Valid,
        DeviceClass::Truncated,
        DeviceClass::Unmatched,
        DeviceClass::NoGroup,
        DeviceClass::Blacklisted,
        DeviceClass::NotAllowed,
        DeviceClass::Expired,
        DeviceClass::Forged,
        DeviceClass::BadEku,
        DeviceClass::Identity,
        DeviceClass::Tpm,
        DeviceClass::TpmSwtpm,
        DeviceClass::TpmWrongEk,
        DeviceClass::TpmReplayedNonce,
        DeviceClass::TpmTamperedBlob,
        DeviceClass::TpmUnenrolled,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Valid => "valid",
            DeviceClass::Truncated => "truncated",
            DeviceClass::Unmatched => "unmatched",
            DeviceClass::NoGroup => "no_group",
            DeviceClass::Blacklisted => "blacklisted",
            DeviceClass::NotAllowed => "not_allowed",
            DeviceClass::Expired => "expired",
            DeviceClass::Forged => "forged",
            DeviceClass::BadEku => "bad_eku",
            DeviceClass::Identity => "identity",
            DeviceClass::Tpm => "tpm",
            DeviceClass::TpmSwtpm => "tpm_swtpm",
            DeviceClass::TpmWrongEk => "tpm_wrong_ek",
            DeviceClass::TpmReplayedNonce => "tpm_replayed_nonce",
            DeviceClass::TpmTamperedBlob => "tpm_tampered_blob",
            DeviceClass::TpmUnenrolled => "tpm_unenrolled",
        }
    }

    /// Attests with a TPM (no client certificate).
    pub fn is_tpm(self) -> bool {
        matches!(
            self,
            DeviceClass::Tpm
                | DeviceClass::TpmSwtpm
                | DeviceClass::TpmWrongEk
                | DeviceClass::TpmReplayedNonce
                | DeviceClass::TpmTamperedBlob
                | DeviceClass::TpmUnenrolled
        )
    }
}

/// The outcome a device must get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Expected {
    /// Provisioned into this group (by name).
    Accepted {
        /// Group name.
        group: String,
    },
    /// Provisioned into this group, then provisioned again in it over a new session
    /// authenticated by the identity certificate of the first.
    Reconnected {
        /// Group name.
        group: String,
    },
    /// Refused at the handshake for this reason.
    Rejected {
        /// The reason the server must give.
        reason: RejectReason,
    },
    /// A TPM device refused at this step of the nonce challenge with this CoAP code (e.g.
    /// `4.01`), after which the server closes the connection.
    TpmRefused {
        /// The step.
        step: tpm::TpmStep,
        /// The CoAP response code, `c.dd`.
        code: String,
    },
}

/// How a device attests.
#[derive(Debug)]
pub enum Credentials {
    /// Its manufacturer certificate in TLS.
    X509 {
        /// What it presents in TLS, leaf first.
        chain: Vec<CertificateDer<'static>>,
        /// Its key.
        key: PrivateKeyDer<'static>,
    },
    /// Its TPM, through the nonce challenge on a connection without a client certificate.
    Tpm(tpm::TpmDevice),
}

/// One simulated device.
#[derive(Debug)]
pub struct Device {
    /// Position in the fleet.
    pub index: usize,
    /// Its class.
    pub class: DeviceClass,
    /// Manufacturer certificate CN (a TPM device's name; its EK certificate's CN if it has one).
    pub common_name: String,
    /// How it attests.
    pub credentials: Credentials,
    /// What it must get.
    pub expected: Expected,
}

/// A group of the server, as the devices can recognise it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Name.
    pub name: String,
    /// The owner UUID its devices must receive.
    pub owner_uuid: String,
}

/// The generated fleet and the server set-up it is meant for.
#[derive(Debug)]
pub struct Fleet {
    /// Devices in start order.
    pub devices: Vec<Device>,
    /// Groups by name.
    pub groups: BTreeMap<String, GroupInfo>,
    /// The CA devices trust for the server certificate of the embedded server.
    pub server_ca: CertificateDer<'static>,
    /// The enrollment groups the fleet needs, chains as inline PEM (created over the admin API of
    /// a remote target; written into the embedded server's config).
    pub server_groups: Vec<GroupConfig>,
    /// The hub those groups link.
    pub hub: HubConfig,
    /// Individual TPM enrollments of the soft TPM devices (in the embedded server's config;
    /// created over the admin API of a remote target).
    pub server_tpm_enrollments: Vec<TpmEnrollmentConfig>,
    /// TPM enrollment groups the fleet needs (config file only).
    pub server_tpm_groups: Vec<GroupConfig>,
}

/// Why the fleet could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Certificate generation failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// rcgen refused a name.
    #[error("certificate name: {0}")]
    Name(#[from] rcgen::Error),
    /// Writing the server set-up failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config could not be serialized.
    #[error("config: {0}")]
    Toml(#[from] toml::ser::Error),
    /// A soft TPM could not be generated.
    #[error("TPM: {0}")]
    Tpm(String),
    /// The fleet lacks what an export needs.
    #[error("export: {0}")]
    Export(&'static str),
}

/// splitmix64: a small, well-known deterministic generator for class assignment.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn key_alg(k: KeyType) -> KeyAlg {
    match k {
        KeyType::P256 => KeyAlg::EcdsaP256,
        KeyType::P384 => KeyAlg::EcdsaP384,
        KeyType::Ed25519 => KeyAlg::Ed25519,
    }
}

pub(crate) fn ca(cn: &str, org: &str) -> CertSpec {
    let now = OffsetDateTime::now_utc();
    let mut spec =
        CertSpec::ca(cn).valid_between(now - Duration::days(3650), now + Duration::days(3650));
    spec.organization = Some(org.into());
    spec
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<(), FleetError> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| FleetError::Io {
            path: parent.display().to_string(),
            source,
        })?;
    }
    std::fs::write(&path, contents).map_err(|source| FleetError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// The fleet's hub id (fixed, so a remote target sees one hub however often it is run against).
pub const HUB: &str = "5f0c1d8e-9a51-4c7b-8d2e-6a1f3b9c0d11";

/// Build the fleet for `spec` and write the matching server set-up (config, PKI) into `dir`.
// The config is filled field by field so that sections this crate does not set keep defaults.
#[allow(clippy::field_reassign_with_default)]
pub fn build(spec: &FleetSpec, dir: &Path) -> Result<Fleet, FleetError> {
    let org = format!("dpsbench fleet {}", spec.seed);
    let root = Issued::self_signed(&ca("Manufacturer Root CA", &org))?;
    let int_a = root.issue(&ca("Factory A CA", &org))?;
    let line1 = int_a.issue(&ca("Factory A Line 1 CA", &org))?;
    let int_b = root.issue(&ca("Factory B CA", &org))?;
    let int_l = root.issue(&ca("Legacy CA", &org))?;
    let int_p = root.issue(&ca("Premium CA", &org))?;
    let int_s = root.issue(&ca("Spare CA", &org))?;
    let stranger_root = Issued::self_signed(&ca("Manufacturer Root CA", "someone else"))?;
    let stranger_int = stranger_root.issue(&ca("Factory A CA", "someone else"))?;
    let forged_a = Issued::self_signed(&ca("Factory A CA", &org))?; // same DN as IntA, other key

    // Classes by weight, deterministic in the seed.
    let weights: Vec<(DeviceClass, u64)> = DeviceClass::ALL
        .iter()
        .map(|c| (*c, u64::from(*spec.mix.get(c).unwrap_or(&0))))
        .filter(|(_, w)| *w > 0)
        .collect();
    let total: u64 = weights.iter().map(|(_, w)| w).sum();
    let mut rng = SplitMix(spec.seed);
    let classes: Vec<DeviceClass> = (0..spec.devices)
        .map(|_| {
            let mut pick = rng.next() % total.max(1);
            for (c, w) in &weights {
                if pick < *w {
                    return *c;
                }
                pick -= w;
            }
            DeviceClass::Valid
        })
        .collect();

    let alg = key_alg(spec.key);
    let now = OffsetDateTime::now_utc();
    let mut devices = Vec::with_capacity(spec.devices);
    let mut deny = Vec::new();
    let mut allow = Vec::new();
    let fleet_key = cache::key(spec);
    let stable_id = |what: &str| {
        // Stable per fleet: a rerun against a remote server replaces its own groups, and fleets
        // of other seeds get other ids.
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("dpsbench/fleet/{fleet_key}/{what}").as_bytes(),
        )
        .to_string()
    };
    let vendors = tpm::TpmVendors::new(&org)?;
    let tpm_group_id = stable_id(tpm::VENDOR);
    let mut tpm_enrollments = Vec::new();
    let mut tpm_group_used = false;
    for (index, class) in classes.into_iter().enumerate() {
        let cn = format!("{}-{:06}", class.as_str().to_uppercase(), index);
        if class.is_tpm() {
            let mut seed = [0u8; 32];
            for chunk in seed.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next().to_be_bytes());
            }
            let generated = tpm::generate(
                class,
                index,
                &cn,
                &vendors,
                (&stable_id(&format!("tpm/{index}")), &tpm_group_id),
                seed,
            )?;
            tpm_enrollments.extend(generated.enrollment);
            tpm_group_used |= generated.uses_group;
            devices.push(Device {
                index,
                class,
                common_name: cn,
                credentials: Credentials::Tpm(generated.device),
                expected: generated.expected,
            });
            continue;
        }
        let device = CertSpec::device(&cn).with_key(alg);
        let rejected = |reason| Expected::Rejected { reason };
        let accepted = |g: &str| Expected::Accepted { group: g.into() };
        let (leaf, presented, expected) = match class {
            DeviceClass::Valid => match index % 5 {
                0 => (int_a.issue(&device)?, vec![], accepted("factory-a")),
                1 => (
                    line1.issue(&device)?,
                    vec![line1.der()],
                    accepted("factory-a"),
                ),
                2 => (int_b.issue(&device)?, vec![], accepted("factory-b")),
                3 => (int_l.issue(&device)?, vec![], accepted("legacy")),
                _ => {
                    allow.push(cn.clone());
                    (int_p.issue(&device)?, vec![], accepted("premium"))
                }
            },
            DeviceClass::Truncated => (
                line1.issue(&device)?,
                vec![],
                rejected(RejectReason::NoPath),
            ),
            DeviceClass::Unmatched => (
                stranger_int.issue(&device)?,
                vec![stranger_int.der(), stranger_root.der()],
                rejected(RejectReason::NoPath),
            ),
            DeviceClass::NoGroup => (
                int_s.issue(&device)?,
                vec![int_s.der()],
                rejected(RejectReason::NoGroup),
            ),
            DeviceClass::Blacklisted => {
                deny.push(cn.clone());
                (
                    int_a.issue(&device)?,
                    vec![],
                    rejected(RejectReason::Denied),
                )
            }
            DeviceClass::NotAllowed => (
                int_p.issue(&device)?,
                vec![],
                rejected(RejectReason::NotAllowed),
            ),
            DeviceClass::Expired => {
                let old = device.valid_between(now - Duration::days(800), now - Duration::days(30));
                if index % 2 == 0 {
                    (int_a.issue(&old)?, vec![], rejected(RejectReason::Expired))
                } else {
                    (int_l.issue(&old)?, vec![], accepted("legacy"))
                }
            }
            DeviceClass::Forged => (
                forged_a.issue(&device)?,
                vec![],
                rejected(RejectReason::BadSignature),
            ),
            DeviceClass::BadEku => {
                let mut spec = device;
                spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                (int_b.issue(&spec)?, vec![], rejected(RejectReason::BadEku))
            }
            DeviceClass::Identity => (
                int_b.issue(&device)?,
                vec![],
                Expected::Reconnected {
                    group: "factory-b".into(),
                },
            ),
            // Generated above.
            DeviceClass::Tpm
            | DeviceClass::TpmSwtpm
            | DeviceClass::TpmWrongEk
            | DeviceClass::TpmReplayedNonce
            | DeviceClass::TpmTamperedBlob
            | DeviceClass::TpmUnenrolled => continue,
        };
        let mut chain = vec![leaf.der().clone()];
        chain.extend(presented.into_iter().cloned());
        devices.push(Device {
            index,
            class,
            common_name: cn,
            credentials: Credentials::X509 {
                chain,
                key: leaf.key_der(),
            },
            expected,
        });
    }

    // The server side: certificate, identity CA, hub, groups.
    let server_ca = Issued::self_signed(&CertSpec::ca("dpsbench loadgen server CA"))?;
    let mut server_spec = CertSpec::device("localhost");
    server_spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server_spec.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into()?),
        SanType::IpAddress([127, 0, 0, 1].into()),
    ];
    let server = server_ca.issue(&server_spec)?;
    let identity_ca = Issued::self_signed(&CertSpec::ca("dpsbench loadgen identity CA"))?;
    write(
        dir,
        "server.pem",
        &chain_pem([server.der(), server_ca.der()]),
    )?;
    write(dir, "server.key", &server.key_pem())?;
    write(dir, "identity-ca.pem", &identity_ca.pem())?;
    write(dir, "identity-ca.key", &identity_ca.key_pem())?;

    let mut groups = BTreeMap::new();
    let mut tables = Vec::new();
    for (name, int, expired_ok, deny, allow) in [
        ("factory-a", &int_a, false, deny, vec![]),
        ("factory-b", &int_b, false, vec![], vec![]),
        ("legacy", &int_l, true, vec![], vec![]),
        ("premium", &int_p, false, vec![], allow),
    ] {
        let owner = format!("{name}-owner");
        tables.push(GroupConfig {
            id: stable_id(name),
            name: name.into(),
            owner: owner.clone(),
            certificate_chain: chain_pem([int.der(), root.der()]),
            lead_certificate: LeadSelector::Index(0),
            expired_certificates_allowed: expired_ok,
            allow_common_names: allow,
            deny_common_names: deny,
            hub_ids: vec![HUB.into()],
            pre_shared_key: None,
        });
        groups.insert(
            name.to_owned(),
            GroupInfo {
                name: name.into(),
                owner_uuid: owner_uuid(&owner).to_string(),
            },
        );
    }
    for name in [tpm::INDIVIDUAL, tpm::VENDOR, tpm::SWTPM] {
        groups.insert(
            name.to_owned(),
            GroupInfo {
                name: name.into(),
                owner_uuid: owner_uuid(&tpm::owner(name)).to_string(),
            },
        );
    }
    let tpm_groups: Vec<GroupConfig> = if tpm_group_used {
        vec![vendors.group(tpm_group_id)]
    } else {
        Vec::new()
    };
    // Field by field, so sections this crate does not set keep their defaults.
    let mut config = ConfigFile::default();
    config.server = Some(ServerSection {
        listen: "127.0.0.1:0".into(),
        certificate: "server.pem".into(),
        key: "server.key".into(),
        identity_ca_certificate: "identity-ca.pem".into(),
        identity_ca_key: "identity-ca.key".into(),
        identity_validity_days: 365,
    });
    config.limits = LimitsSection {
        max_connections: 100_000,
        ..LimitsSection::default()
    };
    let hub = HubConfig {
        id: HUB.into(),
        gateways: vec!["coaps+tcp://127.0.0.1:5684".into()],
        name: Some("dps-loadgen hub".into()),
        // Provider `jwt` with the server's generated key: the same hub JSON works on a remote DPS.
        authorization: None,
    };
    config.hub = vec![hub.clone()];
    config.enrollment_group = tables.clone();
    config.tpm_enrollment_group = tpm_groups.clone();
    config.tpm_enrollment = tpm_enrollments.clone();
    // Nothing of a load run needs to outlive it.
    config.store.path = dps_server::config::IN_MEMORY_STORE.into();
    // A spawned server (`[target] spawn`) serves its admin API on an ephemeral loopback port.
    config.admin = Some(dps_server::config::AdminSection {
        listen: "127.0.0.1:0".into(),
        token_file: Some("admin-token".into()),
        token: None,
        issuer: None,
    });
    let token = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    write(dir, "admin-token", &token)?;
    write(dir, "config.toml", &toml::to_string_pretty(&config)?)?;
    Ok(Fleet {
        devices,
        groups,
        server_ca: server_ca.der().clone(),
        server_groups: tables,
        hub,
        server_tpm_enrollments: tpm_enrollments,
        server_tpm_groups: tpm_groups,
    })
}
