//! No organization records into, or reads, another's points.

use crate::common::server::{authed, code, service_token, Tenant, TestServer};
use crate::{agg_req, at, buckets, point, record, record_req, starts_and_counts};
use affinity::proto::{self, Granularity};
use chrono::Duration;
use tonic::Code;
use uuid::Uuid;

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
