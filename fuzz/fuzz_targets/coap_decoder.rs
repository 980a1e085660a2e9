//! RFC 8323 decoder on arbitrary bytes: never panics; feeding the same bytes in arbitrary pieces
//! yields the same frames and the same error as decoding them at once; every decoded frame
//! re-encodes into bytes that decode to the same frame.
#![no_main]

use dps_server::proto::coap::{decode_frame, Decoder};
use libfuzzer_sys::fuzz_target;

/// The server's default `[limits] max_message_size`, and a small one so the limit check is hit.
const LIMITS: [usize; 2] = [16 * 1024, 64];

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else {
        return;
    };
    for limit in LIMITS {
        // At once.
        let mut whole = Vec::new();
        let mut rest = stream;
        let whole_end = loop {
            match decode_frame(rest, limit) {
                Ok(Some((frame, used))) => {
                    assert!(used > 0 && used <= rest.len());
                    rest = &rest[used..];
                    whole.push(frame);
                }
                Ok(None) => break Ok(rest.len()),
                Err(e) => break Err(e),
            }
        };

        // In pieces of `step` bytes (1..=256), through the incremental decoder.
        let step = usize::from(step) + 1;
        let mut dec = Decoder::new(limit);
        let mut buf = Vec::new();
        let mut pieces = Vec::new();
        let mut end = None;
        'feed: for chunk in stream.chunks(step) {
            buf.extend_from_slice(chunk);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(frame)) => pieces.push(frame),
                    Ok(None) => break,
                    Err(e) => {
                        end = Some(Err(e));
                        break 'feed;
                    }
                }
            }
        }
        let end = end.unwrap_or(Ok(buf.len()));
        assert_eq!(
            whole, pieces,
            "frames differ between whole and piecewise decoding"
        );
        assert_eq!(
            whole_end, end,
            "outcome differs between whole and piecewise decoding"
        );

        for frame in &whole {
            let bytes = frame.to_bytes().expect("a decoded frame re-encodes");
            let again = decode_frame(&bytes, usize::MAX)
                .expect("re-encoded frame decodes")
                .expect("re-encoded frame is complete");
            assert_eq!(again.1, bytes.len());
            assert_eq!(&again.0, frame, "re-encoding changed the frame");
            // Accessors the connection loop uses never panic.
            let _ = (frame.uri_path(), frame.uri_queries(), frame.accept());
            let _ = (frame.content_format(), frame.csm_max_message_size());
        }
    }
});
