//! The fleet on disk. Generating tens of thousands of keys and certificates takes longer than many
//! runs, so a fleet is kept under the cache directory, keyed by its `[fleet]` section, and a rerun
//! with the same section reuses it byte for byte (same keys, same certificates, same server set-up).
//!
//! A cache entry is written to a temporary directory and renamed into place, so a crash or a
//! concurrent run never leaves a half-written fleet behind; an unreadable or stale entry is
//! regenerated, never trusted.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use dps_server::config::{GroupConfig, HubConfig};
use dps_server::tpm::soft::{AkKind, EkKind, SoftAk, SoftEk, SoftTpm};
use dps_server::tpm::TpmEnrollmentConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

use super::build::build;
pub use super::key::{key, FORMAT};
use super::model::{
    Credentials, Device, Expected, Fleet, FleetError, GroupInfo, TpmDevice, TpmKeys,
};
use crate::spec::{DeviceClass, FleetSpec};

/// Entries older than this are regenerated (device certificates are valid for five years, but a
/// fleet should not silently age across releases).
pub const MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where the server set-up of a fleet lives: a cache entry, or a temporary directory removed when
/// this is dropped.
#[derive(Debug)]
pub struct FleetDir {
    path: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl FleetDir {
    /// The directory (holds `config.toml` for an embedded server).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A fleet ready to run.
#[derive(Debug)]
pub struct Ready {
    /// The devices and their server set-up.
    pub fleet: Fleet,
    /// Where the set-up is.
    pub dir: FleetDir,
    /// Taken from the cache rather than generated.
    pub reused: bool,
}

/// The cache root: `$DPSBENCH_CACHE`, else `$XDG_CACHE_HOME/dpsbench`, else
/// `$HOME/.cache/dpsbench`, else a directory under the system temp dir.
pub fn cache_root() -> PathBuf {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("DPSBENCH_CACHE")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("dpsbench")))
        .or_else(|| var("HOME").map(|p| p.join(".cache").join("dpsbench")))
        .unwrap_or_else(|| std::env::temp_dir().join("dpsbench-cache"))
}

#[derive(Serialize, Deserialize)]
struct FleetFile {
    format: u32,
    generated_at_unix_s: u64,
    devices: Vec<DeviceFile>,
    groups: std::collections::BTreeMap<String, GroupInfo>,
    server_ca: String,
    server_groups: Vec<GroupConfig>,
    hub: HubConfig,
    server_tpm_enrollments: Vec<TpmEnrollmentConfig>,
    server_tpm_groups: Vec<GroupConfig>,
}

#[derive(Serialize, Deserialize)]
struct DeviceFile {
    class: DeviceClass,
    common_name: String,
    /// X.509 devices: the chain, DER, base64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    chain: Vec<String>,
    /// X.509 devices: PKCS#8, base64.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    key: String,
    /// TPM devices.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tpm: Option<TpmFile>,
    expected: Expected,
}

/// A TPM device on disk: binary fields base64.
#[derive(Serialize, Deserialize)]
struct TpmFile {
    /// Soft TPM: `rsa2048` or `ecc_p256` EK, and its PKCS#8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ek: Option<(String, String)>,
    /// Soft TPM: the AK's kind and PKCS#8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ak: Option<(String, String)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ek_certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ek_chain: Vec<String>,
    /// swtpm: the EK template seed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ek_seed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    presented_ek: Option<String>,
    group_id: String,
}

fn ek_kind_name(k: EkKind) -> &'static str {
    match k {
        EkKind::Rsa2048 => "rsa2048",
        EkKind::EccP256 => "ecc_p256",
    }
}

fn ak_kind_name(k: AkKind) -> &'static str {
    match k {
        AkKind::Rsa2048 => "rsa2048",
        AkKind::EccP256 => "ecc_p256",
    }
}

fn tpm_to_file(t: &TpmDevice) -> Result<TpmFile, FleetError> {
    let mut file = TpmFile {
        ek: None,
        ak: None,
        ek_certificate: None,
        ek_chain: Vec::new(),
        ek_seed: None,
        presented_ek: t.presented_ek.as_deref().map(b64),
        group_id: t.group_id.clone(),
    };
    match &t.keys {
        TpmKeys::Soft(soft) => {
            let req = soft.challenge_request();
            file.ek = Some((
                ek_kind_name(soft.ek().kind()).into(),
                b64(&soft.ek().to_pkcs8()?),
            ));
            file.ak = Some((
                ak_kind_name(soft.ak().kind()).into(),
                b64(&soft.ak().to_pkcs8()?),
            ));
            file.ek_certificate = req.ek_certificate.as_deref().map(b64);
            file.ek_chain = req.ek_chain.iter().map(|c| b64(c)).collect();
        }
        TpmKeys::Swtpm { ek_seed } => file.ek_seed = Some(b64(ek_seed)),
    }
    Ok(file)
}

