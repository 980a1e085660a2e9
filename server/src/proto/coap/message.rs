//! The CoAP-over-TCP message model: [`Frame`], [`Code`], [`CoapOption`], option numbers,
//! builders and helpers (the byte codec, `super::codec`, encodes and decodes it).

use std::fmt;

/// The Max-Message-Size every peer may assume before it has seen a CSM (RFC 8323 §5.3.1).
pub const BASE_MAX_MESSAGE_SIZE: usize = 1152;

/// The longest token a CoAP message may carry (RFC 8323 §3.2: TKL 0..=8).
pub const MAX_TOKEN_LEN: usize = 8;

/// The shortest frame the server sends: iotivity-lite's TLS/TCP receive path reads 6 bytes before
/// it knows a message's length, so a shorter frame is misread (it waits for bytes of the next one).
pub const MIN_FRAME_LEN: usize = 6;

/// The token length of the server's CSM (8 random bytes, as go-coap sends): with it the shortest
/// CSM is 10 bytes, past [`MIN_FRAME_LEN`].
pub const CSM_TOKEN_LEN: usize = 8;

/// A CoAP code: a 3-bit class and a 5-bit detail packed in one byte, written "c.dd".
/// The default is [`Code::EMPTY`] (0.00).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Code(pub u8);

impl Code {
    /// 0.00: an empty message (meaningless on TCP, but representable).
    pub const EMPTY: Code = Code::new(0, 0);
    /// 0.01 GET.
    pub const GET: Code = Code::new(0, 1);
    /// 0.02 POST.
    pub const POST: Code = Code::new(0, 2);
    /// 0.03 PUT.
    pub const PUT: Code = Code::new(0, 3);
    /// 0.04 DELETE.
    pub const DELETE: Code = Code::new(0, 4);
    /// 2.01 Created.
    pub const CREATED: Code = Code::new(2, 1);
    /// 2.02 Deleted.
    pub const DELETED: Code = Code::new(2, 2);
    /// 2.03 Valid.
    pub const VALID: Code = Code::new(2, 3);
    /// 2.04 Changed.
    pub const CHANGED: Code = Code::new(2, 4);
    /// 2.05 Content.
    pub const CONTENT: Code = Code::new(2, 5);
    /// 4.00 Bad Request.
    pub const BAD_REQUEST: Code = Code::new(4, 0);
    /// 4.01 Unauthorized.
    pub const UNAUTHORIZED: Code = Code::new(4, 1);
    /// 4.02 Bad Option.
    pub const BAD_OPTION: Code = Code::new(4, 2);
    /// 4.03 Forbidden.
    pub const FORBIDDEN: Code = Code::new(4, 3);
    /// 4.04 Not Found.
    pub const NOT_FOUND: Code = Code::new(4, 4);
    /// 4.05 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: Code = Code::new(4, 5);
    /// 4.06 Not Acceptable.
    pub const NOT_ACCEPTABLE: Code = Code::new(4, 6);
    /// 4.13 Request Entity Too Large.
    pub const REQUEST_ENTITY_TOO_LARGE: Code = Code::new(4, 13);
    /// 4.15 Unsupported Content-Format.
    pub const UNSUPPORTED_CONTENT_FORMAT: Code = Code::new(4, 15);
    /// 5.00 Internal Server Error.
    pub const INTERNAL: Code = Code::new(5, 0);
    /// 5.03 Service Unavailable (transient; carries Max-Age when we are overloaded).
    pub const SERVICE_UNAVAILABLE: Code = Code::new(5, 3);
    /// 5.04 Gateway Timeout (transient).
    pub const GATEWAY_TIMEOUT: Code = Code::new(5, 4);
    /// 7.01 CSM (Capabilities and Settings Message).
    pub const CSM: Code = Code::new(7, 1);
    /// 7.02 Ping.
    pub const PING: Code = Code::new(7, 2);
    /// 7.03 Pong.
    pub const PONG: Code = Code::new(7, 3);
    /// 7.04 Release.
    pub const RELEASE: Code = Code::new(7, 4);
    /// 7.05 Abort.
    pub const ABORT: Code = Code::new(7, 5);

    /// Packs a class (0..=7) and a detail (0..=31); out-of-range bits are masked off.
    pub const fn new(class: u8, detail: u8) -> Code {
        Code(((class & 0x07) << 5) | (detail & 0x1f))
    }

