//! Certificate and file helpers shared by the fleet's generators and its export.

use std::path::Path;

use dps_server::pki::{CertSpec, KeyAlg};
use time::{Duration, OffsetDateTime};

use super::model::FleetError;
use crate::spec::KeyType;

/// The server crate's key algorithm for a fleet key type.
pub(crate) fn key_alg(k: KeyType) -> KeyAlg {
    match k {
        KeyType::P256 => KeyAlg::EcdsaP256,
        KeyType::P384 => KeyAlg::EcdsaP384,
        KeyType::Ed25519 => KeyAlg::Ed25519,
    }
}

/// A CA certificate of the fleet (`org`), valid ten years either side of now.
pub(crate) fn ca(cn: &str, org: &str) -> CertSpec {
    let now = OffsetDateTime::now_utc();
    let mut spec =
        CertSpec::ca(cn).valid_between(now - Duration::days(3650), now + Duration::days(3650));
    spec.organization = Some(org.into());
    spec
}

/// Write `contents` to `dir/name`, creating parent directories.
pub(crate) fn write(dir: &Path, name: &str, contents: &str) -> Result<(), FleetError> {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|source| FleetError::Io {
            path: parent.display().to_string(),
            source,
        })?;
    }
    std::fs::write(&path, contents).map_err(|source| FleetError::Io {
        path: path.display().to_string(),
        source,
    })
}
