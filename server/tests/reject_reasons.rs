//! One fixture per rejection reason, each valid in every respect but one.

mod common;

use common::*;
use dps_server::enrollment::{RejectReason, Verdict};
use dps_server::pki::{CertSpec, Issued};
use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, UnixTime};

/// The control: the same set-up with nothing wrong is accepted.
#[test]
fn control_fixture_is_accepted() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    assert!(matches!(
        judge(&a, &[&m.device("SN-1"), &m.int2]),
        Verdict::Accepted(_)
    ));
}

#[test]
fn no_path_for_a_gap() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    assert_eq!(reason(&a, &[&m.device("SN-1")]), Some(RejectReason::NoPath));
}

#[test]
fn bad_signature_for_a_leaf_signed_by_a_forged_ca() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.int2, &m.int1, &m.root])]);
    // Same subject DN as the configured Int2, another key.
    let forged = Issued::self_signed(&CertSpec::ca("M Intermediate CA #2")).expect("forged");
    let dev = forged.issue(&CertSpec::device("SN-1")).expect("dev");
    assert_eq!(reason(&a, &[&dev]), Some(RejectReason::BadSignature));
}

#[test]
fn forged_intermediate_never_authenticates() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    // A forged Int2 claiming to be issued by the real Int1 (same issuer DN), signed by another key.
    let fake_int1 = Issued::self_signed(&CertSpec::ca("M Intermediate CA #1")).expect("fake int1");
    let forged_int2 = fake_int1
        .issue(&CertSpec::ca("M Intermediate CA #2"))
        .expect("forged int2");
    let dev = forged_int2.issue(&CertSpec::device("SN-1")).expect("dev");
    assert_eq!(
        reason(&a, &[&dev, &forged_int2]),
        Some(RejectReason::BadSignature)
    );
    // Presenting the fake Int1 too changes nothing: the configured Int1 is the one trusted.
    assert_eq!(
        reason(&a, &[&dev, &forged_int2, &fake_int1]),
        Some(RejectReason::BadSignature)
    );
    // And a real device signed by the real Int2 but sent with the forged Int2 still fails:
    // the forged certificate is not the real Int2 (different key), so there is no valid path.
    let real_dev = m.device("SN-2");
    assert!(judge(&a, &[&real_dev, &forged_int2]).group().is_none());
}

#[test]
fn not_ca_for_an_issuer_with_ca_false() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    let mut spec = CertSpec::ca("M Intermediate CA #2");
    spec.is_ca = false;
    let fake_ca = m.int1.issue(&spec).expect("int");
    let dev = fake_ca.issue(&CertSpec::device("SN-1")).expect("dev");
    assert_eq!(reason(&a, &[&dev, &fake_ca]), Some(RejectReason::NotCa));
}

#[test]
fn not_ca_for_an_issuer_without_key_cert_sign() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    let mut spec = CertSpec::ca("M Intermediate CA #2");
    spec.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let int = m.int1.issue(&spec).expect("int");
    let dev = int.issue(&CertSpec::device("SN-1")).expect("dev");
    assert_eq!(reason(&a, &[&dev, &int]), Some(RejectReason::NotCa));
}

#[test]
fn not_ca_for_a_ca_certificate_used_as_the_leaf() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    let mut spec = CertSpec::ca("SN-1");
    spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ca_leaf = m.int2.issue(&spec).expect("leaf");
    assert_eq!(reason(&a, &[&ca_leaf, &m.int2]), Some(RejectReason::NotCa));
}

#[test]
fn path_len_of_a_configured_ca() {
    let root = Issued::self_signed(&CertSpec::ca("P Root")).expect("root");
    let mut spec = CertSpec::ca("P Int1");
    spec.path_len = Some(0);
    let int1 = root.issue(&spec).expect("int1");
    let int2 = int1.issue(&CertSpec::ca("P Int2")).expect("int2");
    let dev = int2.issue(&CertSpec::device("SN-1")).expect("dev");
    let a = arena(vec![group("g", &[&int1, &root])]);
    assert_eq!(reason(&a, &[&dev, &int2]), Some(RejectReason::PathLen));
    // A device directly under Int1 is within the constraint.
    let dev_ok = int1.issue(&CertSpec::device("SN-2")).expect("dev");
    assert!(matches!(judge(&a, &[&dev_ok]), Verdict::Accepted(_)));
}

