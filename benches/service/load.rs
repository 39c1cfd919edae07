//! The seeded bulk load: COPY from a generator thread (so that generating
//! rows and PostgreSQL parsing them overlap), HNSW indexes built after the
//! embeddings are in, VACUUM ANALYZE at the end. A finished load leaves a
//! row in `bench.meta`, so a later run on the same data directory skips it.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rand::Rng;
use sqlx::{PgConnection, PgPool};
use tokio::sync::mpsc;

use crate::world::{
    self, uid, Kind, VectorModel, World, DOC_DIM, DOC_MODEL, METRICS, ORGS, POST_DIM, POST_MODEL,
    ROLES,
};

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

/// Binary COPY rows of one embedding set: text parsing of 300M floats would
/// dominate the load; pgvector's binary form is two int16 then float4s.
fn embeddings(
    sink: &mut Sink,
    world: &World,
    dim: usize,
    model: &str,
    kind: Kind,
    etype: &str,
) -> Result<()> {
    let vectors = VectorModel::new(world, dim);
    let mut r = world::rng(world.seed, &format!("vectors-{dim}"));
    let mut v = vec![0f32; dim];
    let b = sink.buf();
    b.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    b.extend_from_slice(&[0u8; 8]); // flags, header extension length
    for i in 0..world.scale.embeddings_per_dim {
        let org = world.org_of_item(i);
        vectors.sample(org, &mut r, &mut v);
        let b = sink.buf();
        b.extend_from_slice(&6i16.to_be_bytes());
        field(b, world.org_id(org).as_bytes());
        field(b, etype.as_bytes());
        field(b, uid(world.seed, kind, i as u64).as_bytes());
        field(b, model.as_bytes());
        field(b, &(dim as i32).to_be_bytes());
        b.extend_from_slice(&(4 + 4 * dim as i32).to_be_bytes());
        b.extend_from_slice(&(dim as i16).to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        for x in &v {
            b.extend_from_slice(&x.to_be_bytes());
        }
        sink.maybe_flush()?;
    }
    sink.buf().extend_from_slice(&(-1i16).to_be_bytes());
    Ok(())
}

fn field(b: &mut Vec<u8>, bytes: &[u8]) {
    b.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
    b.extend_from_slice(bytes);
}

/// A year of points in time order (so rows reach one monthly partition at a
/// time): hourly posts every hour, daily posts at midnight UTC, and the busy
/// post every `busy_step_secs`. Values are whole numbers, so sums are exact
/// whatever order a rollup adds them in.
fn metrics(sink: &mut Sink, world: &World, t_start: DateTime<Utc>) -> Result<()> {
    let s = &world.scale;
    let mut r = world::rng(world.seed, "metrics");
    let posts = s.hourly_posts + s.daily_posts;
    let ids: Vec<String> = (0..posts)
        .map(|j| {
            let org = world.org_id(world.org_of_metric_post(j));
            let post = uid(world.seed, Kind::MetricPost, j as u64);
            format!("{org}\tpost\t{post}\t")
        })
        .collect();
    let rates: Vec<f64> = (0..posts * METRICS.len())
        .map(|_| r.random_range(1.0..50.0f64).floor())
        .collect();
    let busy = format!("{}\tpost\t{}\t", world.org_id(0), busy_post(world));
    for h in 0..365 * 24 {
        let hour = (t_start + TimeDelta::hours(h))
            .format("%Y-%m-%d %H:")
            .to_string();
        let day = h / 24;
        let posts_now = if h % 24 == 0 { posts } else { s.hourly_posts };
        for (j, id) in ids.iter().enumerate().take(posts_now) {
            let hourly = j < s.hourly_posts;
            for (m, name) in METRICS.iter().enumerate() {
                let rate = rates[j * METRICS.len() + m];
                let t = (if hourly { h + 1 } else { 24 * (day + 1) }) as f64;
                let value = (rate * t + r.random_range(0.0..rate)).floor();
                let line = format!("{id}{name}\t{value}\t{hour}00:00+00\tbench\n");
                sink.buf().extend_from_slice(line.as_bytes());
            }
        }
        let mut sec = 0;
        while sec < 3600 {
            let value = r.random_range(0..1000);
            let line = format!(
                "{busy}{}\t{value}\t{hour}{:02}:{:02}+00\tbench\n",
                METRICS[0],
                sec / 60,
                sec % 60
            );
            sink.buf().extend_from_slice(line.as_bytes());
            sec += s.busy_step_secs;
        }
        sink.maybe_flush()?;
    }
    Ok(())
}

/// The post with many points per hour.
pub fn busy_post(world: &World) -> uuid::Uuid {
    uid(world.seed, Kind::MetricPost, u64::MAX)
}

const WORDS: [&str; 32] = [
    "the",
    "post",
    "caption",
    "audience",
    "reach",
    "engagement",
    "summer",
    "launch",
    "video",
    "story",
    "brand",
    "campaign",
    "hashtag",
    "followers",
    "growth",
    "weekly",
    "report",
    "draft",
    "schedule",
    "reply",
    "comment",
    "insight",
    "trend",
    "creative",
    "product",
    "review",
    "idea",
    "morning",
    "evening",
    "question",
    "answer",
    "plan",
];

fn words(r: &mut impl Rng, n: usize, out: &mut String) {
    for i in 0..n {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(WORDS[r.random_range(0..WORDS.len())]);
    }
}

/// Entries over the past year, each by a member of its organization; half
/// carry an idempotency key.
fn ai_context(sink: &mut Sink, world: &World, t_end: DateTime<Utc>) -> Result<()> {
    let mut r = world::rng(world.seed, "ai-context");
    let sources = ["chat", "agent", "generation"];
    let mut text = String::new();
    for i in 0..world.scale.ai_entries {
        let org = world::pick(&world.weights, r.random());
        let members = &world.members[org];
        let user = members[r.random_range(0..members.len())];
        let at = t_end - TimeDelta::seconds(r.random_range(0..365 * 86_400));
        text.clear();
        text.push_str(&format!(
            "{}\t{}\t{}\t{}\t",
            uid(world.seed, Kind::AiEntry, i as u64),
            world.org_id(org),
            world.user_id(user),
            sources[i % sources.len()]
        ));
        let n = r.random_range(8..24);
        words(&mut r, n, &mut text);
        text.push('\t');
        let n = r.random_range(20..60);
        words(&mut r, n, &mut text);
        text.push_str(&format!(
            "\t{{\"model\": \"gpt-4o\", \"confidence\": {:.2}, \"tokens\": {}}}\t",
            r.random_range(0.5..1.0f64),
            r.random_range(50..2000)
        ));
        if i % 2 == 0 {
            text.push_str(&format!("bench-{i}"));
        } else {
            text.push_str("\\N");
        }
        text.push_str(&at.format("\t%Y-%m-%d %H:%M:%S+00\n").to_string());
        sink.buf().extend_from_slice(text.as_bytes());
        sink.maybe_flush()?;
    }
    Ok(())
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
