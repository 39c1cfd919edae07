//! SearchAiContext's filters (session, time, negative feedback) inside the
//! search, by vector and by text; and `query_text` as a hybrid search, so
//! that an exact code finds its entry and a paraphrase finds its own.
mod common;

use affinity::proto;
use common::server::{authed, service_token, TestServer};
use common::text::{all_embedded, log_entry, text_server, EMBEDDED_WITHIN, MODEL};
use tonic::Code;
use uuid::Uuid;

const DIM: usize = 384;
const T0: i64 = 1_760_000_000;

/// Unit vectors at growing angles from `at(0.0)`: smaller is nearer.
fn at(angle: f32) -> Vec<f32> {
    let mut v = vec![0.0; DIM];
    v[0] = angle.cos();
    v[1] = angle.sin();
    v
}

fn ts(second: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: T0 + second,
        nanos: 0,
    }
}

/// Logs entries with vectors at angles i / 1000 (entry i is the i-th
/// nearest to `at(0.0)`), in `session(i)`, at second i; their ids in order.
async fn log_with_vectors(
    server: &TestServer,
    org: Uuid,
    n: usize,
    session: impl Fn(usize) -> String,
) -> Vec<Uuid> {
    let msgs: Vec<_> = (0..n)
        .map(|i| proto::LogAiContextRequest {
            organization_id: org.to_string(),
            user_id: Uuid::new_v4().to_string(),
            source_type: "agent".into(),
            embedding: at(i as f32 / 1000.0),
            embedding_model: "m".into(),
            session_id: session(i),
            occurred_at: Some(ts(i as i64)),
            ..Default::default()
        })
        .collect();
    server
        .ai_context()
        .log_ai_context_stream(authed(tokio_stream::iter(msgs), &service_token()))
        .await
        .expect("logging entries");
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ai_context_logs WHERE organization_id = $1 ORDER BY occurred_at",
    )
    .bind(org)
    .fetch_all(&server.db.pool)
    .await
    .unwrap();
    assert_eq!(ids.len(), n);
    ids
}

async fn feedback(server: &TestServer, org: Uuid, entry: Uuid, value: f64) {
    let r = proto::RecordAiFeedbackRequest {
        organization_id: org.to_string(),
        entry_id: entry.to_string(),
        feedback: Some(proto::AiFeedback {
            feedback_id: Uuid::new_v4().to_string(),
            name: "helpful".into(),
            value,
            ..Default::default()
        }),
    };
    server
        .ai_context()
        .record_ai_feedback(authed(r, &service_token()))
        .await
        .unwrap();
}

fn near(org: Uuid, k: u32) -> proto::SearchAiContextRequest {
    proto::SearchAiContextRequest {
        organization_id: org.to_string(),
        vector: at(0.0),
        similarity_threshold: -1.0,
        max_results: k,
        ..Default::default()
    }
}

