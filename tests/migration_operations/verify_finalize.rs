//! `affinity verify` fails on a lost row, and `affinity finalize` waits until it passes.
use crate::common::{run_binary, TestDb};
use crate::{assert_failed_with, assert_succeeded, exec, scalar_i64, LIMIT};
use affinity_testkit::legacy::LegacyConfig;

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
