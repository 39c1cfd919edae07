//! Logging one entry: what is stored, idempotent retries and who may log as whom.

use crate::common::server::{authed, code, service_token, TestServer};
use crate::{at_angle, count_embeddings, count_entries, list_req, log, log_req, num, strukt, text};
use affinity::proto;
use prost_types::value::Kind;
use std::collections::HashSet;
use tonic::Code;
use uuid::Uuid;

// ------------------------------------------------------------ LogAiContext

#[tokio::test(flavor = "multi_thread")]
async fn log_stores_an_entry_with_its_metadata_and_embedding() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let metadata = strukt(vec![
        ("model", text("gpt-4")),
        ("confidence", num(0.9)),
        ("tokens", num(1234.0)),
        (
            "flags",
            prost_types::Value {
                kind: Some(Kind::ListValue(prost_types::ListValue {
                    values: vec![
                        text("a"),
                        prost_types::Value {
                            kind: Some(Kind::BoolValue(true)),
                        },
                        prost_types::Value {
                            kind: Some(Kind::NullValue(0)),
                        },
                    ],
                })),
            },
        ),
        (
            "nested",
            prost_types::Value {
                kind: Some(Kind::StructValue(strukt(vec![("depth", num(2.0))]))),
            },
        ),
    ]);
    let occurred_at = prost_types::Timestamp {
        seconds: 1_700_000_000,
        nanos: 123_456_000,
    };
    let r = log(
        &s,
        proto::LogAiContextRequest {
            context_summary: "user asked about pricing".into(),
            ai_response: "it costs 5 €".into(),
            metadata: Some(metadata.clone()),
            embedding: at_angle(0.0),
            embedding_model: "text-embedding-3-small".into(),
            occurred_at: Some(occurred_at),
            ..log_req(t.org, "chat")
        },
        &t.token,
    )
    .await;
    assert!(!r.duplicate);
    let id: Uuid = r.id.parse().unwrap();

    let listed = s
        .ai_context()
        .list_ai_context(authed(list_req(t.org), &t.token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entries.len(), 1);
    let e = &listed.entries[0];
    assert_eq!(e.id, id.to_string());
    assert_eq!(e.organization_id, t.org.to_string());
    assert_eq!(
        e.user_id,
        t.user.to_string(),
        "an empty user_id is the caller"
    );
    assert_eq!(e.source_type, "chat");
    assert_eq!(e.context_summary, "user asked about pricing");
    assert_eq!(e.ai_response, "it costs 5 €");
    assert_eq!(e.metadata.as_ref(), Some(&metadata));
    assert_eq!(e.occurred_at, Some(occurred_at));
    assert!(listed.next_page_token.is_empty());

    let (etype, model, dim): (String, String, i32) = sqlx::query_as(
        "SELECT entity_type, model, dimension FROM embeddings WHERE organization_id = $1 AND entity_id = $2",
    )
    .bind(t.org)
    .bind(id)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (etype.as_str(), model.as_str(), dim),
        ("ai_context", "text-embedding-3-small", 384)
    );

    // Unset occurred_at is the server's now; no metadata is an empty object.
    let before = chrono::Utc::now();
    log(&s, log_req(t.org, "agent"), &t.token).await;
    let listed = s
        .ai_context()
        .list_ai_context(authed(list_req(t.org), &t.token))
        .await
        .unwrap()
        .into_inner();
    let newest = &listed.entries[0];
    assert_eq!(newest.source_type, "agent");
    let at = newest.occurred_at.unwrap();
    assert!(at.seconds >= before.timestamp() - 1);
    assert_eq!(newest.metadata, Some(prost_types::Struct::default()));
    assert_eq!(newest.context_summary, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_retry_returns_the_first_id_and_stores_nothing_new() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let req = proto::LogAiContextRequest {
        idempotency_key: "turn-42".into(),
        context_summary: "first".into(),
        embedding: at_angle(10.0),
        embedding_model: "m".into(),
        ..log_req(t.org, "chat")
    };
    let first = log(&s, req.clone(), &t.token).await;
    assert!(!first.duplicate);
    let retry = log(
        &s,
        proto::LogAiContextRequest {
            context_summary: "second".into(),
            ..req.clone()
        },
        &t.token,
    )
    .await;
    assert!(retry.duplicate);
    assert_eq!(retry.id, first.id);
    assert_eq!(count_entries(&s, t.org).await, 1);
    assert_eq!(count_embeddings(&s, t.org).await, 1);
    let summary: String = sqlx::query_scalar(
        "SELECT context_summary FROM ai_context_logs WHERE organization_id = $1",
    )
    .bind(t.org)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(summary, "first");

    // Concurrent retries: exactly one stores, all get the same id.
    let mut calls = Vec::new();
    for _ in 0..8 {
        let mut client = s.ai_context();
        let req = authed(
            proto::LogAiContextRequest {
                idempotency_key: "race".into(),
                ..log_req(t.org, "chat")
            },
            &t.token,
        );
        calls.push(tokio::spawn(async move {
            client.log_ai_context(req).await.unwrap().into_inner()
        }));
    }
    let mut ids = HashSet::new();
    let mut fresh = 0;
    for c in calls {
        let r = c.await.unwrap();
        ids.insert(r.id);
        fresh += usize::from(!r.duplicate);
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(fresh, 1);
    assert_eq!(count_entries(&s, t.org).await, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_logs_only_as_itself_and_service_role_as_anyone() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let other = Uuid::new_v4();

    let own = log(
        &s,
        proto::LogAiContextRequest {
            user_id: t.user.to_string(),
            ..log_req(t.org, "chat")
        },
        &t.token,
    )
    .await;
    assert!(!own.duplicate);
    let as_other = s
        .ai_context()
        .log_ai_context(authed(
            proto::LogAiContextRequest {
                user_id: other.to_string(),
                ..log_req(t.org, "chat")
            },
            &t.token,
        ))
        .await;
    assert_eq!(code(as_other), Code::PermissionDenied);

    // service_role names any user, even one never seen (its profile is created).
    let by_service = log(
        &s,
        proto::LogAiContextRequest {
            user_id: other.to_string(),
            ..log_req(t.org, "agent")
        },
        &service_token(),
    )
    .await;
    let owner: Uuid = sqlx::query_scalar(
        "SELECT user_id FROM ai_context_logs WHERE organization_id = $1 AND id = $2",
    )
    .bind(t.org)
    .bind(by_service.id.parse::<Uuid>().unwrap())
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(owner, other);
    // ... but must name one.
    let unnamed = s
        .ai_context()
        .log_ai_context(authed(log_req(t.org, "agent"), &service_token()))
        .await;
    assert_eq!(code(unnamed), Code::InvalidArgument);
    // An organization that does not exist, for service_role.
    let nowhere = s
        .ai_context()
        .log_ai_context(authed(
            proto::LogAiContextRequest {
                user_id: other.to_string(),
                ..log_req(Uuid::new_v4(), "agent")
            },
            &service_token(),
        ))
        .await;
    assert_eq!(code(nowhere), Code::NotFound);
    assert_eq!(count_entries(&s, t.org).await, 2);
}
