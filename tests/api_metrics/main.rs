//! MetricsService through a real client, server and database.
#[path = "../common/mod.rs"]
mod common;

mod aggregation;
mod idempotency;
mod isolation;
mod roles;
mod storage;
mod validation;

use affinity::proto::{self, Granularity};
use chrono::{DateTime, Utc};
use common::server::{authed, TestServer};
use uuid::Uuid;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn ts(t: DateTime<Utc>) -> prost_types::Timestamp {
    affinity::api::to_timestamp(t)
}

fn from_ts(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().expect("a timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).unwrap()
}

fn post(id: Uuid) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: id.to_string(),
    })
}

fn point(entity: Uuid, name: &str, value: f64, when: Option<DateTime<Utc>>) -> proto::MetricPoint {
    proto::MetricPoint {
        entity: post(entity),
        metric_name: name.into(),
        value,
        recorded_at: when.map(ts),
    }
}

fn record_req(org: Uuid, points: Vec<proto::MetricPoint>) -> proto::RecordMetricsRequest {
    proto::RecordMetricsRequest {
        organization_id: org.to_string(),
        idempotency_key: String::new(),
        points,
    }
}

fn agg_req(
    org: Uuid,
    entity: Uuid,
    name: &str,
    granularity: Granularity,
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
    time_zone: &str,
) -> proto::GetMetricsAggregatedRequest {
    proto::GetMetricsAggregatedRequest {
        organization_id: org.to_string(),
        entity: post(entity),
        metric_name: name.into(),
        granularity: granularity as i32,
        start: start.map(ts),
        end: end.map(ts),
        time_zone: time_zone.into(),
        ..Default::default()
    }
}

async fn record(s: &TestServer, token: &str, org: Uuid, points: Vec<proto::MetricPoint>) -> u32 {
    s.metrics()
        .record_metrics(authed(record_req(org, points), token))
        .await
        .expect("recording metrics")
        .into_inner()
        .recorded
}

async fn buckets(
    s: &TestServer,
    token: &str,
    req: proto::GetMetricsAggregatedRequest,
) -> Vec<proto::MetricBucket> {
    s.metrics()
        .get_metrics_aggregated(authed(req, token))
        .await
        .expect("aggregating metrics")
        .into_inner()
        .buckets
}

/// (bucket start, count) of each bucket.
fn starts_and_counts(b: &[proto::MetricBucket]) -> Vec<(DateTime<Utc>, u64)> {
    b.iter()
        .map(|b| (from_ts(&b.bucket_start), b.count))
        .collect()
}

async fn stored_points(s: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM time_series_metrics WHERE source = 'api'")
        .fetch_one(&s.db.pool)
        .await
        .unwrap()
}
