//! Points aggregate by hour, day, week and month, in any time zone, as the SQL function does.

use crate::common::server::{service_token, TestServer};
use crate::{agg_req, at, buckets, from_ts, point, record, starts_and_counts};
use affinity::proto::{self, Granularity};
use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

/// A row of `get_metrics_aggregated`: bucket_start, sum, avg, min, max, count, last.
type SqlBucket = (DateTime<Utc>, f64, f64, f64, f64, i64, f64);

#[tokio::test(flavor = "multi_thread")]
async fn recorded_points_aggregate_by_hour_day_week_and_month() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let e = Uuid::new_v4();
    // 2024-05-06 is a Monday, 2024-06-02 a Sunday. Within the 10:00 hour
    // the later point (10:45, value 5) is sent first and is not the max.
    let points = vec![
        point(e, "likes", 5.0, Some(at("2024-05-06T10:45:00Z"))),
        point(e, "likes", 9.0, Some(at("2024-05-06T10:15:00Z"))),
        point(e, "likes", 1.0, Some(at("2024-05-06T12:00:00Z"))),
        point(e, "likes", 2.0, Some(at("2024-05-08T09:00:00Z"))),
        point(e, "likes", 4.0, Some(at("2024-05-13T01:00:00Z"))),
        point(e, "likes", 8.0, Some(at("2024-06-02T23:59:59Z"))),
        // Neither another metric nor another entity is counted.
        point(e, "comments", 100.0, Some(at("2024-05-06T10:30:00Z"))),
        point(
            Uuid::new_v4(),
            "likes",
            100.0,
            Some(at("2024-05-06T10:30:00Z")),
        ),
    ];
    assert_eq!(record(&s, &t.token, t.org, points).await, 8);

    let (start, end) = (
        Some(at("2024-05-01T00:00:00Z")),
        Some(at("2024-07-01T00:00:00Z")),
    );
    let q = |g| agg_req(t.org, e, "likes", g, start, end, "");

    let hours = buckets(&s, &t.token, q(Granularity::Hour)).await;
    assert_eq!(
        starts_and_counts(&hours),
        vec![
            (at("2024-05-06T10:00:00Z"), 2),
            (at("2024-05-06T12:00:00Z"), 1),
            (at("2024-05-08T09:00:00Z"), 1),
            (at("2024-05-13T01:00:00Z"), 1),
            (at("2024-06-02T23:00:00Z"), 1),
        ]
    );
    let h = &hours[0];
    assert_eq!((h.sum, h.avg, h.min, h.max), (14.0, 7.0, 5.0, 9.0));
    assert_eq!(
        h.last, 5.0,
        "last is the latest point, not the last sent nor the max"
    );

    let days = buckets(&s, &t.token, q(Granularity::Day)).await;
    assert_eq!(
        starts_and_counts(&days),
        vec![
            (at("2024-05-06T00:00:00Z"), 3),
            (at("2024-05-08T00:00:00Z"), 1),
            (at("2024-05-13T00:00:00Z"), 1),
            (at("2024-06-02T00:00:00Z"), 1),
        ]
    );
    assert_eq!((days[0].sum, days[0].last), (15.0, 1.0));
    // Unspecified granularity means day.
    let unspecified = buckets(&s, &t.token, q(Granularity::Unspecified)).await;
    assert_eq!(unspecified, days);

    // Weeks start on Monday: Sunday 2024-06-02 belongs to the week of 05-27.
    let weeks = buckets(&s, &t.token, q(Granularity::Week)).await;
    assert_eq!(
        starts_and_counts(&weeks),
        vec![
            (at("2024-05-06T00:00:00Z"), 4),
            (at("2024-05-13T00:00:00Z"), 1),
            (at("2024-05-27T00:00:00Z"), 1),
        ]
    );
    assert_eq!(
        (weeks[0].sum, weeks[0].min, weeks[0].max, weeks[0].last),
        (17.0, 1.0, 9.0, 2.0)
    );

    let months = buckets(&s, &t.token, q(Granularity::Month)).await;
    assert_eq!(
        starts_and_counts(&months),
        vec![
            (at("2024-05-01T00:00:00Z"), 5),
            (at("2024-06-01T00:00:00Z"), 1)
        ]
    );
    assert_eq!((months[0].sum, months[0].last), (21.0, 4.0));

    // start is inclusive, end exclusive.
    let window = agg_req(
        t.org,
        e,
        "likes",
        Granularity::Day,
        Some(at("2024-05-06T12:00:00Z")),
        Some(at("2024-06-02T23:59:59Z")),
        "UTC",
    );
    assert_eq!(
        starts_and_counts(&buckets(&s, &t.token, window).await),
        vec![
            (at("2024-05-06T00:00:00Z"), 1),
            (at("2024-05-08T00:00:00Z"), 1),
            (at("2024-05-13T00:00:00Z"), 1),
        ]
    );

    // An unset recorded_at is the server's now, which the default window
    // (the 30 days before now) covers.
    let before = Utc::now();
    assert_eq!(
        record(&s, &t.token, t.org, vec![point(e, "reach", 3.0, None)]).await,
        1
    );
    let recent = buckets(
        &s,
        &t.token,
        agg_req(t.org, e, "reach", Granularity::Hour, None, None, ""),
    )
    .await;
    assert_eq!(recent.len(), 1);
    assert_eq!((recent[0].count, recent[0].last), (1, 3.0));
    let stored: DateTime<Utc> = sqlx::query_scalar(
        "SELECT recorded_at FROM time_series_metrics WHERE metric_name = 'reach'",
    )
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert!(stored >= before - Duration::seconds(5) && stored <= Utc::now() + Duration::seconds(5));

    let source: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT source FROM time_series_metrics WHERE organization_id = $1",
    )
    .bind(t.org)
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(source, vec!["api".to_string()]);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn daily_buckets_follow_paris_daylight_saving_days() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let e = Uuid::new_v4();
    let points = vec![
        // Spring forward: 2024-03-31 in Paris runs 2024-03-30T23:00Z .. 2024-03-31T22:00Z.
        point(e, "likes", 1.0, Some(at("2024-03-30T22:30:00Z"))), // 03-30 23:30 CET
        point(e, "likes", 2.0, Some(at("2024-03-30T23:30:00Z"))), // 03-31 00:30 CET
        point(e, "likes", 3.0, Some(at("2024-03-31T21:30:00Z"))), // 03-31 23:30 CEST
        point(e, "likes", 4.0, Some(at("2024-03-31T22:30:00Z"))), // 04-01 00:30 CEST
        // Fall back: 2024-10-27 in Paris runs 2024-10-26T22:00Z .. 2024-10-27T23:00Z.
        point(e, "likes", 5.0, Some(at("2024-10-26T21:30:00Z"))), // 10-26 23:30 CEST
        point(e, "likes", 6.0, Some(at("2024-10-26T22:30:00Z"))), // 10-27 00:30 CEST
        point(e, "likes", 7.0, Some(at("2024-10-27T22:30:00Z"))), // 10-27 23:30 CET
        point(e, "likes", 8.0, Some(at("2024-10-27T23:30:00Z"))), // 10-28 00:30 CET
    ];
    assert_eq!(record(&s, &t.token, t.org, points).await, 8);
    let q = |tz: &str, g| {
        agg_req(
            t.org,
            e,
            "likes",
            g,
            Some(at("2024-03-01T00:00:00Z")),
            Some(at("2024-11-30T00:00:00Z")),
            tz,
        )
    };

    let paris = buckets(&s, &t.token, q("Europe/Paris", Granularity::Day)).await;
    assert_eq!(
        starts_and_counts(&paris),
        vec![
            (at("2024-03-29T23:00:00Z"), 1), // 03-30
            (at("2024-03-30T23:00:00Z"), 2), // 03-31: 23 hours
            (at("2024-03-31T22:00:00Z"), 1), // 04-01
            (at("2024-10-25T22:00:00Z"), 1), // 10-26
            (at("2024-10-26T22:00:00Z"), 2), // 10-27: 25 hours
            (at("2024-10-27T23:00:00Z"), 1), // 10-28
        ]
    );
    let start = |i: usize| from_ts(&paris[i].bucket_start);
    assert_eq!(start(2) - start(1), Duration::hours(23));
    assert_eq!(start(5) - start(4), Duration::hours(25));
    assert_eq!((paris[1].sum, paris[1].last), (5.0, 3.0));
    assert_eq!((paris[4].sum, paris[4].last), (13.0, 7.0));

    // The same points in UTC days fall differently.
    let utc = buckets(&s, &t.token, q("UTC", Granularity::Day)).await;
    assert_eq!(
        starts_and_counts(&utc),
        vec![
            (at("2024-03-30T00:00:00Z"), 2),
            (at("2024-03-31T00:00:00Z"), 2),
            (at("2024-10-26T00:00:00Z"), 2),
            (at("2024-10-27T00:00:00Z"), 2),
        ]
    );

    // Paris weeks start on Monday at local midnight (CEST in October).
    let weeks = buckets(&s, &t.token, q("Europe/Paris", Granularity::Week)).await;
    assert_eq!(
        starts_and_counts(&weeks),
        vec![
            (at("2024-03-24T23:00:00Z"), 3), // Mon 03-25 00:00 CET
            (at("2024-03-31T22:00:00Z"), 1), // Mon 04-01 00:00 CEST
            (at("2024-10-20T22:00:00Z"), 3), // Mon 10-21 00:00 CEST
            (at("2024-10-27T23:00:00Z"), 1), // Mon 10-28 00:00 CET
        ]
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_rpc_and_sql_function_agree() {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let b = s.new_tenant().await;
    let e = Uuid::new_v4();
    let svc = service_token();
    // Points every 7 h 13 min over ~10 weeks across both 2024 DST changes
    // of Europe and America, in two organizations.
    let first = at("2024-02-20T03:17:00Z");
    let pts = |org_shift: i64| -> Vec<proto::MetricPoint> {
        (0..600)
            .map(|i: i64| {
                let when = first + Duration::minutes(i * 433 + org_shift);
                point(e, "reach", ((i * 37) % 101) as f64 + 0.25, Some(when))
            })
            .collect()
    };
    assert_eq!(record(&s, &svc, a.org, pts(0)).await, 600);
    assert_eq!(record(&s, &svc, b.org, pts(11)).await, 600);

    let (start, end) = (at("2024-03-01T00:00:00Z"), at("2024-04-20T00:00:00Z"));
    let mut compared = 0;
    for (g, unit) in [
        (Granularity::Hour, "hour"),
        (Granularity::Day, "day"),
        (Granularity::Week, "week"),
        (Granularity::Month, "month"),
    ] {
        for tz in ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"] {
            let rpc = buckets(
                &s,
                &a.token,
                agg_req(a.org, e, "reach", g, Some(start), Some(end), tz),
            )
            .await;
            let sql: Vec<SqlBucket> = sqlx::query_as(
                "SELECT * FROM get_metrics_aggregated('post', $1, 'reach', $2, $3, $4, $5, $6)",
            )
            .bind(e)
            .bind(unit)
            .bind(start)
            .bind(end)
            .bind(tz)
            .bind(a.org)
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
            assert!(!sql.is_empty());
            assert_eq!(rpc.len(), sql.len(), "{unit} {tz}");
            for (r, q) in rpc.iter().zip(&sql) {
                assert_eq!(from_ts(&r.bucket_start), q.0, "{unit} {tz}");
                assert_eq!(
                    (r.sum, r.avg, r.min, r.max),
                    (q.1, q.2, q.3, q.4),
                    "{unit} {tz}"
                );
                assert_eq!((r.count as i64, r.last), (q.5, q.6), "{unit} {tz}");
            }
            compared += sql.len();
        }
    }
    assert!(compared > 100);
    s.shutdown().await.unwrap();
}
