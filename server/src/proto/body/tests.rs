//! Unit tests of the body shapes and encodings.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use ciborium::Value;
use std::fmt::Debug;

const OWNER: &str = "2c3c0c5e-7c5a-4d2b-9c1e-8e1f0a4b5c6d";
const DEVICE: &str = "9a6b0e8c-1f1d-4e5e-8a4b-0c1d2e3f4a5b";

fn value_of<T: Serialize>(v: &T) -> Value {
    from_cbor::<Value>(&to_cbor(v).unwrap()).unwrap()
}

fn map_of(v: &Value) -> &[(Value, Value)] {
    match v {
        Value::Map(entries) => entries,
        other => panic!("expected a map, got {other:?}"),
    }
}

/// The map's keys, in wire order (all must be text).
fn keys(v: &Value) -> Vec<String> {
    map_of(v)
        .iter()
        .map(|(k, _)| match k {
            Value::Text(t) => t.clone(),
            other => panic!("non-text key {other:?}"),
        })
        .collect()
}

fn field<'a>(v: &'a Value, key: &str) -> &'a Value {
    map_of(v)
        .iter()
        .find(|(k, _)| k.as_text() == Some(key))
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no key {key}"))
}

/// CBOR and JSON round trips, and the CBOR key order.
fn check<T>(value: &T, expected_keys: &[&str])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    assert_eq!(keys(&value_of(value)), expected_keys);
    for format in [
        ContentFormat::Cbor,
        ContentFormat::OcfCbor,
        ContentFormat::Json,
    ] {
        let bytes = encode(format, value).unwrap();
        let back: T = decode(format, &bytes).unwrap();
        assert_eq!(&back, value, "{format:?}");
    }
}

#[test]
fn simple_bodies() {
    check(
        &TimeResponse {
            time: "2024-05-01T12:00:00.123456789Z".into(),
        },
        &["time"],
    );
    check(
        &OwnershipResponse {
            devowneruuid: OWNER.into(),
        },
        &["devowneruuid"],
    );
    // Exact bytes: {"time": "t"}.
    let bytes = to_cbor(&TimeResponse { time: "t".into() }).unwrap();
    assert_eq!(bytes, [0xA1, 0x64, b't', b'i', b'm', b'e', 0x61, b't']);
}

