//! Transport behaviour: TLS 1.2 devices, and the limits (5.03 with Max-Age when saturated or over
//! the request rate, instead of unbounded queueing).

mod common;

use common::server::*;
use dps_server::config::Config;
use dps_server::init::init;
use dps_server::proto::coap::{option, Code};
use dps_server::proto::stream::FramedIo;

const TIME: &str = "/x.plgd.dev/time";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_device_with_ecdhe_ecdsa_aes128_gcm() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;
    let tls = connect_with(
        dir.path(),
        running.addr,
        Some(demo_device(dir.path())),
        &[&rustls::version::TLS12],
        Some(vec![
            rustls::crypto::aws_lc_rs::cipher_suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        ]),
    )
    .await
    .expect("TLS 1.2 handshake");
    let (_, conn) = tls.get_ref();
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    assert_eq!(
        conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)
    );
    let mut dev = FramedIo::new(tls, 4096);
    let resp = dev
        .exchange(&request(Code::GET, 1, TIME))
        .await
        .expect("time");
    assert_eq!(resp.code, Code::CONTENT);
    drop(dev);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saturated_server_answers_503_with_max_age() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let mut config = Config::load(&dir.path().join("config.toml")).expect("config");
    config.file.limits.max_connections = 1;
    config.file.limits.busy_retry_after_s = 7;
    let running = start_with(&config).await;

    // The first device holds the only slot.
    let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("first");
    let mut first = FramedIo::new(tls, 4096);
    assert_eq!(
        first
            .exchange(&request(Code::GET, 1, TIME))
            .await
            .expect("time")
            .code,
        Code::CONTENT
    );

    // The second is told to come back later.
    let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("second");
    let mut second = FramedIo::new(tls, 4096);
    let busy = second
        .exchange(&request(Code::GET, 2, TIME))
        .await
        .expect("answer");
    assert_eq!(busy.code, Code::SERVICE_UNAVAILABLE);
    assert_eq!(busy.uint_option(option::MAX_AGE), Some(7));

    // When the first leaves, a new device is served again.
    drop(first);
    let mut served = false;
    for _ in 0..50 {
        let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
            .await
            .expect("third");
        let mut third = FramedIo::new(tls, 4096);
        if third
            .exchange(&request(Code::GET, 3, TIME))
            .await
            .expect("answer")
            .code
            == Code::CONTENT
        {
            served = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(served, "the slot came back");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rate_limit_answers_503() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let mut config = Config::load(&dir.path().join("config.toml")).expect("config");
    config.file.limits.max_requests_per_second = 2;
    let running = start_with(&config).await;
    let mut codes = Vec::new();
    for i in 0..4u8 {
        let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
            .await
            .expect("handshake");
        let mut dev = FramedIo::new(tls, 4096);
        let resp = dev
            .exchange(&request(Code::GET, i, TIME))
            .await
            .expect("answer");
        if resp.code == Code::SERVICE_UNAVAILABLE {
            assert_eq!(resp.uint_option(option::MAX_AGE), Some(1));
        }
        codes.push(resp.code);
    }
    assert_eq!(codes[0], Code::CONTENT);
    assert!(codes.contains(&Code::SERVICE_UNAVAILABLE), "{codes:?}");
    running.stop().await;
}
