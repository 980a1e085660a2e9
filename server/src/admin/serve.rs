//! Connections of the admin API: HTTP/1.1 with limits a slow or hostile client cannot wear out.
//!
//! `axum::serve` has no header-read timeout, no request deadline and no connection cap, so one
//! client that opens connections and trickles bytes (slowloris) could hold the admin API and its
//! file descriptors forever. Here every connection has:
//! - a header-read timeout ([`AdminLimits::header_read`]): from the moment hyper waits for a
//!   request head (the first one, or the next one on a kept-alive connection) until the head is
//!   complete; past it the connection is closed;
//! - a request deadline ([`AdminLimits::request`]): reading the body and answering; past it the
//!   answer is 408 and the connection closes;
//! - a place among at most [`AdminLimits::max_connections`]: beyond that, new connections are
//!   closed at once (they are counted in `dps_admin_connections_refused_total`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

/// Limits of the admin API's connections.
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    /// Longest wait for a complete request head, idle keep-alive time included.
    pub header_read: Duration,
    /// Longest time to read a request's body and produce its answer.
    pub request: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
    /// On shutdown, how long requests in flight get to finish.
    pub drain: Duration,
}

impl Default for AdminLimits {
    fn default() -> Self {
        AdminLimits {
            header_read: Duration::from_secs(10),
            request: Duration::from_secs(30),
            max_connections: 256,
            drain: Duration::from_secs(5),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets requests in flight finish
/// (for at most `limits.drain`).
pub async fn serve_router(
    listener: TcpListener,
    app: Router,
    limits: AdminLimits,
    on_refused: impl Fn() + Send + Sync + 'static,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(axum::middleware::from_fn(move |req, next| {
        request_deadline(limits.request, req, next)
    }));
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, _peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            on_refused();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(
            app.clone()
                .map_request(|req: Request<Incoming>| req.map(Body::new)),
        );
        let mut closing = closing_rx.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => log_end(result),
                _ = closing.changed() => {
                    conn.as_mut().graceful_shutdown();
                    log_end(conn.await);
                }
            }
            drop(place);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(limits.drain, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        connections.abort_all();
    }
    Ok(())
}

fn log_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "admin connection ended");
    }
}

/// Answers 408 (and closes the connection) when reading the body and answering take too long.
async fn request_deadline(
    limit: Duration,
    req: Request,
    next: axum::middleware::Next,
) -> Result<Response, Infallible> {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(response) => Ok(response),
        Err(_) => {
            let mut response = super::ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("request not complete within {} s", limit.as_secs_f64()),
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            Ok(response)
        }
    }
}
