//! Watching the service: the Prometheus endpoint on its own port, the
//! request id that comes back with every response, and the log lines calls
//! leave.
mod common;

use std::time::Duration;

use affinity::proto::{self, metrics_service_client::MetricsServiceClient, Role};
use common::process::ServiceProcess;
use common::scrape;
use common::server::{
    aggregation, authed, code, new_tenant, service_token, user_token, TestServer,
};
use common::wait::{eventually, seen};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::metadata::MetadataMap;
use tonic::Code;
use uuid::Uuid;

/// The value of the series whose line starts with `series` (name and labels).
fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

fn permission_request(user: Uuid, org: Uuid) -> proto::UserHasOrgPermissionRequest {
    proto::UserHasOrgPermissionRequest {
        user_id: user.to_string(),
        organization_id: org.to_string(),
        required_role: Role::Viewer as i32,
    }
}

fn request_id(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

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

#[tokio::test(flavor = "multi_thread")]
async fn a_client_request_id_comes_back_and_a_missing_one_is_generated() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;

    let mut req = authed(permission_request(t.user, t.org), &service_token());
    req.metadata_mut()
        .insert("x-request-id", "abc-123".parse().unwrap());
    let r = s.orgs().user_has_org_permission(req).await.unwrap();
    assert_eq!(request_id(r.metadata()).as_deref(), Some("abc-123"));

    let r = s
        .orgs()
        .user_has_org_permission(authed(permission_request(t.user, t.org), &service_token()))
        .await
        .unwrap();
    let generated = request_id(r.metadata()).expect("a generated request id");
    assert!(Uuid::parse_str(&generated).is_ok(), "{generated}");

    // Too long to be kept: replaced by a generated one.
    let mut req = authed(permission_request(t.user, t.org), &service_token());
    req.metadata_mut()
        .insert("x-request-id", "x".repeat(129).parse().unwrap());
    let r = s.orgs().user_has_org_permission(req).await.unwrap();
    let replaced = request_id(r.metadata()).expect("a request id");
    assert!(Uuid::parse_str(&replaced).is_ok(), "{replaced}");
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_and_streaming_calls_carry_the_request_id_too() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;

    // Denied: a stranger asks about the organization.
    let mut req = authed(
        permission_request(Uuid::new_v4(), t.org),
        &common::server::user_token(Uuid::new_v4()),
    );
    req.metadata_mut()
        .insert("x-request-id", "denied-1".parse().unwrap());
    let err = s.orgs().user_has_org_permission(req).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert_eq!(request_id(err.metadata()).as_deref(), Some("denied-1"));

    // Unauthenticated (refused before any handler).
    let mut req = tonic::Request::new(permission_request(t.user, t.org));
    req.metadata_mut()
        .insert("x-request-id", "no-token-1".parse().unwrap());
    let err = s.orgs().user_has_org_permission(req).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert_eq!(request_id(err.metadata()).as_deref(), Some("no-token-1"));

    // A client-streaming call.
    let mut req = authed(
        tokio_stream::iter(Vec::<proto::LogAiContextRequest>::new()),
        &service_token(),
    );
    req.metadata_mut()
        .insert("x-request-id", "stream-1".parse().unwrap());
    let got = s.ai_context().log_ai_context_stream(req).await;
    let metadata = match &got {
        Ok(r) => r.metadata(),
        Err(e) => e.metadata(),
    };
    assert_eq!(request_id(metadata).as_deref(), Some("stream-1"), "{got:?}");
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
