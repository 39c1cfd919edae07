//! Watching the service: Prometheus metrics (served on a port of their own)
//! and the request id every call carries in its span and response headers.
//!
//! One [`Metrics`] registry per server (not a process-global one), so that
//! several servers in one process, as in the tests, count apart.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::Full;
use hyper::body::Bytes;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use sqlx::PgPool;
use tracing::Span;

use crate::db::pool::CountedPool;
use tokio::net::TcpListener;

/// The metadata key of the request id, in requests and responses.
pub const REQUEST_ID: &str = "x-request-id";
const MAX_REQUEST_ID_LEN: usize = 128;

/// gRPC status names by code, the `code` label.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const UNIMPLEMENTED: &str = "UNIMPLEMENTED";
const CANCELLED: &str = "CANCELLED";

fn code_name(value: Option<&HeaderValue>) -> Option<&'static str> {
    let value = value?;
    Some(
        std::str::from_utf8(value.as_bytes())
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .and_then(|i| CODE_NAMES.get(i).copied())
            .unwrap_or("UNKNOWN"),
    )
}

/// Every series of one server.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    pool_connections: IntGaugeVec,
    pool_max: IntGauge,
    pool_waiting: IntGauge,
    migrations_applied: IntGauge,
    ready: IntGauge,
    jobs: IntCounterVec,
    cache: CacheCounters,
    metrics_cache: CacheCounters,
    pool: OnceLock<CountedPool>,
}

/// A cache's counters (unregistered by default: a cache made outside a
/// server counts into nothing).
#[derive(Clone)]
pub struct CacheCounters {
    pub hit: IntCounter,
    pub miss: IntCounter,
    /// Lookups that skipped the cache: it is off while changes are not being
    /// followed (and, for metrics, when configured off or skipped by the call).
    pub bypass: IntCounter,
}

impl Default for CacheCounters {
    fn default() -> Self {
        let vec = permission_cache_vec();
        CacheCounters::from_vec(&vec)
    }
}

impl CacheCounters {
    fn from_vec(vec: &IntCounterVec) -> Self {
        CacheCounters {
            hit: vec.with_label_values(&["hit"]),
            miss: vec.with_label_values(&["miss"]),
            bypass: vec.with_label_values(&["bypass"]),
        }
    }
}

/// A cache's lookups by result (hit, miss, bypass).
fn cache_vec(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &["result"]).expect("static metric definition")
}

fn permission_cache_vec() -> IntCounterVec {
    cache_vec(
        "affinity_permission_cache_requests_total",
        "Membership role lookups by the permission cache's answer.",
    )
}

fn metrics_cache_vec() -> IntCounterVec {
    cache_vec(
        "affinity_metrics_cache_requests_total",
        "GetMetricsAggregated calls by the metrics cache's answer.",
    )
}

