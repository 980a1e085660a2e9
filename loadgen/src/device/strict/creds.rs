//! The real client's checks on the credentials answer: plgd_dps_pki.c
//! `dps_pki_replace_certificates` applies it through security/oc_cred.c `oc_sec_apply_cred`
//! (`oc_sec_decode_cred`, `oc_sec_add_new_cred`), then plgd_dps_security.c
//! `dps_check_credentials` wants every certificate valid and an identity certificate and a trust
//! anchor tagged `dps`.

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer as _, X509Certificate};

use super::check::{DpsClock, StrictCheck, Violation};
use super::rep::{Object, Rep};

/// `OC_CREDTYPE_PSK` (include/oc_cred.h).
const CREDTYPE_PSK: i64 = 1;
/// `OC_CREDTYPE_CERT`.
const CREDTYPE_CERT: i64 = 8;
/// `OC_CREDUSAGE_IDENTITY_CERT_STR` (security/oc_cred_util_internal.h).
const USAGE_IDENTITY: &str = "oic.sec.cred.cert";
/// `OC_CREDUSAGE_TRUSTCA_STR`.
const USAGE_TRUSTCA: &str = "oic.sec.cred.trustca";
/// `OC_CREDUSAGE_MFG_TRUSTCA_STR`.
const USAGE_MFG_TRUSTCA: &str = "oic.sec.cred.mfgtrustca";
/// `OC_CREDUSAGE_ROLE_CERT_STR`.
const USAGE_ROLE: &str = "oic.sec.cred.rolecert";
/// `DPS_TAG` (plgd_dps_tag_internal.h).
const DPS_TAG: &str = "dps";
/// plgd_dps_pki.c `dps_pki_init`: the default `expiring_limit`, one hour.
const EXPIRING_LIMIT_S: i64 = 3600;

/// The device's side of the exchange: its id and the key pair its CSR carried (the client's
/// `oc_sec_ecdsa_get_keypair`).
pub(crate) struct DeviceKey<'a> {
    /// The device id (`oc_core_get_device_id`, the doxm `deviceuuid`).
    pub(crate) device_id: uuid::Uuid,
    /// The public key, DER SubjectPublicKeyInfo.
    pub(crate) spki: &'a [u8],
}

/// What the device keeps of a credentials answer that passed.
#[derive(Debug)]
pub(crate) struct Applied {
    /// The leaf of the first identity certificate chain tagged `dps`.
    pub(crate) identity: CertificateDer<'static>,
    /// That credential's `subjectuuid`.
    pub(crate) identity_subject: String,
}

/// One credential as `oc_sec_decode_cred` reads it (properties of another type are ignored).
#[derive(Default)]
struct Cred<'a> {
    credtype: i64,
    subjectuuid: Option<&'a str>,
    credusage: Option<&'a str>,
    tag: Option<&'a str>,
    /// (data, encoding).
    publicdata: Option<(&'a [u8], Option<&'a str>)>,
    privatedata: Option<(&'a [u8], Option<&'a str>)>,
}

/// The credentials answer as the real client applies and then checks it.
pub(crate) fn credentials(
    root: &Object,
    device: &DeviceKey<'_>,
    clock: &DpsClock,
) -> Result<Applied, Violation> {
    let v = |d: String| Violation::new(StrictCheck::Credentials, d);
    let mut applied = Vec::new();
    for (name, value) in root {
        match value {
            Rep::String(_) if name == "rowneruuid" => {
                return Err(v("oc_cred: Can set rowneruuid only in RFOTM/SRESET".into()))
            }
            Rep::ObjectArray(list) if name == "creds" || name == "roles" => {
                for (i, entry) in list.iter().enumerate() {
                    // `non_empty`: an empty map adds nothing.
                    if entry.is_empty() {
                        continue;
                    }
                    let cred = decode(entry).map_err(|e| v(format!("creds[{i}]: {e}")))?;
                    add_new_cred(&cred, device).map_err(|mut e| {
                        e.detail = format!("creds[{i}]: {}", e.detail);
                        e
                    })?;
                    applied.push(cred);
                }
            }
            _ => {}
        }
    }
    check_credentials(&applied, clock)?;
    let (identity, subject) = applied
        .iter()
        .filter(|c| is_dps(c) && is_identity(c))
        .find_map(|c| {
            let leaf = chain(c.publicdata?.0).ok()?.into_iter().next()?;
            Some((leaf, c.subjectuuid.unwrap_or_default().to_owned()))
        })
        .ok_or_else(|| v("valid certificates not found".into()))?;
    Ok(Applied {
        identity,
        identity_subject: subject,
    })
}

