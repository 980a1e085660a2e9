//! What a device has ready before its scheduled start, as a real device has before it connects:
//! its credentials loaded into its TLS client, and the keys of the CSRs it will send made. The
//! executor prepares devices ahead of the schedule ([`crate::executor`]), so that the time from a
//! device's scheduled start to its SYN is the generator's lateness alone, not set-up work.

use rcgen::KeyPair;
use tokio_rustls::TlsConnector;

use super::context::DeviceContext;
use crate::fleet::{Credentials, Device, DeviceClass};
use crate::scenario::DeviceMode;

/// A device ready to start.
pub struct Prepared {
    /// The TLS client of its first session (with its manufacturer chain; a TPM device's without
    /// a certificate), or rustls's words for why it could not be built.
    pub(super) connector: Result<TlsConnector, String>,
    /// The keys of the CSRs it sends, in order (an `identity` device sends two); a device that
    /// needs more (a retried attempt) makes the others as it goes, as device work.
    pub(super) csr_keys: Vec<KeyPair>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("connector", &self.connector.as_ref().map(|_| "ready"))
            .field("csr_keys", &self.csr_keys.len())
            .finish()
    }
}

/// Prepare `dev` for a run in `ctx`: its TLS client and CSR keys.
pub fn prepare(dev: &Device, ctx: &DeviceContext) -> Prepared {
    let client = match &dev.credentials {
        Credentials::X509 { chain, key } => Some((chain.clone(), key.clone_key())),
        Credentials::Tpm(_) => None,
    };
    let csrs = match ctx.mode {
        DeviceMode::Provision if dev.class == DeviceClass::Identity => 2,
        DeviceMode::Provision => 1,
        _ => 0,
    };
    Prepared {
        connector: ctx.tls.connector(client),
        // A key that cannot be made here is made (and its failure seen) in the flow.
        csr_keys: (0..csrs).filter_map(|_| KeyPair::generate().ok()).collect(),
    }
}

impl Prepared {
    /// The `n`th CSR key, if it was made ahead.
    pub(super) fn csr_key(&self, n: usize) -> Option<&KeyPair> {
        self.csr_keys.get(n)
    }
}
