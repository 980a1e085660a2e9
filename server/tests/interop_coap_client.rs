//! Interop with a CoAP client nobody here wrote: libcoap's `coap-client` (Debian `libcoap3-bin`,
//! the GnuTLS build, which sends the whole chain in its certificate file) over `coaps+tcp`.
//! `.ci/run` installs it; elsewhere install it or set `DPS_SKIP_INTEROP=1` to skip explicitly.

mod common;

use std::path::Path;
use std::process::Command;

use common::server::*;
use dps_server::enrollment::RejectReason;
use dps_server::init::{ids, init};
use dps_server::proto::body::{self, OwnershipResponse, TimeResponse};

const CLIENT: &str = "coap-client-gnutls";

fn coap_get(dir: &Path, chain: &Path, addr: std::net::SocketAddr, path: &str) -> (bool, Vec<u8>) {
    let out = Command::new(CLIENT)
        .args(["-m", "get", "-B", "5", "-A", "60", "-c"])
        .arg(chain)
        .arg("-j")
        .arg(dir.join("device.key"))
        .arg("-R")
        .arg(dir.join("server-ca.pem"))
        .arg(format!("coaps+tcp://{addr}{path}"))
        .output()
        .expect("run coap-client");
    // coap-client ends its output with a newline.
    let mut data = out.stdout;
    if data.last() == Some(&b'\n') {
        data.pop();
    }
    (out.status.success(), data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libcoap_client_provisions_and_is_refused_without_its_intermediate() {
    if Command::new(CLIENT).arg("-h").output().is_err() {
        assert!(
            std::env::var_os("DPS_SKIP_INTEROP").is_some(),
            "{CLIENT} not found: install libcoap3-bin, or set DPS_SKIP_INTEROP=1 to skip"
        );
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    init(dir, false).expect("init");
    let running = start(dir).await;
    let addr = running.addr;
    let chain = dir.join("device-chain.pem");

    let (d, c) = (dir.to_owned(), chain.clone());
    let (ok, out) = tokio::task::spawn_blocking(move || coap_get(&d, &c, addr, "/x.plgd.dev/time"))
        .await
        .expect("join");
    assert!(ok, "coap-client failed");
    let time: TimeResponse = body::from_cbor(&out).expect("CBOR time");
    assert!(time.time.ends_with('Z'), "{}", time.time);

    let (d, c) = (dir.to_owned(), chain.clone());
    let (ok, out) = tokio::task::spawn_blocking(move || {
        coap_get(&d, &c, addr, "/api/v1/provisioning/ownership")
    })
    .await
    .expect("join");
    assert!(ok, "coap-client failed");
    let own: OwnershipResponse = body::from_cbor(&out).expect("CBOR ownership");
    assert_eq!(own.devowneruuid, ids::OWNER);

    // The leaf alone has a gap (Line 1 is not configured): the handshake is refused.
    let leaf_only = dir.join("leaf-only.pem");
    let pem = std::fs::read_to_string(&chain).expect("chain");
    let first_end = pem.find("-----END CERTIFICATE-----").expect("pem") + 26;
    std::fs::write(&leaf_only, &pem[..first_end]).expect("write");
    let d = dir.to_owned();
    let (_, out) =
        tokio::task::spawn_blocking(move || coap_get(&d, &leaf_only, addr, "/x.plgd.dev/time"))
            .await
            .expect("join");
    assert!(
        body::from_cbor::<TimeResponse>(&out).is_err(),
        "no answer for a refused device"
    );
    assert_eq!(
        running
            .server
            .verifier()
            .stats
            .rejected(RejectReason::NoPath),
        1
    );
    running.stop().await;
}
