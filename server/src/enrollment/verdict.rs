//! The one outcome type of authentication and selection, shared by the TLS verifier, the CLI, the
//! metrics and the load generator's expectations.

use std::fmt;
use std::str::FromStr;

use rustls_pki_types::CertificateDer;
use uuid::Uuid;

/// Why a device was refused. The string forms are a stable interface (metrics labels, logs,
/// `check-chain` output, load-generator expectations): never rename them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// No path from the leaf through presented certificates to a configured one (a gap or an
    /// unknown issuer).
    NoPath,
    /// A candidate issuer with the right name did not verify the signature.
    BadSignature,
    /// An issuer is not a CA (cA=FALSE, or keyUsage without keyCertSign), or the leaf is a CA.
    NotCa,
    /// A pathLenConstraint is exceeded.
    PathLen,
    /// A certificate has expired (a CA, or the leaf when its group does not allow it).
    Expired,
    /// A certificate is not valid yet.
    NotYetValid,
    /// The leaf's EKU does not allow TLS client authentication.
    BadEku,
    /// Authenticated, but no lead certificate of any group is in the verified chain.
    NoGroup,
    /// The device CN is on the selected group's deny list.
    Denied,
    /// The selected group has an allow list and the device CN is not on it.
    NotAllowed,
    /// Certificate bytes that do not parse.
    Malformed,
}

impl RejectReason {
    /// Every reason, in a fixed order (for metrics that list zero counts too).
    pub const ALL: [RejectReason; 11] = [
        RejectReason::NoPath,
        RejectReason::BadSignature,
        RejectReason::NotCa,
        RejectReason::PathLen,
        RejectReason::Expired,
        RejectReason::NotYetValid,
        RejectReason::BadEku,
        RejectReason::NoGroup,
        RejectReason::Denied,
        RejectReason::NotAllowed,
        RejectReason::Malformed,
    ];

    /// The stable string.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoPath => "no_path",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::NotCa => "not_ca",
            RejectReason::PathLen => "path_len",
            RejectReason::Expired => "expired",
            RejectReason::NotYetValid => "not_yet_valid",
            RejectReason::BadEku => "bad_eku",
            RejectReason::NoGroup => "no_group",
            RejectReason::Denied => "denied",
            RejectReason::NotAllowed => "not_allowed",
            RejectReason::Malformed => "malformed",
        }
    }

    /// The reason webpki's path validation failure stands for.
    pub(crate) fn from_webpki(err: &webpki::Error) -> Self {
        use webpki::Error as E;
        #[allow(deprecated)]
        match err {
            E::UnknownIssuer
            | E::MaximumPathDepthExceeded
            | E::MaximumPathBuildCallsExceeded
            | E::MaximumSignatureChecksExceeded
            | E::NameConstraintViolation
            | E::CertDistrusted => RejectReason::NoPath,
            E::InvalidSignatureForPublicKey
            | E::SignatureAlgorithmMismatch
            | E::UnsupportedSignatureAlgorithm
            | E::UnsupportedSignatureAlgorithmContext(_)
            | E::UnsupportedSignatureAlgorithmForPublicKey
            | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => RejectReason::BadSignature,
            E::CaUsedAsEndEntity | E::EndEntityUsedAsCa => RejectReason::NotCa,
            E::PathLenConstraintViolated => RejectReason::PathLen,
            E::CertExpired { .. } => RejectReason::Expired,
            E::CertNotValidYet { .. } => RejectReason::NotYetValid,
            E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) | E::EmptyEkuExtension => {
                RejectReason::BadEku
            }
            _ => RejectReason::Malformed,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RejectReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RejectReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An unknown reason string.
#[derive(Debug, thiserror::Error)]
#[error("unknown rejection reason {0:?}")]
pub struct UnknownReason(pub String);

impl FromStr for RejectReason {
    type Err = UnknownReason;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RejectReason::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownReason(s.to_owned()))
    }
}

/// A device admitted into a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The selected enrollment group.
    pub group: Uuid,
    /// The device leaf's subject CN (empty when it has none).
    pub common_name: String,
    /// The verified chain, leaf first, up to the configured root.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf was outside its validity window and the group allowed it.
    pub expired_leaf_allowed: bool,
}

/// The outcome of authentication and selection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Admitted.
    Accepted(Accepted),
    /// Refused, for exactly one reason.
    Rejected(RejectReason),
}

impl Verdict {
    /// The rejection reason, if any.
    pub fn reason(&self) -> Option<RejectReason> {
        match self {
            Verdict::Accepted(_) => None,
            Verdict::Rejected(r) => Some(*r),
        }
    }

    /// The accepted group, if any.
    pub fn group(&self) -> Option<Uuid> {
        match self {
            Verdict::Accepted(a) => Some(a.group),
            Verdict::Rejected(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_strings_are_stable_and_round_trip() {
        let strings: Vec<_> = RejectReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            strings,
            [
                "no_path",
                "bad_signature",
                "not_ca",
                "path_len",
                "expired",
                "not_yet_valid",
                "bad_eku",
                "no_group",
                "denied",
                "not_allowed",
                "malformed"
            ]
        );
        for r in RejectReason::ALL {
            assert_eq!(r.as_str().parse::<RejectReason>().ok(), Some(r));
        }
        assert!("nope".parse::<RejectReason>().is_err());
    }
}
