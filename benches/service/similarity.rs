//! FindSimilarContent (1536-dimensional posts) and SearchByVector
//! (384-dimensional documents) per organization size class: throughput
//! against the same SQL, recall@10 against an exact scan, the exact scan's
//! own speed in the largest class, and the plans.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use affinity::proto::{
    similarity_service_client::SimilarityServiceClient, EntityRef, FindSimilarContentRequest,
    SearchByVectorRequest,
};
use anyhow::{Context, Result};
use pgvector::Vector;
use sqlx::PgPool;
use tonic::metadata::{Ascii, MetadataValue};
use uuid::Uuid;

use crate::drive::{self, compare, op, Op, Row};
use crate::env::request;
use crate::world::{self, uid, Kind, VectorModel, DOC_DIM, DOC_MODEL, POST_MODEL};
use crate::Ctx;

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

const FIND_SQL: &str = "SELECT organization_id, entity_type, entity_id, similarity
     FROM find_similar_content($1, $2, $3, $4, $5, $6)";

/// The statement SearchByVector runs (store::similarity::search_sql with a
/// model filter), inside a transaction that sets the HNSW scan options.
const SEARCH_SQL: &str = "SELECT entity_type, entity_id,
            (1 - (embedding::vector(384) <=> $3::vector(384)))::double precision AS similarity
     FROM embeddings
     WHERE organization_id = $1 AND dimension = $2 AND model = $5
     ORDER BY embedding::vector(384) <=> $3::vector(384)
     LIMIT $4";

/// The per-source statement find_similar_content builds (for EXPLAIN).
const FIND_INNER_SQL: &str = "SELECT e.organization_id, e.entity_type, e.entity_id,
            1 - (embedding::vector(1536) <=> $1::vector(1536)) AS similarity
     FROM embeddings e
     WHERE e.organization_id = $2 AND e.dimension = 1536 AND e.model = $3
       AND e.entity_type = ANY ($4) AND NOT (e.entity_type = 'post' AND e.entity_id = $5)
     ORDER BY embedding::vector(1536) <=> $1::vector(1536)
     LIMIT $6";

/// Exact nearest neighbours: ordering by the plain distance, not the cast
/// the HNSW indexes are built on, so no index can serve it.
const FIND_EXACT_SQL: &str = "SELECT e.entity_id FROM embeddings e,
       (SELECT embedding FROM embeddings
        WHERE organization_id = $1 AND entity_type = 'post' AND entity_id = $2 AND model = $3) s
     WHERE e.organization_id = $1 AND e.dimension = 1536 AND e.model = $3
       AND e.entity_type = 'post' AND e.entity_id <> $2
     ORDER BY e.embedding <=> s.embedding
     LIMIT 10";
const SEARCH_EXACT_SQL: &str = "SELECT entity_id FROM embeddings
     WHERE organization_id = $1 AND dimension = 384 AND model = $3
     ORDER BY embedding <=> $2
     LIMIT 10";

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

fn find_request(q: &Query) -> FindSimilarContentRequest {
    FindSimilarContentRequest {
        organization_id: q.org.to_string(),
        entity: Some(EntityRef {
            entity_type: "post".into(),
            entity_id: q.post.to_string(),
        }),
        // Every neighbour counts: recall is about the top 10, not a cut-off.
        similarity_threshold: -1.0,
        max_results: K as u32,
        target_entity_types: Vec::new(),
    }
}

fn search_request(q: &Query) -> SearchByVectorRequest {
    SearchByVectorRequest {
        organization_id: q.org.to_string(),
        vector: q.vector.clone(),
        model: DOC_MODEL.into(),
        similarity_threshold: -1.0,
        max_results: K as u32,
        entity_types: Vec::new(),
    }
}

fn find_rpc(ctx: &Ctx, queries: &Arc<Vec<Arc<Query>>>) -> Op {
    let (queries, channels) = (queries.clone(), ctx.channels.clone());
    op(move |i| {
        let q = queries[i as usize % queries.len()].clone();
        let mut client = SimilarityServiceClient::new(crate::pick(&channels, i));
        async move {
            client
                .find_similar_content(request(find_request(&q), &q.auth))
                .await?;
            Ok(1)
        }
    })
}

