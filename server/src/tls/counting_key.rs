//! The server's signing key, counting what it signs: a handshake signature is the costliest
//! public-key operation the server makes for a device, so the count shows what overload control
//! saved (a shed connection must cost none) and lets a test prove it.

use std::sync::Arc;

use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{SignatureAlgorithm, SignatureScheme};
use rustls_pki_types::SubjectPublicKeyInfoDer;

use crate::overload::OverloadCounters;

/// `key` with every signature counted in `counters`.
pub fn counting(key: &CertifiedKey, counters: Arc<OverloadCounters>) -> CertifiedKey {
    let mut counted = CertifiedKey::new(
        key.cert.clone(),
        Arc::new(CountingKey {
            inner: key.key.clone(),
            counters,
        }),
    );
    counted.ocsp = key.ocsp.clone();
    counted
}

#[derive(Debug)]
struct CountingKey {
    inner: Arc<dyn SigningKey>,
    counters: Arc<OverloadCounters>,
}

impl SigningKey for CountingKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        let inner = self.inner.choose_scheme(offered)?;
        Some(Box::new(CountingSigner {
            inner,
            counters: self.counters.clone(),
        }))
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        self.inner.public_key()
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        self.inner.algorithm()
    }
}

#[derive(Debug)]
struct CountingSigner {
    inner: Box<dyn Signer>,
    counters: Arc<OverloadCounters>,
}

impl Signer for CountingSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        self.counters.signed();
        self.inner.sign(message)
    }

    fn scheme(&self) -> SignatureScheme {
        self.inner.scheme()
    }
}
