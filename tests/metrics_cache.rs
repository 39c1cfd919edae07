//! The metrics cache: each replica keeps aggregations it has answered, and
//! a change to their points, however it is made, reaches every replica
//! within a second (at once on the replica that made it).
mod common;

use std::time::Duration;

use affinity::proto::{self, Granularity, Role};
use chrono::{DateTime, Utc};
use common::changes::{membership_caught_up, metrics_caught_up};
use common::server::{authed, code, service_token, user_token, TestServer};
use common::wait::{eventually, seen};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tonic::transport::Channel;
use tonic::Code;
use uuid::Uuid;

type Metrics = proto::metrics_service_client::MetricsServiceClient<Channel>;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn post(id: Uuid) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: id.to_string(),
    })
}

/// Daily `views` of `entity` over January 2026.
fn january(org: Uuid, entity: Uuid) -> proto::GetMetricsAggregatedRequest {
    proto::GetMetricsAggregatedRequest {
        organization_id: org.to_string(),
        entity: post(entity),
        metric_name: "views".into(),
        granularity: Granularity::Day as i32,
        start: Some(affinity::api::to_timestamp(at("2026-01-01T00:00:00Z"))),
        end: Some(affinity::api::to_timestamp(at("2026-02-01T00:00:00Z"))),
        time_zone: "UTC".into(),
        ..Default::default()
    }
}

/// The sum of every bucket of January, as `token` sees it.
async fn total(m: &Metrics, token: &str, org: Uuid, entity: Uuid, fresh: bool) -> f64 {
    let mut req = authed(january(org, entity), token);
    if fresh {
        req.metadata_mut()
            .insert("cache-control", "no-cache".parse().unwrap());
    }
    m.clone()
        .get_metrics_aggregated(req)
        .await
        .expect("aggregating")
        .into_inner()
        .buckets
        .iter()
        .map(|b| b.sum)
        .sum()
}

async fn record(m: &Metrics, token: &str, org: Uuid, entity: Uuid, value: f64) {
    m.clone()
        .record_metrics(authed(
            proto::RecordMetricsRequest {
                organization_id: org.to_string(),
                idempotency_key: String::new(),
                points: vec![proto::MetricPoint {
                    entity: post(entity),
                    metric_name: "views".into(),
                    value,
                    recorded_at: Some(affinity::api::to_timestamp(at("2026-01-15T12:00:00Z"))),
                }],
            },
            token,
        ))
        .await
        .expect("recording");
}

/// A point written by plain SQL (another tool), on 2026-01-20.
async fn insert(pool: &PgPool, org: Uuid, entity: Uuid, value: f64) {
    sqlx::query(
        "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         VALUES ($1, 'post', $2, 'views', $3, '2026-01-20T08:00:00Z')",
    )
    .bind(org)
    .bind(entity)
    .bind(value)
    .execute(pool)
    .await
    .unwrap();
}

async fn sql(pool: &PgPool, statement: &str) {
    if statement.starts_with("ALTER TABLE") {
        return common::alter_trigger(pool, statement).await;
    }
    sqlx::query(statement).execute(pool).await.unwrap();
}

/// How long a change may take to reach every replica's cached answers.
const PROPAGATION: Duration = Duration::from_secs(1);

/// Waits (at most [`PROPAGATION`]) until `m` answers `want` after `change`.
async fn answers_within_propagation(
    m: &Metrics,
    token: &str,
    org: Uuid,
    entity: Uuid,
    want: f64,
    change: &str,
) {
    eventually(PROPAGATION, || async {
        let got = total(m, token, org, entity, false).await;
        seen(got == want, format!("after {change}: {got}, want {want}"))
    })
    .await;
}

