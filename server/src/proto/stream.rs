//! Frames over an async byte stream (TLS or plain TCP): the one reader/writer both the server's
//! connections and the devices of the load generator use.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::coap::{CodecError, Decoder, Frame};

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The transport failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent bytes that are not a valid frame, or one too large.
    #[error("framing: {0}")]
    Codec(#[from] CodecError),
    /// The stream ended inside a frame.
    #[error("connection closed in the middle of a frame ({0} bytes pending)")]
    Truncated(usize),
}

/// Bytes asked of the transport per read once a frame has started; larger frames take a few reads.
const READ_CHUNK: usize = 2048;

/// Bytes asked of the transport while waiting for a new frame: an idle connection waits with this
/// much buffer (a Ping or a typical request fits).
const IDLE_CHUNK: usize = 256;

/// Buffers above this capacity are released once drained: an idle connection (tens of thousands
/// of them are held at once) should not keep the largest frame it ever saw.
const KEEP_CAPACITY: usize = 1024;

/// A framed CoAP-over-TCP stream.
#[derive(Debug)]
pub struct FramedIo<S> {
    io: S,
    decoder: Decoder,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
    min_frame_len: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramedIo<S> {
    /// Wrap `io`; incoming messages larger than `max_message_size` are refused.
    pub fn new(io: S, max_message_size: usize) -> Self {
        Self {
            io,
            decoder: Decoder::new(max_message_size),
            read_buf: Vec::new(),
            write_buf: Vec::new(),
            min_frame_len: 0,
        }
    }

    /// Pad every frame written that would be shorter than `min_frame_len` bytes (see
    /// [`Frame::padded`]): the server's side sets [`super::coap::MIN_FRAME_LEN`] so that clients
    /// that read a fixed header first (iotivity-lite) can read every frame it sends.
    pub fn with_min_frame_len(mut self, min_frame_len: usize) -> Self {
        self.min_frame_len = min_frame_len;
        self
    }

    /// The next frame; `None` when the peer closed the stream cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.read_buf)? {
                if self.read_buf.is_empty() && self.read_buf.capacity() > KEEP_CAPACITY {
                    self.read_buf = Vec::new();
                }
                return Ok(Some(frame));
            }
            // Read straight into the buffer's spare room: no chunk kept in the future's state
            // while the connection idles.
            let want = if self.read_buf.is_empty() {
                IDLE_CHUNK
            } else {
                READ_CHUNK
            };
            self.read_buf.reserve(want);
            let n = self.io.read_buf(&mut self.read_buf).await?;
            if n == 0 {
                return match self.read_buf.len() {
                    0 => Ok(None),
                    pending => Err(StreamError::Truncated(pending)),
                };
            }
        }
    }

    /// Encode and send one frame.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), StreamError> {
        self.write_buf.clear();
        frame.encode(&mut self.write_buf)?;
        if self.write_buf.len() < self.min_frame_len {
            // Rare (an empty-token Pong, a bare Abort): re-encode with a diagnostic payload.
            self.write_buf.clear();
            frame
                .clone()
                .padded(self.min_frame_len)
                .encode(&mut self.write_buf)?;
        }
        self.io.write_all(&self.write_buf).await?;
        self.io.flush().await?;
        if self.write_buf.capacity() > KEEP_CAPACITY {
            self.write_buf = Vec::new();
        }
        Ok(())
    }

    /// Send a request and wait for the response with its token, answering Pings and skipping
    /// signalling messages (CSM) meanwhile.
    pub async fn exchange(&mut self, request: &Frame) -> Result<Frame, StreamError> {
        self.write_frame(request).await?;
        loop {
            let frame = self.read_frame().await?.ok_or(StreamError::Truncated(0))?;
            if frame.code == super::coap::Code::PING {
                self.write_frame(&Frame::pong(&frame.token)).await?;
                continue;
            }
            if frame.code.is_signal() || frame.token != request.token {
                continue;
            }
            return Ok(frame);
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// The wrapped stream, mutably (e.g. to shut it down).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.io
    }
}
