//! The verified-link cache: after one device has been validated, the links among the presented CA
//! certificates it shares with later devices are not verified again, and nothing that must still
//! fail does pass: gaps, forged look-alikes, expired or constrained CAs, a changed arena.

mod common;

use common::*;
use dps_server::enrollment::{RejectReason, Verdict};
use dps_server::pki::{CertSpec, Issued};

/// Root → Int1 (configured with Root, the lead) → Int2 → Int3 (presented) → devices.
struct Deep {
    m: Manufacturer,
    int3: Issued,
}

fn deep() -> Deep {
    let m = Manufacturer::new("L");
    let int3 = m
        .int2
        .issue(&CertSpec::ca("L Intermediate CA #3"))
        .expect("int3");
    Deep { m, int3 }
}

impl Deep {
    fn device(&self, cn: &str) -> Issued {
        self.int3.issue(&CertSpec::device(cn)).expect("device")
    }
}

#[test]
fn later_devices_of_the_same_intermediates_go_through_the_cache() {
    let d = deep();
    let a = arena(vec![group("g", &[&d.m.int1, &d.m.root])]);
    let first = judge(&a, &[&d.device("SN-1"), &d.int3, &d.m.int2]);
    assert!(matches!(first, Verdict::Accepted(_)), "{first:?}");
    assert_eq!(a.load().cached_links(), 2, "Int3→Int2 and Int2→Int1");
    assert_eq!(a.load().link_cache_hits(), 0);
    for n in 2..5 {
        // Order of presentation does not matter.
        let v = judge(&a, &[&d.device(&format!("SN-{n}")), &d.m.int2, &d.int3]);
        let Verdict::Accepted(acc) = v else {
            panic!("{v:?}")
        };
        assert_eq!(acc.chain.len(), 5, "leaf, Int3, Int2, Int1, Root");
    }
    assert_eq!(a.load().link_cache_hits(), 3);
}

#[test]
fn a_cached_link_does_not_bridge_a_gap() {
    let d = deep();
    let a = arena(vec![group("g", &[&d.m.int1, &d.m.root])]);
    assert!(matches!(
        judge(&a, &[&d.device("SN-1"), &d.int3, &d.m.int2]),
        Verdict::Accepted(_)
    ));
    // Int3's cached parent is Int2, which this device does not present.
    assert_eq!(
        reason(&a, &[&d.device("SN-2"), &d.int3]),
        Some(RejectReason::NoPath)
    );
}

#[test]
fn a_look_alike_of_a_cached_intermediate_is_still_checked() {
    let d = deep();
    let a = arena(vec![group("g", &[&d.m.int1, &d.m.root])]);
    assert!(matches!(
        judge(&a, &[&d.device("SN-1"), &d.int3, &d.m.int2]),
        Verdict::Accepted(_)
    ));
    // Same DN as Int3, signed by itself: another certificate, not in the cache.
    let forged = Issued::self_signed(&CertSpec::ca("L Intermediate CA #3")).expect("forged");
    let dev = forged.issue(&CertSpec::device("SN-X")).expect("dev");
    let r = reason(&a, &[&dev, &forged, &d.m.int2]);
    assert!(
        matches!(r, Some(RejectReason::BadSignature | RejectReason::NoPath)),
        "{r:?}"
    );
    // A leaf signed by another key under the real Int3's name fails its own signature check.
    let other = Issued::self_signed(&CertSpec::ca("L Intermediate CA #3")).expect("other");
    let dev = other.issue(&CertSpec::device("SN-Y")).expect("dev");
    assert_eq!(
        reason(&a, &[&dev, &d.int3, &d.m.int2]),
        Some(RejectReason::BadSignature)
    );
}

#[test]
fn a_publish_empties_the_cache() {
    let d = deep();
    let a = arena(vec![group("g", &[&d.m.int1, &d.m.root])]);
    assert!(matches!(
        judge(&a, &[&d.device("SN-1"), &d.int3, &d.m.int2]),
        Verdict::Accepted(_)
    ));
    assert_eq!(a.load().cached_links(), 2);
    let other = Manufacturer::new("O");
    a.upsert(group("other", &[&other.int1, &other.root]))
        .expect("upsert");
    assert_eq!(a.load().cached_links(), 0);
    // The group is removed: the remembered path must not lead into it.
    let id = a
        .load()
        .groups()
        .find(|g| g.def.name == "g")
        .map(|g| g.def.id)
        .expect("group");
    assert!(matches!(
        judge(&a, &[&d.device("SN-2"), &d.int3, &d.m.int2]),
        Verdict::Accepted(_)
    ));
    assert!(a.remove(&id));
    assert_eq!(
        reason(&a, &[&d.device("SN-3"), &d.int3, &d.m.int2]),
        Some(RejectReason::NoPath)
    );
}

#[test]
fn path_length_is_checked_on_cached_paths() {
    // Int3 allows no CA below it; a device under a further CA below Int3 must fail even once
    // Int3's link is cached.
    let m = Manufacturer::new("P");
    let mut spec = CertSpec::ca("P Intermediate CA #3");
    spec.path_len = Some(0);
    let int3 = m.int2.issue(&spec).expect("int3");
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    let dev = int3.issue(&CertSpec::device("SN-1")).expect("dev");
    assert!(matches!(
        judge(&a, &[&dev, &int3, &m.int2]),
        Verdict::Accepted(_)
    ));
    assert!(a.load().cached_links() >= 2);
    let int4 = int3
        .issue(&CertSpec::ca("P Intermediate CA #4"))
        .expect("int4");
    let dev = int4.issue(&CertSpec::device("SN-2")).expect("dev");
    assert_eq!(
        reason(&a, &[&dev, &int4, &int3, &m.int2]),
        Some(RejectReason::PathLen)
    );
}

#[test]
fn a_cached_intermediate_past_its_validity_is_refused() {
    let m = Manufacturer::new("E");
    let short =
        CertSpec::ca("E Intermediate CA #3").valid_between(now() - days(1), now() + days(30));
    let int3 = m.int2.issue(&short).expect("int3");
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    let dev = int3.issue(&CertSpec::device("SN-1")).expect("dev");
    assert!(matches!(
        judge(&a, &[&dev, &int3, &m.int2]),
        Verdict::Accepted(_)
    ));
    assert!(a.load().cached_links() >= 2);
    let later = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        (now() + days(60)).unix_timestamp().unsigned_abs(),
    ));
    let v = a
        .load()
        .authenticate(&chain(&[&dev, &int3, &m.int2]), later);
    assert_eq!(v.reason(), Some(RejectReason::Expired), "{v:?}");
}
