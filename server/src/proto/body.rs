//! Request and response bodies of the provisioning resources (see the resource tables of the
//! protocol spec), with their CBOR / JSON encodings.
//!
//! Map keys are exactly the spec's, serialized in declaration order; empty optional fields are
//! omitted. Binary fields (`privatedata.data`, the TPM blobs) are CBOR byte strings: ciborium 0.2
//! writes a plain `Vec<u8>` as an array of integers, so they go through the [`bstr`] helpers,
//! which call `serialize_bytes` (a CBOR bstr) and, for human-readable formats (JSON), write a
//! standard base64 string instead, as Go's `encoding/json` does for `[]byte`. No `serde_bytes`
//! dependency is needed.

use std::cell::RefCell;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// `credtype` of a symmetric pair-wise key (the group's pre-shared key).
pub const CREDTYPE_PSK: u32 = 1;
/// `credtype` of an asymmetric signing key with certificate.
pub const CREDTYPE_CERT: u32 = 8;
/// `encoding` of PEM text.
pub const ENCODING_PEM: &str = "oic.sec.encoding.pem";
/// `encoding` of raw bytes.
pub const ENCODING_RAW: &str = "oic.sec.encoding.raw";
/// `credusage` of the device identity certificate chain.
pub const CREDUSAGE_CERT: &str = "oic.sec.cred.cert";
/// `credusage` of a trust anchor.
pub const CREDUSAGE_TRUSTCA: &str = "oic.sec.cred.trustca";
/// `tag` of every credential and ACE we issue.
pub const TAG_DPS: &str = "dps";
/// `conntype` of unauthenticated, unencrypted peers.
pub const CONNTYPE_ANON_CLEAR: &str = "anon-clear";
/// ACE permission: create, read, update, delete, notify.
pub const PERMISSION_ALL: u32 = 31;
/// ACE permission: read.
pub const PERMISSION_READ: u32 = 2;

/// Why a body could not be encoded or decoded.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The bytes are not valid CBOR for the expected shape (or have trailing bytes).
    #[error("invalid CBOR body: {0}")]
    Cbor(String),
    /// The bytes are not valid JSON for the expected shape.
    #[error("invalid JSON body: {0}")]
    Json(String),
    /// The value could not be serialized.
    #[error("cannot encode body: {0}")]
    Encode(String),
    /// A content format we neither read nor write.
    #[error("unsupported content format {0}")]
    UnsupportedContentFormat(u16),
}

/// The content formats the service accepts and produces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ContentFormat {
    /// `application/json` (50).
    Json = 50,
    /// `application/cbor` (60).
    Cbor = 60,
    /// `application/vnd.ocf+cbor` (10000), the default.
    #[default]
    OcfCbor = 10000,
}

impl ContentFormat {
    /// The format for a Content-Format / Accept number, if supported.
    pub fn from_u16(number: u16) -> Option<ContentFormat> {
        match number {
            50 => Some(ContentFormat::Json),
            60 => Some(ContentFormat::Cbor),
            10000 => Some(ContentFormat::OcfCbor),
            _ => None,
        }
    }

    /// The response format for a request's Accept option: absent means [`ContentFormat::OcfCbor`].
    pub fn from_accept(accept: Option<u16>) -> Result<ContentFormat, BodyError> {
        accept.map_or(Ok(ContentFormat::OcfCbor), ContentFormat::try_from)
    }

    /// The Content-Format number.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// Whether this is one of the CBOR formats.
    pub fn is_cbor(self) -> bool {
        matches!(self, ContentFormat::Cbor | ContentFormat::OcfCbor)
    }
}

impl TryFrom<u16> for ContentFormat {
    type Error = BodyError;

    fn try_from(number: u16) -> Result<Self, BodyError> {
        ContentFormat::from_u16(number).ok_or(BodyError::UnsupportedContentFormat(number))
    }
}

