//! A device's CoAP session, reading frames as iotivity-lite does: every frame the server sends,
//! signalling ones included, must be at least [`MIN_FRAME_LEN`] bytes long (see there why), and a
//! Release ends the session (messaging/coap/signal.c `coap_signal_handle_message` closes it).

use dps_server::proto::coap::{Code, Frame};
use dps_server::proto::stream::{FramedIo, StreamError};
use tokio::io::{AsyncRead, AsyncWrite};

use super::link::LinkStream;
use super::strict::MIN_FRAME_LEN;
use super::trace::Traced;

/// A device's CoAP session over TLS, over its socket (through its link profile, if any).
pub type Session = DeviceIo<tokio_rustls::client::TlsStream<LinkStream<Traced>>>;

/// Why a device's session failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The transport or the framing failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The server sent a frame the real client cannot read.
    #[error(
        "the server's {nth} frame ({code}) is {len} bytes; iotivity-lite reads {MIN_FRAME_LEN} \
         bytes before it knows a frame's length"
    )]
    ShortFrame {
        /// `first` or `later`.
        nth: &'static str,
        /// Its code.
        code: Code,
        /// Its length on the wire.
        len: usize,
    },
    /// The server sent Release (7.04): the real client closes the session.
    #[error("the server sent Release: {0}")]
    Released(String),
}

/// A framed session whose reads are checked as the real client would read them.
#[derive(Debug)]
pub struct DeviceIo<S> {
    io: FramedIo<S>,
    frames: u64,
}

impl<S: AsyncRead + AsyncWrite + Unpin> DeviceIo<S> {
    /// Frames over `io`, refusing incoming messages over `max_message_size`.
    pub fn new(io: S, max_message_size: usize) -> Self {
        DeviceIo {
            io: FramedIo::new(io, max_message_size),
            frames: 0,
        }
    }

    /// The next frame (`None`: the server closed between frames), refused if it is shorter than
    /// the real client can read.
    pub async fn read_frame(&mut self) -> Result<Option<Frame>, SessionError> {
        let Some(frame) = self.io.read_frame().await? else {
            return Ok(None);
        };
        self.frames += 1;
        // The codec's encoding is canonical (each length and option delta has exactly one form,
        // options keep their wire order and raw values), so the re-encoded frame is as long as
        // the one on the wire.
        let len = frame.to_bytes().map_err(StreamError::from)?.len();
        if len < MIN_FRAME_LEN {
            return Err(SessionError::ShortFrame {
                nth: if self.frames == 1 { "first" } else { "later" },
                code: frame.code,
                len,
            });
        }
        Ok(Some(frame))
    }

    /// Send one frame.
    pub async fn write_frame(&mut self, frame: &Frame) -> Result<(), SessionError> {
        Ok(self.io.write_frame(frame).await?)
    }

    /// Send a request and wait for the response with its token, answering Pings and skipping
    /// other signalling messages meanwhile (every frame read through [`Self::read_frame`]).
    pub async fn exchange(&mut self, request: &Frame) -> Result<Frame, SessionError> {
        self.write_frame(request).await?;
        loop {
            let frame = self.read_frame().await?.ok_or(StreamError::Truncated(0))?;
            if frame.code == Code::PING {
                self.write_frame(&Frame::pong(&frame.token)).await?;
                continue;
            }
            if frame.code == Code::RELEASE {
                return Err(SessionError::Released(
                    String::from_utf8_lossy(&frame.payload).into_owned(),
                ));
            }
            if frame.code.is_signal() || frame.token != request.token {
                continue;
            }
            return Ok(frame);
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        self.io.get_ref()
    }

    /// The wrapped stream, mutably (e.g. to shut it down).
    pub fn get_mut(&mut self) -> &mut S {
        self.io.get_mut()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> dps_server::client::coap::Exchange for DeviceIo<S> {
    type Error = SessionError;

    fn exchange(
        &mut self,
        request: &Frame,
    ) -> impl std::future::Future<Output = Result<Frame, SessionError>> + Send {
        DeviceIo::exchange(self, request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    async fn reads(bytes: &[u8]) -> Vec<Result<Option<Frame>, String>> {
        let (client, mut server) = tokio::io::duplex(4096);
        server.write_all(bytes).await.expect("write");
        drop(server);
        let mut io = DeviceIo::new(client, 4096);
        let mut out = Vec::new();
        loop {
            let r = io.read_frame().await.map_err(|e| e.to_string());
            let end = !matches!(r, Ok(Some(_)));
            out.push(r);
            if end {
                return out;
            }
        }
    }

    #[tokio::test]
    async fn frames_shorter_than_six_bytes_are_refused() {
        // Our server's old CSM: Max-Message-Size = 1152, no token: 5 bytes.
        let short_csm = Frame::csm(Some(1152)).to_bytes().expect("csm");
        assert_eq!(short_csm.len(), 5);
        let r = reads(&short_csm).await;
        assert!(
            matches!(&r[0], Err(e) if e.contains("first frame (7.01) is 5 bytes")),
            "{r:?}"
        );
        // With an 8-byte token, as plgd's go-coap sends it, it is readable.
        let mut csm = Frame::csm(Some(1152));
        csm.token = vec![9; 8];
        let mut bytes = csm.to_bytes().expect("csm");
        // Then a Pong without a token (2 bytes): refused too, as a later frame.
        bytes.extend(Frame::pong(&[]).to_bytes().expect("pong"));
        let r = reads(&bytes).await;
        assert!(matches!(&r[0], Ok(Some(f)) if f.code == Code::CSM), "{r:?}");
        assert!(
            matches!(&r[1], Err(e) if e.contains("later frame (7.03) is 2 bytes")),
            "{r:?}"
        );
    }

    #[tokio::test]
    async fn a_release_ends_an_exchange() {
        let (client, mut server) = tokio::io::duplex(4096);
        let mut release = Frame::new(Code::RELEASE).with_payload(&b"draining"[..]);
        release.token = vec![1; 8];
        server
            .write_all(&release.to_bytes().expect("release"))
            .await
            .expect("write");
        let mut io = DeviceIo::new(client, 4096);
        let req = Frame::request(Code::GET, &[2; 8], "/x.plgd.dev/time");
        let e = io.exchange(&req).await.expect_err("released");
        assert!(
            matches!(e, SessionError::Released(ref d) if d == "draining"),
            "{e}"
        );
    }
}
