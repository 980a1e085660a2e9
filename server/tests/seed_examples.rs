//! Every example of the seed (`attestation-mechanisms.txt`), as `spec/enrollment.md` restates it.

mod common;

use common::*;
use dps_server::enrollment::{LeadSelector, RejectReason, Verdict};
use dps_server::pki::CertSpec;

#[test]
fn truncated_chain_fails_when_the_missing_intermediate_is_nowhere() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    let dev = m.device("SN-1");
    assert_eq!(reason(&a, &[&dev]), Some(RejectReason::NoPath));
}

#[test]
fn truncated_chain_succeeds_when_the_device_sends_the_missing_intermediate() {
    let m = Manufacturer::new("M");
    let g = group("g", &[&m.int1, &m.root]);
    let id = g.id;
    let a = arena(vec![g]);
    let dev = m.device("SN-1");
    match judge(&a, &[&dev, &m.int2]) {
        Verdict::Accepted(acc) => {
            assert_eq!(acc.group, id);
            assert_eq!(acc.common_name, "SN-1");
            assert_eq!(acc.chain, chain(&[&dev, &m.int2, &m.int1, &m.root]));
        }
        other => panic!("expected accepted, got {other:?}"),
    }
}

#[test]
fn truncated_chain_succeeds_when_the_group_chain_contains_the_intermediate() {
    let m = Manufacturer::new("M");
    let g = group("g", &[&m.int2, &m.int1, &m.root]);
    let id = g.id;
    let a = arena(vec![g]);
    let dev = m.device("SN-1");
    let v = judge(&a, &[&dev]);
    assert_eq!(v.group(), Some(id), "{v:?}");
    if let Verdict::Accepted(acc) = v {
        assert_eq!(acc.chain, chain(&[&dev, &m.int2, &m.int1, &m.root]));
    }
}

/// Two groups: A is represented by an intermediate, B by the root. The verified chain's leaf-most
/// certificate that is some group's lead decides.
#[test]
fn leaf_most_lead_certificate_selects_the_group() {
    let m = Manufacturer::new("M");
    let other_int = m
        .root
        .issue(&CertSpec::ca("M Intermediate CA #3"))
        .expect("int3");
    let mut ga = group("A", &[&m.int2, &m.int1, &m.root]);
    ga.lead = LeadSelector::Index(1); // Int1 represents A
    let mut gb = group("B", &[&m.root]);
    gb.lead = LeadSelector::Index(0); // Root represents B
    let (ida, idb) = (ga.id, gb.id);
    let a = arena(vec![ga, gb]);

    // Device under Int2: verified chain [dev, Int2, Int1, Root]; Int1 is met before Root.
    let dev_a = m.device("SN-A");
    assert_eq!(judge(&a, &[&dev_a]).group(), Some(ida));
    // Device under Int3 (sent by the device): [dev, Int3, Root]; only Root is a lead.
    let dev_b = other_int.issue(&CertSpec::device("SN-B")).expect("dev");
    assert_eq!(judge(&a, &[&dev_b, &other_int]).group(), Some(idb));
    // Without Int3 the device has a gap.
    assert_eq!(reason(&a, &[&dev_b]), Some(RejectReason::NoPath));
}

/// The seed's third device: it authenticates, but its verified chain holds no lead certificate.
#[test]
fn authenticated_device_without_a_lead_in_its_chain_is_disconnected() {
    let m = Manufacturer::new("M");
    let int3 = m
        .int1
        .issue(&CertSpec::ca("M Intermediate CA #3"))
        .expect("int3");
    // Group A: chain [Int2, Int1, Root], represented by Int2.
    let a = arena(vec![group("A", &[&m.int2, &m.int1, &m.root])]);
    let dev = int3.issue(&CertSpec::device("SN-3")).expect("dev");
    // [dev, Int3] → Int1 (configured) → Root: authenticates, but neither Int3, Int1 nor Root leads.
    assert_eq!(reason(&a, &[&dev, &int3]), Some(RejectReason::NoGroup));
}

#[test]
fn chain_from_an_unknown_root_has_no_path() {
    let m = Manufacturer::new("M");
    let stranger = Manufacturer::new("M"); // same names, other keys
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    let dev = stranger.device("SN-X");
    let unrelated = Manufacturer::new("Other");
    let dev2 = unrelated.device("SN-Y");
    assert_eq!(
        reason(
            &a,
            &[&dev2, &unrelated.int2, &unrelated.int1, &unrelated.root]
        ),
        Some(RejectReason::NoPath)
    );
    // Same DNs as the configured chain but other keys: never authenticates.
    assert!(judge(&a, &[&dev, &stranger.int2, &stranger.int1])
        .group()
        .is_none());
}

#[test]
fn presented_order_and_duplicates_do_not_matter() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.root])]);
    let dev = m.device("SN-1");
    for presented in [
        vec![&dev, &m.int2, &m.int1],
        vec![&dev, &m.int1, &m.int2],
        vec![&dev, &m.int1, &m.int2, &m.int1, &m.int2, &dev],
        vec![&dev, &m.int2, &m.int1, &m.root],
    ] {
        let v = judge(&a, &presented);
        let Verdict::Accepted(acc) = v else {
            panic!("expected accepted, got {v:?}")
        };
        assert_eq!(acc.chain, chain(&[&dev, &m.int2, &m.int1, &m.root]));
    }
}

#[test]
fn a_group_configured_on_an_intermediate_of_a_longer_chain() {
    // The device sends everything up to the root; the group only knows Int1 and Root.
    let m = Manufacturer::new("M");
    let g = group("g", &[&m.int1, &m.root]);
    let id = g.id;
    let a = arena(vec![g]);
    let dev = m.device("SN-1");
    assert_eq!(
        judge(&a, &[&dev, &m.int2, &m.int1, &m.root]).group(),
        Some(id)
    );
}
