//! Recall@10 of the RPCs against an exact scan, and the plans of their statements.

use std::collections::HashSet;
use std::sync::Arc;

use affinity::proto::{similarity_service_client::SimilarityServiceClient, EntityRef};
use anyhow::{Context, Result};
use pgvector::Vector;
use sqlx::PgPool;
use uuid::Uuid;

use super::ops::{exact_find, exact_search, find_request, search_request};
use super::{Query, K, RECALL_SAMPLE};
use crate::env::request;
use crate::world::{DOC_DIM, DOC_MODEL, POST_MODEL};
use crate::Ctx;

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

/// Share of the exact top 10 that the RPC returned, over the sample.
fn overlap(found: &[Uuid], exact: &[Uuid]) -> (usize, usize) {
    let found: HashSet<&Uuid> = found.iter().collect();
    (
        exact.iter().filter(|e| found.contains(e)).count(),
        exact.len(),
    )
}

pub(super) async fn find_recall(ctx: &Ctx, queries: &[Arc<Query>]) -> Result<f64> {
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

pub(super) async fn search_recall(ctx: &Ctx, queries: &[Arc<Query>]) -> Result<f64> {
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

pub(super) async fn explain_search(pool: &PgPool, q: &Query) -> Result<String> {
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

pub(super) async fn explain_find(pool: &PgPool, q: &Query) -> Result<String> {
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
