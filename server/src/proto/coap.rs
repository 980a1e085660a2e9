//! CoAP over TCP (RFC 8323 §3): the message model ([`Frame`], [`Code`], [`CoapOption`]), option
//! numbers, builders and helpers, in the `message` submodule; the byte-level codec in the `codec`
//! submodule ([`Frame::encode`], [`Frame::to_bytes`], [`Decoder`]) and its [`CodecError`] in
//! `error`. All three are re-exported here; none imports this module, so they form no cycle.

mod codec;
mod error;
mod message;
#[cfg(test)]
mod tests;

pub use codec::{decode_frame, Decoder};
pub use error::CodecError;
pub use message::{
    decode_uint, encode_uint, is_critical, option, signal_option, CoapOption, Code, Frame,
    BASE_MAX_MESSAGE_SIZE, CSM_TOKEN_LEN, MALFORMED_FORMAT, MAX_TOKEN_LEN, MIN_FRAME_LEN,
};
