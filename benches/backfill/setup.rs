//! The database under test: a durable private PostgreSQL, a legacy database
//! filled by the seeded generator and migrated, trimmed to exactly the
//! posts asked for; and the SQL the phases run between measurements.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use affinity::db::cluster::{ClusterOptions, PgCluster};
use affinity_testkit::legacy::{self, LegacyConfig};
use anyhow::{bail, Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

pub const DATABASE: &str = "backfill";
/// The entity type of the memory phase's extra texts.
pub const MEMORY_TYPE: &str = "bench_doc";

/// Durable, like a production server (fsync and synchronous_commit on: the
/// vectors are committed writes), with no checkpoint forced mid-round by WAL
/// volume.
pub fn start_cluster(dir: &Path) -> Result<PgCluster> {
    let settings = [
        ("shared_buffers", "256MB"),
        ("maintenance_work_mem", "256MB"),
        ("max_wal_size", "8GB"),
        ("checkpoint_timeout", "30min"),
    ];
    let options = ClusterOptions {
        ephemeral: false,
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let data = dir.join("pg");
    PgCluster::start(&data, &options)
        .with_context(|| format!("starting PostgreSQL in {}", data.display()))
}

pub async fn connect(url: &str, max: u32) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?
        .application_name("affinity-backfill-bench")
        .log_statements(tracing::log::LevelFilter::Off)
        .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(600));
    PgPoolOptions::new()
        .max_connections(max)
        .acquire_timeout(Duration::from_secs(60))
        .connect_with(options)
        .await
        .context("connecting to the benchmark database")
}

/// What the setup made.
pub struct Prepared {
    /// Posts the legacy generator wrote (some have no text).
    pub generated_posts: usize,
    pub users: usize,
    /// Legacy posts with text, all queued: the measured set.
    pub posts: usize,
    /// Texts left out of the measured set (AI context entries from the
    /// legacy chat history, posts beyond `--posts`).
    pub removed_texts: u64,
    pub fill_secs: f64,
    pub migrate_secs: f64,
}

/// A fresh database `backfill` in the legacy state with at least `posts`
/// posts with text, migrated (migration 09 copies their texts into
/// item_texts and queues them); then only the first `posts` of them (by
/// entity id) are kept in item_texts, so the queue holds exactly those.
pub async fn prepare(cluster: &PgCluster, posts: usize, seed: u64) -> Result<Prepared> {
    let admin = connect(&cluster.url("postgres"), 1).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .execute(&admin)
        .await
        .context("dropping the database of an earlier run")?;
    sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
        .execute(&admin)
        .await
        .context("creating the benchmark database")?;
    admin.close().await;
    let pool = connect(&cluster.url(DATABASE), 2).await?;

    // About 2% of generated posts have no text (drafts without a caption):
    // 5% more, plus the generator's pinned awkward cases, is enough.
    let generated_posts = posts + posts / 20 + 20;
    let users = (generated_posts / 3).max(10);
    let started = Instant::now();
    legacy::create_and_fill(
        &pool,
        &LegacyConfig {
            seed,
            users,
            posts: generated_posts,
        },
    )
    .await
    .context("filling the legacy database")?;
    let fill_secs = started.elapsed().as_secs_f64();

    let started = Instant::now();
    affinity::db::migrate::run(&pool)
        .await
        .context("migrating the legacy database")?;
    let migrate_secs = started.elapsed().as_secs_f64();

    let with_text: i64 =
        sqlx::query_scalar("SELECT count(*) FROM item_texts WHERE entity_type = 'post'")
            .fetch_one(&pool)
            .await?;
    let limit = i64::try_from(posts)?;
    if with_text < limit {
        bail!("the generator made {with_text} posts with text, fewer than --posts {posts}");
    }
    // The queue's rows go with their texts (ON DELETE CASCADE).
    let removed = sqlx::query(
        "DELETE FROM item_texts t
         WHERE t.entity_type <> 'post'
            OR (t.organization_id, t.entity_id) NOT IN (
                SELECT organization_id, entity_id FROM item_texts
                WHERE entity_type = 'post' ORDER BY entity_id LIMIT $1)",
    )
    .bind(limit)
    .execute(&pool)
    .await
    .context("trimming the texts to --posts")?
    .rows_affected();
    let (texts, queued): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM item_texts), (SELECT count(*) FROM embedding_queue)",
    )
    .fetch_one(&pool)
    .await?;
    if texts != limit || queued != limit {
        bail!("after setup: {texts} texts and {queued} queued items, expected {posts} of each");
    }
    sqlx::raw_sql("VACUUM ANALYZE").execute(&pool).await?;
    pool.close().await;
    Ok(Prepared {
        generated_posts,
        users,
        posts,
        removed_texts: removed,
        fill_secs,
        migrate_secs,
    })
}