/// The properties of one credential, and `oc_cred_parse_encoding`: an `encoding` other than
/// base64, raw, handle or PEM ends the whole update ("Unsupported encoding").
fn decode(entry: &Object) -> Result<Cred<'_>, String> {
    let mut cred = Cred::default();
    for (name, value) in entry {
        match (name.as_str(), value) {
            ("credtype", Rep::Int(t)) => cred.credtype = *t,
            ("subjectuuid", Rep::String(s)) => cred.subjectuuid = Some(s),
            ("credusage", Rep::String(s)) => cred.credusage = Some(s),
            ("tag", Rep::String(s)) => cred.tag = Some(s),
            ("publicdata" | "privatedata", Rep::Object(data)) => {
                let mut bytes = None;
                let mut encoding = None;
                for (key, field) in data {
                    match (key.as_str(), field) {
                        ("encoding", Rep::String(e)) => {
                            if !matches!(
                                e.as_str(),
                                "oic.sec.encoding.base64"
                                    | "oic.sec.encoding.raw"
                                    | "oic.sec.encoding.handle"
                                    | "oic.sec.encoding.pem"
                            ) {
                                return Err(format!("{name}: unsupported encoding {e:?}"));
                            }
                            encoding = Some(e.as_str());
                        }
                        ("data", Rep::String(s)) if !s.is_empty() => bytes = Some(s.as_bytes()),
                        ("data", Rep::Bytes(b)) if !b.is_empty() => bytes = Some(b.as_slice()),
                        _ => {}
                    }
                }
                let slot = if name == "publicdata" {
                    &mut cred.publicdata
                } else {
                    &mut cred.privatedata
                };
                *slot = bytes.map(|b| (b, encoding));
            }
            _ => {}
        }
    }
    Ok(cred)
}

/// security/oc_cred.c `oc_sec_add_new_cred`: a certificate credential's public data parses
/// (`oc_certs_parse_public_key_to_oc_string`); a subject is given (`oc_sec_cred_set_subject`); an
/// identity certificate without private data is for the device's own key pair
/// (`oc_sec_get_valid_ecdsa_keypair`: the same public key, and `check_uuid_from_cert_raw`: the CN
/// names the device); and `cred_create` takes a PSK only of 16 or 32 bytes
/// (security/oc_cred_util.c `oc_cred_set_privatedata`).
fn add_new_cred(cred: &Cred<'_>, device: &DeviceKey<'_>) -> Result<(), Violation> {
    let v = |d: String| Violation::new(StrictCheck::Credentials, d);
    let certs = if cred.credtype == CREDTYPE_CERT {
        let data = cred
            .publicdata
            .ok_or_else(|| v("a certificate credential without publicdata".into()))?
            .0;
        Some(chain(data).map_err(|e| v(format!("could not parse the provided cert: {e}")))?)
    } else {
        None
    };
    if cred.subjectuuid.is_none() && cred.credusage != Some(USAGE_ROLE) {
        return Err(v("no subjectuuid".into()));
    }
    if cred.credusage == Some(USAGE_IDENTITY) && cred.privatedata.is_none() {
        let leaf = certs
            .as_ref()
            .and_then(|c| c.first())
            .ok_or_else(|| v("an identity credential without a certificate".into()))?;
        check_identity(leaf, device)?;
    }
    if cred.credtype == CREDTYPE_PSK {
        if let Some((data, encoding)) = cred.privatedata {
            check_psk(data, encoding).map_err(v)?;
        }
    }
    Ok(())
}

/// `oc_sec_get_valid_ecdsa_keypair`: the certificate's key is the device's (the client compares
/// the DER public keys), and its first CN holds `uuid:` followed by the device id as
/// `oc_uuid_to_str` writes it (security/oc_certs.c `oc_certs_parse_CN_buffer_for_UUID`).
fn check_identity(leaf: &CertificateDer<'_>, device: &DeviceKey<'_>) -> Result<(), Violation> {
    let cert = parse(leaf).map_err(|e| Violation::new(StrictCheck::Credentials, e))?;
    if cert.public_key().raw != device.spki {
        return Err(Violation::new(
            StrictCheck::IdentityKey,
            "the identity certificate's public key is not the key of the device's CSR",
        ));
    }
    let cn = |d: String| Violation::new(StrictCheck::IdentityCn, d);
    let value = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or_else(|| cn("Common Name field not found".into()))?
        .as_slice();
    const PREFIX: &[u8] = b"uuid:";
    let after = (value.len() > PREFIX.len())
        .then(|| value.windows(PREFIX.len()).position(|w| w == PREFIX))
        .flatten()
        .map(|at| &value[at + PREFIX.len()..]);
    let want = device.device_id.hyphenated().to_string();
    match after {
        Some(rest) if rest.len() >= want.len() && &rest[..want.len()] == want.as_bytes() => Ok(()),
        _ => Err(cn(format!(
            "the identity certificate's CN {:?} is not uuid:{want}",
            String::from_utf8_lossy(value)
        ))),
    }
}

