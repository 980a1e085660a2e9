//! Server-side cost of a full in-memory TLS 1.3 mTLS handshake (no sockets), for leaf+1, leaf+2,
//! leaf+3 device chains with P-256 and Ed25519 device keys, against stock rustls
//! `WebPkiClientVerifier` and our `AttestationVerifier`. What each side is configured with is in
//! `benches/src/handshake.rs`; the PKI in `benches/src/pki.rs`.
//!
//! Only the server's calls are timed (`ServerConnection::new`, `read_tls` + `process_new_packets`,
//! `write_tls`, and for ours the verdict hand-off); the client's work runs between them untimed.
//!
//! After criterion, the ratios stock / ours are measured interleaved (each round runs a small batch
//! of every variant, the order rotating; medians of the per-round ratios), as `matching.rs` does: criterion's absolute figures move
//! between runs on this machine, the interleaved ratio does not.
//!
//! Filter topologies with `DPS_BENCH_TOPOLOGIES=leaf+2/p256,leaf+1/ed25519` (default: all six).

#![allow(missing_docs)] // criterion_group! generates an undocumented public fn
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use dps_benches::handshake::HandshakeFixture;
use dps_benches::pki::{BenchPki, DEPTHS, DEVICE_KEYS};

/// Handshakes per variant in one interleaved round (small, so a burst of load from elsewhere
/// rarely hits one variant of a round only), and rounds.
const BATCH: usize = 5;
const ROUNDS: usize = 201;

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
    eprintln!("interleaved server-side time per handshake (medians over {ROUNDS} rounds of {BATCH} per variant) and ratios stock / ours:");
    eprintln!("| topology | stock_root | stock_configured | ours | stock_root / ours | stock_configured / ours |");
    eprintln!("|---|---:|---:|---:|---:|---:|");
    for fx in &fixtures {
        let r = interleaved(fx);
        eprintln!(
            "| {} | {:.1} µs | {:.1} µs | {:.1} µs | {:.3} | {:.3} |",
            fx.label(),
            r.us[0],
            r.us[1],
            r.us[2],
            r.ratio_root,
            r.ratio_configured
        );
    }
}

/// Medians over interleaved rounds: per-handshake time of stock_root, stock_configured and ours,
/// and of the per-round ratios stock / ours.
struct Interleaved {
    us: [f64; 3],
    ratio_root: f64,
    ratio_configured: f64,
}

fn interleaved(fx: &HandshakeFixture) -> Interleaved {
    let variants = [
        fx.variant("stock_root"),
        fx.variant("stock_configured"),
        fx.variant("ours"),
    ];
    let batch = |v| -> f64 {
        let total: Duration = (0..BATCH).map(|_| fx.server_time(v)).sum();
        total.as_secs_f64() / BATCH as f64
    };
    let mut times: [Vec<f64>; 3] = Default::default();
    let (mut ratio_root, mut ratio_configured) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // Rotate which variant goes first, so drift within a round cancels out.
        let mut t = [0.0; 3];
        for k in 0..3 {
            let i = (round + k) % 3;
            t[i] = batch(variants[i]);
        }
        for i in 0..3 {
            times[i].push(t[i]);
        }
        ratio_root.push(t[0] / t[2]);
        ratio_configured.push(t[1] / t[2]);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let [a, b, c] = &mut times;
    Interleaved {
        us: [median(a) * 1e6, median(b) * 1e6, median(c) * 1e6],
        ratio_root: median(&mut ratio_root),
        ratio_configured: median(&mut ratio_configured),
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
