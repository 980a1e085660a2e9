#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::client::config::{ClientAuth, DeviceTls, TlsChoices};
use crate::pki::{CertSpec, Issued};

/// Counts the chain verifications it passes on to webpki.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn ServerCertVerifier>,
    chains: AtomicUsize,
}

impl ServerCertVerifier for Counting {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.chains.fetch_add(1, Ordering::SeqCst);
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
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
}

/// A server certificate for `localhost` issued by `ca`.
fn server_cert(ca: &Issued) -> Issued {
    let mut spec = CertSpec::device("localhost");
    spec.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    spec.subject_alt_names = vec![rcgen::SanType::DnsName("localhost".try_into().unwrap())];
    ca.issue(&spec).unwrap()
}

/// A server presenting `cert` and signing its handshakes with `signing` (the key of `cert`, or
/// not).
fn server(cert: &Issued, signing: &Issued) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = provider
        .key_provider
        .load_private_key(signing.key_der())
        .unwrap();
    let certified = rustls::sign::CertifiedKey::new(vec![cert.der().clone()], key);
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
    Arc::new(config)
}

/// One in-memory handshake; the client's error if it failed.
fn handshake(
    client: &Arc<rustls::ClientConfig>,
    server: &Arc<rustls::ServerConfig>,
) -> Result<(), rustls::Error> {
    let mut client =
        rustls::ClientConnection::new(client.clone(), "localhost".try_into().unwrap())?;
    let mut server = rustls::ServerConnection::new(server.clone())?;
    for _ in 0..16 {
        let mut moved = false;
        while client.wants_write() {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            // A client that sent an alert fails on its own side below.
            let _ = server.process_new_packets();
            moved = true;
        }
        while server.wants_write() {
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets()?;
            moved = true;
        }
        if !moved {
            break;
        }
    }
    assert!(!client.is_handshaking(), "handshake did not complete");
    Ok(())
}

/// A client trusting `ca` through a caching verifier, and the counter of its inner verifier.
fn client(ca: &Issued) -> (Arc<rustls::ClientConfig>, Arc<Counting>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    let counting = Arc::new(Counting {
        inner: webpki,
        chains: AtomicUsize::new(0),
    });
    let caching = Arc::new(CachingVerifier::new(counting.clone()));
    let tls = DeviceTls::with_verifier(caching, TlsChoices::default()).unwrap();
    (Arc::new(tls.config(ClientAuth::None).unwrap()), counting)
}

#[test]
fn a_chain_is_verified_once_and_a_different_chain_again() {
    let ca = Issued::self_signed(&CertSpec::ca("cache test CA")).unwrap();
    let (client, counting) = client(&ca);
    let first = server_cert(&ca);
    let first_server = server(&first, &first);
    handshake(&client, &first_server).unwrap();
    assert_eq!(counting.chains.load(Ordering::SeqCst), 1);
    handshake(&client, &first_server).unwrap();
    assert_eq!(
        counting.chains.load(Ordering::SeqCst),
        1,
        "same chain again"
    );
    let second = server_cert(&ca);
    handshake(&client, &server(&second, &second)).unwrap();
    assert_eq!(counting.chains.load(Ordering::SeqCst), 2, "another chain");
    handshake(&client, &first_server).unwrap();
    assert_eq!(counting.chains.load(Ordering::SeqCst), 2, "both remembered");
}

#[test]
fn a_bad_handshake_signature_fails_even_with_the_chain_remembered() {
    let ca = Issued::self_signed(&CertSpec::ca("cache test CA")).unwrap();
    let (client, counting) = client(&ca);
    let cert = server_cert(&ca);
    handshake(&client, &server(&cert, &cert)).unwrap();
    // The same chain, but the handshake signed with another key.
    let impostor = server_cert(&ca);
    let failed = handshake(&client, &server(&cert, &impostor)).expect_err("bad signature");
    assert!(
        matches!(failed, rustls::Error::InvalidCertificate(_)),
        "{failed:?}"
    );
    assert_eq!(counting.chains.load(Ordering::SeqCst), 1);
    handshake(&client, &server(&cert, &cert)).unwrap();
}

#[test]
fn a_remembered_chain_is_verified_again_once_the_clock_leaves_its_validity() {
    let ca = Issued::self_signed(&CertSpec::ca("cache test CA")).unwrap();
    let (_, counting) = client(&ca);
    let caching = CachingVerifier::new(counting.clone());
    let cert = server_cert(&ca);
    let name = ServerName::try_from("localhost").unwrap();
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.der()).unwrap();
    let not_after = u64::try_from(parsed.validity().not_after.timestamp()).unwrap();
    let verify = |now| caching.verify_server_cert(cert.der(), &[], &name, &[], now);
    verify(UnixTime::now()).unwrap();
    verify(UnixTime::now()).unwrap();
    assert_eq!(counting.chains.load(Ordering::SeqCst), 1, "remembered");
    let later = UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_after + 1));
    let expired = verify(later).expect_err("expired by then");
    assert!(
        matches!(
            expired,
            rustls::Error::InvalidCertificate(rustls::CertificateError::Expired)
                | rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ExpiredContext { .. }
                )
        ),
        "{expired:?}"
    );
    assert_eq!(
        counting.chains.load(Ordering::SeqCst),
        2,
        "past its notAfter the chain went to webpki again"
    );
}

#[test]
fn failures_are_not_remembered() {
    let ca = Issued::self_signed(&CertSpec::ca("cache test CA")).unwrap();
    let stranger = Issued::self_signed(&CertSpec::ca("another CA")).unwrap();
    let (client, counting) = client(&ca);
    let foreign = server_cert(&stranger);
    let foreign_server = server(&foreign, &foreign);
    for n in 1..=2 {
        let failed = handshake(&client, &foreign_server).expect_err("unknown issuer");
        assert!(
            matches!(
                failed,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
            ),
            "{failed:?}"
        );
        assert_eq!(counting.chains.load(Ordering::SeqCst), n);
    }
}

#[test]
fn at_most_capacity_chains_are_remembered() {
    let ca = Issued::self_signed(&CertSpec::ca("cache test CA")).unwrap();
    let (client, counting) = client(&ca);
    let servers: Vec<_> = (0..=CAPACITY)
        .map(|_| {
            let cert = server_cert(&ca);
            server(&cert, &cert)
        })
        .collect();
    for s in &servers {
        handshake(&client, s).unwrap();
    }
    assert_eq!(counting.chains.load(Ordering::SeqCst), CAPACITY + 1);
    // The first was forgotten to make room for the last; the last is remembered.
    handshake(&client, &servers[CAPACITY]).unwrap();
    assert_eq!(counting.chains.load(Ordering::SeqCst), CAPACITY + 1);
    handshake(&client, &servers[0]).unwrap();
    assert_eq!(counting.chains.load(Ordering::SeqCst), CAPACITY + 2);
}
