//! Fault injection with real processes: the `affinity` binary (killed with
//! SIGKILL, stopped with SIGTERM, started as several replicas at once) and
//! a private PostgreSQL restarted under it (fast and immediate shutdown).
//! Every write the service acknowledged must be in the database afterwards,
//! checked in SQL, and no call may outlive its deadline.
//!
//! ("Database down when the service starts" is in tests/service.rs.)
mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use affinity::proto;
use affinity_testkit::cluster::ShutdownMode;
use affinity_testkit::legacy::LegacyConfig;
use common::process::ServiceProcess;
use common::server::{aggregation, authed, new_tenant, service_token, Tenant};
use common::wait::{eventually, seen};
use common::TestDb;
use futures::StreamExt;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest, HealthCheckResponse};
use uuid::Uuid;

/// The deadline of every call of a load.
const DEADLINE: Duration = Duration::from_secs(2);
/// How long past its deadline a call may take to end: the server answers
/// at the deadline; this covers the trip back on a loaded 2-core machine.
/// A call still unanswered then is recorded as hung.
const SLACK: Duration = Duration::from_secs(2);
/// Bound of every wait for the service to start (migrations included).
const STARTUP: Duration = Duration::from_secs(120);
/// Bound of the wait for the load to succeed again after a fault.
const RECOVERY: Duration = Duration::from_secs(30);
/// Dimension of the embeddings written.
const DIM: usize = 384;
/// Model of the embeddings LogAiContext stores.
const AI_MODEL: &str = "fault-model";

/// One call of a load.
#[derive(Debug, Clone)]
struct Call {
    rpc: &'static str,
    /// What identifies the write in the database (a batch's entity id or
    /// model, an idempotency key); empty for reads.
    marker: String,
    /// None: no answer within DEADLINE + SLACK.
    code: Option<Code>,
    message: String,
    started: Instant,
    elapsed: Duration,
    /// LogAiContext's entry id.
    id: Option<String>,
}

impl Call {
    fn ok(&self) -> bool {
        self.code == Some(Code::Ok)
    }

    /// One line for failure messages.
    fn brief(&self) -> String {
        format!(
            "{} {} -> {:?} {:?} after {:?}",
            self.rpc, self.marker, self.code, self.message, self.elapsed
        )
    }
}

/// Every call of a load, shared by its tasks.
#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Call>>>);

impl Calls {
    fn push(&self, call: Call) {
        self.0.lock().expect("calls lock").push(call);
    }

    fn all(&self) -> Vec<Call> {
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
    async fn wait_oks(&self, rpcs: &[&str], n: usize, since: Instant, within: Duration) {
        self.wait_for(Code::Ok, rpcs, n, since, within).await;
    }

    /// Waits (at most `within`) until each of `rpcs` has `n` calls started
    /// at or after `since` that ended with `code`.
    async fn wait_for(
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
async fn timed<T>(
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
async fn timed_call<T>(
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

fn with_deadline<T>(msg: T, token: &str, deadline: Duration) -> tonic::Request<T> {
    let mut req = authed(msg, token);
    req.set_timeout(deadline);
    req
}

/// A deterministic, non-zero vector.
fn vector(seed: u128) -> Vec<f32> {
    let s = (seed % 997) as f32;
    (0..DIM)
        .map(|i| ((i as f32 + s) * 0.37).sin() + 1.5)
        .collect()
}

fn entity(id: Uuid) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: id.to_string(),
    })
}

/// A batch of `n` points of one entity (the batch's marker), keyed by it.
fn metric_batch(org: Uuid, batch: Uuid, n: usize) -> proto::RecordMetricsRequest {
    proto::RecordMetricsRequest {
        organization_id: org.to_string(),
        idempotency_key: batch.to_string(),
        points: (0..n)
            .map(|i| proto::MetricPoint {
                entity: entity(batch),
                metric_name: "likes".into(),
                value: i as f64,
                recorded_at: None,
            })
            .collect(),
    }
}

/// `n` embeddings of entities derived from `batch`, all of model
/// "batch-<batch>" (the batch's marker): the same call again writes the
/// same natural keys (organization, entity, model).
fn embedding_batch(org: Uuid, batch: Uuid, n: usize) -> proto::UpsertEmbeddingsRequest {
    proto::UpsertEmbeddingsRequest {
        organization_id: org.to_string(),
        embeddings: (0..n as u128)
            .map(|i| {
                let id = Uuid::from_u128(batch.as_u128().wrapping_add(i));
                proto::EmbeddingRecord {
                    entity: entity(id),
                    vector: vector(id.as_u128()),
                    model: embedding_marker(batch),
                }
            })
            .collect(),
    }
}

fn embedding_marker(batch: Uuid) -> String {
    format!("batch-{batch}")
}

/// An AI context entry (with an embedding: two rows in one write).
fn log_entry(org: Uuid, key: &str) -> proto::LogAiContextRequest {
    proto::LogAiContextRequest {
        organization_id: org.to_string(),
        source_type: "agent".into(),
        context_summary: format!("summary of {key}"),
        ai_response: "an answer".into(),
        embedding: vector(key.len() as u128),
        embedding_model: AI_MODEL.into(),
        idempotency_key: key.to_string(),
        ..Default::default()
    }
}

/// The idempotency keys of stream `batch`'s entries.
fn stream_keys(batch: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{batch}/{i}")).collect()
}

/// What a load sends.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// Points per RecordMetrics batch.
    metric_points: usize,
    /// Embeddings per UpsertEmbeddings batch.
    embeddings: usize,
    /// Entries per LogAiContextStream call (0: no stream writer).
    stream_entries: usize,
    /// Whether a reader task runs too.
    reads: bool,
    deadline: Duration,
}

const RECORD_METRICS: &str = "RecordMetrics";
const UPSERT_EMBEDDINGS: &str = "UpsertEmbeddings";
const LOG_AI_CONTEXT: &str = "LogAiContext";
const LOG_AI_CONTEXT_STREAM: &str = "LogAiContextStream";

/// What every call of a load needs: the channel, the tenant, where the
/// calls are recorded, and what to send.
#[derive(Clone)]
struct Load {
    channel: Channel,
    t: Tenant,
    calls: Calls,
    shape: Shape,
}

impl Load {
    /// `msg` with the tenant's token and the load's deadline.
    fn request<T>(&self, msg: T) -> tonic::Request<T> {
        with_deadline(msg, &self.t.token, self.shape.deadline)
    }