thread_local! {
    /// Per-thread encoding buffer of [`to_cbor`]: ciborium writes a body in many small pushes, and
    /// growing a fresh `Vec` through them cost about nine reallocations per credentials response
    /// (a third of its encoding instructions, and a count that varied with the heap's layout).
    static CBOR_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer that grew past this (a huge body) is released rather than kept per thread.
const CBOR_SCRATCH_KEEP: usize = 64 * 1024;

/// Serializes `value` as CBOR.
///
/// Encodes into a per-thread scratch buffer and returns an exact-size copy: one allocation per
/// body instead of a chain of reallocations.
pub fn to_cbor<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BodyError> {
    CBOR_SCRATCH.with(|cell| {
        // A Serialize impl that itself encodes CBOR re-enters here: it gets a fresh buffer.
        let Ok(mut scratch) = cell.try_borrow_mut() else {
            return encode_cbor_into(value, Vec::new());
        };
        let buffer = std::mem::take(&mut *scratch);
        encode_cbor_into(value, buffer).map(|encoded| {
            let copy = encoded.clone();
            if encoded.capacity() <= CBOR_SCRATCH_KEEP {
                *scratch = encoded;
            }
            copy
        })
    })
}

/// Encodes `value` into `buffer` (cleared first).
fn encode_cbor_into<T: Serialize + ?Sized>(
    value: &T,
    mut buffer: Vec<u8>,
) -> Result<Vec<u8>, BodyError> {
    buffer.clear();
    ciborium::ser::into_writer(value, &mut buffer).map_err(|e| BodyError::Encode(e.to_string()))?;
    Ok(buffer)
}

/// Deserializes exactly one CBOR item filling all of `bytes` (trailing bytes are an error).
pub fn from_cbor<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let mut rest = bytes;
    let value = ciborium::de::from_reader(&mut rest).map_err(|e| BodyError::Cbor(e.to_string()))?;
    if !rest.is_empty() {
        return Err(BodyError::Cbor(format!(
            "{} trailing bytes after the body",
            rest.len()
        )));
    }
    Ok(value)
}

/// Serializes `value` as JSON.
pub fn to_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, BodyError> {
    serde_json::to_vec(value).map_err(|e| BodyError::Encode(e.to_string()))
}

/// Deserializes a JSON document.
pub fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    serde_json::from_slice(bytes).map_err(|e| BodyError::Json(e.to_string()))
}

/// Serializes `value` in `format`.
pub fn encode<T: Serialize + ?Sized>(
    format: ContentFormat,
    value: &T,
) -> Result<Vec<u8>, BodyError> {
    match format {
        ContentFormat::Json => to_json(value),
        ContentFormat::Cbor | ContentFormat::OcfCbor => to_cbor(value),
    }
}

/// Deserializes `bytes` written in `format`.
pub fn decode<T: DeserializeOwned>(format: ContentFormat, bytes: &[u8]) -> Result<T, BodyError> {
    match format {
        ContentFormat::Json => from_json(bytes),
        ContentFormat::Cbor | ContentFormat::OcfCbor => from_cbor(bytes),
    }
}

/// Deserializes `bytes` whose Content-Format option is `number` (unsupported numbers refused).
pub fn decode_as<T: DeserializeOwned>(number: u16, bytes: &[u8]) -> Result<T, BodyError> {
    decode(ContentFormat::try_from(number)?, bytes)
}

/// `GET /x.plgd.dev/time` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeResponse {
    /// RFC 3339 with nanoseconds.
    #[serde(rename = "time")]
    pub time: String,
}

/// `GET /api/v1/provisioning/ownership` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OwnershipResponse {
    /// The owner UUID.
    #[serde(rename = "devowneruuid")]
    pub devowneruuid: String,
}

/// The gateway a device asks for in a cloud-configuration request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelectedGateway {
    /// Gateway URI.
    #[serde(rename = "uri")]
    pub uri: String,
    /// Hub id.
    #[serde(rename = "id")]
    pub id: String,
}

