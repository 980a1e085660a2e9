//! Unit tests of the CoAP-over-TCP model and codec.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

const BIG: usize = 1 << 20;

fn decode_one(bytes: &[u8]) -> Result<Option<Frame>, CodecError> {
    let mut buf = bytes.to_vec();
    Decoder::new(BIG).decode(&mut buf)
}

fn round_trip(frame: &Frame) -> Vec<u8> {
    let bytes = frame.to_bytes().unwrap();
    let mut buf = bytes.clone();
    let decoded = Decoder::new(BIG).decode(&mut buf).unwrap().unwrap();
    assert_eq!(&decoded, frame);
    assert!(buf.is_empty(), "decoder must consume exactly one frame");
    bytes
}

#[test]
fn code_class_detail_display() {
    assert_eq!(Code::CONTENT.class(), 2);
    assert_eq!(Code::CONTENT.detail(), 5);
    assert_eq!(Code::CONTENT.to_string(), "2.05");
    assert_eq!(Code::REQUEST_ENTITY_TOO_LARGE.to_string(), "4.13");
    assert_eq!(Code::GET.to_string(), "0.01");
    assert_eq!(Code::CSM.0, 0xE1);
    assert_eq!(Code::PING.0, 0xE2);
    assert_eq!(Code::ABORT.0, 0xE5);
    assert_eq!(Code::SERVICE_UNAVAILABLE.0, 0xA3);
    assert!(Code::POST.is_request());
    assert!(!Code::EMPTY.is_request());
    assert!(Code::CHANGED.is_response() && !Code::CHANGED.is_error());
    assert!(Code::GATEWAY_TIMEOUT.is_error());
    assert!(Code::PONG.is_signal() && !Code::PONG.is_response());
}

#[test]
fn uint_options_and_criticality() {
    assert_eq!(encode_uint(0), Vec::<u8>::new());
    assert_eq!(encode_uint(1), vec![1]);
    assert_eq!(encode_uint(10000), vec![0x27, 0x10]);
    assert_eq!(encode_uint(0x0100_0000), vec![1, 0, 0, 0]);
    assert_eq!(decode_uint(&[]), Some(0));
    assert_eq!(decode_uint(&[0, 0, 0x27, 0x10]), Some(10000));
    assert_eq!(decode_uint(&[1; 9]), None);
    for v in [0u64, 1, 255, 256, 65535, 1 << 40, u64::MAX] {
        assert_eq!(decode_uint(&encode_uint(v)), Some(v));
    }
    assert!(is_critical(option::URI_PATH));
    assert!(is_critical(option::ACCEPT));
    assert!(is_critical(option::OCF_ACCEPT_CONTENT_FORMAT_VERSION));
    assert!(!is_critical(option::CONTENT_FORMAT));
    assert!(is_critical(option::OCF_CONTENT_FORMAT_VERSION));
    assert!(!is_critical(option::MAX_AGE));
}

#[test]
fn frame_helpers() {
    let mut f = Frame::request(Code::GET, &[1, 2], "/api/v1//provisioning/acls/");
    assert_eq!(f.uri_path(), "/api/v1/provisioning/acls");
    assert_eq!(f.options_of(option::URI_PATH).count(), 4);
    f.add_uri_query("if=oic.if.ll");
    f.add_uri_query("rt=oic.wk.d");
    f.set_uri_path("oic/res");
    assert_eq!(f.uri_path(), "/oic/res");
    assert_eq!(f.uri_queries(), vec!["if=oic.if.ll", "rt=oic.wk.d"]);
    assert_eq!(Frame::new(Code::GET).uri_path(), "/");
    assert_eq!(f.content_format(), None);
    assert_eq!(f.accept(), None);

    let f = f
        .with_accept(10000)
        .with_content_format(60)
        .with_content_format(50);
    assert_eq!(f.accept(), Some(10000));
    assert_eq!(f.content_format(), Some(50));
    assert_eq!(f.options_of(option::CONTENT_FORMAT).count(), 1);
    let numbers: Vec<u16> = f.options.iter().map(|o| o.number).collect();
    assert_eq!(numbers, vec![11, 11, 12, 15, 15, 17]);

    let bad = Frame::new(Code::GET).with_option(option::ACCEPT, vec![1, 0, 0]);
    assert_eq!(bad.accept(), Some(MALFORMED_FORMAT));

    let resp = Frame::response(Code::CONTENT, &[9, 8, 7]).with_payload(b"x".to_vec());
    assert_eq!(resp.token, vec![9, 8, 7]);
    assert_eq!(resp.payload, b"x");
    assert_eq!(Frame::pong(&[5]).token, vec![5]);
    assert_eq!(Frame::pong(&[5]).code, Code::PONG);
}