fn find_sql(pool: &PgPool, queries: &Arc<Vec<Arc<Query>>>) -> Op {
    let (queries, pool) = (queries.clone(), pool.clone());
    op(move |i| {
        let q = queries[i as usize % queries.len()].clone();
        let pool = pool.clone();
        async move {
            sqlx::query(FIND_SQL)
                .bind("post")
                .bind(q.post)
                .bind(-1.0f64)
                .bind(K as i32)
                .bind(vec!["post".to_string()])
                .bind(q.org)
                .fetch_all(&pool)
                .await?;
            Ok(1)
        }
    })
}

fn find_exact(pool: &PgPool, queries: &Arc<Vec<Arc<Query>>>) -> Op {
    let (queries, pool) = (queries.clone(), pool.clone());
    op(move |i| {
        let q = queries[i as usize % queries.len()].clone();
        let pool = pool.clone();
        async move {
            exact_find(&pool, &q).await?;
            Ok(1)
        }
    })
}

async fn exact_find(pool: &PgPool, q: &Query) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(FIND_EXACT_SQL)
        .bind(q.org)
        .bind(q.post)
        .bind(POST_MODEL)
        .fetch_all(pool)
        .await?)
}

fn search_rpc(ctx: &Ctx, queries: &Arc<Vec<Arc<Query>>>) -> Op {
    let (queries, channels) = (queries.clone(), ctx.channels.clone());
    op(move |i| {
        let q = queries[i as usize % queries.len()].clone();
        let mut client = SimilarityServiceClient::new(crate::pick(&channels, i));
        async move {
            client
                .search_by_vector(request(search_request(&q), &q.auth))
                .await?;
            Ok(1)
        }
    })
}

/// SearchByVector's SQL: the store function the RPC calls
/// (`affinity::store::similarity::search`), through the benchmark's pool.
async fn search_statement(pool: &PgPool, q: &Query) -> Result<Vec<Uuid>> {
    use affinity::store::similarity::{search, IndexCast, IndexType, VectorQuery};
    // The schema indexes 384 dimensions as `vector` (vector_index_dimensions).
    let cast = IndexCast {
        dimension: DOC_DIM as i32,
        index_type: IndexType::Vector,
    };
    let hits = search(
        pool,
        &VectorQuery {
            organization_id: q.org,
            vector: &q.vector,
            cast,
            model: Some(DOC_MODEL),
            entity_types: None,
            threshold: -1.0,
            max_results: K as i64,
        },
    )
    .await?;
    Ok(hits.into_iter().map(|h| h.entity_id).collect())
}

fn search_sql(pool: &PgPool, queries: &Arc<Vec<Arc<Query>>>) -> Op {
    let (queries, pool) = (queries.clone(), pool.clone());
    op(move |i| {
        let q = queries[i as usize % queries.len()].clone();
        let pool = pool.clone();
        async move {
            search_statement(&pool, &q).await?;
            Ok(1)
        }
    })
}

fn search_exact(pool: &PgPool, queries: &Arc<Vec<Arc<Query>>>) -> Op {
    let (queries, pool) = (queries.clone(), pool.clone());
    op(move |i| {
        let q = queries[i as usize % queries.len()].clone();
        let pool = pool.clone();
        async move {
            exact_search(&pool, &q).await?;
            Ok(1)
        }
    })
}

async fn exact_search(pool: &PgPool, q: &Query) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(SEARCH_EXACT_SQL)
        .bind(q.org)
        .bind(Vector::from(q.vector.clone()))
        .bind(DOC_MODEL)
        .fetch_all(pool)
        .await?)
}

/// Share of the exact top 10 that the RPC returned, over the sample.
fn overlap(found: &[Uuid], exact: &[Uuid]) -> (usize, usize) {
    let found: HashSet<&Uuid> = found.iter().collect();
    (
        exact.iter().filter(|e| found.contains(e)).count(),
        exact.len(),
    )
}

