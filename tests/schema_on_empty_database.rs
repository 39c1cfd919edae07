//! The bundled migrations on an empty database: the schema is built directly,
//! and its SQL functions behave as documented.
mod common;

use affinity::db::migrate::MIGRATOR;
use common::TestDb;
use sqlx::PgPool;
use uuid::Uuid;

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

/// A vector of `dim` dimensions pointing mostly along axis `axis`.
fn unit_vector(dim: usize, axis: usize, noise: f32) -> Vec<f32> {
    (0..dim)
        .map(|i| {
            if i == axis {
                1.0
            } else {
                noise * ((i * 7 + axis) % 13) as f32 / 13.0
            }
        })
        .collect()
}

fn vector_literal(v: &[f32]) -> String {
    format!(
        "[{}]",
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",")
    )
}

async fn new_user(pool: &PgPool) -> (Uuid, Uuid) {
    let user = Uuid::new_v4();
    let org: Uuid = sqlx::query_scalar("SELECT ensure_user_profile($1)")
        .bind(user)
        .fetch_one(pool)
        .await
        .unwrap();
    (user, org)
}

/// One embedding to store: organization, entity type, entity id, model,
/// vector.
type EmbeddingRow = (Uuid, &'static str, Uuid, &'static str, Vec<f32>);

/// Stores each of `rows` with plain SQL.
async fn put_embeddings(pool: &PgPool, rows: &[EmbeddingRow]) {
    for (org, entity_type, id, model, v) in rows {
        sqlx::query(
            "INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
             VALUES ($1, $2, $3, $4, $5, $6::vector)",
        )
        .bind(org)
        .bind(entity_type)
        .bind(id)
        .bind(model)
        .bind(v.len() as i32)
        .bind(vector_literal(v))
        .execute(pool)
        .await
        .unwrap();
    }
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

#[tokio::test]
async fn each_supported_dimension_is_searched_through_its_hnsw_index() {
    let db = TestDb::migrated().await;
    let (_, org) = new_user(&db.pool).await;
    // Bulk load, then build the indexes and ANALYZE, as a real table would be.
    // From about 2,000 rows of a dimension the planner prefers its index on its own.
    sqlx::query("SELECT drop_embedding_indexes()")
        .execute(&db.pool)
        .await
        .unwrap();
    for dim in [384usize, 768, 1024, 1536, 3072] {
        sqlx::query(
            "INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
             SELECT $1, 'post', gen_random_uuid(), 'm', $2,
                    (SELECT array_agg(random()::real) FROM generate_series(1, $2) WHERE g > 0)::real[]::vector
             FROM generate_series(1, 2500) g",
        )
        .bind(org)
        .bind(dim as i32)
        .execute(&db.pool)
        .await
        .unwrap();
    }
    sqlx::query("SELECT create_embedding_indexes()")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE embeddings")
        .execute(&db.pool)
        .await
        .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    // Without hints: at this size the planner picks the 384 index by itself.
    assert_plan_uses_hnsw(&mut conn, org, 384).await;
    // Every exact plan needs a Sort on the distance; only an HNSW index that
    // matches the query's cast expression and predicate can deliver rows in
    // that order. With sorting disabled, each dimension's plan must therefore
    // be its index scan (which path wins for a given organization size is a
    // cost choice: an exact scan for few rows).
    sqlx::query("SET enable_sort = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    for dim in [384, 768, 1024, 1536, 3072] {
        assert_plan_uses_hnsw(&mut conn, org, dim).await;
    }
}

/// EXPLAIN of the nearest-neighbour query that find_similar_content runs per
/// source embedding, which must scan `embeddings_hnsw_<dim>`.
async fn assert_plan_uses_hnsw(conn: &mut sqlx::PgConnection, org: Uuid, dim: usize) {
    let expr: String = sqlx::query_scalar("SELECT embedding_index_expression($1)")
        .bind(dim as i32)
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    let cast = expr.split("::").nth(1).unwrap().to_string();
    let q = format!(
        "EXPLAIN SELECT e.entity_id, 1 - ({expr} <=> '{v}'::{cast}) FROM embeddings e
         WHERE e.organization_id = '{org}' AND e.dimension = {dim} AND e.model = 'm'
         ORDER BY {expr} <=> '{v}'::{cast} LIMIT 10",
        v = vector_literal(&unit_vector(dim, 3, 0.1))
    );
    let plan: Vec<String> = sqlx::query_scalar(&q).fetch_all(&mut *conn).await.unwrap();
    let plan: Vec<&str> = plan
        .iter()
        .map(|l| l.split("'[").next().unwrap_or(l))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains(&format!("Index Scan using embeddings_hnsw_{dim}")),
        "dimension {dim}:\n{plan}"
    );
}

