//! Instruction-count gate: the server's hot paths counted with callgrind, compared with the
//! baselines committed in `results/instructions.json`.
//!
//! ```sh
//! cargo run --release -p dps-benches --bin dps-instructions -- check            # the CI gate
//! cargo run --release -p dps-benches --bin dps-instructions -- check --update   # new baseline
//! cargo run --release -p dps-benches --bin dps-instructions -- list
//! cargo run --release -p dps-benches --bin dps-instructions -- handshakes       # stock/ours table
//! ```
//!
//! `check` runs every case once under `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect=*dps_instr_measured*`: the case's set-up and one warm-up call are not counted,
//! then `reps` calls go through [`dps_instr_measured`], the only function collected in, and the
//! count per call is the total divided by `reps`. It prints name, baseline, now and delta, and
//! exits 1 when any count grew more than the tolerance (3 %) over its baseline. An intentional
//! change updates the baseline (`--update`) in the same commit.
//!
//! Inputs are fixed (the committed bench PKI, a fixed `now`), so authenticate + select, the CoAP
//! codec and the CBOR encoding count the same instructions on every run. CSR signing and the
//! server handshake use fresh randomness (ECDSA nonces, serial numbers, ephemeral keys, the
//! client's signature), so they are averaged over more calls; their run-to-run spread is recorded
//! in `results/instructions.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use dps_benches::handshake::{handshake, HandshakeFixture, ServerSide};
use dps_benches::pki::{BenchPki, DeviceKey, CSR_DEVICE_ID, DEPTHS, DEVICE_KEYS};
use dps_server::enrollment::CertId;
use dps_server::enrollment::{Arena, EnrollmentGroup, LeadSelector};
use dps_server::proto::body::{self, CredentialsRequest, Csr, ENCODING_PEM};
use dps_server::proto::coap::{Code, Decoder, Frame};
use dps_server::provision::{Identities, IdentityCa, Provisioner, DEFAULT_IDENTITY_VALIDITY};
use dps_server::records::Step;
use dps_server::store::{RecordWriter, StepEvent, Store};
use rustls_pki_types::UnixTime;
use serde::{Deserialize, Serialize};

/// Growth over the baseline that fails the gate, in percent.
const TOLERANCE_PERCENT: f64 = 3.0;

/// The one function callgrind collects in. Never inlined, so its symbol exists.
#[inline(never)]
fn dps_instr_measured<R>(f: impl FnOnce() -> R) -> R {
    std::hint::black_box(f())
}

/// A case: its name, how many measured calls, and how to run it.
struct Case {
    name: &'static str,
    reps: u32,
    what: &'static str,
    run: fn(u32),
}

const CASES: &[Case] = &[
    Case {
        name: "authenticate_select/leaf+2/p256",
        reps: 20,
        what: "Snapshot::authenticate of [leaf, Int2, Int1] against one group [Int1, Root] (2 signature checks, selection)",
        run: authenticate_select,
    },
    Case {
        name: "handshake_server/leaf+2/p256/ours",
        reps: 20,
        what: "server side of one in-memory TLS 1.3 mTLS handshake with AttestationVerifier, verdict hand-off included",
        run: |reps| handshake_case(reps, "ours"),
    },
    Case {
        name: "handshake_server/leaf+2/p256/stock_root",
        reps: 20,
        what: "the same with stock WebPkiClientVerifier over {Root} (reference: the deterministic stock/ours ratio)",
        run: |reps| handshake_case(reps, "stock_root"),
    },
    Case {
        name: "coap_codec/credentials_request",
        reps: 200,
        what: "decode a credentials request frame (CBOR body with a PEM CSR) and encode it again",
        run: coap_codec,
    },
    Case {
        name: "csr_signing/credentials",
        reps: 20,
        what: "Provisioner::credentials from a fixed P-256 CSR (CSR check, ECDSA P-256 signing, response)",
        run: csr_signing,
    },
    Case {
        name: "cbor/credentials_response",
        reps: 200,
        what: "to_cbor of a credentials response (pre-shared key, identity chain, trust anchor)",
        run: cbor_credentials_response,
    },
    Case {
        name: "record_writer/record_step",
        reps: 200,
        what: "RecordWriter::record_step of one provisioning step (queued for the writer thread, which it wakes only when it must act)",
        run: record_step,
    },
];

/// A fixed `now` inside every fixture's validity (2030-01-01).
fn fixed_now() -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_893_456_000))
}

