//! The migrations build the whole schema on an empty database; a second run applies nothing.
use affinity::db::migrate::MIGRATOR;
use sqlx::PgPool;

use crate::common::TestDb;

const TABLES: &[&str] = &[
    "public.user_profiles",
    "public.posts_core",
    "public.posts_content",
    "public.media_files",
    "public.post_media_links",
    "public.post_insights",
    "public.time_series_metrics",
    "public.embeddings",
    "public.vector_index_dimensions",
    "public.organizations",
    "public.organization_members",
    "public.ai_context_logs",
    "public.scraped_posts",
    "public.migration_legacy_snapshot",
    "archive.content_generations",
    "archive.hashtag_analytics",
    "archive.time_series_metrics",
];
const VIEWS: &[&str] = &[
    "public.posts_unified",
    "public.analytics_dashboard",
    "public.top_performing_posts",
];
const FUNCTIONS: &[&str] = &[
    "find_similar_content",
    "get_metrics_aggregated",
    "user_has_org_permission",
    "verify_migration_integrity",
    "finalize_migration_cleanup",
    "archive_old_metrics",
    "ensure_user_profile",
    "ensure_metric_partitions",
];

async fn relkind(pool: &PgPool, name: &str) -> Option<String> {
    sqlx::query_scalar("SELECT relkind::text FROM pg_class WHERE oid = to_regclass($1)")
        .bind(name)
        .fetch_optional(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn migrations_build_every_table_view_and_function_on_an_empty_database() {
    let db = TestDb::migrated().await;
    for t in TABLES {
        let kind = relkind(&db.pool, t).await;
        assert!(
            matches!(kind.as_deref(), Some("r") | Some("p")),
            "table {t} missing: {kind:?}"
        );
    }
    for v in VIEWS {
        assert_eq!(
            relkind(&db.pool, v).await.as_deref(),
            Some("v"),
            "view {v} missing"
        );
    }
    for f in FUNCTIONS {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_proc WHERE proname = $1 AND pronamespace = 'public'::regnamespace")
            .bind(f)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(n, 1, "function {f}");
    }
    // Built empty: no legacy tables nor backups.
    for legacy in [
        "public.posts",
        "public.posts_backup",
        "public.chat_messages_backup",
    ] {
        assert_eq!(
            relkind(&db.pool, legacy).await,
            None,
            "{legacy} should not exist"
        );
    }
    // Metrics are partitioned by month, with a default partition.
    let partitions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'time_series_metrics'::regclass",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(
        partitions >= 5,
        "monthly partitions around now plus default: {partitions}"
    );
    let all_passed: bool =
        sqlx::query_scalar("SELECT bool_and(passed) FROM verify_migration_integrity()")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert!(all_passed);
}

#[tokio::test]
async fn running_the_migrations_again_applies_nothing() {
    let db = TestDb::migrated().await;
    let applied = || async {
        sqlx::query_as::<_, (i64, Vec<u8>)>(
            "SELECT version, checksum FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&db.pool)
        .await
        .unwrap()
    };
    let before = applied().await;
    assert_eq!(before.len(), MIGRATOR.migrations.len());
    let newly_applied = affinity::db::migrate::run(&db.pool)
        .await
        .expect("second run");
    assert_eq!(newly_applied, 0);
    assert_eq!(before, applied().await);
    let orgs: i64 = sqlx::query_scalar("SELECT count(*) FROM organizations")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(orgs, 0);
}
