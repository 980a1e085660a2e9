//! Why a provisioning request failed, and the CoAP answer each reason maps to; its own module so
//! that the resources' modules (`credentials`, `csr`, `identity`) use it without importing the
//! provisioning module that re-exports them.

/// Why a provisioning request failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The request is invalid: answer 4.00 with this diagnostic.
    #[error("{0}")]
    BadRequest(String),
    /// The enrollment group has no usable hub: answer 4.00 with this diagnostic.
    #[error("{0}")]
    NoHub(String),
    /// The session may not do this (e.g. ask for another device's certificate): answer 4.03
    /// with this diagnostic.
    #[error("{0}")]
    Forbidden(String),
    /// A server-side failure: answer 5.00 with this diagnostic.
    #[error("{0}")]
    Internal(String),
    /// A service the answer needs (the hub's token provider) failed: answer 5.03 with Max-Age
    /// `retry_after_s` and this diagnostic.
    #[error("{reason}")]
    Unavailable {
        /// When the device should come back, seconds.
        retry_after_s: u32,
        /// Why.
        reason: String,
    },
}

impl ProvisionError {
    /// The short diagnostic for the error payload.
    pub fn diagnostic(&self) -> &str {
        match self {
            ProvisionError::BadRequest(m)
            | ProvisionError::NoHub(m)
            | ProvisionError::Forbidden(m)
            | ProvisionError::Internal(m)
            | ProvisionError::Unavailable { reason: m, .. } => m,
        }
    }

    /// Whether the device is at fault (4.00 or 4.03) rather than the server (5.00).
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            ProvisionError::Internal(_) | ProvisionError::Unavailable { .. }
        )
    }
}
