//! ExportAiContext: every matching entry, oldest first, from one snapshot;
//! a client that cancels or outlives its deadline frees the export's
//! transaction at once, without reading on.
mod common;

use std::time::Duration;

use affinity::proto;
use common::server::{authed, service_token, TestServer};
use common::wait::{eventually, seen};
use tonic::Code;
use uuid::Uuid;

const T0: i64 = 1_760_000_000;

fn entry(
    org: Uuid,
    user: Uuid,
    session: &str,
    second: i64,
    text: &str,
) -> proto::LogAiContextRequest {
    proto::LogAiContextRequest {
        organization_id: org.to_string(),
        user_id: user.to_string(),
        source_type: "agent".into(),
        context_summary: text.into(),
        session_id: session.into(),
        occurred_at: Some(ts(second)),
        ..Default::default()
    }
}

fn ts(second: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: T0 + second,
        nanos: 0,
    }
}

async fn log_all(server: &TestServer, msgs: Vec<proto::LogAiContextRequest>) {
    for chunk in msgs.chunks(1000) {
        server
            .ai_context()
            .log_ai_context_stream(authed(tokio_stream::iter(chunk.to_vec()), &service_token()))
            .await
            .expect("logging entries");
    }
}

fn export_req(org: Uuid) -> proto::ExportAiContextRequest {
    proto::ExportAiContextRequest {
        organization_id: org.to_string(),
        ..Default::default()
    }
}

async fn export(
    server: &TestServer,
    token: &str,
    r: proto::ExportAiContextRequest,
) -> Result<Vec<proto::AiContextEntry>, tonic::Status> {
    let mut stream = server
        .ai_context()
        .export_ai_context(authed(r, token))
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(e) = stream.message().await? {
        out.push(e);
    }
    Ok(out)
}

fn seconds(entries: &[proto::AiContextEntry]) -> Vec<i64> {
    entries
        .iter()
        .map(|e| e.occurred_at.as_ref().map_or(0, |t| t.seconds - T0))
        .collect()
}

/// Backends of the service holding a transaction open (an export's cursor).
async fn open_transactions(server: &TestServer) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND backend_type = 'client backend' AND xact_start IS NOT NULL",
    )
    .fetch_one(&server.db.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_export_streams_every_matching_entry_oldest_first_within_its_filters() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let other = server.new_tenant().await;
    let bob = Uuid::new_v4();
    let mut msgs = Vec::new();
    for s in [5, 1, 9, 3, 7] {
        msgs.push(entry(t.org, t.user, "s1", s, "mine"));
        msgs.push(entry(t.org, bob, "s2", s * 10, "bob's"));
        msgs.push(entry(
            other.org,
            other.user,
            "s1",
            s,
            "another organization's",
        ));
    }
    log_all(&server, msgs).await;

    let all = export(&server, &t.token, export_req(t.org)).await.unwrap();
    assert_eq!(seconds(&all), vec![1, 3, 5, 7, 9, 10, 30, 50, 70, 90]);
    assert!(all.iter().all(|e| e.organization_id == t.org.to_string()));

    let mut by_user = export_req(t.org);
    by_user.user_id = bob.to_string();
    assert_eq!(
        seconds(&export(&server, &t.token, by_user).await.unwrap()),
        vec![10, 30, 50, 70, 90]
    );

    let mut by_session = export_req(t.org);
    by_session.session_id = "s1".into();
    assert_eq!(
        seconds(&export(&server, &t.token, by_session).await.unwrap()),
        vec![1, 3, 5, 7, 9]
    );

    // After is inclusive, before exclusive; an empty range is empty.
    let mut range = export_req(t.org);
    range.occurred_after = Some(ts(3));
    range.occurred_before = Some(ts(30));
    assert_eq!(
        seconds(&export(&server, &t.token, range.clone()).await.unwrap()),
        vec![3, 5, 7, 9, 10]
    );
    range.occurred_before = Some(ts(3));
    assert!(export(&server, &t.token, range.clone())
        .await
        .unwrap()
        .is_empty());

    range.occurred_after = Some(ts(4));
    let err = export(&server, &t.token, range).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("occurred_after"),
        "{}",
        err.message()
    );

    let mut long_session = export_req(t.org);
    long_session.session_id = "s".repeat(257);
    let err = export(&server, &t.token, long_session).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("session_id"), "{}", err.message());

    let err = export(&server, &other.token, export_req(t.org))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
}