impl Metrics {
    pub fn new() -> anyhow::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "affinity_rpc_requests_total",
                "RPCs finished, by method and gRPC status.",
            ),
            &["method", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "affinity_rpc_duration_seconds",
                "RPC latency, from the request's headers to the response's end.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["method"],
        )?;
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "affinity_db_pool_connections",
                "Open database connections of the pool, idle or in use (at scrape time).",
            ),
            &["state"],
        )?;
        let pool_max = IntGauge::new(
            "affinity_db_pool_max_connections",
            "Most connections the pool opens (AFFINITY_DB_MAX_CONNECTIONS).",
        )?;
        let pool_waiting = IntGauge::new(
            "affinity_db_pool_waiting",
            "Callers waiting for a connection of the calls' pool (at scrape time).",
        )?;
        let migrations_applied = IntGauge::new(
            "affinity_migrations_applied",
            "Migrations recorded as applied in the database (_sqlx_migrations).",
        )?;
        let migrations_bundled = IntGauge::new(
            "affinity_migrations_bundled",
            "Migrations bundled in this binary.",
        )?;
        let ready = IntGauge::new(
            "affinity_ready",
            "1 once the service is SERVING, 0 before and while shutting down.",
        )?;
        let jobs = IntCounterVec::new(
            Opts::new(
                "affinity_maintenance_runs_total",
                "Runs of the scheduled maintenance jobs (partitions, archive) by outcome: \
                 done, skipped (another replica held the job's lock) or failed.",
            ),
            &["job", "outcome"],
        )?;
        let cache_vec = permission_cache_vec();
        let metrics_cache_vec = metrics_cache_vec();
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(pool_max.clone()))?;
        registry.register(Box::new(pool_waiting.clone()))?;
        registry.register(Box::new(migrations_applied.clone()))?;
        registry.register(Box::new(migrations_bundled.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(cache_vec.clone()))?;
        registry.register(Box::new(metrics_cache_vec.clone()))?;
        migrations_bundled.set(crate::db::migrate::MIGRATOR.iter().count() as i64);
        Ok(Metrics {
            registry,
            requests,
            duration,
            pool_connections,
            pool_max,
            pool_waiting,
            migrations_applied,
            ready,
            jobs,
            cache: CacheCounters::from_vec(&cache_vec),
            metrics_cache: CacheCounters::from_vec(&metrics_cache_vec),
            pool: OnceLock::new(),
        })
    }

    pub fn cache_counters(&self) -> CacheCounters {
        self.cache.clone()
    }

    pub fn metrics_cache_counters(&self) -> CacheCounters {
        self.metrics_cache.clone()
    }

    /// The calls' pool, sampled at every scrape.
    pub fn set_pool(&self, pool: CountedPool, max_connections: u32) {
        self.pool_max.set(i64::from(max_connections));
        let _ = self.pool.set(pool);
    }

    /// Reads how many migrations the database records as applied.
    pub async fn record_migrations(&self, pool: &PgPool) -> sqlx::Result<()> {
        let applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(pool)
                .await?;
        self.migrations_applied.set(applied);
        Ok(())
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Counts one run of a maintenance job.
    pub fn record_job(&self, job: &str, outcome: &str) {
        self.jobs.with_label_values(&[job, outcome]).inc();
    }

    fn record_rpc(&self, method: &str, code: &'static str, elapsed: Duration) {
        // A path no service knows would otherwise mint a series per path.
        let method = if code == UNIMPLEMENTED {
            "unknown"
        } else {
            method
        };
        self.requests.with_label_values(&[method, code]).inc();
        self.duration
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition of every series.
    pub fn render(&self) -> Vec<u8> {
        if let Some(counted) = self.pool.get() {
            self.pool_waiting.set(counted.waiting());
            let pool = counted.pool();
            // Warm connections are idle too, though checked out of sqlx's pool.
            let idle = (pool.num_idle() + counted.warm()) as i64;
            let size = i64::from(pool.size());
            self.pool_connections.with_label_values(&["idle"]).set(idle);
            self.pool_connections
                .with_label_values(&["in_use"])
                .set((size - idle).max(0));
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding the metrics");
        }
        out
    }
}

/// Serves `GET /metrics` on `listener` (HTTP/1) until the task is aborted.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
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

/// The client's request id when it is usable (printable ASCII, at most 128
/// characters), else a new UUID.
fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get(REQUEST_ID)
        .filter(|v| {
            let b = v.as_bytes();
            !b.is_empty()
                && b.len() <= MAX_REQUEST_ID_LEN
                && b.iter().all(|c| (0x20..0x7f).contains(c))
        })
        .cloned()
        .unwrap_or_else(|| {
            let mut buf = uuid::Uuid::encode_buffer();
            HeaderValue::from_str(crate::random_uuid().hyphenated().encode_lower(&mut buf))
                .expect("a UUID is a valid header value")
        })
}

/// Outermost layer: settles the request id (in the request, where the
/// tracing span picks it up, and in the response headers, which a
/// trailers-only error response carries too) and counts each call with its
/// gRPC status and latency once its response ends.
#[derive(Clone)]
pub struct ObserveLayer {
    metrics: Arc<Metrics>,
}

impl ObserveLayer {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        ObserveLayer { metrics }
    }
}

impl<S> tower::Layer<S> for ObserveLayer {
    type Service = Observe<S>;
    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, ReqBody, ResBody> tower::Service<Request<ReqBody>> for Observe<S>
where
    S: tower::Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ObservedBody<ResBody>>;
    type Error = S::Error;
    type Future = ObserveFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        // Before the inner call, which may already run part of the handler.
        let started = Instant::now();
        let id = request_id(req.headers());
        req.headers_mut().insert(REQUEST_ID, id.clone());
        let method = req.uri().path().to_string();
        // Health and reflection calls: logged at DEBUG only.
        let quiet = method.starts_with("/grpc.");
        let span = rpc_span(quiet, &method, id.to_str().unwrap_or_default());
        let inner = {
            // The handler may run inside `call` already.
            let _entered = span.enter();
            self.inner.call(req)
        };
        let recorder = Recorder {
            metrics: self.metrics.clone(),
            method,
            quiet,
            request_id: id,
            started,
            code: CANCELLED,
            span,
        };
        ObserveFuture {
            inner,
            recorder: Some(recorder),
        }
    }
}

/// The span of one call: every log line of the call carries its method,
/// request id and (once authorized) organization; a DEBUG span when
/// `quiet`, else INFO.
fn rpc_span(quiet: bool, method: &str, request_id: &str) -> Span {
    if quiet {
        tracing::debug_span!(
            "rpc",
            method = %method,
            request_id,
            organization = tracing::field::Empty
        )
    } else {
        tracing::info_span!(
            "rpc",
            method = %method,
            request_id,
            organization = tracing::field::Empty
        )
    }
}

