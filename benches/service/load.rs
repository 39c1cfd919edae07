//! The seeded bulk load: COPY from a generator thread (so that generating
//! rows and PostgreSQL parsing them overlap), HNSW indexes built after the
//! embeddings are in, VACUUM ANALYZE at the end. A finished load leaves a
//! row in `bench.meta`, so a later run on the same data directory skips it.

#[path = "load_generators.rs"]
mod generators;

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;

use crate::world::{uid, Kind, World, DOC_DIM, DOC_MODEL, ORGS, POST_DIM, POST_MODEL, ROLES};
use generators::{ai_context, embeddings, metrics};

/// One step of the load, for the report.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Step {
    pub name: String,
    pub rows: u64,
    pub secs: f64,
}

/// What a finished load recorded.
#[derive(Debug, Clone)]
pub struct Meta {
    /// The end of the metric year (the load's hour); queries end here.
    pub t_end: DateTime<Utc>,
    pub steps: Vec<Step>,
}

/// The load recorded in this database, if it is of this size and seed.
/// Err when it holds another size or seed (use another data directory).
pub async fn existing(pool: &PgPool, world: &World) -> Result<Option<Meta>> {
    let has_meta: bool = sqlx::query_scalar("SELECT to_regclass('bench.meta') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !has_meta {
        return Ok(None);
    }
    let row: Option<(String, i64, DateTime<Utc>, serde_json::Value)> =
        sqlx::query_as("SELECT size, seed, t_end, steps FROM bench.meta")
            .fetch_optional(pool)
            .await?;
    let Some((size, seed, t_end, steps)) = row else {
        return Ok(None);
    };
    if size != world.size.name() || seed as u64 != world.seed {
        anyhow::bail!(
            "the data directory holds a {size} load with seed {seed}, not {} with seed {}: \
             use another --data-dir",
            world.size.name(),
            world.seed
        );
    }
    let steps = serde_json::from_value(steps).context("reading bench.meta")?;
    Ok(Some(Meta { t_end, steps }))
}

/// Loads everything into a freshly migrated database.
pub async fn load(pool: &PgPool, world: Arc<World>) -> Result<Meta> {
    let t_end = Utc::now().duration_trunc(TimeDelta::hours(1))?;
    let mut steps = Vec::new();
    let mut conn = pool.acquire().await?;

    users_and_organizations(&mut conn, &world, &mut steps).await?;

    sqlx::query("SELECT drop_embedding_indexes()")
        .execute(&mut *conn)
        .await?;
    for (dim, model, kind, etype) in [
        (POST_DIM, POST_MODEL, Kind::Post, "post"),
        (DOC_DIM, DOC_MODEL, Kind::Document, "document"),
    ] {
        let t = Instant::now();
        let w = world.clone();
        let rows = copy_in(
            &mut conn,
            "COPY embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
             FROM STDIN (FORMAT binary)",
            move |sink| embeddings(sink, &w, dim, model, kind, etype),
        )
        .await
        .with_context(|| format!("loading the {dim}-dimensional embeddings"))?;
        step(
            &mut steps,
            &format!("embeddings, dim {dim} (COPY binary)"),
            rows,
            t,
        );
    }
    let t = Instant::now();
    sqlx::query("SELECT create_embedding_indexes()")
        .execute(&mut *conn)
        .await
        .context("building the HNSW indexes")?;
    step(
        &mut steps,
        "HNSW indexes (create_embedding_indexes)",
        2 * world.scale.embeddings_per_dim as u64,
        t,
    );

    let t = Instant::now();
    let t_start = t_end - TimeDelta::days(365);
    sqlx::query("SELECT ensure_metric_partitions($1, $2)")
        .bind(t_start)
        .bind(t_end)
        .execute(&mut *conn)
        .await?;
    let w = world.clone();
    let rows = copy_in(
        &mut conn,
        "COPY time_series_metrics (organization_id, entity_type, entity_id, metric_name, value,
                                   recorded_at, source) FROM STDIN",
        move |sink| metrics(sink, &w, t_start),
    )
    .await
    .context("loading the metric points")?;
    step(&mut steps, "time_series_metrics (COPY)", rows, t);

    let t = Instant::now();
    let w = world.clone();
    let rows = copy_in(
        &mut conn,
        "COPY ai_context_logs (id, organization_id, user_id, source_type, context_summary,
                               ai_response, metadata, idempotency_key, occurred_at) FROM STDIN",
        move |sink| ai_context(sink, &w, t_end),
    )
    .await
    .context("loading the AI context entries")?;
    step(&mut steps, "ai_context_logs (COPY)", rows, t);

    // Hint bits and the visibility map set once here rather than by the
    // first queries, statistics for the planner, and no checkpoint of the
    // load's WAL in the middle of the measurements.
    let t = Instant::now();
    sqlx::query("VACUUM (ANALYZE)").execute(&mut *conn).await?;
    sqlx::query("CHECKPOINT").execute(&mut *conn).await?;
    step(&mut steps, "VACUUM (ANALYZE) + CHECKPOINT", 0, t);

    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS bench;
         CREATE TABLE bench.meta (size text NOT NULL, seed bigint NOT NULL,
                                  t_end timestamptz NOT NULL, steps jsonb NOT NULL,
                                  loaded_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO bench.meta (size, seed, t_end, steps) VALUES ($1, $2, $3, $4)")
        .bind(world.size.name())
        .bind(world.seed as i64)
        .bind(t_end)
        .bind(serde_json::to_value(&steps)?)
        .execute(&mut *conn)
        .await?;
    Ok(Meta { t_end, steps })
}

