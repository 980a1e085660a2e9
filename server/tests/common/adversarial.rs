//! The nasty device chains of issue 7 ("adversarial chains"), each with the verdict the contract
//! (`spec/enrollment.md`) expects, all judged against one set of enrollment groups so that one
//! config (for `check-chain`) and one server (for TLS) serve every case.
//!
//! Not declared in `common/mod.rs` (only the tests that use it include it, with `#[path]`).

use dps_server::enrollment::{EnrollmentGroup, LeadSelector, RejectReason};
use dps_server::pki::{CertSpec, Issued};
use rcgen::{ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

/// What the contract says about a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Admitted into this group.
    Accepted(Uuid),
    /// Refused for this reason.
    Rejected(RejectReason),
}

/// What happens over TLS when it is not what attestation alone says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverTls {
    /// The handshake runs attestation and the outcome is [`Case::expect`].
    Attested,
    /// The chain never reaches attestation: the TLS layer refuses a Certificate message over its
    /// size limit (rustls: 64 KiB handshake messages). Refused, and no verdict is counted.
    TooLarge,
}

/// One device chain and its expected verdict.
pub struct Case {
    /// Stable name (test output).
    pub name: &'static str,
    /// What the device presents, leaf first.
    pub presented: Vec<CertificateDer<'static>>,
    /// The leaf's private key (any key when the leaf has none that fits: the chain is refused
    /// before the handshake signature).
    pub key: PrivateKeyDer<'static>,
    /// The contract's verdict (`check-chain` and the TLS verifier).
    pub expect: Expect,
    /// TLS behaviour.
    pub tls: OverTls,
}

/// The groups and the cases.
pub struct Adversarial {
    /// Enrollment groups every case is judged against; each has an owner UUID of its own so that
    /// the ownership resource tells over TLS which group a device landed in.
    pub groups: Vec<EnrollmentGroup>,
    /// The cases.
    pub cases: Vec<Case>,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn key_of(c: &Issued) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(c.key().serialize_der()))
}

fn clone_key(c: &Issued) -> KeyPair {
    KeyPair::from_pem(&c.key_pem()).expect("key round trip")
}

fn group(name: &str, chain: &[&Issued]) -> EnrollmentGroup {
    let mut g = EnrollmentGroup::new(
        name,
        Uuid::new_v4().to_string(),
        chain.iter().map(|c| c.der().clone()).collect(),
    );
    g.lead = LeadSelector::Index(0);
    g
}

fn ca(cn: &str) -> CertSpec {
    CertSpec::ca(cn)
}

fn dev(cn: &str) -> CertSpec {
    CertSpec::device(cn)
}

/// A builder that pushes cases.
struct Cases(Vec<Case>);

impl Cases {
    fn add(&mut self, name: &'static str, leaf: &Issued, rest: &[&Issued], expect: Expect) {
        self.add_with(name, leaf, rest, expect, OverTls::Attested);
    }

    fn add_with(
        &mut self,
        name: &'static str,
        leaf: &Issued,
        rest: &[&Issued],
        expect: Expect,
        tls: OverTls,
    ) {
        let mut presented = vec![leaf.der().clone()];
        presented.extend(rest.iter().map(|c| c.der().clone()));
        self.0.push(Case {
            name,
            presented,
            key: key_of(leaf),
            expect,
            tls,
        });
    }

    fn raw(
        &mut self,
        name: &'static str,
        presented: Vec<CertificateDer<'static>>,
        key: &Issued,
        expect: Expect,
    ) {
        self.0.push(Case {
            name,
            presented,
            key: key_of(key),
            expect,
            tls: OverTls::Attested,
        });
    }
}

