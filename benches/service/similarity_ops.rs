//! The operations driven: each RPC, the same SQL through the pool, and the exact scans.

use std::sync::Arc;

use affinity::proto::{
    similarity_service_client::SimilarityServiceClient, EntityRef, FindSimilarContentRequest,
    SearchByVectorRequest,
};
use anyhow::Result;
use pgvector::Vector;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Query, K};
use crate::drive::{op, Op};
use crate::env::request;
use crate::world::{DOC_DIM, DOC_MODEL, POST_MODEL};
use crate::Ctx;

const FIND_SQL: &str = "SELECT organization_id, entity_type, entity_id, similarity
     FROM find_similar_content($1, $2, $3, $4, $5, $6)";

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

pub(super) fn find_request(q: &Query) -> FindSimilarContentRequest {
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

pub(super) fn search_request(q: &Query) -> SearchByVectorRequest {
    SearchByVectorRequest {
        organization_id: q.org.to_string(),
        vector: q.vector.clone(),
        model: DOC_MODEL.into(),
        similarity_threshold: -1.0,
        max_results: K as u32,
        entity_types: Vec::new(),
    }
}

pub(super) fn find_rpc(ctx: &Ctx, queries: &Arc<Vec<Arc<Query>>>) -> Op {
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

pub(super) fn find_sql(pool: &PgPool, queries: &Arc<Vec<Arc<Query>>>) -> Op {
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

pub(super) fn find_exact(pool: &PgPool, queries: &Arc<Vec<Arc<Query>>>) -> Op {
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

pub(super) async fn exact_find(pool: &PgPool, q: &Query) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(FIND_EXACT_SQL)
        .bind(q.org)
        .bind(q.post)
        .bind(POST_MODEL)
        .fetch_all(pool)
        .await?)
}

pub(super) fn search_rpc(ctx: &Ctx, queries: &Arc<Vec<Arc<Query>>>) -> Op {
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

pub(super) fn search_sql(pool: &PgPool, queries: &Arc<Vec<Arc<Query>>>) -> Op {
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

pub(super) fn search_exact(pool: &PgPool, queries: &Arc<Vec<Arc<Query>>>) -> Op {
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

pub(super) async fn exact_search(pool: &PgPool, q: &Query) -> Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar(SEARCH_EXACT_SQL)
        .bind(q.org)
        .bind(Vector::from(q.vector.clone()))
        .bind(DOC_MODEL)
        .fetch_all(pool)
        .await?)
}
