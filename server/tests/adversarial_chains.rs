//! Adversarial device chains (issue 7, part 2): forged intermediates, non-CA issuers, pathLen,
//! EKU, validity, order, duplicates, depth, cross-signing, size, garbage and cycles — each judged
//! in-process, by the `check-chain` binary and by the server over TLS, against the verdict
//! `tests/common/adversarial.rs` expects.

#[path = "common/adversarial.rs"]
mod adversarial;
mod common;

use std::collections::HashMap;
use std::process::Command;

use adversarial::{Adversarial, Expect, OverTls};
use common::server::*;
use dps_server::config::Config;
use dps_server::enrollment::{Arena, RejectReason, Verdict};
use dps_server::proto::body::OwnershipResponse;
use dps_server::proto::coap::Code;
use dps_server::proto::stream::FramedIo;
use rustls_pki_types::UnixTime;

fn verdict_of(v: &Verdict) -> Expect {
    match v {
        Verdict::Accepted(a) => Expect::Accepted(a.group),
        Verdict::Rejected(r) => Expect::Rejected(*r),
    }
}

/// Fail once, listing every case whose outcome differs.
fn assert_all(what: &str, mismatches: Vec<String>, total: usize) {
    assert!(
        mismatches.is_empty(),
        "{what}: {} of {total} cases differ:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn every_case_is_exercised() {
    let adv = adversarial::build();
    let arena = Arena::with_groups(adv.groups.clone()).expect("the groups are valid");
    // Guard against a generator that silently drops cases or only covers one outcome.
    assert!(adv.cases.len() >= 35, "{} cases", adv.cases.len());
    let mut names = std::collections::HashSet::new();
    for c in &adv.cases {
        assert!(names.insert(c.name), "duplicate case name {}", c.name);
    }
    let reasons: std::collections::HashSet<_> = adv
        .cases
        .iter()
        .filter_map(|c| match c.expect {
            Expect::Rejected(r) => Some(r),
            Expect::Accepted(_) => None,
        })
        .collect();
    for r in [
        RejectReason::NoPath,
        RejectReason::BadSignature,
        RejectReason::NotCa,
        RejectReason::PathLen,
        RejectReason::Expired,
        RejectReason::NotYetValid,
        RejectReason::BadEku,
        RejectReason::NoGroup,
        RejectReason::Malformed,
    ] {
        assert!(reasons.contains(&r), "no case for {r}");
    }
    let mut mismatches = Vec::new();
    for c in &adv.cases {
        let got = verdict_of(&arena.load().authenticate(&c.presented, UnixTime::now()));
        if got != c.expect {
            mismatches.push(format!("{}: expected {:?}, got {got:?}", c.name, c.expect));
        }
    }
    assert_all("in-process", mismatches, adv.cases.len());
}

#[test]
fn check_chain_binary_gives_every_expected_verdict() {
    let adv = adversarial::build();
    let dir = tempfile::tempdir().expect("tmp");
    let config = common::write_groups_config(dir.path(), &adv.groups);
    let mut mismatches = Vec::new();
    for c in &adv.cases {
        let chain = dir.path().join(format!("{}.pem", c.name));
        std::fs::write(&chain, dps_server::pki::chain_pem(&c.presented)).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_dps-server"))
            .args(["check-chain", "--config"])
            .arg(&config)
            .arg("--chain")
            .arg(&chain)
            .output()
            .expect("run check-chain");
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let (want_code, want_json) = match c.expect {
            Expect::Accepted(g) => {
                let cn = common_name(&c.presented[0]);
                (
                    0,
                    format!(r#"{{"verdict":"accepted","group":"{g}","common_name":"{cn}"}}"#),
                )
            }
            Expect::Rejected(r) => (3, format!(r#"{{"verdict":"rejected","reason":"{r}"}}"#)),
        };
        if out.status.code() != Some(want_code) || stdout != want_json {
            mismatches.push(format!(
                "{}: expected {want_code} {want_json}, got {:?} {stdout} (stderr: {})",
                c.name,
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }
    assert_all("check-chain", mismatches, adv.cases.len());
}

fn common_name(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).expect("leaf parses");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned();
    cn
}

/// What one TLS connection showed: admitted (and the owner the ownership resource answered), or
/// refused.
async fn over_tls(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    case: &adversarial::Case,
) -> Option<String> {
    let tls = connect_presenting(dir, addr, case.presented.clone(), case.key.clone_key())
        .await
        .ok()?;
    let mut dev = FramedIo::new(tls, 64 * 1024);
    // TLS 1.3: the client may finish before the server's alert; the first read then fails.
    let resp = dev
        .exchange(&request(Code::GET, 1, "/api/v1/provisioning/ownership"))
        .await
        .ok()?;
    if resp.code != Code::CONTENT {
        return Some(format!("answer {}", resp.code));
    }
    let own: OwnershipResponse = decoded(&resp, Code::CONTENT);
    Some(own.devowneruuid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_gives_every_expected_verdict_over_tls() {
    let Adversarial { groups, cases } = adversarial::build();
    let dir = tempfile::tempdir().expect("tmp");
    dps_server::init::init(dir.path(), false).expect("init");
    let mut config = Config::load(&dir.path().join("config.toml")).expect("config");
    config.groups = groups.clone();
    let running = start_with(&config).await;
    let metrics = running.server.metrics().clone();
    let owners: HashMap<_, _> = groups.iter().map(|g| (g.id, g.owner.clone())).collect();
    let count = |r: RejectReason| metrics.rejections(r);
    let all_rejections = || RejectReason::ALL.iter().map(|r| count(*r)).sum::<u64>();

    let mut mismatches = Vec::new();
    for case in &cases {
        let before: HashMap<_, _> = RejectReason::ALL.iter().map(|r| (*r, count(*r))).collect();
        let total_before = all_rejections();
        let got = over_tls(dir.path(), running.addr, case).await;
        let problem = match (case.tls, case.expect) {
            (OverTls::Attested, Expect::Accepted(g)) => {
                let want = owners.get(&g).cloned();
                (got != want).then(|| format!("expected owner {want:?}, got {got:?}"))
            }
            (OverTls::Attested, Expect::Rejected(r)) => {
                let counted = count(r) - before.get(&r).copied().unwrap_or(0);
                match (&got, counted, all_rejections() - total_before) {
                    (None, 1, 1) => None,
                    _ => Some(format!(
                        "expected refusal for {r}, got {got:?} ({counted} counted for {r}, {} in all)",
                        all_rejections() - total_before
                    )),
                }
            }
            (OverTls::TooLarge, _) => match (&got, all_rejections() - total_before) {
                (None, 0) => None,
                (got, n) => Some(format!(
                    "expected a transport refusal without verdict, got {got:?} and {n} rejections"
                )),
            },
        };
        if let Some(p) = problem {
            mismatches.push(format!("{}: {p}", case.name));
        }
    }
    running.stop().await;
    assert_all("over TLS", mismatches, cases.len());
}
