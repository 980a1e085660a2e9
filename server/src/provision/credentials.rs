//! `POST /api/v1/provisioning/credentials`: sign the device's CSR with the identity CA and hand
//! back the device's credentials.

use rcgen::{
    CertificateParams, CertificateSigningRequestParams, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use super::csr::DeviceCsr;
use super::error::ProvisionError;
use super::issued::{IssuedCredentials, OCF_IDENTITY_EKU};
use super::registry::IdentityHolder;
use super::{owner_uuid, Provisioner, Requester};
use crate::enrollment::{CertId, EnrollmentGroup};
use crate::proto::body::{
    Credential, CredentialsRequest, CredentialsResponse, CREDUSAGE_CERT, CREDUSAGE_TRUSTCA,
    ENCODING_PEM,
};

/// Clock skew tolerated by backdating notBefore.
const CLOCK_SKEW: time::Duration = time::Duration::minutes(1);

/// A request the device got wrong (4.00), in words.
fn bad(msg: impl Into<String>) -> ProvisionError {
    ProvisionError::BadRequest(msg.into())
}

/// A positive 16-byte random serial number.
fn random_serial() -> Result<SerialNumber, ProvisionError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)
        .map_err(|_| ProvisionError::Internal("random number generator failed".into()))?;
    // Positive, and always 16 bytes long once DER-encoded.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// The identity certificate's validity: notBefore and notAfter.
fn validity(
    now: OffsetDateTime,
    wanted: std::time::Duration,
    ca_not_after: OffsetDateTime,
) -> Result<(OffsetDateTime, OffsetDateTime), ProvisionError> {
    let internal = |m: &str| ProvisionError::Internal(m.to_owned());
    let wanted = time::Duration::try_from(wanted)
        .map_err(|_| internal("identity certificate validity is out of range"))?;
    let not_after = now
        .checked_add(wanted)
        .ok_or_else(|| internal("identity certificate validity is out of range"))?
        .min(ca_not_after);
    // Certificates carry whole seconds.
    let not_after = not_after.replace_nanosecond(0).unwrap_or(not_after);
    if not_after <= now {
        return Err(internal("the identity CA has expired"));
    }
    Ok((now - CLOCK_SKEW, not_after))
}

/// Who gets the device id, for how long: what granting an identity certificate records.
struct Grant<'a> {
    owner: uuid::Uuid,
    csr: &'a DeviceCsr,
    requester: &'a Requester,
    group: uuid::Uuid,
    now: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Grant<'_> {
    /// Signs the identity certificate if the device id may be given to this key, and records
    /// that it was: checked before signing (cheap refusal) and again when granting (a concurrent
    /// request for the same device id may have been granted meanwhile).
    fn sign_and_grant(
        &self,
        provisioner: &Provisioner,
        params: &CertificateParams,
        public_key: &rcgen::PublicKey,
    ) -> Result<CertificateDer<'static>, ProvisionError> {
        let csr = self.csr;
        let renewing = self.requester.identity == Some(csr.device_id);
        let spki = csr.spki_hash();
        let held = |held: super::IdHeld| bad(format!("device uuid:{} {held}", csr.device_id));
        let claim = super::Claim {
            record: self.requester.record,
            spki: &spki,
            renewing,
        };
        provisioner
            .issued
            .check(self.owner, &csr.device_id, &claim, self.now)
            .map_err(held)?;
        let certificate = provisioner.sign_checked(params, public_key, &csr.spki)?;
        let holder = IdentityHolder {
            owner: self.owner,
            record: self.requester.record,
            certificate: CertId::of(&certificate),
            spki,
            group: self.group,
            issued_at: self.now,
            not_after: self.not_after,
            name: self.requester.name.clone().unwrap_or_default(),
        };
        provisioner
            .issued
            .grant(csr.device_id, holder, self.now, renewing)
            .map_err(held)?;
        Ok(certificate)
    }
}

