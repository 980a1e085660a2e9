//! The benchmarks' fixed PKI: certificates, keys and a CSR generated once and committed under
//! `benches/fixtures/`, so instruction counts do not move with random keys (an ECDSA verification
//! costs a different number of instructions for every key and signature) and every run sees the
//! same bytes. Regenerate with `cargo run -p dps-benches --bin gen-bench-fixtures` (that changes
//! the instruction baselines: update them in the same commit).
//!
//! Topology (all CA keys P-256, validity 2025-01-01 … 2099-12-31):
//!
//! ```text
//! Bench Root ── Bench Int1 ── Bench Int2 ── Bench Int3
//!     leaf+1: leaf issued by Int1, presented [leaf, Int1]
//!     leaf+2: leaf issued by Int2, presented [leaf, Int2, Int1]
//!     leaf+3: leaf issued by Int3, presented [leaf, Int3, Int2, Int1]
//! ```
//!
//! Each leaf exists with a P-256 and with an Ed25519 device key (the CA signature on it is ECDSA
//! P-256 either way). The server's own certificate comes from a separate server CA; the identity
//! CA signs identity certificates from `device.csr`.

use std::path::{Path, PathBuf};

use dps_server::pki::{device_csr, CertSpec, Issued, KeyAlg, PkiError};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::macros::datetime;

/// Where the committed fixtures live.
pub fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The device id in `device.csr`.
pub const CSR_DEVICE_ID: uuid::Uuid = uuid::uuid!("6a1c3e0b-5b7e-4d55-9a4c-0c4b1f2d3e4f");

/// Intermediate depths the fixtures cover (leaf+1 … leaf+3).
pub const DEPTHS: [usize; 3] = [1, 2, 3];

/// Device key algorithms the fixtures cover.
pub const DEVICE_KEYS: [DeviceKey; 2] = [DeviceKey::P256, DeviceKey::Ed25519];

/// A device key algorithm of the fixtures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKey {
    /// ECDSA P-256.
    P256,
    /// Ed25519.
    Ed25519,
}

impl DeviceKey {
    /// Short name used in file and benchmark names.
    pub fn name(self) -> &'static str {
        match self {
            DeviceKey::P256 => "p256",
            DeviceKey::Ed25519 => "ed25519",
        }
    }

    fn alg(self) -> KeyAlg {
        match self {
            DeviceKey::P256 => KeyAlg::EcdsaP256,
            DeviceKey::Ed25519 => KeyAlg::Ed25519,
        }
    }
}

fn leaf_name(depth: usize, key: DeviceKey) -> String {
    format!("leaf{depth}-{}", key.name())
}

/// Generate a fresh fixture set: `(file name, PEM)` pairs.
pub fn generate() -> Result<Vec<(String, String)>, PkiError> {
    let fixed = |spec: CertSpec| {
        spec.valid_between(
            datetime!(2025-01-01 0:00 UTC),
            datetime!(2099-12-31 0:00 UTC),
        )
    };
    let mut files = Vec::new();
    let root = Issued::self_signed(&fixed(CertSpec::ca("Bench Root")))?;
    let mut cas = vec![root];
    for i in 1..=3 {
        let next = cas[i - 1].issue(&fixed(CertSpec::ca(format!("Bench Int{i}"))))?;
        cas.push(next);
    }
    for (i, ca) in cas.iter().enumerate() {
        let name = if i == 0 {
            "root".to_owned()
        } else {
            format!("int{i}")
        };
        files.push((format!("{name}.pem"), ca.pem()));
    }
    for depth in DEPTHS {
        for key in DEVICE_KEYS {
            let name = leaf_name(depth, key);
            let spec = fixed(CertSpec::device(format!("BENCH-{}", name.to_uppercase())))
                .with_key(key.alg());
            let leaf = cas[depth].issue(&spec)?;
            files.push((format!("{name}.pem"), leaf.pem()));
            files.push((format!("{name}.key"), leaf.key_pem()));
        }
    }
    let server_ca = Issued::self_signed(&fixed(CertSpec::ca("Bench Server CA")))?;
    let mut server_spec = fixed(CertSpec::device("dps.bench.invalid"));
    server_spec.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    server_spec.subject_alt_names = vec![rcgen::SanType::DnsName("dps.bench.invalid".try_into()?)];
    let server = server_ca.issue(&server_spec)?;
    files.push(("server-ca.pem".into(), server_ca.pem()));
    files.push(("server.pem".into(), server.pem()));
    files.push(("server.key".into(), server.key_pem()));
    let identity = Issued::self_signed(&fixed(CertSpec::ca("Bench Identity CA")))?;
    files.push(("identity-ca.pem".into(), identity.pem()));
    files.push(("identity-ca.key".into(), identity.key_pem()));
    let device_key = KeyAlg::EcdsaP256.generate()?;
    files.push((
        "device.csr".into(),
        device_csr(&CSR_DEVICE_ID, &device_key)?,
    ));
    Ok(files)
}