#[test]
fn path_len_of_a_presented_ca() {
    let root = Issued::self_signed(&CertSpec::ca("Q Root")).expect("root");
    let mut spec = CertSpec::ca("Q Int1");
    spec.path_len = Some(0);
    let int1 = root.issue(&spec).expect("int1");
    let int2 = int1.issue(&CertSpec::ca("Q Int2")).expect("int2");
    let dev = int2.issue(&CertSpec::device("SN-1")).expect("dev");
    let a = arena(vec![group("g", &[&root])]);
    assert_eq!(
        reason(&a, &[&dev, &int2, &int1]),
        Some(RejectReason::PathLen)
    );
}

#[test]
fn expired_leaf_is_rejected_unless_the_group_allows_it() {
    let m = Manufacturer::new("M");
    let spec = CertSpec::device("SN-OLD").valid_between(now() - days(400), now() - days(30));
    let dev = m.int2.issue(&spec).expect("dev");
    let strict = arena(vec![group("g", &[&m.int2, &m.int1, &m.root])]);
    assert_eq!(reason(&strict, &[&dev]), Some(RejectReason::Expired));

    let mut lenient_group = group("g", &[&m.int2, &m.int1, &m.root]);
    lenient_group.expired_certificates_allowed = true;
    let id = lenient_group.id;
    let lenient = arena(vec![lenient_group]);
    match judge(&lenient, &[&dev]) {
        Verdict::Accepted(acc) => {
            assert_eq!(acc.group, id);
            assert!(acc.expired_leaf_allowed);
        }
        other => panic!("expected accepted, got {other:?}"),
    }
}

/// CAs created after the leaf expired (a common fixture, and a renewed CA in the field): no single
/// time suits the whole path, yet the group's policy must still decide.
#[test]
fn expired_leaf_under_younger_cas_follows_the_group_policy() {
    let m = Manufacturer::new("Y"); // CAs valid from yesterday
    let spec = CertSpec::device("SN-OLD").valid_between(now() - days(400), now() - days(30));
    let dev = m.int2.issue(&spec).expect("dev");
    for presented_int2 in [true, false] {
        let chain_certs: &[&Issued] = if presented_int2 {
            &[&m.int1, &m.root]
        } else {
            &[&m.int2, &m.int1, &m.root]
        };
        let presented: &[&Issued] = if presented_int2 {
            &[&dev, &m.int2]
        } else {
            &[&dev]
        };
        let strict = arena(vec![group("strict", chain_certs)]);
        assert_eq!(reason(&strict, presented), Some(RejectReason::Expired));
        let mut g = group("lenient", chain_certs);
        g.expired_certificates_allowed = true;
        let id = g.id;
        let lenient = arena(vec![g]);
        let v = judge(&lenient, presented);
        assert_eq!(
            v.group(),
            Some(id),
            "presented Int2: {presented_int2}: {v:?}"
        );
        if let Verdict::Accepted(acc) = v {
            assert_eq!(acc.chain, chain(&[&dev, &m.int2, &m.int1, &m.root]));
        }
    }
    // Still a gap without Int2 anywhere, and a forged issuer still fails.
    let lenient_gap = {
        let mut g = group("gap", &[&m.int1, &m.root]);
        g.expired_certificates_allowed = true;
        arena(vec![g])
    };
    assert_eq!(reason(&lenient_gap, &[&dev]), Some(RejectReason::NoPath));
    let forged = m
        .int1
        .issue(&CertSpec::ca("Y Intermediate CA #2"))
        .expect("other int2");
    assert_eq!(
        reason(&lenient_gap, &[&dev, &forged]),
        Some(RejectReason::BadSignature)
    );
}

#[test]
fn expired_ca_is_rejected_even_when_the_group_allows_expired_leaves() {
    let root = Issued::self_signed(&CertSpec::ca("E Root")).expect("root");
    let old = CertSpec::ca("E Int").valid_between(now() - days(800), now() - days(10));
    let int = root.issue(&old).expect("int");
    // The device is valid now; only its issuing CA expired.
    let dev = int.issue(&CertSpec::device("SN-1")).expect("dev");
    let mut g = group("g", &[&root]);
    g.expired_certificates_allowed = true;
    let a = arena(vec![g]);
    assert_eq!(reason(&a, &[&dev, &int]), Some(RejectReason::Expired));
    // The same CA configured on the group instead of presented.
    let mut g2 = group("g2", &[&int, &root]);
    g2.expired_certificates_allowed = true;
    let a2 = arena(vec![g2]);
    assert_eq!(reason(&a2, &[&dev]), Some(RejectReason::Expired));
}

#[test]
fn not_yet_valid_leaf() {
    let m = Manufacturer::new("M");
    let spec = CertSpec::device("SN-NEW").valid_between(now() + days(10), now() + days(400));
    let dev = m.int2.issue(&spec).expect("dev");
    let a = arena(vec![group("g", &[&m.int2, &m.int1, &m.root])]);
    assert_eq!(reason(&a, &[&dev]), Some(RejectReason::NotYetValid));
}

