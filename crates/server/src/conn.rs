//! The connections in front of the router: the accept loop that a slow or hostile client cannot take the
//! server down with.
//!
//! - A client has `header_timeout_secs` to send a request's headers; hyper closes the connection past it. The
//!   same timer runs while a kept-alive connection waits for its next request, so idle connections close too.
//! - At most `max_connections` are served at once. A connection past it is still accepted and gets one
//!   answer within a second: `GET /health` says ok (so a load balancer does not pull a live server), every
//!   other request 503 with `Retry-After`; then it is closed. An accept that fails (out of file descriptors)
//!   backs off for a moment instead of spinning.
//! - The body's own limits (size by `Content-Length` before reading, `body_timeout_secs` while reading) are
//!   the extractors' (`extract.rs`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sieve_api::{ErrorBody, ErrorCode, Health};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::state::SharedState;

/// How long a connection over the limit may take to send its request.
const OVER_LIMIT_HEADER_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts and serves connections until `shutdown` resolves, then stops accepting and waits for the open
/// connections to finish their requests (hyper's graceful shutdown: idle ones close at once).
pub async fn run(
    listener: TcpListener,
    app: Router,
    state: SharedState,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let config = &state.config;
    let limit = config.max_connections;
    let permits = Arc::new(Semaphore::new(limit));
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(Duration::from_secs(config.header_timeout_secs)).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // out of file descriptors, or a connection reset before it was accepted
                    tracing::warn!("accepting a connection failed: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
                let conn = graceful.watch(conn);
                let st = state.clone();
                st.metrics.connection(true);
                tokio::spawn(async move {
                    let _ = conn.await;
                    st.metrics.connection(false);
                    drop(permit);
                });
            }
            Err(_) => {
                state.metrics.connection_refused();
                tokio::spawn(answer_over_limit(stream, limit));
            }
        }
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// One answer on a connection past the limit: `/health` ok, anything else 503 with `Retry-After`.
async fn answer_over_limit(stream: TcpStream, limit: usize) {
    let service = hyper::service::service_fn(move |req: Request<Incoming>| async move {
        Ok::<_, Infallible>(over_limit_response(req.method(), req.uri().path(), limit))
    });
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(OVER_LIMIT_HEADER_TIMEOUT).keep_alive(false);
    let _ = http.serve_connection(TokioIo::new(stream), service).await;
}

fn over_limit_response(method: &Method, path: &str, limit: usize) -> Response<Body> {
    let (status, body) = if method == Method::GET && path == "/health" {
        (StatusCode::OK, serde_json::to_vec(&Health { status: "ok".into() }))
    } else {
        let message = format!("the server is serving {limit} connections (max_connections); retry shortly");
        (StatusCode::SERVICE_UNAVAILABLE, serde_json::to_vec(&ErrorBody { code: ErrorCode::Unavailable, message }))
    };
    let mut r = Response::new(Body::from(body.unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    if status != StatusCode::OK {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_limit_health_is_ok_and_the_rest_is_told_to_retry() {
        let ok = over_limit_response(&Method::GET, "/health", 8);
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers().get(header::RETRY_AFTER).is_none());
        let busy = over_limit_response(&Method::POST, "/v1/search", 8);
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()[header::RETRY_AFTER], "1");
        assert_eq!(busy.headers()[header::CONNECTION], "close");
    }
}
