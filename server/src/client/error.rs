//! Why the device client could not be set up or could not build a request.

/// Why the device client could not be set up or could not build a request.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// rustls refused a setting, a certificate or a key.
    #[error("TLS client: {0}")]
    Rustls(#[from] rustls::Error),
    /// The server verifier could not be built from the CA.
    #[error("server verifier: {0}")]
    Verifier(#[from] rustls::client::VerifierBuilderError),
    /// A request body could not be encoded.
    #[error("request body: {0}")]
    Body(#[from] crate::proto::body::BodyError),
    /// The certificate signing request could not be made.
    #[error("CSR: {0}")]
    Csr(#[from] crate::pki::PkiError),
}
