//! Every call of a load recorded (code, timing), and which calls were sent or misbehaved.
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tonic::Code;

use crate::common::server::authed;
use crate::common::wait::eventually;
use crate::SLACK;

/// One call of a load.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) rpc: &'static str,
    /// What identifies the write in the database (a batch's entity id or
    /// model, an idempotency key); empty for reads.
    pub(crate) marker: String,
    /// None: no answer within DEADLINE + SLACK.
    pub(crate) code: Option<Code>,
    pub(crate) message: String,
    pub(crate) started: Instant,
    pub(crate) elapsed: Duration,
    /// LogAiContext's entry id.
    pub(crate) id: Option<String>,
}

impl Call {
    pub(crate) fn ok(&self) -> bool {
        self.code == Some(Code::Ok)
    }

    /// One line for failure messages.
    pub(crate) fn brief(&self) -> String {
        format!(
            "{} {} -> {:?} {:?} after {:?}",
            self.rpc, self.marker, self.code, self.message, self.elapsed
        )
    }
}

/// Every call of a load, shared by its tasks.
#[derive(Clone, Default)]
pub(crate) struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    pub(crate) fn push(&self, call: Call) {
        self.0.lock().expect("calls lock").push(call);
    }

    pub(crate) fn all(&self) -> Vec<Call> {
        self.0.lock().expect("calls lock").clone()
    }

    /// How many calls of `rpc` started at or after `since` ended with `code`.
    fn count_since(&self, rpc: &str, code: Code, since: Instant) -> usize {
        self.0
            .lock()
            .expect("calls lock")
            .iter()
            .filter(|c| c.rpc == rpc && c.started >= since && c.code == Some(code))
            .count()
    }

    /// Waits (at most `within`) until each of `rpcs` has `n` OK calls
    /// started at or after `since`.
    pub(crate) async fn wait_oks(&self, rpcs: &[&str], n: usize, since: Instant, within: Duration) {
        self.wait_for(Code::Ok, rpcs, n, since, within).await;
    }

    /// Waits (at most `within`) until each of `rpcs` has `n` calls started
    /// at or after `since` that ended with `code`.
    pub(crate) async fn wait_for(
        &self,
        code: Code,
        rpcs: &[&str],
        n: usize,
        since: Instant,
        within: Duration,
    ) {
        eventually(within, || async {
            let missing: Vec<&str> = rpcs
                .iter()
                .copied()
                .filter(|rpc| self.count_since(rpc, code, since) < n)
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            let calls = self.0.lock().expect("calls lock");
            let tail: Vec<String> = calls.iter().rev().take(12).map(Call::brief).collect();
            Err(format!(
                "not {n} calls of {missing:?} ended {code:?}; last calls: {tail:#?}"
            ))
        })
        .await;
    }
}

/// Runs one call with `deadline` (sent as grpc-timeout), records it in
/// `calls`, and returns its answer.
pub(crate) async fn timed<T>(
    calls: &Calls,
    rpc: &'static str,
    marker: String,
    deadline: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Option<T> {
    let (record, answer) = timed_call(rpc, marker, deadline, call).await;
    calls.push(record);
    answer
}

/// [`timed`] without recording.
pub(crate) async fn timed_call<T>(
    rpc: &'static str,
    marker: String,
    deadline: Duration,
    call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> (Call, Option<T>) {
    let started = Instant::now();
    // The client's own guard, so that a call the server never answers is
    // recorded (as hung) instead of hanging the test.
    let result = tokio::time::timeout(deadline + SLACK, call).await;
    let elapsed = started.elapsed();
    let (code, message, answer) = match result {
        Err(_) => (None, "no answer".to_string(), None),
        Ok(Ok(r)) => (Some(Code::Ok), String::new(), Some(r.into_inner())),
        Ok(Err(s)) if refused_by_go_away(&s) => (
            Some(Code::Unavailable),
            format!(
                "refused by the server's GOAWAY, never processed ({})",
                s.message()
            ),
            None,
        ),
        Ok(Err(s)) => (Some(s.code()), s.message().to_string(), None),
    };
    let record = Call {
        rpc,
        marker,
        code,
        message,
        started,
        elapsed,
        id: None,
    };
    (record, answer)
}

/// Whether `status` is tonic's INTERNAL for a stream the server's final
/// GOAWAY (NO_ERROR) left out: a stream above its last-stream-id, which
/// HTTP/2 guarantees was never processed (RFC 9113, 6.8) and which gRPC
/// clients retry transparently. tonic opens such a stream when the ping
/// acknowledgement of a graceful shutdown overtakes its queued HEADERS.
fn refused_by_go_away(status: &tonic::Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        source = err.source();
    }
    false
}

pub(crate) fn with_deadline<T>(msg: T, token: &str, deadline: Duration) -> tonic::Request<T> {
    let mut req = authed(msg, token);
    req.set_timeout(deadline);
    req
}

/// Calls that failed otherwise than `allowed`, or outlived their deadline
/// by more than SLACK.
pub(crate) fn misbehaving(calls: &[Call], allowed: &[Code], deadline: Duration) -> Vec<String> {
    calls
        .iter()
        .filter(|c| {
            c.code.is_none_or(|code| !allowed.contains(&code)) || c.elapsed > deadline + SLACK
        })
        .map(Call::brief)
        .collect()
}

/// The calls that were sent. A call the client put on a connection the
/// server had closed (HTTP/2 GOAWAY, on shutdown) ends CANCELLED in tonic's
/// client at once ("operation was canceled", from hyper: the request never
/// left), where gRPC's own clients retry it or say UNAVAILABLE. Likewise a
/// new connection the kernel accepted into the closing listener's backlog
/// and then reset: tonic says UNKNOWN "transport error" at once (nothing was
/// sent; gRPC's clients say UNAVAILABLE). And a stream opened on the old
/// connection past the server's GOAWAY: h2 resets it locally with the
/// GOAWAY's NO_ERROR, which tonic maps to INTERNAL "h2 protocol error" (the
/// server never saw it; gRPC's clients retry it transparently). Those are
/// left out, when they ended at once.
pub(crate) fn sent(calls: &[Call]) -> Vec<Call> {
    calls
        .iter()
        .filter(|c| {
            let cancelled_unsent =
                c.code == Some(Code::Cancelled) && c.message.contains("operation was canceled");
            let reset_connection = c.rpc == "new connection"
                && c.code == Some(Code::Unknown)
                && c.message.contains("transport error");
            let past_goaway = c.rpc == "old connection"
                && c.code == Some(Code::Internal)
                && c.message.contains("h2 protocol error");
            !((cancelled_unsent || reset_connection || past_goaway) && c.elapsed < SLACK)
        })
        .cloned()
        .collect()
}