/// Entries of about 2 KB each: many more than the export's batch, channel
/// and the connection's flow-control windows hold, so that an export of
/// them waits for its client.
const MANY: i64 = 12_000;
/// Where the entries logged during an export begin, after the first ones.
const LATER: i64 = MANY + 2_000;

/// Entries large enough that a few thousand fill every buffer between the
/// export's task and a client that does not read.
async fn many_entries(
    server: &TestServer,
    org: Uuid,
    user: Uuid,
    n: i64,
) -> Vec<proto::LogAiContextRequest> {
    let text = "a long turn of an agent's conversation ".repeat(50);
    let msgs: Vec<_> = (0..n).map(|i| entry(org, user, "long", i, &text)).collect();
    log_all(server, msgs.clone()).await;
    msgs
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_is_one_snapshot_whatever_is_logged_or_scored_while_it_runs() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    many_entries(&server, t.org, t.user, MANY).await;
    let mut stream = server
        .ai_context()
        .export_ai_context(authed(export_req(t.org), &t.token))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    // The export is still reading (its transaction is open) when the new
    // entries and the feedback are committed.
    eventually(Duration::from_secs(10), || async {
        let n = open_transactions(&server).await;
        seen(n == 1, n)
    })
    .await;
    let later: Vec<_> = (0..100)
        .map(|i| entry(t.org, t.user, "long", LATER + i, "later"))
        .collect();
    log_all(&server, later).await;
    // Feedback on the last entry, which the export has not read yet.
    let last: Uuid = sqlx::query_scalar(
        "SELECT id FROM ai_context_logs WHERE occurred_at < $1 ORDER BY occurred_at DESC LIMIT 1",
    )
    .bind(chrono::DateTime::from_timestamp(T0 + LATER, 0))
    .fetch_one(&server.db.pool)
    .await
    .unwrap();
    let r = proto::RecordAiFeedbackRequest {
        organization_id: t.org.to_string(),
        entry_id: last.to_string(),
        feedback: Some(proto::AiFeedback {
            feedback_id: Uuid::new_v4().to_string(),
            name: "helpful".into(),
            value: 1.0,
            ..Default::default()
        }),
    };
    server
        .ai_context()
        .record_ai_feedback(authed(r, &t.token))
        .await
        .unwrap();
    let mut got = vec![first];
    while let Some(e) = stream.message().await.unwrap() {
        got.push(e);
    }
    assert_eq!(got.len() as i64, MANY);
    assert_eq!(seconds(&got), (0..MANY).collect::<Vec<_>>());
    assert!(got.iter().all(|e| e.feedback.is_empty()));
    // The next export sees both.
    let again = export(&server, &t.token, export_req(t.org)).await.unwrap();
    assert_eq!(again.len() as i64, MANY + 100);
    let last_read = (MANY - 1) as usize;
    assert_eq!(again[last_read].id, last.to_string());
    assert_eq!(again[last_read].feedback.len(), 1);
    assert_eq!(open_transactions(&server).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_export_frees_its_transaction_at_once() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    many_entries(&server, t.org, t.user, MANY).await;
    let mut stream = server
        .ai_context()
        .export_ai_context(authed(export_req(t.org), &t.token))
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    eventually(Duration::from_secs(10), || async {
        let n = open_transactions(&server).await;
        seen(n == 1, n)
    })
    .await;
    drop(stream);
    eventually(Duration::from_secs(5), || async {
        let n = open_transactions(&server).await;
        seen(n == 0, n)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_export_past_its_deadline_frees_its_transaction_and_ends_with_deadline_exceeded() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    many_entries(&server, t.org, t.user, MANY).await;
    let mut req = authed(export_req(t.org), &t.token);
    req.set_timeout(Duration::from_millis(1_500));
    let mut stream = server
        .ai_context()
        .export_ai_context(req)
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    // Not reading on: the deadline passes while the export waits for the
    // client, and the export lets go of the database by itself.
    eventually(Duration::from_secs(10), || async {
        let n = open_transactions(&server).await;
        seen(n == 0, n)
    })
    .await;
    let mut received = 1;
    let status = loop {
        match stream.message().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the export ended normally after {received} entries"),
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(received < MANY);
}