#[test]
fn rfc_vectors() {
    // Empty CSM (RFC 8323 §5.3: a CSM with no options).
    let csm = Frame::csm(None);
    assert_eq!(csm.to_bytes().unwrap(), vec![0x00, 0xE1]);
    assert_eq!(decode_one(&[0x00, 0xE1]).unwrap(), Some(csm));

    // CSM with Max-Message-Size 1152 (option 2, 2-byte uint).
    let csm = Frame::csm(Some(1152));
    let bytes = vec![0x30, 0xE1, 0x22, 0x04, 0x80];
    assert_eq!(csm.to_bytes().unwrap(), bytes);
    let decoded = decode_one(&bytes).unwrap().unwrap();
    assert_eq!(decoded.csm_max_message_size(), Some(1152));
    assert!(!decoded.csm_block_wise_transfer());
    let bw = Frame::csm(None).with_option(signal_option::BLOCK_WISE_TRANSFER, Vec::new());
    assert_eq!(bw.to_bytes().unwrap(), vec![0x10, 0xE1, 0x40]);
    assert!(bw.csm_block_wise_transfer());

    // Ping with a 1-byte token, and its Pong.
    assert_eq!(
        Frame::ping(&[0x42]).to_bytes().unwrap(),
        vec![0x01, 0xE2, 0x42]
    );
    assert_eq!(
        Frame::pong(&[0x42]).to_bytes().unwrap(),
        vec![0x01, 0xE3, 0x42]
    );

    // GET /x.plgd.dev/time with an 8-byte token: body 16 bytes -> Len 13 + 1 byte (3).
    let token = [1, 2, 3, 4, 5, 6, 7, 8];
    let mut expected = vec![0xD8, 0x03, 0x01];
    expected.extend_from_slice(&token);
    expected.push(0xBA); // delta 11 (Uri-Path), length 10
    expected.extend_from_slice(b"x.plgd.dev");
    expected.push(0x04); // delta 0, length 4
    expected.extend_from_slice(b"time");
    let get = Frame::request(Code::GET, &token, "/x.plgd.dev/time");
    assert_eq!(round_trip(&get), expected);

    // Accept 10000 (delta 17 -> 13+4) and OCF option 2049 = 2048 (delta 2032 -> 14 + 1763).
    let f = Frame::new(Code::GET)
        .with_accept(10000)
        .with_uint_option(option::OCF_ACCEPT_CONTENT_FORMAT_VERSION, 2048);
    let bytes = round_trip(&f);
    assert_eq!(
        bytes,
        vec![0x90, 0x01, 0xD2, 0x04, 0x27, 0x10, 0xE2, 0x06, 0xE3, 0x08, 0x00]
    );

    // 2.05 with a 1-byte token and payload "hi": Len 3 = marker + 2.
    let resp = Frame::response(Code::CONTENT, &[0x77]).with_payload(b"hi".to_vec());
    assert_eq!(round_trip(&resp), vec![0x31, 0x45, 0x77, 0xFF, b'h', b'i']);
}

#[test]
fn length_shim_size_classes() {
    // (payload length, expected Len nibble, extended length bytes). Body = payload + marker.
    let cases: [(usize, u8, &[u8]); 11] = [
        (0, 0, &[]),
        (11, 12, &[]),
        (12, 13, &[0]),
        (13, 13, &[1]),
        (267, 13, &[255]),
        (268, 14, &[0, 0]),
        (269, 14, &[0, 1]),
        (65803, 14, &[0xFF, 0xFF]),
        (65804, 15, &[0, 0, 0, 0]),
        (65805, 15, &[0, 0, 0, 1]),
        (200_000, 15, &[0, 2, 0x0C, 0x34]),
    ];
    for (len, nib, ext) in cases {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let frame = Frame::response(Code::CONTENT, &[1, 2, 3]).with_payload(payload);
        let bytes = round_trip(&frame);
        assert_eq!(bytes[0], (nib << 4) | 3, "payload {len}");
        assert_eq!(&bytes[1..1 + ext.len()], ext, "payload {len}");
        assert_eq!(bytes[1 + ext.len()], Code::CONTENT.0);
        let overhead = 1 + ext.len() + 1 + 3 + usize::from(len > 0);
        assert_eq!(bytes.len(), overhead + len);
    }
}