#[test]
fn bad_eku_for_a_server_only_leaf() {
    let m = Manufacturer::new("M");
    let mut spec = CertSpec::device("SN-1");
    spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let dev = m.int2.issue(&spec).expect("dev");
    let a = arena(vec![group("g", &[&m.int2, &m.int1, &m.root])]);
    assert_eq!(reason(&a, &[&dev]), Some(RejectReason::BadEku));
}

#[test]
fn leaf_without_eku_is_usable_for_client_auth() {
    let m = Manufacturer::new("M");
    let mut spec = CertSpec::device("SN-1");
    spec.extended_key_usages.clear();
    let dev = m.int2.issue(&spec).expect("dev");
    let a = arena(vec![group("g", &[&m.int2, &m.int1, &m.root])]);
    assert!(matches!(judge(&a, &[&dev]), Verdict::Accepted(_)));
}

#[test]
fn no_group_when_no_lead_is_in_the_verified_chain() {
    let m = Manufacturer::new("M");
    let sibling = m.int1.issue(&CertSpec::ca("M Sibling")).expect("sibling");
    let dev = sibling.issue(&CertSpec::device("SN-1")).expect("dev");
    let a = arena(vec![group("g", &[&m.int2, &m.int1, &m.root])]);
    assert_eq!(reason(&a, &[&dev, &sibling]), Some(RejectReason::NoGroup));
}

#[test]
fn denied_by_the_deny_list_even_when_allowed() {
    let m = Manufacturer::new("M");
    let mut g = group("g", &[&m.int2, &m.int1, &m.root]);
    g.deny_common_names = vec!["SN-13".into()];
    g.allow_common_names = vec!["SN-13".into(), "SN-14".into()];
    let a = arena(vec![g]);
    assert_eq!(
        reason(&a, &[&m.device("SN-13")]),
        Some(RejectReason::Denied)
    );
    assert_eq!(reason(&a, &[&m.device("SN-14")]), None);
}

#[test]
fn not_allowed_when_the_allow_list_misses_the_cn() {
    let m = Manufacturer::new("M");
    let mut g = group("g", &[&m.int2, &m.int1, &m.root]);
    g.allow_common_names = vec!["SN-1".into()];
    let a = arena(vec![g]);
    assert_eq!(
        reason(&a, &[&m.device("SN-2")]),
        Some(RejectReason::NotAllowed)
    );
    assert_eq!(reason(&a, &[&m.device("SN-1")]), None);
}

#[test]
fn lists_apply_to_the_selected_group_only() {
    let m = Manufacturer::new("M");
    let mut ga = group("A", &[&m.int2, &m.int1, &m.root]);
    ga.deny_common_names = vec!["SN-1".into()];
    let mut gb = group("B", &[&m.root]);
    gb.allow_common_names = vec!["nobody".into()];
    let a = arena(vec![ga, gb]);
    // Selected into A (Int2 leads A) and denied there; B's allow list is never consulted.
    assert_eq!(reason(&a, &[&m.device("SN-1")]), Some(RejectReason::Denied));
}

#[test]
fn malformed_leaf_or_intermediate() {
    let m = Manufacturer::new("M");
    let a = arena(vec![group("g", &[&m.int1, &m.root])]);
    let snap = a.load();
    let garbage = CertificateDer::from(vec![0x30, 0x82, 0x01, 0x00, 0xde, 0xad]);
    assert_eq!(
        snap.authenticate(std::slice::from_ref(&garbage), UnixTime::now())
            .reason(),
        Some(RejectReason::Malformed)
    );
    let dev = m.device("SN-1");
    assert_eq!(
        snap.authenticate(&[dev.der().clone(), garbage], UnixTime::now())
            .reason(),
        Some(RejectReason::Malformed)
    );
    assert_eq!(
        snap.authenticate(&[], UnixTime::now()).reason(),
        Some(RejectReason::Malformed)
    );
}

#[test]
fn ed25519_and_p384_chains_authenticate() {
    use dps_server::pki::KeyAlg;
    let root =
        Issued::self_signed(&CertSpec::ca("K Root").with_key(KeyAlg::EcdsaP384)).expect("root");
    let int = root
        .issue(&CertSpec::ca("K Int").with_key(KeyAlg::Ed25519))
        .expect("int");
    let dev = int
        .issue(&CertSpec::device("SN-1").with_key(KeyAlg::Ed25519))
        .expect("dev");
    let a = arena(vec![group("g", &[&int, &root])]);
    assert!(matches!(judge(&a, &[&dev]), Verdict::Accepted(_)));
}
