//! `affinity distribute`: the migrated schema made a Citus one, once, on the
//! coordinator. Tables every node needs whole become reference tables;
//! every tenant table is distributed by `organization_id` and co-located
//! with the others, so that a tenant's rows of every table share a node.
//!
//! Citus refuses to distribute a table that has triggers, or that a local
//! table references, and a table with an identity column; so, in one
//! transaction: the triggers and foreign keys are set aside, the identity
//! becomes a sequence, the tables are converted, and the foreign keys and
//! triggers are created again (Citus creates them on every shard), their
//! functions replaced by the ones in `citus_triggers.sql` and
//! `citus_rollups.sql`, which name the co-located shards they touch, and the
//! read functions by those of `citus_reads.sql`, which Citus can plan.

use anyhow::{bail, Context};
use sqlx::{PgPool, Postgres, Transaction};

/// Replicated to every node: the organizations and users that tenant rows
/// reference, the configuration tables, and the scrapes (a scrape of no
/// user has no organization to be distributed by).
pub const REFERENCE_TABLES: &[&str] = &[
    "organizations",
    "user_profiles",
    "metric_rollup_zones",
    "vector_index_dimensions",
    "scraped_posts",
];

/// Distributed by `organization_id`, co-located with the first.
pub const TENANT_TABLES: &[&str] = &[
    "organization_members",
    "posts_core",
    "posts_content",
    "media_files",
    "post_media_links",
    "post_insights",
    "time_series_metrics",
    "archive.time_series_metrics",
    "embeddings",
    "ai_context_logs",
    "ai_context_feedback",
    "metric_rollups_hourly",
    "metric_rollups_daily",
    "metric_digests_daily",
    "metric_batch_keys",
    "item_texts",
    "embedding_queue",
    "change_announcements",
];

/// Where the triggers announce changes on Citus, for the service to poll
/// (a NOTIFY on a worker cannot be: see `citus_triggers.sql`). Only here:
/// plain PostgreSQL announces with NOTIFY.
const ANNOUNCEMENTS: &str = "CREATE TABLE change_announcements (
    organization_id uuid NOT NULL,
    id bigserial,
    channel text NOT NULL,
    payload text NOT NULL,
    announced_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (organization_id, id)
)";

/// Citus takes no SET NULL action on a foreign key that holds the
/// distribution column: an entry's parent becomes NO ACTION (the service
/// deletes no entry; deleting an organization deletes its entries whole).
const PARENT_FKEY: &str = "ai_context_logs_parent_fkey";

/// The schema's functions as Citus runs them, in order (see each file).
const FUNCTIONS: &[(&str, &str)] = &[
    ("citus_triggers.sql", include_str!("citus_triggers.sql")),
    ("citus_rollups.sql", include_str!("citus_rollups.sql")),
    ("citus_reads.sql", include_str!("citus_reads.sql")),
];

/// Whether this database's schema has been distributed by [`distribute`].
pub async fn is_distributed(pool: &PgPool) -> sqlx::Result<bool> {
    let citus: bool =
        sqlx::query_scalar("SELECT to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !citus {
        return Ok(false);
    }
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_dist_partition
                        WHERE logicalrelid = to_regclass('public.organization_members'))",
    )
    .fetch_one(pool)
    .await
}

/// What [`distribute`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Distributed { workers: i64 },
    AlreadyDistributed,
}

