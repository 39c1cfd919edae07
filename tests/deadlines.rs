//! Deadlines and per-connection limits: a client deadline (or, without one,
//! the configured statement timeout) stops the call's statement in
//! PostgreSQL, not just the wait for it; calls beyond a connection's
//! concurrent-stream limit wait for a free stream.

mod common;

use std::time::Duration;

use affinity::proto;
use common::server::{aggregation, authed, code, TestServer};
use common::wait::{eventually, seen};
use common::TestDb;
use sqlx::PgPool;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

/// Tables GetMetricsAggregated reads; locked, its statement waits.
const METRIC_TABLES: &str = "time_series_metrics, metric_rollups_hourly, metric_rollups_daily";

/// Backends of the service waiting for a lock.
async fn service_backends_waiting_on_a_lock(pool: &PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE application_name = 'affinity' AND wait_event_type = 'Lock'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Waits (up to `limit`) until `pred` holds on the count of waiting
/// backends; panics saying `what` did not happen otherwise.
async fn wait_for_waiting(pool: &PgPool, limit: Duration, what: &str, pred: impl Fn(i64) -> bool) {
    eventually(limit, || async {
        let n = service_backends_waiting_on_a_lock(pool).await;
        seen(pred(n), format!("{what}: {n} backends waiting on a lock"))
    })
    .await;
}

type AggregateCall = tokio::task::JoinHandle<
    Result<tonic::Response<proto::GetMetricsAggregatedResponse>, tonic::Status>,
>;

/// Starts GetMetricsAggregated while the returned transaction holds the
/// metric tables locked; returns once the service's statement waits for it.
async fn start_aggregation_behind_a_lock(
    server: &TestServer,
    deadline: Option<Duration>,
) -> (sqlx::Transaction<'static, sqlx::Postgres>, AggregateCall) {
    let tenant = server.new_tenant().await;
    let mut tx = server.db.pool.begin().await.unwrap();
    sqlx::query(&format!(
        "LOCK TABLE {METRIC_TABLES} IN ACCESS EXCLUSIVE MODE"
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    let mut client = server.metrics();
    let mut req = authed(aggregation(tenant.org), &tenant.token);
    if let Some(d) = deadline {
        req.set_timeout(d);
    }
    let call = tokio::spawn(async move { client.get_metrics_aggregated(req).await });
    wait_for_waiting(
        &server.db.pool,
        Duration::from_secs(10),
        "the call's statement never reached the database",
        |n| n > 0,
    )
    .await;
    (tx, call)
}

/// Runs GetMetricsAggregated while another session holds the metric tables
/// locked; returns its status code, once the service's backend has been seen
/// waiting, and asserts that the backend stops waiting while the lock is
/// still held.
async fn aggregate_behind_a_lock(server: &TestServer, deadline: Option<Duration>) -> Code {
    let (tx, call) = start_aggregation_behind_a_lock(server, deadline).await;
    let result = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call did not end within 10 s")
        .unwrap();
    let code = match result {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    };
    // The lock is still held: only a cancelled statement stops waiting.
    wait_for_waiting(
        &server.db.pool,
        Duration::from_secs(5),
        "the service's statement still waits in PostgreSQL after the call ended",
        |n| n == 0,
    )
    .await;
    tx.rollback().await.unwrap();
    code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deadline_cancels_the_statement_in_the_database() {
    let server = TestServer::start().await;
    let started = Instant::now();
    let code = aggregate_behind_a_lock(&server, Some(Duration::from_millis(500))).await;
    // The service answers DEADLINE_EXCEEDED just before the deadline; on a
    // loaded machine the client's own timer for the same deadline can fire
    // first (CANCELLED). Either way the statement must be gone (checked above,
    // with the lock still held).
    assert!(
        matches!(code, Code::DeadlineExceeded | Code::Cancelled),
        "{code:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));

    // The service is fine afterwards, and the same call succeeds.
    let tenant = server.new_tenant().await;
    let mut req = authed(aggregation(tenant.org), &tenant.token);
    req.set_timeout(Duration::from_secs(10));
    server.metrics().get_metrics_aggregated(req).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_deadline_the_configured_statement_timeout_applies() {
    let server = TestServer::start_with(TestDb::empty().await, |c| {
        c.statement_timeout_ms = 300;
    })
    .await;
    let code = aggregate_behind_a_lock(&server, None).await;
    assert_eq!(code, Code::DeadlineExceeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_deadline_longer_than_the_default_timeout_is_honoured() {
    // Migrations are not bound by the default timeout either: the server
    // starts. Authorization (a quick lookup) runs under the default.
    let server = TestServer::start_with(TestDb::empty().await, |c| {
        c.statement_timeout_ms = 300;
    })
    .await;
    let (tx, call) = start_aggregation_behind_a_lock(&server, Some(Duration::from_secs(30))).await;
    // Waiting past the default timeout, and still waiting: the client's
    // deadline is the statement's timeout. Past it, because the same call
    // without a deadline, started behind the same lock after that one
    // waited, has been stopped by the default timeout meanwhile.
    let tenant = server.new_tenant().await;
    let without_deadline = server
        .metrics()
        .get_metrics_aggregated(authed(aggregation(tenant.org), &tenant.token))
        .await;
    assert_eq!(code(without_deadline), Code::DeadlineExceeded);
    wait_for_waiting(
        &server.db.pool,
        Duration::from_secs(5),
        "the call stopped by the default timeout still waits in PostgreSQL",
        |n| n <= 1,
    )
    .await;
    assert_eq!(
        service_backends_waiting_on_a_lock(&server.db.pool).await,
        1,
        "the statement was stopped by the default timeout despite the longer deadline"
    );
    tx.rollback().await.unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the call did not end within 10 s")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
}

/// Membership lookups of the permission cache so far, whatever it answered.
async fn permission_lookups(metrics: std::net::SocketAddr) -> f64 {
    let scraped = common::scrape(metrics).await;
    ["hit", "miss", "bypass"]
        .iter()
        .filter_map(|result| {
            common::sample(
                &scraped,
                &format!("affinity_permission_cache_requests_total{{result=\"{result}\"}}"),
            )
        })
        .sum()
}

fn stream_message(org: &str) -> proto::LogAiContextRequest {
    proto::LogAiContextRequest {
        organization_id: org.to_string(),
        source_type: "chat".into(),
        context_summary: "hello".into(),
        ..Default::default()
    }
}

async fn health_check(channel: Channel) -> bool {
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_beyond_the_concurrent_stream_limit_of_a_connection_wait_for_a_free_stream() {
    let server = TestServer::start_with_metrics_on(TestDb::empty().await, |c| {
        c.max_concurrent_streams = 2;
    })
    .await;
    let metrics = server.metrics_addr.expect("a metrics endpoint");
    let tenant = server.new_tenant().await;
    // One connection.
    let channel = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();

    // Two client streams, open and unfinished, fill the connection's limit.
    let lookups_before = permission_lookups(metrics).await;
    let mut senders = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..2 {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.send(stream_message(&tenant.org.to_string()))
            .await
            .unwrap();
        let mut client =
            proto::ai_context_service_client::AiContextServiceClient::new(channel.clone());
        let req = authed(
            tokio_stream::wrappers::ReceiverStream::new(rx),
            &tenant.token,
        );
        calls.push(tokio::spawn(async move {
            client.log_ai_context_stream(req).await
        }));
        senders.push(tx);
    }
    // Both streams are open before the third call: the server has
    // authorized the first message of each (a permission lookup apiece).
    eventually(Duration::from_secs(10), || async {
        let n = permission_lookups(metrics).await - lookups_before;
        seen(
            n >= 2.0,
            format!("{n} of the 2 streams' first messages authorized"),
        )
    })
    .await;

    // A third call on the same connection waits (h2 queues it client-side)...
    let third = tokio::spawn(health_check(channel.clone()));
    // A bounded wait, not an event: a call queued in the client for a free
    // stream leaves no trace to look for.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !third.is_finished(),
        "a third stream was opened beyond the limit of 2"
    );
    // ...while another connection is served at once.
    let other = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    assert!(health_check(other).await);

    // Ending one stream frees a slot: the third call goes through.
    senders.remove(0);
    let first = calls.remove(0).await.unwrap().unwrap().into_inner();
    assert_eq!(first.stored, 1);
    assert!(tokio::time::timeout(Duration::from_secs(10), third)
        .await
        .expect("the queued call never ran")
        .unwrap());
    drop(senders);
    let second = calls.remove(0).await.unwrap().unwrap().into_inner();
    assert_eq!(second.stored, 1);
    assert!(health_check(channel).await);
}