#[test]
fn option_extended_forms() {
    let f = Frame::new(Code::POST)
        .with_option(1, Vec::new())
        .with_option(12, vec![0xAA; 12])
        .with_option(25, vec![0xBB; 13])
        .with_option(293, vec![0xCC; 268])
        .with_option(562, vec![0xDD; 269])
        .with_option(2049, vec![0x08, 0x00])
        .with_option(2049, vec![0x09])
        .with_option(65535, vec![0xEE; 65804])
        .with_payload(vec![0x5A; 3]);
    let bytes = round_trip(&f);
    // 4-byte length shim + code = 6 header bytes; first option: delta 1, length 0.
    assert_eq!(bytes[0], 0xF0);
    assert_eq!(bytes[6], 0x10);
    // Second option: delta 11, length 12 -> plain nibbles.
    assert_eq!(bytes[7], 0xBC);
    // Third option: delta 13 -> 13+0, length 13 -> 13+0.
    assert_eq!(&bytes[20..23], &[0xDD, 0x00, 0x00]);
    // Fourth: delta 268 -> 13+255, length 268 -> 13+255.
    assert_eq!(&bytes[36..39], &[0xDD, 0xFF, 0xFF]);
    // Fifth: delta 269 -> 14+0x0000, length 269 -> 14+0x0000.
    assert_eq!(&bytes[307..312], &[0xEE, 0, 0, 0, 0]);
    // The largest number and the largest value length round-trip (checked by round_trip).
    let too_long = Frame::new(Code::POST).with_option(4, vec![0; 65805]);
    assert_eq!(too_long.to_bytes(), Err(CodecError::OptionTooLong(65805)));
}

#[test]
fn unsorted_options_are_encoded_sorted() {
    let mut f = Frame::new(Code::GET);
    f.options = vec![
        CoapOption {
            number: 17,
            value: vec![60],
        },
        CoapOption {
            number: 11,
            value: b"a".to_vec(),
        },
        CoapOption {
            number: 11,
            value: b"b".to_vec(),
        },
    ];
    let decoded = decode_one(&f.to_bytes().unwrap()).unwrap().unwrap();
    assert_eq!(decoded.uri_path(), "/a/b");
    assert_eq!(decoded.accept(), Some(60));
}

#[test]
fn byte_by_byte_feeding() {
    let frame = Frame::request(
        Code::POST,
        &[1, 2, 3, 4, 5, 6, 7, 8],
        "/api/v1/provisioning/credentials",
    )
    .with_content_format(10000)
    .with_accept(10000)
    .with_payload(vec![0xA2; 300]);
    let bytes = frame.to_bytes().unwrap();
    let mut decoder = Decoder::new(BIG);
    let mut buf = Vec::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.push(*b);
        let got = decoder.decode(&mut buf).unwrap();
        if i + 1 < bytes.len() {
            assert_eq!(got, None, "complete too early at byte {i}");
            assert_eq!(buf.len(), i + 1, "must not consume a partial frame");
        } else {
            assert_eq!(got, Some(frame.clone()));
            assert!(buf.is_empty());
        }
    }
}

#[test]
fn concatenated_frames() {
    let a = Frame::ping(&[7]);
    let b = Frame::request(Code::GET, &[1; 8], "/x.plgd.dev/time").with_accept(10000);
    let c = Frame::response(Code::CHANGED, &[2; 4]).with_payload(vec![1; 40]);
    let mut buf = a.to_bytes().unwrap();
    b.encode(&mut buf).unwrap();
    let c_bytes = c.to_bytes().unwrap();
    buf.extend_from_slice(&c_bytes[..5]);
    let mut d = Decoder::new(BIG);
    assert_eq!(d.decode(&mut buf).unwrap(), Some(a));
    assert_eq!(d.decode(&mut buf).unwrap(), Some(b));
    assert_eq!(d.decode(&mut buf).unwrap(), None);
    assert_eq!(buf, &c_bytes[..5]);
    buf.extend_from_slice(&c_bytes[5..]);
    let (frame, used) = d.decode_slice(&buf).unwrap().unwrap();
    assert_eq!((frame, used), (c, c_bytes.len()));
    assert_eq!(
        d.decode(&mut buf).unwrap().map(|f| f.code),
        Some(Code::CHANGED)
    );
    assert!(buf.is_empty());
    assert_eq!(d.decode(&mut buf).unwrap(), None);
}

