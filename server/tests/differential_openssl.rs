//! Differential test against OpenSSL (issue 7, part 3): random chain topologies judged by
//! `check-chain` (the library entry the CLI runs; the binary itself on every 25th case) and by
//! `openssl verify -partial_chain -purpose sslclient` with the group chain as the trusted store and
//! the presented certificates as untrusted. They must agree on accept/reject, except where the
//! contract deliberately differs; those cases are recognised explicitly (see [`Difference`]).
//!
//! `DIFF_CASES` (default 1000) and `DIFF_SEED` (default fixed) choose the run; a failure prints the
//! seed and the case index. The topology is reproducible from the seed (keys are fresh each run;
//! no verdict depends on key bytes).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use dps_server::check_chain::check_chain;
use dps_server::enrollment::{Arena, EnrollmentGroup, LeadSelector, RejectReason, Verdict};
use dps_server::pki::{chain_pem, CertSpec, Issued, PkiError};
use rcgen::{ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose};
use rustls_pki_types::{CertificateDer, UnixTime};
use time::{Duration, OffsetDateTime};

/// SplitMix64: small, seedable, good enough to pick topologies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Window {
    Valid,
    Expired,
    NotYetValid,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eku {
    None,
    Client,
    Server,
    ClientAndServer,
    Any,
}

/// One certificate of the topology, as drawn.
#[derive(Debug, Clone)]
struct Node {
    window: Window,
    is_ca: bool,
    key_cert_sign: bool,
    path_len: Option<u8>,
    eku: Eku,
}

/// A drawn case: CAs `cas[0]` (root) … `cas[d-1]`, the leaf under `cas[d-1]`; the group chain is
/// `cas[..=configured_to]` reversed (leaf-most first); the device presents `presented` (indexes
/// into `cas`, in this order) after its leaf.
#[derive(Debug, Clone)]
struct Topology {
    cas: Vec<Node>,
    leaf: Node,
    configured_to: usize,
    presented: Vec<usize>,
    /// Replace this presented CA with a same-name certificate under another key.
    forged: Option<usize>,
    /// Also present an unrelated CA.
    stranger: bool,
    expired_allowed: bool,
}

fn draw(rng: &mut Rng) -> Topology {
    let depth = 1 + rng.below(5) as usize; // CAs including the root
    let configured_to = rng.below(depth as u64) as usize;
    let window = |rng: &mut Rng, p_bad: u64| match rng.below(100) {
        x if x < p_bad => Window::Expired,
        x if x < 2 * p_bad => Window::NotYetValid,
        _ => Window::Valid,
    };
    let mut cas = Vec::with_capacity(depth);
    for i in 0..depth {
        let presented_only = i > configured_to;
        cas.push(Node {
            window: window(rng, 4),
            is_ca: !(presented_only && rng.chance(6)),
            key_cert_sign: !(presented_only && rng.chance(6)),
            path_len: if rng.chance(25) {
                Some(rng.below(3) as u8)
            } else {
                None
            },
            eku: match rng.below(100) {
                0..=79 => Eku::None,
                80..=87 => Eku::Client,
                88..=94 => Eku::Server,
                _ => Eku::ClientAndServer,
            },
        });
    }
    let leaf = Node {
        window: window(rng, 8),
        is_ca: rng.chance(4),
        key_cert_sign: false,
        path_len: None,
        eku: match rng.below(100) {
            0..=64 => Eku::Client,
            65..=74 => Eku::None,
            75..=84 => Eku::ClientAndServer,
            85..=94 => Eku::Server,
            _ => Eku::Any,
        },
    };
    // Needed: the CAs between the leaf and the group chain; each is usually sent, sometimes not
    // (a gap). Configured ones are sometimes sent too.
    let mut presented = Vec::new();
    for i in 0..depth {
        let needed = i > configured_to;
        if (needed && !rng.chance(12)) || (!needed && rng.chance(15)) {
            presented.push(i);
        }
    }
    if rng.chance(10) {
        if let Some(&dup) = presented.first() {
            presented.push(dup);
        }
    }
    // Any order.
    for i in (1..presented.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        presented.swap(i, j);
    }
    let forged = (!presented.is_empty() && rng.chance(6))
        .then(|| presented[rng.below(presented.len() as u64) as usize]);
    Topology {
        cas,
        leaf,
        configured_to,
        presented,
        forged,
        stranger: rng.chance(10),
        expired_allowed: rng.chance(30),
    }
}