    /// The class: 0 request, 2 success, 4 client error, 5 server error, 7 signalling.
    pub const fn class(self) -> u8 {
        self.0 >> 5
    }

    /// The detail (0..=31).
    pub const fn detail(self) -> u8 {
        self.0 & 0x1f
    }

    /// A request method (class 0, detail ≠ 0).
    pub const fn is_request(self) -> bool {
        self.class() == 0 && self.detail() != 0
    }

    /// A response (class 2, 4 or 5).
    pub const fn is_response(self) -> bool {
        matches!(self.class(), 2..=5)
    }

    /// An error response (class 4 or 5).
    pub const fn is_error(self) -> bool {
        matches!(self.class(), 4 | 5)
    }

    /// A signalling message (class 7: CSM, Ping, Pong, Release, Abort).
    pub const fn is_signal(self) -> bool {
        self.class() == 7
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

/// Option numbers of requests and responses (RFC 7252 §5.10, RFC 7641, OCF).
pub mod option {
    /// If-Match.
    pub const IF_MATCH: u16 = 1;
    /// Uri-Host.
    pub const URI_HOST: u16 = 3;
    /// ETag.
    pub const ETAG: u16 = 4;
    /// If-None-Match.
    pub const IF_NONE_MATCH: u16 = 5;
    /// Observe (RFC 7641).
    pub const OBSERVE: u16 = 6;
    /// Uri-Port.
    pub const URI_PORT: u16 = 7;
    /// Location-Path.
    pub const LOCATION_PATH: u16 = 8;
    /// Uri-Path: one option per path segment.
    pub const URI_PATH: u16 = 11;
    /// Content-Format.
    pub const CONTENT_FORMAT: u16 = 12;
    /// Max-Age (seconds).
    pub const MAX_AGE: u16 = 14;
    /// Uri-Query: one option per `key=value` argument.
    pub const URI_QUERY: u16 = 15;
    /// Accept.
    pub const ACCEPT: u16 = 17;
    /// Location-Query.
    pub const LOCATION_QUERY: u16 = 20;
    /// Size2.
    pub const SIZE2: u16 = 28;
    /// Proxy-Uri.
    pub const PROXY_URI: u16 = 35;
    /// Proxy-Scheme.
    pub const PROXY_SCHEME: u16 = 39;
    /// Size1.
    pub const SIZE1: u16 = 60;
    /// OCF-Accept-Content-Format-Version (iotivity-lite sends 2048 = OCF 1.0).
    pub const OCF_ACCEPT_CONTENT_FORMAT_VERSION: u16 = 2049;
    /// OCF-Content-Format-Version (iotivity-lite sends 2048 = OCF 1.0).
    pub const OCF_CONTENT_FORMAT_VERSION: u16 = 2053;
}

/// Option numbers of signalling messages (RFC 8323 §5); their meaning depends on the 7.xx code.
pub mod signal_option {
    /// CSM: Max-Message-Size (uint, bytes).
    pub const MAX_MESSAGE_SIZE: u16 = 2;
    /// CSM: Block-Wise-Transfer (empty; presence means supported).
    pub const BLOCK_WISE_TRANSFER: u16 = 4;
    /// Ping / Pong: Custody (empty).
    pub const CUSTODY: u16 = 2;
    /// Release: Alternative-Address (string).
    pub const ALTERNATIVE_ADDRESS: u16 = 2;
    /// Release: Hold-Off (uint, seconds).
    pub const HOLD_OFF: u16 = 4;
    /// Abort: Bad-CSM-Option (uint, the offending option number).
    pub const BAD_CSM_OPTION: u16 = 2;
}

/// Whether an option number is critical (odd numbers, RFC 7252 §5.4.6): a receiver that does not
/// understand a critical option must reject the message (4.02 Bad Option).
pub const fn is_critical(number: u16) -> bool {
    number & 1 == 1
}

/// Encodes a uint option value: minimal big-endian, 0 is the empty string (RFC 7252 §3.2).
pub fn encode_uint(value: u64) -> Vec<u8> {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    bytes.get(skip..).unwrap_or_default().to_vec()
}

/// Decodes a uint option value. Leading zero bytes are tolerated; `None` if it overflows `u64`.
pub fn decode_uint(bytes: &[u8]) -> Option<u64> {
    bytes.iter().try_fold(0u64, |acc, b| {
        acc.checked_mul(256)?.checked_add(u64::from(*b))
    })
}

/// One option instance: its number and raw value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CoapOption {
    /// The option number.
    pub number: u16,
    /// The raw value (uint, string or opaque depending on the option).
    pub value: Vec<u8>,
}

/// One CoAP-over-TCP message.
///
/// `options` is kept sorted by number (stable: repeated options keep their order) by the helpers;
/// the encoder tolerates an unsorted vector by sorting a view of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Frame {
    /// Method, response or signalling code.
    pub code: Code,
    /// The token (0..=8 bytes); a response echoes its request's token.
    pub token: Vec<u8>,
    /// Options, sorted by number.
    pub options: Vec<CoapOption>,
    /// The payload (empty means no payload marker on the wire).
    pub payload: Vec<u8>,
}

