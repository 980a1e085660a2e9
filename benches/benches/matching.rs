//! Authenticate + select for a leaf+2 chain, and the cost of publishing one update, with arenas of
//! 1 to 1,000,000 groups. Sizes: `DPS_BENCH_SIZES=1,1000` (default 1,1000,100000,1000000).

#![allow(missing_docs)] // criterion_group! generates an undocumented public fn
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dps_benches::MatchingFixture;
use rustls_pki_types::UnixTime;

fn sizes() -> Vec<usize> {
    std::env::var("DPS_BENCH_SIZES")
        .unwrap_or_else(|_| "1,1000,100000,1000000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

fn matching(c: &mut Criterion) {
    let mut auth = c.benchmark_group("authenticate_select_leaf_plus_2");
    auth.throughput(Throughput::Elements(1));
    let mut publish_fixtures = Vec::new();
    for n in sizes() {
        let started = std::time::Instant::now();
        let fx = MatchingFixture::new(n);
        eprintln!("arena of {n} groups built in {:.1?}", started.elapsed());
        assert!(fx
            .arena
            .load()
            .authenticate(&fx.presented, UnixTime::now())
            .group()
            .is_some());
        auth.bench_with_input(BenchmarkId::from_parameter(n), &fx, |b, fx| {
            b.iter(|| {
                let snap = fx.arena.load();
                snap.authenticate(&fx.presented, UnixTime::now())
            })
        });
        publish_fixtures.push((n, fx));
    }
    auth.finish();

    let mut publish = c.benchmark_group("publish_upsert_then_remove");
    publish.sample_size(30);
    for (n, fx) in &publish_fixtures {
        publish.bench_with_input(BenchmarkId::from_parameter(n), fx, |b, fx| {
            b.iter(|| {
                fx.arena.upsert(fx.extra.clone()).expect("upsert");
                assert!(fx.arena.remove(&fx.extra.id));
            })
        });
    }
    publish.finish();

    // Criterion measures each size at a different moment, and this machine is noisy. The claim
    // "cost at N groups / cost at 1 group" is measured here by interleaving: rounds alternate
    // between the smallest and each larger arena, and the median of the per-round ratios is
    // reported.
    if let Some((_, base)) = publish_fixtures.first() {
        for (n, fx) in publish_fixtures.iter().skip(1) {
            let ratio = interleaved_ratio(base, fx);
            eprintln!("interleaved ratio authenticate_select(n={n}) / authenticate_select(n=1): {ratio:.3}");
        }
    }
}

/// Median over rounds of (time for a batch on `big`) / (time for a batch on `base`).
fn interleaved_ratio(base: &MatchingFixture, big: &MatchingFixture) -> f64 {
    const ROUNDS: usize = 41;
    const BATCH: usize = 200;
    let time = |fx: &MatchingFixture| {
        let started = std::time::Instant::now();
        for _ in 0..BATCH {
            let snap = fx.arena.load();
            std::hint::black_box(snap.authenticate(&fx.presented, UnixTime::now()));
        }
        started.elapsed().as_secs_f64()
    };
    let mut ratios: Vec<f64> = (0..ROUNDS)
        .map(|round| {
            // Alternate which one goes first, so drift within a round cancels out.
            if round % 2 == 0 {
                let a = time(base);
                time(big) / a
            } else {
                let b = time(big);
                b / time(base)
            }
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ROUNDS / 2]
}

criterion_group!(benches, matching);
criterion_main!(benches);
