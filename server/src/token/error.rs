//! Why no token could be had for a device: the error every provider returns, kept in its own
//! module so that the providers (`oauth2`) need not import the token module that re-exports them.

use std::time::Duration;

/// Why no token could be had for a device.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token endpoint did not answer within the deadline.
    #[error("token endpoint did not answer within {0:?}")]
    Timeout(Duration),
    /// The token endpoint could not be reached (connect or TLS failure).
    #[error("token endpoint unreachable: {0}")]
    Unreachable(String),
    /// The token endpoint answered with an error status.
    #[error("token endpoint answered HTTP {0}: {1}")]
    Status(u16, String),
    /// The answer is not a usable token response.
    #[error("bad token response: {0}")]
    Response(String),
    /// The token's claims do not name this owner and device.
    #[error("token refused: {0}")]
    Claims(String),
    /// The DPS could not sign its own token.
    #[error("cannot sign the token: {0}")]
    Sign(String),
}

impl TokenError {
    /// Every label of [`TokenError::label`], in the order of the metrics.
    pub const LABELS: [&'static str; 6] = [
        "timeout",
        "unreachable",
        "status",
        "response",
        "claims",
        "sign",
    ];

    /// Short stable name for metrics and logs.
    pub fn label(&self) -> &'static str {
        Self::LABELS[self.index()]
    }

    /// Its position in [`TokenError::LABELS`] (the metrics' index).
    pub(super) fn index(&self) -> usize {
        match self {
            TokenError::Timeout(_) => 0,
            TokenError::Unreachable(_) => 1,
            TokenError::Status(..) => 2,
            TokenError::Response(_) => 3,
            TokenError::Claims(_) => 4,
            TokenError::Sign(_) => 5,
        }
    }
}