/// The value reported by [`Frame::content_format`] / [`Frame::accept`] for a present but malformed
/// (longer than 2 bytes) value: it is never a supported format, so callers refuse the request
/// instead of silently falling back to their default.
pub const MALFORMED_FORMAT: u16 = u16::MAX;

impl Frame {
    /// A message with `code` and nothing else.
    pub fn new(code: Code) -> Frame {
        Frame {
            code,
            ..Frame::default()
        }
    }

    /// A request: `code`, `token`, and one Uri-Path option per non-empty segment of `path`.
    pub fn request(code: Code, token: &[u8], path: &str) -> Frame {
        let mut frame = Frame {
            code,
            token: token.to_vec(),
            ..Frame::default()
        };
        frame.set_uri_path(path);
        frame
    }

    /// A response with `code` that echoes `request_token`.
    pub fn response(code: Code, request_token: &[u8]) -> Frame {
        Frame {
            code,
            token: request_token.to_vec(),
            ..Frame::default()
        }
    }

    /// A CSM (7.01), empty token; with `Some(n)` it carries Max-Message-Size = n, with `None` it is
    /// the empty CSM `[0x00, 0xE1]`.
    pub fn csm(max_message_size: Option<u32>) -> Frame {
        let frame = Frame::new(Code::CSM);
        match max_message_size {
            Some(size) => frame.with_uint_option(signal_option::MAX_MESSAGE_SIZE, u64::from(size)),
            None => frame,
        }
    }

    /// A CSM (7.01) like [`Frame::csm`] carrying `token` (the server sends an 8-byte random one).
    pub fn csm_with_token(token: &[u8], max_message_size: Option<u32>) -> Frame {
        Frame {
            token: token.to_vec(),
            ..Frame::csm(max_message_size)
        }
    }

    /// A Ping (7.02) with `token`.
    pub fn ping(token: &[u8]) -> Frame {
        Frame::response(Code::PING, token)
    }

    /// A Pong (7.03) echoing the Ping's `token`.
    pub fn pong(token: &[u8]) -> Frame {
        Frame::response(Code::PONG, token)
    }

    /// An Abort (7.05) with a UTF-8 diagnostic payload.
    pub fn abort(diagnostic: &str) -> Frame {
        Frame::new(Code::ABORT).with_payload(diagnostic.as_bytes())
    }

    /// This frame with a diagnostic payload (its code, e.g. `"7.03"`) when it has no payload and
    /// would encode to fewer than `min_len` bytes. Only signalling messages and error responses
    /// may carry a diagnostic payload (RFC 8323 §5, RFC 7252 §5.5.2); any other frame is returned
    /// unchanged. Frames that already reach `min_len` are returned unchanged.
    pub fn padded(self, min_len: usize) -> Frame {
        let short =
            self.payload.is_empty() && self.to_bytes().is_ok_and(|bytes| bytes.len() < min_len);
        if short && (self.code.is_signal() || self.code.is_error()) {
            let diagnostic = self.code.to_string();
            self.with_payload(diagnostic.into_bytes())
        } else {
            self
        }
    }

    /// Replaces the payload.
    pub fn with_payload(mut self, payload: impl Into<Vec<u8>>) -> Frame {
        self.payload = payload.into();
        self
    }

    /// Sets Content-Format.
    pub fn with_content_format(self, format: u16) -> Frame {
        self.with_uint_option(option::CONTENT_FORMAT, u64::from(format))
    }

    /// Sets Accept.
    pub fn with_accept(self, format: u16) -> Frame {
        self.with_uint_option(option::ACCEPT, u64::from(format))
    }

    /// Appends an option instance (keeping options sorted).
    pub fn with_option(mut self, number: u16, value: impl Into<Vec<u8>>) -> Frame {
        self.add_option(number, value);
        self
    }

