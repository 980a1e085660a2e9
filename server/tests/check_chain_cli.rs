//! `dps-server check-chain` and `dps-server init` as operators and scripts use them: JSON on stdout,
//! exit codes 0 / 3 / 2, messages on stderr.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use dps_server::enrollment::CertId;
use dps_server::pki::{chain_pem, CertSpec};

fn dps(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dps-server"))
        .args(args)
        .output()
        .expect("run dps-server")
}

fn check_chain(config: &Path, chain: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "check-chain",
        "--config",
        config.to_str().expect("utf8"),
        "--chain",
        chain.to_str().expect("utf8"),
    ];
    args.extend_from_slice(extra);
    dps(&args)
}

fn check(config: &Path, chain: &Path) -> (i32, serde_json::Value, String) {
    let out = check_chain(config, chain, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (
        out.status.code().unwrap_or(-1),
        json,
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const GROUP_ID: &str = "8d2a8f4e-2f0a-4a55-9a1e-0f6f3c3c1a01";

fn write_setup(dir: &Path, m: &Manufacturer, extra: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("groups")).expect("mkdir");
    std::fs::write(
        dir.join("groups/factory-a.pem"),
        chain_pem([m.int1.der(), m.root.der()]),
    )
    .expect("write");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[enrollment_group]]
id = "{GROUP_ID}"
name = "factory-a"
owner = "acme"
certificate_chain = "groups/factory-a.pem"
lead_certificate = 0
expired_certificates_allowed = false
allow_common_names = []
deny_common_names = ["SN-000013"]
hub_ids = []
{extra}"#
        ),
    )
    .expect("write");
    config
}

#[test]
fn accepted_rejected_and_exact_json() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = Manufacturer::new("M");
    let config = write_setup(dir.path(), &m, "");

    let good = dir.path().join("good.pem");
    let dev = m.device("SN-000001");
    std::fs::write(&good, chain_pem([dev.der(), m.int2.der()])).expect("write");
    let out = check_chain(&config, &good, &[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(r#"{{"verdict":"accepted","group":"{GROUP_ID}","common_name":"SN-000001"}}"#)
    );

    let truncated = dir.path().join("truncated.pem");
    std::fs::write(&truncated, chain_pem([dev.der()])).expect("write");
    let out = check_chain(&config, &truncated, &[]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"verdict":"rejected","reason":"no_path"}"#
    );

    let denied = dir.path().join("denied.pem");
    let dev13 = m.device("SN-000013");
    std::fs::write(&denied, chain_pem([dev13.der(), m.int2.der()])).expect("write");
    let (code, json, _) = check(&config, &denied);
    assert_eq!((code, json["reason"].as_str()), (3, Some("denied")));
}

#[test]
fn inline_pem_and_lead_by_fingerprint() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = Manufacturer::new("M");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[[enrollment_group]]\nid = \"{GROUP_ID}\"\nname = \"inline\"\nowner = \"acme\"\ncertificate_chain = \"\"\"\n{}\"\"\"\nlead_certificate = \"{}\"\n",
            chain_pem([m.int2.der(), m.int1.der(), m.root.der()]),
            CertId::of(m.int1.der())
        ),
    )
    .expect("write");
    let chain = dir.path().join("dev.pem");
    std::fs::write(&chain, chain_pem([m.device("SN-1").der()])).expect("write");
    let (code, json, err) = check(&config, &chain);
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["group"], GROUP_ID);
}

#[test]
fn bad_input_exits_2_with_a_message() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = Manufacturer::new("M");
    let config = write_setup(dir.path(), &m, "");
    let chain = dir.path().join("dev.pem");
    std::fs::write(&chain, chain_pem([m.device("SN-1").der(), m.int2.der()])).expect("write");

    // Missing chain file; chain file without PEM.
    let (code, _, err) = check(&config, &dir.path().join("missing.pem"));
    assert_eq!(code, 2);
    assert!(err.contains("missing.pem"), "{err}");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let (code, _, err) = check(&config, &not_pem);
    assert_eq!(code, 2);
    assert!(err.contains("PEM"), "{err}");

    // Unparseable TOML; unknown key; bad UUID; group chain that does not verify.
    for (name, text, needle) in [
        ("syntax.toml", "[[enrollment_group]\n".to_owned(), "syntax.toml"),
        (
            "unknown.toml",
            format!("[[enrollment_group]]\nid = \"{GROUP_ID}\"\nname = \"a\"\nowner = \"o\"\ncertificate_chain = \"groups/factory-a.pem\"\nlead = 0\n"),
            "lead",
        ),
        (
            "uuid.toml",
            "[[enrollment_group]]\nid = \"12\"\nname = \"a\"\nowner = \"o\"\ncertificate_chain = \"groups/factory-a.pem\"\n".to_owned(),
            "not a UUID",
        ),
        (
            "broken.toml",
            format!("[[enrollment_group]]\nid = \"{GROUP_ID}\"\nname = \"reversed\"\nowner = \"o\"\ncertificate_chain = \"\"\"\n{}\"\"\"\n", chain_pem([m.root.der(), m.int1.der()])),
            "reversed",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        let (code, json, err) = check(&path, &chain);
        assert_eq!(code, 2, "{name}: {err}");
        assert!(json.is_null(), "{name}: nothing on stdout");
        assert!(err.contains(needle), "{name}: {err}");
    }
}

#[test]
fn garbage_certificate_in_the_chain_is_a_malformed_rejection() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = Manufacturer::new("M");
    let config = write_setup(dir.path(), &m, "");
    let chain = dir.path().join("garbage.pem");
    std::fs::write(
        &chain,
        dps_server::pki::pem_encode("CERTIFICATE", b"\x30\x03\x02\x01\x01"),
    )
    .expect("write");
    let (code, json, _) = check(&config, &chain);
    assert_eq!((code, json["reason"].as_str()), (3, Some("malformed")));
}

#[test]
fn at_judges_an_expired_device_at_another_time() {
    let dir = tempfile::tempdir().expect("tmp");
    let m = Manufacturer::aged("M", days(1000));
    let config = write_setup(dir.path(), &m, "");
    let spec = CertSpec::device("SN-OLD").valid_between(now() - days(400), now() - days(30));
    let dev = m.int2.issue(&spec).expect("dev");
    let chain = dir.path().join("old.pem");
    std::fs::write(&chain, chain_pem([dev.der(), m.int2.der()])).expect("write");
    let (code, json, _) = check(&config, &chain);
    assert_eq!((code, json["reason"].as_str()), (3, Some("expired")));
    let past = (now() - days(100))
        .format(&time::format_description::well_known::Rfc3339)
        .expect("fmt");
    let out = check_chain(&config, &chain, &["--at", &past]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn init_writes_a_set_up_whose_demo_device_is_accepted() {
    let dir = tempfile::tempdir().expect("tmp");
    let demo = dir.path().join("demo");
    let out = dps(&["init", demo.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(0));
    for f in [
        "config.toml",
        "server.pem",
        "server.key",
        "server-ca.pem",
        "identity-ca.pem",
        "device-chain.pem",
        "device.key",
    ] {
        assert!(demo.join(f).is_file(), "{f} missing");
    }
    let (code, json, err) = check(&demo.join("config.toml"), &demo.join("device-chain.pem"));
    assert_eq!(code, 0, "{err}");
    assert_eq!(json["verdict"], "accepted");
    assert_eq!(json["common_name"], "ACME-SN-000001");
    // A second init without --force refuses to overwrite.
    assert_eq!(
        dps(&["init", demo.to_str().expect("utf8")]).status.code(),
        Some(2)
    );
}
