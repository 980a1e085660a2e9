//! Generating a fleet: classes assigned by weight from the seed, a manufacturer PKI with the
//! topology described in [`super`], one device per slot (X.509 here, TPM in [`super::tpm`]), and
//! the server set-up the fleet is meant for, written into a directory.

use std::collections::BTreeMap;
use std::path::Path;

use dps_server::config::{ConfigFile, GroupConfig, HubConfig, LimitsSection, ServerSection};
use dps_server::enrollment::{LeadSelector, RejectReason};
use dps_server::pki::{chain_pem, CertSpec, Issued, KeyAlg};
use dps_server::provision::owner_uuid;
use dps_server::tpm::TpmEnrollmentConfig;
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use rustls_pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};

use super::key::{key, stable_id};
use super::model::{Credentials, Device, Expected, Fleet, FleetError, GroupInfo, HUB};
use super::pki::{ca, key_alg, write};
use super::tpm;
use crate::spec::{DeviceClass, FleetSpec};

/// splitmix64: a small, well-known deterministic generator for class assignment.
struct SplitMix(u64);

impl SplitMix {
    /// The next number of the sequence.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The class of every device, by weight, deterministic in the seed.
fn assign_classes(spec: &FleetSpec, rng: &mut SplitMix) -> Vec<DeviceClass> {
    let weights: Vec<(DeviceClass, u64)> = DeviceClass::ALL
        .iter()
        .map(|c| (*c, u64::from(*spec.mix.get(c).unwrap_or(&0))))
        .filter(|(_, w)| *w > 0)
        .collect();
    let total: u64 = weights.iter().map(|(_, w)| w).sum();
    (0..spec.devices)
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
        .collect()
}

/// A leaf, the CA certificates presented after it, and the outcome it must get.
type Issue<'p> = (Issued, Vec<&'p CertificateDer<'static>>, Expected);

/// The manufacturer PKI of the X.509 classes, and the CN lists its groups take from the devices.
struct X509Pki {
    root: Issued,
    int_a: Issued,
    line1: Issued,
    int_b: Issued,
    int_l: Issued,
    int_p: Issued,
    int_s: Issued,
    stranger_root: Issued,
    stranger_int: Issued,
    /// Same DN as IntA, another key.
    forged_a: Issued,
    alg: KeyAlg,
    now: OffsetDateTime,
    /// `factory-a`'s deny list: the `blacklisted` CNs.
    deny: Vec<String>,
    /// `premium`'s allow list: the valid premium CNs.
    allow: Vec<String>,
}

impl X509Pki {
    /// The whole manufacturer PKI (and the stranger's and the forger's CAs), freshly keyed.
    fn new(org: &str, alg: KeyAlg) -> Result<Self, FleetError> {
        let root = Issued::self_signed(&ca("Manufacturer Root CA", org))?;
        let int_a = root.issue(&ca("Factory A CA", org))?;
        let line1 = int_a.issue(&ca("Factory A Line 1 CA", org))?;
        let int_b = root.issue(&ca("Factory B CA", org))?;
        let int_l = root.issue(&ca("Legacy CA", org))?;
        let int_p = root.issue(&ca("Premium CA", org))?;
        let int_s = root.issue(&ca("Spare CA", org))?;
        let stranger_root = Issued::self_signed(&ca("Manufacturer Root CA", "someone else"))?;
        let stranger_int = stranger_root.issue(&ca("Factory A CA", "someone else"))?;
        let forged_a = Issued::self_signed(&ca("Factory A CA", org))?;
        Ok(Self {
            root,
            int_a,
            line1,
            int_b,
            int_l,
            int_p,
            int_s,
            stranger_root,
            stranger_int,
            forged_a,
            alg,
            now: OffsetDateTime::now_utc(),
            deny: Vec::new(),
            allow: Vec::new(),
        })
    }

    /// The device of an X.509 `class` at `index`: its chain, key and expected outcome.
    fn device(
        &mut self,
        class: DeviceClass,
        index: usize,
        cn: &str,
    ) -> Result<(Credentials, Expected), FleetError> {
        let (leaf, presented, expected) = self.issue(class, index, cn)?;
        let mut chain: Vec<CertificateDer<'static>> = vec![leaf.der().clone()];
        chain.extend(presented.into_iter().cloned());
        let credentials = Credentials::X509 {
            chain,
            key: leaf.key_der(),
        };
        Ok((credentials, expected))
    }