    /// [`timed`] into the load's calls, with its deadline: whether the call
    /// was answered.
    async fn timed<T>(
        &self,
        rpc: &'static str,
        marker: String,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> bool {
        timed(&self.calls, rpc, marker, self.shape.deadline, call)
            .await
            .is_some()
    }
}

/// A task making `call` (given the load and the 1-based round) in a loop
/// until `stop`; pauses a little after a call that was not answered
/// (`call` says false) so that a dead server is not spun on.
fn spawn_loop<F, Fut>(load: &Load, stop: &Arc<AtomicBool>, call: F) -> JoinHandle<()>
where
    F: Fn(Load, u64) -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let (load, stop) = (load.clone(), stop.clone());
    tokio::spawn(async move {
        let mut round = 0u64;
        while !stop.load(Ordering::Acquire) {
            round += 1;
            if !call(load.clone(), round).await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    })
}

/// One RecordMetrics of a new batch.
async fn record_metrics_once(l: Load, _: u64) -> bool {
    let batch = Uuid::new_v4();
    let req = l.request(metric_batch(l.t.org, batch, l.shape.metric_points));
    let mut c = proto::metrics_service_client::MetricsServiceClient::new(l.channel.clone());
    l.timed(RECORD_METRICS, batch.to_string(), c.record_metrics(req))
        .await
}

/// One UpsertEmbeddings of a new batch.
async fn upsert_embeddings_once(l: Load, _: u64) -> bool {
    let batch = Uuid::new_v4();
    let req = l.request(embedding_batch(l.t.org, batch, l.shape.embeddings));
    let mut c = proto::similarity_service_client::SimilarityServiceClient::new(l.channel.clone());
    l.timed(
        UPSERT_EMBEDDINGS,
        embedding_marker(batch),
        c.upsert_embeddings(req),
    )
    .await
}

/// One LogAiContext of a new key, recorded with the entry id it answers.
async fn log_ai_context_once(l: Load, _: u64) -> bool {
    let key = format!("key-{}", Uuid::new_v4());
    let req = l.request(log_entry(l.t.org, &key));
    let mut c = proto::ai_context_service_client::AiContextServiceClient::new(l.channel.clone());
    let (mut call, r) =
        timed_call(LOG_AI_CONTEXT, key, l.shape.deadline, c.log_ai_context(req)).await;
    call.id = r.as_ref().map(|r| r.id.clone());
    l.calls.push(call);
    r.is_some()
}

/// One LogAiContextStream of a new batch of keys.
async fn log_ai_context_stream_once(l: Load, _: u64) -> bool {
    let batch = format!("stream-{}", Uuid::new_v4());
    let msgs: Vec<proto::LogAiContextRequest> = stream_keys(&batch, l.shape.stream_entries)
        .iter()
        .map(|k| log_entry(l.t.org, k))
        .collect();
    let req = l.request(tokio_stream::iter(msgs));
    let mut c = proto::ai_context_service_client::AiContextServiceClient::new(l.channel.clone());
    l.timed(LOG_AI_CONTEXT_STREAM, batch, c.log_ai_context_stream(req))
        .await
}

/// One read, by turns: ListAiContext, GetMetricsAggregated,
/// UserHasOrgPermission (recorded without a marker).
async fn read_once(l: Load, round: u64) -> bool {
    let channel = l.channel.clone();
    match round % 3 {
        0 => {
            let mut c = proto::ai_context_service_client::AiContextServiceClient::new(channel);
            let call = c.list_ai_context(l.request(proto::ListAiContextRequest {
                organization_id: l.t.org.to_string(),
                page_size: 20,
                ..Default::default()
            }));
            l.timed("ListAiContext", String::new(), call).await
        }
        1 => {
            let mut c = proto::metrics_service_client::MetricsServiceClient::new(channel);
            let call = c.get_metrics_aggregated(l.request(aggregation(l.t.org)));
            l.timed("GetMetricsAggregated", String::new(), call).await
        }
        _ => {
            let permission = proto::UserHasOrgPermissionRequest {
                user_id: l.t.user.to_string(),
                organization_id: l.t.org.to_string(),
                required_role: proto::Role::Viewer as i32,
            };
            let mut c = proto::organization_service_client::OrganizationServiceClient::new(channel);
            let call = c.user_has_org_permission(l.request(permission));
            l.timed("UserHasOrgPermission", String::new(), call).await
        }
    }
}

/// One task per kind of write (and a reader), each calling in a loop until
/// `stop` ([`spawn_loop`]).
fn spawn_load(
    channel: &Channel,
    t: &Tenant,
    calls: &Calls,
    stop: &Arc<AtomicBool>,
    shape: Shape,
) -> Vec<JoinHandle<()>> {
    let load = Load {
        channel: channel.clone(),
        t: t.clone(),
        calls: calls.clone(),
        shape,
    };
    let mut tasks = vec![
        spawn_loop(&load, stop, record_metrics_once),
        spawn_loop(&load, stop, upsert_embeddings_once),
        spawn_loop(&load, stop, log_ai_context_once),
    ];
    if shape.stream_entries > 0 {
        tasks.push(spawn_loop(&load, stop, log_ai_context_stream_once));
    }
    if shape.reads {
        tasks.push(spawn_loop(&load, stop, read_once));
    }
    tasks
}

async fn stop_load(stop: &AtomicBool, tasks: Vec<JoinHandle<()>>) {
    stop.store(true, Ordering::Release);
    for t in tasks {
        tokio::time::timeout(SLACK + DEADLINE * 3, t)
            .await
            .expect("a load task ends once told to")
            .expect("a load task panicked");
    }
}

/// Points per batch marker (entity id) of `org`.
async fn metric_counts(pool: &PgPool, org: Uuid) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT entity_id::text, count(*) FROM time_series_metrics
         WHERE organization_id = $1 GROUP BY entity_id",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .expect("counting metric points")
    .into_iter()
    .collect()
}

/// Embeddings of posts per batch marker (model) of `org`.
async fn embedding_counts(pool: &PgPool, org: Uuid) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT model, count(*) FROM embeddings
         WHERE organization_id = $1 AND entity_type = 'post' GROUP BY model",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .expect("counting embeddings")
    .into_iter()
    .collect()
}

