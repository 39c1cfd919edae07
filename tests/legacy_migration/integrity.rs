//! verify_migration_integrity passes, names the check a deleted row breaks, and gates finalize.
use sqlx::PgPool;

use crate::{migrated_legacy, scalar_i64};

async fn failed_checks(pool: &PgPool) -> Vec<String> {
    sqlx::query_scalar("SELECT check_name FROM verify_migration_integrity() WHERE NOT passed")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn integrity_verification_passes_and_names_the_check_a_deleted_row_breaks() {
    let db = migrated_legacy().await;
    let checks: Vec<(String, bool, String)> =
        sqlx::query_as("SELECT * FROM verify_migration_integrity()")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(checks.len() >= 10, "{checks:#?}");
    assert!(checks.iter().all(|c| c.1), "{checks:#?}");

    // Each deletion, undone afterwards, breaks the check that names it.
    let cases = [
        (
            "DELETE FROM time_series_metrics WHERE id = (SELECT min(id) FROM time_series_metrics WHERE source = 'post_analytics')",
            "post_analytics_metrics",
        ),
        ("DELETE FROM posts_content WHERE post_id = (SELECT min(id::text)::uuid FROM posts_backup)", "posts"),
        (
            "DELETE FROM embeddings WHERE id = (SELECT id FROM embeddings WHERE entity_type = 'chat_message' LIMIT 1)",
            "chat_message_embeddings",
        ),
        ("DELETE FROM archive.hashtag_analytics WHERE id = (SELECT min(id) FROM archive.hashtag_analytics)", "legacy_rows_kept:hashtag_analytics"),
    ];
    for (delete, check) in cases {
        let mut tx = db.pool.begin().await.unwrap();
        let n = sqlx::query(delete)
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(n, 1, "{delete}");
        let failed: Vec<String> = sqlx::query_scalar(
            "SELECT check_name FROM verify_migration_integrity() WHERE NOT passed",
        )
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        assert_eq!(failed, vec![check.to_string()], "after {delete}");
        // finalize refuses, naming the check, and drops nothing.
        let err = sqlx::query("SELECT finalize_migration_cleanup()")
            .execute(&mut *tx)
            .await
            .unwrap_err();
        assert!(err.to_string().contains(check), "{err}");
        tx.rollback().await.unwrap();
    }
    assert!(failed_checks(&db.pool).await.is_empty());
    assert!(scalar_i64(&db.pool, "SELECT count(*) FROM posts_backup").await > 0);

    // Every check passes: finalize drops the backups, and verify says so.
    let done: String = sqlx::query_scalar("SELECT finalize_migration_cleanup()")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(done.contains("posts_backup"), "{done}");
    let left: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('public.posts_backup')::text")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(left, None);
    assert!(failed_checks(&db.pool).await.is_empty());
    // The archives are never dropped.
    assert!(scalar_i64(&db.pool, "SELECT count(*) FROM archive.content_generations").await > 0);
}