fn authenticate_select(reps: u32) {
    let pki = BenchPki::load();
    let mut group = EnrollmentGroup::new("bench", "bench", pki.group_chain());
    group.lead = LeadSelector::Index(0);
    let arena = Arena::with_groups(vec![group]).expect("valid group");
    let presented = pki.presented(2, DeviceKey::P256);
    let now = fixed_now();
    let once = || arena.load().authenticate(&presented, now);
    assert!(once().group().is_some(), "fixture device not accepted");
    for _ in 0..reps {
        dps_instr_measured(once);
    }
}

/// Runs the server-side steps through the measured function.
struct Counted;

impl ServerSide for Counted {
    fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        dps_instr_measured(f)
    }
}

/// Runs the server-side steps directly (warm-up).
struct Uncounted;

impl ServerSide for Uncounted {
    fn run<R>(&mut self, f: impl FnOnce() -> R) -> R {
        f()
    }
}

fn handshake_case(reps: u32, variant: &str) {
    measure_handshake(2, DeviceKey::P256, variant, reps);
}

/// The server side of `reps` handshakes of the leaf+`depth` device against `variant`.
fn measure_handshake(depth: usize, key: DeviceKey, variant: &str, reps: u32) {
    let fx = HandshakeFixture::new(&BenchPki::load(), depth, key);
    let variant = fx.variant(variant);
    handshake(&fx.client, variant, &mut Uncounted);
    for _ in 0..reps {
        handshake(&fx.client, variant, &mut Counted);
    }
}

/// Calls per handshake count of the `handshakes` table.
const TABLE_REPS: u32 = 5;