async fn found(
    server: &TestServer,
    token: &str,
    r: proto::SearchAiContextRequest,
) -> Result<Vec<Uuid>, tonic::Status> {
    let entries = server
        .ai_context()
        .search_ai_context(authed(r, token))
        .await?
        .into_inner()
        .entries;
    Ok(entries.iter().map(|e| e.id.parse().unwrap()).collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn vector_search_filters_by_session_time_and_feedback_inside_the_scan() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    // 2,000 entries: one in a thousand in session "rare", the rest in "common".
    let ids = log_with_vectors(&server, t.org, 2_000, |i| {
        if i % 1000 == 999 {
            "rare".into()
        } else {
            "common".into()
        }
    })
    .await;
    let tok = &t.token;

    let mut rare = near(t.org, 10);
    rare.session_id = "rare".into();
    assert_eq!(
        found(&server, tok, rare).await.unwrap(),
        vec![ids[999], ids[1999]]
    );

    // A time window far from the query: still max_results of it, nearest first.
    let mut window = near(t.org, 5);
    window.occurred_after = Some(ts(1_500));
    window.occurred_before = Some(ts(1_600));
    assert_eq!(
        found(&server, tok, window).await.unwrap(),
        ids[1_500..1_505].to_vec()
    );

    // The 30 nearest have feedback whose mean is below 0; entry 30 has
    // feedback that cancels out (mean 0: kept).
    for &id in &ids[..30] {
        feedback(&server, t.org, id, 1.0).await;
        feedback(&server, t.org, id, -2.0).await;
    }
    feedback(&server, t.org, ids[30], 1.0).await;
    feedback(&server, t.org, ids[30], -1.0).await;
    let mut helpful = near(t.org, 5);
    helpful.exclude_negative_feedback = true;
    assert_eq!(
        found(&server, tok, helpful).await.unwrap(),
        ids[30..35].to_vec()
    );
    assert_eq!(
        found(&server, tok, near(t.org, 2)).await.unwrap(),
        ids[..2].to_vec()
    );

    // Both together, in the session of 2 entries: entry 999 has none.
    feedback(&server, t.org, ids[1999], -0.5).await;
    let mut both = near(t.org, 10);
    both.session_id = "rare".into();
    both.exclude_negative_feedback = true;
    assert_eq!(found(&server, tok, both).await.unwrap(), vec![ids[999]]);
}

#[tokio::test]
async fn search_filters_that_cannot_hold_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let mut backwards = near(t.org, 5);
    backwards.occurred_after = Some(ts(10));
    backwards.occurred_before = Some(ts(5));
    let mut long_session = near(t.org, 5);
    long_session.session_id = "s".repeat(257);
    let mut nul_session = near(t.org, 5);
    nul_session.session_id = "a\0b".into();
    let mut bad_time = near(t.org, 5);
    bad_time.occurred_after = Some(prost_types::Timestamp {
        seconds: i64::MAX,
        nanos: 0,
    });
    for (field, r) in [
        ("occurred_after", backwards),
        ("session_id", long_session),
        ("session_id", nul_session),
        ("occurred_after", bad_time),
    ] {
        let err = found(&server, &t.token, r).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{field}: {err:?}");
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
}

fn by_text(org: Uuid, text: &str) -> proto::SearchAiContextRequest {
    proto::SearchAiContextRequest {
        organization_id: org.to_string(),
        query_text: text.into(),
        similarity_threshold: -1.0,
        max_results: 3,
        ..Default::default()
    }
}

#[tokio::test]
async fn query_text_is_hybrid_an_exact_code_and_a_paraphrase_each_find_their_entry_within_filters()
{
    let server = text_server().await;
    let t = server.new_tenant().await;
    let notes = [
        ("Order status for SKU-4471?", "It shipped on Monday."),
        (
            "How fine should espresso be ground?",
            "Start fine, about 8 on a conical burr grinder.",
        ),
        (
            "Tips for photographing a sunrise hike",
            "Arrive early; shoot towards the light.",
        ),
        (
            "What milk steams best for latte art?",
            "Whole milk, cold, to 60 degrees.",
        ),
    ];
    let mut ids = Vec::new();
    for (summary, answer) in notes {
        ids.push(log_entry(&server, &t, "chat", summary, answer).await);
    }
    all_embedded(&server.db.pool, MODEL, EMBEDDED_WITHIN).await;
    let tok = &t.token;

    // The code is a word of one entry only: the full-text side finds it.
    let code = found(&server, tok, by_text(t.org, "SKU-4471"))
        .await
        .unwrap();
    assert_eq!(code.first(), Some(&ids[0]), "{code:?}");
    // No word in common: the vector side finds it.
    let paraphrase = found(&server, tok, by_text(t.org, "coffee grinder coarseness"))
        .await
        .unwrap();
    assert_eq!(paraphrase.first(), Some(&ids[1]), "{paraphrase:?}");

    // Negative feedback takes the code's entry out of both sides.
    feedback(&server, t.org, ids[0], -1.0).await;
    let mut helpful = by_text(t.org, "SKU-4471");
    helpful.exclude_negative_feedback = true;
    let without = found(&server, tok, helpful).await.unwrap();
    assert!(!without.contains(&ids[0]), "{without:?}");
    assert_eq!(
        without.len(),
        3,
        "the other entries still come: {without:?}"
    );

    // A time window that holds none of them; then a user who logged none.
    let mut later = by_text(t.org, "SKU-4471");
    later.occurred_after = Some(prost_types::Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    });
    assert!(found(&server, tok, later).await.unwrap().is_empty());
    let mut someone_else = by_text(t.org, "coffee grinder coarseness");
    someone_else.user_id = Uuid::new_v4().to_string();
    assert!(found(&server, tok, someone_else).await.unwrap().is_empty());
    let mut mine = by_text(t.org, "coffee grinder coarseness");
    mine.user_id = t.user.to_string();
    mine.source_types = vec!["chat".into()];
    assert_eq!(
        found(&server, tok, mine).await.unwrap().first(),
        Some(&ids[1])
    );

    // Another organization's member finds nothing of it.
    let other = server.new_tenant().await;
    let theirs = found(&server, &other.token, by_text(other.org, "SKU-4471"))
        .await
        .unwrap();
    assert!(theirs.is_empty(), "{theirs:?}");
}
