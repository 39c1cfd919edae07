//! The Prometheus endpoint shows calls, errors, latency, pool, migrations and cache.
use std::time::Duration;

use crate::common;
use crate::common::scrape;
use crate::common::server::{authed, service_token, TestServer};
use crate::common::wait::{eventually, seen};
use crate::{permission_request, value};
use affinity::proto;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_endpoint_shows_calls_errors_latency_pool_migrations_and_cache() {
    let s = TestServer::start_with_metrics().await;
    let metrics = s.metrics_addr.expect("a metrics address");
    let t = s.new_tenant().await;

    // Twice the same check: a miss, then a hit.
    for _ in 0..2 {
        let r = s
            .orgs()
            .user_has_org_permission(authed(permission_request(t.user, t.org), &service_token()))
            .await
            .unwrap();
        assert!(r.into_inner().allowed);
    }
    // An invalid argument.
    let err = s
        .orgs()
        .user_has_org_permission(authed(
            proto::UserHasOrgPermissionRequest {
                user_id: "not-a-uuid".into(),
                ..permission_request(t.user, t.org)
            },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let body = scrape(metrics).await;
    let method = "/affinity.v1.OrganizationService/UserHasOrgPermission";
    let ok = format!(r#"affinity_rpc_requests_total{{code="OK",method="{method}"}}"#);
    assert_eq!(value(&body, &ok), Some(2.0), "{body}");
    let invalid =
        format!(r#"affinity_rpc_requests_total{{code="INVALID_ARGUMENT",method="{method}"}}"#);
    assert_eq!(value(&body, &invalid), Some(1.0), "{body}");
    let latency = format!(r#"affinity_rpc_duration_seconds_count{{method="{method}"}}"#);
    assert_eq!(value(&body, &latency), Some(3.0), "{body}");
    assert!(
        body.contains(&format!(
            r#"affinity_rpc_duration_seconds_bucket{{method="{method}",le="0.005"}}"#
        )),
        "{body}"
    );

    // The tenant's own membership changes are announced asynchronously; one
    // arriving after the first check drops what it cached. Ask again until
    // a check is served from the cache (bounded).
    let hit = r#"affinity_permission_cache_requests_total{result="hit"}"#;
    let body = eventually(Duration::from_secs(10), || async {
        let body = scrape(metrics).await;
        if value(&body, hit).is_some_and(|n| n >= 1.0) {
            return Ok(body);
        }
        s.orgs()
            .user_has_org_permission(authed(permission_request(t.user, t.org), &service_token()))
            .await
            .unwrap();
        Err(body)
    })
    .await;
    let hits = value(&body, hit);
    let misses = value(
        &body,
        r#"affinity_permission_cache_requests_total{result="miss"}"#,
    );
    assert!(hits.is_some_and(|n| n >= 1.0), "{body}");
    assert!(misses.is_some_and(|n| n >= 1.0), "{body}");
    assert!(
        value(
            &body,
            r#"affinity_permission_cache_requests_total{result="bypass"}"#
        )
        .is_some(),
        "{body}"
    );

    let idle = value(&body, r#"affinity_db_pool_connections{state="idle"}"#);
    let in_use = value(&body, r#"affinity_db_pool_connections{state="in_use"}"#);
    // A connection just used may still be on its way back to the pool.
    assert!(
        idle.zip(in_use).is_some_and(|(i, u)| i + u >= 1.0),
        "{body}"
    );
    assert_eq!(value(&body, "affinity_db_pool_max_connections"), Some(8.0));
    assert_eq!(
        value(&body, "affinity_db_pool_waiting"),
        Some(0.0),
        "{body}"
    );

    let applied = value(&body, "affinity_migrations_applied").unwrap_or(0.0);
    assert!(applied >= 1.0, "{body}");
    assert_eq!(value(&body, "affinity_migrations_bundled"), Some(applied));
    assert_eq!(value(&body, "affinity_ready"), Some(1.0), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_endpoint_answers_other_paths_with_not_found() {
    let s = TestServer::start_with_metrics().await;
    let mut conn = tokio::net::TcpStream::connect(s.metrics_addr.unwrap())
        .await
        .unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.unwrap();
    assert!(raw.starts_with("HTTP/1.1 404"), "{raw}");
}

/// Calls waiting for a pool connection show in `affinity_db_pool_waiting`:
/// with one connection for calls (of two: the permission cache's listener
/// keeps one), held by a call blocked on a lock the test holds, the next
/// calls wait for it.
#[tokio::test(flavor = "multi_thread")]
async fn calls_waiting_for_a_pool_connection_are_counted() {
    let s = TestServer::start_with_metrics_on(common::TestDb::empty().await, |c| {
        c.db_max_connections = 2;
    })
    .await;
    let metrics = s.metrics_addr.expect("a metrics endpoint");
    let org = s.new_tenant().await.org;
    let mut lock = s.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE time_series_metrics IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    // service_role: no permission lookup, only the call's own connection.
    let calls: Vec<_> = (0..3)
        .map(|_| {
            let mut c = s.metrics();
            let req = authed(
                proto::RecordMetricsRequest {
                    organization_id: org.to_string(),
                    points: vec![proto::MetricPoint {
                        entity: Some(proto::EntityRef {
                            entity_type: "post".into(),
                            entity_id: Uuid::new_v4().to_string(),
                        }),
                        metric_name: "likes".into(),
                        value: 1.0,
                        recorded_at: None,
                    }],
                    ..Default::default()
                },
                &service_token(),
            );
            tokio::spawn(async move { c.record_metrics(req).await })
        })
        .collect();
    eventually(Duration::from_secs(10), || async {
        let waiting = value(&scrape(metrics).await, "affinity_db_pool_waiting");
        seen(
            waiting == Some(2.0),
            format!("{waiting:?} waiting: one call holds the connection, two wait"),
        )
    })
    .await;
    lock.commit().await.unwrap();
    for call in calls {
        call.await
            .unwrap()
            .expect("each call ends once the lock is gone");
    }
    assert_eq!(
        value(&scrape(metrics).await, "affinity_db_pool_waiting"),
        Some(0.0)
    );
}