fn spec(node: &Node, cn: String) -> CertSpec {
    let now = OffsetDateTime::now_utc();
    let mut s = if node.is_ca && node.key_cert_sign {
        CertSpec::ca(cn)
    } else if node.is_ca {
        let mut s = CertSpec::ca(cn);
        s.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
        s
    } else {
        CertSpec::device(cn)
    };
    s.is_ca = node.is_ca;
    s.path_len = node.path_len.filter(|_| node.is_ca);
    s.extended_key_usages = match node.eku {
        Eku::None => vec![],
        Eku::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Eku::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Eku::ClientAndServer => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
        Eku::Any => vec![ExtendedKeyUsagePurpose::Any],
    };
    let (from, to) = match node.window {
        Window::Valid => (now - Duration::days(30), now + Duration::days(3000)),
        Window::Expired => (now - Duration::days(600), now - Duration::days(10)),
        Window::NotYetValid => (now + Duration::days(10), now + Duration::days(600)),
    };
    s.valid_between(from, to)
}

/// Keys made once and reused by position (a CA at depth i always signs with key i): cheap, and no
/// two certificates of one chain share a key.
struct Keys(Vec<String>);

impl Keys {
    fn new() -> Self {
        Self(
            (0..8)
                .map(|_| KeyPair::generate().expect("key").serialize_pem())
                .collect(),
        )
    }
    fn get(&self, i: usize) -> KeyPair {
        KeyPair::from_pem(&self.0[i]).expect("key")
    }
}

/// The certificates of a topology.
struct Built {
    group: EnrollmentGroup,
    presented: Vec<CertificateDer<'static>>,
}

fn build(t: &Topology, n: usize, keys: &Keys) -> Result<Built, PkiError> {
    let cn = |what: &str| format!("D{n} {what}");
    let mut cas: Vec<Issued> = Vec::with_capacity(t.cas.len());
    for (i, node) in t.cas.iter().enumerate() {
        let s = spec(node, cn(&format!("CA{i}")));
        let c = match cas.last() {
            None => Issued::self_signed_with_key(&s, keys.get(i))?,
            Some(parent) => parent.issue_with_key(&s, keys.get(i))?,
        };
        cas.push(c);
    }
    let leaf_issuer = cas.last().expect("at least a root");
    let leaf = leaf_issuer.issue_with_key(&spec(&t.leaf, cn("Device")), keys.get(6))?;
    let mut presented = vec![leaf.der().clone()];
    for &i in &t.presented {
        if t.forged == Some(i) {
            // Same subject and issuer names, another key, signed by a stranger with the issuer's name.
            let s = spec(&t.cas[i], cn(&format!("CA{i}")));
            let fake_issuer_name = if i == 0 {
                cn("CA0")
            } else {
                cn(&format!("CA{}", i - 1))
            };
            let fake_issuer =
                Issued::self_signed_with_key(&CertSpec::ca(fake_issuer_name), keys.get(7))?;
            let forged = fake_issuer.issue_with_key(&s, keys.get(7))?;
            presented.push(forged.der().clone());
        } else {
            presented.push(cas[i].der().clone());
        }
    }
    if t.stranger {
        let s = Issued::self_signed_with_key(&CertSpec::ca(cn("Stranger")), keys.get(7))?;
        presented.push(s.der().clone());
    }
    let mut group = EnrollmentGroup::new(
        format!("diff-{n}"),
        "acme",
        cas[..=t.configured_to]
            .iter()
            .rev()
            .map(|c| c.der().clone())
            .collect(),
    );
    group.lead = LeadSelector::Index(0);
    group.expired_certificates_allowed = t.expired_allowed;
    Ok(Built { group, presented })
}

