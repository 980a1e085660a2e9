use super::*;
use ciborium::Value;
use dps_server::pki::{chain_pem, CertSpec, Issued};
use dps_server::proto::body::{self, Credential, CredentialsResponse};
use rcgen::PublicKeyData as _;
use time::{Duration, OffsetDateTime};

struct Fixture {
    id: uuid::Uuid,
    key: rcgen::KeyPair,
    ca: Issued,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            id: uuid::Uuid::new_v4(),
            key: rcgen::KeyPair::generate().expect("key"),
            ca: Issued::self_signed(&CertSpec::ca("identity CA")).expect("ca"),
        }
    }

    fn spki(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }

    fn leaf(&self, spec: CertSpec) -> CertificateDer<'static> {
        self.ca
            .issue_for_public_key(&spec, &self.spki())
            .expect("leaf")
    }

    fn spec(&self) -> CertSpec {
        CertSpec::device(format!("uuid:{}", self.id))
    }

    fn creds(&self, leaf: &CertificateDer<'_>, ca_pem: &str) -> Vec<Credential> {
        let owner = uuid::Uuid::new_v4().to_string();
        vec![
            Credential::psk(&owner, &[7; 16]),
            Credential::certificate(
                &self.id.to_string(),
                body::CREDUSAGE_CERT,
                &chain_pem([leaf]),
            ),
            Credential::certificate(&owner, body::CREDUSAGE_TRUSTCA, ca_pem),
        ]
    }

    fn check(&self, creds: Vec<Credential>) -> Result<Applied, Violation> {
        let payload = body::to_cbor(&CredentialsResponse { creds }).expect("encode");
        self.check_payload(&payload)
    }

    fn check_payload(&self, payload: &[u8]) -> Result<Applied, Violation> {
        let root = super::super::parse_root(payload).expect("parses");
        let spki = self.spki();
        let device = DeviceKey {
            device_id: self.id,
            spki: &spki,
        };
        credentials(&root, &device, &DpsClock::new(OffsetDateTime::now_utc()))
    }

    fn refused_by(&self, creds: Vec<Credential>) -> StrictCheck {
        self.check(creds).expect_err("refused").check
    }
}

#[test]
fn a_well_formed_answer_is_applied() {
    let f = Fixture::new();
    let leaf = f.leaf(f.spec());
    let applied = f.check(f.creds(&leaf, &f.ca.pem())).expect("applied");
    assert_eq!(applied.identity, leaf);
    assert_eq!(applied.identity_subject, f.id.to_string());
}

#[test]
fn the_identity_certificate_must_carry_the_csr_key() {
    let f = Fixture::new();
    let other = f.ca.issue(&f.spec()).expect("other key");
    assert_eq!(
        f.refused_by(f.creds(other.der(), &f.ca.pem())),
        StrictCheck::IdentityKey
    );
}

#[test]
fn the_identity_certificate_must_name_the_device() {
    let f = Fixture::new();
    let upper = format!("uuid:{}", f.id.hyphenated().to_string().to_uppercase());
    for cn in [
        format!("uuid:{}", uuid::Uuid::new_v4()),
        f.id.to_string(),
        upper,
        "uuid:".to_owned(),
    ] {
        let leaf = f.leaf(CertSpec::device(cn.clone()));
        assert_eq!(
            f.refused_by(f.creds(&leaf, &f.ca.pem())),
            StrictCheck::IdentityCn,
            "{cn}"
        );
    }
    // The client looks for the prefix anywhere in the CN.
    let leaf = f.leaf(CertSpec::device(format!("device uuid:{}", f.id)));
    assert!(f.check(f.creds(&leaf, &f.ca.pem())).is_ok());
}

