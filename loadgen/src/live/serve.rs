//! The live metrics endpoint: a minimal HTTP/1.1 server (hyper, already the admin client's
//! stack) answering `GET /metrics` (and `HEAD`) with the last published exposition; any other
//! path is 404, another method on `/metrics` 405. It lives as long as its [`LiveServer`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::snapshot::LiveMetrics;

/// The exposition format's content type.
pub const CONTENT_TYPE_0_0_4: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Scrapers at once; more are closed at accept (a scraper needs one).
const MAX_CONNECTIONS: usize = 64;

/// A connection must send a complete request head within this (idle keep-alive included).
const HEADER_READ: Duration = Duration::from_secs(10);

/// The running endpoint; dropping it stops the listener and every open connection.
#[derive(Debug)]
pub struct LiveServer {
    addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LiveServer {
    /// The bound address (the real port when `:0` was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop and wait until the listener and every connection are closed (dropping only asks the
    /// runtime to stop them).
    pub async fn stop(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Bind `addr` and serve `metrics` on it until the returned server is dropped.
pub async fn serve(addr: SocketAddr, metrics: Arc<LiveMetrics>) -> std::io::Result<LiveServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = Some(tokio::spawn(accept_loop(listener, metrics)));
    Ok(LiveServer { addr, task })
}

/// Accept scrapers; their connections live in a set that is aborted with this task.
async fn accept_loop(listener: TcpListener, metrics: Arc<LiveMetrics>) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors and the like: back off instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            continue;
        };
        let metrics = metrics.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let metrics = metrics.clone();
                async move { Ok::<_, Infallible>(answer(&req, &metrics)) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ);
            // A scraper that goes away mid-request is no concern of the run's.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(place);
        });
    }
}

/// The answer to one request.
fn answer(req: &Request<Incoming>, metrics: &LiveMetrics) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let text = metrics.text();
    let mut r = Response::new(Full::new(Bytes::copy_from_slice(text.as_bytes())));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_0_0_4));
    r
}

fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
