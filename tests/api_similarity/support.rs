//! Helpers shared by the modules: vectors, records, the four RPCs' calls and reading rows back.

use std::collections::HashSet;

use crate::common::server::{authed, user_token, Tenant, TestServer};
use affinity::proto::{self, Role};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tonic::Status;
use uuid::Uuid;

// ----------------------------------------------------------------- helpers

pub(crate) fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub(crate) fn random_vec(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `base` plus uniform noise of amplitude `noise` per component.
pub(crate) fn near(rng: &mut ChaCha8Rng, base: &[f32], noise: f32) -> Vec<f32> {
    base.iter()
        .map(|x| x + rng.random_range(-noise..=noise))
        .collect()
}

pub(crate) fn eref(entity_type: &str, id: Uuid) -> proto::EntityRef {
    proto::EntityRef {
        entity_type: entity_type.to_string(),
        entity_id: id.to_string(),
    }
}

pub(crate) fn rec(
    entity_type: &str,
    id: Uuid,
    model: &str,
    vector: &[f32],
) -> proto::EmbeddingRecord {
    proto::EmbeddingRecord {
        entity: Some(eref(entity_type, id)),
        vector: vector.to_vec(),
        model: model.to_string(),
    }
}

/// (entity_type, entity_id, similarity) of each item, in order.
pub(crate) type Items = Vec<(String, Uuid, f32)>;

fn items(items: Vec<proto::SimilarItem>) -> Items {
    items
        .into_iter()
        .map(|i| {
            let e = i.entity.expect("an item without its entity");
            (e.entity_type, e.entity_id.parse().unwrap(), i.similarity)
        })
        .collect()
}

pub(crate) async fn upsert(
    s: &TestServer,
    token: &str,
    org: Uuid,
    embeddings: Vec<proto::EmbeddingRecord>,
) -> Result<u32, Status> {
    s.similarity()
        .upsert_embeddings(authed(
            proto::UpsertEmbeddingsRequest {
                organization_id: org.to_string(),
                embeddings,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().upserted)
}

pub(crate) async fn delete(
    s: &TestServer,
    token: &str,
    org: Uuid,
    entities: Vec<proto::EntityRef>,
) -> Result<u32, Status> {
    s.similarity()
        .delete_embeddings(authed(
            proto::DeleteEmbeddingsRequest {
                organization_id: org.to_string(),
                entities,
            },
            token,
        ))
        .await
        .map(|r| r.into_inner().deleted)
}

pub(crate) fn search_req(org: Uuid, vector: &[f32]) -> proto::SearchByVectorRequest {
    proto::SearchByVectorRequest {
        organization_id: org.to_string(),
        vector: vector.to_vec(),
        model: String::new(),
        similarity_threshold: -1.0,
        max_results: 0,
        entity_types: vec![],
    }
}

pub(crate) async fn search(
    s: &TestServer,
    token: &str,
    req: proto::SearchByVectorRequest,
) -> Result<Items, Status> {
    s.similarity()
        .search_by_vector(authed(req, token))
        .await
        .map(|r| items(r.into_inner().items))
}

pub(crate) fn similar_req(
    org: Uuid,
    entity_type: &str,
    id: Uuid,
) -> proto::FindSimilarContentRequest {
    proto::FindSimilarContentRequest {
        organization_id: org.to_string(),
        entity: Some(eref(entity_type, id)),
        similarity_threshold: -1.0,
        max_results: 0,
        target_entity_types: vec![],
    }
}

pub(crate) async fn similar(
    s: &TestServer,
    token: &str,
    req: proto::FindSimilarContentRequest,
) -> Result<Items, Status> {
    s.similarity()
        .find_similar_content(authed(req, token))
        .await
        .map(|r| items(r.into_inner().items))
}

/// A new user with `role` in `org`, and their token.
pub(crate) async fn member(s: &TestServer, org: Uuid, role: Role) -> String {
    let user = Uuid::new_v4();
    s.add_member(org, user, role).await;
    user_token(user)
}

/// Rows of `embeddings` in `org`.
pub(crate) async fn count_rows(s: &TestServer, org: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE organization_id = $1")
        .bind(org)
        .fetch_one(&s.db.pool)
        .await
        .unwrap()
}

/// `org` has `n` rows in `embeddings`, for the reason `why`.
pub(crate) async fn assert_rows(s: &TestServer, org: Uuid, n: i64, why: &str) {
    assert_eq!(count_rows(s, org).await, n, "{why}");
}

/// The stored vector of (org, type, id, model), if any.
pub(crate) async fn stored(
    s: &TestServer,
    org: Uuid,
    et: &str,
    id: Uuid,
    model: &str,
) -> Option<Vec<f32>> {
    let v: Option<pgvector::Vector> = sqlx::query_scalar(
        "SELECT embedding FROM embeddings
         WHERE organization_id = $1 AND entity_type = $2 AND entity_id = $3 AND model = $4",
    )
    .bind(org)
    .bind(et)
    .bind(id)
    .bind(model)
    .fetch_optional(&s.db.pool)
    .await
    .unwrap();
    v.map(|v| v.to_vec())
}

pub(crate) fn assert_sorted(items: &Items) {
    for w in items.windows(2) {
        let ok = w[0].2 > w[1].2 || (w[0].2 == w[1].2 && (&w[0].0, w[0].1) <= (&w[1].0, w[1].1));
        assert!(ok, "not most similar first (ties by type, id): {w:?}");
    }
}

pub(crate) fn ids(items: &Items) -> HashSet<Uuid> {
    items.iter().map(|i| i.1).collect()
}

/// A server and a new tenant whose organization holds `n` posts of one
/// random vector under model m: the server, the tenant, the first post's id
/// and the vector.
pub(crate) async fn server_with_posts(seed: u64, n: usize) -> (TestServer, Tenant, Uuid, Vec<f32>) {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut r = rng(seed);
    let v = random_vec(&mut r, 384);
    let a = Uuid::new_v4();
    upsert(&s, &t.token, t.org, vec![rec("post", a, "m", &v)])
        .await
        .unwrap();
    for _ in 1..n {
        upsert(
            &s,
            &t.token,
            t.org,
            vec![rec("post", Uuid::new_v4(), "m", &v)],
        )
        .await
        .unwrap();
    }
    (s, t, a, v)
}
