//! Feedback on AI context entries: stored once per feedback_id, given by a
//! user as itself (a service for anyone), carried by listed entries, and
//! refused (nothing stored) when malformed or aimed at another organization.
mod common;

use affinity::proto;
use common::server::{authed, code, service_token, user_token, TestServer};
use tonic::Code;
use uuid::Uuid;

async fn log(server: &TestServer, token: &str, org: Uuid) -> String {
    let r = proto::LogAiContextRequest {
        organization_id: org.to_string(),
        source_type: "chat".into(),
        context_summary: "how do I steam milk?".into(),
        ..Default::default()
    };
    server
        .ai_context()
        .log_ai_context(authed(r, token))
        .await
        .expect("logging an entry")
        .into_inner()
        .id
}

fn feedback(org: Uuid, entry: &str, id: Uuid, value: f64) -> proto::RecordAiFeedbackRequest {
    proto::RecordAiFeedbackRequest {
        organization_id: org.to_string(),
        entry_id: entry.into(),
        feedback: Some(proto::AiFeedback {
            feedback_id: id.to_string(),
            name: "helpful".into(),
            value,
            comment: "spot on".into(),
            ..Default::default()
        }),
    }
}

async fn record(
    server: &TestServer,
    token: &str,
    r: proto::RecordAiFeedbackRequest,
) -> Result<bool, tonic::Status> {
    server
        .ai_context()
        .record_ai_feedback(authed(r, token))
        .await
        .map(|r| r.into_inner().duplicate)
}

async fn stored(server: &TestServer) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM ai_context_feedback")
        .fetch_one(&server.db.pool)
        .await
        .unwrap()
}

async fn listed_feedback(server: &TestServer, token: &str, org: Uuid) -> Vec<proto::AiFeedback> {
    let r = proto::ListAiContextRequest {
        organization_id: org.to_string(),
        ..Default::default()
    };
    let entries = server
        .ai_context()
        .list_ai_context(authed(r, token))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert_eq!(entries.len(), 1);
    entries.into_iter().next().unwrap().feedback
}

#[tokio::test]
async fn feedback_is_stored_once_per_id_and_listed_entries_carry_it() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let entry = log(&server, &t.token, t.org).await;
    let first = Uuid::new_v4();
    assert!(
        !record(&server, &t.token, feedback(t.org, &entry, first, 1.0))
            .await
            .unwrap()
    );
    // A retry, even one that says something else, stores nothing new.
    assert!(
        record(&server, &t.token, feedback(t.org, &entry, first, -1.0))
            .await
            .unwrap()
    );
    // A service gives feedback for anyone, or for no one in particular.
    let someone = Uuid::new_v4();
    let someone_feedback = Uuid::new_v4();
    let mut for_someone = feedback(t.org, &entry, someone_feedback, 0.25);
    if let Some(f) = for_someone.feedback.as_mut() {
        f.user_id = someone.to_string();
        f.name = "correct".into();
        f.created_at = Some(prost_types::Timestamp {
            seconds: 4_000_000_000,
            nanos: 0,
        });
    }
    assert!(!record(&server, &service_token(), for_someone)
        .await
        .unwrap());
    let anonymous = Uuid::new_v4();
    assert!(!record(
        &server,
        &service_token(),
        feedback(t.org, &entry, anonymous, 0.0)
    )
    .await
    .unwrap());
    assert_eq!(stored(&server).await, 3);

    let got = listed_feedback(&server, &t.token, t.org).await;
    let summary: Vec<(String, f64, String, String)> = got
        .iter()
        .map(|f| {
            (
                f.feedback_id.clone(),
                f.value,
                f.user_id.clone(),
                f.name.clone(),
            )
        })
        .collect();
    // Oldest first: the one dated by its sender in the future comes last.
    assert_eq!(
        summary,
        vec![
            (
                first.to_string(),
                1.0,
                t.user.to_string(),
                "helpful".to_string()
            ),
            (
                anonymous.to_string(),
                0.0,
                String::new(),
                "helpful".to_string()
            ),
            (
                someone_feedback.to_string(),
                0.25,
                someone.to_string(),
                "correct".to_string()
            ),
        ]
    );
    assert_eq!(got[0].comment, "spot on");
    assert!(got.iter().all(|f| f.created_at.is_some()));
}

