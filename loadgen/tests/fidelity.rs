//! Latency a packet capture agrees with (issue 17): a short open-model run (100 devices at 10/s,
//! spawned server) is captured on loopback with tcpdump while it runs, and `verify-capture`'s
//! comparison of the capture with the run's `connections.csv` must agree (p50 and p99 of SYN to
//! the device's FIN and of SYN to the server's first TLS record, within 5 % or 0.2 ms; in a debug
//! build the second only not early, see below); every device's phases add up to its total.
//!
//! Needs tcpdump and the right to capture (root); `.ci/run` installs tcpdump. Without tcpdump on
//! the PATH the test says so and passes, as the oauth2 test does without node.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use dps_loadgen::{capture, exit, run_scenario};

const SCENARIO: &str = r#"name = "fidelity"
thresholds = ["mismatches == 0", "errors == 0", "dropped == 0"]
[fleet]
seed = 17
devices = 100
mix = { valid = 8, identity = 1, truncated = 1 }
[executor]
kind = "constant-arrival-rate"
rate = 10.0
max_lateness = "2s"
[device]
timeout = "20s"
[target]
spawn = true
"#;

/// tcpdump on loopback writing `file`, once it says it is listening; and what it says after.
fn start_tcpdump(file: &Path) -> (Child, std::thread::JoinHandle<String>) {
    let mut child = Command::new("tcpdump")
        // Immediate mode: each packet handed over as it comes, so that the run's last ones are written
        // before the stop (otherwise they may wait in a kernel buffer that the stop drops).
        .args([
            "-i",
            "lo",
            "-n",
            "-U",
            "--immediate-mode",
            "-B",
            "8192",
            "-w",
        ])
        .arg(file)
        // The fleet's own server listens on 127.0.0.1; devices come from other loopback
        // addresses.
        .args(["tcp", "and", "host", "127.0.0.1"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump starts");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("listening on") => break,
            Some(Ok(_)) => continue,
            other => panic!("tcpdump did not start capturing: {other:?}"),
        }
    }
    // Keep draining its stderr so that it never blocks on it (its last words count drops).
    let said =
        std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    (child, said)
}

/// Stop `child` (a tcpdump this test started) by its pid, as Ctrl-C would, so that it flushes.
fn stop((mut child, said): (Child, std::thread::JoinHandle<String>)) -> String {
    let signalled = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(signalled.success(), "{signalled}");
    let status = child.wait().expect("tcpdump exits");
    let said = said.join().unwrap_or_default();
    assert!(
        status.success() || status.code().is_none(),
        "{status}: {said}"
    );
    said
}

// Four workers: a device's wake-up when the server's data arrives should not wait for a worker
// busy with another device (the debug build's devices are slow).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_generators_figures_agree_with_a_capture_of_the_run() {
    if Command::new("tcpdump").arg("--version").output().is_err() {
        eprintln!("tcpdump is not installed: the capture comparison is skipped");
        return;
    }
    // The server in its own process, as in the issue's measurement.
    std::env::set_var("DPS_LOADGEN_SERVER_EXE", env!("CARGO_BIN_EXE_dps-loadgen"));
    let dir = tempfile::tempdir().expect("tmp");
    let scenario = dir.path().join("fidelity.toml");
    std::fs::write(&scenario, SCENARIO).expect("scenario");
    let pcap = dir.path().join("run.pcap");
    let tcpdump = start_tcpdump(&pcap);
    let finished = run_scenario(&scenario, Some(&dir.path().join("results")), &|_| {}).await;
    let tcpdump = stop(tcpdump);
    let finished = finished.expect("run");
    let s = &finished.outcome.summary;
    assert_eq!(finished.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
    let fidelity = s.fidelity.as_ref().expect("fidelity");
    assert_eq!(fidelity.unbalanced_devices, 0, "{fidelity:?}");
    // One connection per device, the identity devices' second one beside.
    let identity = s.classes[&dps_loadgen::fleet::DeviceClass::Identity].devices;
    assert_eq!(
        fidelity.connections_recorded,
        100 + identity,
        "{fidelity:?}"
    );
    let results = finished.results_dir.expect("results dir");
    let compared = capture::verify(&results, &pcap).expect("comparable");
    let report = format!("{}\ntcpdump: {tcpdump}", capture::markdown(&compared));
    assert_eq!(compared.matched, compared.recorded, "{report}");
    for f in &compared.figures {
        assert_eq!(f.count, compared.matched, "{report}");
    }
    if cfg!(debug_assertions) {
        // An unoptimised device on a shared 2-core machine reads the server's first TLS record
        // 0.2-0.4 ms (p50) and at times milliseconds after it is on the wire: its own wake-up,
        // which that figure measures. The connection (SYN to FIN, both ends the device's own)
        // agrees at the tool's tolerance; of the first record it is checked here only that no
        // device read it before it was on the wire (a wrong join or clock would). The release
        // build's check of both figures at the tool's tolerance is .ci/run's verify-capture step.
        let [connection, first] = compared.figures.as_slice() else {
            panic!("{report}")
        };
        assert!(connection.agrees, "{report}");
        let tolerance = capture::compare::ABS_TOLERANCE_US;
        assert!(
            first.generator_p50_us >= first.wire_p50_us - tolerance
                && first.generator_p99_us >= first.wire_p99_us - tolerance,
            "{report}"
        );
    } else {
        assert!(compared.agrees(), "{report}");
    }
    // The same capture against another run's connections matches nothing.
    let stranger = dir.path().join("stranger");
    std::fs::create_dir_all(&stranger).expect("dir");
    let mut moved = capture::connections(&results.join("connections.csv")).expect("csv");
    for r in &mut moved {
        r.target.set_port(9);
    }
    let csv = dps_loadgen::device::trace::to_csv(&moved);
    std::fs::write(stranger.join("connections.csv"), csv).expect("csv");
    let none = capture::verify(&stranger, &pcap).expect("comparable");
    assert_eq!(none.matched, 0);
    assert!(!none.agrees());
}