/// `POST /api/v1/provisioning/cloud-configuration` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudConfigurationRequest {
    /// Device id.
    #[serde(rename = "di")]
    pub di: String,
    /// The gateway the device would like, if any.
    #[serde(
        rename = "selectedGateway",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub selected_gateway: Option<SelectedGateway>,
}

/// One alternative hub server in a cloud-configuration response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudServer {
    /// Hub id.
    #[serde(rename = "id")]
    pub id: String,
    /// Gateway URI.
    #[serde(rename = "uri")]
    pub uri: String,
}

/// `POST /api/v1/provisioning/cloud-configuration` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudConfigurationResponse {
    /// Authorization provider name; always sent, even empty (the device requires it).
    #[serde(rename = "apn", default)]
    pub apn: String,
    /// Cloud interface server: the gateway URI.
    #[serde(rename = "cis")]
    pub cis: String,
    /// Access token, omitted when empty.
    #[serde(rename = "at", default, skip_serializing_if = "String::is_empty")]
    pub at: String,
    /// Hub id (a UUID).
    #[serde(rename = "sid")]
    pub sid: String,
    /// Alternative servers, omitted when empty.
    #[serde(
        rename = "x.org.iotivity.servers",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub servers: Vec<CloudServer>,
}

/// A CSR in a credentials request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Csr {
    /// The PEM text (a CBOR text string, as iotivity-lite sends it).
    #[serde(rename = "data")]
    pub data: String,
    /// [`ENCODING_PEM`].
    #[serde(rename = "encoding")]
    pub encoding: String,
}

/// `POST /api/v1/provisioning/credentials` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsRequest {
    /// Device id (informative; the id is taken from the signed certificate).
    #[serde(rename = "di")]
    pub di: String,
    /// The certificate signing request.
    #[serde(rename = "csr")]
    pub csr: Csr,
}

/// `publicdata` of a credential: PEM text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicData {
    /// PEM text (CBOR text string).
    #[serde(rename = "data")]
    pub data: String,
    /// [`ENCODING_PEM`].
    #[serde(rename = "encoding")]
    pub encoding: String,
}

/// `privatedata` of a credential: raw key bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateData {
    /// Raw key (CBOR byte string; 16 bytes for the pre-shared key).
    #[serde(rename = "data", with = "bstr")]
    pub data: Vec<u8>,
    /// [`ENCODING_RAW`].
    #[serde(rename = "encoding")]
    pub encoding: String,
}

/// One entry of `creds` (no `rowneruuid`, no `credid`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// [`CREDTYPE_PSK`] or [`CREDTYPE_CERT`].
    #[serde(rename = "credtype")]
    pub credtype: u32,
    /// The subject: owner UUID or device UUID.
    #[serde(rename = "subjectuuid")]
    pub subjectuuid: String,
    /// [`CREDUSAGE_CERT`] / [`CREDUSAGE_TRUSTCA`], omitted when empty.
    #[serde(
        rename = "credusage",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub credusage: String,
    /// Certificate PEM, if any.
    #[serde(
        rename = "publicdata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub publicdata: Option<PublicData>,
    /// Raw key, if any.
    #[serde(
        rename = "privatedata",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub privatedata: Option<PrivateData>,
    /// [`TAG_DPS`].
    #[serde(rename = "tag")]
    pub tag: String,
}

impl Credential {
    /// The group's pre-shared key for `owner_uuid`.
    pub fn psk(owner_uuid: &str, key: &[u8]) -> Credential {
        Credential {
            credtype: CREDTYPE_PSK,
            subjectuuid: owner_uuid.to_owned(),
            credusage: String::new(),
            publicdata: None,
            privatedata: Some(PrivateData {
                data: key.to_vec(),
                encoding: ENCODING_RAW.to_owned(),
            }),
            tag: TAG_DPS.to_owned(),
        }
    }

