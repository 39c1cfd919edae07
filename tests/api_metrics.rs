//! MetricsService through a real client, server and database.
mod common;

use affinity::proto::{self, Granularity, Role};
use chrono::{DateTime, Duration, Utc};
use common::server::{authed, code, service_token, user_token, Tenant, TestServer};
use tonic::{Code, Request};
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

/// A row of `get_metrics_aggregated`: bucket_start, sum, avg, min, max, count, last.
type SqlBucket = (DateTime<Utc>, f64, f64, f64, f64, i64, f64);

async fn stored_points(s: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM time_series_metrics WHERE source = 'api'")
        .fetch_one(&s.db.pool)
        .await
        .unwrap()
}

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
async fn malformed_requests_are_invalid_arguments_and_store_nothing() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let e = Uuid::new_v4();
    let good = || point(e, "likes", 1.0, Some(at("2024-05-06T10:00:00Z")));
    let rec = |points: Vec<proto::MetricPoint>| {
        let m = s.metrics();
        let req = authed(record_req(t.org, points), &t.token);
        async move { code(m.clone().record_metrics(req).await) }
    };

    // RecordMetrics
    let mut bad_org = authed(record_req(t.org, vec![good()]), &t.token);
    bad_org.get_mut().organization_id = "not-a-uuid".into();
    assert_eq!(
        code(s.metrics().record_metrics(bad_org).await),
        Code::InvalidArgument
    );
    let mut bad_entity = good();
    bad_entity.entity = Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: "12345".into(),
    });
    assert_eq!(
        rec(vec![bad_entity]).await,
        Code::InvalidArgument,
        "bad entity UUID"
    );
    let mut bad_type = good();
    bad_type.entity = Some(proto::EntityRef {
        entity_type: "Post Type".into(),
        entity_id: e.to_string(),
    });
    assert_eq!(
        rec(vec![bad_type]).await,
        Code::InvalidArgument,
        "entity type not snake case"
    );
    let mut no_entity = good();
    no_entity.entity = None;
    assert_eq!(
        rec(vec![no_entity]).await,
        Code::InvalidArgument,
        "missing entity"
    );
    let mut empty_name = good();
    empty_name.metric_name = String::new();
    assert_eq!(
        rec(vec![empty_name]).await,
        Code::InvalidArgument,
        "empty metric name"
    );
    let mut long_name = good();
    long_name.metric_name = "x".repeat(201);
    assert_eq!(
        rec(vec![long_name]).await,
        Code::InvalidArgument,
        "metric name over 200 bytes"
    );
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(
            rec(vec![point(e, "likes", v, None)]).await,
            Code::InvalidArgument,
            "{v}"
        );
    }
    let mut far = good();
    far.recorded_at = Some(prost_types::Timestamp {
        seconds: 300_000_000_000,
        nanos: 0,
    });
    assert_eq!(
        rec(vec![far]).await,
        Code::InvalidArgument,
        "recorded_at out of range"
    );
    assert_eq!(rec(vec![]).await, Code::InvalidArgument, "no points");
    let too_many: Vec<_> = (0..10_001).map(|_| good()).collect();
    assert_eq!(rec(too_many).await, Code::InvalidArgument, "over max_batch");

    // All or none: one bad point among good ones stores nothing.
    let mut mixed = vec![good(), good(), good()];
    mixed.insert(1, point(e, "likes", f64::NAN, None));
    assert_eq!(rec(mixed).await, Code::InvalidArgument);
    assert_eq!(stored_points(&s).await, 0, "a refused batch stores nothing");

    // GetMetricsAggregated
    let agg = |f: &dyn Fn(&mut proto::GetMetricsAggregatedRequest)| {
        let mut r = agg_req(t.org, e, "likes", Granularity::Day, None, None, "");
        f(&mut r);
        let m = s.metrics();
        let req = authed(r, &t.token);
        async move { code(m.clone().get_metrics_aggregated(req).await) }
    };
    assert_eq!(agg(&|_| {}).await, Code::Ok);
    assert_eq!(
        agg(&|r| r.organization_id = "x".into()).await,
        Code::InvalidArgument
    );
    assert_eq!(
        agg(&|r| r.organization_id = String::new()).await,
        Code::InvalidArgument
    );
    assert_eq!(
        agg(&|r| r.entity.as_mut().unwrap().entity_id = "nope".into()).await,
        Code::InvalidArgument
    );
    assert_eq!(agg(&|r| r.entity = None).await, Code::InvalidArgument);
    assert_eq!(
        agg(&|r| r.metric_name = String::new()).await,
        Code::InvalidArgument
    );
    assert_eq!(
        agg(&|r| r.granularity = 99).await,
        Code::InvalidArgument,
        "unknown granularity"
    );
    assert_eq!(
        agg(&|r| r.granularity = -1).await,
        Code::InvalidArgument,
        "unknown granularity"
    );
    for tz in [
        "Mars/Base",
        "'; DROP TABLE x; --",
        "UTC+3",
        "<+03>-3",
        "europe/paris",
        "CET",
        "Europe/Paris\0",
    ] {
        assert_eq!(
            agg(&|r| r.time_zone = tz.into()).await,
            Code::InvalidArgument,
            "time zone {tz:?}"
        );
    }
    for tz in [
        "UTC",
        "Europe/Paris",
        "America/New_York",
        "Asia/Kolkata",
        "Etc/GMT+3",
    ] {
        assert_eq!(
            agg(&|r| r.time_zone = tz.into()).await,
            Code::Ok,
            "time zone {tz:?}"
        );
    }
    let (early, late) = (at("2024-01-01T00:00:00Z"), at("2024-02-01T00:00:00Z"));
    assert_eq!(
        agg(&|r| {
            r.start = Some(ts(late));
            r.end = Some(ts(early));
        })
        .await,
        Code::InvalidArgument,
        "start after end"
    );
    assert_eq!(
        agg(&|r| r.start = Some(ts(Utc::now() + Duration::days(1)))).await,
        Code::InvalidArgument,
        "start after the default end (now)"
    );
    assert_eq!(
        agg(&|r| r.end = Some(prost_types::Timestamp {
            seconds: 0,
            nanos: -1
        }))
        .await,
        Code::InvalidArgument,
        "malformed end"
    );

    // The time zone "names" were never run as SQL.
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'time_series_metrics_default'",
    )
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(tables, 1);
    assert_eq!(stored_points(&s).await, 0);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn viewers_read_editors_record_and_tokens_are_required() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let e = Uuid::new_v4();
    let viewer = Uuid::new_v4();
    let editor = Uuid::new_v4();
    s.add_member(t.org, viewer, Role::Viewer).await;
    s.add_member(t.org, editor, Role::Editor).await;
    let pts = || vec![point(e, "likes", 1.0, Some(at("2024-05-06T10:00:00Z")))];
    let agg = || {
        agg_req(
            t.org,
            e,
            "likes",
            Granularity::Day,
            Some(at("2024-05-01T00:00:00Z")),
            Some(at("2024-06-01T00:00:00Z")),
            "",
        )
    };

    let viewer_records = s
        .metrics()
        .record_metrics(authed(record_req(t.org, pts()), &user_token(viewer)))
        .await;
    assert_eq!(code(viewer_records), Code::PermissionDenied);
    assert_eq!(record(&s, &user_token(editor), t.org, pts()).await, 1);
    assert_eq!(record(&s, &service_token(), t.org, pts()).await, 1);
    let seen = buckets(&s, &user_token(viewer), agg()).await;
    assert_eq!(
        starts_and_counts(&seen),
        vec![(at("2024-05-06T00:00:00Z"), 2)]
    );

    // No token, or a bad one.
    let m = s.metrics();
    assert_eq!(
        code(
            m.clone()
                .record_metrics(Request::new(record_req(t.org, pts())))
                .await
        ),
        Code::Unauthenticated
    );
    assert_eq!(
        code(m.clone().get_metrics_aggregated(Request::new(agg())).await),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            m.clone()
                .record_metrics(authed(record_req(t.org, pts()), "not.a.jwt"))
                .await
        ),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            m.clone()
                .get_metrics_aggregated(authed(agg(), "not.a.jwt"))
                .await
        ),
        Code::Unauthenticated
    );

    // service_role recording into an organization that does not exist.
    let missing = m
        .clone()
        .record_metrics(authed(record_req(Uuid::new_v4(), pts()), &service_token()))
        .await;
    assert_eq!(code(missing), Code::NotFound);
    assert_eq!(stored_points(&s).await, 2);
    s.shutdown().await.unwrap();
}

