//! Legacy posts, their media, counters and embeddings are all in the new tables with equal values.
use crate::{migrated_legacy, scalar_i64};

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
