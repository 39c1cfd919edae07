//! `affinity migrate --rollback` restores the legacy state, and refuses where it cannot.
use crate::common::{run_binary, TestDb};
use crate::{assert_failed_with, assert_succeeded, exec, state, LIMIT};
use affinity::db::migrate::{self, MIGRATOR};
use affinity::db::rollback::ROLLBACK_KNOWS_UP_TO;
use affinity_testkit::legacy::LegacyConfig;
use sqlx::PgPool;

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
