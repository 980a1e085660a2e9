//! The credentials resource on arbitrary CSRs: the bytes as the DER inside a PEM block, and as
//! the PEM text itself. Never panics; a CSR is signed only if its subject is exactly one CN
//! `uuid:<canonical uuid>` and the issued certificate names that device and carries the CSR's key.
#![no_main]

use std::sync::OnceLock;

use dps_fuzz::fixture;
use dps_server::enrollment::EnrollmentGroup;
use dps_server::pki::pem_encode;
use dps_server::proto::body::{CredentialsRequest, Csr};
use dps_server::provision::{IdentityCa, Provisioner, DEFAULT_IDENTITY_VALIDITY};
use libfuzzer_sys::fuzz_target;
use x509_parser::prelude::FromDer;

fn provisioner() -> &'static (Provisioner, EnrollmentGroup) {
    static P: OnceLock<(Provisioner, EnrollmentGroup)> = OnceLock::new();
    P.get_or_init(|| {
        let ca = IdentityCa::from_pem(&fixture("identity-ca.pem"), &fixture("identity-ca.key"))
            .expect("identity CA fixture");
        (
            Provisioner::new(ca, Vec::new(), DEFAULT_IDENTITY_VALIDITY),
            EnrollmentGroup::new("fuzz", "acme", Vec::new()),
        )
    })
}

fn check(pem: String) {
    let (p, group) = provisioner();
    let req = CredentialsRequest {
        di: String::new(),
        csr: Csr {
            data: pem,
            encoding: "oic.sec.encoding.pem".into(),
        },
    };
    let Ok(issued) = p.credentials(group, &req) else {
        return;
    };
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(&issued.certificate)
        .expect("issued certificate parses");
    let cns: Vec<_> = cert.subject().iter_common_name().collect();
    assert_eq!(cns.len(), 1, "issued certificate has exactly one CN");
    assert_eq!(
        cns[0].as_str().expect("utf8 CN"),
        format!("uuid:{}", issued.device_id.hyphenated()),
        "issued certificate names the device"
    );
    let der = rustls_pki_types::pem::PemObject::from_pem_slice(
        req.csr.data.trim_end_matches('\0').as_bytes(),
    )
    .map(|d: rustls_pki_types::CertificateSigningRequestDer<'_>| d.as_ref().to_vec())
    .expect("the signed CSR was PEM");
    let (_, csr) = x509_parser::certification_request::X509CertificationRequest::from_der(&der)
        .expect("the signed CSR parses");
    assert_eq!(
        cert.public_key().raw,
        csr.certification_request_info.subject_pki.raw,
        "issued certificate carries the CSR's key"
    );
}

fuzz_target!(|data: &[u8]| {
    check(pem_encode("CERTIFICATE REQUEST", data));
    if let Ok(text) = std::str::from_utf8(data) {
        check(text.to_owned());
    }
});