async fn find_recall(ctx: &Ctx, queries: &[Arc<Query>]) -> Result<f64> {
    let mut client = SimilarityServiceClient::new(ctx.channels[0].clone());
    let (mut hit, mut total) = (0, 0);
    for q in queries.iter().take(RECALL_SAMPLE) {
        let r = client
            .find_similar_content(request(find_request(q), &q.auth))
            .await
            .context("FindSimilarContent for recall")?;
        let found = ids(r.into_inner().items.iter().map(|i| i.entity.as_ref()));
        let (h, t) = overlap(&found, &exact_find(&ctx.pool, q).await?);
        hit += h;
        total += t;
    }
    Ok(hit as f64 / total.max(1) as f64)
}

async fn search_recall(ctx: &Ctx, queries: &[Arc<Query>]) -> Result<f64> {
    let mut client = SimilarityServiceClient::new(ctx.channels[0].clone());
    let (mut hit, mut total) = (0, 0);
    for q in queries.iter().take(RECALL_SAMPLE) {
        let r = client
            .search_by_vector(request(search_request(q), &q.auth))
            .await
            .context("SearchByVector for recall")?;
        let found = ids(r.into_inner().items.iter().map(|i| i.entity.as_ref()));
        let (h, t) = overlap(&found, &exact_search(&ctx.pool, q).await?);
        hit += h;
        total += t;
    }
    Ok(hit as f64 / total.max(1) as f64)
}

fn ids<'a>(entities: impl Iterator<Item = Option<&'a EntityRef>>) -> Vec<Uuid> {
    entities
        .flatten()
        .filter_map(|e| Uuid::parse_str(&e.entity_id).ok())
        .collect()
}

async fn explain_search(pool: &PgPool, q: &Query) -> Result<String> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL hnsw.iterative_scan = strict_order")
        .execute(&mut *tx)
        .await?;
    let lines: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {SEARCH_SQL}"))
            .bind(q.org)
            .bind(DOC_DIM as i32)
            .bind(Vector::from(q.vector.clone()))
            .bind(K as i64)
            .bind(DOC_MODEL)
            .fetch_all(&mut *tx)
            .await
            .context("EXPLAIN of the SearchByVector statement")?;
    tx.rollback().await?;
    Ok(shorten_vectors(&lines.join("\n")))
}

async fn explain_find(pool: &PgPool, q: &Query) -> Result<String> {
    let source: Vector = sqlx::query_scalar(
        "SELECT embedding FROM embeddings
         WHERE organization_id = $1 AND entity_type = 'post' AND entity_id = $2 AND model = $3",
    )
    .bind(q.org)
    .bind(q.post)
    .bind(POST_MODEL)
    .fetch_one(pool)
    .await
    .context("reading a source embedding")?;
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL hnsw.iterative_scan = strict_order")
        .execute(&mut *tx)
        .await?;
    let lines: Vec<String> =
        sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, BUFFERS) {FIND_INNER_SQL}"))
            .bind(source)
            .bind(q.org)
            .bind(POST_MODEL)
            .bind(vec!["post".to_string()])
            .bind(q.post)
            .bind(K as i64)
            .fetch_all(&mut *tx)
            .await
            .context("EXPLAIN of find_similar_content's statement")?;
    tx.rollback().await?;
    Ok(shorten_vectors(&lines.join("\n")))
}

/// Plans print bound vectors in full: keep the plan, drop the numbers.
fn shorten_vectors(plan: &str) -> String {
    let mut out = String::with_capacity(plan.len().min(1 << 16));
    let mut rest = plan;
    while let Some(start) = rest.find('[') {
        let Some(len) = rest[start..].find(']') else {
            break;
        };
        out.push_str(&rest[..start]);
        if len > 40 {
            out.push_str("[…]");
        } else {
            out.push_str(&rest[start..=start + len]);
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out
}
