//! Operating the migrations with the real binary: every pending phase in one
//! transaction with progress logs, refusal of legacy data the phases cannot
//! carry (naming phase and rows, changing nothing), `affinity migrate
//! --rollback`, `affinity verify` and `affinity finalize`.
mod common;

use std::time::Duration;

use affinity::db::migrate::{self, MIGRATOR};
use affinity::db::rollback::ROLLBACK_KNOWS_UP_TO;
use affinity_testkit::legacy::LegacyConfig;
use common::process::ServiceProcess;
use common::{all_table_fingerprints, catalog, run_binary, BinaryRun, TestDb};
use sqlx::PgPool;

const LIMIT: Duration = Duration::from_secs(300);

/// Everything observable of a database's contents and schema.
async fn state(
    pool: &PgPool,
) -> (
    Vec<String>,
    std::collections::BTreeMap<String, (i64, String)>,
) {
    (catalog(pool).await, all_table_fingerprints(pool).await)
}

async fn exec(pool: &PgPool, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn ids(pool: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn assert_failed_with(run: &BinaryRun, needles: &[&str]) {
    assert!(!run.status.success(), "exited 0; stderr:\n{}", run.stderr);
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "{n:?} not in stderr:\n{}",
            run.stderr
        );
    }
}

fn assert_succeeded(run: &BinaryRun) {
    assert!(
        run.status.success(),
        "{}; stdout:\n{}\nstderr:\n{}",
        run.status,
        run.stdout,
        run.stderr
    );
}

/// Whether the database shows no trace of a migration: no _sqlx_migrations
/// (or no rows in it) and none of the objects phase 01-05 create.
async fn assert_no_migration_trace(pool: &PgPool) {
    let table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations')::text")
            .fetch_one(pool)
            .await
            .unwrap();
    let recorded = match table {
        Some(_) => scalar_i64(pool, "SELECT count(*) FROM _sqlx_migrations").await,
        None => 0,
    };
    assert_eq!(recorded, 0);
    for name in [
        "posts_core",
        "migration_legacy_snapshot",
        "organizations",
        "time_series_metrics",
    ] {
        let found: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(name)
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(found, None, "{name} exists");
    }
}

#[test]
fn rollback_knows_every_bundled_migration() {
    // A new migration file must teach src/db/rollback.sql what it creates.
    for m in MIGRATOR.iter() {
        assert!(
            m.version <= ROLLBACK_KNOWS_UP_TO,
            "migration {} ({}) is unknown to the rollback",
            m.version,
            m.description
        );
    }
}

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

