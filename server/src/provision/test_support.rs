//! Fixtures shared by the provisioning tests.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair};

use super::{Hub, IdentityCa, Provisioner, DEFAULT_IDENTITY_VALIDITY};
use crate::enrollment::EnrollmentGroup;
use crate::pki::{CertSpec, Issued};

/// A fresh self-signed identity CA, as `pki` makes it, and its loaded form.
pub(super) fn identity_ca() -> (Issued, IdentityCa) {
    let root = Issued::self_signed(&CertSpec::ca("Identity CA")).expect("identity CA");
    let ca = IdentityCa::from_pem(&root.pem(), &root.key_pem()).expect("load identity CA");
    (root, ca)
}

/// A provisioner with a fresh identity CA, these hubs and the default validity.
pub(super) fn provisioner(hubs: Vec<Hub>) -> Provisioner {
    Provisioner::new(identity_ca().1, hubs, DEFAULT_IDENTITY_VALIDITY)
}

/// A group of `owner` without chain, hubs or pre-shared key.
pub(super) fn group(owner: &str) -> EnrollmentGroup {
    EnrollmentGroup::new("test group", owner, Vec::new())
}

/// A PEM CSR signed by `key` whose subject is `CN=<cn>` (no subject at all for `None`).
pub(super) fn csr_pem(cn: Option<&str>, key: &KeyPair) -> String {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    if let Some(cn) = cn {
        dn.push(DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    params
        .serialize_request(key)
        .expect("CSR")
        .pem()
        .expect("CSR PEM")
}