#[tokio::test]
async fn find_similar_content_leaves_out_the_source_and_other_organizations() {
    let db = TestDb::migrated().await;
    let (_, org_a) = new_user(&db.pool).await;
    let (_, org_b) = new_user(&db.pool).await;
    let source = Uuid::new_v4();
    let near = Uuid::new_v4();
    let far = Uuid::new_v4();
    let other_model = Uuid::new_v4();
    let chat = Uuid::new_v4();
    let in_b = Uuid::new_v4();
    put_embeddings(
        &db.pool,
        &[
            (org_a, "post", source, "m1", unit_vector(384, 0, 0.0)),
            (org_a, "post", near, "m1", unit_vector(384, 0, 0.02)),
            (org_a, "post", far, "m1", unit_vector(384, 5, 0.0)),
            // Same direction, other model: never compared with m1.
            (org_a, "post", other_model, "m2", unit_vector(384, 0, 0.0)),
            (org_a, "chat_message", chat, "m1", unit_vector(384, 0, 0.0)),
            // Identical vector in organization B: must never show up.
            (org_b, "post", in_b, "m1", unit_vector(384, 0, 0.0)),
        ],
    )
    .await;

    let rows: Vec<(Uuid, String, Uuid, f64)> =
        sqlx::query_as("SELECT * FROM find_similar_content('post', $1, -1, 10)")
            .bind(source)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let ids: Vec<Uuid> = rows.iter().map(|r| r.2).collect();
    assert_eq!(
        ids,
        vec![near, far],
        "most similar first, no source, no other org/model/type"
    );
    assert!(rows.iter().all(|r| r.0 == org_a));
    assert!(rows[0].3 > 0.9 && rows[0].3 <= 1.0 + 1e-6, "{rows:?}");

    // The threshold leaves out the far item; max_results caps.
    let above: Vec<Uuid> =
        sqlx::query_scalar("SELECT entity_id FROM find_similar_content('post', $1, 0.8, 10)")
            .bind(source)
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(above, vec![near]);
    let one: i64 =
        sqlx::query_scalar("SELECT count(*) FROM find_similar_content('post', $1, -1, 1)")
            .bind(source)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(one, 1);
    // Other target types on request.
    let chats: Vec<Uuid> = sqlx::query_scalar(
        "SELECT entity_id FROM find_similar_content('post', $1, 0.5, 10, ARRAY['chat_message'])",
    )
    .bind(source)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(chats, vec![chat]);
    // An item with no embedding: no rows.
    let none: i64 =
        sqlx::query_scalar("SELECT count(*) FROM find_similar_content('post', $1, -1, 10)")
            .bind(Uuid::new_v4())
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(none, 0);
}

