//! FindSimilarContent (1536-dimensional posts) and SearchByVector
//! (384-dimensional documents) per organization size class: throughput
//! against the same SQL, recall@10 against an exact scan, the exact scan's
//! own speed in the largest class, and the plans.

#[path = "similarity_ops.rs"]
mod ops;
#[path = "similarity_quality.rs"]
mod quality;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::PgPool;
use tonic::metadata::{Ascii, MetadataValue};
use uuid::Uuid;

use crate::drive::{self, compare, Row};
use crate::world::{self, uid, Kind, VectorModel, DOC_DIM};
use crate::Ctx;
use ops::{find_exact, find_rpc, find_sql, search_exact, search_rpc, search_sql};
use quality::{explain_find, explain_search, find_recall, search_recall};

/// Queries cycled through per class, and how many of them recall is measured on.
const QUERIES: usize = 200;
const RECALL_SAMPLE: usize = 50;
const K: usize = 10;

pub struct Recall {
    pub rpc: &'static str,
    pub class: &'static str,
    /// Embeddings of that dimension in the class's organizations (min..max).
    pub org_items: (usize, usize),
    pub queries: usize,
    pub recall: f64,
}

pub struct Exact {
    pub what: String,
    pub index: drive::Stats,
    pub exact: drive::Stats,
}

pub struct Results {
    pub rows: Vec<Row>,
    pub recall: Vec<Recall>,
    pub exact: Vec<Exact>,
    pub plans: Vec<(String, String)>,
}

struct Query {
    org: Uuid,
    auth: MetadataValue<Ascii>,
    /// FindSimilarContent: the source post.
    post: Uuid,
    /// SearchByVector: the query vector.
    vector: Vec<f32>,
}

/// Reads the embeddings and their indexes into the OS page cache
/// (pg_prewarm), so that the first cell does not pay for a cold cache
/// (seen: 128 ms instead of 5 ms per search right after a restart) while
/// the SQL run right after it finds the cache warm.
async fn prewarm(pool: &PgPool) -> Result<()> {
    sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_prewarm")
        .execute(pool)
        .await?;
    let blocks: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(pg_prewarm(c.oid, 'read')), 0)::bigint FROM pg_class c
         WHERE c.oid = 'embeddings'::regclass
            OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'embeddings'::regclass)",
    )
    .fetch_one(pool)
    .await?;
    eprintln!(
        "  prewarmed {} MB of embeddings and their indexes",
        blocks * 8 / 1024
    );
    Ok(())
}

pub async fn run(ctx: &Ctx) -> Result<Results> {
    prewarm(&ctx.pool)
        .await
        .context("prewarming the embeddings")?;
    let w = &ctx.world;
    let docs = VectorModel::new(w, DOC_DIM);
    let mut out = Results {
        rows: Vec::new(),
        recall: Vec::new(),
        exact: Vec::new(),
        plans: Vec::new(),
    };
    for class in world::classes() {
        let mut r = world::rng(w.seed, &format!("similarity-queries-{}", class.orgs.start));
        let mut queries = Vec::with_capacity(QUERIES);
        for q in 0..QUERIES {
            let org = class.orgs.start + q % class.orgs.len();
            let items = w.items_of(org);
            let item = items.start + (rand::Rng::random_range(&mut r, 0..items.len()));
            let mut vector = vec![0f32; DOC_DIM];
            docs.sample(org, &mut r, &mut vector);
            queries.push(Arc::new(Query {
                org: w.org_id(org),
                auth: ctx.owner_auth(org)?,
                post: uid(w.seed, Kind::Post, item as u64),
                vector,
            }));
        }
        let queries = Arc::new(queries);
        let sizes = class.orgs.clone().map(|o| w.items_of(o).len());
        let org_items = (sizes.clone().min().unwrap_or(0), sizes.max().unwrap_or(0));

        let name = format!("FindSimilarContent, {}", class.name);
        let (rpc, sql) = (find_rpc(ctx, &queries), find_sql(&ctx.pool, &queries));
        out.rows
            .extend(compare(&name, &rpc, Some(&sql), &ctx.concurrency, ctx.timing).await);
        out.recall.push(Recall {
            rpc: "FindSimilarContent",
            class: class.name,
            org_items,
            queries: RECALL_SAMPLE,
            recall: find_recall(ctx, &queries).await?,
        });

        let name = format!("SearchByVector, {}", class.name);
        let (rpc, sql) = (search_rpc(ctx, &queries), search_sql(&ctx.pool, &queries));
        out.rows
            .extend(compare(&name, &rpc, Some(&sql), &ctx.concurrency, ctx.timing).await);
        out.recall.push(Recall {
            rpc: "SearchByVector",
            class: class.name,
            org_items,
            queries: RECALL_SAMPLE,
            recall: search_recall(ctx, &queries).await?,
        });

        let q = &queries[0];
        let plan = explain_search(&ctx.pool, q).await?;
        out.plans
            .push((format!("SearchByVector statement, {}", class.name), plan));
        let plan = explain_find(&ctx.pool, q).await?;
        out.plans.push((
            format!(
                "find_similar_content's per-source statement, {}",
                class.name
            ),
            plan,
        ));

        // The exact scan the index must beat by 10x, in the largest class.
        if class.orgs.start == 0 {
            for (what, index, exact) in [
                (
                    "FindSimilarContent (1536)",
                    find_sql(&ctx.pool, &queries),
                    { find_exact(&ctx.pool, &queries) },
                ),
                ("SearchByVector (384)", search_sql(&ctx.pool, &queries), {
                    search_exact(&ctx.pool, &queries)
                }),
            ] {
                let index = drive::drive(&index, 1, ctx.timing).await;
                // At least a few exact scans, however slow they are.
                let timing = drive::Timing {
                    warmup: ctx.timing.warmup,
                    measure: ctx.timing.measure.max(Duration::from_secs(3)),
                };
                let exact = drive::drive(&exact, 1, timing).await;
                eprintln!(
                    "  exact scan {what}: p50 {:.2} ms vs index {:.2} ms",
                    drive::ms(exact.p50),
                    drive::ms(index.p50)
                );
                out.exact.push(Exact {
                    what: what.to_string(),
                    index,
                    exact,
                });
            }
        }
    }
    Ok(out)
}
