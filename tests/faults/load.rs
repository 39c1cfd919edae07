//! Loads of concurrent writers (and a reader) calling in a loop until stopped.
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use affinity::proto;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::calls::{timed, timed_call, with_deadline, Calls};
use crate::common::server::{aggregation, Tenant};
use crate::requests::{embedding_batch, embedding_marker, log_entry, metric_batch, stream_keys};
use crate::{DEADLINE, SLACK};

/// What a load sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Points per RecordMetrics batch.
    pub(crate) metric_points: usize,
    /// Embeddings per UpsertEmbeddings batch.
    pub(crate) embeddings: usize,
    /// Entries per LogAiContextStream call (0: no stream writer).
    pub(crate) stream_entries: usize,
    /// Whether a reader task runs too.
    pub(crate) reads: bool,
    pub(crate) deadline: Duration,
}

pub(crate) const RECORD_METRICS: &str = "RecordMetrics";
pub(crate) const UPSERT_EMBEDDINGS: &str = "UpsertEmbeddings";
pub(crate) const LOG_AI_CONTEXT: &str = "LogAiContext";
pub(crate) const LOG_AI_CONTEXT_STREAM: &str = "LogAiContextStream";

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
pub(crate) fn spawn_load(
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

pub(crate) async fn stop_load(stop: &AtomicBool, tasks: Vec<JoinHandle<()>>) {
    stop.store(true, Ordering::Release);
    for t in tasks {
        tokio::time::timeout(SLACK + DEADLINE * 3, t)
            .await
            .expect("a load task ends once told to")
            .expect("a load task panicked");
    }
}
