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

/// A framed CoAP-over-TCP stream.
#[derive(Debug)]
pub struct FramedIo<S> {
    io: S,
    decoder: Decoder,
    read_buf: Vec<u8>,
    write_buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> FramedIo<S> {
    /// Wrap `io`; incoming messages larger than `max_message_size` are refused.
    pub fn new(io: S, max_message_size: usize) -> Self {
        Self {
            io,
            decoder: Decoder::new(max_message_size),
            read_buf: Vec::new(),
            write_buf: Vec::new(),
        }
    }

    /// The next frame; `None` when the peer closed the stream cleanly between frames.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.read_buf)? {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 2048];
            let n = self.io.read(&mut chunk).await?;
            if n == 0 {
                return match self.read_buf.len() {
                    0 => Ok(None),
                    pending => Err(StreamError::Truncated(pending)),
                };
            }
            self.read_buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Encode and send one frame.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), StreamError> {
        self.write_buf.clear();
        frame.encode(&mut self.write_buf)?;
        self.io.write_all(&self.write_buf).await?;
        self.io.flush().await?;
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