/// AI context entries of `org` per idempotency key: (an id, how many
/// entries, how many of them have their embedding).
async fn log_entries(pool: &PgPool, org: Uuid) -> HashMap<String, (String, i64, i64)> {
    sqlx::query_as::<_, (String, String, i64, i64)>(
        "SELECT l.idempotency_key, min(l.id::text), count(*), count(e.entity_id)
         FROM ai_context_logs l
         LEFT JOIN embeddings e ON e.organization_id = l.organization_id
              AND e.entity_type = 'ai_context' AND e.entity_id = l.id
         WHERE l.organization_id = $1 AND l.idempotency_key IS NOT NULL
         GROUP BY l.idempotency_key",
    )
    .bind(org)
    .fetch_all(pool)
    .await
    .expect("reading AI context entries")
    .into_iter()
    .map(|(k, id, n, emb)| (k, (id, n, emb)))
    .collect()
}

/// Every acknowledged write of `calls` is in the database, and every batch
/// (acknowledged or not) is all or none.
async fn assert_writes_kept(pool: &PgPool, org: Uuid, calls: &[Call], shape: Shape) {
    let metrics = metric_counts(pool, org).await;
    let embeddings = embedding_counts(pool, org).await;
    let logs = log_entries(pool, org).await;
    let mut acknowledged = 0;
    for c in calls.iter().filter(|c| !c.marker.is_empty()) {
        let (found, whole) = match c.rpc {
            RECORD_METRICS => (
                metrics.get(&c.marker).copied().unwrap_or(0),
                shape.metric_points as i64,
            ),
            UPSERT_EMBEDDINGS => (
                embeddings.get(&c.marker).copied().unwrap_or(0),
                shape.embeddings as i64,
            ),
            LOG_AI_CONTEXT => {
                let entry = logs.get(&c.marker);
                if let (Some((id, _, _)), Some(acked)) = (entry, &c.id) {
                    assert_eq!(id, acked, "the entry acknowledged for {}", c.marker);
                }
                match entry {
                    None => (0, 1),
                    Some((_, n, with_embedding)) => {
                        assert_eq!(
                            n, with_embedding,
                            "entry {} without its embedding",
                            c.marker
                        );
                        (*n, 1)
                    }
                }
            }
            LOG_AI_CONTEXT_STREAM => {
                let keys = stream_keys(&c.marker, shape.stream_entries);
                let n: i64 = keys
                    .iter()
                    .map(|k| {
                        logs.get(k).map_or(0, |(_, n, with_embedding)| {
                            assert_eq!(n, with_embedding, "entry {k} without its embedding");
                            *n
                        })
                    })
                    .sum();
                (n, shape.stream_entries as i64)
            }
            other => panic!("unexpected write {other}"),
        };
        if c.ok() {
            acknowledged += 1;
            assert_eq!(
                found, whole,
                "acknowledged {} {} is not (wholly) in the database",
                c.rpc, c.marker
            );
        } else {
            assert!(
                found == 0 || found == whole,
                "unacknowledged {} {} is half-written: {found} of {whole} rows",
                c.rpc,
                c.marker
            );
        }
    }
    assert!(acknowledged > 0, "the load had acknowledged writes");
}

/// Calls that failed otherwise than `allowed`, or outlived their deadline
/// by more than SLACK.
fn misbehaving(calls: &[Call], allowed: &[Code], deadline: Duration) -> Vec<String> {
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
fn sent(calls: &[Call]) -> Vec<Call> {
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

/// The statuses a health watch has seen so far, and the task that collects
/// them ([`watch_health`]).
type Watch = (Arc<Mutex<Vec<i32>>>, JoinHandle<()>);

/// A health Watch stream on a connection of its own.
async fn health_watch(svc: &ServiceProcess) -> tonic::Streaming<HealthCheckResponse> {
    let channel = Channel::from_shared(format!("http://{}", svc.addr))
        .expect("a channel URL")
        .connect()
        .await
        .expect("connecting");
    HealthClient::new(channel)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watching health")
        .into_inner()
}

/// The next status a health watch sends, if any.
async fn next_status(watch: &mut tonic::Streaming<HealthCheckResponse>) -> Option<i32> {
    watch.next().await.and_then(|r| r.ok()).map(|r| r.status)
}

/// Every status a health Watch stream (on a connection of its own) sends,
/// from the first one (received before this returns) until the task is
/// aborted.
async fn watch_health(svc: &ServiceProcess) -> Watch {
    let mut watch = health_watch(svc).await;
    let first = next_status(&mut watch)
        .await
        .expect("a first health status");
    let seen = Arc::new(Mutex::new(vec![first]));
    let task = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while let Some(Ok(r)) = watch.next().await {
                seen.lock().expect("health lock").push(r.status);
            }
        })
    };
    (seen, task)
}