/// The request's CSR, parsed and its self-signature verified; a session authenticated with an
/// identity certificate may only ask for its own device id.
fn checked_csr(
    req: &CredentialsRequest,
    requester: &Requester,
) -> Result<(DeviceCsr, CertificateSigningRequestParams), ProvisionError> {
    if req.csr.encoding != ENCODING_PEM {
        return Err(bad(format!("csr encoding must be {ENCODING_PEM}")));
    }
    let csr = DeviceCsr::parse(&req.csr.data)?;
    if let Some(own) = requester.identity {
        if csr.device_id != own {
            return Err(ProvisionError::Forbidden(format!(
                "this session is device uuid:{own}; it cannot get a certificate for uuid:{}",
                csr.device_id
            )));
        }
    }
    // Verifies the CSR's self-signature.
    let request = CertificateSigningRequestParams::from_der(&csr.der.as_slice().into()).map_err(
        |e| match e {
            rcgen::Error::InvalidCertificationRequestSignature => {
                bad("csr signature does not verify")
            }
            other => bad(format!("csr not supported: {other}")),
        },
    )?;
    Ok((csr, request))
}

/// The first 16 bytes of the group's pre-shared key, if it has one.
fn group_psk(group: &EnrollmentGroup) -> Result<Option<&[u8]>, ProvisionError> {
    match &group.pre_shared_key {
        Some(key) => Ok(Some(key.as_bytes().get(..16).ok_or_else(|| {
            ProvisionError::Internal("the group's pre-shared key is shorter than 16 bytes".into())
        })?)),
        None => Ok(None),
    }
}

/// The identity certificate's fields: the CSR's subject, the validity, a random serial, end
/// entity, client and server auth plus the OCF identity EKU.
fn identity_params(
    csr: &DeviceCsr,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, ProvisionError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = csr.subject();
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyAgreement,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::Other(OCF_IDENTITY_EKU.to_vec()),
    ];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

impl Provisioner {
    /// Signs the device's CSR and returns its credentials: the group's pre-shared key (if any),
    /// the identity certificate chain, and the identity trust anchor.
    ///
    /// The device id is the CSR's CN (`uuid:<device uuid>`), not `di`. Refuses (BadRequest) a CSR
    /// that is not PEM, does not verify, names no device, or asks for a device id that already
    /// holds a still-valid certificate for another key under the same owner.
    pub fn credentials(
        &self,
        group: &EnrollmentGroup,
        req: &CredentialsRequest,
    ) -> Result<IssuedCredentials, ProvisionError> {
        self.credentials_for(group, req, &Requester::default())
    }

    /// As [`Provisioner::credentials`], for a known requester: the issued certificate is
    /// remembered with the requester's provisioning record, and a session authenticated with an
    /// identity certificate may only ask for its own device id (else
    /// [`ProvisionError::Forbidden`]) but may then move it to a new key.
    pub fn credentials_for(
        &self,
        group: &EnrollmentGroup,
        req: &CredentialsRequest,
        requester: &Requester,
    ) -> Result<IssuedCredentials, ProvisionError> {
        let (csr, request) = checked_csr(req, requester)?;
        let psk = group_psk(group)?;
        let owner = owner_uuid(&group.owner);
        let now = OffsetDateTime::now_utc();
        let (not_before, not_after) =
            validity(now, self.identity_validity, self.identity_ca.not_after())?;
        let params = identity_params(&csr, not_before, not_after)?;
        let grant = Grant {
            owner,
            csr: &csr,
            requester,
            group: group.id,
            now,
            not_after,
        };
        let certificate = grant.sign_and_grant(self, &params, &request.public_key)?;
        let creds = self.credential_list(&owner.to_string(), psk, &csr, &certificate);
        Ok(IssuedCredentials {
            device_id: csr.device_id,
            certificate,
            not_after,
            response: CredentialsResponse { creds },
        })
    }

