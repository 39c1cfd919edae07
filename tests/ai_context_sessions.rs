//! AI context sessions: a session's turns page oldest first, entries name
//! the entry they follow from (in their own organization only), and session
//! ids are bounded.
mod common;

use affinity::proto;
use common::server::{authed, TestServer};
use tonic::Code;
use uuid::Uuid;

fn turn(
    org: Uuid,
    session: &str,
    seconds: i64,
    parent: Option<&str>,
) -> proto::LogAiContextRequest {
    proto::LogAiContextRequest {
        organization_id: org.to_string(),
        source_type: "chat".into(),
        context_summary: format!("turn at {seconds}"),
        session_id: session.into(),
        parent_id: parent.unwrap_or_default().into(),
        occurred_at: Some(prost_types::Timestamp {
            seconds: 1_760_000_000 + seconds,
            nanos: 0,
        }),
        ..Default::default()
    }
}

async fn log(
    server: &TestServer,
    token: &str,
    r: proto::LogAiContextRequest,
) -> Result<String, tonic::Status> {
    server
        .ai_context()
        .log_ai_context(authed(r, token))
        .await
        .map(|r| r.into_inner().id)
}

async fn page(
    server: &TestServer,
    token: &str,
    org: Uuid,
    session: &str,
    page_token: &str,
) -> Result<proto::ListAiContextResponse, tonic::Status> {
    let r = proto::ListAiContextRequest {
        organization_id: org.to_string(),
        session_id: session.into(),
        page_size: 3,
        page_token: page_token.into(),
        ..Default::default()
    };
    server
        .ai_context()
        .list_ai_context(authed(r, token))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_session_pages_oldest_first_and_its_pages_refuse_another_filter() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    // Logged out of order, with another session's turns and session-less
    // entries in between.
    let mut ids = Vec::new();
    for s in [5, 1, 7, 3, 2, 6, 4] {
        ids.push((
            s,
            log(&server, &t.token, turn(t.org, "conv-1", s, None))
                .await
                .unwrap(),
        ));
        log(&server, &t.token, turn(t.org, "conv-2", s, None))
            .await
            .unwrap();
        log(&server, &t.token, turn(t.org, "", s, None))
            .await
            .unwrap();
    }
    ids.sort();
    let expected: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();

    let mut got = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let p = page(&server, &t.token, t.org, "conv-1", &token)
            .await
            .unwrap();
        pages += 1;
        for e in &p.entries {
            assert_eq!(e.session_id, "conv-1");
        }
        got.extend(p.entries.into_iter().map(|e| e.id));
        if p.next_page_token.is_empty() {
            break;
        }
        token = p.next_page_token;
        // A page token of one session is refused with another, or none.
        for other in ["conv-2", ""] {
            let refused = page(&server, &t.token, t.org, other, &token)
                .await
                .unwrap_err();
            assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
            assert!(refused.message().contains("page_token"), "{refused:?}");
        }
    }
    assert_eq!(got, expected, "the conversation in order");
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn parent_id_names_an_entry_of_the_same_organization_or_is_refused_alike() {
    let server = TestServer::start().await;
    let a = server.new_tenant().await;
    let b = server.new_tenant().await;
    let first = log(&server, &a.token, turn(a.org, "s", 1, None))
        .await
        .unwrap();
    let reply = log(&server, &a.token, turn(a.org, "s", 2, Some(&first)))
        .await
        .unwrap();
    let listed = page(&server, &a.token, a.org, "s", "").await.unwrap();
    assert_eq!(listed.entries[1].id, reply);
    assert_eq!(listed.entries[1].parent_id, first);
    assert_eq!(listed.entries[0].parent_id, "");

    // Another organization's entry and an entry that does not exist: the
    // same code and message (the id aside), nothing stored.
    let others = log(&server, &b.token, turn(b.org, "s", 1, None))
        .await
        .unwrap();
    let made_up = Uuid::new_v4().to_string();
    let foreign = log(&server, &a.token, turn(a.org, "s", 3, Some(&others)))
        .await
        .unwrap_err();
    let missing = log(&server, &a.token, turn(a.org, "s", 3, Some(&made_up)))
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::InvalidArgument, "{foreign:?}");
    assert_eq!(missing.code(), Code::InvalidArgument, "{missing:?}");
    assert!(foreign.message().contains("parent_id"), "{foreign:?}");
    assert_eq!(
        foreign.message().replace(&others, "<id>"),
        missing.message().replace(&made_up, "<id>")
    );
    let malformed = log(&server, &a.token, turn(a.org, "s", 3, Some("nope")))
        .await
        .unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert!(malformed.message().contains("parent_id"), "{malformed:?}");

    // In a stream, a bad parent fails the stream with nothing stored.
    let messages = vec![
        turn(a.org, "s", 4, Some(&first)),
        turn(a.org, "s", 5, Some(&others)),
    ];
    let refused = server
        .ai_context()
        .log_ai_context_stream(authed(tokio_stream::iter(messages), &a.token))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("parent_id"), "{refused:?}");
    let after = page(&server, &a.token, a.org, "s", "").await.unwrap();
    assert_eq!(
        after.entries.len(),
        2,
        "nothing of the refused calls stored"
    );
}

#[tokio::test]
async fn session_ids_over_256_bytes_are_refused_naming_the_field() {
    let server = TestServer::start().await;
    let t = server.new_tenant().await;
    let longest = "é".repeat(128); // 256 bytes
    log(&server, &t.token, turn(t.org, &longest, 1, None))
        .await
        .unwrap();
    let listed = page(&server, &t.token, t.org, &longest, "").await.unwrap();
    assert_eq!(listed.entries.len(), 1);

    let too_long = format!("{longest}x");
    let refused = log(&server, &t.token, turn(t.org, &too_long, 2, None))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("session_id"), "{refused:?}");
    let refused = page(&server, &t.token, t.org, &too_long, "")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("session_id"), "{refused:?}");
    let nul = log(&server, &t.token, turn(t.org, "a\0b", 3, None))
        .await
        .unwrap_err();
    assert_eq!(nul.code(), Code::InvalidArgument);
    assert!(nul.message().contains("session_id"), "{nul:?}");
}
