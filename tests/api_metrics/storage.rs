//! Where points are stored, and how the aggregation's columns are read back.

use crate::common::server::{authed, TestServer};
use crate::{agg_req, at, point, record, starts_and_counts, stored_points};
use affinity::proto::Granularity;
use chrono::{Duration, Utc};
use tonic::Code;
use uuid::Uuid;

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