    /// The credentials handed back: the group's PSK (if any), the identity chain, the trust
    /// anchor.
    fn credential_list(
        &self,
        owner: &str,
        psk: Option<&[u8]>,
        csr: &DeviceCsr,
        certificate: &CertificateDer<'static>,
    ) -> Vec<Credential> {
        let mut creds = Vec::with_capacity(3);
        if let Some(psk) = psk {
            creds.push(Credential::psk(owner, psk));
        }
        creds.push(Credential::certificate(
            &csr.device_id.to_string(),
            CREDUSAGE_CERT,
            &self.identity_ca.device_chain_pem(certificate),
        ));
        creds.push(Credential::certificate(
            owner,
            CREDUSAGE_TRUSTCA,
            self.identity_ca.root_pem(),
        ));
        creds
    }

    /// Signs, then checks that the certificate carries exactly the CSR's SubjectPublicKeyInfo
    /// (rcgen derives the key's algorithm from the CSR's signature algorithm, which a CSR can
    /// make disagree with its key, e.g. a P-256 key signing with ecdsa-with-SHA384).
    fn sign_checked(
        &self,
        params: &CertificateParams,
        public_key: &rcgen::PublicKey,
        spki: &[u8],
    ) -> Result<CertificateDer<'static>, ProvisionError> {
        let certificate = self.identity_ca.sign(params, public_key).map_err(|e| {
            ProvisionError::Internal(format!("cannot sign the identity certificate: {e}"))
        })?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&certificate).map_err(|e| {
            ProvisionError::Internal(format!("issued certificate does not parse: {e}"))
        })?;
        if parsed.public_key().raw != spki {
            return Err(bad("csr key and signature algorithm do not match"));
        }
        Ok(certificate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{pem_encode, CertSpec, Issued};
    use crate::proto::body::{to_cbor, Csr};
    use crate::provision::test_support::{csr_pem, group, identity_ca};
    use crate::provision::{IdentityCa, DEFAULT_IDENTITY_VALIDITY};
    use rcgen::{KeyPair, PublicKeyData};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateSigningRequestDer;
    use uuid::Uuid;
    use x509_parser::certificate::X509Certificate;
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::prelude::FromDer;

    fn request(csr: String) -> CredentialsRequest {
        CredentialsRequest {
            di: Uuid::new_v4().to_string(),
            csr: Csr {
                data: csr,
                encoding: ENCODING_PEM.into(),
            },
        }
    }

    fn device_csr(key: &KeyPair) -> (Uuid, String) {
        let id = Uuid::new_v4();
        (id, csr_pem(Some(&format!("uuid:{id}")), key))
    }

    fn parse(der: &[u8]) -> X509Certificate<'_> {
        x509_parser::parse_x509_certificate(der).expect("parse").1
    }

    fn cbor_keys(value: &ciborium::Value) -> Vec<String> {
        let map = value.as_map().expect("map");
        map.iter()
            .filter_map(|(k, _)| k.as_text().map(str::to_owned))
            .collect()
    }

    #[test]
    fn issued_certificate_verifies_and_keeps_the_csr_key_and_subject() {
        let (root, ca) = identity_ca();
        let p = Provisioner::new(ca, Vec::new(), DEFAULT_IDENTITY_VALIDITY);
        let key = KeyPair::generate().expect("key");
        let (id, csr) = device_csr(&key);
        let req = request(csr.clone());
        let issued = p.credentials(&group("acme"), &req).expect("issued");
        assert_eq!(issued.device_id, id, "id from the CN, not from di");
        let cert = parse(&issued.certificate);
        let root_cert = parse(root.der());
        cert.verify_signature(Some(root_cert.public_key()))
            .expect("signed by the identity CA");
        assert_eq!(cert.issuer().as_raw(), root_cert.subject().as_raw());

        let csr_der = CertificateSigningRequestDer::from_pem_slice(csr.as_bytes()).expect("pem");
        let (_, parsed_csr) = X509CertificationRequest::from_der(&csr_der).expect("csr");
        let info = &parsed_csr.certification_request_info;
        assert_eq!(cert.subject().as_raw(), info.subject.as_raw());
        assert_eq!(cert.public_key().raw, info.subject_pki.raw);
        assert_eq!(
            cert.public_key().raw,
            key.subject_public_key_info().as_slice()
        );

        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .expect("eku present")
            .value;
        assert!(eku.client_auth && eku.server_auth && !eku.any);
        let others: Vec<String> = eku.other.iter().map(|o| o.to_id_string()).collect();
        assert_eq!(others, ["1.3.6.1.4.1.44924.1.6"]);
        let ku = cert.key_usage().expect("ku").expect("ku present").value;
        assert!(ku.digital_signature() && ku.key_agreement() && !ku.key_cert_sign());
        assert!(!cert.is_ca());
        let bc = cert
            .basic_constraints()
            .expect("bc")
            .expect("bc present")
            .value;
        assert!(!bc.ca);

        let now = OffsetDateTime::now_utc();
        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        assert!(not_before <= now - time::Duration::seconds(59));
        assert!(not_after - now > time::Duration::days(364), "{not_after}");
        assert!(cert.raw_serial().len() >= 16);
        let again = p.credentials(&group("acme"), &req).expect("renewed");
        assert_ne!(parse(&again.certificate).raw_serial(), cert.raw_serial());
    }

    #[test]
    fn other_device_key_algorithms_keep_their_key() {
        let p = Provisioner::new(identity_ca().1, Vec::new(), DEFAULT_IDENTITY_VALIDITY);
        for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
            let key = KeyPair::generate_for(alg).expect("key");
            let (id, csr) = device_csr(&key);
            let issued = p
                .credentials(&group("acme"), &request(csr))
                .expect("issued");
            assert_eq!(issued.device_id, id);
            let cert = parse(&issued.certificate);
            assert_eq!(
                cert.public_key().raw,
                key.subject_public_key_info().as_slice()
            );
        }
    }

    #[test]
    fn credentials_are_psk_then_chain_then_trust_anchor() {
        let (root, ca) = identity_ca();
        let p = Provisioner::new(ca, Vec::new(), DEFAULT_IDENTITY_VALIDITY);
        let owner = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"acme").to_string();
        let key = KeyPair::generate().expect("key");
        let (id, csr) = device_csr(&key);

        let plain = p
            .credentials(&group("acme"), &request(csr.clone()))
            .expect("issued");
        let creds = &plain.response.creds;
        assert_eq!(creds.len(), 2, "no pre-shared key, no psk credential");
        assert_eq!(
            creds[0],
            Credential::certificate(
                &id.to_string(),
                CREDUSAGE_CERT,
                &pem_encode("CERTIFICATE", &plain.certificate)
            )
        );
        assert_eq!(
            creds[1],
            Credential::certificate(&owner, CREDUSAGE_TRUSTCA, &root.pem())
        );

        let mut g = group("acme");
        g.pre_shared_key = Some("0123456789abcdefEXTRA".into());
        let with_psk = p.credentials(&g, &request(csr)).expect("issued");
        let creds = &with_psk.response.creds;
        assert_eq!(creds.len(), 3);
        assert_eq!(creds[0], Credential::psk(&owner, b"0123456789abcdef"));
        assert_eq!(creds[1].credusage, CREDUSAGE_CERT);
        assert_eq!(creds[2].credusage, CREDUSAGE_TRUSTCA);

        let bytes = to_cbor(&with_psk.response).expect("cbor");
        let body: ciborium::Value = ciborium::de::from_reader(bytes.as_slice()).expect("decode");
        assert_eq!(cbor_keys(&body), ["creds"]);
        let list = body.as_map().expect("map")[0]
            .1
            .as_array()
            .expect("array")
            .clone();
        assert_eq!(
            cbor_keys(&list[0]),
            ["credtype", "subjectuuid", "privatedata", "tag"]
        );
        let private = &list[0].as_map().expect("map")[2].1;
        assert_eq!(cbor_keys(private), ["data", "encoding"]);
        let data = private.as_map().expect("map")[0]
            .1
            .as_bytes()
            .expect("bstr")
            .clone();
        assert_eq!(data, b"0123456789abcdef");
        for cert in &list[1..] {
            assert_eq!(
                cbor_keys(cert),
                ["credtype", "subjectuuid", "credusage", "publicdata", "tag"]
            );
        }

        g.pre_shared_key = Some("short".into());
        let err = p.credentials(&g, &request(device_csr(&key).1));
        assert!(matches!(err, Err(ProvisionError::Internal(_))), "{err:?}");
    }

    #[test]
    fn malformed_requests_are_bad_requests() {
        let p = Provisioner::new(identity_ca().1, Vec::new(), DEFAULT_IDENTITY_VALIDITY);
        let key = KeyPair::generate().expect("key");
        let id = Uuid::new_v4();
        let upper = format!("uuid:{}", id.to_string().to_uppercase());
        let simple = format!("uuid:{}", id.simple());
        let braced = format!("uuid:{}", id.braced());
        let cases = [
            Some(format!("dev:{id}")),
            Some(format!("UUID:{id}")),
            Some(upper),
            Some(simple),
            Some(braced),
            Some("uuid:1234".into()),
            Some(format!("uuid:{id} ")),
            None,
        ];
        for cn in cases {
            let err = p.credentials(&group("acme"), &request(csr_pem(cn.as_deref(), &key)));
            assert!(
                matches!(err, Err(ProvisionError::BadRequest(_))),
                "{cn:?}: {err:?}"
            );
        }
        let (_, good) = device_csr(&key);
        let mut wrong_encoding = request(good.clone());
        wrong_encoding.csr.encoding = "oic.sec.encoding.der".into();
        let cert_pem = Issued::self_signed(&CertSpec::ca("x")).expect("ca").pem();
        // Flip a bit of the signature (the last bytes of the DER).
        let mut der = CertificateSigningRequestDer::from_pem_slice(good.as_bytes())
            .expect("pem")
            .to_vec();
        if let Some(last) = der.last_mut() {
            *last ^= 1;
        }
        let tampered = pem_encode("CERTIFICATE REQUEST", &der);
        for req in [
            wrong_encoding,
            request("hello".into()),
            request(String::new()),
            request(cert_pem),
            request(pem_encode("CERTIFICATE REQUEST", b"not DER")),
            request(tampered.clone()),
        ] {
            let err = p.credentials(&group("acme"), &req);
            assert!(
                matches!(err, Err(ProvisionError::BadRequest(_))),
                "{req:?}: {err:?}"
            );
        }
        let err = p.credentials(&group("acme"), &request(tampered));
        assert!(err.is_err_and(|e| e.diagnostic().contains("signature")));
        // A trailing NUL from a C buffer is tolerated.
        assert!(p
            .credentials(&group("acme"), &request(format!("{good}\0")))
            .is_ok());
    }

    #[test]
    fn a_device_id_stays_with_its_key_per_owner() {
        let p = Provisioner::new(identity_ca().1, Vec::new(), DEFAULT_IDENTITY_VALIDITY);
        let (first, second) = (
            KeyPair::generate().expect("key"),
            KeyPair::generate().expect("key"),
        );
        let cn = format!("uuid:{}", Uuid::new_v4());
        let issue = |owner: &str, key: &KeyPair| {
            p.credentials(&group(owner), &request(csr_pem(Some(&cn), key)))
        };
        assert!(issue("acme", &first).is_ok());
        let err = issue("acme", &second);
        assert!(matches!(err, Err(ProvisionError::BadRequest(_))), "{err:?}");
        assert!(issue("acme", &first).is_ok(), "renewal to the same key");
        assert!(
            issue("other", &second).is_ok(),
            "same CN under another owner"
        );
        assert_eq!(p.issued.len(), 2);
    }

    #[test]
    fn an_identity_session_renews_only_its_own_device_id() {
        let p = Provisioner::new(identity_ca().1, Vec::new(), DEFAULT_IDENTITY_VALIDITY);
        let (first, second) = (
            KeyPair::generate().expect("key"),
            KeyPair::generate().expect("key"),
        );
        let id = Uuid::new_v4();
        let cn = format!("uuid:{id}");
        let record = Some(CertId([7; 32]));
        let manufacturer = Requester {
            record,
            identity: None,
            name: Some("SN-7".into()),
        };
        let itself = Requester {
            record,
            identity: Some(id),
            name: None,
        };
        let issued = p
            .credentials_for(
                &group("acme"),
                &request(csr_pem(Some(&cn), &first)),
                &manufacturer,
            )
            .expect("issued");
        let holder = p
            .identities()
            .find(&id, &CertId::of(&issued.certificate))
            .expect("remembered");
        assert_eq!(holder.record, record);
        assert_eq!(holder.not_after, issued.not_after);
        // The device itself may move to a new key; the old certificate is superseded.
        let renewed = p
            .credentials_for(
                &group("acme"),
                &request(csr_pem(Some(&cn), &second)),
                &itself,
            )
            .expect("renewed with a new key");
        assert!(p
            .identities()
            .find(&id, &CertId::of(&issued.certificate))
            .is_none());
        assert!(p
            .identities()
            .find(&id, &CertId::of(&renewed.certificate))
            .is_some());
        // But not ask for another device id.
        let other = format!("uuid:{}", Uuid::new_v4());
        let err = p.credentials_for(
            &group("acme"),
            &request(csr_pem(Some(&other), &second)),
            &itself,
        );
        assert!(matches!(err, Err(ProvisionError::Forbidden(_))), "{err:?}");
        // A manufacturer session with the first key is refused now (the second key holds it) ...
        let err = p.credentials_for(
            &group("acme"),
            &request(csr_pem(Some(&cn), &first)),
            &manufacturer,
        );
        assert!(matches!(err, Err(ProvisionError::BadRequest(_))), "{err:?}");
        // ... but the same manufacturer identity may ask again with the current key (a device
        // that lost its answer is not locked out).
        let again = p
            .credentials_for(
                &group("acme"),
                &request(csr_pem(Some(&cn), &second)),
                &manufacturer,
            )
            .expect("its own id, its own key");
        let holder = p
            .identities()
            .find(&id, &CertId::of(&again.certificate))
            .expect("remembered");
        assert_eq!(holder.name, "SN-7", "the attested name survives renewals");
        // ... but another one, even replaying this device's CSR, is refused and changes nothing.
        let replayer = Requester {
            record: Some(CertId([8; 32])),
            identity: None,
            name: Some("SN-8".into()),
        };
        let err = p.credentials_for(
            &group("acme"),
            &request(csr_pem(Some(&cn), &second)),
            &replayer,
        );
        assert!(
            err.as_ref()
                .is_err_and(|e| e.diagnostic().contains("another manufacturer identity")),
            "{err:?}"
        );
        assert!(p
            .identities()
            .find(&id, &CertId::of(&again.certificate))
            .is_some());
    }

    #[test]
    fn validity_never_outlives_the_identity_ca() {
        let now = OffsetDateTime::now_utc();
        let spec = CertSpec::ca("Short CA").valid_between(
            now - time::Duration::days(1),
            now + time::Duration::days(30),
        );
        let root = Issued::self_signed(&spec).expect("ca");
        let ca = IdentityCa::from_pem(&root.pem(), &root.key_pem()).expect("load");
        let p = Provisioner::new(ca, Vec::new(), DEFAULT_IDENTITY_VALIDITY);
        let issued = p
            .credentials(
                &group("acme"),
                &request(device_csr(&KeyPair::generate().expect("key")).1),
            )
            .expect("issued");
        let not_after = parse(&issued.certificate)
            .validity()
            .not_after
            .to_datetime();
        assert_eq!(
            not_after,
            parse(root.der()).validity().not_after.to_datetime()
        );
        assert!(validity(
            now,
            DEFAULT_IDENTITY_VALIDITY,
            now - time::Duration::seconds(1)
        )
        .is_err());
    }
}
