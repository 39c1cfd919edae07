//! Legacy posts are backfilled after migration, and everything again under a new model name.
use crate::common::server::{authed, service_token, TestServer};
use crate::common::text::{
    all_embedded, count_vectors, model_server, text_record, text_server_at, EMBEDDED_WITHIN, MODEL,
};
use crate::common::TestDb;
use affinity::proto;
use affinity_testkit::legacy::LegacyConfig;
use uuid::Uuid;

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