/// Counts the call and logs its end when dropped: with the status it saw,
/// else CANCELLED (the client went away before the end).
struct Recorder {
    metrics: Arc<Metrics>,
    method: String,
    /// Health or reflection.
    quiet: bool,
    request_id: HeaderValue,
    started: Instant,
    code: &'static str,
    span: Span,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        self.metrics.record_rpc(&self.method, self.code, elapsed);
        self.log_completion(elapsed.as_secs_f64() * 1000.0);
    }
}

/// The end-of-call line at `$level`: in the call's span, or, when a filter
/// leaves the span out (an INFO span under `RUST_LOG=warn`), with the call's
/// method and request id on the line itself.
macro_rules! completion {
    ($level:ident, $r:expr, $latency_ms:expr, $msg:literal) => {
        if $r.span.is_disabled() {
            tracing::$level!(
                method = %$r.method,
                request_id = $r.request_id.to_str().unwrap_or_default(),
                status = %$r.code,
                latency_ms = $latency_ms,
                $msg
            )
        } else {
            tracing::$level!(parent: &$r.span, status = %$r.code, latency_ms = $latency_ms, $msg)
        }
    };
}

impl Recorder {
    /// One line when a call ends: DEBUG for successful calls and for health
    /// and reflection (a line per call at thousands of calls a second costs
    /// the hot path more than the call itself), WARN for the service's own
    /// failures, INFO for calls refused for the client's reasons.
    fn log_completion(&self, latency_ms: f64) {
        match self.code {
            "OK" => completion!(debug, self, latency_ms, "rpc finished"),
            _ if self.quiet => completion!(debug, self, latency_ms, "rpc finished"),
            "INTERNAL" | "UNKNOWN" | "UNAVAILABLE" | "DEADLINE_EXCEEDED" | "DATA_LOSS" => {
                completion!(warn, self, latency_ms, "rpc failed")
            }
            _ => completion!(info, self, latency_ms, "rpc finished"),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct ObserveFuture<F> {
        #[pin]
        inner: F,
        recorder: Option<Recorder>,
    }
}

impl<F, B, E> Future for ObserveFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ObservedBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.recorder.as_ref().map(|r| r.span.enter());
            ready!(this.inner.poll(cx))
        };
        let Some(mut recorder) = this.recorder.take() else {
            // Polled after completion: not reachable through tower.
            return Poll::Ready(result.map(|res| {
                res.map(|inner| ObservedBody {
                    inner,
                    recorder: None,
                })
            }));
        };
        Poll::Ready(match result {
            Ok(mut res) => {
                res.headers_mut()
                    .insert(REQUEST_ID, recorder.request_id.clone());
                // Trailers-only (an error): the status is in the headers and
                // the call is over.
                let recorder = match code_name(res.headers().get("grpc-status")) {
                    Some(code) => {
                        recorder.code = code;
                        None
                    }
                    None => Some(recorder),
                };
                Ok(res.map(|inner| ObservedBody { inner, recorder }))
            }
            Err(e) => {
                recorder.code = "UNKNOWN";
                Err(e)
            }
        })
    }
}

pin_project_lite::pin_project! {
    /// The response body, watched for the trailers' gRPC status.
    pub struct ObservedBody<B> {
        #[pin]
        inner: B,
        recorder: Option<Recorder>,
    }
}

impl<B: http_body::Body> http_body::Body for ObservedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        // A streaming call's work goes on in its body, in its span.
        let frame = {
            let _entered = this.recorder.as_ref().map(|r| r.span.enter());
            ready!(this.inner.poll_frame(cx))
        };
        match &frame {
            Some(Ok(f)) => {
                if let Some(trailers) = f.trailers_ref() {
                    if let Some(mut r) = this.recorder.take() {
                        r.code = code_name(trailers.get("grpc-status")).unwrap_or("OK");
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(mut r) = this.recorder.take() {
                    r.code = "UNKNOWN";
                }
            }
            None => {
                // Ended without trailers: the server's own doing, not the client's.
                if let Some(mut r) = this.recorder.take() {
                    r.code = "UNKNOWN";
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_usable_request_id_is_kept_and_others_are_replaced() {
        let mut h = HeaderMap::new();
        h.insert(REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(&h), "abc-123");
        h.insert(REQUEST_ID, HeaderValue::from_str(&"x".repeat(129)).unwrap());
        assert!(uuid::Uuid::parse_str(request_id(&h).to_str().unwrap()).is_ok());
        h.insert(REQUEST_ID, HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap());
        assert!(uuid::Uuid::parse_str(request_id(&h).to_str().unwrap()).is_ok());
        assert!(uuid::Uuid::parse_str(request_id(&HeaderMap::new()).to_str().unwrap()).is_ok());
    }

    #[test]
    fn status_codes_get_their_grpc_names() {
        assert_eq!(
            code_name(Some(&HeaderValue::from_static("7"))),
            Some("PERMISSION_DENIED")
        );
        assert_eq!(
            code_name(Some(&HeaderValue::from_static("99"))),
            Some("UNKNOWN")
        );
        assert_eq!(code_name(None), None);
    }
}
