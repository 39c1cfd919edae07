//! GetMetricsAggregated with percentiles, through a real client, server and
//! database: within 1% rank error of the exact values, also after points
//! are deleted and archived.
mod common;

use affinity::proto::{self, Granularity};
use chrono::{DateTime, Duration, Utc};
use common::server::{authed, TestServer};
use common::TestDb;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tonic::metadata::MetadataValue;
use tonic::Code;
use uuid::Uuid;

const FRACTIONS: [f64; 7] = [0.0, 0.01, 0.25, 0.5, 0.9, 0.99, 1.0];

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .with_timezone(&Utc)
}

fn from_ts(t: &Option<prost_types::Timestamp>) -> DateTime<Utc> {
    let t = t.as_ref().expect("a timestamp");
    DateTime::from_timestamp(t.seconds, t.nanos as u32).expect("a valid timestamp")
}

fn post(id: Uuid) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: id.to_string(),
    })
}

/// A server keeping daily rollups (and digests) in Europe/Berlin as well.
async fn server() -> TestServer {
    TestServer::start_with(TestDb::for_server().await, |c| {
        c.metric_rollup_zones = vec!["UTC".into(), "Europe/Berlin".into()];
    })
    .await
}

/// ~600 points a day for 20 days from `first`, in batches as a client
/// sends them; `draw` makes a value.
async fn record(
    s: &TestServer,
    token: &str,
    org: Uuid,
    e: Uuid,
    first: DateTime<Utc>,
    draw: impl Fn(&mut ChaCha8Rng) -> f64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut points = Vec::new();
    let mut when = first;
    while when < first + Duration::days(20) {
        points.push(proto::MetricPoint {
            entity: post(e),
            metric_name: "reach".into(),
            value: draw(&mut rng),
            recorded_at: Some(affinity::api::to_timestamp(when)),
        });
        when += Duration::seconds(rng.random_range(30..260));
    }
    for chunk in points.chunks(500) {
        let req = proto::RecordMetricsRequest {
            organization_id: org.to_string(),
            points: chunk.to_vec(),
            ..Default::default()
        };
        s.metrics()
            .record_metrics(authed(req, token))
            .await
            .expect("recording");
    }
}

async fn percentiles(
    s: &TestServer,
    token: &str,
    req: proto::GetMetricsAggregatedRequest,
) -> Result<Vec<proto::MetricBucket>, tonic::Status> {
    let mut req = authed(req, token);
    req.metadata_mut()
        .insert("cache-control", MetadataValue::from_static("no-cache"));
    Ok(s.metrics()
        .get_metrics_aggregated(req)
        .await?
        .into_inner()
        .buckets)
}

fn request(
    org: Uuid,
    e: Uuid,
    g: Granularity,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> proto::GetMetricsAggregatedRequest {
    proto::GetMetricsAggregatedRequest {
        organization_id: org.to_string(),
        entity: post(e),
        metric_name: "reach".into(),
        granularity: g as i32,
        start: Some(affinity::api::to_timestamp(start)),
        end: Some(affinity::api::to_timestamp(end)),
        time_zone: "Europe/Berlin".into(),
        fill_gaps: false,
        percentiles: FRACTIONS.to_vec(),
    }
}

/// The largest rank error over every bucket and fraction, counted on the
/// points themselves: how much further the fraction asked lies from the
/// rank interval ([share of points below, share at or below]) of the value
/// given than from that of the exact value (`percentile_cont`, which in a
/// small bucket interpolates between points and so misses by itself). A
/// value between two tied runs (5.005 among 5s and 6s) ranks with neither.
async fn worst_rank_error(
    s: &TestServer,
    org: Uuid,
    e: Uuid,
    buckets: &[proto::MetricBucket],
    (start, end): (DateTime<Utc>, DateTime<Utc>),
) -> f64 {
    let mut worst: f64 = 0.0;
    for (i, b) in buckets.iter().enumerate() {
        let lo = from_ts(&b.bucket_start).max(start);
        let hi = buckets
            .get(i + 1)
            .map_or(end, |n| from_ts(&n.bucket_start))
            .min(end);
        assert_eq!(b.percentile_values.len(), FRACTIONS.len());
        for (&q, &v) in FRACTIONS.iter().zip(&b.percentile_values) {
            let (given_lo, given_hi, exact_lo, exact_hi): (f64, f64, f64, f64) = sqlx::query_as(
                "WITH p AS (
                     SELECT value FROM time_series_metrics
                     WHERE organization_id = $6 AND entity_type = 'post' AND entity_id = $1
                       AND metric_name = 'reach' AND recorded_at >= $2 AND recorded_at < $3
                 ), x AS (
                     SELECT percentile_cont($5) WITHIN GROUP (ORDER BY value) AS exact, count(*)::float8 AS n FROM p
                 )
                 SELECT count(*) FILTER (WHERE p.value < $4) / x.n, count(*) FILTER (WHERE p.value <= $4) / x.n,
                        count(*) FILTER (WHERE p.value < x.exact) / x.n, count(*) FILTER (WHERE p.value <= x.exact) / x.n
                 FROM p CROSS JOIN x GROUP BY x.n",
            )
            .bind(e)
            .bind(lo)
            .bind(hi)
            .bind(v)
            .bind(q)
            .bind(org)
            .fetch_one(&s.db.pool)
            .await
            .expect("counting points");
            let miss = |lo: f64, hi: f64| (lo - q).max(q - hi).max(0.0);
            worst = worst.max(miss(given_lo, given_hi) - miss(exact_lo, exact_hi));
        }
    }
    worst
}