#[test]
fn max_size_checked_on_header_alone() {
    let mut d = Decoder::new(BASE_MAX_MESSAGE_SIZE);
    assert_eq!(d.max_message_size(), 1152);
    // 4-byte extended length: ~16 MiB declared; only the shim has arrived.
    let mut buf = vec![0xF8, 0x00, 0xFF, 0x00, 0x00];
    assert_eq!(
        d.decode(&mut buf),
        Err(CodecError::MessageTooLarge {
            size: 2 + 4 + 8 + 0x00FF_0000 + 65805,
            max: 1152
        })
    );
    // Incomplete extended length: still waiting, no verdict yet.
    let mut buf = vec![0xF0, 0x00];
    assert_eq!(d.decode(&mut buf), Ok(None));
    // 2-byte form, exactly one byte over the limit: refused before the body arrives.
    let mut small = Decoder::new(300);
    let mut buf = vec![0xE0, 0x00, 0x1E]; // body 269 + 30 = 299; with shim and code: 303
    assert!(matches!(
        small.decode(&mut buf),
        Err(CodecError::MessageTooLarge {
            size: 303,
            max: 300
        })
    ));
    // Exactly at the limit is accepted.
    let frame = Frame::new(Code::POST).with_payload(vec![0; 300 - 4 - 1]);
    let bytes = frame.to_bytes().unwrap();
    assert_eq!(bytes.len(), 300);
    small.set_max_message_size(300);
    assert_eq!(decode_frame(&bytes, 300).unwrap(), Some((frame, 300)));
    assert!(decode_frame(&bytes, 299).is_err());
}

#[test]
fn strict_errors() {
    // TKL 9..=15 is reserved, detected from the first byte.
    for tkl in 9..=15u8 {
        assert_eq!(
            decode_one(&[tkl]),
            Err(CodecError::InvalidTokenLength(usize::from(tkl)))
        );
    }
    assert_eq!(
        Frame::ping(&[0; 9]).to_bytes(),
        Err(CodecError::InvalidTokenLength(9))
    );
    // Delta nibble 15 (not the marker), length nibble 15.
    assert_eq!(
        decode_one(&[0x10, 0x01, 0xF0]),
        Err(CodecError::ReservedOptionDelta)
    );
    assert_eq!(
        decode_one(&[0x10, 0x01, 0xFE]),
        Err(CodecError::ReservedOptionDelta)
    );
    assert_eq!(
        decode_one(&[0x10, 0x01, 0x0F]),
        Err(CodecError::ReservedOptionLength)
    );
    assert_eq!(
        decode_one(&[0x20, 0x01, 0xBF, 0x00]),
        Err(CodecError::ReservedOptionLength)
    );
    // Option number overflow: one delta of 65804, or a running sum past 65535.
    assert_eq!(
        decode_one(&[0x30, 0x01, 0xE0, 0xFF, 0xFF]),
        Err(CodecError::OptionNumberOverflow(65804))
    );
    let d1 = (65000u16 - 269).to_be_bytes();
    let d2 = (1000u16 - 269).to_be_bytes();
    assert_eq!(
        decode_one(&[0x60, 0x01, 0xE0, d1[0], d1[1], 0xE0, d2[0], d2[1]]),
        Err(CodecError::OptionNumberOverflow(66000))
    );
    // Payload marker with nothing after it.
    assert_eq!(
        decode_one(&[0x10, 0x45, 0xFF]),
        Err(CodecError::EmptyPayload)
    );
    assert_eq!(
        decode_one(&[0x21, 0x45, 0x07, 0x60, 0xFF]),
        Err(CodecError::EmptyPayload)
    );
    // Truncated inside the declared length: value, 1-byte extension, 2-byte extension.
    assert_eq!(
        decode_one(&[0x20, 0x01, 0x03, 0x61]),
        Err(CodecError::TruncatedOption)
    );
    assert_eq!(
        decode_one(&[0x10, 0x01, 0xD0]),
        Err(CodecError::TruncatedOption)
    );
    assert_eq!(
        decode_one(&[0x20, 0x01, 0x0E, 0x00]),
        Err(CodecError::TruncatedOption)
    );
    assert_eq!(
        decode_one(&[0x20, 0x01, 0xD1, 0x00]),
        Err(CodecError::TruncatedOption)
    );
    // ... but bytes after the declared length belong to the next frame, not to this option.
    let mut buf = vec![0x10, 0x01, 0x03, b'a', b'b', b'c'];
    assert_eq!(
        Decoder::new(BIG).decode(&mut buf),
        Err(CodecError::TruncatedOption)
    );
    // Errors display as text.
    assert!(CodecError::EmptyPayload.to_string().contains("payload"));
}

