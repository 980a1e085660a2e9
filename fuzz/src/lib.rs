//! Shared pieces of the fuzz targets: the fixed PKI under `fixtures/` (made once by
//! `make-seeds fixtures`, committed, so a crash input reproduces against the same keys), the
//! enrollment groups built from it, and the record framing the chain targets use.
//!
//! Fixtures are read at run time (not `include_str!`) so that `make-seeds` can build before they
//! exist.

pub mod tpm;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use dps_server::enrollment::{certs_from_pem, Arena, EnrollmentGroup, LeadSelector};
use rustls_pki_types::{CertificateDer, UnixTime};
use uuid::Uuid;

/// The verification time of the chain targets: 2030-01-01T00:00:00Z, inside every fixture's
/// validity except the deliberately expired device's.
pub const NOW_SECS: u64 = 1_893_456_000;

/// Id of group A (`[int1, root]`, lead int1, deny list `SN-DENY`).
pub const GROUP_A: &str = "8d2a8f4e-2f0a-4a55-9a1e-0f6f3c3c1a01";
/// Id of group B (`[other-root]`, expired device certificates allowed).
pub const GROUP_B: &str = "8d2a8f4e-2f0a-4a55-9a1e-0f6f3c3c1a02";

/// The directory holding the fixture PEM files.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures"))
}

/// The text of one fixture file.
pub fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run `cargo run --example make-seeds -- fixtures` in fuzz/)",
            path.display()
        )
    })
}

/// The certificate of one fixture file (`<name>.pem`).
pub fn cert(name: &str) -> CertificateDer<'static> {
    let pem = fixture(&format!("{name}.pem"));
    certs_from_pem(pem.as_bytes())
        .expect("fixture PEM")
        .remove(0)
}

/// Every certificate name under `fixtures/`, CAs first.
pub const CERT_NAMES: &[&str] = &[
    "root",
    "int1",
    "int2",
    "int3-no-certsign",
    "other-root",
    "dev1",
    "dev-int1",
    "dev-deny",
    "dev-expired",
    "dev-int3",
    "dev-other",
    "identity-ca",
];

/// The two groups of the chain targets.
pub fn groups() -> Vec<EnrollmentGroup> {
    let mut a = EnrollmentGroup::new("factory-a", "acme", vec![cert("int1"), cert("root")]);
    a.id = Uuid::parse_str(GROUP_A).expect("uuid");
    a.lead = LeadSelector::Index(0);
    a.deny_common_names = vec!["SN-DENY".into()];
    let mut b = EnrollmentGroup::new("other", "other-owner", vec![cert("other-root")]);
    b.id = Uuid::parse_str(GROUP_B).expect("uuid");
    b.expired_certificates_allowed = true;
    vec![a, b]
}

/// The arena of [`groups`], built once per process.
pub fn arena() -> &'static Arena {
    static ARENA: OnceLock<Arena> = OnceLock::new();
    ARENA.get_or_init(|| Arena::with_groups(groups()).expect("fixture groups are valid"))
}

/// [`NOW_SECS`] as the verifier's time.
pub fn now() -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW_SECS))
}

/// The to-be-signed parts of every fixture certificate. A signature cannot be forged by a fuzzer,
/// so any certificate in an accepted verified chain must carry one of these (the signature value
/// itself may differ: ECDSA signatures are malleable).
pub fn known_tbs() -> &'static HashSet<Vec<u8>> {
    static TBS: OnceLock<HashSet<Vec<u8>>> = OnceLock::new();
    TBS.get_or_init(|| {
        CERT_NAMES
            .iter()
            .map(|n| tbs_of(&cert(n)).expect("fixture parses"))
            .collect()
    })
}

/// The raw TBSCertificate of a DER certificate.
pub fn tbs_of(der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::FromDer;
    let (_, c) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    Some(c.tbs_certificate.as_ref().to_vec())
}

/// Split fuzz input into records: `[u16 big-endian length][bytes]`, repeated; a short last record
/// takes what is left.
pub fn split_records(mut data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while data.len() >= 2 {
        let len = usize::from(u16::from_be_bytes([data[0], data[1]]));
        let rest = &data[2..];
        let take = len.min(rest.len());
        out.push(&rest[..take]);
        data = &rest[take..];
    }
    out
}

/// The inverse of [`split_records`] (for seeds).
pub fn join_records(records: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let len = u16::try_from(r.len()).expect("record under 64 KiB");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(r);
    }
    out
}

/// The bearer token of the admin target's router.
pub const ADMIN_TOKEN: &str = "fuzz-token";
