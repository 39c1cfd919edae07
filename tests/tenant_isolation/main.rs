//! Tenant isolation, RPC by RPC: a user of organization A naming organization
//! B's ids (the organization, its entities, users, context entries, page
//! tokens taken from B or forged) gets PERMISSION_DENIED or nothing of B,
//! and the answer is the same as for ids that do not exist, so A cannot
//! tell whether B's ids exist.
#[path = "../common/mod.rs"]
mod common;

mod another_organization;
mod own_organization;
mod page_tokens;
mod support;

use affinity::proto;
use common::server::{authed, service_token, Tenant, TestServer};
use uuid::Uuid;

const DIM: usize = 384;
const MODEL: &str = "m";

fn vector(seed: f32) -> Vec<f32> {
    (0..DIM).map(|i| (i as f32 * 0.37 + seed).sin()).collect()
}

fn eref(id: &str) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: id.to_string(),
    })
}

/// B's data, as A must not see it.
struct World {
    s: TestServer,
    a: Tenant,
    b: Tenant,
    a_post: Uuid,
    b_post: Uuid,
    /// A page token from B's own listing of its AI context.
    b_page_token: String,
}

async fn world() -> World {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let b = s.new_tenant().await;
    let (a_post, b_post) = (Uuid::new_v4(), Uuid::new_v4());
    let service = service_token();
    for (t, post, seed) in [(&a, a_post, 0.0), (&b, b_post, 0.01)] {
        s.similarity()
            .upsert_embeddings(authed(
                proto::UpsertEmbeddingsRequest {
                    organization_id: t.org.to_string(),
                    embeddings: vec![proto::EmbeddingRecord {
                        entity: eref(&post.to_string()),
                        vector: vector(seed),
                        model: MODEL.into(),
                    }],
                },
                &service,
            ))
            .await
            .unwrap();
        s.metrics()
            .record_metrics(authed(
                proto::RecordMetricsRequest {
                    organization_id: t.org.to_string(),
                    idempotency_key: String::new(),
                    points: vec![proto::MetricPoint {
                        entity: eref(&post.to_string()),
                        metric_name: "likes".into(),
                        value: 7.0,
                        recorded_at: None,
                    }],
                },
                &service,
            ))
            .await
            .unwrap();
        for i in 0..3 {
            s.ai_context()
                .log_ai_context(authed(
                    proto::LogAiContextRequest {
                        organization_id: t.org.to_string(),
                        user_id: t.user.to_string(),
                        source_type: "chat".into(),
                        context_summary: format!("entry {i}"),
                        embedding: vector(seed + i as f32 * 0.001),
                        embedding_model: MODEL.into(),
                        ..Default::default()
                    },
                    &t.token,
                ))
                .await
                .unwrap();
        }
    }
    let b_page_token = s
        .ai_context()
        .list_ai_context(authed(
            proto::ListAiContextRequest {
                organization_id: b.org.to_string(),
                page_size: 1,
                ..Default::default()
            },
            &b.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!b_page_token.is_empty());
    World {
        s,
        a,
        b,
        a_post,
        b_post,
        b_page_token,
    }
}
