//! MaintenanceService through a real client, server and database.
mod common;

use affinity::proto;
use affinity_testkit::legacy::LegacyConfig;
use common::server::{authed, code, service_token, user_token, TestServer};
use common::TestDb;
use tonic::{Code, Request};
use uuid::Uuid;

async fn verify(s: &TestServer) -> proto::VerifyMigrationIntegrityResponse {
    s.maintenance()
        .verify_migration_integrity(authed(
            proto::VerifyMigrationIntegrityRequest {},
            &service_token(),
        ))
        .await
        .expect("verifying integrity")
        .into_inner()
}

async fn archive(s: &TestServer, older_than_days: u32) -> u64 {
    s.maintenance()
        .archive_old_metrics(authed(
            proto::ArchiveOldMetricsRequest { older_than_days },
            &service_token(),
        ))
        .await
        .expect("archiving")
        .into_inner()
        .archived
}

fn failed(r: &proto::VerifyMigrationIntegrityResponse) -> Vec<&str> {
    r.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn integrity_checks_pass_on_a_fresh_database() {
    let s = TestServer::start().await;
    let r = verify(&s).await;
    assert!(!r.checks.is_empty());
    assert!(r.all_passed, "{:?}", r.checks);
    assert!(r
        .checks
        .iter()
        .all(|c| !c.name.is_empty() && !c.details.is_empty()));
    assert!(r.checks.iter().any(|c| c.name == "legacy_data"));
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn integrity_of_a_migrated_legacy_database_fails_once_a_migrated_point_is_deleted() {
    let (db, _) = TestDb::legacy(&LegacyConfig::small()).await;
    let s = TestServer::start_on(db).await;
    let r = verify(&s).await;
    assert!(r.all_passed, "{:?}", r.checks);
    assert!(r.checks.iter().any(|c| c.name == "post_analytics_metrics"));

    let deleted = sqlx::query(
        "DELETE FROM time_series_metrics
         WHERE (organization_id, id, recorded_at) IN (
             SELECT organization_id, id, recorded_at FROM time_series_metrics
             WHERE source = 'post_analytics' LIMIT 1)",
    )
    .execute(&s.db.pool)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(deleted, 1);

    let r = verify(&s).await;
    assert!(!r.all_passed);
    assert_eq!(failed(&r), vec!["post_analytics_metrics"], "{:?}", r.checks);
    let check = r
        .checks
        .iter()
        .find(|c| c.name == "post_analytics_metrics")
        .unwrap();
    assert!(
        check.details.contains("1 without their point"),
        "{}",
        check.details
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn archive_moves_only_points_past_the_retention() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let other = s.new_tenant().await;
    let e = Uuid::new_v4();
    for org in [t.org, other.org] {
        sqlx::query(
            "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
             VALUES ($1, 'post', $2, 'likes', 1, now() - interval '400 days'),
                    ($1, 'post', $2, 'likes', 2, now() - interval '1 day')",
        )
        .bind(org)
        .bind(e)
        .execute(&s.db.pool)
        .await
        .unwrap();
    }
    let counts = || async {
        let hot: Vec<f64> = sqlx::query_scalar(
            "SELECT value FROM time_series_metrics WHERE entity_id = $1 ORDER BY value",
        )
        .bind(e)
        .fetch_all(&s.db.pool)
        .await
        .unwrap();
        let cold: Vec<f64> = sqlx::query_scalar(
            "SELECT value FROM archive.time_series_metrics WHERE entity_id = $1 ORDER BY value",
        )
        .bind(e)
        .fetch_all(&s.db.pool)
        .await
        .unwrap();
        (hot, cold)
    };

    // 0: the configured retention (365 days by default).
    assert_eq!(archive(&s, 0).await, 2);
    assert_eq!(counts().await, (vec![2.0, 2.0], vec![1.0, 1.0]));
    // Nothing left past the retention: a second run moves nothing.
    assert_eq!(archive(&s, 0).await, 0);
    // An explicit retention: 2 days still keeps yesterday's points.
    assert_eq!(archive(&s, 2).await, 0);
    assert_eq!(counts().await, (vec![2.0, 2.0], vec![1.0, 1.0]));

    // An absurd retention is refused rather than passed to the database.
    let r = s
        .maintenance()
        .archive_old_metrics(authed(
            proto::ArchiveOldMetricsRequest {
                older_than_days: u32::MAX,
            },
            &service_token(),
        ))
        .await;
    assert_eq!(code(r), Code::InvalidArgument);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn maintenance_needs_a_service_role_token_even_for_organization_owners() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    sqlx::query(
        "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         VALUES ($1, 'post', $2, 'likes', 1, now() - interval '400 days')",
    )
    .bind(t.org)
    .bind(Uuid::new_v4())
    .execute(&s.db.pool)
    .await
    .unwrap();
    let m = s.maintenance();
    let verify_req = proto::VerifyMigrationIntegrityRequest {};
    let archive_req = proto::ArchiveOldMetricsRequest { older_than_days: 0 };

    for token in [t.token.clone(), user_token(Uuid::new_v4())] {
        assert_eq!(
            code(
                m.clone()
                    .verify_migration_integrity(authed(verify_req, &token))
                    .await
            ),
            Code::PermissionDenied
        );
        assert_eq!(
            code(
                m.clone()
                    .archive_old_metrics(authed(archive_req, &token))
                    .await
            ),
            Code::PermissionDenied
        );
    }
    assert_eq!(
        code(
            m.clone()
                .verify_migration_integrity(Request::new(verify_req))
                .await
        ),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            m.clone()
                .archive_old_metrics(Request::new(archive_req))
                .await
        ),
        Code::Unauthenticated
    );
    assert_eq!(
        code(
            m.clone()
                .archive_old_metrics(authed(archive_req, "Bearer-less garbage"))
                .await
        ),
        Code::Unauthenticated
    );
    // Nothing was archived by the refused calls.
    let archived: i64 = sqlx::query_scalar("SELECT count(*) FROM archive.time_series_metrics")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(archived, 0);
    s.shutdown().await.unwrap();
}