/// A legacy database broken by `breakage`: `affinity migrate` fails naming
/// the phase and the rows `offenders` selects, and changes nothing.
async fn refused_and_unchanged(breakage: &str, offenders: &str, phase: &str) -> (TestDb, String) {
    let (db, _) = TestDb::legacy(&LegacyConfig::small()).await;
    exec(&db.pool, breakage).await;
    let named = ids(&db.pool, offenders).await;
    assert!(!named.is_empty(), "the breakage made no offending row");
    let before = state(&db.pool).await;

    let run = run_binary(&db, &["migrate"], LIMIT).await;
    let mut needles = vec![phase, "nothing was applied"];
    needles.extend(named.iter().map(String::as_str));
    assert_failed_with(&run, &needles);

    assert_eq!(state(&db.pool).await, before);
    assert_no_migration_trace(&db.pool).await;
    (db, run.stderr)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_post_whose_user_is_missing_fails_migrate_and_serve_naming_phase_and_post() {
    let (db, _) = refused_and_unchanged(
        "ALTER TABLE posts DROP CONSTRAINT posts_user_id_fkey;
         UPDATE posts SET user_id = gen_random_uuid()
         WHERE id IN (SELECT id FROM posts ORDER BY id LIMIT 2);",
        "SELECT p.id::text FROM posts p LEFT JOIN user_profiles u ON u.id = p.user_id WHERE u.id IS NULL",
        "phase 01 (posts normalization): posts whose user_id is not in user_profiles",
    )
    .await;

    // `affinity serve` neither serves nor retries: it exits non-zero with
    // the same message, leaving the database as it was.
    let before = state(&db.pool).await;
    let run = run_binary(&db, &["serve"], LIMIT).await;
    assert_failed_with(
        &run,
        &[
            "migrating the database",
            "posts whose user_id is not in user_profiles",
        ],
    );
    assert!(!run.stderr.contains(": SERVING "), "{}", run.stderr);
    assert_eq!(state(&db.pool).await, before);
    assert_no_migration_trace(&db.pool).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_posts_of_a_user_with_the_same_platform_id_fail_naming_both_posts() {
    refused_and_unchanged(
        // The legacy unique index dropped, then a copy of a published post.
        "DROP INDEX posts_platform_external_id_key;
         INSERT INTO posts (user_id, platform, external_id, caption)
         SELECT user_id, platform, external_id, 'the same post, imported twice'
         FROM posts WHERE external_id IS NOT NULL ORDER BY id LIMIT 1;",
        "SELECT p.id::text FROM posts p
         WHERE (p.user_id, p.platform, p.external_id) IN (
             SELECT user_id, platform, external_id FROM posts WHERE external_id IS NOT NULL
             GROUP BY 1, 2, 3 HAVING count(*) > 1)",
        "phase 03 (organizations): posts of one user sharing a platform id",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_null_media_url_fails_naming_phase_and_post() {
    refused_and_unchanged(
        "UPDATE posts SET media_urls = media_urls || NULL::text
         WHERE id = (SELECT id FROM posts ORDER BY id LIMIT 1);",
        "SELECT id::text FROM posts WHERE array_position(media_urls, NULL) IS NOT NULL",
        "phase 01 (posts normalization): posts with a NULL element in media_urls",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_phase_failing_after_others_ran_leaves_no_trace_of_them() {
    // A legacy table named like one phase 04 creates: phases 01-03 run, then
    // 04 fails. With one transaction per phase, 01-03 would stay applied.
    let (db, _) = TestDb::legacy(&LegacyConfig::small()).await;
    exec(
        &db.pool,
        "CREATE TABLE scraped_posts (id int PRIMARY KEY); INSERT INTO scraped_posts VALUES (1)",
    )
    .await;
    let before = state(&db.pool).await;
    let run = run_binary(&db, &["migrate"], LIMIT).await;
    assert_failed_with(
        &run,
        &[
            "phase 04 (cleanup consolidation) failed, nothing was applied",
            "scraped_posts",
        ],
    );
    assert!(
        run.stderr.contains("phase=03"),
        "phase 03 never ran:\n{}",
        run.stderr
    );
    assert_eq!(state(&db.pool).await, before);
    assert_no_migration_trace(&db.pool).await;
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

#[tokio::test(flavor = "multi_thread")]
async fn rollback_returns_a_migrated_legacy_database_to_the_legacy_state() {
    let (db, _) = TestDb::legacy(&LegacyConfig::small()).await;
    let legacy = state(&db.pool).await;
    assert!(legacy.1.len() >= 8, "{:?}", legacy.1.keys());

    assert_succeeded(&run_binary(&db, &["migrate"], LIMIT).await);
    // Written through the new schema after the migration (lost by the rollback).
    exec(
        &db.pool,
        "UPDATE posts_content SET caption = 'edited after the migration'
         WHERE post_id = (SELECT min(id::text)::uuid FROM posts_backup);
         INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         SELECT organization_id, 'post', id, 'likes', 1, now() FROM posts_core LIMIT 1;
         INSERT INTO ai_context_logs (organization_id, user_id, source_type, context_summary)
         SELECT organization_id, id, 'test', 'after the migration' FROM user_profiles LIMIT 1;",
    )
    .await;

    let run = run_binary(&db, &["migrate", "--rollback"], LIMIT).await;
    assert_succeeded(&run);
    assert!(run.stdout.contains("legacy schema"), "{}", run.stdout);
    let after = state(&db.pool).await;
    // Same objects, same rows in every table, and nothing else.
    assert_eq!(after.0, legacy.0);
    assert_eq!(after.1, legacy.1);

    // It migrates again, and every integrity check passes.
    assert_succeeded(&run_binary(&db, &["migrate"], LIMIT).await);
    let verify = run_binary(&db, &["verify"], LIMIT).await;
    assert_succeeded(&verify);
    assert!(!verify.stdout.contains(" NO "), "{}", verify.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_is_refused_after_finalize_and_on_a_schema_built_empty() {
    let (db, _) = TestDb::legacy(&LegacyConfig::small()).await;
    db.migrate().await;
    assert_succeeded(&run_binary(&db, &["finalize"], LIMIT).await);
    let before = state(&db.pool).await;
    let run = run_binary(&db, &["migrate", "--rollback"], LIMIT).await;
    assert_failed_with(
        &run,
        &[
            "rollback refused",
            "finalize_migration_cleanup() dropped the legacy backups",
        ],
    );
    assert_eq!(state(&db.pool).await, before);

    let empty = TestDb::migrated().await;
    let before = state(&empty.pool).await;
    let run = run_binary(&empty, &["migrate", "--rollback"], LIMIT).await;
    assert_failed_with(&run, &["rollback refused", "built on an empty database"]);
    assert_eq!(state(&empty.pool).await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_prints_the_checks_and_fails_on_a_lost_row_and_finalize_waits_for_it() {
    let (db, _) = TestDb::legacy(&LegacyConfig::small()).await;
    db.migrate().await;

    let run = run_binary(&db, &["verify"], LIMIT).await;
    assert_succeeded(&run);
    let header = run.stdout.lines().next().unwrap_or_default();
    assert!(
        header.contains("CHECK") && header.contains("PASSED") && header.contains("DETAIL"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .lines()
            .any(|l| l.starts_with("legacy_rows_kept:posts ") && l.contains(" yes ")),
        "{}",
        run.stdout
    );

    // A migrated post loses its content: verify names the check, exit 1.
    exec(
        &db.pool,
        "CREATE TABLE saved_content AS SELECT * FROM posts_content
             WHERE post_id = (SELECT min(id::text)::uuid FROM posts_backup);
         DELETE FROM posts_content WHERE post_id = (SELECT post_id FROM saved_content);",
    )
    .await;
    let run = run_binary(&db, &["verify"], LIMIT).await;
    assert_eq!(run.status.code(), Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.lines().any(|l| l.starts_with("posts ")
            && l.contains(" NO ")
            && l.contains("1 missing or different")),
        "{}",
        run.stdout
    );

    // finalize refuses, printing the failing check, and drops nothing.
    let run = run_binary(&db, &["finalize"], LIMIT).await;
    assert_failed_with(&run, &["finalize refused", "posts"]);
    assert!(run.stdout.contains(" NO "), "{}", run.stdout);
    assert!(scalar_i64(&db.pool, "SELECT count(*) FROM posts_backup").await > 0);

    // The row back: verify passes, finalize drops the backups.
    exec(
        &db.pool,
        "INSERT INTO posts_content SELECT * FROM saved_content; DROP TABLE saved_content;",
    )
    .await;
    assert_succeeded(&run_binary(&db, &["verify"], LIMIT).await);
    let run = run_binary(&db, &["finalize"], LIMIT).await;
    assert_succeeded(&run);
    assert!(run.stdout.contains("posts_backup"), "{}", run.stdout);
    let left: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public.posts_backup')::text")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(left, None);
}

/// sqlx's own runner (the one earlier versions used), stopped after the
/// first `n` phases, as a failed or interrupted earlier upgrade leaves it.
async fn sqlx_runner_up_to(pool: &PgPool, n: usize) {
    let first = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(MIGRATOR.migrations[..n].to_vec()),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    first.run(pool).await.expect("sqlx's runner");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_half_migrated_by_sqlx_s_runner_rolls_back_or_completes() {
    let (db, _) = TestDb::legacy(&LegacyConfig::small()).await;
    let legacy = state(&db.pool).await;

    // Phases 01-03 applied by sqlx's runner, one transaction each: rollback
    // undoes them.
    sqlx_runner_up_to(&db.pool, 3).await;
    assert_succeeded(&run_binary(&db, &["migrate", "--rollback"], LIMIT).await);
    assert_eq!(state(&db.pool).await, legacy);

    // Nothing applied: nothing to roll back, nothing changed.
    let run = run_binary(&db, &["migrate", "--rollback"], LIMIT).await;
    assert_failed_with(&run, &["rollback refused", "no migration was applied"]);
    assert_eq!(state(&db.pool).await, legacy);

    // Our runner completes what sqlx's started, and every check passes.
    sqlx_runner_up_to(&db.pool, 3).await;
    assert_eq!(
        migrate::run(&db.pool).await.expect("our runner"),
        MIGRATOR.iter().count() - 3
    );
    let failed: Vec<String> =
        sqlx::query_scalar("SELECT check_name FROM verify_migration_integrity() WHERE NOT passed")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(failed.is_empty(), "{failed:?}");
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