/// xorshift64: deterministic pseudo-random bytes without a dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

/// Decodes everything in `bytes`; any frame that decodes re-encodes to exactly its bytes (the
/// TCP encoding is canonical), and nothing panics.
fn exercise(bytes: &[u8], max: usize) -> usize {
    let mut buf = bytes.to_vec();
    let mut decoder = Decoder::new(max);
    let mut frames = 0;
    loop {
        let before = buf.clone();
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                let used = before.len() - buf.len();
                assert!(used > 0);
                assert_eq!(frame.to_bytes().unwrap(), before[..used]);
                frames += 1;
            }
            Ok(None) | Err(_) => return frames,
        }
    }
}

#[test]
fn garbage_never_panics() {
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let mut decoded = 0;
    for _ in 0..4000 {
        let len = rng.below(48);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        decoded += exercise(&bytes, 1 + rng.below(2000));
    }
    // Mutations of valid frames reach deeper into the option parser.
    let seed = Frame::request(Code::POST, &[1, 2, 3, 4], "/api/v1/provisioning/tpm/attest")
        .with_content_format(10000)
        .with_uint_option(option::OCF_CONTENT_FORMAT_VERSION, 2048)
        .with_payload(vec![0xA1, 0x61, 0x61, 0x01])
        .to_bytes()
        .unwrap();
    for _ in 0..4000 {
        let mut bytes = seed.clone();
        for _ in 0..=rng.below(4) {
            let at = rng.below(bytes.len() as u64);
            bytes[at] = rng.next() as u8;
        }
        let cut = rng.below(bytes.len() as u64 + 1);
        decoded += exercise(&bytes[..cut], BIG);
        decoded += exercise(&bytes, BIG);
    }
    assert!(decoded > 0, "some garbage must decode as frames");
}

#[test]
fn short_signals_and_errors_are_padded_to_the_minimum() {
    // An empty-token Pong is 2 bytes; padded, it keeps its code and (empty) token.
    let pong = Frame::pong(&[]).padded(MIN_FRAME_LEN);
    let bytes = pong.to_bytes().unwrap();
    assert!(bytes.len() >= MIN_FRAME_LEN, "{bytes:?}");
    assert_eq!(decode_one(&bytes).unwrap().unwrap().code, Code::PONG);
    assert!(pong.token.is_empty());
    assert_eq!(pong.payload, b"7.03");
    // A bare Abort and an error without diagnostic get one too.
    assert!(
        Frame::abort("")
            .padded(MIN_FRAME_LEN)
            .to_bytes()
            .unwrap()
            .len()
            >= MIN_FRAME_LEN
    );
    let error = Frame::response(Code::NOT_FOUND, &[]).padded(MIN_FRAME_LEN);
    assert_eq!(error.payload, b"4.04");
    // Long enough frames, and frames that may not carry a diagnostic, are unchanged.
    let ping = Frame::ping(&[1, 2, 3, 4]);
    assert_eq!(ping.clone().padded(MIN_FRAME_LEN), ping);
    let ok = Frame::response(Code::CHANGED, &[]);
    assert_eq!(ok.clone().padded(MIN_FRAME_LEN), ok);
}

#[test]
fn csm_with_a_token_is_past_the_minimum() {
    let csm = Frame::csm_with_token(&[9; CSM_TOKEN_LEN], None);
    let bytes = csm.to_bytes().unwrap();
    assert_eq!(bytes.len(), 2 + CSM_TOKEN_LEN);
    assert_eq!(bytes[0], 0x08);
    assert_eq!(decode_one(&bytes).unwrap(), Some(csm));
    let sized = Frame::csm_with_token(&[9; CSM_TOKEN_LEN], Some(16_384));
    assert_eq!(sized.csm_max_message_size(), Some(16_384));
}