#[test]
fn certificates_must_be_valid_now_and_for_an_hour_more() {
    let f = Fixture::new();
    let now = OffsetDateTime::now_utc();
    let short = f.leaf(
        f.spec()
            .valid_between(now - Duration::days(1), now + Duration::minutes(59)),
    );
    assert_eq!(
        f.refused_by(f.creds(&short, &f.ca.pem())),
        StrictCheck::CertificateValidity
    );
    let early = f.leaf(
        f.spec()
            .valid_between(now + Duration::minutes(5), now + Duration::days(30)),
    );
    assert_eq!(
        f.refused_by(f.creds(&early, &f.ca.pem())),
        StrictCheck::CertificateValidity
    );
    let enough = f.leaf(
        f.spec()
            .valid_between(now - Duration::minutes(1), now + Duration::minutes(62)),
    );
    assert!(f.check(f.creds(&enough, &f.ca.pem())).is_ok());
    let ca = Issued::self_signed(
        &CertSpec::ca("expiring CA")
            .valid_between(now - Duration::days(1), now + Duration::minutes(30)),
    )
    .expect("ca");
    let leaf = f.leaf(f.spec());
    assert_eq!(
        f.refused_by(f.creds(&leaf, &ca.pem())),
        StrictCheck::CertificateValidity
    );
}

#[test]
fn the_validity_rule_is_the_real_clients() {
    let now = 1_750_000_000;
    assert_eq!(validate(now, now - 10, now + EXPIRING_LIMIT_S), Ok(()));
    assert_eq!(
        validate(now, now, now + EXPIRING_LIMIT_S - 1),
        Err("expiring")
    );
    assert_eq!(validate(now, now - 100, now - 1), Err("expired"));
    assert_eq!(validate(now, now + 1, now + 100_000), Err("not yet valid"));
}

#[test]
fn credential_shapes_the_client_cannot_apply() {
    let f = Fixture::new();
    let leaf = f.leaf(f.spec());
    let ca = f.ca.pem();
    let mut cases: Vec<(&str, Vec<Credential>)> = Vec::new();
    let mut no_trust = f.creds(&leaf, &ca);
    no_trust.pop();
    cases.push(("no trust anchor", no_trust));
    let mut untagged = f.creds(&leaf, &ca);
    untagged[1].tag = "other".into();
    cases.push(("identity not tagged dps", untagged));
    let mut der = f.creds(&leaf, &ca);
    if let Some(p) = der[2].publicdata.as_mut() {
        p.encoding = "oic.sec.encoding.der".into();
    }
    cases.push(("unsupported encoding", der));
    let mut psk = f.creds(&leaf, &ca);
    if let Some(p) = psk[0].privatedata.as_mut() {
        p.data = vec![1; 15];
    }
    cases.push(("15-byte PSK", psk));
    let mut garbage = f.creds(&leaf, &ca);
    if let Some(p) = garbage[2].publicdata.as_mut() {
        p.data = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into();
    }
    cases.push(("unparsable trust anchor", garbage));
    let mut no_public = f.creds(&leaf, &ca);
    no_public[2].publicdata = None;
    cases.push(("certificate without publicdata", no_public));
    for (what, creds) in cases {
        assert_eq!(f.refused_by(creds), StrictCheck::Credentials, "{what}");
    }
}

#[test]
fn a_root_rowneruuid_or_a_missing_subject_is_refused() {
    let f = Fixture::new();
    let leaf = f.leaf(f.spec());
    let good = body::to_cbor(&CredentialsResponse {
        creds: f.creds(&leaf, &f.ca.pem()),
    })
    .expect("encode");
    let Value::Map(mut root) =
        ciborium::de::from_reader::<Value, _>(good.as_slice()).expect("cbor")
    else {
        panic!("not a map");
    };
    let mut with_owner = root.clone();
    with_owner.push((
        Value::Text("rowneruuid".into()),
        Value::Text(uuid::Uuid::new_v4().to_string()),
    ));
    let payload = body::to_cbor(&Value::Map(with_owner)).expect("encode");
    assert_eq!(
        f.check_payload(&payload).expect_err("refused").check,
        StrictCheck::Credentials
    );
    if let Some(Value::Array(creds)) = root.first_mut().map(|(_, v)| v) {
        if let Some(Value::Map(trust)) = creds.get_mut(2) {
            trust.retain(|(k, _)| k.as_text() != Some("subjectuuid"));
        }
    }
    let payload = body::to_cbor(&Value::Map(root)).expect("encode");
    let refused = f.check_payload(&payload).expect_err("refused");
    assert_eq!(refused.check, StrictCheck::Credentials);
    assert!(refused.detail.contains("subjectuuid"), "{}", refused.detail);
}
