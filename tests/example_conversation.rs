//! The Python agent's conversation (`examples/agent-python/conversation.py`)
//! against a real server with the real text model: turns logged in one
//! session, context retrieved by text, feedback recorded, the unhelpful
//! answer left out, the session paged and exported. Assertions are on its
//! JSON output and on the database.
mod common;

use common::examples::{array_of, python_script, run_json, str_of};
use common::server::TestServer;
use common::text::text_server;
use serde_json::Value;
use tokio::process::Command;
use uuid::Uuid;

fn conversation(s: &TestServer, token: &str, org: Uuid, session: &str) -> Command {
    let mut cmd = python_script("conversation.py");
    cmd.env("AFFINITY_ADDR", s.addr.to_string())
        .env("AFFINITY_TOKEN", token)
        .env("AFFINITY_ORG_ID", org.to_string())
        .env("AFFINITY_SESSION_ID", session);
    cmd
}

fn ids(v: &Value, pointer: &str) -> Vec<String> {
    array_of(v, pointer)
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect()
}

/// (entries, feedback records) of an organization.
async fn stored(s: &TestServer, org: Uuid) -> (i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM ai_context_logs WHERE organization_id = $1),
                (SELECT count(*) FROM ai_context_feedback WHERE organization_id = $1)",
    )
    .bind(org)
    .fetch_one(&s.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn python_agent_conversation_logs_a_session_leaves_out_the_unhelpful_answer_and_exports_it() {
    python_script("conversation.py"); // installed, or fail before starting anything
    let s = text_server().await;
    let t = s.new_tenant().await;
    let session = Uuid::new_v4().to_string();
    let out = run_json(
        conversation(&s, &t.token, t.org, &session),
        "the conversation",
    )
    .await;

    // Four turns, each the child of the one before.
    let logged = ids(&out, "/logged");
    assert_eq!(logged.len(), 4, "{out}");
    let turns = array_of(&out, "/logged");
    assert_eq!(turns[0]["parent_id"], "");
    for i in 1..4 {
        assert_eq!(turns[i]["parent_id"], logged[i - 1].as_str(), "{out}");
    }
    assert!(turns.iter().all(|t| t["duplicate"] == false), "{out}");

    // Context for the next prompt: the session's three turns, the wrong
    // answer among them until it is marked unhelpful.
    let before = ids(&out, "/context_before");
    for id in &logged[..3] {
        assert!(before.contains(id), "{id} not in {before:?}");
    }
    let feedback = array_of(&out, "/feedback");
    assert!(feedback.iter().all(|f| f["duplicate"] == false), "{out}");
    assert_eq!(out["feedback_retry_duplicate"], true, "{out}");
    let after = ids(&out, "/context_after");
    assert!(!after.contains(&logged[0]), "unhelpful answer in {after:?}");
    assert!(
        after.contains(&logged[1]) && after.contains(&logged[2]),
        "{after:?}"
    );

    // The session oldest first, two by two.
    let pages: Vec<Vec<String>> = array_of(&out, "/pages")
        .iter()
        .map(|p| {
            p.as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    assert!(pages.iter().all(|p| p.len() <= 2), "{pages:?}");
    assert_eq!(pages.concat(), logged);

    // Exported in order, each entry with its feedback.
    assert_eq!(ids(&out, "/exported"), logged, "{out}");
    let exported = array_of(&out, "/exported");
    let user = t.user.to_string();
    for (i, e) in exported.iter().enumerate() {
        assert_eq!(e["session_id"], session.as_str());
        let expected: Vec<Value> = match i {
            0 => vec![serde_json::json!({"name": "helpful", "value": -1.0, "user_id": user})],
            1 => vec![serde_json::json!({"name": "helpful", "value": 1.0, "user_id": user})],
            _ => Vec::new(),
        };
        assert_eq!(*array_of(e, "/feedback"), expected, "{e}");
    }
    assert_eq!(
        str_of(&out, "/exported/0/context_summary"),
        "User asked which hashtags to use for the latte art reel"
    );
    assert_eq!(stored(&s, t.org).await, (4, 2));

    // The same session again: every turn and every feedback a duplicate.
    let again = run_json(
        conversation(&s, &t.token, t.org, &session),
        "the conversation, rerun",
    )
    .await;
    assert_eq!(ids(&again, "/logged"), logged);
    assert!(array_of(&again, "/logged")
        .iter()
        .all(|t| t["duplicate"] == true));
    assert!(array_of(&again, "/feedback")
        .iter()
        .all(|f| f["duplicate"] == true));
    assert_eq!(stored(&s, t.org).await, (4, 2));
}
