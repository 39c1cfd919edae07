//! Replicas started together, on an empty or a legacy database, migrate it once and all serve.
use affinity::proto;
use affinity_testkit::legacy::LegacyConfig;

use crate::common::process::ServiceProcess;
use crate::common::server::{authed, new_tenant, service_token};
use crate::common::TestDb;
use crate::health::{assert_no_panic, terminate};
use crate::STARTUP;

// --- Replicas started together -------------------------------------------

/// The versions of the migration files in `migrations/` (what the binary
/// bundles), from their names: `<version>_<description>.sql`.
fn bundled_migrations() -> Vec<i64> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut versions: Vec<i64> = std::fs::read_dir(dir)
        .expect("reading migrations/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".sql") && !name.ends_with(".down.sql"))
        .filter_map(|name| name.split('_').next()?.parse().ok())
        .collect();
    versions.sort_unstable();
    versions
}

/// `n` replicas started at the same moment on `db`: the migrations are
/// applied once, no replica logs an error, each serves an authenticated
/// call. Seen failing with sqlx's migration lock turned off: replicas exit
/// with status 1 on migrations another one applied meanwhile.
async fn replicas_start_together(db: &TestDb, n: usize) {
    let mut replicas: Vec<ServiceProcess> = (0..n)
        .map(|_| ServiceProcess::spawn(&db.url, &[]))
        .collect();
    for r in &mut replicas {
        r.wait_serving(STARTUP).await;
    }
    let applied: Vec<(i64, bool)> =
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&db.pool)
            .await
            .expect("reading _sqlx_migrations");
    let bundled: Vec<(i64, bool)> = bundled_migrations()
        .into_iter()
        .map(|v| (v, true))
        .collect();
    assert_eq!(
        applied, bundled,
        "each migration applied once, successfully"
    );
    for (i, r) in replicas.iter().enumerate() {
        let t = new_tenant(&r.channel).await;
        let list =
            proto::organization_service_client::OrganizationServiceClient::new(r.channel.clone())
                .list_user_organizations(authed(
                    proto::ListUserOrganizationsRequest {
                        user_id: t.user.to_string(),
                    },
                    &t.token,
                ))
                .await
                .unwrap_or_else(|s| panic!("replica {i}: {s}"))
                .into_inner();
        let orgs: Vec<String> = list
            .memberships
            .iter()
            .filter_map(|m| m.organization.as_ref().map(|o| o.id.clone()))
            .collect();
        assert!(orgs.contains(&t.org.to_string()), "replica {i}: {orgs:?}");
    }
    for (i, r) in replicas.into_iter().enumerate() {
        let log = terminate(r).await;
        assert!(
            !log.contains(" ERROR "),
            "replica {i} logged an error:\n{log}"
        );
        assert_no_panic(&log);
    }
}

async fn replicas_on_a_legacy_database(n: usize) {
    let (db, stats) = TestDb::legacy(&LegacyConfig::small()).await;
    replicas_start_together(&db, n).await;
    // Migrated once: not a legacy row lost or doubled, and the schema's
    // own integrity checks pass.
    let posts: i64 = sqlx::query_scalar("SELECT count(*) FROM posts_unified")
        .fetch_one(&db.pool)
        .await
        .expect("counting posts");
    assert_eq!(posts as u64, stats.posts);
    let mut replica = ServiceProcess::spawn(&db.url, &[]);
    replica.wait_serving(STARTUP).await;
    let check =
        proto::maintenance_service_client::MaintenanceServiceClient::new(replica.channel.clone())
            .verify_migration_integrity(authed(
                proto::VerifyMigrationIntegrityRequest {},
                &service_token(),
            ))
            .await
            .expect("verifying the migration")
            .into_inner();
    assert!(check.all_passed, "{:#?}", check.checks);
    terminate(replica).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_started_together_on_an_empty_database_migrate_it_once_and_both_serve() {
    replicas_start_together(&TestDb::empty().await, 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn four_replicas_started_together_on_an_empty_database_migrate_it_once_and_all_serve() {
    replicas_start_together(&TestDb::empty().await, 4).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_started_together_on_a_legacy_database_migrate_it_once_and_both_serve() {
    replicas_on_a_legacy_database(2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn four_replicas_started_together_on_a_legacy_database_migrate_it_once_and_all_serve() {
    replicas_on_a_legacy_database(4).await;
}
