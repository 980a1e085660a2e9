//! `make-seeds fixtures`: regenerate the fixed PKI under `fixtures/` (new keys; the committed
//! corpora then need `make-seeds corpus` again).
//! `make-seeds tpm-fixtures`: regenerate only the TPM fixtures under `fixtures/tpm/` (soft TPM
//! keys and quotes; `fixtures` does this too).
//! `make-seeds corpus`: write the small seed corpora under `corpus/<target>/seed-*` from the
//! fixtures.

use std::path::Path;

use dps_fuzz::tpm::{self as fx, tpm_fixture, tpm_fixtures_dir, NONCE};
use dps_fuzz::{cert, fixture, fixtures_dir, join_records, GROUP_A, GROUP_B};
use dps_server::pki::{chain_pem, device_csr, CertSpec, Issued};
use dps_server::proto::body::{
    self, CloudConfigurationRequest, CredentialsRequest, Csr, SelectedGateway, TpmAttestRequest,
    TpmChallengeRequest,
};
use dps_server::proto::coap::{Code, Frame};
use dps_server::tpm::marshal::{
    ClockInfo, Curve, HashAlg, PcrSelection, PublicKey, Scheme, Signature, SymDef,
};
use dps_server::tpm::soft::{AkKind, EkKind, SoftTpm, AK_ATTRIBUTES, EK_ATTRIBUTES, EK_POLICY};
use dps_server::tpm::{alg, Attest, Public};
use rcgen::KeyUsagePurpose;
use time::macros::datetime;

fn main() {
    let what = std::env::args().nth(1).unwrap_or_default();
    match what.as_str() {
        "fixtures" => {
            fixtures();
            tpm_fixtures();
        }
        "tpm-fixtures" => tpm_fixtures(),
        "corpus" => corpus(),
        _ => {
            eprintln!("usage: make-seeds fixtures|tpm-fixtures|corpus");
            std::process::exit(2);
        }
    }
}

fn write(path: &Path, bytes: impl AsRef<[u8]>) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

fn fixtures() {
    let dir = fixtures_dir();
    let long = |spec: CertSpec| {
        spec.valid_between(
            datetime!(2020-01-01 00:00:00 UTC),
            datetime!(2049-12-31 00:00:00 UTC),
        )
    };
    let root = Issued::self_signed(&long(CertSpec::ca("Fuzz Root CA"))).expect("root");
    let int1 = root
        .issue(&long(CertSpec::ca("Fuzz Intermediate CA #1")))
        .expect("int1");
    let int2 = int1
        .issue(&long(CertSpec::ca("Fuzz Intermediate CA #2")))
        .expect("int2");
    let mut spec3 = long(CertSpec::ca("Fuzz Intermediate CA #3"));
    spec3.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let int3 = int1.issue(&spec3).expect("int3");
    let other = Issued::self_signed(&long(CertSpec::ca("Other Root CA"))).expect("other");
    let identity = Issued::self_signed(&long(CertSpec::ca("Fuzz Identity CA"))).expect("idca");
    let dev = |issuer: &Issued, cn: &str| issuer.issue(&long(CertSpec::device(cn))).expect("dev");
    let expired = int2
        .issue(&CertSpec::device("SN-OLD").valid_between(
            datetime!(2020-01-01 00:00:00 UTC),
            datetime!(2021-01-01 00:00:00 UTC),
        ))
        .expect("expired");
    let all: Vec<(&str, Issued)> = vec![
        ("dev1", dev(&int2, "SN-000001")),
        ("dev-int1", dev(&int1, "SN-000002")),
        ("dev-deny", dev(&int2, "SN-DENY")),
        ("dev-expired", expired),
        ("dev-int3", dev(&int3, "SN-000003")),
        ("dev-other", dev(&other, "SN-OTHER")),
        ("root", root),
        ("int1", int1),
        ("int2", int2),
        ("int3-no-certsign", int3),
        ("other-root", other),
    ];
    for (name, c) in &all {
        write(&dir.join(format!("{name}.pem")), c.pem());
    }
    write(&dir.join("identity-ca.pem"), identity.pem());
    write(&dir.join("identity-ca.key"), identity.key_pem());
    let key = rcgen::KeyPair::generate().expect("key");
    write(&dir.join("csr-key.pem"), key.serialize_pem());
    println!("fixtures written to {}", dir.display());
}

