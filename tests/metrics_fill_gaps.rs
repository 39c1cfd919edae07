//! GetMetricsAggregated with fill_gaps: every bucket of the range in the
//! request's zone, through a real client, server and database.
mod common;

use affinity::proto::{self, Granularity};
use chrono::{DateTime, Utc};
use common::server::{authed, TestServer};
use tonic::Code;
use uuid::Uuid;

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

async fn record(s: &TestServer, token: &str, org: Uuid, e: Uuid, points: &[(&str, f64)]) {
    let points = points
        .iter()
        .map(|&(t, value)| proto::MetricPoint {
            entity: post(e),
            metric_name: "views".into(),
            value,
            recorded_at: Some(affinity::api::to_timestamp(at(t))),
        })
        .collect();
    let req = proto::RecordMetricsRequest {
        organization_id: org.to_string(),
        points,
        ..Default::default()
    };
    s.metrics()
        .record_metrics(authed(req, token))
        .await
        .expect("recording points");
}

fn request(
    org: Uuid,
    e: Uuid,
    g: Granularity,
    (start, end): (&str, &str),
    time_zone: &str,
) -> proto::GetMetricsAggregatedRequest {
    proto::GetMetricsAggregatedRequest {
        organization_id: org.to_string(),
        entity: post(e),
        metric_name: "views".into(),
        granularity: g as i32,
        start: Some(affinity::api::to_timestamp(at(start))),
        end: Some(affinity::api::to_timestamp(at(end))),
        time_zone: time_zone.into(),
        fill_gaps: true,
        percentiles: Vec::new(),
    }
}

async fn aggregate(
    s: &TestServer,
    token: &str,
    req: proto::GetMetricsAggregatedRequest,
) -> Result<Vec<proto::MetricBucket>, tonic::Status> {
    Ok(s.metrics()
        .get_metrics_aggregated(authed(req, token))
        .await?
        .into_inner()
        .buckets)
}

/// Every bucket PostgreSQL's date_trunc gives the instants of [start, end)
/// (a quarter-hour grid meets every bucket, even in zones offset by 30 or
/// 45 minutes).
async fn postgres_buckets(
    s: &TestServer,
    unit: &str,
    tz: &str,
    (start, end): (&str, &str),
) -> Vec<DateTime<Utc>> {
    sqlx::query_scalar(
        "SELECT DISTINCT date_trunc($1, t, $2) FROM generate_series($3::timestamptz,
             $4::timestamptz - interval '1 microsecond', interval '15 minutes') AS t ORDER BY 1",
    )
    .bind(unit)
    .bind(tz)
    .bind(at(start))
    .bind(at(end))
    .fetch_all(&s.db.pool)
    .await
    .expect("bucket starts from PostgreSQL")
}

