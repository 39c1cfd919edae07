//! AiContextService through a real client, server and database.
#[path = "../common/mod.rs"]
mod common;

mod isolation;
mod list;
mod log;
mod log_refusals;
mod search;
mod stream;

use std::collections::BTreeMap;

use affinity::proto;
use common::server::{authed, TestServer};
use prost_types::value::Kind;
use tonic::Code;
use uuid::Uuid;

const DIM: usize = 384;

fn log_req(org: Uuid, source_type: &str) -> proto::LogAiContextRequest {
    proto::LogAiContextRequest {
        organization_id: org.to_string(),
        source_type: source_type.to_string(),
        ..Default::default()
    }
}

/// A 384-dimensional unit vector whose cosine similarity with `axis(0)` is
/// cos(angle) (it lies in the plane of the first two axes).
fn at_angle(degrees: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    let r = degrees.to_radians();
    v[0] = r.cos();
    v[1] = r.sin();
    v
}

fn num(n: f64) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

fn text(s: &str) -> prost_types::Value {
    prost_types::Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn strukt(fields: Vec<(&str, prost_types::Value)>) -> prost_types::Struct {
    prost_types::Struct {
        fields: fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<BTreeMap<_, _>>(),
    }
}

async fn count_entries(s: &TestServer, org: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ai_context_logs WHERE organization_id = $1")
        .bind(org)
        .fetch_one(&s.db.pool)
        .await
        .unwrap()
}

async fn count_embeddings(s: &TestServer, org: Uuid) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM embeddings WHERE organization_id = $1 AND entity_type = 'ai_context'",
    )
    .bind(org)
    .fetch_one(&s.db.pool)
    .await
    .unwrap()
}

async fn log(
    s: &TestServer,
    req: proto::LogAiContextRequest,
    token: &str,
) -> proto::LogAiContextResponse {
    s.ai_context()
        .log_ai_context(authed(req, token))
        .await
        .expect("logging")
        .into_inner()
}

async fn log_stream(
    s: &TestServer,
    msgs: Vec<proto::LogAiContextRequest>,
    token: &str,
) -> Result<proto::LogAiContextStreamResponse, tonic::Status> {
    s.ai_context()
        .log_ai_context_stream(authed(tokio_stream::iter(msgs), token))
        .await
        .map(|r| r.into_inner())
}

fn search_req(org: Uuid, vector: Vec<f32>) -> proto::SearchAiContextRequest {
    proto::SearchAiContextRequest {
        organization_id: org.to_string(),
        vector,
        similarity_threshold: -1.0,
        ..Default::default()
    }
}

fn list_req(org: Uuid) -> proto::ListAiContextRequest {
    proto::ListAiContextRequest {
        organization_id: org.to_string(),
        ..Default::default()
    }
}

/// Both denied, with the same message once the organization ids are blanked:
/// a non-member cannot tell an existing organization from a made-up one.
fn assert_denied_alike(real: tonic::Status, real_org: Uuid, fake: tonic::Status, fake_org: Uuid) {
    assert_eq!(real.code(), Code::PermissionDenied, "{real:?}");
    assert_eq!(fake.code(), Code::PermissionDenied, "{fake:?}");
    assert_eq!(
        real.message().replace(&real_org.to_string(), "<org>"),
        fake.message().replace(&fake_org.to_string(), "<org>")
    );
}
