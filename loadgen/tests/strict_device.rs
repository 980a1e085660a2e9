//! The simulated device is as strict as iotivity-lite's real client: against a fake DPS (the
//! server crate's codec, framing and TLS provider; answers written here) that gets one thing
//! wrong, a valid device fails with that reason, and the collector counts it as an error (not a
//! verdict, so no mismatch) under `strict:<check>`. With nothing wrong the same fake server provisions it, so each failure is
//! the defect's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ciborium::Value;
use dps_loadgen::collect::Collector;
use dps_loadgen::device::{self, tls, DeviceContext, Observed, StrictCheck};
use dps_loadgen::fleet::{Credentials, Device, DeviceClass, Expected, Fleet, GroupInfo};
use dps_loadgen::scenario::DeviceMode;
use dps_server::config::HubConfig;
use dps_server::pki::{pem_encode, CertSpec, Issued};
use dps_server::proto::body::{
    self, Ace, AceResource, AceSubject, AclsResponse, Credential, CredentialsRequest,
    CredentialsResponse, OwnershipResponse, TimeResponse,
};
use dps_server::proto::coap::{Code, Frame};
use dps_server::proto::stream::FramedIo;
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use time::OffsetDateTime;

const OWNER: &str = "6f1c2b7a-3d4e-4f50-8a61-7b8c9d0e1f2a";
const HUB: &str = "2b3c4d5e-6f70-4182-93a4-b5c6d7e8f901";

/// What the fake server gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    None,
    /// Our server's old CSM: Max-Message-Size only, no token, 5 bytes.
    ShortCsm,
    /// A cloud configuration without `at` (what our server sent before it issued tokens).
    NoAccessToken,
    /// A cloud configuration with `at: ""`.
    EmptyAccessToken,
    /// An identity certificate valid for 59 minutes.
    ShortLivedIdentity,
    /// An ownership answer with a property besides `devowneruuid`.
    OwnershipExtra,
}

struct Pki {
    device_root: Issued,
    device: Issued,
    server_ca: Issued,
    server: Issued,
    identity_ca_params: rcgen::CertificateParams,
    identity_ca_key: rcgen::KeyPair,
    identity_ca_der: Vec<u8>,
}

fn pki() -> Pki {
    let device_root = Issued::self_signed(&CertSpec::ca("test manufacturer")).expect("root");
    let device = device_root
        .issue(&CertSpec::device("DEV-1"))
        .expect("device");
    let server_ca = Issued::self_signed(&CertSpec::ca("test server CA")).expect("server ca");
    let mut spec = CertSpec::device("localhost");
    spec.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    spec.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
    let server = server_ca.issue(&spec).expect("server");
    let identity_ca_key = rcgen::KeyPair::generate().expect("key");
    let mut identity_ca_params = rcgen::CertificateParams::default();
    identity_ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test identity CA");
    identity_ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let identity_ca_der = identity_ca_params
        .self_signed(&identity_ca_key)
        .expect("identity ca")
        .der()
        .to_vec();
    Pki {
        device_root,
        device,
        server_ca,
        server,
        identity_ca_params,
        identity_ca_key,
        identity_ca_der,
    }
}

/// Signs the device's CSR as a DPS would (valid from a minute ago for `validity`).
fn sign(pki: &Pki, csr_pem: &str, validity: time::Duration) -> String {
    let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem).expect("csr");
    let now = OffsetDateTime::now_utc();
    csr.params.not_before = now - time::Duration::minutes(1);
    csr.params.not_after = now + validity;
    let issuer = rcgen::Issuer::from_params(&pki.identity_ca_params, &pki.identity_ca_key);
    let leaf = csr.signed_by(&issuer).expect("sign");
    pem_encode("CERTIFICATE", leaf.der())
}

fn cbor<T: serde::Serialize>(v: &T) -> Vec<u8> {
    body::to_cbor(v).expect("encode")
}