#[tokio::test]
async fn metric_buckets_follow_the_time_zone_across_daylight_saving_changes() {
    let db = TestDb::migrated().await;
    let (_, org) = new_user(&db.pool).await;
    let post = Uuid::new_v4();
    // One point per hour, value = hour index, from 2024-03-29 to 2024-04-02 UTC:
    // Europe/Paris moves to summer time on Sunday 2024-03-31 (a 23-hour day).
    sqlx::query(
        "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         SELECT $1, 'post', $2, 'likes', g, timestamptz '2024-03-29 00:00+00' + g * interval '1 hour'
         FROM generate_series(0, 95) g",
    )
    .bind(org)
    .bind(post)
    .execute(&db.pool)
    .await
    .unwrap();
    let days: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT to_char(bucket_start AT TIME ZONE 'Europe/Paris', 'YYYY-MM-DD HH24:MI'), count, last, max
         FROM get_metrics_aggregated('post', $1, 'likes', 'day',
                                     '2024-03-29 00:00+00', '2024-04-02 00:00+00', 'Europe/Paris')",
    )
    .bind(post)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let counts: Vec<(&str, i64)> = days.iter().map(|d| (d.0.as_str(), d.1)).collect();
    assert_eq!(
        counts,
        vec![
            ("2024-03-29 00:00", 23),
            ("2024-03-30 00:00", 24),
            ("2024-03-31 00:00", 23),
            ("2024-04-01 00:00", 24),
            ("2024-04-02 00:00", 2)
        ]
    );
    // `last` is the latest point of the bucket (values increase with time here).
    assert!(days.iter().all(|d| d.2 == d.3));
    // Weeks start on Monday: 2024-03-25 and 2024-04-01.
    let weeks: Vec<String> = sqlx::query_scalar(
        "SELECT to_char(bucket_start AT TIME ZONE 'Europe/Paris', 'Dy YYYY-MM-DD')
         FROM get_metrics_aggregated('post', $1, 'week', 'week', '2024-03-29 00:00+00', '2024-04-02 00:00+00', 'Europe/Paris')",
    )
    .bind(post)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(weeks.is_empty(), "wrong metric name gives no buckets");
    let weeks: Vec<String> = sqlx::query_scalar(
        "SELECT to_char(bucket_start AT TIME ZONE 'Europe/Paris', 'Dy YYYY-MM-DD')
         FROM get_metrics_aggregated('post', $1, 'likes', 'week', '2024-03-29 00:00+00', '2024-04-02 00:00+00', 'Europe/Paris')",
    )
    .bind(post)
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert_eq!(weeks, vec!["Mon 2024-03-25", "Mon 2024-04-01"]);
    // Unknown granularity and time zone are refused with invalid_parameter_value.
    for (g, tz) in [("fortnight", "UTC"), ("day", "Mars/Olympus_Mons")] {
        let err = sqlx::query(
            "SELECT * FROM get_metrics_aggregated('post', $1, 'likes', $2, NULL, NULL, $3)",
        )
        .bind(post)
        .bind(g)
        .bind(tz)
        .fetch_all(&db.pool)
        .await
        .unwrap_err();
        let code = err
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.to_string());
        assert_eq!(code.as_deref(), Some("22023"), "{g} {tz}: {err}");
    }
}

#[tokio::test]
async fn org_permission_follows_the_role_hierarchy() {
    let db = TestDb::migrated().await;
    let (owner, org) = new_user(&db.pool).await;
    let (stranger, _) = new_user(&db.pool).await;
    let roles = ["viewer", "editor", "admin", "owner"];
    let mut members = vec![];
    for role in &roles[..3] {
        let (u, _) = new_user(&db.pool).await;
        sqlx::query("INSERT INTO organization_members (organization_id, user_id, role) VALUES ($1, $2, $3::org_role)")
            .bind(org)
            .bind(u)
            .bind(role)
            .execute(&db.pool)
            .await
            .unwrap();
        members.push((u, *role));
    }
    members.push((owner, "owner"));
    for (user, held) in &members {
        let held_rank = roles.iter().position(|r| r == held).unwrap();
        for (rank, required) in roles.iter().enumerate() {
            let allowed: bool = sqlx::query_scalar("SELECT user_has_org_permission($1, $2, $3)")
                .bind(user)
                .bind(org)
                .bind(required)
                .fetch_one(&db.pool)
                .await
                .unwrap();
            assert_eq!(allowed, held_rank >= rank, "{held} asking for {required}");
        }
    }
    let allowed: bool = sqlx::query_scalar("SELECT user_has_org_permission($1, $2, 'viewer')")
        .bind(stranger)
        .bind(org)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!allowed);
}