#[test]
fn cloud_configuration() {
    let mut req = CloudConfigurationRequest {
        di: DEVICE.into(),
        selected_gateway: None,
    };
    check(&req, &["di"]);
    req.selected_gateway = Some(SelectedGateway {
        uri: "coaps+tcp://hub:5684".into(),
        id: OWNER.into(),
    });
    check(&req, &["di", "selectedGateway"]);
    assert_eq!(
        keys(field(&value_of(&req), "selectedGateway")),
        ["uri", "id"]
    );

    let mut resp = CloudConfigurationResponse {
        apn: String::new(),
        cis: "coaps+tcp://hub:5684".into(),
        at: String::new(),
        sid: OWNER.into(),
        servers: Vec::new(),
    };
    check(&resp, &["apn", "cis", "sid"]);
    assert_eq!(field(&value_of(&resp), "apn"), &Value::Text(String::new()));
    resp.at = "token".into();
    resp.servers = vec![CloudServer {
        id: OWNER.into(),
        uri: "coaps+tcp://hub2:5684".into(),
    }];
    check(
        &resp,
        &["apn", "cis", "at", "sid", "x.org.iotivity.servers"],
    );
    let v = value_of(&resp);
    let servers = field(&v, "x.org.iotivity.servers");
    let first = servers.as_array().unwrap().first().unwrap();
    assert_eq!(keys(first), ["id", "uri"]);
    // A device that omits apn on the way back is still understood.
    let no_apn: CloudConfigurationResponse = from_json(br#"{"cis":"c","sid":"s"}"#).unwrap();
    assert_eq!(no_apn.apn, "");
}

#[test]
fn credentials() {
    let req = CredentialsRequest {
        di: DEVICE.into(),
        csr: Csr {
            data: "-----BEGIN CERTIFICATE REQUEST-----\n...".into(),
            encoding: ENCODING_PEM.into(),
        },
    };
    check(&req, &["di", "csr"]);
    let v = value_of(&req);
    assert_eq!(keys(field(&v, "csr")), ["data", "encoding"]);
    assert!(field(field(&v, "csr"), "data").is_text());

    let key: Vec<u8> = (1..=16).collect();
    let resp = CredentialsResponse {
        creds: vec![
            Credential::psk(OWNER, &key),
            Credential::certificate(DEVICE, CREDUSAGE_CERT, "-----BEGIN CERTIFICATE-----\nA"),
            Credential::certificate(OWNER, CREDUSAGE_TRUSTCA, "-----BEGIN CERTIFICATE-----\nB"),
        ],
    };
    check(&resp, &["creds"]);
    let v = value_of(&resp);
    let creds = field(&v, "creds").as_array().unwrap();
    assert_eq!(
        keys(&creds[0]),
        ["credtype", "subjectuuid", "privatedata", "tag"]
    );
    let chain_keys = ["credtype", "subjectuuid", "credusage", "publicdata", "tag"];
    assert_eq!(keys(&creds[1]), chain_keys);
    assert_eq!(keys(&creds[2]), chain_keys);
    assert_eq!(field(&creds[0], "credtype"), &Value::Integer(1.into()));
    assert_eq!(field(&creds[1], "credtype"), &Value::Integer(8.into()));
    assert_eq!(
        field(&creds[2], "credusage").as_text(),
        Some(CREDUSAGE_TRUSTCA)
    );
    assert_eq!(field(&creds[0], "tag").as_text(), Some("dps"));

    // privatedata.data is a 16-byte CBOR byte string; publicdata.data is text.
    let private = field(&creds[0], "privatedata");
    assert_eq!(keys(private), ["data", "encoding"]);
    assert_eq!(field(private, "data"), &Value::Bytes(key.clone()));
    assert_eq!(field(private, "encoding").as_text(), Some(ENCODING_RAW));
    let public = field(&creds[1], "publicdata");
    assert_eq!(keys(public), ["data", "encoding"]);
    assert!(field(public, "data").is_text());

    // In JSON the raw key is base64 text (as Go encodes []byte).
    let json: serde_json::Value = serde_json::from_slice(&to_json(&resp).unwrap()).unwrap();
    assert_eq!(
        json["creds"][0]["privatedata"]["data"],
        serde_json::json!("AQIDBAUGBwgJCgsMDQ4PEA==")
    );
}

#[test]
fn acls() {
    let resp = AclsResponse {
        aclist2: vec![
            Ace::new(
                PERMISSION_ALL,
                AceSubject::Uuid { uuid: OWNER.into() },
                vec![AceResource::href("/oic/sec/sp"), AceResource::wildcard()],
            ),
            Ace::new(
                PERMISSION_READ,
                AceSubject::Conntype {
                    conntype: CONNTYPE_ANON_CLEAR.into(),
                },
                vec![AceResource::href("/oic/d")],
            ),
        ],
    };
    check(&resp, &["aclist2"]);
    let v = value_of(&resp);
    let aces = field(&v, "aclist2").as_array().unwrap();
    for ace in aces {
        assert_eq!(keys(ace), ["permission", "resources", "subject", "tag"]);
    }
    assert_eq!(keys(field(&aces[0], "subject")), ["uuid"]);
    assert_eq!(keys(field(&aces[1], "subject")), ["conntype"]);
    let resources = field(&aces[0], "resources").as_array().unwrap();
    assert_eq!(keys(&resources[0]), ["href", "if"]);
    assert_eq!(keys(&resources[1]), ["if", "wc"]);
    assert_eq!(
        field(&resources[1], "if"),
        &Value::Array(vec![Value::Text("*".into())])
    );
    assert_eq!(field(&resources[1], "wc").as_text(), Some("*"));
}

#[test]
fn tpm_bodies() {
    let mut req = TpmChallengeRequest {
        ek_public: vec![0, 1, 2],
        ek_certificate: None,
        ek_chain: Vec::new(),
        ak_public: vec![3, 4],
    };
    check(&req, &["ekPublic", "akPublic"]);
    req.ek_certificate = Some(vec![0x30, 0x82]);
    req.ek_chain = vec![vec![0x30, 1], vec![0x30, 2]];
    check(&req, &["ekPublic", "ekCertificate", "ekChain", "akPublic"]);
    let v = value_of(&req);
    assert_eq!(field(&v, "ekPublic"), &Value::Bytes(vec![0, 1, 2]));
    assert_eq!(field(&v, "ekCertificate"), &Value::Bytes(vec![0x30, 0x82]));
    assert_eq!(
        field(&v, "ekChain"),
        &Value::Array(vec![
            Value::Bytes(vec![0x30, 1]),
            Value::Bytes(vec![0x30, 2])
        ])
    );

    let resp = TpmChallengeResponse {
        credential_blob: vec![1; 70],
        encrypted_secret: vec![2; 258],
        nonce: vec![3; 32],
    };
    check(&resp, &["credentialBlob", "encryptedSecret", "nonce"]);
    assert_eq!(field(&value_of(&resp), "nonce"), &Value::Bytes(vec![3; 32]));

    let att = TpmAttestRequest {
        secret: vec![9; 32],
        quote: vec![0xFF, 0x54, 0x43, 0x47],
        signature: vec![0, 0x14],
    };
    check(&att, &["secret", "quote", "signature"]);
    assert!(field(&value_of(&att), "quote").is_bytes());

    let mut done = TpmAttestResponse {
        registration_id: "ABCDEF".into(),
        group: String::new(),
    };
    check(&done, &["registrationId"]);
    done.group = "tpm-group".into();
    check(&done, &["registrationId", "group"]);
}

#[test]
fn lenient_where_harmless() {
    // Unknown keys are ignored; a byte string written as an integer array is accepted.
    let mut bytes = Vec::new();
    let v = Value::Map(vec![
        (
            Value::Text("secret".into()),
            Value::Array(vec![1.into(), 2.into()]),
        ),
        (Value::Text("quote".into()), Value::Bytes(vec![3])),
        (Value::Text("signature".into()), Value::Bytes(vec![4])),
        (Value::Text("extra".into()), Value::Bool(true)),
    ]);
    ciborium::ser::into_writer(&v, &mut bytes).unwrap();
    let att: TpmAttestRequest = from_cbor(&bytes).unwrap();
    assert_eq!(att.secret, vec![1, 2]);
    let att: TpmAttestRequest =
        from_json(br#"{"secret":"AQI=","quote":[3],"signature":"BA=="}"#).unwrap();
    assert_eq!(
        (att.secret, att.quote, att.signature),
        (vec![1, 2], vec![3], vec![4])
    );
}

#[test]
fn bad_input_is_an_error() {
    let good = to_cbor(&OwnershipResponse {
        devowneruuid: OWNER.into(),
    })
    .unwrap();
    // Truncated, empty, trailing bytes, wrong type, missing field, garbage.
    assert!(from_cbor::<OwnershipResponse>(&good[..good.len() - 1]).is_err());
    assert!(from_cbor::<OwnershipResponse>(&[]).is_err());
    let mut trailing = good.clone();
    trailing.push(0x00);
    assert!(matches!(
        from_cbor::<OwnershipResponse>(&trailing),
        Err(BodyError::Cbor(_))
    ));
    assert!(from_cbor::<OwnershipResponse>(&[0xA1, 0x61, b'x', 0x01]).is_err());
    assert!(from_cbor::<TimeResponse>(&[0xA1, 0x64, b't', b'i', b'm', b'e', 0x01]).is_err());
    assert!(from_cbor::<TimeResponse>(&[0xFF, 0xFF, 0xFF]).is_err());
    // A byte string claiming 4 GiB must fail on the missing bytes, not allocate them.
    assert!(from_cbor::<TpmAttestRequest>(&[
        0xA1, 0x66, b's', b'e', b'c', b'r', b'e', b't', 0x5A, 0xFF, 0xFF, 0xFF, 0xFF
    ])
    .is_err());
    // Deep nesting is refused by the recursion limit instead of overflowing the stack.
    assert!(from_cbor::<Value>(&[0x81; 100_000]).is_err());
    // Text where bytes are expected (CBOR), bad base64 (JSON), bad JSON.
    assert!(from_cbor::<PrivateData>(&[
        0xA2, 0x64, b'd', b'a', b't', b'a', 0x61, b'x', 0x68, b'e', b'n', b'c', b'o', b'd', b'i',
        b'n', b'g', 0x60
    ])
    .is_err());
    assert!(from_json::<PrivateData>(br#"{"data":"@@","encoding":""}"#).is_err());
    assert!(matches!(
        from_json::<TimeResponse>(b"{"),
        Err(BodyError::Json(_))
    ));
    // Pseudo-random garbage never panics.
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for _ in 0..2000 {
        let len = (x % 40) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let _ = from_cbor::<CredentialsResponse>(&bytes);
        let _ = from_cbor::<AclsResponse>(&bytes);
        let _ = from_cbor::<TpmChallengeRequest>(&bytes);
        let _ = from_json::<CloudConfigurationRequest>(&bytes);
    }
}

#[test]
fn content_formats() {
    assert_eq!(ContentFormat::from_u16(50), Some(ContentFormat::Json));
    assert_eq!(ContentFormat::from_u16(60), Some(ContentFormat::Cbor));
    assert_eq!(ContentFormat::from_u16(10000), Some(ContentFormat::OcfCbor));
    assert_eq!(ContentFormat::from_u16(0), None);
    assert_eq!(ContentFormat::from_u16(u16::MAX), None);
    assert_eq!(ContentFormat::OcfCbor.as_u16(), 10000);
    assert_eq!(ContentFormat::default(), ContentFormat::OcfCbor);
    assert!(ContentFormat::Cbor.is_cbor() && !ContentFormat::Json.is_cbor());
    assert_eq!(ContentFormat::from_accept(None), Ok(ContentFormat::OcfCbor));
    assert_eq!(
        ContentFormat::from_accept(Some(50)),
        Ok(ContentFormat::Json)
    );
    assert_eq!(
        ContentFormat::from_accept(Some(41)),
        Err(BodyError::UnsupportedContentFormat(41))
    );
    assert_eq!(
        ContentFormat::try_from(42),
        Err(BodyError::UnsupportedContentFormat(42))
    );
    let body = to_cbor(&TimeResponse { time: "t".into() }).unwrap();
    assert_eq!(
        decode_as::<TimeResponse>(0, &body),
        Err(BodyError::UnsupportedContentFormat(0))
    );
    assert!(decode_as::<TimeResponse>(60, &body).is_ok());
    assert!(decode_as::<TimeResponse>(50, &body).is_err());
    assert!(BodyError::UnsupportedContentFormat(0)
        .to_string()
        .contains('0'));
}

/// A Serialize impl that encodes CBOR itself while `to_cbor` holds the thread's scratch buffer.
struct Nested(Vec<u32>);

impl Serialize for Nested {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let inner = to_cbor(&self.0).map_err(serde::ser::Error::custom)?;
        serializer.serialize_bytes(&inner)
    }
}

/// A body that fails half-way through its encoding.
struct FailsHalfWay;

impl Serialize for FailsHalfWay {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(2))?;
        seq.serialize_element("written before the failure")?;
        Err(serde::ser::Error::custom("refused"))
    }
}

/// The same value encoded into a fresh buffer, without the scratch.
fn fresh<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(value, &mut out).unwrap();
    out
}

#[test]
fn the_scratch_buffer_never_leaks_between_bodies() {
    let big = Value::Bytes(vec![7u8; 3 * CBOR_SCRATCH_KEEP]);
    let small = TimeResponse {
        time: "2026-01-01T00:00:00Z".into(),
    };
    // A big body, then a small one: the small one's bytes are exactly its own.
    assert_eq!(to_cbor(&big).unwrap(), fresh(&big));
    assert_eq!(to_cbor(&small).unwrap(), fresh(&small));
    assert_eq!(to_cbor(&small).unwrap(), fresh(&small));
    // Re-entrant encoding gets its own buffer and both levels come out whole.
    let outer = to_cbor(&Nested(vec![1, 2, 3])).unwrap();
    let bytes = from_cbor::<Value>(&outer).unwrap().into_bytes().unwrap();
    assert_eq!(from_cbor::<Vec<u32>>(&bytes).unwrap(), vec![1, 2, 3]);
    // A failed encoding is an error, and what it wrote does not reach the next body.
    assert!(matches!(to_cbor(&FailsHalfWay), Err(BodyError::Encode(_))));
    assert_eq!(to_cbor(&small).unwrap(), fresh(&small));
}