/// Waits until a watch has seen health go NOT_SERVING (`watched`): the
/// service has noticed the database is gone.
async fn wait_not_serving(watched: &Mutex<Vec<i32>>) {
    eventually(RECOVERY, || async {
        let statuses = watched.lock().expect("health lock").clone();
        seen(
            statuses.contains(&(ServingStatus::NotServing as i32)),
            format!("health: {statuses:?} (1 SERVING, 2 NOT_SERVING)"),
        )
    })
    .await;
}

/// Health went NOT_SERVING and then SERVING again, as `seen` by a watch.
fn assert_health_followed_the_database(seen: &Mutex<Vec<i32>>) {
    let seen = seen.lock().expect("health lock").clone();
    let (serving, not_serving) = (
        ServingStatus::Serving as i32,
        ServingStatus::NotServing as i32,
    );
    let down = seen.iter().position(|s| *s == not_serving);
    assert!(
        down.is_some_and(|i| seen[i..].contains(&serving)),
        "health: {seen:?} (1 SERVING, 2 NOT_SERVING)"
    );
}

async fn wait_health(svc: &ServiceProcess, want: ServingStatus, within: Duration) {
    eventually(within, || async {
        let health = svc.health().await;
        seen(
            health == Some(want),
            format!("health {health:?}, not {want:?}:\n{}", svc.log()),
        )
    })
    .await;
}

/// SIGTERM, then a clean exit within the grace period (the service's
/// default of 30 s, plus slack).
async fn terminate(mut svc: ServiceProcess) -> String {
    svc.signal(libc::SIGTERM);
    let status = svc.wait_exit(Duration::from_secs(40)).await;
    let log = svc.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} after SIGTERM:\n{log}"
    );
    log
}

fn assert_no_panic(log: &str) {
    assert!(!log.contains("panicked"), "the service panicked:\n{log}");
}

// --- The database restarted under a load ---------------------------------

/// The load the database outages meet: every writer but the stream, and
/// the reader.
const OUTAGE_LOAD: Shape = Shape {
    metric_points: 20,
    embeddings: 3,
    stream_entries: 0,
    reads: true,
    deadline: DEADLINE,
};
/// A load's calls, its stop flag and its tasks.
type RunningLoad = (Calls, Arc<AtomicBool>, Vec<JoinHandle<()>>);

/// The writers of [`OUTAGE_LOAD`].
const OUTAGE_WRITERS: [&str; 3] = [RECORD_METRICS, UPSERT_EMBEDDINGS, LOG_AI_CONTEXT];

/// A service over a database of its own, under [`OUTAGE_LOAD`] (each
/// writer has succeeded three times), with its health watched: the
/// database (which keeps every commit through a crash: `synchronous_commit`
/// on), the service, its tenant, the watch ([`watch_health`]) and the load
/// (its calls, its stop, its tasks).
async fn under_load() -> (TestDb, ServiceProcess, Tenant, Watch, RunningLoad) {
    let db = TestDb::empty_durable().await;
    let mut svc = ServiceProcess::spawn(&db.url, &[]);
    svc.wait_serving(STARTUP).await;
    let t = new_tenant(&svc.channel).await;
    let watch = watch_health(&svc).await;
    let (calls, stop) = (Calls::default(), Arc::new(AtomicBool::new(false)));
    let tasks = spawn_load(&svc.channel, &t, &calls, &stop, OUTAGE_LOAD);
    calls
        .wait_oks(&OUTAGE_WRITERS, 3, Instant::now(), RECOVERY)
        .await;
    (db, svc, t, watch, (calls, stop, tasks))
}

