//! Every RPC of the contract on a real Citus cluster (a coordinator and
//! two workers), the schema distributed by `affinity distribute`.
mod common;

use affinity::proto;
use common::citus::distributed_server;
use common::rpcs::every_rpc_answers;
use common::server::authed;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn on_citus_every_rpc_answers() {
    let Some(s) = distributed_server().await else {
        return;
    };
    every_rpc_answers(&s).await;
    s.shutdown().await.expect("a clean stop");
}

/// pgvector's scan settings must reach the worker that runs the shard's
/// query: with its defaults there (a candidate list of 40, no iterative
/// scan) an HNSW scan filtered to half the rows stops at about 20.
#[tokio::test(flavor = "multi_thread")]
async fn on_citus_searches_filtered_to_half_the_rows_still_return_max_results() {
    let Some(s) = distributed_server().await else {
        return;
    };
    let t = s.new_tenant().await;
    let pool = &s.db.pool;
    sqlx::query(
        "INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
         SELECT $1, CASE WHEN i % 2 = 0 THEN 'post' ELSE 'comment' END, gen_random_uuid(), 'm', 384,
                ARRAY(SELECT random() - 0.5 FROM generate_series(1, 384) WHERE i IS NOT NULL)::vector
         FROM generate_series(1, 10000) i",
    )
    .bind(t.org)
    .execute(pool)
    .await
    .expect("10,000 vectors, half of them posts");
    sqlx::raw_sql("ANALYZE embeddings")
        .execute(pool)
        .await
        .expect("ANALYZE");
    let (source, query): (Uuid, pgvector::Vector) = sqlx::query_as(
        "SELECT entity_id, embedding FROM embeddings
         WHERE organization_id = $1 AND entity_type = 'comment' LIMIT 1",
    )
    .bind(t.org)
    .fetch_one(pool)
    .await
    .expect("a comment");
    let (org, posts) = (t.org.to_string(), vec!["post".to_string()]);
    let mut sim = s.similarity();

    let similar = sim
        .find_similar_content(authed(
            proto::FindSimilarContentRequest {
                organization_id: org.clone(),
                entity: Some(proto::EntityRef {
                    entity_type: "comment".into(),
                    entity_id: source.to_string(),
                }),
                similarity_threshold: -1.0,
                max_results: 100,
                target_entity_types: posts.clone(),
            },
            &t.token,
        ))
        .await
        .expect("FindSimilarContent")
        .into_inner();
    max_results_of_posts("FindSimilarContent", &similar.items);

    let by_vector = sim
        .search_by_vector(authed(
            proto::SearchByVectorRequest {
                organization_id: org,
                vector: query.to_vec(),
                similarity_threshold: -1.0,
                max_results: 100,
                entity_types: posts,
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("SearchByVector")
        .into_inner();
    max_results_of_posts("SearchByVector", &by_vector.items);
    s.shutdown().await.expect("a clean stop");
}

/// `items` are 100 posts: max_results, not fewer, and only the type asked.
fn max_results_of_posts(rpc: &str, items: &[proto::SimilarItem]) {
    let types: Vec<&str> = items
        .iter()
        .filter_map(|i| i.entity.as_ref().map(|e| e.entity_type.as_str()))
        .collect();
    assert!(types.iter().all(|t| *t == "post"), "{rpc}: {types:?}");
    assert_eq!(types.len(), 100, "{rpc}: max_results, not fewer");
}
