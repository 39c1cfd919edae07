//! FindSimilarContent: the source's nearest neighbours of the types asked for, within each of its models, max_results and the threshold.

use std::collections::HashSet;

use crate::common::cosine;
use crate::common::server::{Tenant, TestServer};
use crate::support::{
    assert_sorted, ids, member, near, random_vec, rec, rng, similar, similar_req, upsert,
};
use affinity::proto::Role;
use uuid::Uuid;

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
