//! The server on 127.0.0.1:0 with the demo set-up of `init`, driven by a Rust device built on the
//! shared codec: the full plgd flow, and what happens to devices and input that must be refused.

mod common;

use common::server::*;
use dps_server::init::{ids, init};
use dps_server::proto::body::{
    AceSubject, AclsResponse, CloudConfigurationRequest, CloudConfigurationResponse,
    CredentialsRequest, CredentialsResponse, Csr, OwnershipResponse, TimeResponse,
};
use dps_server::proto::coap::{option, Code, Frame};
use dps_server::proto::stream::FramedIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_flow_of_the_demo_device() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;
    let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 64 * 1024);

    // The server speaks first with a CSM.
    let csm = dev.read_frame().await.expect("read").expect("csm");
    assert_eq!(csm.code, Code::CSM);

    // Ping → Pong with the token.
    dev.write_frame(&Frame::ping(&[7, 7])).await.expect("ping");
    let pong = dev.read_frame().await.expect("read").expect("pong");
    assert_eq!(
        (pong.code, pong.token.as_slice()),
        (Code::PONG, &[7u8, 7][..])
    );

    let time: TimeResponse = decoded(
        &dev.exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
            .await
            .expect("time"),
        Code::CONTENT,
    );
    let t = time::OffsetDateTime::parse(&time.time, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    assert!((time::OffsetDateTime::now_utc() - t).whole_seconds().abs() < 60);

    let own: OwnershipResponse = decoded(
        &dev.exchange(&request(Code::GET, 2, "/api/v1/provisioning/ownership"))
            .await
            .expect("ownership"),
        Code::CONTENT,
    );
    assert_eq!(own.devowneruuid, ids::OWNER);

    let device_id = uuid::Uuid::new_v4();
    let cloud: CloudConfigurationResponse = decoded(
        &dev.exchange(&post(
            3,
            "/api/v1/provisioning/cloud-configuration",
            &CloudConfigurationRequest {
                di: device_id.to_string(),
                selected_gateway: None,
            },
        ))
        .await
        .expect("cloud"),
        Code::CHANGED,
    );
    assert_eq!(cloud.cis, "coaps+tcp://127.0.0.1:5684");
    assert_eq!(cloud.sid, ids::HUB);
    assert!(!cloud.apn.is_empty());
    assert_eq!(cloud.servers.len(), 1);
    assert_eq!(cloud.servers[0].id, ids::HUB);

    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("uuid:{device_id}"));
    let csr = params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem");
    let creds: CredentialsResponse = decoded(
        &dev.exchange(&post(
            4,
            "/api/v1/provisioning/credentials",
            &CredentialsRequest {
                di: device_id.to_string(),
                csr: Csr {
                    data: csr,
                    encoding: "oic.sec.encoding.pem".into(),
                },
            },
        ))
        .await
        .expect("credentials"),
        Code::CHANGED,
    );
    assert_eq!(creds.creds.len(), 2, "no pre-shared key in the demo groups");
    let cert_cred = &creds.creds[0];
    assert_eq!(
        (cert_cred.credtype, cert_cred.credusage.as_str()),
        (8, "oic.sec.cred.cert")
    );
    assert_eq!(cert_cred.subjectuuid, device_id.to_string());
    let trust = &creds.creds[1];
    assert_eq!(
        (trust.credtype, trust.credusage.as_str()),
        (8, "oic.sec.cred.trustca")
    );
    assert_eq!(trust.subjectuuid, ids::OWNER);
    let identity = CertificateDer::from_pem_slice(
        cert_cred
            .publicdata
            .as_ref()
            .expect("publicdata")
            .data
            .as_bytes(),
    )
    .expect("identity pem");
    let trust_ca = CertificateDer::from_pem_slice(
        trust
            .publicdata
            .as_ref()
            .expect("publicdata")
            .data
            .as_bytes(),
    )
    .expect("trust pem");
    assert_eq!(trust_ca, pem_certs(&dir.path().join("identity-ca.pem"))[0]);
    let (_, id_cert) = x509_parser::parse_x509_certificate(&identity).expect("x509");
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&trust_ca).expect("x509");
    id_cert
        .verify_signature(Some(ca_cert.public_key()))
        .expect("identity certificate verifies against the returned trust CA");
    assert_eq!(
        id_cert.public_key().raw,
        rcgen::PublicKeyData::subject_public_key_info(&key).as_slice()
    );
    let cn = id_cert.subject().iter_common_name().next().expect("cn");
    assert_eq!(cn.as_str().expect("utf8"), format!("uuid:{device_id}"));

    let acls: AclsResponse = decoded(
        &dev.exchange(&request(Code::GET, 5, "/api/v1/provisioning/acls"))
            .await
            .expect("acls"),
        Code::CONTENT,
    );
    assert_eq!(acls.aclist2.len(), 3);
    assert_eq!(
        acls.aclist2[0].subject,
        AceSubject::Uuid {
            uuid: ids::OWNER.into()
        }
    );
    assert_eq!(
        acls.aclist2[1].subject,
        AceSubject::Conntype {
            conntype: "anon-clear".into()
        }
    );
    assert_eq!(
        acls.aclist2[2].subject,
        AceSubject::Uuid {
            uuid: ids::HUB.into()
        }
    );
    assert!(acls.aclist2.iter().all(|a| a.tag == "dps"));

    assert!(
        running
            .server
            .verifier()
            .stats
            .accepted
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    drop(dev);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_devices_and_bad_input() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;

    // The demo device without the Line 1 intermediate has a gap: the handshake fails.
    let (chain, key) = demo_device(dir.path());
    let truncated = connect(dir.path(), running.addr, Some((chain[..1].to_vec(), key))).await;
    let refused = match truncated {
        Err(_) => true,
        // TLS 1.3: the client may finish before the server's alert; the first read fails.
        Ok(tls) => {
            let mut dev = FramedIo::new(tls, 4096);
            dev.read_frame().await.is_err()
        }
    };
    assert!(refused, "a device with a gap must not get a session");
    assert_eq!(
        running
            .server
            .verifier()
            .stats
            .rejected(dps_server::enrollment::RejectReason::NoPath),
        1
    );

    // No client certificate: the session exists, but provisioning resources are forbidden.
    let tls = connect(dir.path(), running.addr, None)
        .await
        .expect("handshake");
    let mut anon = FramedIo::new(tls, 4096);
    let resp = anon
        .exchange(&request(Code::GET, 1, "/x.plgd.dev/time"))
        .await
        .expect("answer");
    assert_eq!(resp.code, Code::FORBIDDEN);

    // Attested device: unknown path 4.04, wrong method 4.03, bad CBOR 4.00 — each closes.
    for (req, code) in [
        (request(Code::GET, 1, "/nope"), Code::NOT_FOUND),
        (request(Code::POST, 1, "/x.plgd.dev/time"), Code::FORBIDDEN),
        (
            request(Code::POST, 1, "/api/v1/provisioning/credentials")
                .with_content_format(60)
                .with_payload(vec![0xff, 0x00, 0x13]),
            Code::BAD_REQUEST,
        ),
        (
            request(Code::POST, 1, "/api/v1/provisioning/credentials")
                .with_content_format(41)
                .with_payload(vec![0xa0]),
            Code::BAD_REQUEST,
        ),
        (
            request(Code::GET, 1, "/x.plgd.dev/time").with_option(option::PROXY_URI, b"x".to_vec()),
            Code::BAD_OPTION,
        ),
        (
            post(
                1,
                "/api/v1/provisioning/credentials",
                &CredentialsRequest {
                    di: "x".into(),
                    csr: Csr {
                        data: "-----BEGIN CERTIFICATE REQUEST-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE REQUEST-----\n".into(),
                        encoding: "oic.sec.encoding.pem".into(),
                    },
                },
            ),
            Code::BAD_REQUEST,
        ),
        (
            post(
                1,
                "/api/v1/provisioning/credentials",
                &CredentialsRequest {
                    di: "x".into(),
                    csr: Csr {
                        data: {
                            let key = rcgen::KeyPair::generate().expect("key");
                            let mut params = rcgen::CertificateParams::default();
                            params.distinguished_name = rcgen::DistinguishedName::new();
                            params.distinguished_name.push(rcgen::DnType::CommonName, "not-a-uuid");
                            params.serialize_request(&key).expect("csr").pem().expect("pem")
                        },
                        encoding: "oic.sec.encoding.pem".into(),
                    },
                },
            ),
            Code::BAD_REQUEST,
        ),
    ] {
        let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
            .await
            .expect("handshake");
        let mut dev = FramedIo::new(tls, 4096);
        let resp = dev.exchange(&req).await.expect("answer");
        assert_eq!(
            resp.code,
            code,
            "{}",
            String::from_utf8_lossy(&resp.payload)
        );
        assert!(
            resp.content_format().is_none(),
            "errors carry no content format"
        );
        assert!(
            dev.read_frame().await.map_or(true, |f| f.is_none()),
            "closed after an error"
        );
    }

    // Half a frame, then the device goes away: the server closes cleanly and keeps serving.
    {
        use tokio::io::AsyncWriteExt;
        let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
            .await
            .expect("handshake");
        let mut dev = FramedIo::new(tls, 4096);
        let _csm = dev.read_frame().await.expect("csm");
        let frame = request(Code::GET, 3, "/x.plgd.dev/time")
            .to_bytes()
            .expect("encode");
        let raw = dev.get_mut();
        raw.write_all(&frame[..frame.len() / 2])
            .await
            .expect("write");
        raw.shutdown().await.expect("shutdown");
    }

    // Oversized length field: Abort and close, and the server keeps serving others.
    let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 4096);
    let _csm = dev.read_frame().await.expect("csm");
    {
        use tokio::io::AsyncWriteExt;
        let raw = dev.get_mut();
        raw.write_all(&[0xf0, 0x7f, 0xff, 0xff, 0xff, 0x01])
            .await
            .expect("write");
        raw.flush().await.expect("flush");
    }
    let abort = dev.read_frame().await.expect("read").expect("abort");
    assert_eq!(abort.code, Code::ABORT);

    let tls = connect(dir.path(), running.addr, Some(demo_device(dir.path())))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 4096);
    let resp = dev
        .exchange(&request(Code::GET, 9, "/x.plgd.dev/time"))
        .await
        .expect("time");
    assert_eq!(resp.code, Code::CONTENT);
}