fn step(steps: &mut Vec<Step>, name: &str, rows: u64, t: Instant) {
    let secs = t.elapsed().as_secs_f64();
    eprintln!("  loaded {name}: {rows} rows in {secs:.1} s");
    steps.push(Step {
        name: name.to_string(),
        rows,
        secs,
    });
}

/// Profiles, personal and shared organizations and memberships, in one
/// transaction: the profiles' organization_id key is checked at commit.
async fn users_and_organizations(
    conn: &mut PgConnection,
    world: &Arc<World>,
    steps: &mut Vec<Step>,
) -> Result<()> {
    let t = Instant::now();
    sqlx::query("BEGIN").execute(&mut *conn).await?;
    let w = world.clone();
    let users = copy_in(
        conn,
        "COPY user_profiles (id, organization_id, full_name, plan) FROM STDIN",
        move |sink| {
            for u in 0..w.scale.users {
                let line = format!(
                    "{}\t{}\tUser {u}\tfree\n",
                    w.user_id(u),
                    w.personal_org_id(u)
                );
                sink.buf().extend_from_slice(line.as_bytes());
                sink.maybe_flush()?;
            }
            Ok(())
        },
    )
    .await?;
    let w = world.clone();
    let orgs = copy_in(
        conn,
        "COPY organizations (id, name, slug, personal_owner_id) FROM STDIN",
        move |sink| {
            for o in 0..ORGS {
                let line = format!("{}\tOrganization {o}\tbench-org-{o}\t\\N\n", w.org_id(o));
                sink.buf().extend_from_slice(line.as_bytes());
            }
            for u in 0..w.scale.users {
                let (org, user) = (w.personal_org_id(u), w.user_id(u));
                let line = format!("{org}\tPersonal workspace\tpersonal-{user}\t{user}\n");
                sink.buf().extend_from_slice(line.as_bytes());
                sink.maybe_flush()?;
            }
            Ok(())
        },
    )
    .await?;
    let w = world.clone();
    let members = copy_in(
        conn,
        "COPY organization_members (organization_id, user_id, role) FROM STDIN",
        move |sink| {
            for u in 0..w.scale.users {
                let user = w.user_id(u);
                let line = format!("{}\t{user}\towner\n", w.personal_org_id(u));
                sink.buf().extend_from_slice(line.as_bytes());
                for &(org, role) in &w.memberships[u] {
                    let line = format!("{}\t{user}\t{}\n", w.org_id(org), ROLES[role]);
                    sink.buf().extend_from_slice(line.as_bytes());
                }
                sink.maybe_flush()?;
            }
            Ok(())
        },
    )
    .await?;
    sqlx::query("COMMIT")
        .execute(&mut *conn)
        .await
        .context("committing users and organizations")?;
    step(
        steps,
        &format!("user_profiles + organizations + organization_members (COPY, {users} + {orgs} + {members} rows, one transaction)"),
        users + orgs + members,
        t,
    );
    Ok(())
}

/// The post with many points per hour.
pub fn busy_post(world: &World) -> uuid::Uuid {
    uid(world.seed, Kind::MetricPost, u64::MAX)
}

/// Where a generator writes COPY data; full buffers go to the connection.
pub struct Sink {
    buf: Vec<u8>,
    tx: mpsc::Sender<Vec<u8>>,
}

const FLUSH_BYTES: usize = 1 << 20;

impl Sink {
    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn maybe_flush(&mut self) -> Result<()> {
        if self.buf.len() >= FLUSH_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if !self.buf.is_empty() {
            let full = std::mem::replace(&mut self.buf, Vec::with_capacity(2 * FLUSH_BYTES));
            self.tx
                .blocking_send(full)
                .map_err(|_| anyhow!("the COPY stopped"))?;
        }
        Ok(())
    }
}

/// Runs `statement` (a COPY FROM STDIN) with the data `produce` generates
/// on a blocking thread; returns the rows copied.
async fn copy_in<F>(conn: &mut PgConnection, statement: &str, produce: F) -> Result<u64>
where
    F: FnOnce(&mut Sink) -> Result<()> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let producer = tokio::task::spawn_blocking(move || {
        let mut sink = Sink {
            buf: Vec::with_capacity(2 * FLUSH_BYTES),
            tx,
        };
        produce(&mut sink)?;
        sink.flush()
    });
    let mut copy = conn.copy_in_raw(statement).await?;
    while let Some(buf) = rx.recv().await {
        copy.send(buf).await?;
    }
    match producer.await.context("the row generator panicked")? {
        Ok(()) => Ok(copy.finish().await?),
        Err(e) => {
            copy.abort(format!("generator failed: {e}")).await?;
            Err(e)
        }
    }
}
