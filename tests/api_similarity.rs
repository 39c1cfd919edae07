//! SimilarityService through a real client, server and database: the four
//! RPCs, their error codes, isolation between organizations, all-or-none
//! upserts, and FindSimilarContent agreeing with the schema's
//! `find_similar_content`.
mod common;

use std::collections::HashSet;

use affinity::proto::{self, Role};
use affinity::store::similarity as store;
use common::server::{authed, code, service_token, user_token, Tenant, TestServer};
use common::{cosine, random_vectors_1536, TestDb};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tonic::{Code, Status};
use uuid::Uuid;

// ----------------------------------------------------------------- helpers

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn random_vec(rng: &mut ChaCha8Rng, dim: usize) -> Vec<f32> {
    (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// `base` plus uniform noise of amplitude `noise` per component.
fn near(rng: &mut ChaCha8Rng, base: &[f32], noise: f32) -> Vec<f32> {
    base.iter()
        .map(|x| x + rng.random_range(-noise..=noise))
        .collect()
}

fn eref(entity_type: &str, id: Uuid) -> proto::EntityRef {
    proto::EntityRef {
        entity_type: entity_type.to_string(),
        entity_id: id.to_string(),
    }
}

fn rec(entity_type: &str, id: Uuid, model: &str, vector: &[f32]) -> proto::EmbeddingRecord {
    proto::EmbeddingRecord {
        entity: Some(eref(entity_type, id)),
        vector: vector.to_vec(),
        model: model.to_string(),
    }
}

/// `v` with `x` at `i`.
fn spoilt(v: &[f32], i: usize, x: f32) -> Vec<f32> {
    let mut v = v.to_vec();
    v[i] = x;
    v
}

/// A named way to spoil a valid request.
type Spoiler<'a, T> = (&'a str, Box<dyn Fn(&mut T) + 'a>);

/// (entity_type, entity_id, similarity) of each item, in order.
type Items = Vec<(String, Uuid, f32)>;

fn items(items: Vec<proto::SimilarItem>) -> Items {
    items
        .into_iter()
        .map(|i| {
            let e = i.entity.expect("an item without its entity");
            (e.entity_type, e.entity_id.parse().unwrap(), i.similarity)
        })
        .collect()
}

async fn upsert(
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

async fn delete(
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

fn search_req(org: Uuid, vector: &[f32]) -> proto::SearchByVectorRequest {
    proto::SearchByVectorRequest {
        organization_id: org.to_string(),
        vector: vector.to_vec(),
        model: String::new(),
        similarity_threshold: -1.0,
        max_results: 0,
        entity_types: vec![],
    }
}

async fn search(
    s: &TestServer,
    token: &str,
    req: proto::SearchByVectorRequest,
) -> Result<Items, Status> {
    s.similarity()
        .search_by_vector(authed(req, token))
        .await
        .map(|r| items(r.into_inner().items))
}

fn similar_req(org: Uuid, entity_type: &str, id: Uuid) -> proto::FindSimilarContentRequest {
    proto::FindSimilarContentRequest {
        organization_id: org.to_string(),
        entity: Some(eref(entity_type, id)),
        similarity_threshold: -1.0,
        max_results: 0,
        target_entity_types: vec![],
    }
}

async fn similar(
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
async fn member(s: &TestServer, org: Uuid, role: Role) -> String {
    let user = Uuid::new_v4();
    s.add_member(org, user, role).await;
    user_token(user)
}

/// Rows of `embeddings` in `org`.
async fn count_rows(s: &TestServer, org: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE organization_id = $1")
        .bind(org)
        .fetch_one(&s.db.pool)
        .await
        .unwrap()
}

/// `org` has `n` rows in `embeddings`, for the reason `why`.
async fn assert_rows(s: &TestServer, org: Uuid, n: i64, why: &str) {
    assert_eq!(count_rows(s, org).await, n, "{why}");
}

/// The stored vector of (org, type, id, model), if any.
async fn stored(s: &TestServer, org: Uuid, et: &str, id: Uuid, model: &str) -> Option<Vec<f32>> {
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

fn assert_sorted(items: &Items) {
    for w in items.windows(2) {
        let ok = w[0].2 > w[1].2 || (w[0].2 == w[1].2 && (&w[0].0, w[0].1) <= (&w[1].0, w[1].1));
        assert!(ok, "not most similar first (ties by type, id): {w:?}");
    }
}

fn ids(items: &Items) -> HashSet<Uuid> {
    items.iter().map(|i| i.1).collect()
}

// ------------------------------------------------------------- happy paths

/// 20 posts and 5 chat messages of random 384-dimension vectors under
/// model m1, upserted into a new tenant's organization on a new server.
struct PostsAndChats {
    t: Tenant,
    posts: Vec<(Uuid, Vec<f32>)>,
    chats: Vec<(Uuid, Vec<f32>)>,
}

impl PostsAndChats {
    async fn start() -> (TestServer, PostsAndChats) {
        let s = TestServer::start().await;
        let r = &mut rng(1);
        let t = s.new_tenant().await;
        let posts: Vec<(Uuid, Vec<f32>)> = (0..20)
            .map(|_| (Uuid::new_v4(), random_vec(r, 384)))
            .collect();
        let chats: Vec<(Uuid, Vec<f32>)> = (0..5)
            .map(|_| (Uuid::new_v4(), random_vec(r, 384)))
            .collect();
        let mut batch: Vec<_> = posts
            .iter()
            .map(|(id, v)| rec("post", *id, "m1", v))
            .collect();
        batch.extend(
            chats
                .iter()
                .map(|(id, v)| rec("chat_message", *id, "m1", v)),
        );
        assert_eq!(upsert(&s, &t.token, t.org, batch).await.unwrap(), 25);
        (s, PostsAndChats { t, posts, chats })
    }

    /// Every item: type, id, vector.
    fn all(&self) -> Vec<(&str, Uuid, &Vec<f32>)> {
        self.posts
            .iter()
            .map(|(id, v)| ("post", *id, v))
            .chain(self.chats.iter().map(|(id, v)| ("chat_message", *id, v)))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upserted_vectors_are_stored_as_sent_and_searched_nearest_first_by_cosine_similarity() {
    let (s, data) = PostsAndChats::start().await;
    let (t, posts) = (&data.t, &data.posts);
    assert_eq!(count_rows(&s, t.org).await, 25);
    assert_eq!(
        stored(&s, t.org, "post", posts[0].0, "m1").await.unwrap(),
        posts[0].1,
        "the vector is stored as sent"
    );

    // Nearest first; similarities are cosine similarities; default 10 results.
    let q = &posts[0].1;
    let got = search(&s, &t.token, search_req(t.org, q)).await.unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!((got[0].0.as_str(), got[0].1), ("post", posts[0].0));
    assert!((got[0].2 - 1.0).abs() < 1e-5, "{}", got[0].2);
    assert_sorted(&got);
    let all = data.all();
    let mut exact: Vec<(f64, Uuid)> = all.iter().map(|(_, id, v)| (cosine(q, v), *id)).collect();
    exact.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (i, (_, id, sim)) in got.iter().enumerate() {
        let want = all.iter().find(|a| a.1 == *id).unwrap();
        assert!((f64::from(*sim) - cosine(q, want.2)).abs() < 1e-5);
        assert_eq!(*id, exact[i].1, "exact order on a small set");
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn search_by_vector_honours_max_results_the_threshold_and_entity_types() {
    let (s, data) = PostsAndChats::start().await;
    let (t, posts) = (&data.t, &data.posts);
    let all = data.all();
    let q = &posts[0].1;

    // max_results.
    let mut req = search_req(t.org, q);
    req.max_results = 3;
    assert_eq!(search(&s, &t.token, req).await.unwrap().len(), 3);
    let mut req = search_req(t.org, q);
    req.max_results = 1000;
    assert_eq!(search(&s, &t.token, req).await.unwrap().len(), 25);

    // Threshold: only the item itself is this similar.
    let mut req = search_req(t.org, q);
    req.similarity_threshold = 0.99;
    let got = search(&s, &t.token, req).await.unwrap();
    assert_eq!(ids(&got), HashSet::from([posts[0].0]));
    // Threshold 0 (the default) leaves out negative similarities.
    let mut req = search_req(t.org, q);
    req.similarity_threshold = 0.0;
    req.max_results = 1000;
    let got = search(&s, &t.token, req).await.unwrap();
    let positive = all.iter().filter(|a| cosine(q, a.2) >= 0.0).count();
    assert_eq!(got.len(), positive);
    assert!(got.iter().all(|i| i.2 >= 0.0));

    // entity_types filter.
    let mut req = search_req(t.org, q);
    req.entity_types = vec!["chat_message".into()];
    let got = search(&s, &t.token, req).await.unwrap();
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|i| i.0 == "chat_message"));
    let mut req = search_req(t.org, q);
    req.entity_types = vec!["ai_context".into()];
    assert!(search(&s, &t.token, req).await.unwrap().is_empty());
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn search_by_vector_keeps_models_apart_and_answers_each_item_once_with_its_best_model() {
    let (s, PostsAndChats { t, posts, chats }) = PostsAndChats::start().await;
    let q = &posts[0].1;

    // Models are kept apart: the same entities under model m2 with other vectors.
    let mut r = rng(13);
    let other: Vec<Vec<f32>> = posts.iter().map(|_| random_vec(&mut r, 384)).collect();
    let batch = posts
        .iter()
        .zip(&other)
        .map(|((id, _), v)| rec("post", *id, "m2", v))
        .collect();
    assert_eq!(upsert(&s, &t.token, t.org, batch).await.unwrap(), 20);
    let mut req = search_req(t.org, q);
    req.model = "m2".into();
    req.max_results = 1000;
    let got = search(&s, &t.token, req).await.unwrap();
    assert_eq!(got.len(), 20, "only m2's embeddings");
    let p0 = got.iter().find(|i| i.1 == posts[0].0).unwrap();
    assert!(
        (f64::from(p0.2) - cosine(q, &other[0])).abs() < 1e-5,
        "m2's vector, not m1's"
    );
    let mut req = search_req(t.org, q);
    req.model = "m1".into();
    req.max_results = 1000;
    assert_eq!(search(&s, &t.token, req).await.unwrap().len(), 25);
    let mut req = search_req(t.org, q);
    req.model = "nobody".into();
    assert!(search(&s, &t.token, req).await.unwrap().is_empty());
    // Any model: each item once, with its best similarity.
    let mut req = search_req(t.org, q);
    req.max_results = 1000;
    let got = search(&s, &t.token, req).await.unwrap();
    assert_eq!(got.len(), 25, "an item with two models appears once");
    assert_eq!(got[0].1, posts[0].0);
    assert!((got[0].2 - 1.0).abs() < 1e-5);
    for (_, id, sim) in &got {
        let best = [posts.iter().position(|p| p.0 == *id)]
            .into_iter()
            .flatten()
            .map(|i| cosine(q, &posts[i].1).max(cosine(q, &other[i])))
            .chain(chats.iter().filter(|c| c.0 == *id).map(|c| cosine(q, &c.1)))
            .next()
            .unwrap();
        assert!((f64::from(*sim) - best).abs() < 1e-5);
    }
    // With max_results below the number of rows, still distinct items.
    let mut req = search_req(t.org, q);
    req.max_results = 15;
    let got = search(&s, &t.token, req).await.unwrap();
    assert_eq!(got.len(), 15);
    assert_eq!(ids(&got).len(), 15);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn search_by_vector_ranks_identical_vectors_by_entity_type_then_entity_id() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    // Identical vectors: four posts, and a comment with the first post's id.
    let tie = random_vec(&mut rng(1), 384);
    let mut tied: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let batch = tied
        .iter()
        .map(|id| rec("post", *id, "ties", &tie))
        .chain([rec("comment", tied[0], "ties", &tie)])
        .collect();
    upsert(&s, &t.token, t.org, batch).await.unwrap();
    let mut req = search_req(t.org, &tie);
    req.model = "ties".into();
    let got = search(&s, &t.token, req).await.unwrap();
    let comment = tied[0];
    tied.sort();
    let want: Vec<(String, Uuid)> = [("comment".to_string(), comment)]
        .into_iter()
        .chain(tied.iter().map(|id| ("post".to_string(), *id)))
        .collect();
    assert_eq!(
        got.iter().map(|i| (i.0.clone(), i.1)).collect::<Vec<_>>(),
        want
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_supported_dimension_up_to_halfvec_3072_is_stored_exactly_and_searched_only_within_itself(
) {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut r = rng(2);
    for dim in [384usize, 768, 1024, 1536, 3072] {
        let model = format!("model-{dim}");
        let items_: Vec<(Uuid, Vec<f32>)> = (0..12)
            .map(|_| (Uuid::new_v4(), random_vec(&mut r, dim)))
            .collect();
        let batch = items_
            .iter()
            .map(|(id, v)| rec("post", *id, &model, v))
            .collect();
        assert_eq!(upsert(&s, &t.token, t.org, batch).await.unwrap(), 12);
        // Stored at full precision, whatever the index type.
        assert_eq!(
            stored(&s, t.org, "post", items_[3].0, &model)
                .await
                .unwrap(),
            items_[3].1
        );
        let dimension: i32 = sqlx::query_scalar(
            "SELECT dimension FROM embeddings WHERE organization_id = $1 AND entity_id = $2",
        )
        .bind(t.org)
        .bind(items_[3].0)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
        assert_eq!(dimension as usize, dim);
        // halfvec compares at half precision.
        let tol = if dim == 3072 { 2e-3 } else { 1e-5 };
        for (id, v) in items_.iter().take(4) {
            let mut req = search_req(t.org, v);
            req.model = model.clone();
            req.max_results = 5;
            let got = search(&s, &t.token, req).await.unwrap();
            assert_eq!(got.len(), 5, "dimension {dim}");
            assert_eq!(got[0].1, *id, "dimension {dim}: the vector itself first");
            assert!(
                (got[0].2 - 1.0).abs() < tol as f32,
                "dimension {dim}: {}",
                got[0].2
            );
            assert_sorted(&got);
            for (_, other, sim) in &got {
                let ov = &items_.iter().find(|i| i.0 == *other).unwrap().1;
                assert!(
                    (f64::from(*sim) - cosine(v, ov)).abs() < tol,
                    "dimension {dim}"
                );
            }
        }
        // Searching one dimension never returns another's items.
        let mut req = search_req(t.org, &items_[0].1);
        req.max_results = 1000;
        let got = search(&s, &t.token, req).await.unwrap();
        assert_eq!(ids(&got), items_.iter().map(|i| i.0).collect());
    }
    s.shutdown().await.unwrap();
}

/// A source post and its neighbours under model m1, in a new tenant's
/// organization: posts at growing distances from it, chat messages and an
/// AI context entry near it too, and a post with only another model's
/// embedding (m2, the source's vector). Read by a viewer.
struct Neighbourhood {
    t: Tenant,
    viewer: String,
    base: Vec<f32>,
    source: Uuid,
    posts: Vec<(Uuid, Vec<f32>)>,
    chats: Vec<(Uuid, Vec<f32>)>,
    ctx: (Uuid, Vec<f32>),
    other_model_only: Uuid,
}

impl Neighbourhood {
    async fn upsert(s: &TestServer) -> Neighbourhood {
        let t = s.new_tenant().await;
        let viewer = member(s, t.org, Role::Viewer).await;
        let mut r = rng(3);
        let base = random_vec(&mut r, 384);
        let source = Uuid::new_v4();
        let posts: Vec<(Uuid, Vec<f32>)> = (0..15)
            .map(|i| (Uuid::new_v4(), near(&mut r, &base, 0.05 * (i + 1) as f32)))
            .collect();
        let chats: Vec<(Uuid, Vec<f32>)> = (0..4)
            .map(|_| (Uuid::new_v4(), near(&mut r, &base, 0.1)))
            .collect();
        let ctx = (Uuid::new_v4(), near(&mut r, &base, 0.1));
        let other_model_only = Uuid::new_v4();
        let mut batch = vec![rec("post", source, "m1", &base)];
        batch.extend(posts.iter().map(|(id, v)| rec("post", *id, "m1", v)));
        batch.extend(
            chats
                .iter()
                .map(|(id, v)| rec("chat_message", *id, "m1", v)),
        );
        batch.push(rec("ai_context", ctx.0, "m1", &ctx.1));
        batch.push(rec("post", other_model_only, "m2", &base));
        upsert(s, &t.token, t.org, batch).await.unwrap();
        Neighbourhood {
            t,
            viewer,
            base,
            source,
            posts,
            chats,
            ctx,
            other_model_only,
        }
    }

    /// The posts' similarities to the source, most similar first.
    fn exact(&self) -> Vec<(f64, Uuid)> {
        let mut exact: Vec<(f64, Uuid)> = self
            .posts
            .iter()
            .map(|(id, v)| (cosine(&self.base, v), *id))
            .collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        exact
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn find_similar_content_answers_ten_of_the_sources_type_nearest_first_without_the_source_or_other_models(
) {
    let s = TestServer::start().await;
    let n = Neighbourhood::upsert(&s).await;
    let got = similar(&s, &n.viewer, similar_req(n.t.org, "post", n.source))
        .await
        .unwrap();
    assert_eq!(got.len(), 10);
    assert!(got.iter().all(|i| i.0 == "post"));
    assert!(
        !ids(&got).contains(&n.source),
        "the source is never returned"
    );
    assert!(
        !ids(&got).contains(&n.other_model_only),
        "another model is not compared"
    );
    assert_sorted(&got);
    for (_, id, sim) in &got {
        let v = &n.posts.iter().find(|p| p.0 == *id).unwrap().1;
        assert!((f64::from(*sim) - cosine(&n.base, v)).abs() < 1e-5);
    }
    assert_eq!(
        got.iter().map(|i| i.1).collect::<Vec<_>>(),
        n.exact().iter().take(10).map(|e| e.1).collect::<Vec<_>>()
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn find_similar_content_honours_max_results_and_the_threshold() {
    let s = TestServer::start().await;
    let n = Neighbourhood::upsert(&s).await;
    let (t, viewer, source) = (&n.t, &n.viewer, n.source);

    // max_results.
    let mut req = similar_req(t.org, "post", source);
    req.max_results = 1000;
    assert_eq!(similar(&s, viewer, req).await.unwrap().len(), 15);
    let mut req = similar_req(t.org, "post", source);
    req.max_results = 2;
    assert_eq!(similar(&s, viewer, req).await.unwrap().len(), 2);

    // Threshold.
    let exact = n.exact();
    let cut = exact[5].0 as f32;
    let mut req = similar_req(t.org, "post", source);
    req.similarity_threshold = cut;
    req.max_results = 1000;
    let got = similar(&s, viewer, req).await.unwrap();
    assert!(got.iter().all(|i| i.2 >= cut - 1e-6));
    let want = exact.iter().filter(|e| e.0 >= f64::from(cut)).count();
    assert!((5..=6).contains(&got.len()) && (got.len() as i64 - want as i64).abs() <= 1);
    let mut req = similar_req(t.org, "post", source);
    req.similarity_threshold = 1.0;
    assert!(similar(&s, viewer, req).await.unwrap().is_empty());
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn find_similar_content_answers_the_target_types_asked_for_else_the_sources_own() {
    let s = TestServer::start().await;
    let n = Neighbourhood::upsert(&s).await;
    let (t, viewer, source, chats) = (&n.t, &n.viewer, n.source, &n.chats);

    let mut req = similar_req(t.org, "post", source);
    req.target_entity_types = vec!["chat_message".into(), "ai_context".into()];
    let got = similar(&s, viewer, req).await.unwrap();
    let want: HashSet<Uuid> = chats.iter().map(|c| c.0).chain([n.ctx.0]).collect();
    assert_eq!(ids(&got), want);
    let mut req = similar_req(t.org, "post", source);
    req.target_entity_types = vec!["post".into(), "chat_message".into()];
    req.max_results = 1000;
    let got = similar(&s, viewer, req).await.unwrap();
    assert_eq!(got.len(), 19);
    assert!(!ids(&got).contains(&source));

    // The source of another type: its own type by default.
    let got = similar(&s, viewer, similar_req(t.org, "chat_message", chats[0].0))
        .await
        .unwrap();
    assert_eq!(ids(&got), chats[1..].iter().map(|c| c.0).collect());
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn find_similar_content_compares_a_source_of_several_models_within_each_model() {
    let s = TestServer::start().await;
    let n = Neighbourhood::upsert(&s).await;
    let (t, source) = (&n.t, n.source);
    upsert(
        &s,
        &t.token,
        t.org,
        vec![rec("post", source, "m2", &n.base)],
    )
    .await
    .unwrap();
    let mut req = similar_req(t.org, "post", source);
    req.max_results = 1000;
    let got = similar(&s, &n.viewer, req).await.unwrap();
    assert_eq!(got.len(), 16);
    let o = got.iter().find(|i| i.1 == n.other_model_only).unwrap();
    assert!((o.2 - 1.0).abs() < 1e-5, "same vector under m2");
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_embeddings_removes_every_model_of_the_named_entities() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut r = rng(4);
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let batch = vec![
        rec("post", a, "m1", &random_vec(&mut r, 384)),
        rec("post", a, "m2", &random_vec(&mut r, 768)),
        rec("post", b, "m1", &random_vec(&mut r, 384)),
        rec("chat_message", a, "m1", &random_vec(&mut r, 384)),
        rec("post", c, "m1", &random_vec(&mut r, 384)),
    ];
    upsert(&s, &t.token, t.org, batch).await.unwrap();
    let editor = member(&s, t.org, Role::Editor).await;
    let n = delete(
        &s,
        &editor,
        t.org,
        vec![
            eref("post", a),
            eref("post", b),
            eref("post", a),
            eref("post", Uuid::new_v4()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        n, 3,
        "both models of post a, post b; duplicates and unknowns count nothing"
    );
    let left: Vec<(String, Uuid)> = sqlx::query_as(
        "SELECT entity_type, entity_id FROM embeddings WHERE organization_id = $1 ORDER BY 1, 2",
    )
    .bind(t.org)
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(left, vec![("chat_message".into(), a), ("post".into(), c)]);
    assert_eq!(
        delete(&s, &editor, t.org, vec![eref("post", a)])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        code(
            s.similarity()
                .find_similar_content(authed(similar_req(t.org, "post", b), &editor))
                .await
        ),
        Code::NotFound
    );
    s.shutdown().await.unwrap();
}

// ------------------------------------------------------- upsert semantics

#[tokio::test(flavor = "multi_thread")]
async fn upsert_replaces_and_is_all_or_none() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut r = rng(5);
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let v1 = random_vec(&mut r, 384);
    upsert(&s, &t.token, t.org, vec![rec("post", a, "m", &v1)])
        .await
        .unwrap();
    let (created, updated): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("SELECT created_at, updated_at FROM embeddings WHERE entity_id = $1")
            .bind(a)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();

    // Replace: same key, new vector, even a new dimension.
    let v2 = random_vec(&mut r, 768);
    upsert(&s, &t.token, t.org, vec![rec("post", a, "m", &v2)])
        .await
        .unwrap();
    assert_eq!(stored(&s, t.org, "post", a, "m").await.unwrap(), v2);
    let (created2, updated2, dim): (
        chrono::DateTime<chrono::Utc>,
        chrono::DateTime<chrono::Utc>,
        i32,
    ) = sqlx::query_as(
        "SELECT created_at, updated_at, dimension FROM embeddings WHERE entity_id = $1",
    )
    .bind(a)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!((created2, dim), (created, 768));
    assert!(updated2 > updated);
    assert_eq!(count_rows(&s, t.org).await, 1);

    // One bad record anywhere in a batch: nothing of the batch is written.
    let mut nan = random_vec(&mut r, 384);
    nan[7] = f32::NAN;
    let bad_batches = vec![
        vec![
            rec("post", a, "m", &v1),
            rec("post", b, "m", &v1),
            rec("post", Uuid::new_v4(), "m", &nan),
        ],
        vec![rec("post", b, "m", &v1), rec("post", a, "", &v1)],
        vec![
            rec("post", b, "m", &v1),
            rec("post", a, "m", &random_vec(&mut r, 100)),
        ],
        vec![
            rec("post", b, "m", &v1),
            proto::EmbeddingRecord {
                entity: Some(proto::EntityRef {
                    entity_type: "post".into(),
                    entity_id: "not-a-uuid".into(),
                }),
                vector: v1.clone(),
                model: "m".into(),
            },
        ],
        vec![
            rec("post", b, "m", &v1),
            proto::EmbeddingRecord {
                entity: None,
                vector: v1.clone(),
                model: "m".into(),
            },
        ],
    ];
    for batch in bad_batches {
        let err = upsert(&s, &t.token, t.org, batch).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains("embeddings["),
            "names the record: {}",
            err.message()
        );
        assert_eq!(count_rows(&s, t.org).await, 1, "nothing written");
        assert_eq!(
            stored(&s, t.org, "post", a, "m").await.unwrap(),
            v2,
            "nothing replaced"
        );
    }

    // service_role into an organization that does not exist: NOT_FOUND, nothing written.
    let err = upsert(
        &s,
        &service_token(),
        Uuid::new_v4(),
        vec![rec("post", b, "m", &v1)],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM embeddings")
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert_eq!(total, 1);
    s.shutdown().await.unwrap();
}

/// Decision: several records for the same (entity, model) in one request
/// are accepted; the last one wins, as if applied in order, and every record
/// counts in `upserted`.
#[tokio::test(flavor = "multi_thread")]
async fn upsert_duplicate_keys_in_one_request_last_wins() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut r = rng(6);
    let a = Uuid::new_v4();
    let (v1, v2, v3, w) = (
        random_vec(&mut r, 384),
        random_vec(&mut r, 384),
        random_vec(&mut r, 1024),
        random_vec(&mut r, 384),
    );
    let n = upsert(
        &s,
        &t.token,
        t.org,
        vec![
            rec("post", a, "m", &v1),
            rec("post", a, "other", &w),
            rec("post", a, "m", &v2),
            rec("chat_message", a, "m", &w),
            rec("post", a, "m", &v3),
        ],
    )
    .await
    .unwrap();
    assert_eq!(n, 5);
    assert_eq!(count_rows(&s, t.org).await, 3);
    assert_eq!(stored(&s, t.org, "post", a, "m").await.unwrap(), v3);
    assert_eq!(stored(&s, t.org, "post", a, "other").await.unwrap(), w);
    assert_eq!(stored(&s, t.org, "chat_message", a, "m").await.unwrap(), w);
    s.shutdown().await.unwrap();
}

// -------------------------------------------------------------- error codes

/// A server and a new tenant whose organization holds `n` posts of one
/// random vector under model m: the server, the tenant, the first post's id
/// and the vector.
async fn server_with_posts(seed: u64, n: usize) -> (TestServer, Tenant, Uuid, Vec<f32>) {
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

/// The codes of the four RPCs (FindSimilarContent of `source`,
/// SearchByVector of `v`, an upsert and a delete of new posts, all in
/// `org`) for requests decorated by `with`.
async fn codes(
    s: &TestServer,
    org: Uuid,
    source: Uuid,
    v: &[f32],
    with: impl FnOnce(Request4) -> Request4,
) -> [Code; 4] {
    let reqs = with(Request4 {
        similar: tonic::Request::new(similar_req(org, "post", source)),
        search: tonic::Request::new(search_req(org, v)),
        upsert: tonic::Request::new(proto::UpsertEmbeddingsRequest {
            organization_id: org.to_string(),
            embeddings: vec![rec("post", Uuid::new_v4(), "m", v)],
        }),
        delete: tonic::Request::new(proto::DeleteEmbeddingsRequest {
            organization_id: org.to_string(),
            entities: vec![eref("post", Uuid::new_v4())],
        }),
    });
    let mut c = s.similarity();
    [
        code(c.find_similar_content(reqs.similar).await),
        code(c.search_by_vector(reqs.search).await),
        code(c.upsert_embeddings(reqs.upsert).await),
        code(c.delete_embeddings(reqs.delete).await),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_similarity_rpc_refuses_a_missing_garbage_foreign_or_expired_token_as_unauthenticated(
) {
    let (s, t, a, v) = server_with_posts(7, 2).await;
    // No token; garbage; wrongly signed; expired.
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r).await,
        [Code::Unauthenticated; 4]
    );
    for bad in [
        "garbage".to_string(),
        affinity::auth::mint(
            b"another-secret-of-at-least-thirty-two-bytes",
            t.user,
            "authenticated",
            3600,
        )
        .unwrap(),
        expired_token(t.user),
    ] {
        assert_eq!(
            codes(&s, t.org, a, &v, |r| r.token(&bad)).await,
            [Code::Unauthenticated; 4],
            "{bad}"
        );
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_similarity_rpc_denies_a_non_member_even_for_an_organization_that_does_not_exist() {
    let (s, t, a, v) = server_with_posts(7, 2).await;
    let stranger = user_token(Uuid::new_v4());
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&stranger)).await,
        [Code::PermissionDenied; 4]
    );
    let nowhere = Uuid::new_v4().to_string();
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&stranger).org(&nowhere)).await,
        [Code::PermissionDenied; 4]
    );
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_may_only_read_embeddings_while_editors_owners_and_service_role_also_write() {
    let (s, t, a, v) = server_with_posts(7, 2).await;
    let viewer = member(&s, t.org, Role::Viewer).await;
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&viewer)).await,
        [
            Code::Ok,
            Code::Ok,
            Code::PermissionDenied,
            Code::PermissionDenied
        ]
    );
    let editor = member(&s, t.org, Role::Editor).await;
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&editor)).await,
        [Code::Ok; 4]
    );
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&t.token)).await,
        [Code::Ok; 4]
    );
    assert_eq!(
        codes(&s, t.org, a, &v, |r| r.token(&service_token())).await,
        [Code::Ok; 4]
    );
    s.shutdown().await.unwrap();
}

/// A token signed with the right secret that expired an hour ago.
fn expired_token(user: Uuid) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"sub": user.to_string(), "role": "authenticated", "exp": now - 3600}),
        &jsonwebtoken::EncodingKey::from_secret(common::server::SECRET.as_bytes()),
    )
    .unwrap()
}

struct Request4 {
    similar: tonic::Request<proto::FindSimilarContentRequest>,
    search: tonic::Request<proto::SearchByVectorRequest>,
    upsert: tonic::Request<proto::UpsertEmbeddingsRequest>,
    delete: tonic::Request<proto::DeleteEmbeddingsRequest>,
}

impl Request4 {
    fn token(mut self, token: &str) -> Self {
        let v: tonic::metadata::MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        self.similar
            .metadata_mut()
            .insert("authorization", v.clone());
        self.search
            .metadata_mut()
            .insert("authorization", v.clone());
        self.upsert
            .metadata_mut()
            .insert("authorization", v.clone());
        self.delete.metadata_mut().insert("authorization", v);
        self
    }

    fn org(mut self, org: &str) -> Self {
        self.similar.get_mut().organization_id = org.to_string();
        self.search.get_mut().organization_id = org.to_string();
        self.upsert.get_mut().organization_id = org.to_string();
        self.delete.get_mut().organization_id = org.to_string();
        self
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn find_similar_content_of_a_source_without_an_embedding_of_its_type_is_not_found() {
    let (s, t, a, _) = server_with_posts(8, 1).await;
    let mut c = s.similarity();

    // NOT_FOUND: the source has no embedding.
    let err = c
        .find_similar_content(authed(similar_req(t.org, "post", Uuid::new_v4()), &t.token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Same id, another type.
    let err = c
        .find_similar_content(authed(similar_req(t.org, "chat_message", a), &t.token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn find_similar_content_refuses_malformed_requests_as_invalid_arguments_and_accepts_the_edges(
) {
    let (s, t, a, _) = server_with_posts(8, 1).await;
    let mut c = s.similarity();

    // FindSimilarContent.
    type F = proto::FindSimilarContentRequest;
    let bad_similar: Vec<Spoiler<F>> = vec![
        (
            "org not a uuid",
            Box::new(|q: &mut F| q.organization_id = "abc".into()),
        ),
        ("org empty", Box::new(|q: &mut F| q.organization_id.clear())),
        ("no entity", Box::new(|q: &mut F| q.entity = None)),
        (
            "entity id not a uuid",
            Box::new(|q: &mut F| q.entity.as_mut().unwrap().entity_id = "x".into()),
        ),
        (
            "entity id empty",
            Box::new(|q: &mut F| q.entity.as_mut().unwrap().entity_id.clear()),
        ),
        (
            "entity type empty",
            Box::new(|q: &mut F| q.entity.as_mut().unwrap().entity_type.clear()),
        ),
        (
            "entity type case",
            Box::new(|q: &mut F| q.entity.as_mut().unwrap().entity_type = "Post".into()),
        ),
        (
            "threshold > 1",
            Box::new(|q: &mut F| q.similarity_threshold = 1.5),
        ),
        (
            "threshold < -1",
            Box::new(|q: &mut F| q.similarity_threshold = -1.01),
        ),
        (
            "threshold NaN",
            Box::new(|q: &mut F| q.similarity_threshold = f32::NAN),
        ),
        (
            "threshold inf",
            Box::new(|q: &mut F| q.similarity_threshold = f32::INFINITY),
        ),
        (
            "max_results 1001",
            Box::new(|q: &mut F| q.max_results = 1001),
        ),
        (
            "target type empty",
            Box::new(|q: &mut F| q.target_entity_types = vec!["post".into(), String::new()]),
        ),
        (
            "target type bad",
            Box::new(|q: &mut F| q.target_entity_types = vec!["chat message".into()]),
        ),
    ];
    for (what, f) in &bad_similar {
        let mut q = similar_req(t.org, "post", a);
        f(&mut q);
        let err = c
            .find_similar_content(authed(q, &t.token))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(!err.message().is_empty());
    }
    // The edges are fine.
    for (th, k) in [(-1.0, 1000), (1.0, 1), (0.0, 0)] {
        let mut q = similar_req(t.org, "post", a);
        q.similarity_threshold = th;
        q.max_results = k;
        c.find_similar_content(authed(q, &t.token)).await.unwrap();
    }
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn search_by_vector_refuses_malformed_requests_as_invalid_arguments_and_accepts_a_200_byte_model(
) {
    let (s, t, _, v) = server_with_posts(8, 1).await;
    let mut c = s.similarity();

    let with_nan = spoilt(&v, 0, f32::NAN);
    let with_inf = spoilt(&v, 383, f32::INFINITY);
    let with_neg_inf = spoilt(&v, 1, f32::NEG_INFINITY);

    // SearchByVector.
    type S = proto::SearchByVectorRequest;
    let bad_search: Vec<Spoiler<S>> = vec![
        (
            "org not a uuid",
            Box::new(|q: &mut S| q.organization_id = "abc".into()),
        ),
        ("vector empty", Box::new(|q: &mut S| q.vector.clear())),
        (
            "vector NaN",
            Box::new(|q: &mut S| q.vector = with_nan.clone()),
        ),
        (
            "vector inf",
            Box::new(|q: &mut S| q.vector = with_inf.clone()),
        ),
        (
            "vector -inf",
            Box::new(|q: &mut S| q.vector = with_neg_inf.clone()),
        ),
        (
            "dimension without index",
            Box::new(|q: &mut S| q.vector = vec![0.5; 100]),
        ),
        (
            "dimension 385",
            Box::new(|q: &mut S| q.vector = vec![0.5; 385]),
        ),
        (
            "model too long",
            Box::new(|q: &mut S| q.model = "m".repeat(201)),
        ),
        ("model NUL", Box::new(|q: &mut S| q.model = "a\0b".into())),
        (
            "threshold > 1",
            Box::new(|q: &mut S| q.similarity_threshold = 1.0001),
        ),
        (
            "threshold NaN",
            Box::new(|q: &mut S| q.similarity_threshold = f32::NAN),
        ),
        (
            "max_results 1001",
            Box::new(|q: &mut S| q.max_results = 1001),
        ),
        (
            "max_results huge",
            Box::new(|q: &mut S| q.max_results = u32::MAX),
        ),
        (
            "entity type bad",
            Box::new(|q: &mut S| q.entity_types = vec!["Post".into()]),
        ),
    ];
    for (what, f) in &bad_search {
        let mut q = search_req(t.org, &v);
        f(&mut q);
        let err = c.search_by_vector(authed(q, &t.token)).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    let mut q = search_req(t.org, &v);
    q.model = "m".repeat(200);
    q.max_results = 1000;
    c.search_by_vector(authed(q, &t.token)).await.unwrap();
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn upsert_embeddings_refuses_malformed_records_as_invalid_arguments_and_accepts_a_200_byte_model(
) {
    let (s, t, a, v) = server_with_posts(8, 1).await;

    let with_nan = spoilt(&v, 0, f32::NAN);
    let with_inf = spoilt(&v, 383, f32::INFINITY);

    // UpsertEmbeddings.
    type U = proto::EmbeddingRecord;
    let bad_records: Vec<Spoiler<U>> = vec![
        ("no entity", Box::new(|e: &mut U| e.entity = None)),
        (
            "entity id bad",
            Box::new(|e: &mut U| e.entity.as_mut().unwrap().entity_id = "1234".into()),
        ),
        (
            "entity type empty",
            Box::new(|e: &mut U| e.entity.as_mut().unwrap().entity_type.clear()),
        ),
        ("model empty", Box::new(|e: &mut U| e.model.clear())),
        (
            "model too long",
            Box::new(|e: &mut U| e.model = "é".repeat(101)),
        ),
        ("vector empty", Box::new(|e: &mut U| e.vector.clear())),
        (
            "vector NaN",
            Box::new(|e: &mut U| e.vector = with_nan.clone()),
        ),
        (
            "vector inf",
            Box::new(|e: &mut U| e.vector = with_inf.clone()),
        ),
        (
            "dimension without index",
            Box::new(|e: &mut U| e.vector = vec![1.0; 3]),
        ),
    ];
    for (what, f) in &bad_records {
        let mut e = rec("post", Uuid::new_v4(), "m", &v);
        f(&mut e);
        let err = upsert(&s, &t.token, t.org, vec![e]).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    assert_eq!(
        upsert(&s, &t.token, t.org, vec![])
            .await
            .unwrap_err()
            .code(),
        Code::InvalidArgument
    );
    let err = s
        .similarity()
        .upsert_embeddings(authed(
            proto::UpsertEmbeddingsRequest {
                organization_id: "nope".into(),
                embeddings: vec![rec("post", a, "m", &v)],
            },
            &t.token,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // 200 bytes of model name are fine.
    upsert(
        &s,
        &t.token,
        t.org,
        vec![rec("post", a, &"é".repeat(100), &v)],
    )
    .await
    .unwrap();
    assert_rows(&s, t.org, 2, "no failed call wrote anything").await;
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_embeddings_refuses_malformed_requests_as_invalid_arguments_and_deletes_nothing() {
    let (s, t, a, _) = server_with_posts(8, 1).await;

    // DeleteEmbeddings.
    for (what, entities) in [
        ("empty", vec![]),
        (
            "id bad",
            vec![
                eref("post", a),
                proto::EntityRef {
                    entity_type: "post".into(),
                    entity_id: "zz".into(),
                },
            ],
        ),
        (
            "type empty",
            vec![proto::EntityRef {
                entity_type: String::new(),
                entity_id: a.to_string(),
            }],
        ),
    ] {
        let err = delete(&s, &t.token, t.org, entities).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    let err = delete(&s, &t.token, Uuid::nil(), vec![]).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_rows(&s, t.org, 1, "no failed call deleted anything").await;
    s.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_over_the_limit_are_refused() {
    let s = TestServer::start_with(TestDb::empty().await, |c| c.max_batch = 3).await;
    let t = s.new_tenant().await;
    let mut r = rng(9);
    let v = random_vec(&mut r, 384);
    let recs = |n: usize| -> Vec<_> {
        (0..n)
            .map(|_| rec("post", Uuid::new_v4(), "m", &v))
            .collect()
    };
    assert_eq!(upsert(&s, &t.token, t.org, recs(3)).await.unwrap(), 3);
    let err = upsert(&s, &t.token, t.org, recs(4)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert_eq!(count_rows(&s, t.org).await, 3);
    let ents = |n: usize| -> Vec<_> { (0..n).map(|_| eref("post", Uuid::new_v4())).collect() };
    assert_eq!(delete(&s, &t.token, t.org, ents(3)).await.unwrap(), 0);
    let err = delete(&s, &t.token, t.org, ents(4)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    let mut q = search_req(t.org, &v);
    q.entity_types = vec!["a".into(), "b".into(), "c".into(), "d".into()];
    let err = search(&s, &t.token, q).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    s.shutdown().await.unwrap();
}

// ------------------------------------------------------ cross-organization

#[tokio::test(flavor = "multi_thread")]
async fn organizations_never_see_each_other() {
    let s = TestServer::start().await;
    let ta = s.new_tenant().await;
    let tb = s.new_tenant().await;
    let (a, b) = (ta.org, tb.org);
    let svc = service_token();
    let mut r = rng(10);

    // Identical vectors in both organizations; some entity ids in both too.
    let shared: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let only_a: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let only_b: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
    let vecs: Vec<Vec<f32>> = (0..10).map(|_| random_vec(&mut r, 384)).collect();
    let in_a: Vec<Uuid> = shared.iter().chain(&only_a).copied().collect();
    let in_b: Vec<Uuid> = shared.iter().chain(&only_b).copied().collect();
    let batch = |ids: &[Uuid]| -> Vec<_> {
        ids.iter()
            .zip(&vecs)
            .map(|(id, v)| rec("post", *id, "m", v))
            .collect()
    };
    upsert(&s, &ta.token, a, batch(&in_a)).await.unwrap();
    upsert(&s, &tb.token, b, batch(&in_b)).await.unwrap();
    let set_a: HashSet<Uuid> = in_a.iter().copied().collect();

    // A user of A naming organization B: PERMISSION_DENIED on all four.
    let mut c = s.similarity();
    assert_eq!(
        code(
            c.find_similar_content(authed(similar_req(b, "post", only_b[0]), &ta.token))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            c.search_by_vector(authed(search_req(b, &vecs[0]), &ta.token))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        upsert(&s, &ta.token, b, batch(&in_a))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        delete(&s, &ta.token, b, vec![eref("post", only_b[0])])
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // A user of A naming A but B's entity: NOT_FOUND, nothing of B. Also for service_role.
    for tok in [&ta.token, &svc] {
        for id in &only_b {
            let err = c
                .find_similar_content(authed(similar_req(a, "post", *id), tok))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::NotFound);
            assert!(!err.message().contains(&b.to_string()));
        }
    }
    // An id in both: only A's neighbours, computed from A's vector.
    for tok in [&ta.token, &svc] {
        for src in &shared {
            let mut q = similar_req(a, "post", *src);
            q.max_results = 1000;
            let got = similar(&s, tok, q).await.unwrap();
            assert_eq!(got.len(), 9);
            assert!(ids(&got).is_subset(&set_a));
            assert!(!ids(&got).contains(src));
        }
    }

    // Search in A, even by service_role with B's identical vectors: only A's items.
    for tok in [&ta.token, &svc] {
        for (i, v) in vecs.iter().enumerate() {
            let mut q = search_req(a, v);
            q.max_results = 1000;
            let got = search(&s, tok, q).await.unwrap();
            assert_eq!(ids(&got), set_a);
            assert_eq!(got.len(), 10, "each item once");
            assert_eq!(got[0].1, in_a[i]);
            let mut q = search_req(a, v);
            q.max_results = 1;
            q.similarity_threshold = 0.999;
            assert_eq!(search(&s, tok, q).await.unwrap()[0].1, in_a[i]);
        }
    }

    // Upsert in A with B's ids: creates A's rows, leaves B's alone.
    let before_b = sqlx::query_scalar::<_, String>(
        "SELECT string_agg(embedding::text || updated_at::text, ',' ORDER BY entity_id) FROM embeddings WHERE organization_id = $1",
    )
    .bind(b)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    let fresh = random_vec(&mut r, 384);
    upsert(
        &s,
        &ta.token,
        a,
        vec![
            rec("post", only_b[0], "m", &fresh),
            rec("post", shared[0], "m", &fresh),
        ],
    )
    .await
    .unwrap();
    assert_eq!(stored(&s, a, "post", only_b[0], "m").await.unwrap(), fresh);
    assert_eq!(stored(&s, a, "post", shared[0], "m").await.unwrap(), fresh);
    assert_eq!(
        stored(&s, b, "post", shared[0], "m").await.unwrap(),
        vecs[0]
    );

    // Delete in A, by A's owner and by service_role: B keeps its rows.
    let n = delete(
        &s,
        &ta.token,
        a,
        shared.iter().map(|id| eref("post", *id)).collect(),
    )
    .await
    .unwrap();
    assert_eq!(n, 5);
    let n = delete(
        &s,
        &svc,
        a,
        only_b.iter().map(|id| eref("post", *id)).collect(),
    )
    .await
    .unwrap();
    assert_eq!(n, 1, "only the row A made for B's id");
    assert_eq!(count_rows(&s, a).await, 5);
    assert_eq!(count_rows(&s, b).await, 10);
    let after_b = sqlx::query_scalar::<_, String>(
        "SELECT string_agg(embedding::text || updated_at::text, ',' ORDER BY entity_id) FROM embeddings WHERE organization_id = $1",
    )
    .bind(b)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(before_b, after_b, "B untouched by anything done in A");
    // B's items are still found in B, and A's deleted sources are gone from A only.
    let got = similar(&s, &tb.token, similar_req(b, "post", shared[0]))
        .await
        .unwrap();
    assert_eq!(got.len(), 9);
    assert_eq!(
        code(
            c.find_similar_content(authed(similar_req(a, "post", shared[0]), &ta.token))
                .await
        ),
        Code::NotFound
    );
    s.shutdown().await.unwrap();
}

// --------------------------------------------------- agreement with the SQL

#[tokio::test(flavor = "multi_thread")]
async fn find_similar_content_rpc_and_sql_function_agree() {
    let s = TestServer::start().await;
    let ta = s.new_tenant().await;
    let tb = s.new_tenant().await;
    let mut r = rng(11);
    let types = ["post", "chat_message", "ai_context"];

    // A few hundred vectors in clusters (so similarities spread over [-1, 1]),
    // two models of two dimensions; B gets copies of some with the same ids.
    let centers: Vec<Vec<f32>> = (0..6).map(|_| random_vec(&mut r, 384)).collect();
    let centers768: Vec<Vec<f32>> = (0..3).map(|_| random_vec(&mut r, 768)).collect();
    let mut batch = Vec::new();
    let mut sources = Vec::new();
    for i in 0..300 {
        let id = Uuid::new_v4();
        let et = types[i % 3];
        let c = &centers[i % centers.len()];
        let sign = if i % 7 == 0 { -1.0 } else { 1.0 };
        let v: Vec<f32> = near(&mut r, c, 0.2 + 0.6 * (i % 5) as f32 / 4.0)
            .into_iter()
            .map(|x| x * sign)
            .collect();
        batch.push(rec(et, id, "small", &v));
        if i % 3 == 0 {
            let w = near(&mut r, &centers768[i % 3], 0.5);
            batch.push(rec(et, id, "large", &w));
        }
        if i % 10 == 0 {
            sources.push((et, id));
        }
    }
    assert_eq!(
        upsert(&s, &ta.token, ta.org, batch.clone()).await.unwrap() as usize,
        batch.len()
    );
    let b_batch: Vec<_> = batch.iter().step_by(2).cloned().collect();
    upsert(&s, &tb.token, tb.org, b_batch).await.unwrap();
    let set_b: HashSet<Uuid> = {
        let rows: Vec<Uuid> = sqlx::query_scalar(
            "SELECT entity_id FROM embeddings WHERE organization_id = $1 EXCEPT
             SELECT entity_id FROM embeddings WHERE organization_id = $2",
        )
        .bind(tb.org)
        .bind(ta.org)
        .fetch_all(&s.db.pool)
        .await
        .unwrap();
        rows.into_iter().collect()
    };
    assert!(
        set_b.is_empty(),
        "B's ids are all A's too, so only the function keeps them apart"
    );

    let params: [(f32, u32, &[&str]); 7] = [
        (-1.0, 1000, &[]),
        (0.0, 0, &[]),
        (0.5, 25, &[]),
        (0.9, 1000, &[]),
        (-1.0, 1, &["post"]),
        (0.2, 100, &["post", "chat_message", "ai_context"]),
        (-0.5, 50, &["ai_context", "note"]),
    ];
    let mut compared = 0;
    let mut nonempty = 0;
    for (et, id) in &sources {
        for (th, k, targets) in params {
            let mut q = similar_req(ta.org, et, *id);
            q.similarity_threshold = th;
            q.max_results = k;
            q.target_entity_types = targets.iter().map(|t| t.to_string()).collect();
            let rpc = similar(&s, &ta.token, q).await.unwrap();

            let sql: Vec<(Uuid, String, Uuid, f64)> =
                sqlx::query_as("SELECT * FROM find_similar_content($1, $2, $3, $4, $5, $6)")
                    .bind(*et)
                    .bind(*id)
                    .bind(f64::from(th))
                    .bind(if k == 0 { 10 } else { k as i32 })
                    .bind(if targets.is_empty() {
                        None
                    } else {
                        Some(targets.iter().map(|t| t.to_string()).collect::<Vec<_>>())
                    })
                    .bind(ta.org)
                    .fetch_all(&s.db.pool)
                    .await
                    .unwrap();
            assert!(sql.iter().all(|row| row.0 == ta.org));
            let sql: Items = sql
                .into_iter()
                .map(|(_, t, i, sim)| (t, i, sim as f32))
                .collect();
            assert_eq!(
                rpc, sql,
                "source {et} {id}, threshold {th}, max {k}, targets {targets:?}"
            );
            assert!(!ids(&rpc).contains(id), "never the source");
            assert!(rpc.iter().all(|i| i.2 >= th));
            assert_sorted(&rpc);
            compared += 1;
            nonempty += usize::from(!rpc.is_empty());
        }
    }
    assert_eq!(compared, 30 * params.len());
    assert!(
        nonempty > compared / 2,
        "the comparison is not of empty lists: {nonempty}/{compared}"
    );
    s.shutdown().await.unwrap();
}

// ------------------------------------------------- index use and quality

/// The search SQL orders by each dimension's index expression, so every
/// supported dimension's HNSW index is usable.
#[tokio::test(flavor = "multi_thread")]
async fn search_sql_uses_the_hnsw_index_of_each_dimension() {
    let db = TestDb::migrated().await;
    let dims: Vec<i32> =
        sqlx::query_scalar("SELECT dimension FROM vector_index_dimensions ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert!(dims.contains(&3072) && dims.contains(&384));
    for dim in dims {
        let cast = store::index_cast(&db.pool, dim).await.unwrap().unwrap();
        let expected: String = sqlx::query_scalar("SELECT embedding_index_expression($1)")
            .bind(dim)
            .fetch_one(&db.pool)
            .await
            .unwrap();
        assert_eq!(cast.expression(), expected);
        for (by_model, by_type) in [(false, false), (true, false), (false, true), (true, true)] {
            let sql = store::search_sql(cast, by_model, by_type, None);
            let mut tx = db.pool.begin().await.unwrap();
            sqlx::query("SET LOCAL enable_seqscan = off")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query("SET LOCAL enable_sort = off")
                .execute(&mut *tx)
                .await
                .unwrap();
            let explain = format!("EXPLAIN {sql}");
            let mut q = sqlx::query_scalar::<_, String>(&explain)
                .bind(Uuid::new_v4())
                .bind(dim)
                .bind(pgvector::Vector::from(vec![0.5f32; dim as usize]))
                .bind(10i64);
            if by_model {
                q = q.bind("m");
            }
            if by_type {
                q = q.bind(vec!["post".to_string()]);
            }
            let plan = q.fetch_all(&mut *tx).await.unwrap().join("\n");
            assert!(
                plan.contains(&format!("embeddings_hnsw_{dim}")),
                "dimension {dim}: {plan}"
            );
        }
    }
    assert_eq!(store::index_cast(&db.pool, 100).await.unwrap(), None);
}

/// 1536-dimensional vectors (6 kB) stay in their rows, so the planner sees
/// what an exact scan of a large organization costs and searches it through
/// its HNSW index (here a halfvec one) with the service's planning settings;
/// out of line (the default storage before migration 14) the same query
/// planned an exact scan of every row.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_organizations_1536_dimensional_search_is_planned_on_the_hnsw_index() {
    let db = TestDb::migrated().await;
    let storage: String = sqlx::query_scalar(
        "SELECT attstorage::text FROM pg_attribute
         WHERE attrelid = 'embeddings'::regclass AND attname = 'embedding'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(
        storage, "m",
        "embeddings.embedding is stored MAIN (in line)"
    );
    // Half the rows in the organization searched, as in the benchmark.
    let (large, other) = (Uuid::new_v4(), Uuid::new_v4());
    // With a halfvec index (its cast makes an exact scan dearer still).
    sqlx::raw_sql(
        "SELECT drop_embedding_indexes();
         UPDATE vector_index_dimensions SET index_type = 'halfvec' WHERE dimension = 1536",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    for org in [large, other] {
        random_vectors_1536(&mut conn, org, 10_000).await;
    }
    drop(conn);
    sqlx::raw_sql("SELECT create_embedding_indexes(); ANALYZE embeddings")
        .execute(&db.pool)
        .await
        .unwrap();
    let cast = store::index_cast(&db.pool, 1536).await.unwrap().unwrap();
    let sql = store::search_sql(cast, true, false, None);
    let mut tx = db.pool.begin().await.unwrap();
    sqlx::query(
        "SELECT set_config('hnsw.iterative_scan', 'strict_order', true),
                set_config('hnsw.ef_search', $1, true)",
    )
    .bind(affinity::store::PLANNING_EF_SEARCH.to_string())
    .execute(&mut *tx)
    .await
    .unwrap();
    let plan = sqlx::query_scalar::<_, String>(&format!("EXPLAIN {sql}"))
        .bind(large)
        .bind(1536)
        .bind(pgvector::Vector::from(vec![0.01f32; 1536]))
        .bind(10i64)
        .bind("m")
        .fetch_all(&mut *tx)
        .await
        .unwrap()
        .join("\n");
    assert!(plan.contains("embeddings_hnsw_1536"), "{plan}");
}

/// Filters on organization and model do not starve the HNSW scan, and large
/// max_results are filled (iterative scan, ef_search >= max_results): with
/// the plans PostgreSQL picks, and with the HNSW index forced on every query
/// (on a data set this small the planner often prefers an exact scan).
#[tokio::test(flavor = "multi_thread")]
async fn search_is_not_starved_by_filters_and_fills_large_limits() {
    let s = TestServer::start().await;
    starvation_checks(&s).await;
    s.shutdown().await.unwrap();

    let db = TestDb::migrated().await;
    sqlx::query("ALTER DATABASE affinity SET enable_seqscan = off")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("ALTER DATABASE affinity SET enable_sort = off")
        .execute(&db.pool)
        .await
        .unwrap();
    let s = TestServer::start_on(db).await;
    starvation_checks(&s).await;
    s.shutdown().await.unwrap();
}

async fn starvation_checks(s: &TestServer) {
    let ta = s.new_tenant().await;
    let tb = s.new_tenant().await;
    let mut r = rng(12);
    let mut big = Vec::new();
    for _ in 0..1200 {
        big.push(rec("post", Uuid::new_v4(), "big", &random_vec(&mut r, 384)));
    }
    upsert(s, &tb.token, tb.org, big.clone()).await.unwrap();
    for chunk in big.chunks(600) {
        let again: Vec<_> = chunk
            .iter()
            .map(|e| rec("post", Uuid::new_v4(), "big", &e.vector))
            .collect();
        upsert(s, &ta.token, ta.org, again).await.unwrap();
    }
    let small: Vec<(Uuid, Vec<f32>)> = (0..25)
        .map(|_| (Uuid::new_v4(), random_vec(&mut r, 384)))
        .collect();
    upsert(
        s,
        &ta.token,
        ta.org,
        small
            .iter()
            .map(|(id, v)| rec("note", *id, "small", v))
            .collect(),
    )
    .await
    .unwrap();
    sqlx::query("ANALYZE embeddings")
        .execute(&s.db.pool)
        .await
        .unwrap();

    let q = random_vec(&mut r, 384);
    // A rare model in a big organization: all 25, in exact order.
    let mut req = search_req(ta.org, &q);
    req.model = "small".into();
    req.max_results = 25;
    let got = search(s, &ta.token, req).await.unwrap();
    let mut exact: Vec<(f64, Uuid)> = small.iter().map(|(id, v)| (cosine(&q, v), *id)).collect();
    exact.sort_by(|a, b| b.0.total_cmp(&a.0));
    assert_eq!(
        got.iter().map(|i| i.1).collect::<Vec<_>>(),
        exact.iter().map(|e| e.1).collect::<Vec<_>>()
    );
    // A rare type, any model.
    let mut req = search_req(ta.org, &q);
    req.entity_types = vec!["note".into()];
    req.max_results = 1000;
    assert_eq!(search(s, &ta.token, req).await.unwrap().len(), 25);
    // 1000 results of 1225.
    let mut req = search_req(ta.org, &q);
    req.max_results = 1000;
    let got = search(s, &ta.token, req).await.unwrap();
    assert_eq!(got.len(), 1000);
    assert_eq!(ids(&got).len(), 1000);
    assert_sorted(&got);
    // Recall of the top 10 against an exact scan, over a few queries.
    let all_a: Vec<(Uuid, Vec<f32>)> = {
        let rows: Vec<(Uuid, pgvector::Vector)> = sqlx::query_as(
            "SELECT entity_id, embedding FROM embeddings WHERE organization_id = $1 AND model = 'big'",
        )
        .bind(ta.org)
        .fetch_all(&s.db.pool)
        .await
        .unwrap();
        rows.into_iter().map(|(id, v)| (id, v.to_vec())).collect()
    };
    let mut found = 0;
    for _ in 0..10 {
        let q = random_vec(&mut r, 384);
        let mut exact: Vec<(f64, Uuid)> =
            all_a.iter().map(|(id, v)| (cosine(&q, v), *id)).collect();
        exact.sort_by(|a, b| b.0.total_cmp(&a.0));
        let want: HashSet<Uuid> = exact.iter().take(10).map(|e| e.1).collect();
        let mut req = search_req(ta.org, &q);
        req.model = "big".into();
        let got = search(s, &ta.token, req).await.unwrap();
        found += ids(&got).intersection(&want).count();
    }
    assert!(found >= 90, "recall@10 {found}/100");
}