/// Build every case (fresh keys each call).
pub fn build() -> Adversarial {
    use Expect::{Accepted, Rejected};
    use RejectReason as R;
    let mut groups = Vec::new();
    let mut c = Cases(Vec::new());

    // The seed's manufacturer: Root → Int1 → Int2 → devices; group A = [Int1, Root], lead Int1.
    let root = Issued::self_signed(&ca("ADV Root CA")).expect("root");
    let int1 = root.issue(&ca("ADV Intermediate CA #1")).expect("int1");
    let int2 = int1.issue(&ca("ADV Intermediate CA #2")).expect("int2");
    let ga = group("adv-a", &[&int1, &root]);
    let a = ga.id;
    groups.push(ga);
    let good = int2.issue(&dev("ADV-SN-1")).expect("dev");
    c.add("control", &good, &[&int2], Accepted(a));
    c.add("gap", &good, &[], Rejected(R::NoPath));

    // Forged intermediate: same DN as Int2 (and as its issuer Int1), other keys.
    let fake_int1 = Issued::self_signed(&ca("ADV Intermediate CA #1")).expect("fake int1");
    let forged_int2 = fake_int1
        .issue(&ca("ADV Intermediate CA #2"))
        .expect("forged");
    let forged_dev = forged_int2.issue(&dev("ADV-SN-F")).expect("dev");
    c.add(
        "forged-intermediate",
        &forged_dev,
        &[&forged_int2],
        Rejected(R::BadSignature),
    );
    c.add(
        "forged-intermediate-with-forged-issuer",
        &forged_dev,
        &[&forged_int2, &fake_int1],
        Rejected(R::BadSignature),
    );
    // A real device presenting the forged Int2: no valid path.
    c.add(
        "real-leaf-forged-intermediate",
        &good,
        &[&forged_int2],
        Rejected(R::BadSignature),
    );
    // The forged Int2 first and the real one after: the real path is found.
    c.add(
        "forged-and-real-intermediate",
        &good,
        &[&forged_int2, &int2],
        Accepted(a),
    );

    // Issuer with cA=FALSE, and a CA whose keyUsage lacks keyCertSign.
    let mut spec = ca("ADV Not A CA");
    spec.is_ca = false;
    let not_ca = int1.issue(&spec).expect("not ca");
    let d = not_ca.issue(&dev("ADV-SN-2")).expect("dev");
    c.add("issuer-ca-false", &d, &[&not_ca], Rejected(R::NotCa));
    let mut spec = ca("ADV No CertSign");
    spec.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    let no_sign = int1.issue(&spec).expect("no certsign");
    let d = no_sign.issue(&dev("ADV-SN-3")).expect("dev");
    c.add(
        "issuer-without-keycertsign",
        &d,
        &[&no_sign],
        Rejected(R::NotCa),
    );
    // A CA certificate used as the device leaf; the chain "in reverse order" (leaf last) is that.
    let mut spec = ca("ADV-SN-CA");
    spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let ca_leaf = int2.issue(&spec).expect("ca leaf");
    c.add("ca-as-leaf", &ca_leaf, &[&int2], Rejected(R::NotCa));
    c.raw(
        "reverse-order-leaf-last",
        vec![int2.der().clone(), good.der().clone()],
        &int2,
        Rejected(R::NotCa),
    );
    // Any order of the intermediates after the leaf is fine; so are duplicates and strangers.
    c.add(
        "intermediates-in-reverse-order",
        &good,
        &[&root, &int1, &int2],
        Accepted(a),
    );
    let stranger_root = Issued::self_signed(&ca("ADV Stranger Root")).expect("stranger");
    let stranger_int = stranger_root.issue(&ca("ADV Stranger Int")).expect("int");
    c.add(
        "duplicates-and-unrelated-extras",
        &good,
        &[
            &stranger_int,
            &int2,
            &good,
            &int2,
            &stranger_root,
            &int1,
            &int1,
        ],
        Accepted(a),
    );

    // pathLenConstraint exceeded: of a configured CA, and of a presented one.
    let p_root = Issued::self_signed(&ca("ADV PL Root")).expect("root");
    let mut spec = ca("ADV PL Int1");
    spec.path_len = Some(0);
    let p_int1 = p_root.issue(&spec).expect("int1");
    let p_int2 = p_int1.issue(&ca("ADV PL Int2")).expect("int2");
    let gp = group("adv-pathlen", &[&p_int1, &p_root]);
    let p = gp.id;
    groups.push(gp);
    let d = p_int2.issue(&dev("ADV-SN-4")).expect("dev");
    c.add(
        "configured-pathlen-exceeded",
        &d,
        &[&p_int2],
        Rejected(R::PathLen),
    );
    let d_ok = p_int1.issue(&dev("ADV-SN-5")).expect("dev");
    c.add("configured-pathlen-respected", &d_ok, &[], Accepted(p));
    let q_root = Issued::self_signed(&ca("ADV PQ Root")).expect("root");
    let q_int1 = q_root
        .issue(&spec_with_path_len("ADV PQ Int1", 0))
        .expect("int1");
    let q_int2 = q_int1.issue(&ca("ADV PQ Int2")).expect("int2");
    let gq = group("adv-pathlen-presented", &[&q_root]);
    groups.push(gq);
    let d = q_int2.issue(&dev("ADV-SN-6")).expect("dev");
    c.add(
        "presented-pathlen-exceeded",
        &d,
        &[&q_int2, &q_int1],
        Rejected(R::PathLen),
    );

    // Wrong EKU: leaf serverAuth only; leaf anyExtendedKeyUsage only (the contract: clientAuth
    // must be in it); an intermediate restricted to serverAuth (webpki checks EKU on
    // intermediates too: stricter than the contract's wording, refused as bad_eku); no EKU at all.
    let mut spec = dev("ADV-SN-7");
    spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let d = int2.issue(&spec).expect("dev");
    c.add("leaf-eku-server-only", &d, &[&int2], Rejected(R::BadEku));
    let mut spec = dev("ADV-SN-8");
    spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any];
    let d = int2.issue(&spec).expect("dev");
    c.add("leaf-eku-any-only", &d, &[&int2], Rejected(R::BadEku));
    let mut spec = dev("ADV-SN-9");
    spec.extended_key_usages = Vec::new();
    let d = int2.issue(&spec).expect("dev");
    c.add("leaf-without-eku", &d, &[&int2], Accepted(a));
    let mut spec = ca("ADV Server-only Int");
    spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let eku_int = int1.issue(&spec).expect("int");
    let d = eku_int.issue(&dev("ADV-SN-10")).expect("dev");
    c.add(
        "intermediate-eku-server-only",
        &d,
        &[&eku_int],
        Rejected(R::BadEku),
    );

    // Expired / not-yet-valid CAs: presented, and configured (groups are not refused for a CA's
    // validity; devices under it are, while it is outside its window).
    let expired_int = int1
        .issue(
            &ca("ADV Expired Int")
                .valid_between(now() - Duration::days(400), now() - Duration::days(1)),
        )
        .expect("int");
    let d = expired_int
        .issue(
            &dev("ADV-SN-11")
                .valid_between(now() - Duration::days(300), now() + Duration::days(300)),
        )
        .expect("dev");
    c.add(
        "presented-ca-expired",
        &d,
        &[&expired_int],
        Rejected(R::Expired),
    );
    let future_int = int1
        .issue(
            &ca("ADV Future Int")
                .valid_between(now() + Duration::days(10), now() + Duration::days(400)),
        )
        .expect("int");
    let d = future_int.issue(&dev("ADV-SN-12")).expect("dev");
    c.add(
        "presented-ca-not-yet-valid",
        &d,
        &[&future_int],
        Rejected(R::NotYetValid),
    );
    let e_root = Issued::self_signed(&ca("ADV E Root")).expect("root");
    let e_int = e_root
        .issue(
            &ca("ADV E Int").valid_between(now() - Duration::days(400), now() - Duration::days(1)),
        )
        .expect("int");
    groups.push(group("adv-expired-ca", &[&e_int, &e_root]));
    let d = e_int.issue(&dev("ADV-SN-13")).expect("dev");
    c.add("configured-ca-expired", &d, &[], Rejected(R::Expired));

    // Expired device leaf: refused by a strict group, admitted by a lenient one.
    let old = int2
        .issue(
            &dev("ADV-SN-OLD")
                .valid_between(now() - Duration::days(400), now() - Duration::days(30)),
        )
        .expect("old");
    c.add(
        "expired-leaf-strict-group",
        &old,
        &[&int2],
        Rejected(R::Expired),
    );
    let l_root = Issued::self_signed(&ca("ADV Lenient Root")).expect("root");
    let mut gl = group("adv-lenient", &[&l_root]);
    gl.expired_certificates_allowed = true;
    let l = gl.id;
    groups.push(gl);
    let old = l_root
        .issue(
            &dev("ADV-SN-OLD2")
                .valid_between(now() - Duration::days(400), now() - Duration::days(30)),
        )
        .expect("old");
    c.add("expired-leaf-lenient-group", &old, &[], Accepted(l));

    // Depth: 20 presented intermediates exceed the verifier's bound on presented sub-CAs (webpki:
    // 6) and are refused as no_path; the same 20 configured are walked and admitted.
    let d_root = Issued::self_signed(&ca("ADV Deep Root")).expect("root");
    let mut deep = vec![d_root.issue(&ca("ADV Deep Int 1")).expect("int")];
    for i in 2..=20 {
        let next = deep[deep.len() - 1]
            .issue(&ca(&format!("ADV Deep Int {i}")))
            .expect("int");
        deep.push(next);
    }
    groups.push(group("adv-deep-root", &[&d_root]));
    let deepest = &deep[19];
    let d = deepest.issue(&dev("ADV-SN-14")).expect("dev");
    let presented: Vec<&Issued> = deep.iter().rev().collect();
    c.add("twenty-deep-presented", &d, &presented, Rejected(R::NoPath));
    let s_root = Issued::self_signed(&ca("ADV Deep2 Root")).expect("root");
    let mut deep2 = vec![s_root.issue(&ca("ADV Deep2 Int 1")).expect("int")];
    for i in 2..=20 {
        let next = deep2[deep2.len() - 1]
            .issue(&ca(&format!("ADV Deep2 Int {i}")))
            .expect("int");
        deep2.push(next);
    }
    let mut configured: Vec<&Issued> = deep2.iter().rev().collect();
    configured.push(&s_root);
    let gd = group("adv-deep-configured", &configured);
    let deep_group = gd.id;
    groups.push(gd);
    let d = deep2[19].issue(&dev("ADV-SN-15")).expect("dev");
    c.add("twenty-deep-configured", &d, &[], Accepted(deep_group));

    // Cross-signed CA: X under root CR1 and (same name, same key) under root CR2; only CR2 is
    // configured.
    let cr1 = Issued::self_signed(&ca("ADV Cross Root 1")).expect("cr1");
    let cr2 = Issued::self_signed(&ca("ADV Cross Root 2")).expect("cr2");
    let x1 = cr1.issue(&ca("ADV Cross X")).expect("x1");
    let x2 = cr2
        .issue_with_key(&ca("ADV Cross X"), clone_key(&x1))
        .expect("x2");
    let gc = group("adv-cross", &[&cr2]);
    let cross = gc.id;
    groups.push(gc);
    let d = x1.issue(&dev("ADV-SN-16")).expect("dev");
    c.add(
        "cross-signed-wrong-branch-only",
        &d,
        &[&x1],
        Rejected(R::NoPath),
    );
    c.add(
        "cross-signed-both-branches",
        &d,
        &[&x1, &x2],
        Accepted(cross),
    );
    c.add(
        "cross-signed-configured-branch",
        &d,
        &[&x2],
        Accepted(cross),
    );

    // Huge certificates: ~40 KiB is an ordinary certificate. ~100 KiB is malformed for the
    // verifier (webpki reads DER lengths up to 64 KiB), and over TLS it never gets that far: the
    // Certificate message exceeds rustls's 64 KiB handshake message limit.
    let big = |cn: &str, names: usize| {
        let mut spec = dev(cn);
        spec.subject_alt_names = (0..names)
            .map(|i| {
                SanType::DnsName(
                    format!("device-{i:06}.example.invalid")
                        .try_into()
                        .expect("dns"),
                )
            })
            .collect();
        int2.issue(&spec).expect("big")
    };
    let large = big("ADV-SN-LARGE", 1400);
    c.add("large-leaf-40k", &large, &[&int2], Accepted(a));
    let huge = big("ADV-SN-HUGE", 3600);
    c.add_with(
        "huge-leaf-100k",
        &huge,
        &[&int2],
        Rejected(R::Malformed),
        OverTls::TooLarge,
    );

    // Garbage DER: as the leaf, and as an intermediate after a real leaf.
    let garbage = CertificateDer::from(vec![0x30, 0x82, 0x01, 0x00, 0x30, 0x03, 0x02, 0x01, 0x05]);
    c.raw(
        "garbage-leaf",
        vec![garbage.clone()],
        &good,
        Rejected(R::Malformed),
    );
    c.raw(
        "garbage-intermediate",
        vec![good.der().clone(), garbage, int2.der().clone()],
        &good,
        Rejected(R::Malformed),
    );
    let mut truncated = int2.der().to_vec();
    truncated.truncate(truncated.len() - 10);
    c.raw(
        "truncated-intermediate",
        vec![good.der().clone(), CertificateDer::from(truncated)],
        &good,
        Rejected(R::Malformed),
    );

    // A cycle: A signs B and B signs A; the device hangs under A; nothing configured above them.
    let a0 = Issued::self_signed(&ca("ADV Cycle A")).expect("a0");
    let b0 = Issued::self_signed(&ca("ADV Cycle B")).expect("b0");
    let a_by_b = b0
        .issue_with_key(&ca("ADV Cycle A"), clone_key(&a0))
        .expect("a'");
    let b_by_a = a0
        .issue_with_key(&ca("ADV Cycle B"), clone_key(&b0))
        .expect("b'");
    let d = a_by_b.issue(&dev("ADV-SN-17")).expect("dev");
    c.add("cycle", &d, &[&a_by_b, &b_by_a], Rejected(R::NoPath));

    // Authenticated, but the lead is not on the verified chain: a sibling of the lead.
    let n_root = Issued::self_signed(&ca("ADV N Root")).expect("root");
    let n_lead = n_root.issue(&ca("ADV N Lead")).expect("lead");
    let n_sibling = n_root.issue(&ca("ADV N Sibling")).expect("sibling");
    groups.push(group("adv-no-group", &[&n_lead, &n_root]));
    let d = n_sibling.issue(&dev("ADV-SN-18")).expect("dev");
    c.add("lead-not-on-path", &d, &[&n_sibling], Rejected(R::NoGroup));

    Adversarial { groups, cases: c.0 }
}

fn spec_with_path_len(cn: &str, n: u8) -> CertSpec {
    let mut s = ca(cn);
    s.path_len = Some(n);
    s
}
