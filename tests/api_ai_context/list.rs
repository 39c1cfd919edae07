//! Listing AI context: newest-first paging without gaps and the refusals.

use crate::common::server::{authed, code, service_token, user_token, TestServer};
use crate::{list_req, log_req, log_stream};
use affinity::proto::{self, Role};
use std::collections::HashSet;
use tonic::{Code, Request};
use uuid::Uuid;

// ----------------------------------------------------------- ListAiContext

#[tokio::test(flavor = "multi_thread")]
async fn list_pages_newest_first_without_gaps_or_duplicates() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let other = Uuid::new_v4();
    // 23 entries; several share an occurred_at (ties are ordered by id).
    let msgs: Vec<_> = (0..23)
        .map(|i| proto::LogAiContextRequest {
            user_id: if i % 3 == 0 { other } else { t.user }.to_string(),
            occurred_at: Some(prost_types::Timestamp {
                seconds: 1_700_000_000 + (i / 3) as i64,
                nanos: 500_000,
            }),
            context_summary: format!("{i}"),
            ..log_req(t.org, "chat")
        })
        .collect();
    let r = log_stream(&s, msgs, &service_token()).await.unwrap();
    assert_eq!(r.stored, 23);

    let page_through = |user: Option<Uuid>, page_size: u32| {
        let mut c = s.ai_context();
        let token = t.token.clone();
        let org = t.org;
        async move {
            let mut seen = Vec::new();
            let mut page_token = String::new();
            let mut pages = 0;
            loop {
                let r = c
                    .list_ai_context(authed(
                        proto::ListAiContextRequest {
                            user_id: user.map(|u| u.to_string()).unwrap_or_default(),
                            page_size,
                            page_token: page_token.clone(),
                            ..list_req(org)
                        },
                        &token,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                pages += 1;
                let max = if page_size == 0 { 50 } else { page_size };
                assert!(r.entries.len() <= max as usize);
                seen.extend(r.entries);
                if r.next_page_token.is_empty() {
                    break;
                }
                page_token = r.next_page_token;
            }
            (seen, pages)
        }
    };

    let (all, pages) = page_through(None, 5).await;
    assert_eq!(pages, 5);
    assert_eq!(all.len(), 23);
    let ids: HashSet<_> = all.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), 23, "no duplicates");
    let key = |e: &proto::AiContextEntry| {
        let t = e.occurred_at.unwrap();
        (t.seconds, t.nanos, e.id.parse::<Uuid>().unwrap())
    };
    for w in all.windows(2) {
        assert!(
            key(&w[0]) > key(&w[1]),
            "newest first, then by id descending"
        );
    }
    let from_db: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ai_context_logs WHERE organization_id = $1 ORDER BY occurred_at DESC, id DESC",
    )
    .bind(t.org)
    .fetch_all(&s.db.pool)
    .await
    .unwrap();
    assert_eq!(
        all.iter()
            .map(|e| e.id.parse::<Uuid>().unwrap())
            .collect::<Vec<_>>(),
        from_db
    );

    // A page size that divides the count exactly ends with an empty token.
    let (all_23, pages) = page_through(None, 23).await;
    assert_eq!((all_23.len(), pages), (23, 1));
    // The default page size (50) takes everything at once.
    let (default_page, pages) = page_through(None, 0).await;
    assert_eq!((default_page.len(), pages), (23, 1));

    // User filter, paged.
    let (theirs, pages) = page_through(Some(other), 3).await;
    assert_eq!((theirs.len(), pages), (8, 3));
    assert!(theirs.iter().all(|e| e.user_id == other.to_string()));

    // An organization with no entries: empty page, no token.
    let empty = s.new_tenant().await;
    let r = s
        .ai_context()
        .list_ai_context(authed(list_req(empty.org), &empty.token))
        .await
        .unwrap()
        .into_inner();
    assert!(r.entries.is_empty() && r.next_page_token.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_refuses_bad_requests_with_the_contract_codes() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let msgs: Vec<_> = (0..3).map(|_| log_req(t.org, "chat")).collect();
    log_stream(&s, msgs, &t.token).await.unwrap();
    let mut c = s.ai_context();
    let first = c
        .list_ai_context(authed(
            proto::ListAiContextRequest {
                page_size: 1,
                ..list_req(t.org)
            },
            &t.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.next_page_token.is_empty());

    // A viewer reads.
    let viewer = Uuid::new_v4();
    s.add_member(t.org, viewer, Role::Viewer).await;
    let seen = c
        .list_ai_context(authed(list_req(t.org), &user_token(viewer)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(seen.entries.len(), 3);

    assert_eq!(
        code(c.list_ai_context(Request::new(list_req(t.org))).await),
        Code::Unauthenticated
    );
    let cases: Vec<(&str, proto::ListAiContextRequest)> = vec![
        (
            "malformed organization_id",
            proto::ListAiContextRequest {
                organization_id: "1234".into(),
                ..list_req(t.org)
            },
        ),
        (
            "malformed user_id",
            proto::ListAiContextRequest {
                user_id: "me".into(),
                ..list_req(t.org)
            },
        ),
        (
            "page_size over 1000",
            proto::ListAiContextRequest {
                page_size: 1001,
                ..list_req(t.org)
            },
        ),
        (
            "garbage page_token",
            proto::ListAiContextRequest {
                page_token: "%%%".into(),
                ..list_req(t.org)
            },
        ),
        (
            "truncated page_token",
            proto::ListAiContextRequest {
                page_token: first.next_page_token[..20].into(),
                ..list_req(t.org)
            },
        ),
        (
            "page_token of another filter",
            proto::ListAiContextRequest {
                page_token: first.next_page_token.clone(),
                user_id: t.user.to_string(),
                ..list_req(t.org)
            },
        ),
    ];
    for (what, req) in cases {
        assert_eq!(
            code(c.list_ai_context(authed(req, &t.token)).await),
            Code::InvalidArgument,
            "{what}"
        );
    }
}
