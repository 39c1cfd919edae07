//! The per-call layer: the request id every call carries in its span and
//! response headers, the call's span and end-of-call log line, and its
//! count and latency in the registry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Request, Response};
use tracing::Span;

use super::registry::Metrics;

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
