//! A fleet's set-up as plain files, for servers the load generator does not start itself: our own
//! `dps-server run` (the fleet's `config.toml`, certificates and keys, as a spawned server gets
//! them) and a peer TLS server such as nginx, which needs the same server certificate and key, the
//! fleet's trust anchors (every certificate the fleet's enrollment groups configure, so a device
//! chain verifies against the same CAs on both), and a device or two for standard clients
//! (`openssl s_client`, `s_time`). `benches/peer-nginx.sh` is built on it.

use std::collections::BTreeSet;
use std::path::Path;

use dps_server::pki::{chain_pem, pem_encode, CertSpec, Issued};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};

use super::cache::Ready;
use super::model::{Credentials, Device, Expected, FleetError};
use super::pki::{ca, key_alg, write};
use crate::spec::{DeviceClass, KeyType};

/// The file of the cache entry that holds the devices themselves (with their keys): not part of
/// any server's set-up, so not exported.
const DEVICES_FILE: &str = "fleet.json";

/// What [`export`] wrote, also saved as `peer.json` beside the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exported {
    /// Devices in the fleet.
    pub devices: usize,
    /// Certificates in `client-ca.pem`.
    pub trust_anchors: usize,
    /// Most CA certificates strictly between a valid device's leaf and its root: the verify depth
    /// OpenSSL needs (nginx `ssl_verify_depth`) to accept every valid device of the fleet.
    pub verify_depth: usize,
    /// Common name of the device in `device.pem`.
    pub device: String,
    /// Common name of the device in `device-deep.pem`.
    pub deep_device: String,
}