fn tpm_from_file(f: TpmFile) -> Option<TpmDevice> {
    let keys = match (f.ek, f.ak, f.ek_seed) {
        (Some((ek_kind, ek)), Some((ak_kind, ak)), None) => {
            let ek_kind = [EkKind::Rsa2048, EkKind::EccP256]
                .into_iter()
                .find(|k| ek_kind_name(*k) == ek_kind)?;
            let ak_kind = [AkKind::Rsa2048, AkKind::EccP256]
                .into_iter()
                .find(|k| ak_kind_name(*k) == ak_kind)?;
            let ek = SoftEk::from_pkcs8(ek_kind, &unb64(&ek)?).ok()?;
            let ak = SoftAk::from_pkcs8(ak_kind, &unb64(&ak)?).ok()?;
            let mut tpm = SoftTpm::from_keys(ek, ak);
            if let Some(cert) = f.ek_certificate {
                let chain = f
                    .ek_chain
                    .iter()
                    .map(|c| unb64(c))
                    .collect::<Option<Vec<_>>>()?;
                tpm = tpm.with_ek_certificate(unb64(&cert)?, chain);
            }
            TpmKeys::Soft(Box::new(tpm))
        }
        (None, None, Some(seed)) => TpmKeys::Swtpm {
            ek_seed: unb64(&seed)?.try_into().ok()?,
        },
        _ => return None,
    };
    let presented_ek = match f.presented_ek {
        Some(p) => Some(unb64(&p)?),
        None => None,
    };
    Some(TpmDevice {
        keys,
        presented_ek,
        group_id: f.group_id,
    })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FleetError + '_ {
    move |source| FleetError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn to_file(fleet: &Fleet) -> Result<FleetFile, FleetError> {
    let devices = fleet
        .devices
        .iter()
        .map(|d| {
            let mut file = DeviceFile {
                class: d.class,
                common_name: d.common_name.clone(),
                chain: Vec::new(),
                key: String::new(),
                tpm: None,
                expected: d.expected.clone(),
            };
            match &d.credentials {
                Credentials::X509 { chain, key } => {
                    file.chain = chain.iter().map(|c| b64(c)).collect();
                    file.key = b64(key.secret_der());
                }
                Credentials::Tpm(t) => file.tpm = Some(tpm_to_file(t)?),
            }
            Ok(file)
        })
        .collect::<Result<_, FleetError>>()?;
    Ok(FleetFile {
        format: FORMAT,
        generated_at_unix_s: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        devices,
        groups: fleet.groups.clone(),
        server_ca: b64(&fleet.server_ca),
        server_groups: fleet.server_groups.clone(),
        hub: fleet.hub.clone(),
        server_tpm_enrollments: fleet.server_tpm_enrollments.clone(),
        server_tpm_groups: fleet.server_tpm_groups.clone(),
    })
}

/// The fleet in `file`, if it is of this format, young enough and every field decodes.
fn from_file(file: FleetFile) -> Option<Fleet> {
    let age = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?
        .as_secs()
        .checked_sub(file.generated_at_unix_s)?;
    if file.format != FORMAT || age > MAX_AGE.as_secs() {
        return None;
    }
    let devices = file
        .devices
        .into_iter()
        .enumerate()
        .map(|(index, d)| {
            let credentials = match d.tpm {
                Some(t) => Credentials::Tpm(tpm_from_file(t)?),
                None => {
                    let chain = d
                        .chain
                        .iter()
                        .map(|c| unb64(c).map(CertificateDer::from))
                        .collect::<Option<Vec<_>>>()?;
                    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(unb64(&d.key)?));
                    (!chain.is_empty()).then_some(Credentials::X509 { chain, key })?
                }
            };
            (d.class.is_tpm() == matches!(credentials, Credentials::Tpm(_))).then_some(Device {
                index,
                class: d.class,
                common_name: d.common_name,
                credentials,
                expected: d.expected,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Fleet {
        devices,
        groups: file.groups,
        server_ca: CertificateDer::from(unb64(&file.server_ca)?),
        server_groups: file.server_groups,
        hub: file.hub,
        server_tpm_enrollments: file.server_tpm_enrollments,
        server_tpm_groups: file.server_tpm_groups,
    })
}

fn read(dir: &Path) -> Option<Fleet> {
    let text = std::fs::read(dir.join("fleet.json")).ok()?;
    let file: FleetFile = serde_json::from_slice(&text).ok()?;
    dir.join("config.toml").is_file().then_some(())?;
    from_file(file)
}

/// The fleet for `spec`: from the cache under `root` when `spec.cache` is set and an entry is
/// there, else generated (and then cached, when `spec.cache` is set).
pub fn load_or_build(spec: &FleetSpec, root: &Path) -> Result<Ready, FleetError> {
    if !spec.cache {
        let temp = tempfile::tempdir().map_err(io_err(Path::new("temporary directory")))?;
        let fleet = build(spec, temp.path())?;
        return Ok(Ready {
            fleet,
            dir: FleetDir {
                path: temp.path().to_owned(),
                _temp: Some(temp),
            },
            reused: false,
        });
    }
    let dir = root.join(format!("fleet-{}", key(spec)));
    if let Some(fleet) = read(&dir) {
        if fleet.devices.len() == spec.devices {
            return Ok(Ready {
                fleet,
                dir: FleetDir {
                    path: dir,
                    _temp: None,
                },
                reused: true,
            });
        }
    }
    std::fs::create_dir_all(root).map_err(io_err(root))?;
    let staging = tempfile::Builder::new()
        .prefix(".fleet-staging-")
        .tempdir_in(root)
        .map_err(io_err(root))?;
    let fleet = build(spec, staging.path())?;
    let json = serde_json::to_vec(&to_file(&fleet)?).map_err(|e| FleetError::Io {
        path: "fleet.json".into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let fleet_json = staging.path().join("fleet.json");
    std::fs::write(&fleet_json, json).map_err(io_err(&fleet_json))?;
    // Replace a stale entry; if another run put a fresh one in place meanwhile, either is fine.
    if dir.exists() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let staged = staging.keep();
    if std::fs::rename(&staged, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&staged);
        if let Some(theirs) = read(&dir) {
            return Ok(Ready {
                fleet: theirs,
                dir: FleetDir {
                    path: dir,
                    _temp: None,
                },
                reused: true,
            });
        }
        return Err(FleetError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other("cannot move the generated fleet into the cache"),
        });
    }
    Ok(Ready {
        fleet,
        dir: FleetDir {
            path: dir,
            _temp: None,
        },
        reused: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(seed: u64) -> FleetSpec {
        FleetSpec {
            seed,
            devices: 12,
            key: crate::spec::KeyType::P256,
            mix: BTreeMap::from([
                (DeviceClass::Valid, 2),
                (DeviceClass::Truncated, 1),
                (DeviceClass::Tpm, 2),
                (DeviceClass::TpmSwtpm, 1),
                (DeviceClass::TpmWrongEk, 1),
            ]),
            cache: true,
        }
    }

    /// What a device's credentials amount to, for comparing fleets.
    fn credentials(d: &Device) -> String {
        match &d.credentials {
            Credentials::X509 { chain, key } => format!("{chain:?} {:?}", key.secret_der()),
            Credentials::Tpm(t) => {
                let keys = match &t.keys {
                    TpmKeys::Soft(s) => format!(
                        "{:?} {:?} {:?} {:?}",
                        s.ek().to_pkcs8().expect("ek"),
                        s.ak().to_pkcs8().expect("ak"),
                        s.challenge_request().ek_certificate,
                        s.challenge_request().ek_chain
                    ),
                    TpmKeys::Swtpm { ek_seed } => format!("{ek_seed:?}"),
                };
                format!("{keys} {:?} {}", t.presented_ek, t.group_id)
            }
        }
    }

    #[test]
    fn a_cached_fleet_comes_back_byte_for_byte_and_other_specs_get_their_own() {
        let root = tempfile::tempdir().expect("tmp");
        let first = load_or_build(&spec(5), root.path()).expect("build");
        assert!(!first.reused);
        let again = load_or_build(&spec(5), root.path()).expect("reuse");
        assert!(again.reused);
        assert_eq!(first.dir.path(), again.dir.path());
        for (a, b) in first.fleet.devices.iter().zip(&again.fleet.devices) {
            assert_eq!(credentials(a), credentials(b));
            assert_eq!((a.class, &a.expected), (b.class, &b.expected));
        }
        let classes: std::collections::BTreeSet<_> =
            again.fleet.devices.iter().map(|d| d.class).collect();
        assert!(
            classes.contains(&DeviceClass::Tpm) && classes.contains(&DeviceClass::TpmSwtpm),
            "{classes:?}"
        );
        assert_eq!(
            first.fleet.server_tpm_enrollments,
            again.fleet.server_tpm_enrollments
        );
        assert!(!again.fleet.server_tpm_enrollments.is_empty());
        assert_eq!(first.fleet.server_ca, again.fleet.server_ca);
        let other = load_or_build(&spec(6), root.path()).expect("other seed");
        assert!(!other.reused);
        assert_ne!(other.dir.path(), first.dir.path());
    }

    #[test]
    fn a_corrupt_entry_is_regenerated() {
        let root = tempfile::tempdir().expect("tmp");
        let first = load_or_build(&spec(9), root.path()).expect("build");
        std::fs::write(first.dir.path().join("fleet.json"), b"{not json").expect("corrupt");
        let again = load_or_build(&spec(9), root.path()).expect("rebuild");
        assert!(!again.reused);
        assert_eq!(again.fleet.devices.len(), 12);
        assert!(load_or_build(&spec(9), root.path()).expect("reuse").reused);
    }

    #[test]
    fn the_key_depends_on_the_shape_only() {
        let mut a = spec(1);
        let b = spec(1);
        assert_eq!(key(&a), key(&b));
        a.cache = false;
        assert_eq!(key(&a), key(&b));
        a.devices = 13;
        assert_ne!(key(&a), key(&b));
    }
}