/// A server and two tenants, A and B; B has recorded one point of entity
/// `e` (7 likes on 2024-05-06 at 10:00): the server, A, B and `e`.
async fn b_has_recorded_a_point() -> (TestServer, Tenant, Tenant, Uuid) {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let b = s.new_tenant().await;
    let e = Uuid::new_v4();
    assert_eq!(
        record_a_point(&s, &b.token, b.org, e, 7.0)
            .await
            .unwrap()
            .into_inner()
            .recorded,
        1
    );
    (s, a, b, e)
}

/// RecordMetrics of one point of `e` (`value` likes on 2024-05-06 at
/// 10:00) into `org`, as `token`'s holder.
async fn record_a_point(
    s: &TestServer,
    token: &str,
    org: Uuid,
    e: Uuid,
    value: f64,
) -> Result<tonic::Response<proto::RecordMetricsResponse>, tonic::Status> {
    let when = Some(at("2024-05-06T10:00:00Z"));
    s.metrics()
        .record_metrics(authed(
            record_req(org, vec![point(e, "likes", value, when)]),
            token,
        ))
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_of_one_organization_cannot_record_into_or_read_another() {
    let (s, a, b, e) = b_has_recorded_a_point().await;
    let (start, end) = (
        Some(at("2024-05-01T00:00:00Z")),
        Some(at("2024-06-01T00:00:00Z")),
    );

    // Naming B's organization, or one that does not exist: the same answer.
    for org in [b.org, Uuid::new_v4()] {
        let r = record_a_point(&s, &a.token, org, e, 1.0).await;
        assert_eq!(code(r), Code::PermissionDenied);
        let r = s
            .metrics()
            .get_metrics_aggregated(authed(
                agg_req(org, e, "likes", Granularity::Day, start, end, ""),
                &a.token,
            ))
            .await;
        assert_eq!(code(r), Code::PermissionDenied);
    }
    // Even a malformed or over-long request names nothing of B's.
    let r = s
        .metrics()
        .get_metrics_aggregated(authed(
            agg_req(b.org, e, "likes", Granularity::Day, start, end, "Mars/Base"),
            &a.token,
        ))
        .await;
    assert_eq!(code(r), Code::PermissionDenied);

    // A's own organization does not see B's points for the same entity id.
    let own = buckets(
        &s,
        &a.token,
        agg_req(a.org, e, "likes", Granularity::Day, start, end, ""),
    )
    .await;
    assert!(own.is_empty(), "{own:?}");
    // And B's series is as B left it.
    let theirs = buckets(
        &s,
        &b.token,
        agg_req(b.org, e, "likes", Granularity::Day, start, end, ""),
    )
    .await;
    assert_eq!(
        starts_and_counts(&theirs),
        vec![(at("2024-05-06T00:00:00Z"), 1)]
    );
    assert_eq!(theirs[0].sum, 7.0);
    let in_b: i64 =
        sqlx::query_scalar("SELECT count(*) FROM time_series_metrics WHERE organization_id = $1")
            .bind(b.org)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(in_b, 1);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn service_role_aggregating_one_organization_never_counts_another() {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let b = s.new_tenant().await;
    let e = Uuid::new_v4();
    let svc = service_token();
    let when = |h: u32| Some(at("2024-05-06T00:00:00Z") + Duration::hours(i64::from(h)));
    record(
        &s,
        &svc,
        a.org,
        vec![
            point(e, "likes", 1.0, when(1)),
            point(e, "likes", 2.0, when(2)),
        ],
    )
    .await;
    record(
        &s,
        &svc,
        b.org,
        vec![
            point(e, "likes", 50.0, when(3)),
            point(e, "likes", 60.0, when(1)),
        ],
    )
    .await;
    let (start, end) = (
        Some(at("2024-05-01T00:00:00Z")),
        Some(at("2024-06-01T00:00:00Z")),
    );
    let got = buckets(
        &s,
        &svc,
        agg_req(a.org, e, "likes", Granularity::Day, start, end, ""),
    )
    .await;
    assert_eq!(got.len(), 1);
    let g = &got[0];
    assert_eq!((g.count, g.sum, g.max, g.last), (2, 3.0, 2.0, 2.0));
    let got = buckets(
        &s,
        &svc,
        agg_req(b.org, e, "likes", Granularity::Day, start, end, ""),
    )
    .await;
    assert_eq!((got[0].count, got[0].sum, got[0].last), (2, 110.0, 50.0));
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

#[tokio::test(flavor = "multi_thread")]
async fn points_near_now_get_their_own_monthly_partition() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let e = Uuid::new_v4();
    let now = Utc::now();
    let points = vec![
        point(e, "likes", 1.0, None),
        point(e, "likes", 2.0, Some(now + Duration::days(200))),
        // Far from now: the default partition takes it.
        point(e, "likes", 3.0, Some(at("2001-01-01T00:00:00Z"))),
    ];
    assert_eq!(record(&s, &t.token, t.org, points).await, 3);
    let in_default: Vec<f64> = sqlx::query_scalar("SELECT value FROM time_series_metrics_default")
        .fetch_all(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(in_default, vec![3.0]);
    assert_eq!(stored_points(&s).await, 3);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn record_metrics_never_writes_into_another_organization() {
    let (s, a, b, e) = b_has_recorded_a_point().await;
    // Into B's organization, or one that does not exist: refused alike.
    let mut messages = vec![];
    for org in [b.org, Uuid::new_v4()] {
        let err = record_a_point(&s, &a.token, org, e, 1.0).await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        messages.push(err.message().replace(&org.to_string(), "<org>"));
    }
    assert_eq!(messages[0], messages[1]);
    // Recording for the same entity id in A's own organization leaves B's series alone.
    record_a_point(&s, &a.token, a.org, e, 100.0)
        .await
        .expect("recording in A");
    let b_points: Vec<f64> =
        sqlx::query_scalar("SELECT value FROM time_series_metrics WHERE organization_id = $1")
            .bind(b.org)
            .fetch_all(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(b_points, vec![7.0]);
    s.shutdown().await.unwrap();
}

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

/// The service reads the aggregation's columns by position without sqlx's
/// check of every value's type, and checks the columns once per answer
/// instead: should the schema function's columns change under it (here
/// `count` as float8, which has bigint's size, so an unchecked read would
/// turn it into a wrong number), the call fails as INTERNAL and the numbers
/// are never misread.
#[tokio::test(flavor = "multi_thread")]
async fn an_aggregation_function_whose_columns_changed_is_refused_not_misread() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let entity = Uuid::new_v4();
    let when = at("2026-03-02T10:15:00Z");
    record(
        &s,
        &t.token,
        t.org,
        vec![point(entity, "likes", 3.0, Some(when))],
    )
    .await;
    let req = || {
        agg_req(
            t.org,
            entity,
            "likes",
            Granularity::Day,
            Some(at("2026-03-01T00:00:00Z")),
            Some(at("2026-03-04T00:00:00Z")),
            "UTC",
        )
    };

    // Before any aggregation, so that no connection of the service has
    // the real function's statement prepared.
    const SIGNATURE: &str =
        "get_metrics_aggregated(text, uuid, text, text, timestamptz, timestamptz, text, uuid)";
    let real: String = sqlx::query_scalar(&format!(
        "SELECT pg_get_functiondef('{SIGNATURE}'::regprocedure)"
    ))
    .fetch_one(&s.db.pool)
    .await
    .expect("the real function's definition");
    for ddl in [
        format!("DROP FUNCTION {SIGNATURE}"),
        "CREATE FUNCTION get_metrics_aggregated(text, uuid, text, text, timestamptz,
                                                timestamptz, text, uuid)
         RETURNS TABLE(bucket_start timestamptz, sum float8, avg float8, min float8,
                       max float8, count float8, last float8)
         LANGUAGE sql STABLE
         AS $$ VALUES ('2026-03-02T00:00:00Z'::timestamptz, 3.0::float8, 3.0::float8,
                       3.0::float8, 3.0::float8, 1.0::float8, 3.0::float8) $$"
            .to_string(),
    ] {
        sqlx::query(&ddl).execute(&s.db.pool).await.expect(&ddl);
    }
    let refused = s
        .metrics()
        .get_metrics_aggregated(authed(req(), &t.token))
        .await
        .expect_err("columns of other types must not be decoded");
    assert_eq!(refused.code(), Code::Internal, "{refused:?}");

    // With the real function back, the same call answers.
    for ddl in [format!("DROP FUNCTION {SIGNATURE}"), real] {
        sqlx::query(&ddl).execute(&s.db.pool).await.expect(&ddl);
    }
    let got = s
        .metrics()
        .get_metrics_aggregated(authed(req(), &t.token))
        .await
        .expect("the real function's answer")
        .into_inner()
        .buckets;
    assert_eq!(
        starts_and_counts(&got),
        vec![(at("2026-03-02T00:00:00Z"), 1)]
    );
    assert_eq!(got[0].sum, 3.0);
}