    /// A certificate credential with `usage` ([`CREDUSAGE_CERT`] or [`CREDUSAGE_TRUSTCA`]).
    pub fn certificate(subject_uuid: &str, usage: &str, pem: &str) -> Credential {
        Credential {
            credtype: CREDTYPE_CERT,
            subjectuuid: subject_uuid.to_owned(),
            credusage: usage.to_owned(),
            publicdata: Some(PublicData {
                data: pem.to_owned(),
                encoding: ENCODING_PEM.to_owned(),
            }),
            privatedata: None,
            tag: TAG_DPS.to_owned(),
        }
    }
}

/// `POST /api/v1/provisioning/credentials` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialsResponse {
    /// The credentials, in the spec's order.
    #[serde(rename = "creds")]
    pub creds: Vec<Credential>,
}

/// One resource of an ACE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AceResource {
    /// Resource path, omitted when empty (wildcard entries).
    #[serde(rename = "href", default, skip_serializing_if = "String::is_empty")]
    pub href: String,
    /// Interfaces: `["*"]`.
    #[serde(rename = "if")]
    pub interfaces: Vec<String>,
    /// Wildcard (`"*"`), omitted when empty.
    #[serde(rename = "wc", default, skip_serializing_if = "String::is_empty")]
    pub wc: String,
}

impl AceResource {
    /// `{"href": path, "if": ["*"]}`.
    pub fn href(path: &str) -> AceResource {
        AceResource {
            href: path.to_owned(),
            interfaces: vec!["*".to_owned()],
            wc: String::new(),
        }
    }

    /// `{"if": ["*"], "wc": "*"}`.
    pub fn wildcard() -> AceResource {
        AceResource {
            href: String::new(),
            interfaces: vec!["*".to_owned()],
            wc: "*".to_owned(),
        }
    }
}

/// The subject of an ACE: `{"uuid"}` or `{"conntype"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AceSubject {
    /// A device or owner UUID.
    Uuid {
        /// The UUID.
        #[serde(rename = "uuid")]
        uuid: String,
    },
    /// A connection type, e.g. [`CONNTYPE_ANON_CLEAR`].
    Conntype {
        /// The connection type.
        #[serde(rename = "conntype")]
        conntype: String,
    },
}

/// One entry of `aclist2` (no `rowneruuid`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ace {
    /// CRUDN bit mask.
    #[serde(rename = "permission")]
    pub permission: u32,
    /// The resources.
    #[serde(rename = "resources")]
    pub resources: Vec<AceResource>,
    /// Who is granted.
    #[serde(rename = "subject")]
    pub subject: AceSubject,
    /// [`TAG_DPS`].
    #[serde(rename = "tag")]
    pub tag: String,
}

impl Ace {
    /// An ACE tagged [`TAG_DPS`].
    pub fn new(permission: u32, subject: AceSubject, resources: Vec<AceResource>) -> Ace {
        Ace {
            permission,
            resources,
            subject,
            tag: TAG_DPS.to_owned(),
        }
    }
}

/// `GET /api/v1/provisioning/acls` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclsResponse {
    /// The access control entries, in the spec's order.
    #[serde(rename = "aclist2")]
    pub aclist2: Vec<Ace>,
}

/// `POST /api/v1/provisioning/tpm/challenge` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmChallengeRequest {
    /// The EK's marshalled TPM2B_PUBLIC.
    #[serde(rename = "ekPublic", with = "bstr")]
    pub ek_public: Vec<u8>,
    /// The EK certificate (DER), for TPM enrollment groups.
    #[serde(
        rename = "ekCertificate",
        default,
        with = "bstr_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ek_certificate: Option<Vec<u8>>,
    /// Intermediate certificates (DER) of the EK certificate.
    #[serde(
        rename = "ekChain",
        default,
        with = "bstr_seq",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ek_chain: Vec<Vec<u8>>,
    /// The AK's marshalled TPM2B_PUBLIC.
    #[serde(rename = "akPublic", with = "bstr")]
    pub ak_public: Vec<u8>,
}

