//! CSR rules at the device port: the subject must be exactly `CN=uuid:<device id>` (an extra
//! `O=evil` is refused, never copied into the identity certificate), and a key the server cannot
//! verify (P-521) is refused naming the supported ones rather than as a bad signature.

mod common;

use common::server::*;
use dps_server::init::init;
use dps_server::proto::body::{CredentialsRequest, Csr};
use dps_server::proto::coap::{Code, Frame};
use dps_server::proto::stream::FramedIo;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

const CREDENTIALS: &str = "/api/v1/provisioning/credentials";

fn csr(key: &KeyPair, attributes: &[(DnType, String)]) -> CredentialsRequest {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    for (kind, value) in attributes {
        params.distinguished_name.push(kind.clone(), value.clone());
    }
    CredentialsRequest {
        di: String::new(),
        csr: Csr {
            data: params
                .serialize_request(key)
                .expect("csr")
                .pem()
                .expect("pem"),
            encoding: "oic.sec.encoding.pem".into(),
        },
    }
}

async fn ask(dir: &std::path::Path, addr: std::net::SocketAddr, req: &CredentialsRequest) -> Frame {
    let tls = connect(dir, addr, Some(demo_device(dir)))
        .await
        .expect("handshake");
    let mut dev = FramedIo::new(tls, 64 * 1024);
    dev.exchange(&post(1, CREDENTIALS, req))
        .await
        .expect("answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_subject_and_key_rules() {
    let dir = tempfile::tempdir().expect("tmp");
    init(dir.path(), false).expect("init");
    let running = start(dir.path()).await;
    let id = uuid::Uuid::new_v4();
    let cn = (DnType::CommonName, format!("uuid:{id}"));
    let key = KeyPair::generate().expect("key");

    let evil = [cn.clone(), (DnType::OrganizationName, "evil".into())];
    let resp = ask(dir.path(), running.addr, &csr(&key, &evil)).await;
    let diagnostic = String::from_utf8_lossy(&resp.payload).into_owned();
    assert_eq!(resp.code, Code::BAD_REQUEST, "{diagnostic}");
    assert!(diagnostic.contains("exactly CN=uuid:"), "{diagnostic}");

    let p521 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).expect("P-521 key");
    let resp = ask(
        dir.path(),
        running.addr,
        &csr(&p521, std::slice::from_ref(&cn)),
    )
    .await;
    let diagnostic = String::from_utf8_lossy(&resp.payload).into_owned();
    assert_eq!(resp.code, Code::BAD_REQUEST, "{diagnostic}");
    assert!(
        diagnostic.contains("P-521") && diagnostic.contains("P-256"),
        "{diagnostic}"
    );

    // A plain CSR: the certificate's subject is exactly the CN, nothing else.
    let resp = ask(
        dir.path(),
        running.addr,
        &csr(&key, std::slice::from_ref(&cn)),
    )
    .await;
    let cert = identity_of(&resp);
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).expect("identity certificate");
    let rdns: Vec<_> = parsed.subject().iter().collect();
    assert_eq!(rdns.len(), 1, "{}", parsed.subject());
    assert_eq!(rdns[0].iter().count(), 1, "{}", parsed.subject());
    assert_eq!(parsed.subject().to_string(), format!("CN=uuid:{id}"));

    // RSA 2048 is supported.
    let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
        .expect("RSA key");
    let other = (DnType::CommonName, format!("uuid:{}", uuid::Uuid::new_v4()));
    let resp = ask(dir.path(), running.addr, &csr(&rsa, &[other])).await;
    identity_of(&resp);
    running.stop().await;
}