    /// The leaf of an X.509 `class` at `index`, the CA certificates it presents after it, and
    /// its expected outcome.
    fn issue(
        &mut self,
        class: DeviceClass,
        index: usize,
        cn: &str,
    ) -> Result<Issue<'_>, FleetError> {
        let device = CertSpec::device(cn).with_key(self.alg);
        match class {
            DeviceClass::Valid => self.valid(index, cn, &device),
            DeviceClass::Expired => self.expired(index, device),
            DeviceClass::Identity => Ok((
                self.int_b.issue(&device)?,
                vec![],
                Expected::Reconnected {
                    group: "factory-b".into(),
                },
            )),
            DeviceClass::Tpm
            | DeviceClass::TpmSwtpm
            | DeviceClass::TpmWrongEk
            | DeviceClass::TpmReplayedNonce
            | DeviceClass::TpmTamperedBlob
            | DeviceClass::TpmUnenrolled => Err(FleetError::NotX509(class)),
            DeviceClass::Truncated
            | DeviceClass::Unmatched
            | DeviceClass::NoGroup
            | DeviceClass::Blacklisted
            | DeviceClass::NotAllowed
            | DeviceClass::Forged
            | DeviceClass::BadEku => self.rejected(class, cn, device),
        }
    }

    /// A valid device, under one of the five accepted paths in turn (`index % 5`).
    fn valid(
        &mut self,
        index: usize,
        cn: &str,
        device: &CertSpec,
    ) -> Result<Issue<'_>, FleetError> {
        let accepted = |g: &str| Expected::Accepted { group: g.into() };
        Ok(match index % 5 {
            0 => (self.int_a.issue(device)?, vec![], accepted("factory-a")),
            1 => (
                self.line1.issue(device)?,
                vec![self.line1.der()],
                accepted("factory-a"),
            ),
            2 => (self.int_b.issue(device)?, vec![], accepted("factory-b")),
            3 => (self.int_l.issue(device)?, vec![], accepted("legacy")),
            _ => {
                self.allow.push(cn.to_owned());
                (self.int_p.issue(device)?, vec![], accepted("premium"))
            }
        })
    }

    /// An expired leaf: refused under Factory A (even index), accepted by `legacy` (odd).
    fn expired(&mut self, index: usize, device: CertSpec) -> Result<Issue<'_>, FleetError> {
        let now = self.now;
        let old = device.valid_between(now - Duration::days(800), now - Duration::days(30));
        Ok(if index % 2 == 0 {
            (
                self.int_a.issue(&old)?,
                vec![],
                Expected::Rejected {
                    reason: RejectReason::Expired,
                },
            )
        } else {
            (
                self.int_l.issue(&old)?,
                vec![],
                Expected::Accepted {
                    group: "legacy".into(),
                },
            )
        })
    }

    /// A device of a class the server must refuse, with the reason it must give.
    fn rejected(
        &mut self,
        class: DeviceClass,
        cn: &str,
        device: CertSpec,
    ) -> Result<Issue<'_>, FleetError> {
        let (leaf, presented, reason) = match class {
            DeviceClass::Truncated => (self.line1.issue(&device)?, vec![], RejectReason::NoPath),
            DeviceClass::Unmatched => (
                self.stranger_int.issue(&device)?,
                vec![self.stranger_int.der(), self.stranger_root.der()],
                RejectReason::NoPath,
            ),
            DeviceClass::NoGroup => (
                self.int_s.issue(&device)?,
                vec![self.int_s.der()],
                RejectReason::NoGroup,
            ),
            DeviceClass::Blacklisted => {
                self.deny.push(cn.to_owned());
                (self.int_a.issue(&device)?, vec![], RejectReason::Denied)
            }
            DeviceClass::NotAllowed => {
                (self.int_p.issue(&device)?, vec![], RejectReason::NotAllowed)
            }
            DeviceClass::Forged => (
                self.forged_a.issue(&device)?,
                vec![],
                RejectReason::BadSignature,
            ),
            DeviceClass::BadEku => {
                let mut spec = device;
                spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
                (self.int_b.issue(&spec)?, vec![], RejectReason::BadEku)
            }
            _ => return Err(FleetError::NotX509(class)),
        };
        Ok((leaf, presented, Expected::Rejected { reason }))
    }

    /// The four X.509 enrollment groups (their ids from `id`), and each one's owner.
    fn groups(
        self,
        id: impl Fn(&str) -> String,
    ) -> (Vec<GroupConfig>, BTreeMap<String, GroupInfo>) {
        let mut groups = BTreeMap::new();
        let mut tables = Vec::new();
        for (name, int, expired_ok, deny, allow) in [
            ("factory-a", &self.int_a, false, self.deny, vec![]),
            ("factory-b", &self.int_b, false, vec![], vec![]),
            ("legacy", &self.int_l, true, vec![], vec![]),
            ("premium", &self.int_p, false, vec![], self.allow),
        ] {
            let owner = format!("{name}-owner");
            tables.push(GroupConfig {
                id: id(name),
                name: name.into(),
                owner: owner.clone(),
                certificate_chain: chain_pem([int.der(), self.root.der()]),
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
        (tables, groups)
    }
}

/// Build the fleet for `spec` and write the matching server set-up (config, PKI) into `dir`.
pub fn build(spec: &FleetSpec, dir: &Path) -> Result<Fleet, FleetError> {
    let org = format!("dpsbench fleet {}", spec.seed);
    let mut pki = X509Pki::new(&org, key_alg(spec.key))?;
    let mut rng = SplitMix(spec.seed);
    let classes = assign_classes(spec, &mut rng);
    let fleet_key = key(spec);
    let id = |what: &str| stable_id(&fleet_key, what);
    let vendors = tpm::TpmVendors::new(&org)?;
    let tpm_group_id = id(tpm::VENDOR);
    let mut devices = Vec::with_capacity(spec.devices);
    let mut tpm_enrollments = Vec::new();
    let mut tpm_group_used = false;
    for (index, class) in classes.into_iter().enumerate() {
        let cn = format!("{}-{:06}", class.as_str().to_uppercase(), index);
        let (credentials, expected) = if class.is_tpm() {
            let mut seed = [0u8; 32];
            for chunk in seed.chunks_mut(8) {
                chunk.copy_from_slice(&rng.next().to_be_bytes());
            }
            let ids = (id(&format!("tpm/{index}")), tpm_group_id.clone());
            let generated = tpm::generate(class, index, &cn, &vendors, (&ids.0, &ids.1), seed)?;
            tpm_enrollments.extend(generated.enrollment);
            tpm_group_used |= generated.uses_group;
            (Credentials::Tpm(generated.device), generated.expected)
        } else {
            pki.device(class, index, &cn)?
        };
        devices.push(Device {
            index,
            class,
            common_name: cn,
            credentials,
            expected,
        });
    }
    let (server_groups, mut groups) = pki.groups(id);
    for name in [tpm::INDIVIDUAL, tpm::VENDOR, tpm::SWTPM] {
        groups.insert(
            name.to_owned(),
            GroupInfo {
                name: name.into(),
                owner_uuid: owner_uuid(&tpm::owner(name)).to_string(),
            },
        );
    }
    let server_tpm_groups: Vec<GroupConfig> = if tpm_group_used {
        vec![vendors.group(tpm_group_id)]
    } else {
        Vec::new()
    };
    let hub = HubConfig {
        id: HUB.into(),
        gateways: vec!["coaps+tcp://127.0.0.1:5684".into()],
        name: Some("dps-loadgen hub".into()),
        // Provider `jwt` with the server's generated key: the same hub JSON works on a remote DPS.
        authorization: None,
    };
    let server = ServerSetup {
        hub: &hub,
        groups: &server_groups,
        tpm_groups: &server_tpm_groups,
        tpm_enrollments: &tpm_enrollments,
    };
    let server_ca = server.write(dir)?;
    Ok(Fleet {
        devices,
        groups,
        server_ca,
        server_groups,
        hub,
        server_tpm_enrollments: tpm_enrollments,
        server_tpm_groups,
    })
}

/// What the fleet's own server is configured with.
struct ServerSetup<'a> {
    hub: &'a HubConfig,
    groups: &'a [GroupConfig],
    tpm_groups: &'a [GroupConfig],
    tpm_enrollments: &'a [TpmEnrollmentConfig],
}

impl ServerSetup<'_> {
    /// Write the fleet's own server into `dir`: its certificate and key, its identity CA, the admin
    /// token, and a `config.toml` with the fleet's hub, groups and TPM enrollments. Returns the CA
    /// devices verify that server with.
    // The config is filled field by field so that sections this crate does not set keep defaults.
    #[allow(clippy::field_reassign_with_default)]
    fn write(&self, dir: &Path) -> Result<CertificateDer<'static>, FleetError> {
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
        config.hub = vec![self.hub.clone()];
        config.enrollment_group = self.groups.to_vec();
        config.tpm_enrollment_group = self.tpm_groups.to_vec();
        config.tpm_enrollment = self.tpm_enrollments.to_vec();
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
        Ok(server_ca.der().clone())
    }
}
