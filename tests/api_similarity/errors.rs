//! Malformed requests are INVALID_ARGUMENT (and write nothing), a source without an embedding is NOT_FOUND, and over-limit batches are refused.

use crate::common::server::{authed, TestServer};
use crate::common::TestDb;
use crate::support::{
    assert_rows, count_rows, delete, eref, random_vec, rec, rng, search, search_req,
    server_with_posts, similar_req, upsert,
};
use affinity::proto;
use tonic::Code;
use uuid::Uuid;

/// `v` with `x` at `i`.
fn spoilt(v: &[f32], i: usize, x: f32) -> Vec<f32> {
    let mut v = v.to_vec();
    v[i] = x;
    v
}

/// A named way to spoil a valid request.
type Spoiler<'a, T> = (&'a str, Box<dyn Fn(&mut T) + 'a>);

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
