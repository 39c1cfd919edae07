//! A refused or failed call leaves one log line naming its method, request id and status.
use std::time::Duration;

use crate::common;
use crate::common::process::ServiceProcess;
use crate::common::server::{aggregation, authed, code, new_tenant, user_token};
use crate::common::wait::eventually;
use affinity::proto::metrics_service_client::MetricsServiceClient;
use tonic::Code;
use uuid::Uuid;

/// `req` with the client's request id `id`.
fn with_request_id<T>(mut req: tonic::Request<T>, id: &'static str) -> tonic::Request<T> {
    req.metadata_mut().insert(
        "x-request-id",
        tonic::metadata::MetadataValue::from_static(id),
    );
    req
}

/// Waits for the one line of the service's log that names `request_id` (it
/// is written as the call ends, a moment after the client has its answer),
/// checks that it holds every one of `parts`, and returns the whole log.
async fn check_the_line_of(svc: &ServiceProcess, request_id: &str, parts: &[&str]) -> String {
    let log = eventually(Duration::from_secs(5), || async {
        let log = svc.log();
        match log.contains(request_id) {
            true => Ok(log),
            false => Err(format!("no line for {request_id}:\n{log}")),
        }
    })
    .await;
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(request_id)).collect();
    assert_eq!(lines.len(), 1, "one line for {request_id}:\n{log}");
    for part in parts {
        assert!(
            lines[0].contains(part),
            "{part:?} missing from {:?}",
            lines[0]
        );
    }
    log
}

/// What an operator reads at the default log level: a refused call leaves
/// one line, in the call's span (method, request id, organization), with
/// the contract's name of its status and its latency; a successful call
/// leaves none.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_call_logs_one_line_with_its_request_id_status_and_organization() {
    let db = common::TestDb::migrated().await;
    let mut svc = ServiceProcess::spawn(&db.url, &[]);
    svc.wait_serving(Duration::from_secs(60)).await;
    let t = new_tenant(&svc.channel).await;
    let mut metrics = MetricsServiceClient::new(svc.channel.clone());

    let ok = authed(aggregation(t.org), &t.token);
    metrics
        .get_metrics_aggregated(with_request_id(ok, "log-test-ok"))
        .await
        .expect("a member's aggregation");
    let stranger = authed(aggregation(t.org), &user_token(Uuid::new_v4()));
    let denied = metrics
        .get_metrics_aggregated(with_request_id(stranger, "log-test-denied"))
        .await;
    assert_eq!(code(denied), Code::PermissionDenied);

    let organization = format!("organization={}", t.org);
    let log = check_the_line_of(
        &svc,
        "log-test-denied",
        &[
            "rpc finished",
            "status=PERMISSION_DENIED",
            "latency_ms=",
            "method=/affinity.v1.MetricsService/GetMetricsAggregated",
            &organization,
        ],
    )
    .await;
    assert!(
        !log.contains("log-test-ok"),
        "a successful call logs nothing at INFO:\n{log}"
    );
}

/// Under `RUST_LOG=warn` the calls' INFO spans are filtered out, and a
/// failure of the service's own still leaves a line naming the call: here a
/// call whose deadline passes while another session locks the metric
/// tables.
#[tokio::test(flavor = "multi_thread")]
async fn under_a_warn_filter_a_failed_call_still_logs_its_method_request_id_and_status() {
    let db = common::TestDb::migrated().await;
    let mut svc = ServiceProcess::spawn(&db.url, &[("RUST_LOG", "warn")]);
    svc.wait_serving(Duration::from_secs(60)).await;
    let t = new_tenant(&svc.channel).await;
    let pool = common::connect(&db.url).await;
    let mut lock = pool.begin().await.unwrap();
    sqlx::query(
        "LOCK TABLE time_series_metrics, metric_rollups_hourly, metric_rollups_daily
         IN ACCESS EXCLUSIVE MODE",
    )
    .execute(&mut *lock)
    .await
    .unwrap();
    let mut req = with_request_id(authed(aggregation(t.org), &t.token), "log-test-deadline");
    req.set_timeout(Duration::from_millis(500));
    let result = MetricsServiceClient::new(svc.channel.clone())
        .get_metrics_aggregated(req)
        .await;
    // The service answers DEADLINE_EXCEEDED just before the deadline; on a
    // loaded machine the client's own timer for the same deadline can fire
    // first (CANCELLED, as in tests/deadlines.rs). The service's line is
    // what this test is about.
    let code = code(result);
    assert!(
        matches!(code, Code::DeadlineExceeded | Code::Cancelled),
        "{code:?}"
    );
    lock.rollback().await.unwrap();

    check_the_line_of(
        &svc,
        "log-test-deadline",
        &[
            "WARN",
            "rpc failed",
            "status=DEADLINE_EXCEEDED",
            "method=/affinity.v1.MetricsService/GetMetricsAggregated",
            "request_id=\"log-test-deadline\"",
        ],
    )
    .await;
}
