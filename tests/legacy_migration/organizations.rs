//! Every legacy user owns one personal organization, and every tenant row carries it.
use crate::{migrated_legacy, scalar_i64};

#[tokio::test]
async fn every_user_owns_one_personal_organization_and_every_row_carries_it() {
    let db = migrated_legacy().await;
    let users = scalar_i64(&db.pool, "SELECT count(*) FROM user_profiles").await;
    let owning_one = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM user_profiles u
         WHERE (SELECT count(*) FROM organizations o WHERE o.personal_owner_id = u.id) = 1
           AND EXISTS (SELECT 1 FROM organizations o JOIN organization_members m
                         ON m.organization_id = o.id AND m.user_id = u.id AND m.role = 'owner'
                       WHERE o.personal_owner_id = u.id AND o.id = u.organization_id)",
    )
    .await;
    assert_eq!(owning_one, users);
    // No shared organization: one organization and one membership per user.
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM organizations").await,
        users
    );
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM organization_members").await,
        users
    );

    // Every tenant row lies in its owning user's organization.
    let misplaced = [
        "SELECT count(*) FROM posts_core p JOIN user_profiles u ON u.id = p.user_id WHERE p.organization_id <> u.organization_id",
        "SELECT count(*) FROM posts_content c JOIN posts_core p ON p.id = c.post_id WHERE c.organization_id <> p.organization_id",
        "SELECT count(*) FROM post_insights c JOIN posts_core p ON p.id = c.post_id WHERE c.organization_id <> p.organization_id",
        "SELECT count(*) FROM post_media_links c JOIN posts_core p ON p.id = c.post_id WHERE c.organization_id <> p.organization_id",
        "SELECT count(*) FROM media_files m JOIN user_profiles u ON u.id = m.user_id WHERE m.organization_id <> u.organization_id",
        "SELECT count(*) FROM time_series_metrics m LEFT JOIN posts_backup b ON b.id = m.entity_id
           LEFT JOIN user_profiles u ON u.id = b.user_id WHERE u.organization_id IS DISTINCT FROM m.organization_id",
        "SELECT count(*) FROM embeddings e LEFT JOIN posts_backup b ON b.id = e.entity_id
           LEFT JOIN chat_messages_backup c ON c.id = e.entity_id
           LEFT JOIN user_profiles u ON u.id = coalesce(b.user_id, c.user_id)
           WHERE u.organization_id IS DISTINCT FROM e.organization_id",
        "SELECT count(*) FROM ai_context_logs a JOIN user_profiles u ON u.id = a.user_id WHERE a.organization_id <> u.organization_id",
        "SELECT count(*) FROM scraped_posts s JOIN user_profiles u ON u.id = s.user_id WHERE s.organization_id <> u.organization_id",
    ];
    for q in misplaced {
        assert_eq!(scalar_i64(&db.pool, q).await, 0, "{q}");
    }
    // organization_id leads the primary key of every tenant table (Citus-ready).
    for table in [
        "posts_core",
        "posts_content",
        "post_insights",
        "media_files",
        "post_media_links",
        "time_series_metrics",
        "embeddings",
        "ai_context_logs",
        "organization_members",
    ] {
        let first_key_column: String = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_constraint c
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
             WHERE c.conrelid = $1::regclass AND c.contype = 'p'",
        )
        .bind(table)
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(first_key_column, "organization_id", "{table}");
    }
}
