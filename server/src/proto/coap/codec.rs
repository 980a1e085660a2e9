//! RFC 8323 §3.2 byte codec: encoding a [`Frame`] and the strict incremental [`Decoder`].
//!
//! Wire layout: `Len|TKL` byte, 0/1/2/4 extended-length bytes, code byte, token, options, and
//! `0xFF` + payload when the payload is non-empty. `Len` counts only options, marker and payload.

use super::error::CodecError;
use super::message::{CoapOption, Code, Frame, MAX_TOKEN_LEN};

/// Offset added to a 1-byte extended length/delta (nibble 13).
const EXT1_BASE: usize = 13;
/// Offset added to a 2-byte extended length/delta (nibble 14).
const EXT2_BASE: usize = 269;
/// Offset added to the 4-byte extended message length (shim nibble 15).
const EXT4_BASE: u64 = 65_805;
/// The largest option delta or value length the 14-form can express.
const MAX_OPTION_FIELD: usize = EXT2_BASE + 0xffff;
/// The payload marker.
const PAYLOAD_MARKER: u8 = 0xff;

/// Size of the extension that follows a nibble for a delta/length `value` (0, 1 or 2 bytes).
fn ext_len(value: usize) -> usize {
    if value < EXT1_BASE {
        0
    } else if value < EXT2_BASE {
        1
    } else {
        2
    }
}

/// Writes the nibble for `value` (caller has checked `value <= MAX_OPTION_FIELD`).
fn nibble(value: usize) -> u8 {
    match ext_len(value) {
        0 => (value & 0x0f) as u8,
        1 => 13,
        _ => 14,
    }
}

/// Appends the extension bytes for `value` (nothing, `value-13` or big-endian `value-269`).
fn push_ext(out: &mut Vec<u8>, value: usize) {
    match ext_len(value) {
        0 => {}
        1 => out.push(((value - EXT1_BASE) & 0xff) as u8),
        _ => {
            let v = (value - EXT2_BASE) & 0xffff;
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
    }
}

/// The options in wire order (a stable sort of a view when the vector is not sorted).
fn sorted_options(options: &[CoapOption]) -> Vec<&CoapOption> {
    let mut view: Vec<&CoapOption> = options.iter().collect();
    if !options.is_sorted_by_key(|o| o.number) {
        view.sort_by_key(|o| o.number);
    }
    view
}

impl Frame {
    /// Appends the encoded message to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), CodecError> {
        let tkl = self.token.len();
        if tkl > MAX_TOKEN_LEN {
            return Err(CodecError::InvalidTokenLength(tkl));
        }
        let options = sorted_options(&self.options);

        // First pass: the length of options + marker + payload.
        let mut body_len: u64 = 0;
        let mut prev = 0usize;
        for opt in options.iter() {
            let number = usize::from(opt.number);
            let delta = number - prev;
            let len = opt.value.len();
            if len > MAX_OPTION_FIELD {
                return Err(CodecError::OptionTooLong(len));
            }
            body_len += (1 + ext_len(delta) + ext_len(len) + len) as u64;
            prev = number;
        }
        if !self.payload.is_empty() {
            body_len += 1 + self.payload.len() as u64;
        }

        // Header: the length shim.
        let first_low = tkl as u8; // tkl <= 8
        out.reserve(6 + tkl + usize::try_from(body_len).unwrap_or(0));
        if body_len < EXT1_BASE as u64 {
            out.push(((body_len as u8) << 4) | first_low);
        } else if body_len < EXT2_BASE as u64 {
            out.push((13 << 4) | first_low);
            out.push((body_len - EXT1_BASE as u64) as u8);
        } else if body_len < EXT4_BASE {
            out.push((14 << 4) | first_low);
            out.extend_from_slice(&((body_len - EXT2_BASE as u64) as u16).to_be_bytes());
        } else {
            let ext =
                u32::try_from(body_len - EXT4_BASE).map_err(|_| CodecError::MessageTooLarge {
                    size: body_len,
                    max: u64::from(u32::MAX) + EXT4_BASE,
                })?;
            out.push((15 << 4) | first_low);
            out.extend_from_slice(&ext.to_be_bytes());
        }
        out.push(self.code.0);
        out.extend_from_slice(&self.token);

        // Second pass: the options.
        let mut prev = 0usize;
        for opt in options.iter() {
            let number = usize::from(opt.number);
            let delta = number - prev;
            let len = opt.value.len();
            out.push((nibble(delta) << 4) | nibble(len));
            push_ext(out, delta);
            push_ext(out, len);
            out.extend_from_slice(&opt.value);
            prev = number;
        }
        if !self.payload.is_empty() {
            out.push(PAYLOAD_MARKER);
            out.extend_from_slice(&self.payload);
        }
        Ok(())
    }

    /// The encoded message as a new vector.
    pub fn to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        self.encode(&mut out)?;
        Ok(out)
    }
}

/// Reads the extended delta/length for `nib` at `*pos` of `body` (nibble 15 handled by caller).
fn read_ext(body: &[u8], pos: &mut usize, nib: u8) -> Result<usize, CodecError> {
    match nib {
        13 => {
            let b = *body.get(*pos).ok_or(CodecError::TruncatedOption)?;
            *pos += 1;
            Ok(EXT1_BASE + usize::from(b))
        }
        14 => {
            let bytes = body
                .get(*pos..*pos + 2)
                .ok_or(CodecError::TruncatedOption)?;
            *pos += 2;
            let mut be = [0u8; 2];
            be.copy_from_slice(bytes);
            Ok(EXT2_BASE + usize::from(u16::from_be_bytes(be)))
        }
        n => Ok(usize::from(n)),
    }
}

