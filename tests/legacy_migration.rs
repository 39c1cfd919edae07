//! The migrations on a database in the legacy state, filled by the seeded
//! generator with realistic data and the awkward cases. These tests read the
//! `*_backup` and archived tables directly (not through
//! verify_migration_integrity) and find every legacy row represented with
//! equal values.
mod common;

use affinity_testkit::legacy::LegacyConfig;
use common::{table_fingerprint, TestDb};
use sqlx::PgPool;

const LEGACY_TABLES: &[(&str, &str)] = &[
    ("posts", "posts_backup"),
    ("post_analytics", "post_analytics_backup"),
    ("chat_messages", "chat_messages_backup"),
    ("instagram_scraped_posts", "instagram_scraped_posts_backup"),
    ("scraped_instagram_data", "scraped_instagram_data_backup"),
    ("content_generations", "archive.content_generations"),
    ("hashtag_analytics", "archive.hashtag_analytics"),
];

async fn migrated_legacy() -> TestDb {
    let (db, _) = TestDb::legacy(&LegacyConfig::standard()).await;
    db.migrate().await;
    db
}

async fn scalar_i64(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[test]
fn the_bundled_legacy_schema_is_the_shared_one() {
    // The generator carries a copy of ../shared/legacy/schema.sql; keep them equal.
    let shared =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/legacy/schema.sql");
    match std::fs::read_to_string(&shared) {
        Ok(text) => assert_eq!(
            text,
            affinity_testkit::legacy::LEGACY_SCHEMA,
            "crates/affinity-testkit/src/legacy/schema.sql is out of date"
        ),
        Err(_) => eprintln!("{} not found: nothing to compare", shared.display()),
    }
}

#[tokio::test]
async fn every_legacy_table_survives_as_a_backup_or_archive_with_every_row() {
    let (db, stats) = TestDb::legacy(&LegacyConfig::standard()).await;
    let mut before = vec![];
    for (legacy, _) in LEGACY_TABLES {
        before.push(table_fingerprint(&db.pool, legacy).await);
    }
    assert_eq!(before[0].0 as u64, stats.posts);
    db.migrate().await;
    for ((legacy, kept), fp) in LEGACY_TABLES.iter().zip(before) {
        assert!(fp.0 > 0, "the generator filled {legacy}");
        assert_eq!(
            table_fingerprint(&db.pool, kept).await,
            fp,
            "{legacy} -> {kept}"
        );
        let gone: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
            .bind(format!("public.{legacy}"))
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(gone, None, "{legacy} was renamed or moved");
    }
    // user_profiles stays, with a default organization added to every row.
    let (users, with_org): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(organization_id) FROM user_profiles")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (users as u64, with_org as u64),
        (stats.user_profiles, stats.user_profiles)
    );
}

#[tokio::test]
async fn posts_unified_equals_legacy_posts_column_by_column() {
    let db = migrated_legacy().await;
    // Same columns in the same order, plus organization_id.
    let cols = |t: &'static str| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_scalar::<_, String>(
                "SELECT column_name::text FROM information_schema.columns
                 WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(t)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let mut legacy_cols = cols("posts_backup").await;
    let unified_cols = cols("posts_unified").await;
    legacy_cols.push("organization_id".into());
    assert_eq!(unified_cols, legacy_cols);

    let total = scalar_i64(&db.pool, "SELECT count(*) FROM posts_backup").await;
    assert!(total >= 1000);
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM posts_unified").await,
        total
    );
    for col in legacy_cols.iter().filter(|c| *c != "organization_id") {
        let differing = scalar_i64(
            &db.pool,
            &format!(
                "SELECT count(*) FROM posts_backup b FULL JOIN posts_unified u ON u.id = b.id
                 WHERE b.id IS NULL OR u.id IS NULL OR b.{col} IS DISTINCT FROM u.{col}"
            ),
        )
        .await;
        assert_eq!(differing, 0, "column {col} differs in {differing} posts");
    }
    // Whole rows, as text, for good measure.
    let differing = scalar_i64(
        &db.pool,
        &format!(
            "SELECT count(*) FROM (SELECT * FROM posts_backup EXCEPT ALL SELECT {} FROM posts_unified) d",
            legacy_cols[..legacy_cols.len() - 1].join(", ")
        ),
    )
    .await;
    assert_eq!(differing, 0);
}