#[tokio::test]
async fn a_user_gives_feedback_only_as_itself_and_with_the_editor_role() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let entry = log(&server, &t.token, t.org).await;
    let mut as_other = feedback(t.org, &entry, Uuid::new_v4(), 1.0);
    if let Some(f) = as_other.feedback.as_mut() {
        f.user_id = Uuid::new_v4().to_string();
    }
    let err = record(&server, &t.token, as_other).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("feedback.user_id"),
        "{}",
        err.message()
    );

    let viewer = Uuid::new_v4();
    server.add_member(t.org, viewer, proto::Role::Viewer).await;
    let got = record(
        &server,
        &user_token(viewer),
        feedback(t.org, &entry, Uuid::new_v4(), 1.0),
    )
    .await;
    assert_eq!(got.unwrap_err().code(), Code::PermissionDenied);

    // Naming oneself is the same as leaving it empty.
    let mut as_self = feedback(t.org, &entry, Uuid::new_v4(), 1.0);
    if let Some(f) = as_self.feedback.as_mut() {
        f.user_id = t.user.to_string();
    }
    assert!(!record(&server, &t.token, as_self).await.unwrap());
    assert_eq!(stored(&server).await, 1);
}

#[tokio::test]
async fn feedback_on_another_organizations_entry_is_not_found_for_members_and_denied_to_others() {
    let server = TestServer::start().await;
    let a = server.new_tenant().await;
    let b = server.new_tenant().await;
    let b_entry = log(&server, &b.token, b.org).await;
    // A member of A, naming A and B's entry: as if the entry did not exist.
    let err = record(
        &server,
        &a.token,
        feedback(a.org, &b_entry, Uuid::new_v4(), 1.0),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let missing = Uuid::new_v4().to_string();
    let err2 = record(
        &server,
        &a.token,
        feedback(a.org, &missing, Uuid::new_v4(), 1.0),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err2.code(), err2.message()),
        (Code::NotFound, err.message())
    );
    // A service naming the wrong organization learns the same.
    let got = record(
        &server,
        &service_token(),
        feedback(a.org, &b_entry, Uuid::new_v4(), 1.0),
    )
    .await;
    assert_eq!(code(got.map(tonic::Response::new)), Code::NotFound);
    // A, naming B: not a member.
    let got = record(
        &server,
        &a.token,
        feedback(b.org, &b_entry, Uuid::new_v4(), 1.0),
    )
    .await;
    assert_eq!(got.unwrap_err().code(), Code::PermissionDenied);
    assert_eq!(stored(&server).await, 0);
}

#[tokio::test]
async fn malformed_feedback_is_refused_naming_the_field_and_nothing_is_stored() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let entry = log(&server, &t.token, t.org).await;
    let with = |change: &dyn Fn(&mut proto::RecordAiFeedbackRequest)| {
        let mut r = feedback(t.org, &entry, Uuid::new_v4(), 1.0);
        change(&mut r);
        r
    };
    let cases: Vec<(&str, proto::RecordAiFeedbackRequest)> = vec![
        (
            "feedback.value",
            with(&|r| r.feedback.as_mut().unwrap().value = f64::NAN),
        ),
        (
            "feedback.value",
            with(&|r| r.feedback.as_mut().unwrap().value = f64::INFINITY),
        ),
        (
            "feedback.value",
            with(&|r| r.feedback.as_mut().unwrap().value = f64::NEG_INFINITY),
        ),
        (
            "feedback.name",
            with(&|r| r.feedback.as_mut().unwrap().name.clear()),
        ),
        (
            "feedback.name",
            with(&|r| r.feedback.as_mut().unwrap().name = "a\0b".into()),
        ),
        (
            "feedback.name",
            with(&|r| r.feedback.as_mut().unwrap().name = "n".repeat(201)),
        ),
        (
            "feedback.feedback_id",
            with(&|r| r.feedback.as_mut().unwrap().feedback_id = "fb-1".into()),
        ),
        (
            "feedback.feedback_id",
            with(&|r| r.feedback.as_mut().unwrap().feedback_id.clear()),
        ),
        (
            "feedback.comment",
            with(&|r| r.feedback.as_mut().unwrap().comment = "\0".into()),
        ),
        (
            "feedback.user_id",
            with(&|r| r.feedback.as_mut().unwrap().user_id = "me".into()),
        ),
        ("feedback", with(&|r| r.feedback = None)),
        ("entry_id", with(&|r| r.entry_id = "42".into())),
        ("organization_id", with(&|r| r.organization_id.clear())),
    ];
    for (field, r) in cases {
        let err = record(&server, &t.token, r).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::InvalidArgument,
            "{field}: {}",
            err.message()
        );
        assert!(err.message().contains(field), "{field}: {}", err.message());
    }
    assert_eq!(stored(&server).await, 0);
}