/// Parses the options, marker and payload of a complete message body.
fn parse_body(body: &[u8]) -> Result<(Vec<CoapOption>, Vec<u8>), CodecError> {
    let mut options = Vec::new();
    let mut number: u32 = 0;
    let mut pos = 0usize;
    while let Some(&byte) = body.get(pos) {
        pos += 1;
        if byte == PAYLOAD_MARKER {
            let payload = body.get(pos..).unwrap_or_default();
            if payload.is_empty() {
                return Err(CodecError::EmptyPayload);
            }
            return Ok((options, payload.to_vec()));
        }
        let delta_nib = byte >> 4;
        let len_nib = byte & 0x0f;
        if delta_nib == 15 {
            return Err(CodecError::ReservedOptionDelta);
        }
        if len_nib == 15 {
            return Err(CodecError::ReservedOptionLength);
        }
        let delta = read_ext(body, &mut pos, delta_nib)?;
        let len = read_ext(body, &mut pos, len_nib)?;
        // delta <= 65804, so this cannot overflow u32.
        number += delta as u32;
        let Ok(num) = u16::try_from(number) else {
            return Err(CodecError::OptionNumberOverflow(number));
        };
        let value = body
            .get(pos..pos + len)
            .ok_or(CodecError::TruncatedOption)?;
        pos += len;
        options.push(CoapOption {
            number: num,
            value: value.to_vec(),
        });
    }
    Ok((options, Vec::new()))
}

/// The message header once enough bytes are present to know the total size.
struct Header {
    /// Bytes before the token: shim byte, extended length, code.
    head_len: usize,
    /// Token length.
    tkl: usize,
    /// Length of options + marker + payload.
    body_len: u64,
}

impl Header {
    fn total(&self) -> u64 {
        self.head_len as u64 + self.tkl as u64 + self.body_len
    }
}

/// Parses the length shim; `Ok(None)` while the length field is still incomplete.
fn parse_header(buf: &[u8]) -> Result<Option<Header>, CodecError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let tkl = usize::from(first & 0x0f);
    if tkl > MAX_TOKEN_LEN {
        return Err(CodecError::InvalidTokenLength(tkl));
    }
    let ext = match first >> 4 {
        13 => 1,
        14 => 2,
        15 => 4,
        _ => 0,
    };
    let Some(ext_bytes) = buf.get(1..1 + ext) else {
        return Ok(None);
    };
    let ext_value = ext_bytes
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let body_len = match ext {
        0 => u64::from(first >> 4),
        1 => ext_value + EXT1_BASE as u64,
        2 => ext_value + EXT2_BASE as u64,
        _ => ext_value + EXT4_BASE,
    };
    Ok(Some(Header {
        head_len: 2 + ext,
        tkl,
        body_len,
    }))
}

/// Decodes one message from the start of `buf`, without consuming anything.
///
/// Returns `Ok(None)` while the message is incomplete, `Ok(Some((frame, consumed)))` once it is
/// whole. `max_message_size` bounds the whole message (header, token, options, payload) and is
/// checked as soon as the length field has arrived.
pub fn decode_frame(
    buf: &[u8],
    max_message_size: usize,
) -> Result<Option<(Frame, usize)>, CodecError> {
    let Some(header) = parse_header(buf)? else {
        return Ok(None);
    };
    let total = header.total();
    let max = max_message_size as u64;
    if total > max {
        return Err(CodecError::MessageTooLarge { size: total, max });
    }
    // total <= max_message_size, so it fits in usize.
    let total = total as usize;
    let Some(message) = buf.get(..total) else {
        return Ok(None);
    };
    let code_at = header.head_len - 1;
    let code = message.get(code_at).copied().unwrap_or_default();
    let token_end = header.head_len + header.tkl;
    let token = message
        .get(header.head_len..token_end)
        .unwrap_or_default()
        .to_vec();
    let body = message.get(token_end..).unwrap_or_default();
    let (options, payload) = parse_body(body)?;
    let frame = Frame {
        code: Code(code),
        token,
        options,
        payload,
    };
    Ok(Some((frame, total)))
}

/// An incremental, strict decoder over a byte buffer that the caller fills from the stream.
#[derive(Clone, Debug)]
pub struct Decoder {
    max_message_size: usize,
}

impl Decoder {
    /// A decoder that refuses messages larger than `max_message_size` bytes (whole message).
    pub fn new(max_message_size: usize) -> Decoder {
        Decoder { max_message_size }
    }

    /// The current limit.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// Changes the limit (e.g. after sending a CSM that announced another one).
    pub fn set_max_message_size(&mut self, max_message_size: usize) {
        self.max_message_size = max_message_size;
    }

    /// Decodes the first complete message of `buf` and removes exactly its bytes from `buf`.
    ///
    /// `Ok(None)` means more bytes are needed (`buf` is left untouched). After an error the stream
    /// cannot be resynchronised: close the connection.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Frame>, CodecError> {
        match decode_frame(buf, self.max_message_size)? {
            Some((frame, consumed)) => {
                buf.drain(..consumed);
                Ok(Some(frame))
            }
            None => Ok(None),
        }
    }

    /// Like [`Decoder::decode`] over a slice: returns the frame and how many bytes it used.
    pub fn decode_slice(&self, buf: &[u8]) -> Result<Option<(Frame, usize)>, CodecError> {
        decode_frame(buf, self.max_message_size)
    }
}