/// Soft TPM EKs and AKs (RSA-2048 and ECC P-256, the default templates), the ECC AK's private key,
/// and a quote over [`NONCE`] by each AK. The signatures are picked so that their values have no
/// leading zero byte (nor n - s for ECDSA): the signature target compares values, and then there
/// is exactly one encoding of each.
fn tpm_fixtures() {
    let dir = tpm_fixtures_dir();
    for (name, ek, ak) in [
        ("rsa", EkKind::Rsa2048, AkKind::Rsa2048),
        ("ecc", EkKind::EccP256, AkKind::EccP256),
    ] {
        let (tpm, attest, sig) = loop {
            let tpm = SoftTpm::generate(ek, ak).expect("soft tpm");
            let (attest, sig) = tpm.quote(&NONCE).expect("quote");
            let unambiguous = match Signature::parse(&sig).expect("signature") {
                Signature::Rsassa { sig, .. } => sig[0] != 0,
                Signature::Ecdsa { r, s, .. } => {
                    r[0] != 0 && s[0] != 0 && fx::p256_negate_scalar(&s)[0] != 0
                }
                Signature::Rsapss { .. } => false,
            };
            if unambiguous {
                break (tpm, attest, sig);
            }
        };
        write(
            &dir.join(format!("ek-{name}.tpm2b")),
            tpm.ek().public().to_tpm2b(),
        );
        write(
            &dir.join(format!("ak-{name}.tpm2b")),
            tpm.ak().public().to_tpm2b(),
        );
        write(&dir.join(format!("quote-{name}.attest")), attest);
        write(&dir.join(format!("quote-{name}.sig")), sig);
        if ak == AkKind::EccP256 {
            write(
                &dir.join("ak-ecc.pk8"),
                tpm.ak().to_pkcs8().expect("AK private key"),
            );
        }
    }
    // Loading checks them (the quotes verify, the key matches its public area).
    fx::fixtures();
    println!("TPM fixtures written to {}", dir.display());
}

