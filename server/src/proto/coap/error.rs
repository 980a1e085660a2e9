//! Why a frame cannot be encoded or decoded; its own module so that the message model (whose
//! encoding methods return it) and the codec both use it without importing each other.

use thiserror::Error;

/// A framing error: the message cannot be encoded, or the peer sent a malformed or oversized one.
/// Every decode error is fatal for the connection (the stream cannot be resynchronised).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CodecError {
    /// TKL greater than 8 (9..=15 are reserved), or a token longer than 8 bytes to encode.
    #[error("token length {0} exceeds 8")]
    InvalidTokenLength(usize),
    /// An option delta nibble of 15 that is not the payload marker.
    #[error("reserved option delta 15")]
    ReservedOptionDelta,
    /// An option length nibble of 15.
    #[error("reserved option length 15")]
    ReservedOptionLength,
    /// The running option number exceeded 65535.
    #[error("option number {0} exceeds 65535")]
    OptionNumberOverflow(u32),
    /// A payload marker with no payload after it.
    #[error("payload marker followed by an empty payload")]
    EmptyPayload,
    /// An option header or value runs past the declared message length.
    #[error("option truncated by the message length")]
    TruncatedOption,
    /// The message is larger than the allowed maximum (checked as soon as its length is known).
    #[error("message of {size} bytes exceeds the maximum of {max} bytes")]
    MessageTooLarge {
        /// The size the header declares (whole message: header, token, options and payload).
        size: u64,
        /// The configured maximum.
        max: u64,
    },
    /// An option value too long for the wire format (over 65804 bytes), when encoding.
    #[error("option value of {0} bytes is too long to encode")]
    OptionTooLong(usize),
}
