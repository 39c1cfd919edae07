//! Knowing that a replica has caught up with the database's change
//! announcements (`src/caches/follow.rs`): a replica receives both caches'
//! channels on one listening connection, in commit order, so once it has
//! acted on an announcement committed now, it has acted on every one
//! committed before. Each probe below makes such an announcement and waits
//! until the replica's answers show it.
#![allow(dead_code)]

use std::time::Duration;

use affinity::proto;
use sqlx::PgPool;
use tonic::transport::Channel;
use uuid::Uuid;

use super::server::{authed, service_token, viewer_allowed};
use super::wait::eventually;

/// How long an announcement may take to be acted on: generous, it is
/// usually a few milliseconds.
const WITHIN: Duration = Duration::from_secs(10);

/// Waits until the replica behind `channel` has acted on every announcement
/// committed before the call, through the metrics channel: the daily
/// aggregation of a new entity of `org` is asked (so the answer, no points,
/// is cached), a point of it is inserted with plain SQL (announced), and the
/// aggregation is asked again until it counts the point. The probe's
/// announcement also drops whatever answers share its entity's generation
/// counter (one in 4,096): a test that needs a cached metrics answer to stay
/// uses [`membership_caught_up`] instead.
pub async fn metrics_caught_up(channel: &Channel, pool: &PgPool, org: Uuid) {
    let probe = Uuid::new_v4();
    let points = || async {
        let req = proto::GetMetricsAggregatedRequest {
            organization_id: org.to_string(),
            entity: Some(proto::EntityRef {
                entity_type: "post".into(),
                entity_id: probe.to_string(),
            }),
            metric_name: "caught-up-probe".into(),
            granularity: proto::Granularity::Day as i32,
            start: Some(prost_types::Timestamp {
                seconds: 1_767_225_600, // 2026-01-01T00:00:00Z
                nanos: 0,
            }),
            end: Some(prost_types::Timestamp {
                seconds: 1_767_312_000, // 2026-01-02T00:00:00Z
                nanos: 0,
            }),
            time_zone: "UTC".into(),
            ..Default::default()
        };
        let mut metrics = proto::metrics_service_client::MetricsServiceClient::new(channel.clone());
        let answer = metrics.get_metrics_aggregated(authed(req, &service_token()));
        let buckets = answer
            .await
            .expect("aggregating the probe")
            .into_inner()
            .buckets;
        buckets.iter().map(|b| b.count).sum::<u64>()
    };
    assert_eq!(points().await, 0, "a new probe has no points");
    execute(
        pool,
        "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         VALUES ($1, 'post', $2, 'caught-up-probe', 1, '2026-01-01T12:00:00Z')",
        (org, probe),
    )
    .await;
    eventually(WITHIN, || async {
        match points().await {
            1 => Ok(()),
            n => Err(format!("the probe's aggregation still counts {n} points")),
        }
    })
    .await;
}

/// [`metrics_caught_up`] through the membership channel, which leaves the
/// metrics cache alone: a new user's permission in `org` is asked (so "not a
/// member" is cached), the user is added with plain SQL (announced), and the
/// permission asked again until granted. Sound only when no membership
/// change is still to be announced: one arriving during the first question
/// keeps its answer out of the cache, and the probe then proves nothing.
pub async fn membership_caught_up(channel: &Channel, pool: &PgPool, org: Uuid) {
    let user = Uuid::new_v4();
    let allowed = || viewer_allowed(channel, user, org);
    // A profile first (not announced): a member needs one, and its
    // organization (any will do).
    execute(
        pool,
        "INSERT INTO user_profiles (id, organization_id) VALUES ($1, $2)",
        (user, org),
    )
    .await;
    assert!(!allowed().await, "a new user is not a member");
    execute(
        pool,
        "INSERT INTO organization_members (organization_id, user_id, role) VALUES ($1, $2, 'viewer')",
        (org, user),
    )
    .await;
    eventually(WITHIN, || async {
        super::wait::seen(allowed().await, "the probe user is still not a member")
    })
    .await;
}

/// Runs `statement` with `$1` and `$2` bound to `params`.
async fn execute(pool: &PgPool, statement: &str, params: (Uuid, Uuid)) {
    sqlx::query(statement)
        .bind(params.0)
        .bind(params.1)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}