/// Seeds of the three TPM targets: the fixtures, plus public areas the soft TPM does not make
/// (P-384 with its base point as the key, RSA-4096, SHA-384/512 name algorithms, AES-256, PSS).
fn tpm_corpus(seed: &dyn Fn(&str, &str, &[u8])) {
    let mut publics: Vec<(String, Public)> = ["ek-rsa", "ek-ecc", "ak-rsa", "ak-ecc"]
        .iter()
        .map(|n| {
            let p = Public::from_tpm2b(&tpm_fixture(&format!("{n}.tpm2b"))).expect("fixture");
            (n.to_string(), p)
        })
        .collect();
    let (gx, gy) = fx::generator(Curve::NistP384);
    let p384 = PublicKey::Ecc {
        curve: Curve::NistP384,
        x: gx,
        y: gy,
    };
    publics.push((
        "ek-p384-sha384".into(),
        Public::new(
            HashAlg::Sha384,
            EK_ATTRIBUTES,
            vec![0x38; 48],
            Some(SymDef { key_bits: 256 }),
            Scheme::Null,
            p384.clone(),
        ),
    ));
    publics.push((
        "ak-p384".into(),
        Public::new(
            HashAlg::Sha256,
            AK_ATTRIBUTES,
            Vec::new(),
            None,
            Scheme::Ecdsa(HashAlg::Sha384),
            p384,
        ),
    ));
    let mut modulus = vec![0xc3; 512];
    modulus[0] = 0xe1;
    publics.push((
        "ek-rsa4096-sha512".into(),
        Public::new(
            HashAlg::Sha512,
            EK_ATTRIBUTES,
            EK_POLICY.to_vec(),
            Some(SymDef { key_bits: 256 }),
            Scheme::Null,
            PublicKey::Rsa {
                bits: 4096,
                exponent: 3,
                modulus,
            },
        ),
    ));
    let ak_rsa = &publics[2].1;
    publics.push((
        "ak-rsa-pss".into(),
        Public::new(
            ak_rsa.name_alg,
            ak_rsa.attributes,
            Vec::new(),
            None,
            Scheme::Rsapss(HashAlg::Sha256),
            ak_rsa.key.clone(),
        ),
    ));
    // Two EKs that parse but are refused by MakeCredential: the ECC fixture EK with the lowest bit
    // of y flipped (off the curve), and the RSA fixture EK with an even modulus.
    let ek_ecc = publics[1].1.clone();
    let PublicKey::Ecc { curve, x, y } = &ek_ecc.key else {
        panic!("ECC fixture EK")
    };
    let mut y1 = y.clone();
    if let Some(last) = y1.last_mut() {
        *last ^= 1;
    }
    assert!(!fx::on_curve(*curve, x, &y1));
    let off_curve = PublicKey::Ecc {
        curve: *curve,
        x: x.clone(),
        y: y1,
    };
    let ek_rsa = publics[0].1.clone();
    let PublicKey::Rsa {
        bits,
        exponent,
        modulus,
    } = &ek_rsa.key
    else {
        panic!("RSA fixture EK")
    };
    let mut even = modulus.clone();
    if let Some(last) = even.last_mut() {
        *last &= 0xfe;
    }
    let even = PublicKey::Rsa {
        bits: *bits,
        exponent: *exponent,
        modulus: even,
    };
    for (name, template, key) in [
        ("ek-ecc-off-curve", &ek_ecc, off_curve),
        ("ek-rsa-even-modulus", &ek_rsa, even),
    ] {
        let p = Public::new(
            template.name_alg,
            template.attributes,
            template.auth_policy.clone(),
            template.symmetric,
            template.scheme,
            key,
        );
        publics.push((name.into(), p));
    }
    for (name, p) in &publics {
        seed("tpm_public", name, &p.to_tpm2b());
        seed("tpm_public", &format!("{name}-tpmt"), p.tpmt());
    }

    // tpm_attest: [mode][TPMS_ATTEST]; bit 0 picks the AK, bit 1 signs the data afresh.
    let with_mode = |mode: u8, bytes: &[u8]| [&[mode][..], bytes].concat();
    let (ecc_attest, rsa_attest) = (
        tpm_fixture("quote-ecc.attest"),
        tpm_fixture("quote-rsa.attest"),
    );
    seed("tpm_attest", "ecc", &with_mode(0, &ecc_attest));
    seed("tpm_attest", "rsa", &with_mode(1, &rsa_attest));
    seed("tpm_attest", "ecc-resigned", &with_mode(2, &ecc_attest));
    let banks = Attest {
        magic: alg::TPM_GENERATED_VALUE,
        qualified_signer: Vec::new(),
        extra_data: Vec::new(),
        clock_info: ClockInfo {
            clock: u64::MAX,
            reset_count: 1,
            restart_count: 2,
            safe: false,
        },
        firmware_version: 7,
        pcr_select: [HashAlg::Sha256, HashAlg::Sha384, HashAlg::Sha512]
            .iter()
            .map(|h| PcrSelection {
                hash: h.id(),
                select: vec![0xff, 0, 0x80, 1],
            })
            .collect(),
        pcr_digest: vec![0x42; 64],
    };
    seed(
        "tpm_attest",
        "banks-resigned",
        &with_mode(3, &banks.marshal()),
    );

    // tpm_signature: [mode][TPMT_SIGNATURE]; mode % 4 picks the AK: ECC, ECC with scheme NULL,
    // RSA, RSA with scheme NULL.
    let (ecc_sig, rsa_sig) = (tpm_fixture("quote-ecc.sig"), tpm_fixture("quote-rsa.sig"));
    seed("tpm_signature", "ecc", &with_mode(0, &ecc_sig));
    seed("tpm_signature", "ecc-null", &with_mode(1, &ecc_sig));
    seed("tpm_signature", "rsa", &with_mode(2, &rsa_sig));
    seed("tpm_signature", "rsa-null", &with_mode(3, &rsa_sig));
    seed("tpm_signature", "rsa-to-ecc", &with_mode(0, &rsa_sig));
    let Signature::Rsassa { sig, .. } = Signature::parse(&rsa_sig).expect("fixture") else {
        panic!("RSASSA fixture")
    };
    let pss = Signature::Rsapss {
        hash: HashAlg::Sha384,
        sig,
    };
    seed("tpm_signature", "pss-sha384", &with_mode(3, &pss.marshal()));
    let Signature::Ecdsa { r, s, .. } = Signature::parse(&ecc_sig).expect("fixture") else {
        panic!("ECDSA fixture")
    };
    let sha384 = Signature::Ecdsa {
        hash: HashAlg::Sha384,
        r,
        s,
    };
    seed(
        "tpm_signature",
        "ecdsa-sha384",
        &with_mode(1, &sha384.marshal()),
    );
}

