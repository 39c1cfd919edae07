//! A metric batch retried with its idempotency key is stored once.

use crate::common::server::{authed, code, TestServer};
use crate::{point, record, record_req};
use affinity::proto;
use tonic::Code;
use uuid::Uuid;

// ------------------------------------------------------------ idempotency

fn keyed(org: Uuid, post_id: Uuid, n: usize, key: &str) -> proto::RecordMetricsRequest {
    let points = (0..n)
        .map(|i| point(post_id, "likes", i as f64, None))
        .collect();
    proto::RecordMetricsRequest {
        idempotency_key: key.to_string(),
        ..record_req(org, points)
    }
}

async fn points_of(s: &TestServer, org: Uuid, post_id: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM time_series_metrics WHERE organization_id = $1 AND entity_id = $2",
    )
    .bind(org)
    .bind(post_id)
    .fetch_one(&s.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metric_batch_retried_with_its_idempotency_key_is_stored_once() {
    let s = TestServer::start().await;
    let (a, b) = (s.new_tenant().await, s.new_tenant().await);
    let p = Uuid::new_v4();
    let send = |org: Uuid, token: String, key: &'static str| {
        let mut c = s.metrics();
        async move {
            c.record_metrics(authed(keyed(org, p, 3, key), &token))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let first = send(a.org, a.token.clone(), "batch-1").await;
    assert_eq!((first.recorded, first.duplicate), (3, false));
    let again = send(a.org, a.token.clone(), "batch-1").await;
    assert_eq!((again.recorded, again.duplicate), (3, true));
    assert_eq!(points_of(&s, a.org, p).await, 3, "the retry stored nothing");
    // Another key, and the same key in another organization, are new batches.
    let other = send(a.org, a.token.clone(), "batch-2").await;
    assert!(!other.duplicate);
    assert_eq!(points_of(&s, a.org, p).await, 6);
    let elsewhere = send(b.org, b.token.clone(), "batch-1").await;
    assert!(!elsewhere.duplicate);
    assert_eq!(points_of(&s, b.org, p).await, 3);
    // Without a key, every call appends.
    record(&s, &a.token, a.org, vec![point(p, "likes", 1.0, None)]).await;
    record(&s, &a.token, a.org, vec![point(p, "likes", 1.0, None)]).await;
    assert_eq!(points_of(&s, a.org, p).await, 8);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_retries_of_a_keyed_metric_batch_store_it_once() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let p = Uuid::new_v4();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let mut c = s.metrics();
            let req = authed(keyed(t.org, p, 500, "the-batch"), &t.token);
            tokio::spawn(async move { c.record_metrics(req).await })
        })
        .collect();
    let mut fresh = 0;
    for call in calls {
        let r = call
            .await
            .unwrap()
            .expect("each retry answers")
            .into_inner();
        assert_eq!(r.recorded, 500);
        if !r.duplicate {
            fresh += 1;
        }
    }
    assert_eq!(fresh, 1, "exactly one call stored the batch");
    assert_eq!(points_of(&s, t.org, p).await, 500);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_metric_idempotency_key_with_a_nul_byte_or_over_200_bytes_is_invalid() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    for key in ["nul\0key".to_string(), "k".repeat(201)] {
        let r = s
            .metrics()
            .record_metrics(authed(
                proto::RecordMetricsRequest {
                    idempotency_key: key,
                    ..record_req(t.org, vec![point(Uuid::new_v4(), "likes", 1.0, None)])
                },
                &t.token,
            ))
            .await;
        assert_eq!(code(r), Code::InvalidArgument);
    }
}