/// Distributes the schema (see the module); refuses without Citus or
/// without a worker, and does nothing on a schema already distributed.
pub async fn distribute(pool: &PgPool) -> anyhow::Result<Outcome> {
    let citus: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'citus'")
            .fetch_optional(pool)
            .await?;
    if citus.is_none() {
        bail!(
            "this database has no citus extension: run CREATE EXTENSION citus on the coordinator \
             and add the workers (citus_add_node) first; docs/scaling.md says how"
        );
    }
    let workers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_dist_node
         WHERE groupid <> 0 AND noderole = 'primary' AND isactive",
    )
    .fetch_one(pool)
    .await?;
    if workers == 0 {
        bail!("the Citus coordinator has no worker: add them with citus_add_node first");
    }
    let done: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_dist_partition WHERE logicalrelid::text = ANY($1)",
    )
    .bind(TENANT_TABLES)
    .fetch_one(pool)
    .await?;
    if done == TENANT_TABLES.len() as i64 {
        return Ok(Outcome::AlreadyDistributed);
    }
    // The legacy rows' backups are local tables that the integrity checks
    // join with tenant tables; Citus joins no such pair.
    let backups: Vec<String> = sqlx::query_scalar(
        "SELECT relname::text FROM pg_class
         WHERE relnamespace = 'public'::regnamespace AND relkind = 'r' AND relname LIKE '%\\_backup'
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    if !backups.is_empty() {
        bail!(
            "the legacy migration is not finalized ({} still here): check it with \
             verify_migration_integrity() and run finalize_migration_cleanup() first",
            backups.join(", ")
        );
    }
    let mut tx = pool.begin().await?;
    run(
        &mut tx,
        "SET LOCAL citus.multi_shard_modify_mode TO 'sequential'",
    )
    .await?;
    run(&mut tx, "SET LOCAL citus.enable_unsafe_triggers TO on").await?;
    run(
        &mut tx,
        "CREATE TEMP TABLE distribute_triggers ON COMMIT DROP AS
         SELECT tgrelid::regclass::text AS rel, tgname, pg_get_triggerdef(oid) AS def
         FROM pg_trigger
         WHERE NOT tgisinternal AND tgparentid = 0
           AND tgrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace)",
    )
    .await?;
    run(
        &mut tx,
        "CREATE TEMP TABLE distribute_fkeys ON COMMIT DROP AS
         SELECT conrelid::regclass::text AS rel, conname, pg_get_constraintdef(oid) AS def
         FROM pg_constraint
         WHERE contype = 'f' AND conparentid = 0
           AND connamespace IN ('public'::regnamespace, 'archive'::regnamespace)",
    )
    .await?;
    sqlx::query(
        "UPDATE distribute_fkeys SET def = regexp_replace(def, ' ON DELETE SET NULL.*$', '')
         WHERE conname = $1",
    )
    .bind(PARENT_FKEY)
    .execute(&mut *tx)
    .await?;
    run(
        &mut tx,
        "DO $$ DECLARE r record; BEGIN
           FOR r IN SELECT * FROM distribute_triggers LOOP
             EXECUTE format('DROP TRIGGER %I ON %s', r.tgname, r.rel);
           END LOOP;
           FOR r IN SELECT * FROM distribute_fkeys LOOP
             EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.conname);
           END LOOP;
         END $$",
    )
    .await?;
    // Citus distributes no identity column; a sequence it does.
    run(
        &mut tx,
        "DO $$ DECLARE next bigint; BEGIN
           SELECT coalesce(max(id), 0) + 1 INTO next FROM time_series_metrics;
           ALTER TABLE time_series_metrics ALTER COLUMN id DROP IDENTITY;
           CREATE SEQUENCE time_series_metrics_id_seq AS bigint OWNED BY time_series_metrics.id;
           PERFORM setval('time_series_metrics_id_seq', next, false);
           ALTER TABLE time_series_metrics
             ALTER COLUMN id SET DEFAULT nextval('time_series_metrics_id_seq');
         END $$",
    )
    .await?;
    run(&mut tx, ANNOUNCEMENTS).await?;
    run(
        &mut tx,
        "CREATE INDEX change_announcements_at_idx ON change_announcements (announced_at)",
    )
    .await?;
    for table in REFERENCE_TABLES {
        sqlx::query("SELECT create_reference_table($1::regclass)")
            .bind(table)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("create_reference_table({table})"))?;
    }
    for table in TENANT_TABLES {
        sqlx::query(
            "SELECT create_distributed_table($1::regclass, 'organization_id',
                                             colocate_with => $2)",
        )
        .bind(table)
        .bind(match *table == TENANT_TABLES[0] {
            true => "default",
            false => TENANT_TABLES[0],
        })
        .execute(&mut *tx)
        .await
        .with_context(|| format!("create_distributed_table({table})"))?;
    }
    run(
        &mut tx,
        "DO $$ DECLARE r record; BEGIN
           FOR r IN SELECT * FROM distribute_fkeys LOOP
             EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.rel, r.conname, r.def);
           END LOOP;
           FOR r IN SELECT * FROM distribute_triggers LOOP
             EXECUTE r.def;
           END LOOP;
         END $$",
    )
    .await?;
    for (file, sql) in FUNCTIONS {
        sqlx::raw_sql(sql)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("the functions of {file}"))?;
    }
    tx.commit().await?;
    Ok(Outcome::Distributed { workers })
}

async fn run(tx: &mut Transaction<'static, Postgres>, sql: &str) -> anyhow::Result<()> {
    sqlx::query(sql)
        .execute(&mut **tx)
        .await
        .with_context(|| format!("{}…", sql.chars().take(60).collect::<String>()))?;
    Ok(())
}
