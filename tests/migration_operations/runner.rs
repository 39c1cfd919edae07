//! `affinity migrate` applies the pending phases once, with progress logs, however many replicas race.
use std::time::Duration;

use crate::common::process::ServiceProcess;
use crate::common::{run_binary, TestDb};
use crate::{assert_succeeded, exec, scalar_i64, LIMIT};
use affinity::db::migrate::{self, MIGRATOR};
use affinity_testkit::legacy::LegacyConfig;

#[tokio::test(flavor = "multi_thread")]
async fn migrate_logs_each_phase_with_its_duration_and_row_counts_and_commits_once() {
    let (db, stats) = TestDb::legacy(&LegacyConfig::small()).await;
    let run = run_binary(&db, &["migrate"], LIMIT).await;
    assert_succeeded(&run);
    let log = &run.stderr;
    for phase in ["01", "02", "03", "04", "05"] {
        assert!(
            log.lines()
                .any(|l| l.contains("phase started") && l.contains(&format!("phase={phase}"))),
            "no start line of phase {phase}:\n{log}"
        );
        assert!(
            log.lines().any(|l| l.contains("phase done")
                && l.contains(&format!("phase={phase}"))
                && l.contains("elapsed_ms=")),
            "no done line of phase {phase}:\n{log}"
        );
    }
    // The counts are the real ones.
    assert!(
        log.contains(&format!("posts_core={}", stats.posts)),
        "posts_core={} not in:\n{log}",
        stats.posts
    );
    assert!(
        log.contains(&format!("posts_backup={}", stats.posts)),
        "{log}"
    );
    assert!(log.contains("metric_rollups_hourly="), "{log}");
    assert_eq!(log.matches("migrations committed").count(), 1, "{log}");
    assert_eq!(
        scalar_i64(
            &db.pool,
            "SELECT count(*) FROM _sqlx_migrations WHERE success"
        )
        .await,
        MIGRATOR.iter().count() as i64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn four_replicas_migrating_a_legacy_database_at_once_apply_the_migrations_once() {
    let (db, _) = TestDb::legacy(&LegacyConfig::small()).await;
    let runs =
        futures::future::join_all((0..4).map(|_| run_binary(&db, &["migrate"], LIMIT))).await;
    for run in &runs {
        assert_succeeded(run);
    }
    let committed = runs
        .iter()
        .filter(|r| r.stderr.contains("migrations committed"))
        .count();
    let idle = runs
        .iter()
        .filter(|r| r.stderr.contains("nothing pending"))
        .count();
    assert_eq!((committed, idle), (1, 3));
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM _sqlx_migrations").await,
        MIGRATOR.iter().count() as i64
    );
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM posts_core").await,
        scalar_i64(&db.pool, "SELECT count(*) FROM posts_backup").await
    );
}

#[tokio::test]
async fn a_database_migrated_by_sqlx_s_own_runner_is_recognised_and_a_changed_migration_refused() {
    let db = TestDb::empty().await;
    MIGRATOR.run(&db.pool).await.expect("sqlx's runner");
    assert_eq!(migrate::run(&db.pool).await.expect("our runner"), 0);

    exec(
        &db.pool,
        "UPDATE _sqlx_migrations SET checksum = '\\x00' WHERE version = 20240101000002",
    )
    .await;
    let err = migrate::run(&db.pool).await.unwrap_err().to_string();
    assert!(
        err.contains("20240101000002") && err.contains("changed after it was applied"),
        "{err}"
    );
}

/// `affinity serve` replicas started at the same moment on `db`, each on a
/// port of its own, logging to a file each.
async fn replicas_serve_after_one_migration(db: &TestDb, replicas: usize) {
    let mut children: Vec<ServiceProcess> = (0..replicas)
        .map(|_| ServiceProcess::spawn(&db.url, &[]))
        .collect();
    for child in &mut children {
        child.wait_serving(Duration::from_secs(120)).await;
    }
    let logs: Vec<String> = children.iter().map(ServiceProcess::log).collect();
    drop(children);
    let committed = logs
        .iter()
        .filter(|l| l.contains("migrations committed"))
        .count();
    let idle = logs
        .iter()
        .filter(|l| l.contains("nothing pending"))
        .count();
    assert_eq!((committed, idle), (1, replicas - 1), "{logs:#?}");
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM _sqlx_migrations").await,
        MIGRATOR.iter().count() as i64
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_started_together_migrate_once_and_all_serve() {
    let empty = TestDb::empty().await;
    replicas_serve_after_one_migration(&empty, 2).await;
    let (legacy, _) = TestDb::legacy(&LegacyConfig::small()).await;
    replicas_serve_after_one_migration(&legacy, 4).await;
    assert_eq!(
        scalar_i64(&legacy.pool, "SELECT count(*) FROM posts_core").await,
        scalar_i64(&legacy.pool, "SELECT count(*) FROM posts_backup").await
    );
}
