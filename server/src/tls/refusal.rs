//! The one table of how a refused device learns why: each [`RejectReason`] as the certificate
//! error the device port fails its handshake with, and so (through rustls's own mapping of
//! certificate errors) as the TLS alert the device receives. The server's verifier and the device
//! client (`crate::client::alert`) both read it, so the two cannot disagree.

use std::sync::Arc;

use rustls::{AlertDescription, CertificateError};

use crate::enrollment::RejectReason;

/// The certificate error a chain refused for `reason` fails the handshake with.
pub fn certificate_error(reason: RejectReason) -> CertificateError {
    match reason {
        RejectReason::Malformed => CertificateError::BadEncoding,
        RejectReason::Expired => CertificateError::Expired,
        RejectReason::NotYetValid => CertificateError::NotValidYet,
        RejectReason::NoPath => CertificateError::UnknownIssuer,
        RejectReason::BadSignature => CertificateError::BadSignature,
        RejectReason::BadEku => CertificateError::InvalidPurpose,
        RejectReason::NotCa | RejectReason::PathLen => {
            CertificateError::Other(rustls::OtherError(Arc::new(Rejected(reason))))
        }
        RejectReason::NoGroup | RejectReason::Denied | RejectReason::NotAllowed => {
            CertificateError::ApplicationVerificationFailure
        }
    }
}

/// The alert a device refused for `reason` receives: rustls's alert for
/// [`certificate_error`]`(reason)`.
pub fn alert(reason: RejectReason) -> AlertDescription {
    AlertDescription::from(certificate_error(reason))
}

/// The reasons a refusal arriving as `alert` may have had (several reasons share an alert).
pub fn reasons_for(alert: AlertDescription) -> impl Iterator<Item = RejectReason> {
    RejectReason::ALL
        .iter()
        .copied()
        .filter(move |r| self::alert(*r) == alert)
}

/// A rejection carried inside rustls's error.
#[derive(Debug)]
struct Rejected(RejectReason);

impl std::fmt::Display for Rejected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "device chain rejected: {}", self.0)
    }
}

impl std::error::Error for Rejected {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_the_alert_devices_expect_and_is_found_again_from_it() {
        use RejectReason as R;
        let expected = [
            (R::NoPath, AlertDescription::UnknownCA),
            (R::BadSignature, AlertDescription::DecryptError),
            (R::Expired, AlertDescription::CertificateExpired),
            (R::NotYetValid, AlertDescription::CertificateExpired),
            (R::BadEku, AlertDescription::UnsupportedCertificate),
            (R::NoGroup, AlertDescription::AccessDenied),
            (R::Denied, AlertDescription::AccessDenied),
            (R::NotAllowed, AlertDescription::AccessDenied),
            (R::Malformed, AlertDescription::BadCertificate),
            (R::NotCa, AlertDescription::CertificateUnknown),
            (R::PathLen, AlertDescription::CertificateUnknown),
        ];
        assert_eq!(expected.len(), R::ALL.len());
        for (reason, want) in expected {
            assert_eq!(alert(reason), want, "{reason}");
            assert!(reasons_for(want).any(|r| r == reason), "{reason}");
        }
        assert_eq!(reasons_for(AlertDescription::HandshakeFailure).count(), 0);
    }
}
