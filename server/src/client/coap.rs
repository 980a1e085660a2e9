//! A device's CoAP requests (CBOR bodies, OCF content format) and its reading of one answer: send
//! a request and wait for the response with its token ([`Exchange`]), then check its code and
//! content format and decode its body ([`decode`]).

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::proto::body::{self, BodyError, ContentFormat};
use crate::proto::coap::{Code, Frame};
use crate::proto::stream::{FramedIo, StreamError};

/// Largest CoAP message a device accepts (the identity chain in the credentials answer fits).
pub const MAX_MESSAGE: usize = 64 * 1024;

/// A request with token `token` for `path`, accepting the OCF CBOR content format.
pub fn request(code: Code, token: &[u8], path: &str) -> Frame {
    Frame::request(code, token, path).with_accept(ContentFormat::OcfCbor.as_u16())
}

/// A POST of `body`, CBOR-encoded, with token `token` to `path`.
pub fn post<T: serde::Serialize + ?Sized>(
    token: &[u8],
    path: &str,
    body: &T,
) -> Result<Frame, BodyError> {
    let payload = body::to_cbor(body)?;
    Ok(request(Code::POST, token, path)
        .with_content_format(ContentFormat::OcfCbor.as_u16())
        .with_payload(payload))
}

/// A session a device's requests run over: send one and return its answer.
pub trait Exchange {
    /// Why the session failed.
    type Error;

    /// Send `request` and wait for the response with its token.
    fn exchange(
        &mut self,
        request: &Frame,
    ) -> impl Future<Output = Result<Frame, Self::Error>> + Send;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Exchange for FramedIo<S> {
    type Error = StreamError;

    fn exchange(
        &mut self,
        request: &Frame,
    ) -> impl Future<Output = Result<Frame, StreamError>> + Send {
        FramedIo::exchange(self, request)
    }
}

/// Why an answer is not the one a device asked for.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// Another response code; the payload is the server's diagnostic.
    #[error("expected {want}, got {got}: {diagnostic}")]
    Code {
        /// The code asked for.
        want: Code,
        /// The code received.
        got: Code,
        /// The payload, as text.
        diagnostic: String,
    },
    /// Not the OCF CBOR content format.
    #[error("content format {0:?}, not OCF CBOR")]
    ContentFormat(Option<u16>),
    /// The body does not decode.
    #[error("body: {0}")]
    Body(#[from] BodyError),
}

/// The body of `answer`, which must have code `want` and the OCF CBOR content format.
pub fn decode<T: serde::de::DeserializeOwned>(
    answer: &Frame,
    want: Code,
) -> Result<T, AnswerError> {
    if answer.code != want {
        return Err(AnswerError::Code {
            want,
            got: answer.code,
            diagnostic: String::from_utf8_lossy(&answer.payload).into_owned(),
        });
    }
    let format = answer.content_format();
    if format != Some(ContentFormat::OcfCbor.as_u16()) {
        return Err(AnswerError::ContentFormat(format));
    }
    Ok(body::from_cbor(&answer.payload)?)
}
