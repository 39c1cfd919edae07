//! Every legacy table survives as a backup or archive with every row; a rerun changes nothing.
use affinity_testkit::legacy::LegacyConfig;

use crate::common::{table_fingerprint, TestDb};
use crate::{migrated_legacy, scalar_i64};

const LEGACY_TABLES: &[(&str, &str)] = &[
    ("posts", "posts_backup"),
    ("post_analytics", "post_analytics_backup"),
    ("chat_messages", "chat_messages_backup"),
    ("instagram_scraped_posts", "instagram_scraped_posts_backup"),
    ("scraped_instagram_data", "scraped_instagram_data_backup"),
    ("content_generations", "archive.content_generations"),
    ("hashtag_analytics", "archive.hashtag_analytics"),
];

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