#[tokio::test]
async fn media_urls_keep_their_order_and_a_shared_url_is_stored_once() {
    let db = migrated_legacy().await;
    let distinct_urls =
        scalar_i64(&db.pool, "SELECT count(*) FROM (SELECT DISTINCT user_id, u FROM posts_backup, unnest(media_urls) u) d").await;
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM media_files").await,
        distinct_urls
    );
    let links = scalar_i64(
        &db.pool,
        "SELECT coalesce(sum(cardinality(media_urls)), 0) FROM posts_backup",
    )
    .await;
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM post_media_links").await,
        links
    );
    // The generator shares URLs between posts: some media file has several posts.
    let shared = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM (SELECT media_file_id FROM post_media_links
                               GROUP BY media_file_id HAVING count(DISTINCT post_id) > 1) s",
    )
    .await;
    assert!(shared > 0);
    let out_of_order = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM posts_backup b, unnest(b.media_urls) WITH ORDINALITY AS u(url, pos)
         WHERE NOT EXISTS (SELECT 1 FROM post_media_links l JOIN media_files m
                             ON m.organization_id = l.organization_id AND m.id = l.media_file_id
                           WHERE l.post_id = b.id AND l.position = u.pos AND m.url = u.url)",
    )
    .await;
    assert_eq!(out_of_order, 0);
}

#[tokio::test]
async fn every_legacy_counter_is_a_metric_point() {
    let db = migrated_legacy().await;
    for (column, metric) in [
        ("likes", "likes"),
        ("comments", "comments"),
        ("shares", "shares"),
        ("saves", "saves"),
        ("reach", "reach"),
        ("impressions", "impressions"),
        ("engagement_rate", "engagement_rate"),
    ] {
        let expected = scalar_i64(
            &db.pool,
            &format!("SELECT count({column}) FROM post_analytics_backup"),
        )
        .await;
        let points = scalar_i64(
            &db.pool,
            &format!("SELECT count(*) FROM time_series_metrics WHERE source = 'post_analytics' AND metric_name = '{metric}'"),
        )
        .await;
        assert_eq!(points, expected, "{column}");
        // Same post, time and value (as multisets: two snapshots may share a time).
        let unmatched = scalar_i64(
            &db.pool,
            &format!(
                "SELECT count(*) FROM (
                     SELECT post_id, recorded_at, {column}::double precision FROM post_analytics_backup
                     WHERE {column} IS NOT NULL
                     EXCEPT ALL
                     SELECT entity_id, recorded_at, value FROM time_series_metrics
                     WHERE source = 'post_analytics' AND entity_type = 'post' AND metric_name = '{metric}') d"
            ),
        )
        .await;
        assert_eq!(unmatched, 0, "{column}");
    }
    // Every NULL counter left out, and the snapshot with NULLs is still there.
    assert!(
        scalar_i64(
            &db.pool,
            "SELECT count(*) FROM post_analytics_backup WHERE likes IS NULL"
        )
        .await
            > 0
    );
    // Each post's counters: one point each at the post's updated_at.
    for (column, metric) in [
        ("likes_count", "likes"),
        ("reach", "reach"),
        ("engagement_rate", "engagement_rate"),
    ] {
        let unmatched = scalar_i64(
            &db.pool,
            &format!(
                "SELECT count(*) FROM (
                     SELECT id, updated_at, {column}::double precision FROM posts_backup WHERE {column} IS NOT NULL
                     EXCEPT ALL
                     SELECT entity_id, recorded_at, value FROM time_series_metrics
                     WHERE source = 'post_insights' AND metric_name = '{metric}') d"
            ),
        )
        .await;
        assert_eq!(unmatched, 0, "{column}");
    }
    // Nothing landed in the default partition: monthly partitions cover the span.
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM time_series_metrics_default").await,
        0
    );
}

#[tokio::test]
async fn every_legacy_embedding_is_in_embeddings_with_the_same_vector() {
    let db = migrated_legacy().await;
    for (table, entity_type) in [
        ("posts_backup", "post"),
        ("chat_messages_backup", "chat_message"),
    ] {
        let with = scalar_i64(
            &db.pool,
            &format!("SELECT count(*) FROM {table} WHERE embedding IS NOT NULL"),
        )
        .await;
        let without = scalar_i64(
            &db.pool,
            &format!("SELECT count(*) FROM {table} WHERE embedding IS NULL"),
        )
        .await;
        assert!(with > 0 && without > 0, "{table}: the generator has both");
        let moved = scalar_i64(
            &db.pool,
            &format!("SELECT count(*) FROM embeddings WHERE entity_type = '{entity_type}' AND model = 'legacy'"),
        )
        .await;
        assert_eq!(moved, with, "{table}");
        let same = scalar_i64(
            &db.pool,
            &format!(
                "SELECT count(*) FROM {table} b JOIN embeddings e
                   ON e.entity_type = '{entity_type}' AND e.entity_id = b.id AND e.model = 'legacy'
                 WHERE e.embedding = b.embedding AND e.dimension = 1536"
            ),
        )
        .await;
        assert_eq!(same, with, "{table}: same vectors");
    }
}

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