/// The answer to one request, with `defect` applied.
fn answer(pki: &Pki, defect: Defect, req: &Frame) -> Frame {
    let reply = |code: Code, payload: Vec<u8>| {
        Frame::response(code, &req.token)
            .with_content_format(body::ContentFormat::OcfCbor.as_u16())
            .with_payload(payload)
    };
    match req.uri_path().trim_start_matches('/') {
        "x.plgd.dev/time" => {
            let now = OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .expect("time");
            reply(Code::CONTENT, cbor(&TimeResponse { time: now }))
        }
        "api/v1/provisioning/ownership" if defect == Defect::OwnershipExtra => {
            let owner = Value::Map(vec![
                (
                    Value::Text("devowneruuid".into()),
                    Value::Text(OWNER.into()),
                ),
                (Value::Text("rowneruuid".into()), Value::Text(OWNER.into())),
            ]);
            reply(Code::CONTENT, cbor(&owner))
        }
        "api/v1/provisioning/ownership" => reply(
            Code::CONTENT,
            cbor(&OwnershipResponse {
                devowneruuid: OWNER.into(),
            }),
        ),
        "api/v1/provisioning/cloud-configuration" => {
            let mut entries = vec![
                ("apn", Value::Text(String::new())),
                ("cis", Value::Text("coaps+tcp://hub.invalid:5684".into())),
                ("sid", Value::Text(HUB.into())),
            ];
            match defect {
                Defect::NoAccessToken => {}
                Defect::EmptyAccessToken => entries.push(("at", Value::Text(String::new()))),
                _ => entries.push(("at", Value::Text("eyJ0eXAiOiJKV1QifQ.e30.c2ln".into()))),
            }
            let map = entries
                .into_iter()
                .map(|(k, v)| (Value::Text(k.into()), v))
                .collect();
            reply(Code::CHANGED, cbor(&Value::Map(map)))
        }
        "api/v1/provisioning/credentials" => {
            let creq: CredentialsRequest = body::from_cbor(&req.payload).expect("request");
            let validity = if defect == Defect::ShortLivedIdentity {
                time::Duration::minutes(59)
            } else {
                time::Duration::days(30)
            };
            let creds = vec![
                Credential::certificate(
                    &creq.di,
                    body::CREDUSAGE_CERT,
                    &sign(pki, &creq.csr.data, validity),
                ),
                Credential::certificate(
                    OWNER,
                    body::CREDUSAGE_TRUSTCA,
                    &pem_encode("CERTIFICATE", &pki.identity_ca_der),
                ),
            ];
            reply(Code::CHANGED, cbor(&CredentialsResponse { creds }))
        }
        "api/v1/provisioning/acls" => {
            let aclist2 = vec![
                Ace::new(
                    body::PERMISSION_ALL,
                    AceSubject::Uuid { uuid: OWNER.into() },
                    vec![AceResource::href("/oic/sec/sp"), AceResource::wildcard()],
                ),
                Ace::new(
                    body::PERMISSION_READ,
                    AceSubject::Conntype {
                        conntype: body::CONNTYPE_ANON_CLEAR.into(),
                    },
                    vec![AceResource::href("/oic/d")],
                ),
            ];
            reply(Code::CONTENT, cbor(&AclsResponse { aclist2 }))
        }
        _ => Frame::response(Code::NOT_FOUND, &req.token),
    }
}