/// `oc_cred_set_privatedata` for a PSK: 16 or 32 bytes, base64 of at most 64 characters decoded.
fn check_psk(data: &[u8], encoding: Option<&str>) -> Result<(), String> {
    use base64::Engine as _;
    let len = if encoding == Some("oic.sec.encoding.base64") {
        if data.len() > 64 {
            return Err(format!("a base64 PSK of {} characters", data.len()));
        }
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("a PSK that is not base64: {e}"))?
            .len()
    } else {
        data.len()
    };
    if len == 16 || len == 32 {
        Ok(())
    } else {
        Err(format!("invalid PSK length({len})"))
    }
}

/// plgd_dps_security.c `dps_check_credentials` over the applied credentials: every credential
/// tagged `dps` but a PSK has certificates that are valid now by `dps_pki_validate_certificate`
/// (all of an identity chain, the first of a trust anchor: security/oc_cred.c
/// `oc_cred_verify_certificate_chain`), and there are an identity certificate and a trust anchor.
fn check_credentials(applied: &[Cred<'_>], clock: &DpsClock) -> Result<(), Violation> {
    let now = clock.now().unix_timestamp();
    for cred in applied
        .iter()
        .filter(|c| is_dps(c) && c.credtype != CREDTYPE_PSK)
    {
        let certs = cred
            .publicdata
            .ok_or_else(|| "empty public data".to_owned())
            .and_then(|(data, _)| chain(data))
            .map_err(|e| {
                Violation::new(
                    StrictCheck::Credentials,
                    format!("failed to get certificate data: {e}"),
                )
            })?;
        let ca = matches!(cred.credusage, Some(USAGE_TRUSTCA | USAGE_MFG_TRUSTCA));
        for der in certs.iter().take(if ca { 1 } else { usize::MAX }) {
            let cert = parse(der).map_err(|e| Violation::new(StrictCheck::Credentials, e))?;
            let validity = cert.validity();
            validate(
                now,
                validity.not_before.timestamp(),
                validity.not_after.timestamp(),
            )
            .map_err(|state| {
                Violation::new(
                    StrictCheck::CertificateValidity,
                    format!(
                        "invalid certificate: {state} ({:?}, valid {} to {})",
                        cred.credusage.unwrap_or_default(),
                        validity.not_before,
                        validity.not_after
                    ),
                )
            })?;
        }
    }
    let dps_cert = |usage: &str| {
        applied
            .iter()
            .any(|c| is_dps(c) && c.credtype == CREDTYPE_CERT && c.credusage == Some(usage))
    };
    if !dps_cert(USAGE_IDENTITY) || !dps_cert(USAGE_TRUSTCA) {
        return Err(Violation::new(
            StrictCheck::Credentials,
            "valid certificates not found: no identity certificate and trust anchor tagged dps",
        ));
    }
    Ok(())
}

/// plgd_dps_pki.c `dps_pki_validate_certificate` with the default one-hour `expiring_limit`: not
/// before `valid_from`, and `now + limit` not past `valid_to` (`dps_pki_certificate_is_expiring`).
/// Unix seconds; the state's name on failure.
fn validate(now: i64, valid_from: i64, valid_to: i64) -> Result<(), &'static str> {
    if now < valid_from {
        return Err("not yet valid");
    }
    if now + EXPIRING_LIMIT_S > valid_to {
        return Err(if now > valid_to {
            "expired"
        } else {
            "expiring"
        });
    }
    Ok(())
}

fn is_dps(c: &Cred<'_>) -> bool {
    c.tag == Some(DPS_TAG)
}

fn is_identity(c: &Cred<'_>) -> bool {
    c.credtype == CREDTYPE_CERT && c.credusage == Some(USAGE_IDENTITY)
}

/// The certificates of a credential's public data as `mbedtls_x509_crt_parse` reads it: PEM
/// blocks (every one must parse), or one DER certificate.
fn chain(data: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = if data.windows(10).any(|w| w == b"-----BEGIN") {
        CertificateDer::pem_slice_iter(data)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad PEM: {e:?}"))?
    } else {
        vec![CertificateDer::from(data.to_vec())]
    };
    if certs.is_empty() {
        return Err("no certificate".into());
    }
    for der in &certs {
        parse(der)?;
    }
    Ok(certs)
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, String> {
    X509Certificate::from_der(der.as_ref())
        .map(|(_, cert)| cert)
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

#[cfg(test)]
#[path = "creds_tests.rs"]
mod tests;
