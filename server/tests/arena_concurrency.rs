//! Readers authenticating while a writer replaces groups: each verdict comes from one whole
//! snapshot (old or new, never a mix), and readers keep going while the writer works.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::*;
use dps_server::enrollment::{EnrollmentGroup, LeadSelector, RejectReason, Verdict};
use dps_server::pki::{CertSpec, Issued, KeyAlg};
use rustls_pki_types::UnixTime;

#[test]
fn verdicts_come_from_one_snapshot_and_readers_never_wait() {
    let m = Manufacturer::new("M");
    // X = {A (lead Int1, chain [Int1, Root]), B (lead Root)}; Y = {B}.
    let ga = group("A", &[&m.int1, &m.root]);
    let mut gb = group("B", &[&m.int1, &m.root]);
    gb.lead = LeadSelector::Index(1);
    let (ida, idb) = (ga.id, gb.id);
    let arena = Arc::new(arena(vec![ga.clone(), gb.clone()]));

    // [d, Int2] and [d, Int2, Int1] both verify to [d, Int2, Int1, Root] in X and in Y (Int1 stays
    // configured through B): in X the walk meets Int1 (A's lead), in Y only Root (B's lead).
    let dev = m.device("SN-1");
    let with_int2 = chain(&[&dev, &m.int2]);
    let with_both = chain(&[&dev, &m.int2, &m.int1]);

    // A torn read would pair verdicts of two different snapshots; per snapshot the pair is fixed.
    let expected = move |has_a: bool| {
        if has_a {
            (Some(ida), Some(ida))
        } else {
            (Some(idb), Some(idb))
        }
    };

    // Extra groups for a heavier bulk replacement (makes the writer's window wide).
    let filler_root = Issued::self_signed(&CertSpec::ca("Filler Root")).expect("root");
    let shared_key = KeyAlg::EcdsaP256.generate().expect("key");
    let fillers: Vec<EnrollmentGroup> = (0..200)
        .map(|i| {
            let ca = filler_root
                .issue_with_key(
                    &CertSpec::ca(format!("Filler {i}")),
                    rcgen::KeyPair::from_pem(&shared_key.serialize_pem()).expect("key"),
                )
                .expect("ca");
            group(&format!("filler-{i}"), &[&ca, &filler_root])
        })
        .collect();

    let writing = Arc::new(AtomicBool::new(true));
    let reads_while_writing = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let arena = arena.clone();
            let writing = writing.clone();
            let count = reads_while_writing.clone();
            let (with_int2, with_both) = (with_int2.clone(), with_both.clone());
            std::thread::spawn(move || {
                let mut generations = std::collections::BTreeSet::new();
                let mut checked = 0u64;
                while writing.load(Ordering::Acquire) {
                    let snap = arena.load();
                    let now = UnixTime::now();
                    let got = (
                        snap.authenticate(&with_int2, now).group(),
                        snap.authenticate(&with_both, now).group(),
                    );
                    let has_a = snap.group(&ida).is_some();
                    assert_eq!(got, expected(has_a), "generation {}", snap.generation());
                    assert!(snap.group(&idb).is_some());
                    generations.insert(snap.generation());
                    checked += 1;
                    count.fetch_add(1, Ordering::Relaxed);
                }
                (checked, generations.len())
            })
        })
        .collect();

    for round in 0..30 {
        match round % 3 {
            0 => assert!(arena.remove(&ida)),
            1 => arena.upsert(ga.clone()).expect("re-insert A"),
            _ => {
                let mut all = fillers.clone();
                all.push(gb.clone());
                if round % 2 == 0 {
                    all.push(ga.clone());
                }
                arena.replace_all(all).expect("bulk");
                if arena.load().group(&ida).is_none() {
                    arena.upsert(ga.clone()).expect("A back");
                }
            }
        }
    }
    writing.store(false, Ordering::Release);
    let mut total = 0;
    for r in readers {
        let (checked, generations) = r.join().expect("reader panicked (verdict mismatch)");
        total += checked;
        assert!(
            generations > 1,
            "a reader saw only {generations} snapshot(s)"
        );
    }
    assert!(total > 0);
    assert_eq!(total, reads_while_writing.load(Ordering::Relaxed));

    // After the storm the arena holds A, B and the fillers, all consistent.
    let snap = arena.load();
    assert!(snap.len() >= 2);
    assert_eq!(
        snap.authenticate(&chain(&[&dev]), UnixTime::now()).reason(),
        Some(RejectReason::NoPath)
    );
    assert!(matches!(
        snap.authenticate(&with_int2, UnixTime::now()),
        Verdict::Accepted(_)
    ));
}
