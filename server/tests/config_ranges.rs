//! `dps-server run --config` refuses values that would start a server that serves nobody (zero
//! timeouts, a zero message size, a zero identity validity...) and a store in a missing
//! directory: it exits non-zero with a message naming the key (or the path) instead.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dps_server::init::init;

/// Runs the binary on `dir/config.toml`; its exit status and stderr. A server still running
/// after `patience` is killed and reported as such (`None`).
fn run(dir: &Path, patience: Duration) -> (Option<std::process::ExitStatus>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dps-server"))
        .args(["run", "--config"])
        .arg(dir.join("config.toml"))
        .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dps-server");
    let deadline = Instant::now() + patience;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (status, stderr)
}

/// The demo config with `key = value` replaced (or, for a key it lacks, `extra` appended).
fn with(dir: &Path, original: &str, key: &str, value: &str, extra: &str) {
    let mut found = false;
    let mut text: String = original
        .lines()
        .map(|line| {
            if line.split('=').next().map(str::trim) == Some(key) {
                found = true;
                format!("{key} = {value}\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    if !found {
        text.push_str(extra);
    }
    std::fs::write(dir.join("config.toml"), text).expect("write config");
}

#[test]
fn out_of_range_values_are_refused_with_their_key() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let original = std::fs::read_to_string(dir.path().join("config.toml")).expect("config");
    let cases = [
        ("identity_validity_days", "0", ""),
        ("max_message_size", "0", ""),
        ("inactivity_timeout_ms", "0", ""),
        ("handshake_timeout_ms", "0", ""),
        ("max_connections", "0", ""),
        ("busy_retry_after_s", "0", ""),
        ("failed_handshakes_burst", "0", ""),
        ("challenge_ttl_ms", "0", "\n[tpm]\nchallenge_ttl_ms = 0\n"),
    ];
    for (key, value, extra) in cases {
        with(dir.path(), &original, key, value, extra);
        let (status, stderr) = run(dir.path(), Duration::from_secs(10));
        let status = status.unwrap_or_else(|| panic!("{key} = {value}: the server started"));
        assert!(!status.success(), "{key} = {value}: exit {status}");
        assert!(
            stderr.contains(key) && stderr.contains("allowed"),
            "{key} = {value}: {stderr}"
        );
    }
}

#[test]
fn a_store_in_a_missing_directory_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let original = std::fs::read_to_string(dir.path().join("config.toml")).expect("config");
    with(
        dir.path(),
        &original,
        "path",
        "\"no/such/dir/dps.redb\"",
        "",
    );
    let (status, stderr) = run(dir.path(), Duration::from_secs(10));
    let status = status.expect("the server must not start");
    assert!(!status.success(), "exit {status}");
    assert!(stderr.contains("no/such/dir"), "{stderr}");
    assert!(!dir.path().join("no").exists(), "the directory was created");

    // The demo config as `init` writes it starts (and is stopped after the deadline).
    std::fs::write(dir.path().join("config.toml"), &original).expect("restore");
    let (status, stderr) = run(dir.path(), Duration::from_secs(2));
    assert!(status.is_none(), "the demo config must start: {stderr}");
}