/// Write the fleet of `ready` into `out` (created if needed):
///
/// - the server set-up of the cache entry (`config.toml`, `server.pem` = certificate and its CA,
///   `server.key`, identity CA, admin token): `dps-server run --config out/config.toml` serves the
///   fleet's groups;
/// - `client-ca.pem`: the trust anchors for a peer's client-certificate verification;
/// - `server-ca.pem`: what devices trust for the server;
/// - `device.pem` / `device.key`: the first valid device whose chain is its leaf alone, so a client
///   that sends one certificate (openssl s_time) presents exactly what the load generator's device
///   does;
/// - `device-deep.pem` / `device-deep.key`: the first of the valid devices that present the most
///   intermediates, leaf first (for `openssl s_client -cert_chain`): the deepest path a server
///   must accept;
/// - `stranger.pem` / `stranger.key`: a device of a CA unknown to the fleet, which every server
///   must refuse (generated fresh, not a fleet device);
/// - `peer.json`: [`Exported`].
pub fn export(ready: &Ready, key: KeyType, out: &Path) -> Result<Exported, FleetError> {
    std::fs::create_dir_all(out).map_err(io(out))?;
    let entries = std::fs::read_dir(ready.dir.path()).map_err(io(ready.dir.path()))?;
    for entry in entries {
        let entry = entry.map_err(io(ready.dir.path()))?;
        let path = entry.path();
        if path.is_file() && entry.file_name() != DEVICES_FILE {
            let to = out.join(entry.file_name());
            std::fs::copy(&path, &to).map_err(io(&to))?;
        }
    }
    let fleet = &ready.fleet;

    let mut anchors: Vec<CertificateDer<'static>> = Vec::new();
    let mut chain_len = std::collections::BTreeMap::new();
    for group in &fleet.server_groups {
        let chain = pem_certs(&group.certificate_chain, &group.name)?;
        chain_len.insert(group.name.as_str(), chain.len());
        for cert in chain {
            if !anchors.contains(&cert) {
                anchors.push(cert);
            }
        }
    }
    write(out, "client-ca.pem", &chain_pem(&anchors))?;
    write(
        out,
        "server-ca.pem",
        &pem_encode("CERTIFICATE", &fleet.server_ca),
    )?;

    let mut verify_depth = 0;
    let mut single = None;
    let mut deep: Option<(&Device, &Vec<CertificateDer<'static>>, _)> = None;
    for dev in fleet
        .devices
        .iter()
        .filter(|d| d.class == DeviceClass::Valid)
    {
        let (Credentials::X509 { chain, key }, Expected::Accepted { group }) =
            (&dev.credentials, &dev.expected)
        else {
            continue;
        };
        let configured = chain_len.get(group.as_str()).copied().unwrap_or(0);
        let distinct: BTreeSet<&[u8]> = chain.iter().map(|c| c.as_ref()).collect();
        // Leaf, presented intermediates, then the group's chain down to its root.
        verify_depth = verify_depth.max((distinct.len() + configured).saturating_sub(2));
        if single.is_none() && chain.len() == 1 {
            single = Some((dev, &chain[0], key));
        }
        if deep.is_none_or(|(_, c, _)| chain.len() > c.len()) {
            deep = Some((dev, chain, key));
        }
    }
    let (dev, leaf, leaf_key) = single.ok_or(FleetError::Export(
        "the fleet has no valid device presenting its leaf alone (give it valid devices)",
    ))?;
    write(out, "device.pem", &pem_encode("CERTIFICATE", leaf))?;
    write(
        out,
        "device.key",
        &pem_encode("PRIVATE KEY", leaf_key.secret_der()),
    )?;
    // Some when `single` is.
    let (deep_dev, deep_chain, deep_key) = deep.ok_or(FleetError::Export("no valid device"))?;
    write(out, "device-deep.pem", &chain_pem(deep_chain))?;
    write(
        out,
        "device-deep.key",
        &pem_encode("PRIVATE KEY", deep_key.secret_der()),
    )?;

    let stranger_ca = Issued::self_signed(&ca("Stranger Root CA", "not this fleet"))?;
    let stranger =
        stranger_ca.issue(&CertSpec::device("STRANGER-000000").with_key(key_alg(key)))?;
    write(out, "stranger.pem", &stranger.pem())?;
    write(out, "stranger.key", &stranger.key_pem())?;

    let exported = Exported {
        devices: fleet.devices.len(),
        trust_anchors: anchors.len(),
        verify_depth,
        device: dev.common_name.clone(),
        deep_device: deep_dev.common_name.clone(),
    };
    let json = serde_json::to_string_pretty(&exported).map_err(|e| FleetError::Io {
        path: "peer.json".into(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    write(out, "peer.json", &json)?;
    Ok(exported)
}

fn pem_certs(pem: &str, group: &str) -> Result<Vec<CertificateDer<'static>>, FleetError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| FleetError::Io {
            path: format!("group {group} certificate_chain"),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
    Ok(certs)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FleetError + '_ {
    move |source| FleetError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::FleetSpec;
    use std::collections::BTreeMap;

    #[test]
    fn export_writes_the_server_set_up_the_anchors_and_clients() {
        let cache = tempfile::tempdir().expect("tempdir");
        let spec = FleetSpec {
            seed: 3,
            devices: 5,
            key: KeyType::P256,
            mix: BTreeMap::from([(DeviceClass::Valid, 1)]),
            cache: true,
        };
        let ready = super::super::cache::load_or_build(&spec, cache.path()).expect("fleet");
        let out = tempfile::tempdir().expect("tempdir");
        let exported = export(&ready, spec.key, out.path()).expect("export");
        // IntA, IntB, IntL, IntP and the root, once each; Line1 devices sit three CAs deep.
        assert_eq!(exported.trust_anchors, 5);
        assert_eq!(exported.verify_depth, 2);
        assert_eq!(exported.devices, 5);
        for name in [
            "config.toml",
            "server.pem",
            "server.key",
            "client-ca.pem",
            "server-ca.pem",
            "device.pem",
            "device.key",
            "device-deep.pem",
            "device-deep.key",
            "stranger.pem",
            "stranger.key",
            "peer.json",
        ] {
            assert!(out.path().join(name).is_file(), "{name}");
        }
        assert!(!out.path().join(DEVICES_FILE).exists());
        // The exported config is a working server config (paths relative to it).
        dps_server::config::Config::load(&out.path().join("config.toml")).expect("config");

        // The device is a fleet device, and its chain verifies with the anchors; the stranger's
        // does not.
        let anchors = CertificateDer::pem_file_iter(out.path().join("client-ca.pem"))
            .expect("anchors")
            .collect::<Result<Vec<_>, _>>()
            .expect("anchors");
        let roots: Vec<_> = anchors
            .iter()
            .map(|c| {
                webpki::anchor_from_trusted_cert(c)
                    .expect("anchor")
                    .to_owned()
            })
            .collect();
        let verify = |file: &str| {
            let leaf = CertificateDer::from_pem_file(out.path().join(file)).expect("leaf");
            let cert = webpki::EndEntityCert::try_from(&leaf).expect("parse");
            cert.verify_for_usage(
                rustls::crypto::aws_lc_rs::default_provider()
                    .signature_verification_algorithms
                    .all,
                &roots,
                &[],
                rustls_pki_types::UnixTime::now(),
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map(|_| ())
        };
        verify("device.pem").expect("the device verifies");
        assert!(verify("stranger.pem").is_err(), "the stranger must not");
        let Credentials::X509 { chain, .. } = &ready.fleet.devices[0].credentials else {
            panic!("X.509 device");
        };
        let leaf = CertificateDer::from_pem_file(out.path().join("device.pem")).expect("leaf");
        assert_eq!(chain.as_slice(), &[leaf]);
        // Device 1 sits under Line1 and presents it: the deepest path.
        let Credentials::X509 { chain, .. } = &ready.fleet.devices[1].credentials else {
            panic!("X.509 device");
        };
        let deep = CertificateDer::pem_file_iter(out.path().join("device-deep.pem"))
            .expect("deep")
            .collect::<Result<Vec<_>, _>>()
            .expect("deep");
        assert_eq!(&deep, chain);
        assert_eq!(deep.len(), 2);
        assert_eq!(exported.deep_device, ready.fleet.devices[1].common_name);
        let saved: Exported = serde_json::from_str(
            &std::fs::read_to_string(out.path().join("peer.json")).expect("peer.json"),
        )
        .expect("json");
        assert_eq!(saved, exported);
    }
}
