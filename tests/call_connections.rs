//! Connections between calls (`src/db/pool.rs` `CountedPool::acquire_call`, `src/db/warm.rs`):
//! a connection that just served a whole call is handed to the next call
//! without sqlx's pings; anything else goes back to sqlx's pool, which
//! tests it (all of them do with `AFFINITY_WARM_CONNECTIONS=off`). Neither
//! a cancelled call's open transaction nor a backend killed while its
//! connection waits may reach later calls.

mod common;

use std::time::Duration;

use affinity::config::Switch;
use common::server::{aggregation, authed, Tenant, TestServer};
use common::wait::{eventually, seen};
use common::TestDb;
use sqlx::PgPool;
use tonic::Code;

/// The service's backends in `state` (pg_stat_activity), with their last query.
async fn backends(pool: &PgPool, state: &str) -> Vec<(i32, String)> {
    sqlx::query_as(
        "SELECT pid, query FROM pg_stat_activity
         WHERE application_name = 'affinity' AND state = $1",
    )
    .bind(state)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cancelled_inside_its_transaction_leaves_no_transaction_open() {
    let server = TestServer::start_with_metrics().await;
    let tenant = server.new_tenant().await;
    // The call's transaction (a client deadline opens one) waits behind a lock.
    let mut lock = server.db.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE metric_rollups_daily IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut client = server.metrics();
    let mut req = authed(aggregation(tenant.org), &tenant.token);
    req.set_timeout(Duration::from_secs(30));
    let call = tokio::spawn(async move { client.get_metrics_aggregated(req).await });
    let pool = server.db.pool.clone();
    eventually(Duration::from_secs(10), || async {
        seen(
            !backends(&pool, "active").await.is_empty(),
            "the call never reached the database",
        )
    })
    .await;
    // The client goes away: the service drops the call mid-statement (and
    // counts it CANCELLED once dropped) before the lock is released.
    call.abort();
    let metrics = server.metrics_addr.expect("a metrics endpoint");
    let cancelled = r#"affinity_rpc_requests_total{code="CANCELLED",method="/affinity.v1.MetricsService/GetMetricsAggregated"}"#;
    eventually(Duration::from_secs(10), || async {
        let n = common::sample(&common::scrape(metrics).await, cancelled);
        seen(
            n == Some(1.0),
            format!("aggregations counted CANCELLED: {n:?}"),
        )
    })
    .await;
    lock.rollback().await.unwrap();

    // Its statement ends, its transaction is rolled back, and the
    // connection is not left idle in a transaction for anyone.
    eventually(Duration::from_secs(10), || async {
        let idle = backends(&pool, "idle in transaction").await;
        let active = backends(&pool, "active").await;
        seen(
            idle.is_empty() && active.is_empty(),
            format!("left behind: {idle:?}, still active: {active:?}"),
        )
    })
    .await;
    // Later calls, with and without a transaction of their own, succeed
    // and leave nothing open either.
    for deadline in [None, Some(Duration::from_secs(10)), None] {
        let mut req = authed(aggregation(tenant.org), &tenant.token);
        if let Some(d) = deadline {
            req.set_timeout(d);
        }
        server.metrics().get_metrics_aggregated(req).await.unwrap();
    }
    assert!(backends(&pool, "idle in transaction").await.is_empty());
}

/// An aggregation of `tenant`'s organization (`end` unset: never cached,
/// so every call reaches the database).
async fn aggregate(server: &TestServer, tenant: &Tenant) -> Result<(), tonic::Status> {
    let req = authed(aggregation(tenant.org), &tenant.token);
    server.metrics().get_metrics_aggregated(req).await.map(drop)
}

/// Serves three aggregations, then ends the backends of the connections
/// that served them, idle now (an administrator's pg_terminate_backend; the
/// probe's own connection is left alone, so no outage is seen), and waits
/// until they are gone. Their pids.
async fn kill_the_idle_backends_of_aggregations(server: &TestServer, tenant: &Tenant) -> Vec<i32> {
    for _ in 0..3 {
        aggregate(server, tenant).await.unwrap();
    }
    let pool = &server.db.pool;
    let idle = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity
             WHERE application_name = 'affinity' AND state = 'idle'
               AND query LIKE '%get_metrics_aggregated%'",
        )
        .fetch_all(pool)
        .await
        .unwrap()
    };
    let killed = idle().await;
    assert!(!killed.is_empty(), "no idle connection found");
    for pid in &killed {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(pool)
            .await
            .unwrap();
    }
    eventually(Duration::from_secs(10), || async {
        let left = idle().await;
        seen(!left.iter().any(|pid| killed.contains(pid)), left)
    })
    .await;
    killed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_connection_whose_backend_is_killed_fails_at_most_one_call() {
    let server = TestServer::start().await;
    let tenant = server.new_tenant().await;
    // The connection(s) that served them wait warm.
    let killed = kill_the_idle_backends_of_aggregations(&server, &tenant).await;

    let mut failures = Vec::new();
    for _ in 0..5 {
        if let Err(status) = aggregate(&server, &tenant).await {
            failures.push(status);
        }
    }
    // Each killed connection can fail the one call that finds it dead, with
    // a code clients retry; then it leaves for good.
    assert!(
        failures.len() <= killed.len(),
        "{} failures for {} killed connections: {failures:?}",
        failures.len(),
        killed.len()
    );
    assert!(
        failures.iter().all(|s| s.code() == Code::Unavailable),
        "{failures:?}"
    );
    for _ in 0..5 {
        aggregate(&server, &tenant).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_warm_connections_a_killed_idle_backend_fails_no_call() {
    let server = TestServer::start_with(TestDb::empty().await, |c| {
        c.warm_connections = Switch::Off;
    })
    .await;
    let tenant = server.new_tenant().await;
    kill_the_idle_backends_of_aggregations(&server, &tenant).await;
    // sqlx's pool checks every connection it hands out
    // (AFFINITY_WARM_CONNECTIONS=off): none is found dead by a call.
    for _ in 0..5 {
        aggregate(&server, &tenant).await.unwrap();
    }
}
