//! Frames over an async byte stream (TLS or plain TCP): the one reader/writer both the server's
//! connections and the devices of the load generator use.

use std::future::Future as _;

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

    /// Encode and send one frame, after any frames queued with [`FramedIo::queue_frame`] (one
    /// write, so one TLS record and one system call for all of them).
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), StreamError> {
        self.queue_frame(frame)?;
        self.flush_queued().await
    }

    /// Encode `frame` into the write buffer without sending it: it goes with the next
    /// [`FramedIo::write_frame`] or [`FramedIo::flush_queued`].
    pub fn queue_frame(&mut self, frame: &Frame) -> Result<(), StreamError> {
        let start = self.write_buf.len();
        let encoded = frame.encode(&mut self.write_buf);
        if encoded.is_ok() && self.write_buf.len() - start >= self.min_frame_len {
            return Ok(());
        }
        self.write_buf.truncate(start);
        encoded?;
        // Rare (an empty-token Pong, a bare Abort): re-encode with a diagnostic payload.
        let padded = frame.clone().padded(self.min_frame_len).encode(&mut self.write_buf);
        if padded.is_err() {
            self.write_buf.truncate(start);
        }
        Ok(padded?)
    }

    /// Are frames queued and not sent yet?
    pub fn has_queued(&self) -> bool {
        !self.write_buf.is_empty()
    }

    /// Send the frames queued with [`FramedIo::queue_frame`], if any.
    pub async fn flush_queued(&mut self) -> Result<(), StreamError> {
        if self.write_buf.is_empty() {
            return Ok(());
        }
        let sent = self.io.write_all(&self.write_buf).await;
        self.write_buf.clear();
        if self.write_buf.capacity() > KEEP_CAPACITY {
            self.write_buf = Vec::new();
        }
        sent?;
        self.io.flush().await?;
        Ok(())
    }

    /// The next frame if it can be had without waiting (already buffered, or bytes already
    /// arrived); `None` when reading would have to wait. Nothing read is lost either way.
    pub fn try_read_frame(&mut self) -> Option<Result<Option<Frame>, StreamError>> {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let read = std::pin::pin!(self.read_frame());
        match read.poll(&mut cx) {
            std::task::Poll::Ready(result) => Some(result),
            std::task::Poll::Pending => None,
        }
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
