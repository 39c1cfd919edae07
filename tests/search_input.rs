//! Search refuses bad input with INVALID_ARGUMENT naming the field, before
//! anything is read; a text query that needs the model gets
//! FAILED_PRECONDITION where none is configured.
mod common;

use affinity::proto::{self, SearchMode};
use common::search::{request, search};
use common::server::{Tenant, TestServer};
use tonic::Code;

async fn refused(server: &TestServer, t: &Tenant, req: proto::SearchRequest) -> (Code, String) {
    match search(server, &t.token, req).await {
        Ok(r) => panic!("accepted: {r:?}"),
        Err(s) => (s.code(), s.message().to_string()),
    }
}

async fn assert_invalid(server: &TestServer, t: &Tenant, req: proto::SearchRequest, field: &str) {
    let (code, message) = refused(server, t, req).await;
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains(field), "{message:?} should name {field}");
}

fn with_vector(t: &Tenant, mode: SearchMode, vector: Vec<f32>) -> proto::SearchRequest {
    let mut req = request(t.org, mode, "");
    req.vector = vector;
    req
}

#[tokio::test]
async fn an_empty_query_text_is_refused_in_text_and_hybrid_mode() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    assert_invalid(
        &server,
        &t,
        request(t.org, SearchMode::Text, ""),
        "query_text",
    )
    .await;
    assert_invalid(
        &server,
        &t,
        request(t.org, SearchMode::Text, " \t\n"),
        "query_text",
    )
    .await;
    let hybrid = with_vector(&t, SearchMode::Hybrid, vec![0.5; 384]);
    assert_invalid(&server, &t, hybrid, "query_text").await;
    // VECTOR needs something to search with.
    assert_invalid(
        &server,
        &t,
        request(t.org, SearchMode::Vector, ""),
        "query_text or vector",
    )
    .await;
}

#[tokio::test]
async fn a_query_text_over_8_kib_or_with_a_nul_is_refused() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let long = "word ".repeat(2000);
    assert!(long.len() > 8 << 10);
    assert_invalid(
        &server,
        &t,
        request(t.org, SearchMode::Text, &long),
        "query_text",
    )
    .await;
    let at_limit = "a".repeat(8 << 10);
    assert!(search(
        &server,
        &t.token,
        request(t.org, SearchMode::Text, &at_limit)
    )
    .await
    .is_ok());
    assert_invalid(
        &server,
        &t,
        request(t.org, SearchMode::Text, "latte\0art"),
        "query_text",
    )
    .await;
}

#[tokio::test]
async fn a_vector_weight_outside_zero_to_one_or_nan_is_refused() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    for w in [-0.1, 1.01, f32::NAN, f32::INFINITY] {
        let mut req = with_vector(&t, SearchMode::Hybrid, vec![0.5; 384]);
        req.query_text = "latte".into();
        req.vector_weight = Some(w);
        assert_invalid(&server, &t, req, "vector_weight").await;
    }
    for w in [0.0, 1.0] {
        let mut req = with_vector(&t, SearchMode::Hybrid, vec![0.5; 384]);
        req.query_text = "latte".into();
        req.vector_weight = Some(w);
        assert!(search(&server, &t.token, req).await.is_ok(), "weight {w}");
    }
}

#[tokio::test]
async fn a_vector_with_nan_or_of_an_unindexed_dimension_is_refused() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let mut nan = vec![0.5; 384];
    nan[3] = f32::NAN;
    assert_invalid(
        &server,
        &t,
        with_vector(&t, SearchMode::Vector, nan),
        "vector[3]",
    )
    .await;
    assert_invalid(
        &server,
        &t,
        with_vector(&t, SearchMode::Vector, vec![0.5; 100]),
        "100 dimensions",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_mode_or_entity_type_is_refused() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let mut req = request(t.org, SearchMode::Text, "latte");
    req.mode = 9;
    assert_invalid(&server, &t, req, "mode").await;
    let mut req = request(t.org, SearchMode::Text, "latte");
    req.entity_types = vec!["post".into(), "no_such_type".into()];
    assert_invalid(&server, &t, req, "entity_types[1]").await;
    let mut req = request(t.org, SearchMode::Text, "latte");
    req.entity_types = vec!["Not Snake".into()];
    assert_invalid(&server, &t, req, "entity_types[0]").await;
    // The schema's own types are known in every organization, even empty.
    let mut req = request(t.org, SearchMode::Text, "latte");
    req.entity_types = vec!["post".into(), "ai_context".into()];
    assert!(search(&server, &t.token, req).await.is_ok());
}

#[tokio::test]
async fn max_results_over_1000_and_bad_filters_are_refused() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let mut req = request(t.org, SearchMode::Text, "latte");
    req.max_results = 1001;
    assert_invalid(&server, &t, req, "max_results").await;

    let bad_filters = [
        (
            proto::SearchFilter {
                user_id: "me".into(),
                ..Default::default()
            },
            "filter.user_id",
        ),
        (
            proto::SearchFilter {
                created_after: Some(prost_types::Timestamp {
                    seconds: 100,
                    nanos: 0,
                }),
                created_before: Some(prost_types::Timestamp {
                    seconds: 50,
                    nanos: 0,
                }),
                ..Default::default()
            },
            "filter.created_after",
        ),
        (
            proto::SearchFilter {
                hashtags: vec!["#".into()],
                ..Default::default()
            },
            "filter.hashtags[0]",
        ),
        (
            proto::SearchFilter {
                platforms: vec![String::new()],
                ..Default::default()
            },
            "filter.platforms[0]",
        ),
        (
            proto::SearchFilter {
                session_id: "s".repeat(257),
                ..Default::default()
            },
            "filter.session_id",
        ),
    ];
    for (filter, field) in bad_filters {
        let mut req = request(t.org, SearchMode::Text, "latte");
        req.filter = Some(filter);
        assert_invalid(&server, &t, req, field).await;
    }
}

#[tokio::test]
async fn a_text_query_needing_the_model_without_one_fails_its_precondition() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    for mode in [
        SearchMode::Hybrid,
        SearchMode::Vector,
        SearchMode::Unspecified,
    ] {
        let (code, message) = refused(&server, &t, request(t.org, mode, "latte art")).await;
        assert_eq!(code, Code::FailedPrecondition, "{mode:?}: {message}");
        assert!(message.contains("AFFINITY_EMBEDDING_URL"), "{message}");
    }
    // TEXT needs no model; a vector of the caller's needs none either.
    assert!(search(
        &server,
        &t.token,
        request(t.org, SearchMode::Text, "latte art")
    )
    .await
    .is_ok());
    let mut hybrid = with_vector(&t, SearchMode::Hybrid, vec![0.5; 384]);
    hybrid.query_text = "latte art".into();
    assert!(search(&server, &t.token, hybrid).await.is_ok());
}