/// Restarts PostgreSQL in `mode` while four clients write and read with a
/// deadline, then checks every call, health, and every acknowledged write.
/// Seen failing: with `synchronous_commit` off (immediate mode loses
/// acknowledged writes); health never left SERVING before the service
/// probed the database.
async fn database_restart_under_load(mode: ShutdownMode) {
    // synchronous_commit on: an immediate shutdown must not lose what the
    // service acknowledged (with the throwaway default, off, this test
    // fails: acknowledged commits still in WAL buffers are lost).
    let (mut db, svc, t, (health, watcher), (calls, stop, tasks)) = under_load().await;
    let (shape, writers) = (OUTAGE_LOAD, OUTAGE_WRITERS);
    let readers = [
        "ListAiContext",
        "GetMetricsAggregated",
        "UserHasOrgPermission",
    ];

    let down = Instant::now();
    tokio::task::block_in_place(|| db.cluster().stop_with(mode)).expect("stopping PostgreSQL");
    // A while without any server: calls must fail fast, not wait. Until
    // the service has noticed, and each writer has met the outage.
    wait_not_serving(&health).await;
    calls
        .wait_for(Code::Unavailable, &writers, 3, down, RECOVERY)
        .await;
    tokio::task::block_in_place(|| db.cluster().restart_stopped())
        .expect("starting PostgreSQL again");
    let up = Instant::now();

    // The service recovers by itself: each kind of call succeeds again.
    calls.wait_oks(&writers, 3, up, RECOVERY).await;
    calls.wait_oks(&readers, 1, up, RECOVERY).await;
    wait_health(&svc, ServingStatus::Serving, RECOVERY).await;
    stop_load(&stop, tasks).await;
    watcher.abort();
    assert_health_followed_the_database(&health);

    let all = calls.all();
    let during: Vec<&Call> = all
        .iter()
        .filter(|c| c.started >= down && c.started < up)
        .collect();
    let unavailable = all
        .iter()
        .filter(|c| c.code == Some(Code::Unavailable))
        .count();
    eprintln!(
        "{mode:?}: {} calls, {} while PostgreSQL was down, {unavailable} UNAVAILABLE",
        all.len(),
        during.len()
    );
    // The outage was seen by the clients (else this test proved nothing).
    assert!(unavailable > 0, "no call failed during the outage");
    let bad = misbehaving(&all, &[Code::Ok, Code::Unavailable], DEADLINE);
    assert!(
        bad.is_empty(),
        "calls that were neither OK nor UNAVAILABLE within their deadline: {bad:#?}\n{}",
        svc.log()
    );
    assert_writes_kept(&db.pool, t.org, &all, shape).await;
    let log = terminate(svc).await;
    assert_no_panic(&log);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_fast_restart_under_load_gives_unavailable_then_recovers_and_keeps_acknowledged_writes(
) {
    database_restart_under_load(ShutdownMode::Fast).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_crash_restart_under_load_gives_unavailable_then_recovers_and_keeps_acknowledged_writes(
) {
    database_restart_under_load(ShutdownMode::Immediate).await;
}

/// PostgreSQL up but refusing connections (57P03, as during a long crash
/// recovery) for longer than the calls' deadline: the calls must still end
/// UNAVAILABLE, within their deadline, not DEADLINE_EXCEEDED after waiting
/// for a connection that cannot come. Seen failing before the service
/// probed the database: every call waiting then ended DEADLINE_EXCEEDED
/// (sqlx's pool retries "not accepting connections" until its 10 s acquire
/// timeout).
#[tokio::test(flavor = "multi_thread")]
async fn while_the_database_refuses_connections_during_recovery_calls_are_unavailable_within_their_deadline(
) {
    let (mut db, svc, t, (health, watcher), (calls, stop, tasks)) = under_load().await;
    let (shape, writers) = (OUTAGE_LOAD, OUTAGE_WRITERS);

    tokio::task::block_in_place(|| {
        db.cluster().stop_with(ShutdownMode::Fast)?;
        db.cluster().start_refusing_connections()
    })
    .expect("restarting PostgreSQL as a standby");
    let refusing = Instant::now();
    // Calls meet the refusing server for longer than their deadline: until
    // the service has noticed, and each writer has been refused a call it
    // made a deadline after the refusals began.
    wait_not_serving(&health).await;
    calls
        .wait_for(
            Code::Unavailable,
            &writers,
            1,
            refusing + DEADLINE,
            RECOVERY,
        )
        .await;
    tokio::task::block_in_place(|| db.cluster().promote()).expect("promoting PostgreSQL");
    let up = Instant::now();
    calls.wait_oks(&writers, 3, up, RECOVERY).await;
    wait_health(&svc, ServingStatus::Serving, RECOVERY).await;
    stop_load(&stop, tasks).await;
    watcher.abort();
    assert_health_followed_the_database(&health);

    let all = calls.all();
    let refused: Vec<&Call> = all
        .iter()
        .filter(|c| c.started >= refusing && c.started + c.elapsed < up)
        .collect();
    assert!(!refused.is_empty(), "calls met the refusing server");
    let bad = misbehaving(&all, &[Code::Ok, Code::Unavailable], DEADLINE);
    assert!(
        bad.is_empty(),
        "calls that were neither OK nor UNAVAILABLE within their deadline: {bad:#?}"
    );
    assert_writes_kept(&db.pool, t.org, &all, shape).await;
    let log = terminate(svc).await;
    assert_no_panic(&log);
}

// --- SIGKILL of the service under a write load -----------------------------
//
// Where the kill lands is chance: a batch written in several transactions
// would show half-written only when the kill hits one mid-way (large
// batches make that likely). The duplicate checks do not depend on chance:
// acknowledged writes are retried too, and a key or natural key that did
// not hold would store them twice.

/// Retries an unacknowledged idempotent write with the same keys; returns
/// whether the answer says the database had it already (always false for
/// an upsert, whose answer does not tell), and LogAiContext's entry id.
async fn retry(channel: &Channel, t: &Tenant, c: &Call, shape: Shape) -> (bool, Option<String>) {
    let token = &t.token;
    match c.rpc {
        RECORD_METRICS => {
            // The same batch under the same idempotency key.
            let mut client =
                proto::metrics_service_client::MetricsServiceClient::new(channel.clone());
            let batch: Uuid = c.marker.parse().expect("a batch marker");
            let r = client
                .record_metrics(authed(
                    metric_batch(t.org, batch, shape.metric_points),
                    token,
                ))
                .await
                .unwrap_or_else(|s| panic!("retrying {}: {s}", c.marker))
                .into_inner();
            assert_eq!(r.recorded, shape.metric_points as u32);
            (r.duplicate, None)
        }
        UPSERT_EMBEDDINGS => {
            // The same batch again: the same natural keys.
            let mut client =
                proto::similarity_service_client::SimilarityServiceClient::new(channel.clone());
            let batch: Uuid = c
                .marker
                .trim_start_matches("batch-")
                .parse()
                .expect("a batch marker");
            let r = client
                .upsert_embeddings(authed(
                    embedding_batch(t.org, batch, shape.embeddings),
                    token,
                ))
                .await
                .unwrap_or_else(|s| panic!("retrying {}: {s}", c.marker))
                .into_inner();
            assert_eq!(r.upserted, shape.embeddings as u32);
            (false, None)
        }
        LOG_AI_CONTEXT => {
            let mut client =
                proto::ai_context_service_client::AiContextServiceClient::new(channel.clone());
            let r = client
                .log_ai_context(authed(log_entry(t.org, &c.marker), token))
                .await
                .unwrap_or_else(|s| panic!("retrying {}: {s}", c.marker))
                .into_inner();
            (r.duplicate, Some(r.id))
        }
        LOG_AI_CONTEXT_STREAM => {
            let mut client =
                proto::ai_context_service_client::AiContextServiceClient::new(channel.clone());
            let msgs: Vec<proto::LogAiContextRequest> =
                stream_keys(&c.marker, shape.stream_entries)
                    .iter()
                    .map(|k| log_entry(t.org, k))
                    .collect();
            let r = client
                .log_ai_context_stream(authed(tokio_stream::iter(msgs), token))
                .await
                .unwrap_or_else(|s| panic!("retrying {}: {s}", c.marker))
                .into_inner();
            assert_eq!(
                r.stored + r.duplicates,
                shape.stream_entries as u64,
                "a retried stream answers for each entry"
            );
            (r.duplicates > 0, None)
        }
        _ => (false, None),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_sigkill_mid_write_acknowledged_writes_are_kept_batches_are_whole_and_retries_add_no_duplicates(
) {
    let db = TestDb::empty().await;
    let mut svc = ServiceProcess::spawn(&db.url, &[]);
    svc.wait_serving(STARTUP).await;
    let t = new_tenant(&svc.channel).await;
    // Large batches: a kill is likely to find some of them mid-write.
    let shape = Shape {
        metric_points: 2000,
        embeddings: 50,
        stream_entries: 50,
        reads: false,
        deadline: Duration::from_secs(10),
    };
    let writers = [
        RECORD_METRICS,
        UPSERT_EMBEDDINGS,
        LOG_AI_CONTEXT,
        LOG_AI_CONTEXT_STREAM,
    ];
    let (calls, stop) = (Calls::default(), Arc::new(AtomicBool::new(false)));
    let tasks = spawn_load(&svc.channel, &t, &calls, &stop, shape);
    calls.wait_oks(&writers, 2, Instant::now(), RECOVERY).await;
    svc.signal(libc::SIGKILL);
    stop.store(true, Ordering::Release);
    let status = svc.wait_exit(Duration::from_secs(10)).await;
    assert!(status.is_some_and(|s| !s.success()), "killed: {status:?}");
    stop_load(&stop, tasks).await;
    let all = calls.all();
    let unacknowledged: Vec<&Call> = all.iter().filter(|c| !c.ok()).collect();
    eprintln!(
        "{} writes, {} unacknowledged",
        all.len(),
        unacknowledged.len()
    );

    // Restarted, the service serves the same database.
    let mut svc = ServiceProcess::spawn(&db.url, &[]);
    svc.wait_serving(STARTUP).await;
    assert_writes_kept(&db.pool, t.org, &all, shape).await;

    // Idempotent retries of what was not acknowledged, and of a few
    // acknowledged writes: a client cannot tell an unacknowledged write that
    // was stored from one that was not, and these were surely stored, so
    // the duplicate case is exercised whatever the kill hit.
    let mut retried: Vec<&Call> = unacknowledged.clone();
    for rpc in [
        RECORD_METRICS,
        UPSERT_EMBEDDINGS,
        LOG_AI_CONTEXT,
        LOG_AI_CONTEXT_STREAM,
    ] {
        retried.extend(all.iter().filter(|c| c.ok() && c.rpc == rpc).take(3));
    }
    let metrics_before = metric_counts(&db.pool, t.org).await;
    let before = log_entries(&db.pool, t.org).await;
    for c in &retried {
        match c.rpc {
            LOG_AI_CONTEXT => {
                let stored = before.get(&c.marker).map(|e| e.0.clone());
                let (duplicate, id) = retry(&svc.channel, &t, c, shape).await;
                assert_eq!(
                    duplicate,
                    stored.is_some(),
                    "a retry of {} reports a duplicate exactly when it was stored",
                    c.marker
                );
                if stored.is_some() {
                    assert_eq!(id, stored, "a duplicate answers the first entry's id");
                }
            }
            LOG_AI_CONTEXT_STREAM => {
                let was_there = before.contains_key(&stream_keys(&c.marker, 1)[0]);
                assert_eq!(
                    retry(&svc.channel, &t, c, shape).await.0,
                    was_there,
                    "a retried stream {} reports duplicates exactly when it was stored",
                    c.marker
                );
            }
            UPSERT_EMBEDDINGS => {
                retry(&svc.channel, &t, c, shape).await;
            }
            RECORD_METRICS => {
                let was_there = metrics_before.contains_key(&c.marker);
                assert_eq!(
                    retry(&svc.channel, &t, c, shape).await.0,
                    was_there,
                    "a retried metric batch {} reports a duplicate exactly when it was stored",
                    c.marker
                );
            }
            _ => {}
        }
    }
    // Keyed metric batches, acknowledged or retried, sent once or twice:
    // each is there once, whole.
    let metrics = metric_counts(&db.pool, t.org).await;
    for c in all.iter().filter(|c| c.rpc == RECORD_METRICS) {
        assert_eq!(
            metrics.get(&c.marker).copied().unwrap_or(0),
            shape.metric_points as i64,
            "metric batch {}",
            c.marker
        );
    }
    // Natural keys: a retried batch replaces its own rows; each batch, sent
    // once or twice, is there once, whole.
    let embeddings = embedding_counts(&db.pool, t.org).await;
    for c in all.iter().filter(|c| c.rpc == UPSERT_EMBEDDINGS) {
        assert_eq!(
            embeddings.get(&c.marker).copied().unwrap_or(0),
            shape.embeddings as i64,
            "{}",
            c.marker
        );
    }
    let after = log_entries(&db.pool, t.org).await;
    for (key, (_, n, with_embedding)) in &after {
        assert_eq!(*n, 1, "idempotency key {key} stored {n} times");
        assert_eq!(*with_embedding, 1, "entry {key} has its embedding once");
    }
    for c in &unacknowledged {
        match c.rpc {
            LOG_AI_CONTEXT => assert!(after.contains_key(&c.marker), "retried {} stored", c.marker),
            LOG_AI_CONTEXT_STREAM => {
                for k in stream_keys(&c.marker, shape.stream_entries) {
                    assert!(after.contains_key(&k), "retried {k} stored");
                }
            }
            _ => {}
        }
    }
    // An acknowledged entry keeps its first id through the retries.
    for c in all.iter().filter(|c| c.ok() && c.rpc == LOG_AI_CONTEXT) {
        assert_eq!(
            after.get(&c.marker).map(|e| &e.0),
            c.id.as_ref(),
            "{}",
            c.marker
        );
    }
    let log = terminate(svc).await;
    assert_no_panic(&log);
}

// --- SIGTERM under load -----------------------------------------------------
//
// Seen failing with AFFINITY_SHUTDOWN_GRACE_SECS=0: the in-flight call is
// cut off ("transport error").

#[tokio::test(flavor = "multi_thread")]
async fn on_sigterm_health_goes_not_serving_in_flight_calls_finish_new_ones_are_refused_and_the_exit_is_clean(
) {
    let db = TestDb::empty().await;
    let mut svc = ServiceProcess::spawn(&db.url, &[("AFFINITY_SHUTDOWN_GRACE_SECS", "20")]);
    svc.wait_serving(STARTUP).await;
    let t = new_tenant(&svc.channel).await;
    let post = Uuid::new_v4();
    let mut sim =
        proto::similarity_service_client::SimilarityServiceClient::new(svc.channel.clone());
    let model = "locked-model";
    let first = proto::UpsertEmbeddingsRequest {
        organization_id: t.org.to_string(),
        embeddings: vec![proto::EmbeddingRecord {
            entity: entity(post),
            vector: vector(1),
            model: model.into(),
        }],
    };
    sim.upsert_embeddings(authed(first, &t.token))
        .await
        .expect("the first upsert");

    // The test holds the row: an update of it waits, in flight, until the
    // test lets it go.
    let mut lock = db.pool.begin().await.expect("a transaction of the test");
    sqlx::query(
        "SELECT 1 FROM embeddings WHERE organization_id = $1 AND entity_id = $2 FOR UPDATE",
    )
    .bind(t.org)
    .bind(post)
    .execute(&mut *lock)
    .await
    .expect("locking the embedding");
    let slow = {
        let mut sim = sim.clone();
        let req = proto::UpsertEmbeddingsRequest {
            organization_id: t.org.to_string(),
            embeddings: vec![proto::EmbeddingRecord {
                entity: entity(post),
                vector: vector(2),
                model: model.into(),
            }],
        };
        let req = with_deadline(req, &t.token, Duration::from_secs(60));
        tokio::spawn(async move { sim.upsert_embeddings(req).await })
    };
    eventually(Duration::from_secs(20), || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = 'affinity' AND wait_event_type = 'Lock'",
        )
        .fetch_one(&db.pool)
        .await
        .expect("reading pg_stat_activity");
        seen(waiting > 0, "the upsert never waited on the lock")
    })
    .await;

    // Quick calls keep coming on the same connection meanwhile.
    let shape = Shape {
        metric_points: 5,
        embeddings: 1,
        stream_entries: 0,
        reads: true,
        deadline: DEADLINE,
    };
    let (calls, stop) = (Calls::default(), Arc::new(AtomicBool::new(false)));
    let tasks = spawn_load(&svc.channel, &t, &calls, &stop, shape);
    calls
        .wait_oks(
            &[RECORD_METRICS, "ListAiContext"],
            1,
            Instant::now(),
            RECOVERY,
        )
        .await;

    let mut watch = health_watch(&svc).await;
    let first = next_status(&mut watch).await;
    assert_eq!(first, Some(ServingStatus::Serving as i32));

    svc.signal(libc::SIGTERM);
    let next = tokio::time::timeout(Duration::from_secs(10), next_status(&mut watch))
        .await
        .expect("a health update after SIGTERM");
    assert_eq!(next, Some(ServingStatus::NotServing as i32));
    drop(watch);
    // The slow call holds the service up: it cannot have exited.
    assert!(!svc.has_exited(), "exited with a call in flight");

    // New calls, on a new connection and on the old one, are refused
    // cleanly (the first ones may still have been accepted an instant
    // before the listener closed).
    let refusals = Calls::default();
    let until = Instant::now() + RECOVERY;
    loop {
        let fresh = Channel::from_shared(format!("http://{}", svc.addr))
            .expect("a channel URL")
            .connect_lazy();
        for (name, channel) in [
            ("new connection", fresh),
            ("old connection", svc.channel.clone()),
        ] {
            let mut orgs =
                proto::organization_service_client::OrganizationServiceClient::new(channel);
            let req = proto::ListMembersRequest {
                organization_id: t.org.to_string(),
            };
            timed(
                &refusals,
                name,
                String::new(),
                DEADLINE,
                orgs.list_members(with_deadline(req, &t.token, DEADLINE)),
            )
            .await;
        }
        let all = refusals.all();
        let bad = misbehaving(&sent(&all), &[Code::Ok, Code::Unavailable], DEADLINE);
        assert!(bad.is_empty(), "new calls after SIGTERM: {bad:#?}");
        // Done when a new connection is refused and the old one serves
        // no more.
        let last: Vec<Option<Code>> = all.iter().rev().take(2).map(|c| c.code).collect();
        if last[1] == Some(Code::Unavailable) && last[0] != Some(Code::Ok) {
            break;
        }
        let all: Vec<String> = all.iter().map(Call::brief).collect();
        assert!(Instant::now() < until, "new calls still served: {all:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop_load(&stop, tasks).await;

    // Released, the in-flight call completes and the service exits cleanly.
    lock.rollback().await.expect("releasing the lock");
    let slow = tokio::time::timeout(Duration::from_secs(30), slow)
        .await
        .expect("the in-flight call ends")
        .expect("the in-flight call's task");
    assert_eq!(
        slow.as_ref()
            .map(|_| ())
            .map_err(|s| (s.code(), s.message().to_string())),
        Ok(()),
        "the in-flight call completes"
    );
    let status = svc.wait_exit(Duration::from_secs(30)).await;
    let log = svc.log();
    assert!(
        status.is_some_and(|s| s.success()),
        "exit {status:?}:\n{log}"
    );
    assert!(
        !log.contains("still running after the grace period"),
        "drained within the grace period:\n{log}"
    );
    assert_no_panic(&log);
    // The load's calls were OK (in flight) or refused cleanly.
    let bad = misbehaving(
        &sent(&calls.all()),
        &[Code::Ok, Code::Unavailable],
        DEADLINE,
    );
    assert!(bad.is_empty(), "calls of the load: {bad:#?}");
    let stored: Vec<f32> = sqlx::query_scalar::<_, pgvector::Vector>(
        "SELECT embedding FROM embeddings WHERE organization_id = $1 AND entity_id = $2",
    )
    .bind(t.org)
    .bind(post)
    .fetch_one(&db.pool)
    .await
    .expect("the embedding")
    .to_vec();
    assert_eq!(stored, vector(2), "the in-flight write is committed");
}

// --- Replicas started together -------------------------------------------

/// The versions of the migration files in `migrations/` (what the binary
/// bundles), from their names: `<version>_<description>.sql`.
fn bundled_migrations() -> Vec<i64> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut versions: Vec<i64> = std::fs::read_dir(dir)
        .expect("reading migrations/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".sql") && !name.ends_with(".down.sql"))
        .filter_map(|name| name.split('_').next()?.parse().ok())
        .collect();
    versions.sort_unstable();
    versions
}

/// `n` replicas started at the same moment on `db`: the migrations are
/// applied once, no replica logs an error, each serves an authenticated
/// call. Seen failing with sqlx's migration lock turned off: replicas exit
/// with status 1 on migrations another one applied meanwhile.
async fn replicas_start_together(db: &TestDb, n: usize) {
    let mut replicas: Vec<ServiceProcess> = (0..n)
        .map(|_| ServiceProcess::spawn(&db.url, &[]))
        .collect();
    for r in &mut replicas {
        r.wait_serving(STARTUP).await;
    }
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&db.pool)
            .await
            .expect("reading _sqlx_migrations");
    let bundled: Vec<(i64, bool)> = bundled_migrations()
        .into_iter()
        .map(|v| (v, true))
        .collect();
    assert_eq!(
        applied, bundled,
        "each migration applied once, successfully"
    );
    for (i, r) in replicas.iter().enumerate() {
        let t = new_tenant(&r.channel).await;
        let list =
            proto::organization_service_client::OrganizationServiceClient::new(r.channel.clone())
                .list_user_organizations(authed(
                    proto::ListUserOrganizationsRequest {
                        user_id: t.user.to_string(),
                    },
                    &t.token,
                ))
                .await
                .unwrap_or_else(|s| panic!("replica {i}: {s}"))
                .into_inner();
        let orgs: Vec<String> = list
            .memberships
            .iter()
            .filter_map(|m| m.organization.as_ref().map(|o| o.id.clone()))
            .collect();
        assert!(orgs.contains(&t.org.to_string()), "replica {i}: {orgs:?}");
    }
    for (i, r) in replicas.into_iter().enumerate() {
        let log = terminate(r).await;
        assert!(
            !log.contains(" ERROR "),
            "replica {i} logged an error:\n{log}"
        );
        assert_no_panic(&log);
    }
}

async fn replicas_on_a_legacy_database(n: usize) {
    let (db, stats) = TestDb::legacy(&LegacyConfig::small()).await;
    replicas_start_together(&db, n).await;
    // Migrated once: not a legacy row lost or doubled, and the schema's
    // own integrity checks pass.
    let posts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts_unified")
        .fetch_one(&db.pool)
        .await
        .expect("counting posts");
    assert_eq!(posts as u64, stats.posts);
    let mut replica = ServiceProcess::spawn(&db.url, &[]);
    replica.wait_serving(STARTUP).await;
    let check =
        proto::maintenance_service_client::MaintenanceServiceClient::new(replica.channel.clone())
            .verify_migration_integrity(authed(
                proto::VerifyMigrationIntegrityRequest {},
                &service_token(),
            ))
            .await
            .expect("verifying the migration")
            .into_inner();
    assert!(check.all_passed, "{:#?}", check.checks);
    terminate(replica).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_started_together_on_an_empty_database_migrate_it_once_and_both_serve() {
    replicas_start_together(&TestDb::empty().await, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn four_replicas_started_together_on_an_empty_database_migrate_it_once_and_all_serve() {
    replicas_start_together(&TestDb::empty().await, 4).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_started_together_on_a_legacy_database_migrate_it_once_and_both_serve() {
    replicas_on_a_legacy_database(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn four_replicas_started_together_on_a_legacy_database_migrate_it_once_and_all_serve() {
    replicas_on_a_legacy_database(4).await;
}
