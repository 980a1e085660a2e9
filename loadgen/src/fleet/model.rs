//! What a fleet is: its devices, how each attests, the outcome each must get, and the server
//! set-up the fleet is meant for. Data only; [`mod@super::build`] makes a fleet, [`super::cache`] keeps
//! one on disk.

use std::collections::BTreeMap;

use dps_server::config::{GroupConfig, HubConfig};
use dps_server::enrollment::RejectReason;
use dps_server::pki::PkiError;
use dps_server::tpm::soft::{SoftTpm, SoftTpmError};
use dps_server::tpm::TpmEnrollmentConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::spec::DeviceClass;

/// The outcome a device must get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Expected {
    /// Provisioned into this group (by name).
    Accepted {
        /// Group name.
        group: String,
    },
    /// Provisioned into this group, then provisioned again in it over a new session
    /// authenticated by the identity certificate of the first.
    Reconnected {
        /// Group name.
        group: String,
    },
    /// Refused at the handshake for this reason.
    Rejected {
        /// The reason the server must give.
        reason: RejectReason,
    },
    /// A TPM device refused at this step of the nonce challenge with this CoAP code (e.g.
    /// `4.01`), after which the server closes the connection.
    TpmRefused {
        /// The step.
        step: TpmStep,
        /// The CoAP response code, `c.dd`.
        code: String,
    },
}

/// How a device attests.
#[derive(Debug)]
pub enum Credentials {
    /// Its manufacturer certificate in TLS.
    X509 {
        /// What it presents in TLS, leaf first.
        chain: Vec<CertificateDer<'static>>,
        /// Its key.
        key: PrivateKeyDer<'static>,
    },
    /// Its TPM, through the nonce challenge on a connection without a client certificate.
    Tpm(TpmDevice),
}

/// One simulated device.
#[derive(Debug)]
pub struct Device {
    /// Position in the fleet.
    pub index: usize,
    /// Its class.
    pub class: DeviceClass,
    /// Manufacturer certificate CN (a TPM device's name; its EK certificate's CN if it has one).
    pub common_name: String,
    /// How it attests.
    pub credentials: Credentials,
    /// What it must get.
    pub expected: Expected,
}

/// A group of the server, as the devices can recognise it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupInfo {
    /// Name.
    pub name: String,
    /// The owner UUID its devices must receive.
    pub owner_uuid: String,
}

/// The generated fleet and the server set-up it is meant for.
#[derive(Debug)]
pub struct Fleet {
    /// Devices in start order.
    pub devices: Vec<Device>,
    /// Groups by name.
    pub groups: BTreeMap<String, GroupInfo>,
    /// The CA devices trust for the server certificate of the embedded server.
    pub server_ca: CertificateDer<'static>,
    /// The enrollment groups the fleet needs, chains as inline PEM (created over the admin API of
    /// a remote target; written into the embedded server's config).
    pub server_groups: Vec<GroupConfig>,
    /// The hub those groups link.
    pub hub: HubConfig,
    /// Individual TPM enrollments of the soft TPM devices (in the embedded server's config;
    /// created over the admin API of a remote target).
    pub server_tpm_enrollments: Vec<TpmEnrollmentConfig>,
    /// TPM enrollment groups the fleet needs (in the embedded server's config; created over the
    /// admin API of a remote target).
    pub server_tpm_groups: Vec<GroupConfig>,
}

/// Why the fleet could not be built.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Certificate generation failed.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// rcgen refused a name.
    #[error("certificate name: {0}")]
    Name(#[from] rcgen::Error),
    /// Writing the server set-up failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config could not be serialized.
    #[error("config: {0}")]
    Toml(#[from] toml::ser::Error),
    /// A soft TPM could not be generated or its keys encoded.
    #[error("TPM: {0}")]
    Tpm(#[from] SoftTpmError),
    /// A TPM class was asked for an X.509 chain.
    #[error("class {0:?} attests with a TPM, not an X.509 chain")]
    NotX509(DeviceClass),
    /// An X.509 class was asked for a TPM.
    #[error("TPM: {} is not a TPM class", .0.as_str())]
    NotTpm(DeviceClass),
    /// The fleet lacks what an export needs.
    #[error("export: {0}")]
    Export(&'static str),
}

/// Where a TPM device's exchange must end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TpmStep {
    /// `POST /api/v1/provisioning/tpm/challenge`.
    Challenge,
    /// `POST /api/v1/provisioning/tpm/attest`.
    Attest,
}

impl TpmStep {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TpmStep::Challenge => "challenge",
            TpmStep::Attest => "attest",
        }
    }
}

/// Where a TPM device's keys are.
#[derive(Debug)]
pub enum TpmKeys {
    /// In software, here.
    Soft(Box<SoftTpm>),
    /// In a swtpm of the run's pool: the EK is the default template with this seed in its unique
    /// field (one swtpm holds a distinct EK per seed), the AK is created by the TPM per run.
    Swtpm {
        /// The EK template's unique seed.
        ek_seed: [u8; 32],
    },
}

/// A TPM device: its keys and what its challenge presents.
#[derive(Debug)]
pub struct TpmDevice {
    /// The keys.
    pub keys: TpmKeys,
    /// `tpm_wrong_ek`: the enrolled EK (TPM2B_PUBLIC) it presents instead of its own, without
    /// the private key.
    pub presented_ek: Option<Vec<u8>>,
    /// The enrollment group id the attest answer must name; empty for an individual enrollment.
    pub group_id: String,
}

/// The fleet's hub id (fixed, so a remote target sees one hub however often it is run against).
pub const HUB: &str = "5f0c1d8e-9a51-4c7b-8d2e-6a1f3b9c0d11";