/// The queued texts in the order the service claims them (the queue's
/// `not_before`, then its physical order, as the claim's index scan).
pub async fn queued_texts(pool: &PgPool) -> Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT t.body FROM embedding_queue q
         JOIN item_texts t USING (organization_id, entity_type, entity_id)
         WHERE q.failed_at IS NULL ORDER BY q.not_before, q.ctid",
    )
    .fetch_all(pool)
    .await
    .context("reading the queued texts")
}

/// Back to the state after migration: no vector of `model`, every text
/// queued (the same rows the service's own start-up backfill queues), dead
/// rows vacuumed away so that every round starts alike. Returns the queue's
/// length.
pub async fn requeue(pool: &PgPool, model: &str) -> Result<u64> {
    sqlx::query("DELETE FROM embeddings WHERE model = $1")
        .bind(model)
        .execute(pool)
        .await
        .context("deleting the vectors of the previous round")?;
    sqlx::query(
        "INSERT INTO embedding_queue (organization_id, entity_type, entity_id, version)
         SELECT organization_id, entity_type, entity_id, version FROM item_texts
         ON CONFLICT DO NOTHING",
    )
    .execute(pool)
    .await
    .context("queueing every text again")?;
    sqlx::raw_sql("VACUUM ANALYZE embeddings, embedding_queue, item_texts")
        .execute(pool)
        .await?;
    queue_len(pool).await
}

/// Items waiting in the queue (not set aside).
pub async fn queue_len(pool: &PgPool) -> Result<u64> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM embedding_queue WHERE failed_at IS NULL")
        .fetch_one(pool)
        .await?;
    Ok(u64::try_from(n)?)
}

/// Whether any item waits (cheap: the queue's partial index).
pub async fn any_pending(pool: &PgPool) -> Result<bool> {
    Ok(
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM embedding_queue WHERE failed_at IS NULL)")
            .fetch_one(pool)
            .await?,
    )
}

/// Items set aside after failed attempts, with their most common error.
pub async fn failures(pool: &PgPool) -> Result<(i64, Option<String>)> {
    Ok(sqlx::query_as(
        "SELECT count(*), mode() WITHIN GROUP (ORDER BY last_error)
         FROM embedding_queue WHERE failed_at IS NOT NULL",
    )
    .fetch_one(pool)
    .await?)
}

/// Texts with a vector of `model` made from their current version.
pub async fn embedded(pool: &PgPool, model: &str) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM item_texts t JOIN embeddings e
           ON e.organization_id = t.organization_id AND e.entity_type = t.entity_type
          AND e.entity_id = t.entity_id AND e.model = $1 AND e.text_version = t.version",
    )
    .bind(model)
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(n)?)
}

/// `n` more texts for the memory phase: the posts' own bodies over and over
/// (realistic lengths), each a new item of type [`MEMORY_TYPE`] in its
/// post's organization, queued by the table's trigger as any write is.
pub async fn fill_memory_queue(pool: &PgPool, n: u64, posts: usize) -> Result<()> {
    let rounds = n.div_ceil(u64::try_from(posts.max(1))?);
    sqlx::query(
        "INSERT INTO item_texts (organization_id, entity_type, entity_id, body)
         SELECT t.organization_id, $1, gen_random_uuid(), t.body
         FROM generate_series(1, $2) g, item_texts t
         WHERE t.entity_type = 'post'
         LIMIT $3",
    )
    .bind(MEMORY_TYPE)
    .bind(i64::try_from(rounds)?)
    .bind(i64::try_from(n)?)
    .execute(pool)
    .await
    .context("queueing the memory phase's texts")?;
    sqlx::raw_sql("VACUUM ANALYZE embeddings, embedding_queue, item_texts")
        .execute(pool)
        .await?;
    Ok(())
}

/// `PostgreSQL x.y, pgvector z`.
pub async fn versions(pool: &PgPool) -> Result<String> {
    let (pg, vector): (String, Option<String>) = sqlx::query_as(
        "SELECT current_setting('server_version'),
                (SELECT extversion FROM pg_extension WHERE extname = 'vector')",
    )
    .fetch_one(pool)
    .await?;
    Ok(format!(
        "PostgreSQL {pg}, pgvector {}",
        vector.unwrap_or_else(|| "?".into())
    ))
}
