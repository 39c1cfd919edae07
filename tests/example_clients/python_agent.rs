//! The Python agent logs context by stream, finds it by a question, and stores nothing new again.
use crate::common::examples::{array_of, f64_of, python_agent, run_json, str_of};
use crate::common::server::TestServer;
use crate::common::text::{text_server, MODEL};
use serde_json::Value;
use tokio::process::Command;
use uuid::Uuid;

// ------------------------------------------------------------ Python agent

fn agent(s: &TestServer, token: &str, org: Uuid, session: &str, query: &str) -> Command {
    let mut cmd = python_agent();
    cmd.env("AFFINITY_ADDR", s.addr.to_string())
        .env("AFFINITY_TOKEN", token)
        .env("AFFINITY_ORG_ID", org.to_string())
        .env("AFFINITY_SESSION_ID", session)
        .env("AFFINITY_QUERY", query);
    cmd
}

/// (id, user_id, source_type, context_summary, metadata's session) of an
/// organization's entries, oldest first.
async fn logged_entries(s: &TestServer, org: Uuid) -> Vec<(Uuid, Uuid, String, String, String)> {
    sqlx::query_as(
        "SELECT id, user_id, source_type, context_summary, metadata->>'session'
           FROM ai_context_logs WHERE organization_id = $1 ORDER BY occurred_at, id",
    )
    .bind(org)
    .fetch_all(&s.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_agent_logs_context_by_stream_and_retrieves_it_by_a_question() {
    python_agent(); // installed, or fail before starting anything
    let s = text_server().await;
    let t = s.new_tenant().await;
    let other = s.new_tenant().await;
    let session = Uuid::new_v4().to_string();

    let out = run_json(
        agent(
            &s,
            &t.token,
            t.org,
            &session,
            "a caption for our espresso blend",
        ),
        "the Python agent",
    )
    .await;

    // Health (grpcio-health-checking) and reflection (grpcio-reflection).
    assert_eq!(out["health"][""], "SERVING", "{out}");
    assert_eq!(out["health"]["affinity.v1.AiContextService"], "SERVING");
    let services: Vec<&str> = array_of(&out, "/reflection/services")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for service in [
        "affinity.v1.AiContextService",
        "affinity.v1.MaintenanceService",
        "affinity.v1.MetricsService",
        "affinity.v1.OrganizationService",
        "affinity.v1.SimilarityService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(&service), "{service} not in {services:?}");
    }
    let methods = array_of(&out, "/reflection/ai_context_methods");
    assert_eq!(
        *methods,
        [
            "LogAiContext",
            "LogAiContextStream",
            "SearchAiContext",
            "ListAiContext",
            "RecordAiFeedback",
            "ExportAiContext",
        ]
        .map(Value::from)
        .to_vec()
    );

    // Logged through the stream: in the database, as the token's user.
    assert_eq!(f64_of(&out, "/logged/stored"), 3.0, "{out}");
    assert_eq!(f64_of(&out, "/logged/duplicates"), 0.0);
    let summaries: Vec<&str> = array_of(&out, "/logged/summaries")
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let rows = logged_entries(&s, t.org).await;
    assert_eq!(
        rows.iter().map(|r| r.3.as_str()).collect::<Vec<_>>(),
        summaries,
        "one entry per interaction, in order"
    );
    for (_, user, source_type, _, row_session) in &rows {
        assert_eq!((*user, source_type.as_str()), (t.user, "agent"));
        assert_eq!(row_session, &session);
    }
    let embedded: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM embeddings e JOIN ai_context_logs l
             ON l.organization_id = e.organization_id AND l.id = e.entity_id
          WHERE e.organization_id = $1 AND e.entity_type = 'ai_context'
            AND e.model = $2 AND e.dimension = 384",
    )
    .bind(t.org)
    .bind(MODEL)
    .fetch_one(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(
        embedded, 3,
        "each entry embedded by the service's text model"
    );
    assert!(logged_entries(&s, other.org).await.is_empty());

    // Retrieved by the question, which the service embedded: the entry
    // about it first, all of them entries just logged, most similar first.
    let entries = array_of(&out, "/retrieved/entries");
    assert_eq!(entries.len(), 3, "{out}");
    assert_eq!(
        str_of(&out, "/retrieved/entries/0/context_summary"),
        "User asked for a caption for the new espresso blend"
    );
    let ids: Vec<String> = rows.iter().map(|r| r.0.to_string()).collect();
    for e in entries {
        assert!(ids.contains(&e["id"].as_str().unwrap().to_string()), "{e}");
        assert_eq!(e["user_id"], t.user.to_string());
        assert_eq!(e["metadata"]["session"], session.as_str());
    }
    let similarities: Vec<f64> = entries
        .iter()
        .map(|e| e["similarity"].as_f64().unwrap())
        .collect();
    assert!(
        similarities[0] > similarities[1] && similarities[1] >= similarities[2],
        "{similarities:?}"
    );

    // Searched by text with filters (SimilarityService.Search, HYBRID): the
    // entry with every word first, found by both sides, its words marked.
    assert_eq!(str_of(&out, "/searched/model"), MODEL, "{out}");
    let hits = array_of(&out, "/searched/hits");
    assert!(!hits.is_empty() && hits.len() <= 3, "{out}");
    let hashtags_entry = rows
        .iter()
        .find(|r| r.3.contains("hashtags"))
        .map(|r| r.0.to_string())
        .unwrap();
    assert_eq!(str_of(&out, "/searched/hits/0/entity_id"), hashtags_entry);
    assert!(f64_of(&out, "/searched/hits/0/text_score") > 0.0, "{out}");
    assert!(
        f64_of(&out, "/searched/hits/0/vector_similarity") > 0.0,
        "{out}"
    );
    let snippet = str_of(&out, "/searched/hits/0/snippet");
    assert!(
        snippet.contains("[latteart]") && snippet.contains("[hashtags]"),
        "{snippet}"
    );
    for h in hits {
        assert_eq!(h["entity_type"], "ai_context");
        assert!(
            ids.contains(&h["entity_id"].as_str().unwrap().to_string()),
            "{h}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn python_agent_rerunning_a_session_stores_nothing_new() {
    python_agent(); // installed, or fail before starting anything
    let s = text_server().await;
    let t = s.new_tenant().await;
    let session = Uuid::new_v4().to_string();
    let query = "which hashtags did best";

    let first = run_json(
        agent(&s, &t.token, t.org, &session, query),
        "the Python agent",
    )
    .await;
    assert_eq!(f64_of(&first, "/logged/stored"), 3.0, "{first}");
    let again = run_json(
        agent(&s, &t.token, t.org, &session, query),
        "the Python agent",
    )
    .await;
    assert_eq!(f64_of(&again, "/logged/stored"), 0.0, "{again}");
    assert_eq!(f64_of(&again, "/logged/duplicates"), 3.0);
    assert_eq!(logged_entries(&s, t.org).await.len(), 3);
    assert_eq!(
        str_of(&again, "/retrieved/entries/0/context_summary"),
        "User asked which hashtags performed best last month"
    );
}
