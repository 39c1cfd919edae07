//! SearchByVector: vectors are stored as sent and searched nearest first, within max_results, the threshold, the entity types and the model, at every supported dimension.

use std::collections::HashSet;

use crate::common::cosine;
use crate::common::server::{Tenant, TestServer};
use crate::support::{
    assert_sorted, count_rows, ids, random_vec, rec, rng, search, search_req, stored, upsert,
};
use uuid::Uuid;

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
