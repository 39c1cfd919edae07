//! SIGKILL mid-write: acknowledged writes kept, batches whole, retries add no duplicates.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use affinity::proto;
use tokio::time::Instant;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::calls::{Call, Calls};
use crate::common::process::ServiceProcess;
use crate::common::server::{authed, new_tenant, Tenant};
use crate::common::TestDb;
use crate::health::{assert_no_panic, terminate};
use crate::load::{
    spawn_load, stop_load, Shape, LOG_AI_CONTEXT, LOG_AI_CONTEXT_STREAM, RECORD_METRICS,
    UPSERT_EMBEDDINGS,
};
use crate::requests::{embedding_batch, log_entry, metric_batch, stream_keys};
use crate::stored::{assert_writes_kept, embedding_counts, log_entries, metric_counts};
use crate::{RECOVERY, STARTUP};

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
