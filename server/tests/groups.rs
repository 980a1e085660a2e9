//! Group validation and arena updates: invalid groups are refused with which group and why; updates
//! keep every index consistent.

mod common;

use common::*;
use dps_server::enrollment::{
    Arena, CertId, EnrollmentGroup, GroupErrorKind, LeadSelector, RejectReason, Verdict,
};
use dps_server::pki::{CertSpec, Issued};
use rustls_pki_types::CertificateDer;

fn refused(g: EnrollmentGroup) -> GroupErrorKind {
    let name = g.name.clone();
    let err = Arena::with_groups(vec![g]).expect_err("group must be refused");
    assert!(
        err.to_string().contains(&name),
        "error names the group: {err}"
    );
    err.kind
}

#[test]
fn chain_out_of_order_does_not_verify() {
    let m = Manufacturer::new("M");
    let kind = refused(group("wrong-order", &[&m.root, &m.int1]));
    assert!(
        matches!(kind, GroupErrorKind::BrokenLink { index: 0, .. }),
        "{kind:?}"
    );
}

#[test]
fn chain_without_root_is_refused() {
    let m = Manufacturer::new("M");
    let kind = refused(group("no-root", &[&m.int2, &m.int1]));
    assert!(
        matches!(kind, GroupErrorKind::NoRoot { index: 1, .. }),
        "{kind:?}"
    );
}

#[test]
fn chain_with_a_forged_link_is_refused() {
    let m = Manufacturer::new("M");
    let fake_root = Issued::self_signed(&CertSpec::ca("M Root CA")).expect("fake");
    let kind = refused(group("forged", &[&m.int1, &fake_root]));
    assert!(
        matches!(kind, GroupErrorKind::BrokenLink { .. }),
        "{kind:?}"
    );
}

#[test]
fn leaf_certificate_in_a_group_chain_is_refused() {
    let m = Manufacturer::new("M");
    let dev = m.device("SN-1");
    let kind = refused(group("leaf", &[&dev, &m.int2, &m.int1, &m.root]));
    assert!(
        matches!(kind, GroupErrorKind::NotCa { index: 0, .. }),
        "{kind:?}"
    );
}

#[test]
fn garbage_certificate_is_refused() {
    let m = Manufacturer::new("M");
    let mut g = group("garbage", &[&m.root]);
    g.chain.insert(0, CertificateDer::from(vec![1, 2, 3]));
    let kind = refused(g);
    assert!(
        matches!(kind, GroupErrorKind::BadCertificate { index: 0, .. }),
        "{kind:?}"
    );
}

#[test]
fn empty_chain_name_and_owner_are_refused() {
    let m = Manufacturer::new("M");
    assert_eq!(
        refused(EnrollmentGroup::new("e", "o", vec![])),
        GroupErrorKind::EmptyChain
    );
    let mut g = group("x", &[&m.root]);
    g.owner = " ".into();
    assert_eq!(refused(g), GroupErrorKind::Empty("owner"));
    let mut g = group("y", &[&m.root]);
    g.pre_shared_key = Some("short".into());
    assert_eq!(refused(g), GroupErrorKind::ShortKey);
}

#[test]
fn lead_by_index_fingerprint_and_cn() {
    let m = Manufacturer::new("M");
    let dev = m.device("SN-1");
    let int1_fp = CertId::of(m.int1.der()).to_string();
    for lead in [
        LeadSelector::Index(1),
        LeadSelector::Name(int1_fp),
        LeadSelector::Name("M Intermediate CA #1".into()),
    ] {
        let mut g = group("g", &[&m.int2, &m.int1, &m.root]);
        g.lead = lead.clone();
        let a = arena(vec![g]);
        let v = judge(&a, &[&dev]);
        assert!(matches!(v, Verdict::Accepted(_)), "{lead:?}: {v:?}");
        let snap = a.load();
        let vg = snap.groups().next().expect("group");
        assert_eq!(vg.lead(), CertId::of(m.int1.der()), "{lead:?}");
    }
}

#[test]
fn bad_lead_selectors_are_refused() {
    let m = Manufacturer::new("M");
    for lead in [
        LeadSelector::Index(3),
        LeadSelector::Name("sha256:00".into()),
        LeadSelector::Name(format!("sha256:{}", "ab".repeat(32))),
        LeadSelector::Name("No Such CN".into()),
    ] {
        let mut g = group("g", &[&m.int2, &m.int1, &m.root]);
        g.lead = lead.clone();
        assert!(
            matches!(refused(g), GroupErrorKind::BadLead { .. }),
            "{lead:?}"
        );
    }
    // A CN that two certificates of the chain share is ambiguous.
    let root = Issued::self_signed(&CertSpec::ca("Same")).expect("root");
    let int = root.issue(&CertSpec::ca("Same")).expect("int");
    let mut g = group("g", &[&int, &root]);
    g.lead = LeadSelector::Name("Same".into());
    assert!(matches!(refused(g), GroupErrorKind::BadLead { .. }));
}

