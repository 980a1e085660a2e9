//! RFC 8323 decoder on arbitrary bytes: never panics; feeding the same bytes in arbitrary pieces
//! yields the same frames and the same outcome as decoding them at once; every decoded frame
//! re-encodes into bytes that decode to the same frame.
#![no_main]

use dps_server::proto::coap::{decode_frame, CodecError, Decoder, Frame};
use libfuzzer_sys::fuzz_target;

/// The server's default `[limits] max_message_size`, and a small one so the limit check is hit.
const LIMITS: [usize; 2] = [16 * 1024, 64];

/// Longest prefix decoded piecewise: `Decoder::decode` drains its buffer per frame, so thousands
/// of tiny frames in one large input make this harness (not the server, whose buffer holds one
/// 2 KiB read plus at most one partial message) quadratic.
const PIECEWISE_MAX: usize = 4096;

/// Decode `stream` at once: the frames, and the outcome at the end (bytes left over, or the error).
fn at_once(stream: &[u8], limit: usize) -> (Vec<Frame>, Result<usize, CodecError>) {
    let mut frames = Vec::new();
    let mut rest = stream;
    loop {
        match decode_frame(rest, limit) {
            Ok(Some((frame, used))) => {
                assert!(used > 0 && used <= rest.len());
                rest = &rest[used..];
                frames.push(frame);
            }
            Ok(None) => return (frames, Ok(rest.len())),
            Err(e) => return (frames, Err(e)),
        }
    }
}

/// Decode `stream` fed in pieces of `step` bytes through the incremental decoder.
fn piecewise(stream: &[u8], limit: usize, step: usize) -> (Vec<Frame>, Result<usize, CodecError>) {
    let mut dec = Decoder::new(limit);
    let mut buf = Vec::new();
    let mut frames = Vec::new();
    for chunk in stream.chunks(step) {
        buf.extend_from_slice(chunk);
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Err(e)),
            }
        }
    }
    (frames, Ok(buf.len()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    let step = usize::from(step) + 1;
    for limit in LIMITS {
        let (frames, _) = at_once(stream, limit);
        for frame in &frames {
            let bytes = frame.to_bytes().expect("a decoded frame re-encodes");
            let (again, used) = decode_frame(&bytes, usize::MAX)
                .expect("re-encoded frame decodes")
                .expect("re-encoded frame is complete");
            assert_eq!(used, bytes.len());
            assert_eq!(&again, frame, "re-encoding changed the frame");
            // Accessors the connection loop uses never panic.
            let _ = (frame.uri_path(), frame.uri_queries(), frame.accept());
            let _ = (frame.content_format(), frame.csm_max_message_size());
        }

        let prefix = &stream[..stream.len().min(PIECEWISE_MAX)];
        let whole = at_once(prefix, limit);
        let pieces = piecewise(prefix, limit, step);
        assert_eq!(whole, pieces, "whole and piecewise decoding differ");
    }
});
