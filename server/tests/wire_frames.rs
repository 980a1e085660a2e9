//! The bytes the server writes, read raw off the TLS stream: every frame must be readable by a
//! client that reads 6 bytes before it knows a message's length (iotivity-lite), and the CSM
//! carries an 8-byte token as go-coap's does.

mod common;

use common::server::*;
use dps_server::config::Config;
use dps_server::init::init;
use dps_server::proto::coap::{decode_frame, Code, Frame, MIN_FRAME_LEN};
use dps_server::proto::stream::FramedIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Reads raw bytes until one whole frame is buffered; returns it with its encoded length.
async fn raw_frame<S: tokio::io::AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut Vec<u8>,
) -> (Frame, usize) {
    loop {
        if let Some((frame, len)) = decode_frame(buf, 1 << 20).expect("well-formed frame") {
            buf.drain(..len);
            return (frame, len);
        }
        let mut chunk = [0u8; 512];
        let n = io.read(&mut chunk).await.expect("read");
        assert!(n > 0, "the server closed with {} bytes pending", buf.len());
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csm_has_an_8_byte_token_and_short_answers_are_padded() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;
    let mut tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("handshake");
    let mut buf = Vec::new();

    let (csm, len) = raw_frame(&mut tls, &mut buf).await;
    assert_eq!(csm.code, Code::CSM);
    assert_eq!(csm.token.len(), 8, "go-coap's CSM token length");
    assert!(len >= 7, "CSM of {len} bytes");
    assert!(csm.csm_max_message_size().is_some());

    // A Ping with an empty token: its Pong echoes the empty token, so it is padded.
    tls.write_all(&[0x00, 0xE2]).await.expect("ping");
    let (pong, len) = raw_frame(&mut tls, &mut buf).await;
    assert_eq!(pong.code, Code::PONG);
    assert!(pong.token.is_empty(), "the Pong echoes the Ping's token");
    assert!(len >= MIN_FRAME_LEN, "Pong of {len} bytes");

    // A request with an empty token to an unknown resource: its error answer is long enough too.
    let get = Frame::request(Code::GET, &[], "/nowhere")
        .to_bytes()
        .expect("encode");
    tls.write_all(&get).await.expect("request");
    let (answer, len) = raw_frame(&mut tls, &mut buf).await;
    assert_eq!(answer.code, Code::NOT_FOUND);
    assert!(len >= MIN_FRAME_LEN, "error answer of {len} bytes");
    drop(tls);

    // Bad framing (TKL 15): Abort, at least 6 bytes.
    let mut tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("handshake");
    let mut buf = Vec::new();
    let (csm, _) = raw_frame(&mut tls, &mut buf).await;
    assert_eq!(csm.code, Code::CSM);
    tls.write_all(&[0x0F, 0x01]).await.expect("garbage");
    let (abort, len) = raw_frame(&mut tls, &mut buf).await;
    assert_eq!(abort.code, Code::ABORT);
    assert!(len >= MIN_FRAME_LEN, "Abort of {len} bytes");
    drop(tls);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_refusal_frames_are_readable() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let mut config = Config::load(&dir.path().join("config.toml")).expect("config");
    config.file.limits.max_connections = 1;
    let running = start_with(&config).await;

    let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("first");
    let mut first = FramedIo::new(tls, 4096);
    let served = first
        .exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
        .await
        .expect("time");
    assert_eq!(served.code, Code::CONTENT);

    let mut tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("second");
    let mut buf = Vec::new();
    let (csm, len) = raw_frame(&mut tls, &mut buf).await;
    assert_eq!(csm.code, Code::CSM);
    assert_eq!(csm.token.len(), 8);
    assert!(len >= 7, "busy CSM of {len} bytes");
    let get = Frame::request(Code::GET, &[], "/x.plgd.dev/time")
        .to_bytes()
        .expect("encode");
    tls.write_all(&get).await.expect("request");
    let (busy, len) = raw_frame(&mut tls, &mut buf).await;
    assert_eq!(busy.code, Code::SERVICE_UNAVAILABLE);
    assert!(len >= MIN_FRAME_LEN, "5.03 of {len} bytes");
    drop(tls);
    drop(first);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csm_with_an_unknown_critical_option_is_aborted() {
    use dps_server::proto::coap::signal_option::BAD_CSM_OPTION;
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;

    // An elective unknown option (6) is ignored: the connection goes on.
    let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 4096);
    dev.write_frame(&Frame::csm(Some(4096)).with_option(6, Vec::new()))
        .await
        .expect("csm");
    let served = dev
        .exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
        .await
        .expect("time");
    assert_eq!(served.code, Code::CONTENT);
    drop(dev);

    // A critical one (9): Abort naming it, then the server closes.
    let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 4096);
    dev.write_frame(&Frame::csm(Some(4096)).with_option(9, b"x".to_vec()))
        .await
        .expect("csm");
    let abort = loop {
        let frame = dev.read_frame().await.expect("read").expect("an Abort");
        if frame.code != Code::CSM {
            break frame;
        }
    };
    assert_eq!(abort.code, Code::ABORT);
    assert_eq!(abort.uint_option(BAD_CSM_OPTION), Some(9));
    assert!(
        String::from_utf8_lossy(&abort.payload).contains("critical CSM option 9"),
        "{abort:?}"
    );
    assert!(
        dev.read_frame().await.map_or(true, |f| f.is_none()),
        "closed after the Abort"
    );
    running.stop().await;
}
