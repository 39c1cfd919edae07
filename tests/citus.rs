//! The schema on a real Citus cluster (a coordinator and two workers, each
//! a throwaway PostgreSQL with Citus and pgvector): `affinity distribute`
//! makes the migrated schema a Citus one, and the service's writes work on
//! it, through the schema's triggers run on the shards.
//! Where Citus cannot run (not installed and no tarball to build it from),
//! each test says so in one line and passes.
mod common;

use affinity::db::citus::{REFERENCE_TABLES, TENANT_TABLES};
use affinity::proto;
use common::citus::{command, distributed_server};
use common::server::{authed, service_token};
use common::text::EMBEDDED_WITHIN;
use common::wait::{eventually, seen};
use common::TestDb;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn distribute_makes_reference_tables_and_co_locates_every_tenant_table_by_organization_once()
{
    let Some(db) = TestDb::on_citus().await else {
        return;
    };
    let (ok, out) = command("migrate", &db.url).await;
    assert!(ok, "{out}");
    let (ok, out) = command("distribute", &db.url).await;
    assert!(ok, "{out}");
    assert!(out.contains("distributed:"), "{out}");

    let tables: Vec<(String, String, String, i32)> = sqlx::query_as(
        "SELECT table_name::text, citus_table_type, distribution_column, colocation_id
         FROM citus_tables ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .expect("citus_tables");
    let of = |name: &str| tables.iter().find(|t| t.0 == name);
    for t in REFERENCE_TABLES {
        let row = of(t).unwrap_or_else(|| panic!("{t} is not a Citus table: {tables:?}"));
        assert_eq!(row.1, "reference", "{row:?}");
    }
    let colocation = of(TENANT_TABLES[0]).map(|t| t.3);
    for t in TENANT_TABLES {
        let row = of(t).unwrap_or_else(|| panic!("{t} is not a Citus table: {tables:?}"));
        assert_eq!(
            (row.1.as_str(), row.2.as_str(), Some(row.3)),
            ("distributed", "organization_id", colocation),
            "{row:?}"
        );
    }
    // Every table of the schema has a place: nothing left local but the
    // migrations' own bookkeeping.
    let local: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p')
           AND NOT c.relispartition
           AND c.oid NOT IN (SELECT logicalrelid FROM pg_dist_partition)
         ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .expect("the local tables");
    assert_eq!(
        local,
        [
            "_sqlx_migrations",
            "migration_events",
            "migration_legacy_snapshot"
        ],
        "tables neither distributed nor reference"
    );

    let (ok, out) = command("distribute", &db.url).await;
    assert!(ok, "{out}");
    assert!(out.contains("already distributed"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn distribute_on_plain_postgresql_is_refused_naming_citus() {
    let db = TestDb::migrated().await;
    let (ok, out) = command("distribute", &db.url).await;
    assert!(!ok, "{out}");
    assert!(out.contains("CREATE EXTENSION citus"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_the_distributed_schema_memberships_embeddings_and_points_are_written_through_shard_triggers(
) {
    let Some(s) = distributed_server().await else {
        return;
    };
    // CreateOrganization: a reference table and a shard in one two-phase
    // commit (no NOTIFY on the worker).
    let t = s.new_tenant().await;
    let (org, service) = (t.org.to_string(), service_token());
    let member = Uuid::new_v4();
    s.add_member(t.org, member, proto::Role::Admin).await;
    let listed = s
        .orgs()
        .list_members(authed(
            proto::ListMembersRequest {
                organization_id: org.clone(),
            },
            &t.token,
        ))
        .await
        .expect("ListMembers")
        .into_inner();
    assert_eq!(listed.members.len(), 2);
    assert!(s.remove_member(t.org, member, &t.token).await);
    // The last owner stays: the trigger reads the co-located shard.
    let last = s
        .orgs()
        .remove_member(authed(
            proto::RemoveMemberRequest {
                organization_id: org.clone(),
                user_id: t.user.to_string(),
            },
            &service,
        ))
        .await;
    assert_eq!(
        last.map(|_| ()).map_err(|e| e.code()),
        Err(tonic::Code::FailedPrecondition)
    );

    let post = Uuid::new_v4();
    let entity = Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: post.to_string(),
    });
    let mut v = vec![0.0f32; 384];
    v[0] = 1.0;
    s.similarity()
        .upsert_embeddings(authed(
            proto::UpsertEmbeddingsRequest {
                organization_id: org.clone(),
                embeddings: vec![proto::EmbeddingRecord {
                    entity: entity.clone(),
                    vector: v.clone(),
                    model: "m".into(),
                }],
            },
            &service,
        ))
        .await
        .expect("UpsertEmbeddings");
    let found = s
        .similarity()
        .search_by_vector(authed(
            proto::SearchByVectorRequest {
                organization_id: org.clone(),
                vector: v,
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("SearchByVector")
        .into_inner();
    assert_eq!(found.items.len(), 1);

    let points = [(3.0, 2), (4.0, 1)]
        .into_iter()
        .map(|(value, hours_ago)| proto::MetricPoint {
            entity: entity.clone(),
            metric_name: "likes".into(),
            value,
            recorded_at: Some(prost_types::Timestamp {
                seconds: chrono::Utc::now().timestamp() - hours_ago * 3600,
                nanos: 0,
            }),
        })
        .collect();
    s.metrics()
        .record_metrics(authed(
            proto::RecordMetricsRequest {
                organization_id: org.clone(),
                idempotency_key: "batch-1".into(),
                points,
            },
            &service,
        ))
        .await
        .expect("RecordMetrics");
    // The shard triggers rolled the points up on their co-located shards.
    let rolled: (f64, i64) = sqlx::query_as(
        "SELECT sum(sum), sum(count)::bigint FROM metric_rollups_hourly WHERE organization_id = $1",
    )
    .bind(t.org)
    .fetch_one(&s.db.pool)
    .await
    .expect("the hourly rollups");
    assert_eq!(rolled, (7.0, 2));
    let days: i64 =
        sqlx::query_scalar("SELECT count(*) FROM metric_digests_daily WHERE organization_id = $1")
            .bind(t.org)
            .fetch_one(&s.db.pool)
            .await
            .expect("the digests");
    assert!(days >= 1, "{days}");
    sqlx::query("DELETE FROM time_series_metrics WHERE organization_id = $1 AND value = 4")
        .bind(t.org)
        .execute(&s.db.pool)
        .await
        .expect("deleting a point");
    let rolled: (f64, i64) = sqlx::query_as(
        "SELECT sum(sum), sum(count)::bigint FROM metric_rollups_daily WHERE organization_id = $1",
    )
    .bind(t.org)
    .fetch_one(&s.db.pool)
    .await
    .expect("the daily rollups");
    assert_eq!(rolled, (3.0, 1), "recomputed after the deletion");

    // An AI-context entry becomes a searchable text with its attributes.
    s.ai_context()
        .log_ai_context(authed(
            proto::LogAiContextRequest {
                organization_id: org.clone(),
                user_id: t.user.to_string(),
                source_type: "chat".into(),
                context_summary: "latte art workshop".into(),
                ai_response: "on Saturday".into(),
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("LogAiContext");
    let texts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM item_texts WHERE organization_id = $1 AND user_id IS NOT NULL",
    )
    .bind(t.org)
    .fetch_one(&s.db.pool)
    .await
    .expect("the texts");
    assert_eq!(texts, 1, "the entry's text, with its attributes");
    // The vectorizer claims it organization by organization (Citus locks
    // rows only in a statement on one shard) and stores its vector.
    eventually(EMBEDDED_WITHIN, || async {
        let (vectors, left): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM embeddings WHERE organization_id = $1
                       AND entity_type = 'ai_context'),
                    (SELECT count(*) FROM embedding_queue WHERE organization_id = $1)",
        )
        .bind(t.org)
        .fetch_one(&s.db.pool)
        .await
        .expect("the vectors and the queue");
        seen(
            (vectors, left) == (1, 0),
            format!("{vectors} vectors, {left} queued"),
        )
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_legacy_migration_is_distributed_only_once_finalized_and_then_verifies() {
    let Some(db) = TestDb::on_citus().await else {
        return;
    };
    let cfg = affinity_testkit::legacy::LegacyConfig {
        seed: 5,
        users: 4,
        posts: 12,
    };
    affinity_testkit::legacy::create_and_fill(&db.pool, &cfg)
        .await
        .expect("a legacy database");
    let (ok, out) = command("migrate", &db.url).await;
    assert!(ok, "{out}");
    let (ok, out) = command("distribute", &db.url).await;
    assert!(!ok, "{out}");
    assert!(out.contains("finalize_migration_cleanup()"), "{out}");
    assert!(out.contains("posts_backup"), "{out}");

    sqlx::query("SELECT finalize_migration_cleanup()")
        .execute(&db.pool)
        .await
        .expect("finalizing the migration");
    let (ok, out) = command("distribute", &db.url).await;
    assert!(ok, "{out}");
    let failed: Vec<(String, String)> = sqlx::query_as(
        "SELECT check_name, details FROM verify_migration_integrity() WHERE NOT passed",
    )
    .fetch_all(&db.pool)
    .await
    .expect("the integrity checks, on Citus");
    assert_eq!(failed, []);
    let checks: i64 = sqlx::query_scalar("SELECT count(*) FROM verify_migration_integrity()")
        .fetch_one(&db.pool)
        .await
        .expect("the integrity checks");
    assert!(checks >= 4, "{checks}");
}

#[tokio::test(flavor = "multi_thread")]
async fn on_citus_changes_are_announced_as_rows_each_entity_named_up_to_a_thousand() {
    let Some(db) = common::citus::distributed_db().await else {
        return;
    };
    let org = Uuid::new_v4();
    sqlx::query("INSERT INTO organizations (id, name, slug) VALUES ($1, 'o', $2)")
        .bind(org)
        .bind(format!("o-{}", org.simple()))
        .execute(&db.pool)
        .await
        .expect("an organization");
    let points = |n: i32| {
        sqlx::query(
            "INSERT INTO time_series_metrics
                 (organization_id, entity_type, entity_id, metric_name, value, recorded_at)
             SELECT $1, 'post', gen_random_uuid(), 'views', 1, now() FROM generate_series(1, $2)",
        )
        .bind(org)
        .bind(n)
    };
    let payloads = || {
        sqlx::query_scalar::<_, String>(
            "DELETE FROM change_announcements WHERE organization_id = $1 RETURNING payload",
        )
        .bind(org)
        .fetch_all(&db.pool)
    };
    points(1000).execute(&db.pool).await.expect("1,000 points");
    let named = payloads().await.expect("the announcements");
    assert_eq!(named.len(), 1000);
    let prefix = format!("{org}:");
    assert!(named.iter().all(|p| p.starts_with(&prefix)), "{named:?}");
    points(1001).execute(&db.pool).await.expect("1,001 points");
    assert_eq!(payloads().await.expect("the announcements"), ["*"]);
    // A truncation announces everything, from each shard with members.
    sqlx::query("INSERT INTO user_profiles (id, organization_id) VALUES ($1, $2)")
        .bind(Uuid::new_v4())
        .bind(org)
        .execute(&db.pool)
        .await
        .expect("a user");
    sqlx::query(
        "INSERT INTO organization_members (organization_id, user_id, role)
         SELECT $1, id, 'owner' FROM user_profiles WHERE organization_id = $1",
    )
    .bind(org)
    .execute(&db.pool)
    .await
    .expect("an owner");
    payloads().await.expect("the membership's announcement");
    sqlx::query("TRUNCATE time_series_metrics")
        .execute(&db.pool)
        .await
        .expect("a truncation");
    assert_eq!(payloads().await.expect("the announcements"), ["*"]);
}