#[test]
fn duplicate_lead_across_groups_is_refused_and_names_the_other_group() {
    let m = Manufacturer::new("M");
    let first = group("first", &[&m.int1, &m.root]);
    let first_id = first.id;
    let a = arena(vec![first]);
    let second = group("second", &[&m.int1, &m.root]);
    let err = a.upsert(second).expect_err("duplicate lead");
    assert!(err.to_string().contains("second"), "{err}");
    assert!(
        matches!(err.kind, GroupErrorKind::DuplicateLead { other, .. } if other == first_id),
        "{err}"
    );
    // Same in a bulk load.
    let err = Arena::with_groups(vec![
        group("a", &[&m.int1, &m.root]),
        group("b", &[&m.int1, &m.root]),
    ])
    .expect_err("duplicate lead");
    assert!(matches!(err.kind, GroupErrorKind::DuplicateLead { .. }));
}

#[test]
fn duplicate_ids_in_a_bulk_load_are_refused() {
    let m = Manufacturer::new("M");
    let a = group("a", &[&m.int1, &m.root]);
    let mut b = group("b", &[&m.int2, &m.int1, &m.root]);
    b.id = a.id;
    let err = Arena::with_groups(vec![a, b]).expect_err("dup id");
    assert_eq!(err.kind, GroupErrorKind::DuplicateId);
}

#[test]
fn a_refused_update_leaves_the_arena_unchanged() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.int2, &m.int1, &m.root])]);
    let gen = a.load().generation();
    assert!(a.upsert(group("bad", &[&m.root, &m.int1])).is_err());
    assert!(a.replace_all(vec![group("bad", &[&m.int1])]).is_err());
    assert_eq!(a.load().generation(), gen);
    assert_eq!(a.load().len(), 1);
}

#[test]
fn insert_replace_and_delete_keep_the_indexes_consistent() {
    let m = Manufacturer::new("M");
    let dev = m.device("SN-1");
    let a = Arena::new();
    assert_eq!(reason(&a, &[&dev]), Some(RejectReason::NoPath));

    // Insert: A represented by Int2.
    let mut ga = group("A", &[&m.int2, &m.int1, &m.root]);
    a.upsert(ga.clone()).expect("insert");
    assert_eq!(judge(&a, &[&dev]).group(), Some(ga.id));

    // Replace A with a chain that no longer configures Int2: the device now has a gap.
    ga.chain = chain(&[&m.int1, &m.root]);
    a.upsert(ga.clone()).expect("replace");
    assert_eq!(a.load().len(), 1);
    assert_eq!(reason(&a, &[&dev]), Some(RejectReason::NoPath));
    assert_eq!(judge(&a, &[&dev, &m.int2]).group(), Some(ga.id));

    // B may now take Int2 as its lead (A's old lead was released by the replacement).
    let gb = group("B", &[&m.int2, &m.int1, &m.root]);
    a.upsert(gb.clone()).expect("B");
    assert_eq!(judge(&a, &[&dev]).group(), Some(gb.id));

    // Delete B: Int2 is no longer configured anywhere, Int1 still is (A).
    assert!(a.remove(&gb.id));
    assert!(!a.remove(&gb.id));
    assert_eq!(reason(&a, &[&dev]), Some(RejectReason::NoPath));
    assert_eq!(judge(&a, &[&dev, &m.int2]).group(), Some(ga.id));

    // Delete A: nothing left.
    assert!(a.remove(&ga.id));
    assert!(a.load().is_empty());
    assert_eq!(reason(&a, &[&dev, &m.int2]), Some(RejectReason::NoPath));
}

#[test]
fn a_certificate_configured_under_two_issuers_is_refused() {
    // A renewed root: same DN, same key, other validity. Int verifies under both, so two groups
    // can configure Int with different parents; the arena keeps one parent per certificate.
    let spec = CertSpec::ca("Root");
    let root_v1 = Issued::self_signed(&spec).expect("v1");
    let key = rcgen::KeyPair::from_pem(&root_v1.key_pem()).expect("key");
    let spec_v2 = spec
        .clone()
        .valid_between(now() - days(2), now() + days(7000));
    let root_v2 = Issued::self_signed_with_key(&spec_v2, key).expect("v2");
    let int = root_v1.issue(&CertSpec::ca("Int")).expect("int");
    let a = arena(vec![group("A", &[&int, &root_v1])]);
    let mut gb = group("B", &[&int, &root_v2]);
    gb.lead = LeadSelector::Index(1);
    let err = a.upsert(gb).expect_err("refused");
    assert!(
        matches!(err.kind, GroupErrorKind::ConflictingIssuer { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("\"B\""), "{err}");
}

#[test]
fn groups_sharing_cas_share_them_in_the_arena() {
    let m = Manufacturer::new("M");
    let ga = group("A", &[&m.int2, &m.int1, &m.root]);
    let mut gb = group("B", &[&m.int1, &m.root]);
    gb.lead = LeadSelector::Index(1); // the root
    let a = arena(vec![ga.clone(), gb.clone()]);
    // Removing A keeps Int1 and the root configured for B.
    assert!(a.remove(&ga.id));
    let dev = m.device("SN-1");
    assert_eq!(judge(&a, &[&dev, &m.int2]).group(), Some(gb.id));
}