#[tokio::test(flavor = "multi_thread")]
async fn percentiles_stay_within_one_percent_rank_error_after_deletions_and_archival() {
    let s = server().await;
    let t = s.new_tenant().await;
    let first = at("2026-09-01T00:00:00Z");
    // Continuous, skewed continuous, and whole numbers with many ties.
    let continuous = Uuid::new_v4();
    let skewed = Uuid::new_v4();
    let counts = Uuid::new_v4();
    record(&s, &t.token, t.org, continuous, first, |r| {
        r.random_range(0.0..1000.0)
    })
    .await;
    record(&s, &t.token, t.org, skewed, first, |r| {
        (r.random_range(0.0..5.0f64)).exp()
    })
    .await;
    record(&s, &t.token, t.org, counts, first, |r| {
        f64::from(r.random_range(0..10u32))
    })
    .await;
    let digests: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM metric_digests_daily WHERE time_zone = 'Europe/Berlin'",
    )
    .fetch_one(&s.db.pool)
    .await
    .expect("the digests table (is postgresql-15-tdigest installed?)");
    assert!(digests >= 60, "{digests} digests");
    // Statistics for the checks' own queries (autovacuum comes later).
    sqlx::query("ANALYZE time_series_metrics")
        .execute(&s.db.pool)
        .await
        .expect("analyze");

    // Partial days at both ends; day, week and month buckets.
    let range = (at("2026-09-02T07:13:00Z"), at("2026-09-19T15:40:00Z"));
    let check = |stage: &'static str| {
        let s = &s;
        let t = &t;
        async move {
            for e in [continuous, skewed, counts] {
                for g in [Granularity::Day, Granularity::Week, Granularity::Month] {
                    let buckets = percentiles(s, &t.token, request(t.org, e, g, range.0, range.1))
                        .await
                        .expect("percentiles");
                    assert!(!buckets.is_empty());
                    let worst = worst_rank_error(s, t.org, e, &buckets, range).await;
                    assert!(worst <= 0.01, "{stage}: {g:?} of {e}: rank error {worst}");
                }
            }
        }
    };
    check("as recorded").await;

    // A third of the points of days 5 to 9 deleted, then everything before
    // day 8 archived.
    let deleted = sqlx::query(
        "DELETE FROM time_series_metrics WHERE recorded_at >= $1 AND recorded_at < $2 AND id % 3 = 0",
    )
    .bind(at("2026-09-05T00:00:00Z"))
    .bind(at("2026-09-10T00:00:00Z"))
    .execute(&s.db.pool)
    .await
    .expect("deleting points")
    .rows_affected();
    assert!(deleted > 1000);
    check("after deletions").await;
    let archived: i64 = sqlx::query_scalar("SELECT archive_old_metrics(now() - $1::timestamptz)")
        .bind(at("2026-09-08T10:30:00Z"))
        .fetch_one(&s.db.pool)
        .await
        .expect("archiving");
    assert!(archived > 1000);
    check("after archival").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hour_buckets_and_zones_without_digests_give_exact_percentiles() {
    let s = server().await;
    let t = s.new_tenant().await;
    let e = Uuid::new_v4();
    let first = at("2026-09-01T00:00:00Z");
    record(&s, &t.token, t.org, e, first, |r| {
        r.random_range(0.0..1000.0)
    })
    .await;
    let range = (at("2026-09-02T07:13:00Z"), at("2026-09-04T15:40:00Z"));
    for (g, unit, tz) in [
        (Granularity::Hour, "hour", "Europe/Berlin"),
        (Granularity::Day, "day", "Asia/Tokyo"),
    ] {
        let mut req = request(t.org, e, g, range.0, range.1);
        req.time_zone = tz.into();
        let got: Vec<(DateTime<Utc>, Vec<f64>)> = percentiles(&s, &t.token, req)
            .await
            .expect("percentiles")
            .into_iter()
            .map(|b| (from_ts(&b.bucket_start), b.percentile_values))
            .collect();
        let want: Vec<(DateTime<Utc>, Vec<f64>)> = sqlx::query_as(
            "SELECT date_trunc($1, recorded_at, $2), percentile_cont($3::float8[]) WITHIN GROUP (ORDER BY value)
             FROM time_series_metrics WHERE entity_id = $4 AND recorded_at >= $5 AND recorded_at < $6
             GROUP BY 1 ORDER BY 1",
        )
        .bind(unit)
        .bind(tz)
        .bind(FRACTIONS.to_vec())
        .bind(e)
        .bind(range.0)
        .bind(range.1)
        .fetch_all(&s.db.pool)
        .await
        .expect("exact percentiles");
        assert_eq!(got, want, "{unit} in {tz}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_percentiles_are_refused_naming_the_field() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let e = Uuid::new_v4();
    let (start, end) = (at("2026-09-01T00:00:00Z"), at("2026-09-02T00:00:00Z"));
    for bad in [
        vec![0.5; 9],
        vec![1.5],
        vec![-0.1],
        vec![f64::NAN],
        vec![0.5, f64::INFINITY],
    ] {
        let mut req = request(t.org, e, Granularity::Day, start, end);
        req.percentiles = bad.clone();
        let refused = percentiles(&s, &t.token, req)
            .await
            .expect_err("bad percentiles");
        assert_eq!(refused.code(), Code::InvalidArgument, "{bad:?}");
        assert!(
            refused.message().contains("percentiles"),
            "{bad:?}: {}",
            refused.message()
        );
    }
    // Empty buckets of a filled answer have as many values as asked.
    let mut req = request(t.org, e, Granularity::Day, start, end);
    req.fill_gaps = true;
    let filled = percentiles(&s, &t.token, req)
        .await
        .expect("a filled answer");
    // (Two local days of Europe/Berlin meet that UTC day.)
    assert_eq!(filled.len(), 2);
    for b in filled {
        assert_eq!(b.percentile_values, vec![0.0; FRACTIONS.len()]);
    }
}