/// The committed fixtures, loaded.
#[derive(Debug, Clone)]
pub struct BenchPki {
    /// Bench Root.
    pub root: CertificateDer<'static>,
    /// Int1, Int2, Int3 (index 0 is Int1).
    pub ints: Vec<CertificateDer<'static>>,
    /// Server CA (the client's trust anchor).
    pub server_ca: CertificateDer<'static>,
    /// Server certificate (`dps.bench.invalid`).
    pub server_cert: CertificateDer<'static>,
    /// Server key PEM.
    pub server_key_pem: String,
    /// Identity CA certificate PEM.
    pub identity_ca_pem: String,
    /// Identity CA key PEM.
    pub identity_key_pem: String,
    /// The device CSR, PEM (`CN=uuid:<CSR_DEVICE_ID>`, P-256).
    pub csr_pem: String,
    dir: PathBuf,
}

fn read(dir: &Path, name: &str) -> String {
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "bench fixture {} missing ({e}); run `cargo run -p dps-benches --bin gen-bench-fixtures`",
            path.display()
        )
    })
}

fn cert(dir: &Path, name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(read(dir, name).as_bytes()).expect("fixture certificate PEM")
}

impl BenchPki {
    /// Load the fixtures from [`fixture_dir`].
    pub fn load() -> Self {
        Self::load_from(&fixture_dir())
    }

    /// Load the fixtures from `dir`.
    pub fn load_from(dir: &Path) -> Self {
        Self {
            root: cert(dir, "root.pem"),
            ints: (1..=3).map(|i| cert(dir, &format!("int{i}.pem"))).collect(),
            server_ca: cert(dir, "server-ca.pem"),
            server_cert: cert(dir, "server.pem"),
            server_key_pem: read(dir, "server.key"),
            identity_ca_pem: read(dir, "identity-ca.pem"),
            identity_key_pem: read(dir, "identity-ca.key"),
            csr_pem: read(dir, "device.csr"),
            dir: dir.to_owned(),
        }
    }

    /// The server key, DER.
    pub fn server_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).expect("server key PEM")
    }

    /// What a leaf+`depth` device presents: its leaf, then Int`depth` … Int1.
    pub fn presented(&self, depth: usize, key: DeviceKey) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![cert(&self.dir, &format!("{}.pem", leaf_name(depth, key)))];
        chain.extend(self.ints[..depth].iter().rev().cloned());
        chain
    }

    /// The private key of the leaf+`depth` device.
    pub fn device_key(&self, depth: usize, key: DeviceKey) -> PrivateKeyDer<'static> {
        let pem = read(&self.dir, &format!("{}.key", leaf_name(depth, key)));
        PrivateKeyDer::from_pem_slice(pem.as_bytes()).expect("device key PEM")
    }

    /// The enrollment group's configured chain: `[Int1, Root]` (lead Int1).
    pub fn group_chain(&self) -> Vec<CertificateDer<'static>> {
        vec![self.ints[0].clone(), self.root.clone()]
    }
}