#[tokio::test(flavor = "multi_thread")]
async fn filled_buckets_are_postgresql_s_buckets_across_daylight_saving_changes() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let e = Uuid::new_v4();
    // One point on a day that has none of the cases below, so every
    // bucket but one is made up.
    record(&s, &t.token, t.org, e, &[("2026-03-29T01:30:00Z", 1.0)]).await;
    let cases = [
        // A 23-hour and a 25-hour day, by the hour, the day, the week.
        (
            Granularity::Hour,
            "hour",
            "Europe/Berlin",
            ("2026-03-28T00:00:00Z", "2026-03-31T00:00:00Z"),
        ),
        (
            Granularity::Hour,
            "hour",
            "Europe/Berlin",
            ("2026-10-24T00:00:00Z", "2026-10-27T00:00:00Z"),
        ),
        (
            Granularity::Day,
            "day",
            "Europe/Berlin",
            ("2026-03-01T10:00:00Z", "2026-11-15T00:00:00Z"),
        ),
        (
            Granularity::Week,
            "week",
            "Europe/Berlin",
            ("2026-01-01T00:00:00Z", "2026-12-31T00:00:00Z"),
        ),
        (
            Granularity::Month,
            "month",
            "Europe/Berlin",
            ("2025-12-15T00:00:00Z", "2027-02-01T00:00:00Z"),
        ),
        // Midnight itself skipped (Sao Paulo, November 2018) and repeated
        // (February 2019).
        (
            Granularity::Day,
            "day",
            "America/Sao_Paulo",
            ("2018-10-30T00:00:00Z", "2019-02-20T00:00:00Z"),
        ),
        (
            Granularity::Hour,
            "hour",
            "America/Sao_Paulo",
            ("2018-11-03T00:00:00Z", "2018-11-05T00:00:00Z"),
        ),
        (
            Granularity::Hour,
            "hour",
            "America/Sao_Paulo",
            ("2019-02-16T00:00:00Z", "2019-02-18T00:00:00Z"),
        ),
        // Half- and quarter-hour offsets.
        (
            Granularity::Hour,
            "hour",
            "Asia/Kolkata",
            ("2026-03-01T00:10:00Z", "2026-03-03T00:00:00Z"),
        ),
        (
            Granularity::Day,
            "day",
            "Asia/Kathmandu",
            ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
        ),
        (
            Granularity::Day,
            "day",
            "",
            ("2026-03-01T00:00:00Z", "2026-03-31T23:59:59Z"),
        ),
    ];
    for (g, unit, tz, range) in cases {
        let got: Vec<DateTime<Utc>> = aggregate(&s, &t.token, request(t.org, e, g, range, tz))
            .await
            .unwrap_or_else(|e| panic!("{unit} in {tz:?} over {range:?}: {e}"))
            .iter()
            .map(|b| from_ts(&b.bucket_start))
            .collect();
        let zone = if tz.is_empty() { "UTC" } else { tz };
        let want = postgres_buckets(&s, unit, zone, range).await;
        assert_eq!(got, want, "{unit} buckets in {zone} over {range:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn empty_buckets_count_nothing_and_carry_the_previous_values_forward() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let e = Uuid::new_v4();
    record(
        &s,
        &t.token,
        t.org,
        e,
        &[
            ("2026-05-02T08:00:00Z", 4.0),
            ("2026-05-02T09:00:00Z", 2.0),
            ("2026-05-05T12:00:00Z", 10.0),
        ],
    )
    .await;
    let range = ("2026-05-01T00:00:00Z", "2026-05-07T00:00:00Z");
    let filled = aggregate(
        &s,
        &t.token,
        request(t.org, e, Granularity::Day, range, "UTC"),
    )
    .await
    .expect("a filled answer");
    let row = |b: &proto::MetricBucket| (b.count, b.sum, b.min, b.max, b.avg, b.last);
    let rows: Vec<_> = filled.iter().map(row).collect();
    assert_eq!(
        rows,
        vec![
            (0, 0.0, 0.0, 0.0, 0.0, 0.0), // before the first point
            (2, 6.0, 2.0, 4.0, 3.0, 2.0),
            (0, 0.0, 2.0, 4.0, 3.0, 2.0), // carried forward
            (0, 0.0, 2.0, 4.0, 3.0, 2.0),
            (1, 10.0, 10.0, 10.0, 10.0, 10.0),
            (0, 0.0, 10.0, 10.0, 10.0, 10.0),
        ]
    );
    // The same buckets with points as the unfilled answer.
    let mut unfilled = request(t.org, e, Granularity::Day, range, "UTC");
    unfilled.fill_gaps = false;
    let unfilled = aggregate(&s, &t.token, unfilled).await.expect("an answer");
    let counted: Vec<_> = filled.into_iter().filter(|b| b.count > 0).collect();
    assert_eq!(counted, unfilled);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_range_of_more_than_ten_thousand_buckets_is_refused_naming_fill_gaps() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let e = Uuid::new_v4();
    // 10,000 hours exactly is accepted; one more is not.
    let ok = ("2026-01-01T00:00:00Z", "2027-02-21T16:00:00Z");
    let buckets = aggregate(
        &s,
        &t.token,
        request(t.org, e, Granularity::Hour, ok, "UTC"),
    )
    .await
    .expect("10,000 buckets");
    assert_eq!(buckets.len(), 10_000);
    let over = ("2026-01-01T00:00:00Z", "2027-02-21T16:00:01Z");
    let refused = aggregate(
        &s,
        &t.token,
        request(t.org, e, Granularity::Hour, over, "UTC"),
    )
    .await
    .expect_err("10,001 buckets");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("fill_gaps"),
        "{}",
        refused.message()
    );
    // Without fill_gaps the same range is fine (only buckets with points).
    let mut unfilled = request(t.org, e, Granularity::Hour, over, "UTC");
    unfilled.fill_gaps = false;
    assert!(aggregate(&s, &t.token, unfilled)
        .await
        .expect("unfilled")
        .is_empty());
}
