//! `tpm_swtpm` devices (feature `tpm-sim`): real TPMs in swtpm processes the run starts and stops,
//! beside soft TPMs and X.509 devices, against the embedded server (EKs enrolled in-process) and a
//! spawned one (EKs enrolled over its admin API). Needs swtpm on the PATH.
#![cfg(feature = "tpm-sim")]

use std::path::Path;

use dps_loadgen::fleet::DeviceClass;
use dps_loadgen::metrics::Phase;
use dps_loadgen::{exit, run_scenario};

fn scenario(dir: &Path, name: &str, target: &str, mix: &str, devices: usize) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            r#"name = "{name}"
thresholds = ["mismatches == 0", "errors == 0"]
{target}
[fleet]
seed = 31
devices = {devices}
mix = {{ {mix} }}
cache = false
[executor]
kind = "closed-loop"
concurrency = 6
[device]
timeout = "30s"
"#
        ),
    )
    .expect("write scenario");
    path
}

/// The tests run one at a time: one counts the swtpm processes of this process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The swtpm processes this test process started (children named swtpm).
fn swtpm_children() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| {
                    let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                    // pid (comm) state ppid ...
                    let Some((comm, rest)) = stat.split_once(") ") else {
                        return false;
                    };
                    comm.ends_with("(swtpm") && rest.split(' ').nth(1) == Some(me.as_str())
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swtpm_devices_attest_and_provision_beside_soft_tpms_and_x509_devices() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tmp");
    let path = scenario(
        dir.path(),
        "swtpm-embedded",
        "",
        "valid = 2, tpm = 2, tpm_swtpm = 3, tpm_unenrolled = 1",
        24,
    );
    let finished = run_scenario(&path, None, &|_| {}).await.expect("run");
    let s = &finished.outcome.summary;
    assert_eq!(finished.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
    let swtpm = &s.classes[&DeviceClass::TpmSwtpm];
    assert!(swtpm.devices > 0);
    assert_eq!(
        swtpm.observed.get("provisioned:tpm-swtpm"),
        Some(&swtpm.devices),
        "{:?}",
        swtpm.observed
    );
    assert_eq!(s.server_tpm_refusals, Some(s.expected_tpm_refusals));
    let attests = s.latency[&Phase::TpmAttest].count;
    let tpm_devices: u64 = [DeviceClass::Tpm, DeviceClass::TpmSwtpm]
        .iter()
        .map(|c| s.classes.get(c).map_or(0, |c| c.devices))
        .sum();
    assert_eq!(attests, tpm_devices, "one attest per accepted TPM");
    assert_eq!(swtpm_children(), 0, "the run stopped its swtpm processes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawned_server_gets_the_swtpm_eks_over_its_admin_api() {
    let _serial = SERIAL.lock().await;
    std::env::set_var("DPS_LOADGEN_SERVER_EXE", env!("CARGO_BIN_EXE_dps-loadgen"));
    let dir = tempfile::tempdir().expect("tmp");
    let path = scenario(
        dir.path(),
        "swtpm-spawned",
        "[target]\nspawn = true",
        "tpm_swtpm = 3, tpm_replayed_nonce = 1",
        8,
    );
    let finished = run_scenario(&path, None, &|_| {}).await.expect("run");
    let s = &finished.outcome.summary;
    assert_eq!(finished.exit_code, exit::PASS, "{:#?}", s.mismatch_examples);
    assert_eq!(s.server.kind, "spawned");
    let swtpm = &s.classes[&DeviceClass::TpmSwtpm];
    assert_eq!(
        swtpm.observed.get("provisioned:tpm-swtpm"),
        Some(&swtpm.devices)
    );
    assert_eq!(s.server_tpm_refusals, Some(s.expected_tpm_refusals));
}
