//! Fixtures shared by the integration tests: the seed's manufacturer PKI and helpers to judge chains.
#![allow(dead_code)]

pub mod daemon;
pub mod postgres;
pub mod replica;
pub mod server;
pub mod tpm;

use dps_server::enrollment::{Arena, EnrollmentGroup, RejectReason, Verdict};
use dps_server::pki::{CertSpec, Issued};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::{Duration, OffsetDateTime};

/// The seed's manufacturer chain: Root → Int1 → Int2 → devices.
pub struct Manufacturer {
    pub root: Issued,
    pub int1: Issued,
    pub int2: Issued,
}

impl Manufacturer {
    /// CAs valid from yesterday for ten years.
    pub fn new(prefix: &str) -> Self {
        let ca = |cn: String| CertSpec::ca(cn);
        Self::build(prefix, &ca)
    }

    /// CAs valid from `since` ago for ten years.
    pub fn aged(prefix: &str, since: Duration) -> Self {
        let ca = |cn: String| CertSpec::ca(cn).valid_between(now() - since, now() + days(3650));
        Self::build(prefix, &ca)
    }

    fn build(prefix: &str, ca: &dyn Fn(String) -> CertSpec) -> Self {
        let root = Issued::self_signed(&ca(format!("{prefix} Root CA"))).expect("root");
        let int1 = root
            .issue(&ca(format!("{prefix} Intermediate CA #1")))
            .expect("int1");
        let int2 = int1
            .issue(&ca(format!("{prefix} Intermediate CA #2")))
            .expect("int2");
        Self { root, int1, int2 }
    }

    /// A valid device certificate issued by Int2.
    pub fn device(&self, cn: &str) -> Issued {
        self.int2.issue(&CertSpec::device(cn)).expect("device")
    }
}

pub fn der(c: &Issued) -> CertificateDer<'static> {
    c.der().clone()
}

pub fn chain(certs: &[&Issued]) -> Vec<CertificateDer<'static>> {
    certs.iter().map(|c| der(c)).collect()
}

pub fn group(name: &str, certs: &[&Issued]) -> EnrollmentGroup {
    EnrollmentGroup::new(name, "acme", chain(certs))
}

pub fn arena(groups: Vec<EnrollmentGroup>) -> Arena {
    Arena::with_groups(groups).expect("valid groups")
}

pub fn judge(arena: &Arena, presented: &[&Issued]) -> Verdict {
    arena
        .load()
        .authenticate(&chain(presented), UnixTime::now())
}

pub fn reason(arena: &Arena, presented: &[&Issued]) -> Option<RejectReason> {
    judge(arena, presented).reason()
}

pub fn days(n: i64) -> Duration {
    Duration::days(n)
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// Write `groups` as a config file (chains inline, lead by fingerprint) into `dir`, for
/// `check-chain`; returns its path.
pub fn write_groups_config(
    dir: &std::path::Path,
    groups: &[EnrollmentGroup],
) -> std::path::PathBuf {
    use dps_server::config::{ConfigFile, GroupConfig};
    use dps_server::enrollment::{CertId, LeadSelector};
    let file = ConfigFile {
        enrollment_group: groups
            .iter()
            .map(|g| GroupConfig {
                id: g.id.to_string(),
                name: g.name.clone(),
                owner: g.owner.clone(),
                certificate_chain: dps_server::pki::chain_pem(&g.chain),
                lead_certificate: match &g.lead {
                    LeadSelector::Index(i) => {
                        LeadSelector::Name(CertId::of(&g.chain[*i]).to_string())
                    }
                    other => other.clone(),
                },
                expired_certificates_allowed: g.expired_certificates_allowed,
                allow_common_names: g.allow_common_names.clone(),
                deny_common_names: g.deny_common_names.clone(),
                hub_ids: g.hub_ids.iter().map(|h| h.to_string()).collect(),
                pre_shared_key: g.pre_shared_key.clone(),
            })
            .collect(),
        ..ConfigFile::default()
    };
    let path = dir.join("config.toml");
    std::fs::write(&path, toml::to_string(&file).expect("toml")).expect("write config");
    path
}
