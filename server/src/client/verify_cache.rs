//! Verify the server's chain once per distinct chain: a device fleet of one run talks to one
//! server, and verifying that server's chain again on every handshake was about 9 % of the load
//! generator's CPU. The handshake signatures (CertificateVerify) are still checked on every
//! handshake: they prove the peer holds the key *now*, which no earlier handshake can.

use std::sync::{Arc, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// How many distinct verified chains are remembered; beyond that the oldest is forgotten.
const CAPACITY: usize = 16;

/// A chain the inner verifier accepted for a server name.
#[derive(Debug)]
struct Verified {
    end_entity: Box<[u8]>,
    intermediates: Box<[Box<[u8]>]>,
    name: ServerName<'static>,
    /// Seconds since the epoch from which until which every certificate of the chain is valid
    /// (the latest `notBefore`, the earliest `notAfter`): outside it the chain is verified again.
    valid: (u64, u64),
}

/// When every certificate of the chain is valid (see [`Verified::valid`]); `None` if one of them
/// does not parse (such a chain is not remembered).
fn validity(end_entity: &[u8], intermediates: &[CertificateDer<'_>]) -> Option<(u64, u64)> {
    let mut valid = (0u64, u64::MAX);
    for der in std::iter::once(end_entity).chain(intermediates.iter().map(|c| c.as_ref())) {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let v = cert.validity();
        let secs = |t: i64| u64::try_from(t).unwrap_or(0);
        valid.0 = valid.0.max(secs(v.not_before.timestamp()));
        valid.1 = valid.1.min(secs(v.not_after.timestamp()));
    }
    Some(valid)
}

impl Verified {
    /// Is this exactly (`end_entity`, `intermediates`, `name`)?
    fn is(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
    ) -> bool {
        *self.end_entity == **end_entity
            && self.intermediates.len() == intermediates.len()
            && self
                .intermediates
                .iter()
                .zip(intermediates)
                .all(|(a, b)| **a == **b)
            && self.name == *name
    }
}

/// Remembers the chains `inner` accepted (keyed by end-entity DER, intermediates DER and server
/// name) for its own life, and answers those from memory; failures are not remembered, and the
/// handshake signatures always go to `inner`.
///
/// A remembered chain is answered from memory only while the clock is within every one of its
/// certificates' validity: a server certificate that expires during a run is refused then, as a
/// device verifying every chain would refuse it.
#[derive(Debug)]
pub struct CachingVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    verified: RwLock<Vec<Verified>>,
}

impl CachingVerifier {
    /// Remember what `inner` accepts.
    pub fn new(inner: Arc<dyn ServerCertVerifier>) -> Self {
        CachingVerifier {
            inner,
            verified: RwLock::new(Vec::new()),
        }
    }

    fn remembers(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        name: &ServerName<'_>,
        now: UnixTime,
    ) -> bool {
        let now = now.as_secs();
        self.verified.read().is_ok_and(|v| {
            v.iter().any(|c| {
                c.is(end_entity, intermediates, name) && c.valid.0 <= now && now <= c.valid.1
            })
        })
    }
}

impl ServerCertVerifier for CachingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.remembers(end_entity, intermediates, server_name, now) {
            return Ok(ServerCertVerified::assertion());
        }
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        let Some(valid) = validity(end_entity, intermediates) else {
            return Ok(verified);
        };
        if let Ok(mut v) = self.verified.write() {
            if !v
                .iter()
                .any(|c| c.is(end_entity, intermediates, server_name))
            {
                if v.len() >= CAPACITY {
                    v.remove(0);
                }
                v.push(Verified {
                    end_entity: end_entity.as_ref().into(),
                    intermediates: intermediates.iter().map(|c| c.as_ref().into()).collect(),
                    name: server_name.to_owned(),
                    valid,
                });
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

#[cfg(test)]
#[path = "verify_cache_tests.rs"]
mod tests;