/// A fake DPS on a random port: verifies the device's manufacturer chain, sends a CSM, answers
/// every request (with `defect`) until the device hangs up.
async fn fake_dps(pki: Arc<Pki>, defect: Defect) -> SocketAddr {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(pki.device_root.der().clone())
        .expect("device root");
    let provider = Arc::new(dps_server::tls::device_port_provider());
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
            .build()
            .expect("verifier");
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![pki.server.der().clone()], pki.server.key_der())
        .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, pki) = (acceptor.clone(), pki.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut io = FramedIo::new(tls, 64 * 1024);
                let mut csm = Frame::csm(Some(1152));
                if defect != Defect::ShortCsm {
                    csm.token = vec![0x5a; 8];
                }
                if io.write_frame(&csm).await.is_err() {
                    return;
                }
                while let Ok(Some(req)) = io.read_frame().await {
                    if req.code.is_signal() {
                        continue;
                    }
                    if io.write_frame(&answer(&pki, defect, &req)).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn context(addr: SocketAddr, pki: &Pki) -> DeviceContext {
    DeviceContext {
        addr,
        mode: DeviceMode::Provision,
        tls: Arc::new(
            tls::ClientBase::new(Some(pki.server_ca.der()), tls::TlsOptions::default())
                .expect("client base"),
        ),
        timeout: Duration::from_secs(10),
        retry: Arc::new(dps_loadgen::retry::RetryPlan::none(Duration::from_secs(10))),
        sources: Vec::new(),
        connects: Default::default(),
        connections: None,
        links: Default::default(),
        hold: None,
        #[cfg(feature = "tpm-sim")]
        swtpm: None,
    }
}

fn valid_device(pki: &Pki) -> Device {
    Device {
        index: 0,
        class: DeviceClass::Valid,
        common_name: "DEV-1".into(),
        credentials: Credentials::X509 {
            chain: vec![pki.device.der().clone()],
            key: pki.device.key_der(),
        },
        expected: Expected::Accepted { group: "g".into() },
    }
}

fn fleet(pki: &Pki) -> Fleet {
    Fleet {
        devices: Vec::new(),
        groups: BTreeMap::from([(
            "g".to_owned(),
            GroupInfo {
                name: "g".into(),
                owner_uuid: OWNER.into(),
            },
        )]),
        server_ca: pki.server_ca.der().clone(),
        server_groups: Vec::new(),
        hub: HubConfig {
            id: HUB.into(),
            gateways: vec!["coaps+tcp://hub.invalid:5684".into()],
            name: None,
            authorization: None,
        },
        server_tpm_enrollments: Vec::new(),
        server_tpm_groups: Vec::new(),
    }
}

/// Runs one valid device against a fake DPS with `defect`; what it observed and how the
/// collector counted it.
async fn run(defect: Defect) -> (Observed, Collector) {
    let pki = Arc::new(pki());
    let addr = fake_dps(pki.clone(), defect).await;
    let dev = valid_device(&pki);
    let ctx = context(addr, &pki);
    let prepared = device::prepare(&dev, &ctx);
    let run = device::run(&dev, &ctx, &prepared, Instant::now()).await;
    let mut collector = Collector::default();
    collector.record(
        &dev,
        &run,
        &fleet(&pki),
        DeviceMode::Provision,
        Duration::ZERO,
    );
    (run.observed, collector)
}

#[tokio::test]
async fn a_correct_fake_dps_provisions_the_device() {
    let (observed, c) = run(Defect::None).await;
    assert!(
        matches!(&observed, Observed::Provisioned { owner, device_id }
            if owner == OWNER && uuid::Uuid::parse_str(device_id).is_ok()),
        "{observed:?}"
    );
    assert_eq!((c.provisioned, c.mismatches, c.errors), (1, 0, 0));
    assert!(c.strict_failures.is_empty());
}

#[tokio::test]
async fn each_defect_fails_a_valid_device_with_its_reason_as_an_error() {
    for (defect, check) in [
        (Defect::ShortCsm, StrictCheck::ShortFrame),
        (Defect::NoAccessToken, StrictCheck::AccessToken),
        (Defect::EmptyAccessToken, StrictCheck::AccessToken),
        (Defect::ShortLivedIdentity, StrictCheck::CertificateValidity),
        (Defect::OwnershipExtra, StrictCheck::Ownership),
    ] {
        let (observed, c) = run(defect).await;
        assert!(
            matches!(&observed, Observed::Strict { check: seen, .. } if *seen == check),
            "{defect:?}: {observed:?}"
        );
        // What the real client would refuse is an error, not a verdict of the server's.
        assert_eq!(
            (c.provisioned, c.mismatches, c.errors),
            (0, 0, 1),
            "{defect:?}"
        );
        assert_eq!(
            c.strict_failures,
            BTreeMap::from([(check, 1)]),
            "{defect:?}"
        );
        let valid = &c.classes[&DeviceClass::Valid];
        assert_eq!(
            (valid.as_expected, valid.mismatches, valid.errors),
            (0, 0, 1),
            "{defect:?}"
        );
        assert_eq!(
            valid.observed.get(&format!("strict:{check}")),
            Some(&1),
            "{defect:?}: {:?}",
            valid.observed
        );
    }
}