/// `POST /api/v1/provisioning/tpm/challenge` response (TPM2_MakeCredential output + nonce).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmChallengeResponse {
    /// TPM2B_ID_OBJECT.
    #[serde(rename = "credentialBlob", with = "bstr")]
    pub credential_blob: Vec<u8>,
    /// TPM2B_ENCRYPTED_SECRET.
    #[serde(rename = "encryptedSecret", with = "bstr")]
    pub encrypted_secret: Vec<u8>,
    /// 32-byte nonce the quote's extraData must carry.
    #[serde(rename = "nonce", with = "bstr")]
    pub nonce: Vec<u8>,
}

/// `POST /api/v1/provisioning/tpm/attest` request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmAttestRequest {
    /// The secret recovered by TPM2_ActivateCredential.
    #[serde(rename = "secret", with = "bstr")]
    pub secret: Vec<u8>,
    /// TPMS_ATTEST of a TPM2_Quote over the nonce.
    #[serde(rename = "quote", with = "bstr")]
    pub quote: Vec<u8>,
    /// TPMT_SIGNATURE of the quote by the AK.
    #[serde(rename = "signature", with = "bstr")]
    pub signature: Vec<u8>,
}

/// `POST /api/v1/provisioning/tpm/attest` response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TpmAttestResponse {
    /// The registration id (base32 of SHA-256 over the EK TPM2B_PUBLIC).
    #[serde(rename = "registrationId")]
    pub registration_id: String,
    /// The enrollment group that admitted the TPM, omitted when empty.
    #[serde(rename = "group", default, skip_serializing_if = "String::is_empty")]
    pub group: String,
}

/// `#[serde(with = "bstr")]` for `Vec<u8>`: a CBOR byte string, or base64 text in JSON.
/// Decoding also accepts an array of integers (what a plain `Vec<u8>` would produce).
pub mod bstr {
    use base64::Engine as _;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;

    /// Serializes bytes as a byte string (base64 text for human-readable formats).
    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
        } else {
            serializer.serialize_bytes(bytes)
        }
    }

    /// Deserializes a byte string (or base64 text / an integer array).
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        if deserializer.is_human_readable() {
            deserializer.deserialize_any(BytesVisitor)
        } else {
            deserializer.deserialize_byte_buf(BytesVisitor)
        }
    }

    struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte string")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
            base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|e| E::custom(format!("invalid base64: {e}")))
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    /// A borrowed byte string, serialized through [`serialize`].
    pub(super) struct Ref<'a>(pub &'a [u8]);

    impl serde::Serialize for Ref<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            serialize(self.0, serializer)
        }
    }

    /// An owned byte string, deserialized through [`deserialize`].
    pub(super) struct Owned(pub Vec<u8>);

    impl<'de> serde::Deserialize<'de> for Owned {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserialize(deserializer).map(Owned)
        }
    }
}

/// `#[serde(with = "bstr_opt")]` for `Option<Vec<u8>>` (see [`bstr`]).
pub mod bstr_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `Some(bytes)` as a byte string, `None` as null.
    pub fn serialize<S: Serializer>(
        bytes: &Option<Vec<u8>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => serializer.serialize_some(&super::bstr::Ref(b)),
            None => serializer.serialize_none(),
        }
    }

    /// Deserializes an optional byte string.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Ok(Option::<super::bstr::Owned>::deserialize(deserializer)?.map(|o| o.0))
    }
}

/// `#[serde(with = "bstr_seq")]` for `Vec<Vec<u8>>`: an array of byte strings (see [`bstr`]).
pub mod bstr_seq {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes an array of byte strings.
    pub fn serialize<S: Serializer>(items: &[Vec<u8>], serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(items.len()))?;
        for item in items {
            seq.serialize_element(&super::bstr::Ref(item))?;
        }
        seq.end()
    }

    /// Deserializes an array of byte strings.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Vec<u8>>, D::Error> {
        Ok(Vec::<super::bstr::Owned>::deserialize(deserializer)?
            .into_iter()
            .map(|o| o.0)
            .collect())
    }
}

#[cfg(test)]
mod tests;
