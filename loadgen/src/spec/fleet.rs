//! `[fleet]`: how many devices, which key type, and the weight of each device class.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The key type of generated devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum KeyType {
    /// ECDSA P-256.
    #[default]
    P256,
    /// ECDSA P-384.
    P384,
    /// Ed25519.
    Ed25519,
}

/// `[fleet]`: the simulated devices.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSpec {
    /// Seed of the fleet: same seed, same devices (CNs, classes, order).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Number of devices.
    pub devices: usize,
    /// Device key type.
    #[serde(default)]
    pub key: KeyType,
    /// Class weights (`valid = 70`, `truncated = 5`, ...); absent classes get weight 0.
    pub mix: BTreeMap<DeviceClass, u32>,
    /// Keep the generated fleet on disk and reuse it on the next run with the same `[fleet]`
    /// (generation dominates the start-up of large fleets).
    #[serde(default = "yes")]
    pub cache: bool,
}

fn default_seed() -> u64 {
    1
}

fn yes() -> bool {
    true
}

/// A device class and, through the fleet's `Expected`, the outcome it must get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    /// Valid chain, spread over groups and chain depths: accepted.
    Valid,
    /// Missing intermediate: `no_path`.
    Truncated,
    /// Unknown root: `no_path`.
    Unmatched,
    /// Authenticates, no lead certificate in its chain: `no_group`.
    NoGroup,
    /// CN on the group's deny list: `denied`.
    Blacklisted,
    /// CN not on the group's allow list: `not_allowed`.
    NotAllowed,
    /// Expired leaf: `expired` in a strict group, accepted in `legacy`.
    Expired,
    /// Signed by a CA with a configured CA's name and another key: `bad_signature`.
    Forged,
    /// Leaf without clientAuth EKU: `bad_eku`.
    BadEku,
    /// Valid in `factory-b`; after provisioning it reconnects with the identity certificate it was
    /// issued and provisions again (renewal) in the same group.
    Identity,
    /// Soft TPM, enrolled individually (even index) or through the `tpm-vendor` EK-certificate
    /// group (odd index): attests, then provisions in that enrollment.
    Tpm,
    /// A TPM in a swtpm process (build feature `tpm-sim`), enrolled individually at run time:
    /// attests, then provisions in `tpm-swtpm`.
    TpmSwtpm,
    /// Presents an enrolled EK without its private key: cannot activate the credential, so its
    /// attest is refused with 4.01.
    TpmWrongEk,
    /// Attests correctly on one connection, then on a new one answers a fresh challenge with the
    /// right secret but the first connection's quote (the old nonce): attest refused with 4.01.
    TpmReplayedNonce,
    /// The credential blob is altered on the way: ActivateCredential fails, the attest (with no
    /// valid secret) is refused with 4.01.
    TpmTamperedBlob,
    /// No enrollment and no EK certificate (even index) or a foreign vendor's EK certificate
    /// (odd): the challenge is refused with 4.01.
    TpmUnenrolled,
}

impl DeviceClass {
    /// Every class.
    pub const ALL: [DeviceClass; 16] = [
        DeviceClass::Valid,
        DeviceClass::Truncated,
        DeviceClass::Unmatched,
        DeviceClass::NoGroup,
        DeviceClass::Blacklisted,
        DeviceClass::NotAllowed,
        DeviceClass::Expired,
        DeviceClass::Forged,
        DeviceClass::BadEku,
        DeviceClass::Identity,
        DeviceClass::Tpm,
        DeviceClass::TpmSwtpm,
        DeviceClass::TpmWrongEk,
        DeviceClass::TpmReplayedNonce,
        DeviceClass::TpmTamperedBlob,
        DeviceClass::TpmUnenrolled,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Valid => "valid",
            DeviceClass::Truncated => "truncated",
            DeviceClass::Unmatched => "unmatched",
            DeviceClass::NoGroup => "no_group",
            DeviceClass::Blacklisted => "blacklisted",
            DeviceClass::NotAllowed => "not_allowed",
            DeviceClass::Expired => "expired",
            DeviceClass::Forged => "forged",
            DeviceClass::BadEku => "bad_eku",
            DeviceClass::Identity => "identity",
            DeviceClass::Tpm => "tpm",
            DeviceClass::TpmSwtpm => "tpm_swtpm",
            DeviceClass::TpmWrongEk => "tpm_wrong_ek",
            DeviceClass::TpmReplayedNonce => "tpm_replayed_nonce",
            DeviceClass::TpmTamperedBlob => "tpm_tampered_blob",
            DeviceClass::TpmUnenrolled => "tpm_unenrolled",
        }
    }

    /// Attests with a TPM (no client certificate).
    pub fn is_tpm(self) -> bool {
        matches!(
            self,
            DeviceClass::Tpm
                | DeviceClass::TpmSwtpm
                | DeviceClass::TpmWrongEk
                | DeviceClass::TpmReplayedNonce
                | DeviceClass::TpmTamperedBlob
                | DeviceClass::TpmUnenrolled
        )
    }
}
