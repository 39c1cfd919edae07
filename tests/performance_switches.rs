//! The two performance switches (`AFFINITY_WARM_CONNECTIONS`,
//! `AFFINITY_COALESCE_WRITES`) turned off: the service answers as before,
//! through sqlx's own pool checks and one socket write per h2 write.
mod common;

use std::time::Duration;

use affinity::config::Switch;
use affinity::proto;
use common::server::{aggregation, authed, TestServer};
use common::wait::{eventually, seen};
use common::TestDb;
use sqlx::PgPool;

async fn server_with_switches_off() -> TestServer {
    TestServer::start_with(TestDb::empty().await, |c| {
        c.warm_connections = Switch::Off;
        c.coalesce_writes = Switch::Off;
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_write_coalescing_responses_large_and_small_arrive_whole() {
    let server = server_with_switches_off().await;
    let tenant = server.new_tenant().await;
    // Far over h2's 256 bytes: written apart from its trailers.
    let checks: Vec<proto::UserHasOrgPermissionRequest> = (0..100)
        .map(|_| proto::UserHasOrgPermissionRequest {
            user_id: tenant.user.to_string(),
            organization_id: tenant.org.to_string(),
            required_role: proto::Role::Viewer as i32,
        })
        .collect();
    let answers = server
        .orgs()
        .check_permissions(authed(
            proto::CheckPermissionsRequest { checks },
            &tenant.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(answers.len(), 100);
    assert!(answers.iter().all(|a| a.allowed));
    let buckets = server
        .metrics()
        .get_metrics_aggregated(authed(aggregation(tenant.org), &tenant.token))
        .await
        .unwrap()
        .into_inner()
        .buckets;
    assert!(buckets.is_empty());
}

/// The idle backends of the service's calls that last ran `query_like`.
async fn idle_backends(pool: &PgPool, query_like: &str) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity
         WHERE application_name = 'affinity' AND state = 'idle' AND query LIKE $1",
    )
    .bind(query_like)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_warm_connections_a_killed_idle_backend_fails_no_call() {
    let server = server_with_switches_off().await;
    let tenant = server.new_tenant().await;
    let call = || {
        let mut client = server.metrics();
        let req = authed(aggregation(tenant.org), &tenant.token);
        async move { client.get_metrics_aggregated(req).await }
    };
    for _ in 0..3 {
        call().await.unwrap();
    }
    let pool = &server.db.pool;
    let idle = idle_backends(pool, "%get_metrics_aggregated%").await;
    assert!(!idle.is_empty(), "no idle connection found");
    for pid in &idle {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(pool)
            .await
            .unwrap();
    }
    // Gone for good before the next call looks for a connection.
    eventually(Duration::from_secs(10), || async {
        let left = idle_backends(pool, "%get_metrics_aggregated%").await;
        seen(!left.iter().any(|pid| idle.contains(pid)), left)
    })
    .await;
    // sqlx's pool checks every connection it hands out: none is found dead
    // by a call.
    for _ in 0..5 {
        call().await.unwrap();
    }
}
