//! Viewers read, editors and service_role record, and a token is required.

use crate::common::server::{authed, code, service_token, user_token, TestServer};
use crate::{agg_req, at, buckets, point, record, record_req, starts_and_counts, stored_points};
use affinity::proto::{Granularity, Role};
use tonic::{Code, Request};
use uuid::Uuid;

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
