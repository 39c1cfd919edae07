//! Malformed requests are invalid arguments and store nothing.

use crate::common::server::{authed, code, TestServer};
use crate::{agg_req, at, point, record_req, stored_points, ts};
use affinity::proto::{self, Granularity};
use chrono::{Duration, Utc};
use tonic::Code;
use uuid::Uuid;

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
