//! Legacy data the phases cannot carry is refused, naming phase and rows, and nothing changes.
use crate::common::{run_binary, TestDb};
use crate::{assert_failed_with, exec, scalar_i64, state, LIMIT};
use affinity_testkit::legacy::LegacyConfig;
use sqlx::PgPool;

async fn ids(pool: &PgPool, sql: &str) -> Vec<String> {
    sqlx::query_scalar(sql)
        .fetch_all(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
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
