//! The deployment's smallest HNSW candidate list (`AFFINITY_HNSW_EF_SEARCH`,
//! `--hnsw-ef-search`): a service started with a shorter one walks less of
//! the same index, so it finds fewer of the true nearest neighbours. One
//! test in a binary of its own: the floor is process-wide, set when a
//! server starts.
mod common;

use affinity::proto;
use common::server::{authed, service_token, TestServer};
use common::{random_vectors_1536, TestDb};
use uuid::Uuid;

const ROWS: i64 = 10_000;
const QUERIES: usize = 20;
const K: usize = 10;

#[tokio::test(flavor = "multi_thread")]
async fn a_shorter_candidate_list_floor_finds_fewer_true_neighbours_on_the_same_index() {
    let db = TestDb::migrated().await;
    let org = Uuid::new_v4();
    // Random 1536-dimensional vectors (hard for a graph: a short list
    // shows at once), the index built once after them; one connection, for the seed.
    let mut conn = db.pool.acquire().await.expect("a connection");
    sqlx::raw_sql("SELECT drop_embedding_indexes(); SELECT setseed(0.42)")
        .execute(&mut *conn)
        .await
        .expect("indexes dropped");
    random_vectors_1536(&mut conn, org, ROWS).await;
    sqlx::raw_sql("SELECT create_embedding_indexes(); ANALYZE embeddings")
        .execute(&mut *conn)
        .await
        .expect("indexes built");

    // Each query's true 10 nearest: `embedding <=> $2` is not the index's
    // expression, so this is an exact scan.
    let mut queries = Vec::new();
    for q in 0..QUERIES {
        let vector: Vec<f32> = sqlx::query_scalar(
            "SELECT array_agg((random() - 0.5)::real) FROM generate_series(1, 1536) WHERE $1 >= 0",
        )
        .bind(q as i32)
        .fetch_one(&mut *conn)
        .await
        .expect("a query vector");
        let truth: Vec<Uuid> = sqlx::query_scalar(
            "SELECT entity_id FROM embeddings WHERE organization_id = $1
             ORDER BY embedding <=> $2::vector LIMIT 10",
        )
        .bind(org)
        .bind(pgvector::Vector::from(vector.clone()))
        .fetch_all(&mut *conn)
        .await
        .expect("the exact neighbours");
        queries.push((vector, truth));
    }
    drop(conn);

    let short = TestServer::start_with(db, |c| c.hnsw_ef_search = K as i64).await;
    let short_recall = recall(&short, org, &queries).await;
    let db = short.stop_keeping_db().await;
    let default = TestServer::start_on(db).await;
    let default_recall = recall(&default, org, &queries).await;

    // Uniform random vectors are the graph's worst case: what matters is
    // the gap between the two lists on the same index.
    assert!(
        default_recall - short_recall >= 0.2,
        "recall@10 with the default floor {default_recall:.3}, with a floor of {K} {short_recall:.3}"
    );
}

/// The mean share of each query's true 10 nearest that SearchByVector returns.
async fn recall(s: &TestServer, org: Uuid, queries: &[(Vec<f32>, Vec<Uuid>)]) -> f64 {
    let mut found = 0;
    for (vector, truth) in queries {
        let items = s
            .similarity()
            .search_by_vector(authed(
                proto::SearchByVectorRequest {
                    organization_id: org.to_string(),
                    vector: vector.clone(),
                    model: String::new(),
                    similarity_threshold: -1.0,
                    max_results: K as u32,
                    entity_types: vec![],
                },
                &service_token(),
            ))
            .await
            .expect("SearchByVector")
            .into_inner()
            .items;
        found += items
            .iter()
            .filter_map(|i| i.entity.as_ref())
            .filter(|e| truth.iter().any(|t| t.to_string() == e.entity_id))
            .count();
    }
    found as f64 / (queries.len() * K) as f64
}