fn counter(scraped: &str, result: &str) -> f64 {
    let series = format!("affinity_metrics_cache_requests_total{{result=\"{result}\"}}");
    common::sample(scraped, &series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_aggregation_is_answered_from_memory_until_its_points_change_on_any_replica() {
    let s = TestServer::start_with_metrics().await;
    let other = s.replica().await;
    let (m, m_other) = (s.metrics(), Metrics::new(other.channel.clone()));
    let t = s.new_tenant().await;
    let p = Uuid::new_v4();
    record(&m, &t.token, t.org, p, 1.0).await;
    // That write's own announcement must have passed before the caches are
    // warmed (it would drop what it finds).
    for replica in [&s.channel, &other.channel] {
        metrics_caught_up(replica, &s.db.pool, t.org).await;
    }
    assert_eq!(total(&m, &t.token, t.org, p, false).await, 1.0);
    assert_eq!(total(&m_other, &t.token, t.org, p, false).await, 1.0);

    // The answer really comes from memory: a change the database does not
    // announce stays invisible, except to a client asking for a fresh read.
    let before = common::scrape(s.metrics_addr.unwrap()).await;
    sql(
        &s.db.pool,
        "ALTER TABLE time_series_metrics DISABLE TRIGGER metric_points_announce_insert",
    )
    .await;
    insert(&s.db.pool, t.org, p, 10.0).await;
    sql(
        &s.db.pool,
        "ALTER TABLE time_series_metrics ENABLE TRIGGER metric_points_announce_insert",
    )
    .await;
    // Had the insert been announced, the announcement would have been acted
    // on before a later one (a membership change: nothing else is still to
    // be announced).
    membership_caught_up(&s.channel, &s.db.pool, t.org).await;
    assert_eq!(
        total(&m, &t.token, t.org, p, false).await,
        1.0,
        "from memory"
    );
    let after = common::scrape(s.metrics_addr.unwrap()).await;
    assert_eq!(counter(&after, "hit"), counter(&before, "hit") + 1.0);
    assert_eq!(
        total(&m, &t.token, t.org, p, true).await,
        11.0,
        "a fresh read"
    );
    // The fresh answer replaced the stale one.
    assert_eq!(total(&m, &t.token, t.org, p, false).await, 11.0);

    // A point recorded through one replica reaches the other's cached answer
    // within a second.
    assert_eq!(total(&m_other, &t.token, t.org, p, false).await, 1.0);
    record(&m, &t.token, t.org, p, 100.0).await;
    answers_within_propagation(&m_other, &t.token, t.org, p, 111.0, "a recorded point").await;

    // So do changes made by plain SQL: an insert, an update, a delete, a
    // truncate.
    for (change, want) in [
        ("insert", 1111.0),
        (
            "UPDATE time_series_metrics SET value = value * 2 WHERE value = 1000",
            2111.0,
        ),
        ("DELETE FROM time_series_metrics WHERE value = 2000", 111.0),
        ("TRUNCATE time_series_metrics", 0.0),
    ] {
        // Both caches hold the current answer.
        let now = total(&m_other, &t.token, t.org, p, false).await;
        assert_eq!(total(&m, &t.token, t.org, p, false).await, now);
        match change {
            "insert" => insert(&s.db.pool, t.org, p, 1000.0).await,
            statement => sql(&s.db.pool, statement).await,
        }
        for replica in [&m, &m_other] {
            answers_within_propagation(replica, &t.token, t.org, p, want, change).await;
        }
    }
    other.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_reads_its_own_metric_writes_at_once() {
    let s = TestServer::start().await;
    let m = s.metrics();
    let t = s.new_tenant().await;
    let p = Uuid::new_v4();
    // No announcements at all: only the writing replica's own drop can
    // make its next read see the write.
    for trigger in ["insert", "delete"] {
        sql(
            &s.db.pool,
            &format!(
                "ALTER TABLE time_series_metrics DISABLE TRIGGER metric_points_announce_{trigger}"
            ),
        )
        .await;
    }
    assert_eq!(total(&m, &t.token, t.org, p, false).await, 0.0);
    record(&m, &t.token, t.org, p, 1.0).await;
    assert_eq!(total(&m, &t.token, t.org, p, false).await, 1.0);
    record(&m, &t.token, t.org, p, 2.0).await;
    assert_eq!(total(&m, &t.token, t.org, p, false).await, 3.0);

    // Archival through the replica: its next read no longer counts the points.
    let archived = s
        .maintenance()
        .archive_old_metrics(authed(
            proto::ArchiveOldMetricsRequest { older_than_days: 1 },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .archived;
    assert_eq!(archived, 2);
    assert_eq!(total(&m, &t.token, t.org, p, false).await, 0.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cached_aggregation_is_served_only_to_members_of_its_organization() {
    let s = TestServer::start().await;
    let m = s.metrics();
    let (a, b) = (s.new_tenant().await, s.new_tenant().await);
    let p = Uuid::new_v4();
    record(&m, &a.token, a.org, p, 5.0).await;
    // The write's own announcement has passed: the answer below stays cached.
    metrics_caught_up(&s.channel, &s.db.pool, a.org).await;
    assert_eq!(total(&m, &a.token, a.org, p, false).await, 5.0);
    assert_eq!(total(&m, &a.token, a.org, p, false).await, 5.0);

    // A stranger asking for the cached answer is refused, as without a cache.
    let r = m
        .clone()
        .get_metrics_aggregated(authed(january(a.org, p), &b.token))
        .await;
    assert_eq!(code(r), Code::PermissionDenied);
    // The same entity asked about in another organization is another series.
    assert_eq!(total(&m, &b.token, b.org, p, false).await, 0.0);
    // A member removed is refused at once, cached answer or not.
    let viewer = Uuid::new_v4();
    s.add_member(a.org, viewer, Role::Viewer).await;
    assert_eq!(total(&m, &user_token(viewer), a.org, p, false).await, 5.0);
    assert!(s.remove_member(a.org, viewer, &a.token).await);
    let r = m
        .clone()
        .get_metrics_aggregated(authed(january(a.org, p), &user_token(viewer)))
        .await;
    assert_eq!(code(r), Code::PermissionDenied);
}

async fn next(listener: &mut PgListener) -> String {
    tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .expect("an announcement")
        .unwrap()
        .payload()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_statement_touching_over_a_thousand_entities_announces_that_everything_changed() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut listener = PgListener::connect_with(&s.db.pool).await.unwrap();
    listener.listen("affinity_metrics").await.unwrap();
    let payloads = |n: usize| {
        format!(
            "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
             SELECT '{}', 'post', gen_random_uuid(), 'views', 1, '2026-01-20T08:00:00Z'
             FROM generate_series(1, {n})",
            t.org
        )
    };
    // A thousand entities: each announced by name.
    sql(&s.db.pool, &payloads(1000)).await;
    let mut named = 0;
    for _ in 0..1000 {
        let p = next(&mut listener).await;
        assert!(p.starts_with(&format!("{}:", t.org)), "{p}");
        named += 1;
    }
    assert_eq!(named, 1000);
    // One more: a single '*'.
    sql(&s.db.pool, &payloads(1001)).await;
    assert_eq!(next(&mut listener).await, "*");
    sql(&s.db.pool, &payloads(1)).await;
    let p = next(&mut listener).await;
    assert!(p.starts_with(&format!("{}:", t.org)), "only one '*': {p}");
    // An organization deleted takes its points along, announced too.
    sqlx::query("DELETE FROM organizations WHERE id = $1")
        .bind(t.org)
        .execute(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(next(&mut listener).await, "*", "2,002 entities at once");
}

#[tokio::test(flavor = "multi_thread")]
async fn filled_answers_share_the_cached_one_and_percentiles_are_cached_per_list() {
    let s = TestServer::start_with_metrics().await;
    let m = s.metrics();
    let t = s.new_tenant().await;
    let p = Uuid::new_v4();
    record(&m, &t.token, t.org, p, 3.0).await;
    record(&m, &t.token, t.org, p, 5.0).await;
    metrics_caught_up(&s.channel, &s.db.pool, t.org).await;
    let ask = |fill_gaps: bool, percentiles: Vec<f64>| {
        let m = m.clone();
        let req = proto::GetMetricsAggregatedRequest {
            fill_gaps,
            percentiles,
            ..january(t.org, p)
        };
        let token = t.token.clone();
        async move {
            m.clone()
                .get_metrics_aggregated(authed(req, &token))
                .await
                .expect("aggregating")
                .into_inner()
                .buckets
        }
    };
    let hits = || async { counter(&common::scrape(s.metrics_addr.unwrap()).await, "hit") };

    let unfilled = ask(false, vec![]).await;
    let before = hits().await;
    // The filled answer is the cached one, filled.
    let filled = ask(true, vec![]).await;
    assert_eq!(filled.len(), 31);
    assert_eq!(hits().await, before + 1.0);
    assert_eq!(
        filled
            .into_iter()
            .filter(|b| b.count > 0)
            .collect::<Vec<_>>(),
        unfilled
    );
    // Each list of percentiles is an answer of its own.
    let median = ask(true, vec![0.5]).await;
    assert_eq!(hits().await, before + 1.0);
    let median_again = ask(true, vec![0.5]).await;
    assert_eq!(hits().await, before + 2.0);
    assert_eq!(median, median_again);
    let top = ask(false, vec![1.0]).await;
    assert_eq!(top.len(), 1);
    assert_eq!(top[0].percentile_values, vec![5.0]);
    assert_eq!(median[14].percentile_values, vec![4.0]);
}