/// What `openssl verify` said: accepted, or the errors it reported (`code`, `depth`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct OpenSsl {
    ok: bool,
    errors: Vec<(u32, u32)>,
    text: String,
}

// X509_V_ERR_* codes used below.
const CERT_NOT_YET_VALID: u32 = 9;
const CERT_HAS_EXPIRED: u32 = 10;
const INVALID_PURPOSE: u32 = 26;

fn openssl_verify(dir: &Path, built: &Built) -> OpenSsl {
    let trusted = dir.join("trusted.pem");
    let untrusted = dir.join("untrusted.pem");
    let leaf = dir.join("leaf.pem");
    std::fs::write(&trusted, chain_pem(&built.group.chain)).expect("write");
    std::fs::write(&leaf, chain_pem(&built.presented[..1])).expect("write");
    let mut cmd = Command::new("openssl");
    cmd.args([
        "verify",
        "-partial_chain",
        "-purpose",
        "sslclient",
        "-CAfile",
    ])
    .arg(&trusted);
    if built.presented.len() > 1 {
        std::fs::write(&untrusted, chain_pem(&built.presented[1..])).expect("write");
        cmd.arg("-untrusted").arg(&untrusted);
    }
    let out = cmd.arg(&leaf).output().expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // "error 10 at 0 depth lookup: certificate has expired"
    let errors = text
        .lines()
        .filter_map(|l| {
            let rest = l.split("error ").nth(1)?;
            let mut words = rest.split_whitespace();
            let code = words.next()?.parse().ok()?;
            let _at = words.next()?;
            let depth = words.next()?.parse().ok()?;
            Some((code, depth))
        })
        .collect();
    OpenSsl {
        ok: out.status.success(),
        errors,
        text,
    }
}

/// Where the contract deliberately differs from `openssl verify -purpose sslclient`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Difference {
    /// The group allows expired device certificates: the leaf's own validity is not held
    /// against it (OpenSSL: error 9/10 at depth 0 only).
    ExpiredLeafAllowed,
    /// A CA certificate as the device leaf: refused (`not_ca`); OpenSSL accepts it.
    CaAsLeaf,
    /// A configured (trusted) CA restricted by EKU to other purposes: configured certificates are
    /// trust anchors whose EKU the contract does not constrain; OpenSSL's purpose check covers
    /// the trust anchor too (error 26 at a depth of the configured part).
    ConfiguredCaEku,
    /// A configured CA *above* the leaf-most configured one is outside its validity window or
    /// has a pathLenConstraint the device's chain exceeds. The contract walks the configured
    /// chain to its root and checks every link; `openssl verify -partial_chain` stops at the
    /// first trusted certificate and never looks above it.
    ConfiguredAboveAnchor,
}

/// How a disagreement is explained, if it is one of the deliberate differences.
fn explain(t: &Topology, ours: &Verdict, theirs: &OpenSsl) -> Option<Difference> {
    let accepted = matches!(ours, Verdict::Accepted(_));
    let leaf_outside = t.leaf.window != Window::Valid;
    if !accepted && theirs.ok && t.leaf.is_ca {
        return Some(Difference::CaAsLeaf);
    }
    if !accepted && theirs.ok {
        let depth = t.cas.len();
        let above = &t.cas[..t.configured_to];
        let broken = above.iter().enumerate().any(|(i, n)| {
            n.window != Window::Valid || n.path_len.is_some_and(|p| depth - 1 - i > usize::from(p))
        });
        let reason = ours.reason();
        let fits = matches!(
            reason,
            Some(RejectReason::Expired | RejectReason::NotYetValid | RejectReason::PathLen)
        );
        if broken && fits {
            return Some(Difference::ConfiguredAboveAnchor);
        }
    }
    if accepted && !theirs.ok {
        let leaf_time = |&(code, depth): &(u32, u32)| {
            depth == 0 && (code == CERT_HAS_EXPIRED || code == CERT_NOT_YET_VALID)
        };
        if t.expired_allowed && leaf_outside && theirs.errors.iter().all(leaf_time) {
            return Some(Difference::ExpiredLeafAllowed);
        }
        // Depths of the configured CAs in OpenSSL's chain: everything above the presented part.
        let configured_ekus = t.cas[..=t.configured_to]
            .iter()
            .any(|n| matches!(n.eku, Eku::Server));
        let purpose_or_leaf_time = |e: &(u32, u32)| {
            (e.0 == INVALID_PURPOSE && e.1 > 0) || (t.expired_allowed && leaf_time(e))
        };
        if configured_ekus && theirs.errors.iter().all(purpose_or_leaf_time) {
            return Some(Difference::ConfiguredCaEku);
        }
    }
    None
}