    /// Replaces every instance of a uint option with one carrying `value`.
    pub fn with_uint_option(mut self, number: u16, value: u64) -> Frame {
        self.set_uint_option(number, value);
        self
    }

    /// Appends an option instance after any existing instances with the same number.
    pub fn add_option(&mut self, number: u16, value: impl Into<Vec<u8>>) {
        let at = self.options.partition_point(|o| o.number <= number);
        self.options.insert(
            at,
            CoapOption {
                number,
                value: value.into(),
            },
        );
    }

    /// Replaces every instance of option `number` with one carrying `value`.
    pub fn set_option(&mut self, number: u16, value: impl Into<Vec<u8>>) {
        self.remove_option(number);
        self.add_option(number, value);
    }

    /// Removes every instance of option `number`.
    pub fn remove_option(&mut self, number: u16) {
        self.options.retain(|o| o.number != number);
    }

    /// Replaces every instance of option `number` with one uint value (minimal encoding).
    pub fn set_uint_option(&mut self, number: u16, value: u64) {
        self.set_option(number, encode_uint(value));
    }

    /// The value of the first instance of option `number`.
    pub fn option(&self, number: u16) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|o| o.number == number)
            .map(|o| o.value.as_slice())
    }

    /// The values of every instance of option `number`, in order.
    pub fn options_of(&self, number: u16) -> impl Iterator<Item = &[u8]> + '_ {
        self.options
            .iter()
            .filter(move |o| o.number == number)
            .map(|o| o.value.as_slice())
    }

    /// Whether option `number` is present.
    pub fn has_option(&self, number: u16) -> bool {
        self.options.iter().any(|o| o.number == number)
    }

    /// The first instance of option `number` decoded as a uint; `None` if absent or overflowing.
    pub fn uint_option(&self, number: u16) -> Option<u64> {
        self.option(number).and_then(decode_uint)
    }

    /// The request path: `"/" + segments.join("/")` of the Uri-Path options (`"/"` if none).
    /// Non-UTF-8 bytes are replaced with U+FFFD, which never matches a real resource.
    pub fn uri_path(&self) -> String {
        let mut path = String::new();
        for segment in self.options_of(option::URI_PATH) {
            path.push('/');
            path.push_str(&String::from_utf8_lossy(segment));
        }
        if path.is_empty() {
            path.push('/');
        }
        path
    }

    /// Replaces the Uri-Path options with the non-empty `/`-separated segments of `path`.
    pub fn set_uri_path(&mut self, path: &str) {
        self.remove_option(option::URI_PATH);
        for segment in path.split('/').filter(|s| !s.is_empty()) {
            self.add_option(option::URI_PATH, segment.as_bytes());
        }
    }

    /// The Uri-Query options (`key=value` each), lossily decoded as UTF-8.
    pub fn uri_queries(&self) -> Vec<String> {
        self.options_of(option::URI_QUERY)
            .map(|q| String::from_utf8_lossy(q).into_owned())
            .collect()
    }

    /// Appends one Uri-Query option.
    pub fn add_uri_query(&mut self, query: &str) {
        self.add_option(option::URI_QUERY, query.as_bytes());
    }

    /// Content-Format: `None` if absent, [`MALFORMED_FORMAT`] if the value does not fit 16 bits.
    pub fn content_format(&self) -> Option<u16> {
        self.format_option(option::CONTENT_FORMAT)
    }

    /// Accept: `None` if absent, [`MALFORMED_FORMAT`] if the value does not fit 16 bits.
    pub fn accept(&self) -> Option<u16> {
        self.format_option(option::ACCEPT)
    }

    fn format_option(&self, number: u16) -> Option<u16> {
        self.option(number).map(|value| {
            decode_uint(value)
                .and_then(|v| u16::try_from(v).ok())
                .unwrap_or(MALFORMED_FORMAT)
        })
    }

    /// For a CSM: the peer's Max-Message-Size, if it announced one (saturating at `u32::MAX`).
    pub fn csm_max_message_size(&self) -> Option<u32> {
        if self.code != Code::CSM {
            return None;
        }
        self.option(signal_option::MAX_MESSAGE_SIZE)
            .map(|v| decode_uint(v).map_or(u32::MAX, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// For a CSM: whether the peer announced Block-Wise-Transfer support.
    pub fn csm_block_wise_transfer(&self) -> bool {
        self.code == Code::CSM && self.has_option(signal_option::BLOCK_WISE_TRANSFER)
    }
}