#[tokio::test]
async fn an_organization_never_loses_its_last_owner() {
    let db = TestDb::migrated().await;
    let (owner, org) = new_user(&db.pool).await;
    let err =
        sqlx::query("DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2")
            .bind(org)
            .bind(owner)
            .execute(&db.pool)
            .await
            .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("AF001"),
        "{err}"
    );
    let err =
        sqlx::query("UPDATE organization_members SET role = 'admin' WHERE organization_id = $1")
            .bind(org)
            .execute(&db.pool)
            .await
            .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("AF001"),
        "{err}"
    );
    // With a second owner, the first may go; deleting the organization is fine too.
    let (second, _) = new_user(&db.pool).await;
    sqlx::query("INSERT INTO organization_members VALUES ($1, $2, 'owner')")
        .bind(org)
        .bind(second)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2")
        .bind(org)
        .bind(owner)
        .execute(&db.pool)
        .await
        .unwrap();
    // Deleting a whole organization takes its owners with it.
    let team: Uuid = sqlx::query_scalar(
        "INSERT INTO organizations (name, slug) VALUES ('Team', 'team') RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO organization_members VALUES ($1, $2, 'owner')")
        .bind(team)
        .bind(second)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM organizations WHERE id = $1")
        .bind(team)
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn archive_old_metrics_moves_points_past_the_retention() {
    let db = TestDb::migrated().await;
    let (_, org) = new_user(&db.pool).await;
    let post = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO time_series_metrics (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
         SELECT $1, 'post', $2, 'likes', g, now() - (g + 0.5) * interval '1 day' FROM generate_series(0, 99) g",
    )
    .bind(org)
    .bind(post)
    .execute(&db.pool)
    .await
    .unwrap();
    let archive = || async {
        sqlx::query_scalar::<_, i64>("SELECT archive_old_metrics(interval '30 days')")
            .fetch_one(&db.pool)
            .await
            .unwrap()
    };
    assert_eq!(archive().await, 70); // 30.5 to 99.5 days old
    let (hot, archived): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM time_series_metrics), (SELECT count(*) FROM archive.time_series_metrics)",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((hot, archived), (30, 70));
    assert_eq!(archive().await, 0);
}

#[tokio::test]
async fn a_new_user_gets_a_personal_organization_on_first_sight() {
    let db = TestDb::migrated().await;
    let (user, org) = new_user(&db.pool).await;
    let again: Uuid = sqlx::query_scalar("SELECT ensure_user_profile($1)")
        .bind(user)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(org, again);
    let (personal_owner, role): (Option<Uuid>, String) = sqlx::query_as(
        "SELECT o.personal_owner_id, m.role::text FROM organizations o
         JOIN organization_members m ON m.organization_id = o.id WHERE o.id = $1",
    )
    .bind(org)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((personal_owner, role.as_str()), (Some(user), "owner"));
}

#[tokio::test]
async fn find_similar_content_leaves_the_callers_search_settings_alone() {
    let db = TestDb::migrated().await;
    let (_, org) = new_user(&db.pool).await;
    let source = Uuid::new_v4();
    put_embeddings(
        &db.pool,
        &[
            (org, "post", source, "m", unit_vector(384, 0, 0.0)),
            (org, "post", Uuid::new_v4(), "m", unit_vector(384, 1, 0.0)),
        ],
    )
    .await;
    let mut tx = db.pool.begin().await.unwrap();
    // Inside the function: ef_search follows max_results; outside it is restored.
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM find_similar_content('post', $1, -1, 700)")
            .bind(source)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(n, 1);
    let (ef, iterative): (String, String) = sqlx::query_as(
        "SELECT current_setting('hnsw.ef_search'), current_setting('hnsw.iterative_scan')",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    assert_eq!((ef.as_str(), iterative.as_str()), ("40", "off"));
    tx.rollback().await.unwrap();
}
