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
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::{Deserialize, Serialize};

use super::{build, Device, DeviceClass, Expected, Fleet, FleetError, GroupInfo};
use crate::scenario::FleetSpec;

/// Version of the on-disk format and of the generator: bump it when either changes, so that old
/// entries are regenerated instead of misread.
pub const FORMAT: u32 = 3;

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

/// The cache key of a `[fleet]` section: FNV-1a over the format version and every field that
/// shapes the fleet (not the `cache` switch).
pub fn key(spec: &FleetSpec) -> String {
    let shape = serde_json::json!({
        "format": FORMAT,
        "seed": spec.seed,
        "devices": spec.devices,
        "key": spec.key,
        "mix": spec.mix,
    });
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in shape.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
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
}

#[derive(Serialize, Deserialize)]
struct DeviceFile {
    class: DeviceClass,
    common_name: String,
    chain: Vec<String>,
    /// PKCS#8, base64.
    key: String,
    expected: Expected,
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

fn to_file(fleet: &Fleet) -> FleetFile {
    FleetFile {
        format: FORMAT,
        generated_at_unix_s: SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        devices: fleet
            .devices
            .iter()
            .map(|d| DeviceFile {
                class: d.class,
                common_name: d.common_name.clone(),
                chain: d.chain.iter().map(|c| b64(c)).collect(),
                key: b64(d.key.secret_der()),
                expected: d.expected.clone(),
            })
            .collect(),
        groups: fleet.groups.clone(),
        server_ca: b64(&fleet.server_ca),
        server_groups: fleet.server_groups.clone(),
        hub: fleet.hub.clone(),
    }
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
            let chain = d
                .chain
                .iter()
                .map(|c| unb64(c).map(CertificateDer::from))
                .collect::<Option<Vec<_>>>()?;
            let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(unb64(&d.key)?));
            (!chain.is_empty()).then_some(Device {
                index,
                class: d.class,
                common_name: d.common_name,
                chain,
                key,
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
    let json = serde_json::to_vec(&to_file(&fleet)).map_err(|e| FleetError::Io {
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
            key: crate::scenario::KeyType::P256,
            mix: BTreeMap::from([(DeviceClass::Valid, 2), (DeviceClass::Truncated, 1)]),
            cache: true,
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
            assert_eq!(a.chain, b.chain);
            assert_eq!(a.key.secret_der(), b.key.secret_der());
            assert_eq!((a.class, &a.expected), (b.class, &b.expected));
        }
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