/// Server-side instructions per handshake for every topology and variant of the criterion bench,
/// and the ratios stock / ours (not gated: a deterministic companion to `results/handshake.md`).
fn handshake_table() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("dps-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    println!("| topology | stock_root | stock_configured | ours | stock_root / ours | stock_configured / ours |");
    println!("|---|---:|---:|---:|---:|---:|");
    for key in DEVICE_KEYS {
        for depth in DEPTHS {
            let mut ir = Vec::new();
            for variant in ["stock_root", "stock_configured", "ours"] {
                let label = format!("leaf+{depth}/{}/{variant}", key.name());
                let args = [
                    "measure-handshake".to_owned(),
                    depth.to_string(),
                    key.name().to_owned(),
                    variant.to_owned(),
                    TABLE_REPS.to_string(),
                ];
                ir.push(count(&label, &args, TABLE_REPS, &dir)?);
            }
            let m = |x: u64| format!("{:.3} M", x as f64 / 1e6);
            println!(
                "| leaf+{depth}/{} | {} | {} | {} | {:.3} | {:.3} |",
                key.name(),
                m(ir[0]),
                m(ir[1]),
                m(ir[2]),
                ir[0] as f64 / ir[2] as f64,
                ir[1] as f64 / ir[2] as f64
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn credentials_request(pki: &BenchPki) -> CredentialsRequest {
    CredentialsRequest {
        di: CSR_DEVICE_ID.to_string(),
        csr: Csr {
            data: pki.csr_pem.clone(),
            encoding: ENCODING_PEM.to_owned(),
        },
    }
}

fn coap_codec(reps: u32) {
    let pki = BenchPki::load();
    let payload = body::to_cbor(&credentials_request(&pki)).expect("CBOR");
    let wire = Frame::request(
        Code::POST,
        &[1, 2, 3, 4],
        "/api/v1/provisioning/credentials",
    )
    .with_content_format(body::ContentFormat::OcfCbor.as_u16())
    .with_accept(body::ContentFormat::OcfCbor.as_u16())
    .with_payload(payload)
    .to_bytes()
    .expect("encode");
    let decoder = Decoder::new(64 * 1024);
    let once = || {
        let (frame, used) = decoder
            .decode_slice(&wire)
            .expect("decode")
            .expect("whole frame");
        debug_assert_eq!(used, wire.len());
        frame.to_bytes().expect("encode")
    };
    assert_eq!(once(), wire, "codec round trip");
    for _ in 0..reps {
        dps_instr_measured(once);
    }
}

fn provisioner(pki: &BenchPki) -> (Provisioner, EnrollmentGroup) {
    let ca =
        IdentityCa::from_pem(&pki.identity_ca_pem, &pki.identity_key_pem).expect("identity CA");
    let provisioner = Provisioner::new(ca, Vec::new(), DEFAULT_IDENTITY_VALIDITY);
    let mut group = EnrollmentGroup::new("bench", "bench-owner", pki.group_chain());
    group.pre_shared_key = Some("0123456789abcdef0123456789abcdef".into());
    (provisioner, group)
}

fn csr_signing(reps: u32) {
    let pki = BenchPki::load();
    let (provisioner, group) = provisioner(&pki);
    let req = credentials_request(&pki);
    let once = || provisioner.credentials(&group, &req).expect("credentials");
    once();
    for _ in 0..reps {
        dps_instr_measured(once);
    }
}

fn cbor_credentials_response(reps: u32) {
    let pki = BenchPki::load();
    let (provisioner, group) = provisioner(&pki);
    let issued = provisioner
        .credentials(&group, &credentials_request(&pki))
        .expect("credentials");
    let once = || body::to_cbor(&issued.response).expect("CBOR");
    once();
    for _ in 0..reps {
        dps_instr_measured(once);
    }
}

fn record_step(reps: u32) {
    let store = std::sync::Arc::new(Store::in_memory().expect("store"));
    let writer =
        RecordWriter::start(store, std::sync::Arc::new(Identities::new())).expect("writer");
    let event = StepEvent {
        record: CertId([7; 32]),
        common_name: Some("SN-bench".into()),
        group: uuid::Uuid::nil(),
        step: Step::Ownership,
        code: Code::CONTENT,
        diagnostic: String::new(),
        issued: None,
        token: None,
        at: time::macros::datetime!(2030-01-01 0:00 UTC),
    };
    let once = || writer.record_step(event.clone());
    // Settle the writer first, so the counted pushes meet the same queue every run: its buffer
    // grown to `reps` and drained (the writer idle), then one push that wakes the writer into its
    // batch window, during which (50 ms, far more than the counted pushes take even under
    // valgrind) no push wakes it or meets its lock.
    for _ in 0..reps {
        assert!(once(), "step queued");
    }
    while writer
        .stats()
        .written
        .load(std::sync::atomic::Ordering::Relaxed)
        < u64::from(reps)
    {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(once(), "step queued");
    std::thread::sleep(std::time::Duration::from_millis(5));
    for _ in 0..reps {
        dps_instr_measured(once);
    }
}

/// `results/instructions.json`.
#[derive(Debug, Serialize, Deserialize)]
struct Baseline {
    /// How the counts were made.
    note: String,
    /// `rustc -V` of the run that recorded them.
    rustc: String,
    /// `valgrind --version`.
    valgrind: String,
    /// Instructions (callgrind Ir) per call, by case.
    counts: BTreeMap<String, u64>,
}

fn baseline_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../results/instructions.json")
}

fn tool_version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

/// glibc picks memcpy/memset/strlen variants by the CPU (SSE2, AVX2, EVEX, ERMS), so the same
/// binary counted on another host ran other instructions: a CI host counted 6% more in the
/// copy-heavy CBOR case than the machine that recorded the baseline. The counted processes get the
/// SSE2 variants, which every x86-64 host has. (aws-lc's own dispatch is left alone: its choice
/// is the crypto a server really runs, and the handshake counts agreed across hosts to 0.02%.)
const PINNED_GLIBC_TUNABLES: &str = "glibc.cpu.hwcaps=-AVX_Fast_Unaligned_Load,-ERMS,-FSRM,-AVX2,\
    -AVX,-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-EVEX,-BMI2,-RTM";

/// Count one case under callgrind: instructions per measured call.
fn count(label: &str, args: &[String], reps: u32, dir: &Path) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("own executable: {e}"))?;
    let out = dir.join(format!("{}.callgrind", label.replace('/', "_")));
    let status = Command::new("valgrind")
        .env("GLIBC_TUNABLES", PINNED_GLIBC_TUNABLES)
        .args([
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=*dps_instr_measured*",
            "--quiet",
        ])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(&exe)
        .args(args)
        .status()
        .map_err(|e| format!("cannot run valgrind ({e}); install it (apt-get install valgrind)"))?;
    if !status.success() {
        return Err(format!("{label}: valgrind run failed ({status})"));
    }
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let total = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("summary:")
                .or_else(|| l.strip_prefix("totals:"))
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| format!("{}: no instruction total in {}", label, out.display()))?;
    if total == 0 {
        return Err(format!(
            "{label}: nothing was collected (is dps_instr_measured still a symbol?)"
        ));
    }
    Ok(total / u64::from(reps))
}

fn check(update: bool) -> Result<bool, String> {
    let dir = std::env::temp_dir().join(format!("dps-instructions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = baseline_path();
    let old: Option<Baseline> = std::fs::read_to_string(&path)
        .ok()
        .map(|t| serde_json::from_str(&t).map_err(|e| format!("{}: {e}", path.display())))
        .transpose()?;
    let rustc = tool_version("rustc", "-V");
    let valgrind = tool_version("valgrind", "--version");
    if let Some(old) = &old {
        if old.rustc != rustc || old.valgrind != valgrind {
            println!(
                "note: baseline made with {} / {}, this run {} / {}: counts may shift with the toolchain",
                old.rustc, old.valgrind, rustc, valgrind
            );
        }
    }
    let mut counts = BTreeMap::new();
    let mut ok = true;
    println!(
        "{:<42} {:>14} {:>14} {:>9}",
        "case (Ir per call)", "baseline", "now", "delta"
    );
    for case in CASES {
        let args = ["measure".to_owned(), case.name.to_owned()];
        let now = count(case.name, &args, case.reps, &dir)?;
        counts.insert(case.name.to_owned(), now);
        let base = old.as_ref().and_then(|b| b.counts.get(case.name)).copied();
        let (base_s, delta_s, verdict) = match base {
            None => ("-".to_owned(), "-".to_owned(), "new"),
            Some(b) => {
                let delta = (now as f64 - b as f64) / b as f64 * 100.0;
                let verdict = if delta > TOLERANCE_PERCENT {
                    ok = false;
                    "REGRESSION"
                } else if delta < -TOLERANCE_PERCENT {
                    "improved: update the baseline"
                } else {
                    ""
                };
                (b.to_string(), format!("{delta:+.3}%"), verdict)
            }
        };
        println!(
            "{:<42} {:>14} {:>14} {:>9} {verdict}",
            case.name, base_s, now, delta_s
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    if update {
        let new = Baseline {
            note: "callgrind Ir per call of each case, from `cargo run --release -p dps-benches --bin dps-instructions -- check --update`; see results/instructions.md".into(),
            rustc,
            valgrind,
            counts,
        };
        let text = serde_json::to_string_pretty(&new).map_err(|e| e.to_string())? + "\n";
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        println!("baseline written to {}", path.display());
        return Ok(true);
    }
    if old.is_none() {
        return Err(format!(
            "no baseline at {}: run `check --update` to record one",
            path.display()
        ));
    }
    Ok(ok)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("measure") => {
            let Some(case) = args.get(1).and_then(|n| CASES.iter().find(|c| c.name == n)) else {
                eprintln!("unknown case; see `dps-instructions list`");
                return ExitCode::from(2);
            };
            (case.run)(case.reps);
            ExitCode::SUCCESS
        }
        Some("measure-handshake") => {
            let key = match args.get(2).map(String::as_str) {
                Some("ed25519") => DeviceKey::Ed25519,
                _ => DeviceKey::P256,
            };
            let depth = args.get(1).and_then(|d| d.parse().ok()).unwrap_or(2);
            let variant = args.get(3).map_or("ours", String::as_str);
            let reps = args
                .get(4)
                .and_then(|r| r.parse().ok())
                .unwrap_or(TABLE_REPS);
            measure_handshake(depth, key, variant, reps);
            ExitCode::SUCCESS
        }
        Some("handshakes") => match handshake_table() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        Some("list") => {
            for c in CASES {
                println!("{:<42} x{:<4} {}", c.name, c.reps, c.what);
            }
            ExitCode::SUCCESS
        }
        Some("check") => {
            let update = args.iter().any(|a| a == "--update");
            match check(update) {
                Ok(true) => {
                    println!("instruction counts within {TOLERANCE_PERCENT}% of the baseline");
                    ExitCode::SUCCESS
                }
                Ok(false) => {
                    println!(
                        "instruction-count gate FAILED: a count grew more than {TOLERANCE_PERCENT}% \
                         (if intended, run `check --update` and commit results/instructions.json)"
                    );
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => {
            eprintln!(
                "usage: dps-instructions check [--update] | list | handshakes | measure <case>"
            );
            ExitCode::from(2)
        }
    }
}
