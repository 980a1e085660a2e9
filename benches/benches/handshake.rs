//! Server-side cost of a full in-memory TLS 1.3 mTLS handshake (no sockets), for leaf+1, leaf+2,
//! leaf+3 device chains with P-256 and Ed25519 device keys, against stock rustls
//! `WebPkiClientVerifier` and our `AttestationVerifier`. What each side is configured with is in
//! `benches/src/handshake.rs`; the PKI in `benches/src/pki.rs`.
//!
//! Only the server's calls are timed (`ServerConnection::new`, `read_tls` + `process_new_packets`,
//! `write_tls`, and for ours the verdict hand-off); the client's work runs between them untimed.
//!
//! After criterion, the ratio stock / ours is measured interleaved (rounds alternate between the
//! two, median of the per-round ratios), as `matching.rs` does: criterion's absolute figures move
//! between runs on this machine, the interleaved ratio does not.
//!
//! Filter topologies with `DPS_BENCH_TOPOLOGIES=leaf+2/p256,leaf+1/ed25519` (default: all six).

#![allow(missing_docs)] // criterion_group! generates an undocumented public fn
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dps_benches::handshake::HandshakeFixture;
use dps_benches::pki::{BenchPki, DEPTHS, DEVICE_KEYS};

/// Handshakes per variant in one interleaved round, and rounds.
const BATCH: usize = 20;
const ROUNDS: usize = 41;

fn fixtures() -> Vec<HandshakeFixture> {
    let pki = BenchPki::load();
    let wanted: Option<Vec<String>> = std::env::var("DPS_BENCH_TOPOLOGIES")
        .ok()
        .map(|s| s.split(',').map(|t| t.trim().to_owned()).collect());
    let mut out = Vec::new();
    for key in DEVICE_KEYS {
        for depth in DEPTHS {
            let fx = HandshakeFixture::new(&pki, depth, key);
            if wanted.as_ref().is_none_or(|w| w.contains(&fx.label())) {
                out.push(fx);
            }
        }
    }
    out
}

fn handshakes(c: &mut Criterion) {
    let fixtures = fixtures();
    for fx in &fixtures {
        let mut group = c.benchmark_group(format!("handshake_server/{}", fx.label()));
        group.throughput(Throughput::Elements(1));
        for variant in &fx.variants {
            group.bench_function(BenchmarkId::from_parameter(variant.name), |b| {
                b.iter_custom(|iters| (0..iters).map(|_| fx.server_time(variant)).sum())
            });
        }
        group.finish();
    }

    eprintln!();
    eprintln!("interleaved server-side time per handshake (median of {ROUNDS} rounds of {BATCH}) and ratios stock / ours:");
    eprintln!("| topology | stock_root | stock_configured | ours | stock_root / ours | stock_configured / ours |");
    eprintln!("|---|---:|---:|---:|---:|---:|");
    for fx in &fixtures {
        let root = interleaved(fx, "stock_root", "ours");
        let configured = interleaved(fx, "stock_configured", "ours");
        eprintln!(
            "| {} | {:.1} µs | {:.1} µs | {:.1} µs | {:.3} | {:.3} |",
            fx.label(),
            root.a_us,
            configured.a_us,
            root.b_us,
            root.ratio,
            configured.ratio
        );
    }
}

/// Medians over interleaved rounds: per-handshake time of `a` and `b`, and of the ratio a / b.
struct Interleaved {
    a_us: f64,
    b_us: f64,
    ratio: f64,
}

fn interleaved(fx: &HandshakeFixture, a: &str, b: &str) -> Interleaved {
    let (va, vb) = (fx.variant(a), fx.variant(b));
    let batch = |v| -> f64 {
        let total: Duration = (0..BATCH).map(|_| fx.server_time(v)).sum();
        total.as_secs_f64() / BATCH as f64
    };
    let mut ta = Vec::with_capacity(ROUNDS);
    let mut tb = Vec::with_capacity(ROUNDS);
    let mut ratios = Vec::with_capacity(ROUNDS);
    for round in 0..ROUNDS {
        // Alternate which one goes first, so drift within a round cancels out.
        let (x, y) = if round % 2 == 0 {
            let x = batch(va);
            (x, batch(vb))
        } else {
            let y = batch(vb);
            (batch(va), y)
        };
        ta.push(x);
        tb.push(y);
        ratios.push(x / y);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Interleaved {
        a_us: median(&mut ta) * 1e6,
        b_us: median(&mut tb) * 1e6,
        ratio: median(&mut ratios),
    }
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = benches;
    config = config();
    targets = handshakes
}
criterion_main!(benches);
