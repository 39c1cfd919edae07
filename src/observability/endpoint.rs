//! The Prometheus endpoint: plain HTTP/1 `GET /metrics` on a port apart
//! from gRPC (`AFFINITY_METRICS_ADDR`).

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Bytes;
use tokio::net::TcpListener;

use super::registry::Metrics;

/// Serves `GET /metrics` on `listener` (HTTP/1) until the task is aborted.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
    if let Ok(metrics_addr) = listener.local_addr() {
        tracing::info!(%metrics_addr, "serving Prometheus metrics at /metrics");
    }
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::debug!(error = %e, "metrics: accept");
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<_>| {
                    let metrics = metrics.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&metrics, &req)) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "metrics: connection");
                }
            });
        }
    })
}

fn answer<B>(metrics: &Metrics, req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = if req.uri().path() != "/metrics" {
        (
            http::StatusCode::NOT_FOUND,
            "text/plain",
            b"not found\n".to_vec(),
        )
    } else if req.method() != http::Method::GET {
        (
            http::StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            b"GET only\n".to_vec(),
        )
    } else {
        (
            http::StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        )
    };
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    res
}

/// Binds the metrics address, for `server::run`.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr} (AFFINITY_METRICS_ADDR): {e}"))
}