#[test]
fn check_chain_agrees_with_openssl_verify() {
    if Command::new("openssl").arg("version").output().is_err() {
        panic!("the openssl CLI is required (apt-get install openssl)");
    }
    let cases: usize = std::env::var("DIFF_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("DIFF_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x00d1_ff5e_ed00_0001);
    let mut rng = Rng(seed);
    let keys = Keys::new();
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("config.toml");
    let chain = dir.path().join("device.pem");

    let mut tally: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut refused_groups = 0usize;
    let mut n = 0usize;
    while n < cases {
        let t = draw(&mut rng);
        let built = build(&t, n, &keys).expect("certificates");
        // A drawn group chain the server would refuse (e.g. a pathLen its own chain exceeds) is
        // no case: draw again.
        if Arena::with_groups(vec![built.group.clone()]).is_err() {
            refused_groups += 1;
            continue;
        }
        let config_path =
            common::write_groups_config(dir.path(), std::slice::from_ref(&built.group));
        assert_eq!(config_path, config);
        std::fs::write(&chain, chain_pem(&built.presented)).expect("write");
        let ours = check_chain(&config, &chain, UnixTime::now()).expect("check-chain runs");
        if n % 25 == 0 {
            let out = Command::new(env!("CARGO_BIN_EXE_dps-server"))
                .args(["check-chain", "--config"])
                .arg(&config)
                .arg("--chain")
                .arg(&chain)
                .output()
                .expect("run check-chain");
            let want = if ours.group().is_some() { 0 } else { 3 };
            assert_eq!(
                out.status.code(),
                Some(want),
                "seed {seed} case {n}: the binary differs from the library"
            );
        }
        let theirs = openssl_verify(dir.path(), &built);
        let accepted = ours.group().is_some();
        let label = if accepted == theirs.ok {
            format!("agree: {}", if accepted { "accepted" } else { "rejected" })
        } else {
            match explain(&t, &ours, &theirs) {
                Some(d) => format!("accounted difference: {d:?}"),
                None => {
                    failures.push(format!(
                        "seed {seed} case {n}: check-chain {:?}, openssl {}\n  topology {t:?}\n  openssl said: {}",
                        ours.reason().map_or("accepted".to_owned(), |r| r.to_string()),
                        if theirs.ok { "accepted" } else { "rejected" },
                        theirs.text.trim()
                    ));
                    "DISAGREE".to_owned()
                }
            }
        };
        *tally.entry(label).or_default() += 1;
        if let Some(r) = ours.reason() {
            *tally.entry(format!("reason: {r}")).or_default() += 1;
        }
        n += 1;
    }
    eprintln!("differential: seed {seed}, {cases} cases ({refused_groups} drawn group chains refused and redrawn)");
    for (k, v) in &tally {
        eprintln!("  {k}: {v}");
    }
    assert!(
        failures.is_empty(),
        "{} disagreements (DIFF_SEED={seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The generator must produce both outcomes in quantity, or agreement means little.
    let get = |k: &str| tally.get(k).copied().unwrap_or(0);
    assert!(
        get("agree: accepted") * 5 >= cases,
        "too few accepted cases: {tally:?}"
    );
    assert!(
        get("agree: rejected") * 5 >= cases,
        "too few rejected cases: {tally:?}"
    );
}
