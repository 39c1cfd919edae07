//! Client deadlines (the `grpc-timeout` header). The call's database work
//! runs with a `statement_timeout` of the time left (see
//! `api::ApiState::db`), since PostgreSQL keeps running a statement whose
//! client future was dropped; and the call ends with DEADLINE_EXCEEDED when
//! the deadline passes.
//!
//! tonic's own timeout (outside every layer) would answer CANCELLED; this
//! layer, inside it, answers a few milliseconds earlier with the code gRPC
//! clients expect.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tonic::body::Body;

use crate::db::reachability::Reachability;
use crate::error::ApiError;

/// When the call's client stops waiting (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Deadline(pub Instant);

/// Answer this much before the deadline, so that tonic's own timeout
/// (started a moment earlier, answering CANCELLED) never fires first.
const MARGIN: Duration = Duration::from_millis(5);

/// The `grpc-timeout` value: at most 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let split = value.len().checked_sub(1)?;
    let (digits, unit) = (value.get(..split)?, value.get(split..)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Ends calls at their deadline: DEADLINE_EXCEEDED, or UNAVAILABLE when the
/// database does not answer then (the call was waiting for it: the
/// contract's code for a database that is down or restarting).
#[derive(Debug, Clone)]
pub struct DeadlineLayer {
    database: Reachability,
}

impl DeadlineLayer {
    pub fn new(database: Reachability) -> Self {
        DeadlineLayer { database }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService {
            inner,
            database: self.database.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
    database: Reachability,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for DeadlineService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<http::Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let Some(timeout) = timeout else {
            return Box::pin(self.inner.call(req));
        };
        let deadline = Instant::now() + timeout.saturating_sub(MARGIN);
        req.extensions_mut().insert(Deadline(deadline));
        let call = self.inner.call(req);
        let database = self.database.clone();
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, call).await {
                Ok(res) => res,
                Err(_) if !database.is_reachable() => {
                    Ok(tonic::Status::from(ApiError::database_unavailable()).into_http())
                }
                // Dropping the call rolls its transaction back; its statement
                // was already bounded by the same deadline.
                Err(_) => Ok(tonic::Status::from(ApiError::DeadlineExceeded(
                    "the deadline passed before the call finished".into(),
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values_parse_by_unit_and_refuse_malformed_ones() {
        assert_eq!(parse_grpc_timeout("500m"), Some(Duration::from_millis(500)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789m", "10x", "-1S", "1.5S", "é"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