fn corpus() {
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    let seed = |target: &str, name: &str, bytes: &[u8]| {
        write(&base.join(target).join(format!("seed-{name}")), bytes);
    };

    // coap_decoder: the frames of the device protocol, CSM, ping, and two frames back to back.
    let frames = [
        ("csm", Frame::csm(Some(65_535))),
        ("ping", Frame::ping(&[1, 2, 3, 4])),
        (
            "get-time",
            Frame::request(Code::GET, &[7; 8], "/x.plgd.dev/time").with_accept(10_000),
        ),
        (
            "post-credentials",
            Frame::request(Code::POST, &[9; 8], "/api/v1/provisioning/credentials")
                .with_content_format(10_000)
                .with_accept(10_000)
                .with_uint_option(2049, 2048)
                .with_payload(vec![0xa1, 0x62, b'd', b'i', 0x61, b'x']),
        ),
        (
            "big-payload",
            Frame::request(Code::POST, &[], "/a").with_payload(vec![0x55; 17_000]),
        ),
    ];
    let mut both = Vec::new();
    for (name, f) in &frames {
        let bytes = f.to_bytes().expect("encode");
        seed("coap_decoder", name, &bytes);
        if *name != "big-payload" {
            both.extend_from_slice(&bytes);
        }
    }
    seed("coap_decoder", "pipelined", &both);

    // cbor_bodies: each request body, CBOR.
    let cloud = CloudConfigurationRequest {
        di: "0b1d0b1d-0000-4000-8000-000000000001".into(),
        selected_gateway: Some(SelectedGateway {
            uri: "coaps+tcp://hub:5684".into(),
            id: "hub".into(),
        }),
    };
    let key = rcgen::KeyPair::from_pem(&fixture("csr-key.pem")).expect("csr key");
    let device_id = uuid::Uuid::parse_str("0b1d0b1d-0000-4000-8000-000000000001").expect("uuid");
    let csr_text = device_csr(&device_id, &key).expect("csr");
    let creds = CredentialsRequest {
        di: device_id.to_string(),
        csr: Csr {
            data: csr_text.clone(),
            encoding: "oic.sec.encoding.pem".into(),
        },
    };
    let challenge = TpmChallengeRequest {
        ek_public: vec![0, 4, 1, 2, 3, 4],
        ek_certificate: Some(cert("dev1").to_vec()),
        ek_chain: vec![cert("int2").to_vec()],
        ak_public: vec![0, 2, 9, 9],
    };
    let attest = TpmAttestRequest {
        secret: vec![1; 32],
        quote: vec![0xff, 0x54, 0x43, 0x47],
        signature: vec![0, 0x18, 0, 0x0b],
    };
    seed(
        "cbor_bodies",
        "cloud",
        &body::to_cbor(&cloud).expect("cbor"),
    );
    seed(
        "cbor_bodies",
        "creds",
        &body::to_cbor(&creds).expect("cbor"),
    );
    seed(
        "cbor_bodies",
        "tpm-challenge",
        &body::to_cbor(&challenge).expect("cbor"),
    );
    seed(
        "cbor_bodies",
        "tpm-attest",
        &body::to_cbor(&attest).expect("cbor"),
    );

    // csr: the DER of a valid CSR, one with a wrong CN, and the PEM text itself.
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(csr_text.as_bytes())
        .map(|d: rustls_pki_types::CertificateSigningRequestDer<'_>| d.as_ref().to_vec())
        .expect("csr der");
    seed("csr", "valid-der", &der);
    seed("csr", "valid-pem", csr_text.as_bytes());
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "SN-not-a-uuid");
    let wrong = params.serialize_request(&key).expect("csr");
    seed("csr", "wrong-cn-der", wrong.der());

    // config: a config with every section and inline group chains.
    let chain = chain_pem([&cert("int1"), &cert("root")]);
    let config = format!(
        r#"[server]
listen = "127.0.0.1:15684"
certificate = "server.pem"
key = "server.key"
identity_ca_certificate = "identity-ca.pem"
identity_ca_key = "identity-ca.key"

[admin]
listen = "127.0.0.1:15685"
token = "secret"

[store]
path = ":memory:"

[[hub]]
id = "5c0b0bd3-0000-4000-8000-000000000001"
name = "hub"
gateways = ["coaps+tcp://hub:5684"]

[[enrollment_group]]
id = "{GROUP_A}"
name = "factory-a"
owner = "acme"
certificate_chain = """
{chain}"""
lead_certificate = 0
expired_certificates_allowed = false
allow_common_names = []
deny_common_names = ["SN-DENY"]
hub_ids = ["5c0b0bd3-0000-4000-8000-000000000001"]

[[enrollment_group]]
id = "{GROUP_B}"
name = "other"
owner = "other"
certificate_chain = """
{other}"""
lead_certificate = "Other Root CA"
expired_certificates_allowed = true
"#,
        other = chain_pem([&cert("other-root")]),
    );
    seed("config", "full", config.as_bytes());
    seed("config", "empty", b"");

    // admin_group_json: a valid group body, and one with every optional field.
    let group = serde_json::json!({
        "id": "3f6c1c1e-0000-4000-8000-000000000001",
        "name": "api-group",
        "owner": "acme",
        "certificate_chain": chain_pem([&cert("int2"), &cert("int1"), &cert("root")]),
    });
    seed("admin_group_json", "minimal", group.to_string().as_bytes());
    let full = serde_json::json!({
        "id": "3f6c1c1e-0000-4000-8000-000000000002",
        "name": "api-group-2",
        "owner": "3f6c1c1e-0000-4000-8000-0000000000ff",
        "certificate_chain": chain_pem([&cert("int2"), &cert("int1"), &cert("root")]),
        "lead_certificate": "Fuzz Intermediate CA #2",
        "expired_certificates_allowed": true,
        "allow_common_names": ["SN-1"],
        "deny_common_names": ["SN-2"],
        "hub_ids": [],
        "pre_shared_key": "0123456789abcdef0123",
    });
    seed("admin_group_json", "full", full.to_string().as_bytes());

    // authenticate: accepted, rejected for each reason the fixtures can produce, and reordered.
    let c = |n: &str| cert(n).to_vec();
    let chains: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("accepted", vec![c("dev1"), c("int2")]),
        ("accepted-int1", vec![c("dev-int1")]),
        ("accepted-other", vec![c("dev-other")]),
        ("no-path", vec![c("dev1")]),
        ("denied", vec![c("dev-deny"), c("int2")]),
        ("expired", vec![c("dev-expired"), c("int2")]),
        ("not-ca", vec![c("dev-int3"), c("int3-no-certsign")]),
        (
            "reversed-dup",
            vec![c("dev1"), c("root"), c("int1"), c("int2"), c("int2")],
        ),
        ("leaf-is-ca", vec![c("int2"), c("int1")]),
    ];
    for (name, chain) in &chains {
        let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        seed("authenticate", name, &join_records(&refs));
    }

    tpm_corpus(&seed);
    println!("seed corpora written under {}", base.display());
}