#[tokio::test]
async fn chat_history_becomes_ai_context_with_the_same_ids() {
    let db = migrated_legacy().await;
    let total = scalar_i64(&db.pool, "SELECT count(*) FROM chat_messages_backup").await;
    assert!(total > 0);
    let kept = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM chat_messages_backup c JOIN ai_context_logs a ON a.id = c.id
         WHERE a.user_id = c.user_id AND a.source_type = 'chat' AND a.occurred_at = c.created_at
           AND a.metadata->>'role' = c.role AND (a.metadata->>'session_id')::uuid = c.session_id
           AND c.content = CASE WHEN c.role = 'assistant' THEN a.ai_response ELSE a.context_summary END",
    )
    .await;
    assert_eq!(kept, total);
    // Each carries its conversation's session (migration 12), so old
    // conversations page in order by session_id; and so does its text, which
    // search filters read.
    let in_session = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM chat_messages_backup c JOIN ai_context_logs a ON a.id = c.id
         JOIN item_texts t ON t.organization_id = a.organization_id AND t.entity_type = 'ai_context'
                          AND t.entity_id = a.id
         WHERE a.session_id = c.session_id::text AND t.session_id = a.session_id",
    )
    .await;
    let with_text = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM chat_messages_backup c JOIN ai_context_logs a ON a.id = c.id
         JOIN item_texts t ON t.organization_id = a.organization_id AND t.entity_type = 'ai_context'
                          AND t.entity_id = a.id",
    )
    .await;
    assert_eq!(in_session, with_text);
    let sessions = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM chat_messages_backup c JOIN ai_context_logs a ON a.id = c.id
         WHERE a.session_id = c.session_id::text",
    )
    .await;
    assert_eq!(
        sessions, total,
        "every legacy chat message keeps its session"
    );
}

#[tokio::test]
async fn scraped_posts_hold_the_latest_values_and_every_raw_payload() {
    let db = migrated_legacy().await;
    // One row per (user, shortcode) of either table.
    let pairs = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM (SELECT user_id, shortcode FROM instagram_scraped_posts_backup
                               UNION SELECT user_id, post_shortcode FROM scraped_instagram_data_backup) p",
    )
    .await;
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM scraped_posts").await,
        pairs
    );
    // The generator has shortcodes in both tables with different counts.
    let overlapping = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM instagram_scraped_posts_backup a JOIN scraped_instagram_data_backup b
           ON b.user_id IS NOT DISTINCT FROM a.user_id AND b.post_shortcode = a.shortcode
         WHERE b.likes IS DISTINCT FROM a.like_count",
    )
    .await;
    assert!(overlapping > 0);
    // The values are those of the most recent scrape of either table.
    let stale = scalar_i64(
        &db.pool,
        "WITH scrapes AS (
             SELECT user_id, shortcode, like_count, comment_count, caption, scraped_at AS at FROM instagram_scraped_posts_backup
             UNION ALL
             SELECT user_id, post_shortcode, likes, comments, caption_text, created_at FROM scraped_instagram_data_backup),
         latest AS (SELECT DISTINCT ON (user_id, shortcode) * FROM scrapes ORDER BY user_id, shortcode, at DESC)
         SELECT count(*) FROM latest l JOIN scraped_posts s
           ON s.user_id IS NOT DISTINCT FROM l.user_id AND s.shortcode = l.shortcode
         WHERE (s.like_count, s.comment_count, s.caption, s.scraped_at)
               IS DISTINCT FROM (l.like_count, l.comment_count, l.caption, l.at)",
    )
    .await;
    assert_eq!(stale, 0);
    // Every raw payload, in the consolidated row of its (user, shortcode).
    let missing = scalar_i64(
        &db.pool,
        "SELECT count(*) FROM scraped_instagram_data_backup b WHERE b.raw IS NOT NULL AND NOT EXISTS (
             SELECT 1 FROM scraped_posts s, jsonb_array_elements(s.raw_payloads) p
             WHERE s.user_id IS NOT DISTINCT FROM b.user_id AND s.shortcode = b.post_shortcode
               AND p->'payload' = b.raw)",
    )
    .await;
    assert_eq!(missing, 0);
    let payloads = scalar_i64(
        &db.pool,
        "SELECT sum(jsonb_array_length(raw_payloads)) FROM scraped_posts",
    )
    .await;
    assert_eq!(
        payloads,
        scalar_i64(
            &db.pool,
            "SELECT count(raw) FROM scraped_instagram_data_backup"
        )
        .await
    );
}

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

#[tokio::test]
async fn running_the_migrations_again_on_a_migrated_legacy_database_applies_nothing() {
    let db = migrated_legacy().await;
    let tables = [
        "user_profiles",
        "posts_core",
        "posts_content",
        "media_files",
        "post_media_links",
        "post_insights",
        "time_series_metrics",
        "embeddings",
        "organizations",
        "organization_members",
        "ai_context_logs",
        "scraped_posts",
        "posts_backup",
    ];
    let mut before = vec![];
    for t in tables {
        before.push(table_fingerprint(&db.pool, t).await);
    }
    db.migrate().await;
    for (t, fp) in tables.iter().zip(before) {
        assert_eq!(table_fingerprint(&db.pool, t).await, fp, "{t}");
    }
    assert_eq!(
        scalar_i64(&db.pool, "SELECT count(*) FROM _sqlx_migrations").await,
        affinity::db::migrate::MIGRATOR.migrations.len() as i64
    );
}
