//! Shared set-up for the benchmarks: arenas of any size with one real device group in them, built
//! the way an operator's bulk load would be (every group validated); the committed PKI of the
//! handshake and instruction-count benchmarks ([`pki`]) and the in-memory handshake ([`handshake`]).

pub mod handshake;
pub mod pki;

use dps_server::enrollment::{Arena, EnrollmentGroup, LeadSelector};
use dps_server::pki::{CertSpec, Issued, KeyAlg};
use rustls_pki_types::CertificateDer;

/// An arena with `groups` enrollment groups and a device whose leaf+2 chain selects one of them.
pub struct MatchingFixture {
    /// The arena.
    pub arena: Arena,
    /// What the device presents: leaf, Int2, Int1 (Int1 is configured as the group's lead).
    pub presented: Vec<CertificateDer<'static>>,
    /// A further group that is not in the arena, for publish benchmarks.
    pub extra: EnrollmentGroup,
}

/// Filler groups: each one its own lead CA under a shared root (one shared key keeps generation
/// cheap; every certificate is still distinct, so every lead is unique).
pub fn filler_groups(n: usize, tag: &str) -> Vec<EnrollmentGroup> {
    if n == 0 {
        return Vec::new();
    }
    let root = Issued::self_signed(&CertSpec::ca(format!("Filler Root {tag}"))).expect("root");
    let key_pem = KeyAlg::EcdsaP256.generate().expect("key").serialize_pem();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = n.div_ceil(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (root, key_pem) = (&root, &key_pem);
                s.spawn(move || {
                    (t * per..((t + 1) * per).min(n))
                        .map(|i| {
                            let key = rcgen::KeyPair::from_pem(key_pem).expect("key");
                            let ca = root
                                .issue_with_key(&CertSpec::ca(format!("Filler {tag} {i}")), key)
                                .expect("ca");
                            EnrollmentGroup::new(
                                format!("filler-{tag}-{i}"),
                                "bench",
                                vec![ca.der().clone(), root.der().clone()],
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("generator thread"))
            .collect()
    })
}

impl MatchingFixture {
    /// `groups` groups in all (at least 1): the device's group plus fillers.
    pub fn new(groups: usize) -> Self {
        let root = Issued::self_signed(&CertSpec::ca("Bench Root")).expect("root");
        let int1 = root.issue(&CertSpec::ca("Bench Int1")).expect("int1");
        let int2 = int1.issue(&CertSpec::ca("Bench Int2")).expect("int2");
        let leaf = int2.issue(&CertSpec::device("BENCH-SN-1")).expect("leaf");
        let mut device_group = EnrollmentGroup::new(
            "bench-device-group",
            "bench",
            vec![int1.der().clone(), root.der().clone()],
        );
        device_group.lead = LeadSelector::Index(0);
        let mut all = filler_groups(groups.saturating_sub(1), "arena");
        all.push(device_group);
        let arena = Arena::with_groups(all).expect("valid groups");
        let extra = filler_groups(1, "extra").pop().expect("one extra group");
        Self {
            arena,
            presented: vec![leaf.der().clone(), int2.der().clone(), int1.der().clone()],
            extra,
        }
    }
}
