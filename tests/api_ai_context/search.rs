//! Searching AI context: nearest first, filters, migrated chat messages and refusals.

use crate::common::server::{authed, code, service_token, user_token, TestServer};
use crate::{at_angle, log, log_req, search_req};
use affinity::proto::{self, Role};
use tonic::{Code, Request};
use uuid::Uuid;

// --------------------------------------------------------- SearchAiContext

#[tokio::test(flavor = "multi_thread")]
async fn search_returns_nearest_entries_first_with_filters() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let other_user = Uuid::new_v4();
    s.add_member(t.org, other_user, Role::Editor).await;
    // angle -> (source_type, author, model)
    let entries = [
        (0.0, "chat", t.user, "m1"),
        (10.0, "agent", t.user, "m1"),
        (20.0, "chat", other_user, "m1"),
        (30.0, "generation", t.user, "m2"),
        (60.0, "chat", t.user, "m1"),
        (120.0, "chat", t.user, "m1"),
    ];
    let mut ids = Vec::new();
    for (angle, source, user, model) in entries {
        let r = log(
            &s,
            proto::LogAiContextRequest {
                user_id: user.to_string(),
                context_summary: format!("at {angle}"),
                embedding: at_angle(angle),
                embedding_model: model.into(),
                ..log_req(t.org, source)
            },
            &service_token(),
        )
        .await;
        ids.push(r.id);
    }
    // An entry without an embedding is never a search result.
    log(&s, log_req(t.org, "chat"), &t.token).await;

    let viewer = Uuid::new_v4();
    s.add_member(t.org, viewer, Role::Viewer).await;
    let search = |req: proto::SearchAiContextRequest| {
        let mut c = s.ai_context();
        let token = user_token(viewer);
        async move {
            c.search_ai_context(authed(req, &token))
                .await
                .unwrap()
                .into_inner()
                .entries
        }
    };

    let all = search(search_req(t.org, at_angle(0.0))).await;
    let got: Vec<_> = all.iter().map(|e| e.id.clone()).collect();
    assert_eq!(
        got, ids,
        "most similar first, every entry with an embedding"
    );
    for (e, (angle, ..)) in all.iter().zip(entries) {
        let want = angle.to_radians().cos();
        assert!(
            (e.similarity - want).abs() < 1e-3,
            "{} vs {want}",
            e.similarity
        );
    }
    assert_eq!(all[0].context_summary, "at 0");
    assert!(all[0].metadata.is_some() && all[0].occurred_at.is_some());

    // Threshold: cos(45°) ≈ 0.707 keeps 0..30 degrees.
    let near = search(proto::SearchAiContextRequest {
        similarity_threshold: 0.7,
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(near.len(), 4);
    // The default threshold 0 leaves out the entry at 120 degrees.
    let default_threshold = search(proto::SearchAiContextRequest {
        similarity_threshold: 0.0,
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(default_threshold.len(), 5);
    // max_results.
    let two = search(proto::SearchAiContextRequest {
        max_results: 2,
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(
        two.iter().map(|e| &e.id).collect::<Vec<_>>(),
        vec![&ids[0], &ids[1]]
    );
    // User filter.
    let theirs = search(proto::SearchAiContextRequest {
        user_id: other_user.to_string(),
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(
        theirs.iter().map(|e| &e.id).collect::<Vec<_>>(),
        vec![&ids[2]]
    );
    // Source type filter.
    let chats_and_generations = search(proto::SearchAiContextRequest {
        source_types: vec!["generation".into(), "agent".into()],
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(
        chats_and_generations
            .iter()
            .map(|e| &e.id)
            .collect::<Vec<_>>(),
        vec![&ids[1], &ids[3]]
    );
    // Model filter; empty model means any model of the dimension.
    let m2 = search(proto::SearchAiContextRequest {
        model: "m2".into(),
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert_eq!(m2.iter().map(|e| &e.id).collect::<Vec<_>>(), vec![&ids[3]]);
    let unknown_model = search(proto::SearchAiContextRequest {
        model: "nobody".into(),
        ..search_req(t.org, at_angle(0.0))
    })
    .await;
    assert!(unknown_model.is_empty());
    // Another dimension with an index: nothing of that dimension.
    let wide = search(search_req(t.org, vec![0.5; 768])).await;
    assert!(wide.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn search_finds_migrated_chat_messages() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    // A legacy chat message as phase 03 leaves it: an ai_context_logs row and
    // an embedding of entity_type 'chat_message' with the same id.
    let id = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO ai_context_logs (id, organization_id, user_id, source_type, context_summary)
         VALUES ($1, $2, $3, 'chat', 'legacy message')",
    )
    .bind(id)
    .bind(t.org)
    .bind(t.user)
    .execute(&s.db.pool)
    .await
    .unwrap();
    // An embedding of another entity type with the same id (a post) is not
    // AI context.
    for (entity_type, degrees) in [("chat_message", 5.0), ("post", 0.0)] {
        sqlx::query(
            "INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
             VALUES ($1, $2, $3, 'legacy', 384, $4)",
        )
        .bind(t.org)
        .bind(entity_type)
        .bind(id)
        .bind(pgvector::Vector::from(at_angle(degrees)))
        .execute(&s.db.pool)
        .await
        .unwrap();
    }
    let got = s
        .ai_context()
        .search_ai_context(authed(search_req(t.org, at_angle(0.0)), &t.token))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id, id.to_string());
    assert_eq!(got[0].context_summary, "legacy message");
    assert!((got[0].similarity - 5f32.to_radians().cos()).abs() < 1e-3);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_refuses_bad_requests_with_the_contract_codes() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let mut c = s.ai_context();
    assert_eq!(
        code(
            c.search_ai_context(Request::new(search_req(t.org, at_angle(0.0))))
                .await
        ),
        Code::Unauthenticated
    );
    let mut nan = at_angle(0.0);
    nan[3] = f32::NAN;
    let mut inf = at_angle(0.0);
    inf[3] = f32::NEG_INFINITY;
    let cases: Vec<(&str, proto::SearchAiContextRequest)> = vec![
        (
            "malformed organization_id",
            proto::SearchAiContextRequest {
                organization_id: "x".into(),
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        ("empty vector", search_req(t.org, vec![])),
        ("NaN in vector", search_req(t.org, nan)),
        ("infinity in vector", search_req(t.org, inf)),
        ("dimension without index", search_req(t.org, vec![1.0; 5])),
        (
            "threshold above 1",
            proto::SearchAiContextRequest {
                similarity_threshold: 1.5,
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        (
            "threshold below -1",
            proto::SearchAiContextRequest {
                similarity_threshold: -1.01,
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        (
            "threshold NaN",
            proto::SearchAiContextRequest {
                similarity_threshold: f32::NAN,
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        (
            "max_results over 1000",
            proto::SearchAiContextRequest {
                max_results: 1001,
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        (
            "malformed user_id",
            proto::SearchAiContextRequest {
                user_id: "u".into(),
                ..search_req(t.org, at_angle(0.0))
            },
        ),
        (
            "empty source type",
            proto::SearchAiContextRequest {
                source_types: vec![String::new()],
                ..search_req(t.org, at_angle(0.0))
            },
        ),
    ];
    for (what, req) in cases {
        assert_eq!(
            code(c.search_ai_context(authed(req, &t.token)).await),
            Code::InvalidArgument,
            "{what}"
        );
    }
    assert_eq!(
        code(
            c.search_ai_context(authed(
                proto::SearchAiContextRequest {
                    max_results: 1000,
                    ..search_req(t.org, at_angle(0.0))
                },
                &t.token
            ))
            .await
        ),
        Code::Ok
    );
}
