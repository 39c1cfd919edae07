//! No RPC of AiContextService ever crosses organizations.

use crate::common::server::{authed, code, service_token, Tenant, TestServer};
use crate::{
    assert_denied_alike, at_angle, count_entries, list_req, log, log_req, log_stream, search_req,
};
use affinity::proto;
use tonic::Code;
use uuid::Uuid;

// ---------------------------------------------------- tenant isolation

/// Two organizations with the same content: same vectors, same keys.
async fn twin_tenants(s: &TestServer) -> (Tenant, Tenant, Vec<String>, Vec<String>) {
    let a = s.new_tenant().await;
    let b = s.new_tenant().await;
    let mut ids = (Vec::new(), Vec::new());
    for (t, out) in [(&a, &mut ids.0), (&b, &mut ids.1)] {
        for i in 0..5 {
            let r = log(
                s,
                proto::LogAiContextRequest {
                    idempotency_key: format!("shared-{i}"),
                    embedding: at_angle(i as f32 * 5.0),
                    embedding_model: "m".into(),
                    ..log_req(t.org, "chat")
                },
                &t.token,
            )
            .await;
            assert!(
                !r.duplicate,
                "the same key in another organization is independent"
            );
            out.push(r.id);
        }
    }
    (a, b, ids.0, ids.1)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_cannot_log_into_another_organization() {
    let s = TestServer::start().await;
    let (a, b, _, b_ids) = twin_tenants(&s).await;
    let mut c = s.ai_context();
    let fake = Uuid::new_v4();
    let real = c
        .log_ai_context(authed(log_req(b.org, "chat"), &a.token))
        .await
        .unwrap_err();
    let made_up = c
        .log_ai_context(authed(log_req(fake, "chat"), &a.token))
        .await
        .unwrap_err();
    assert_denied_alike(real, b.org, made_up, fake);
    // A retry of B's key by A's user neither stores nor reveals B's id.
    let retry = c
        .log_ai_context(authed(
            proto::LogAiContextRequest {
                idempotency_key: "shared-0".into(),
                ..log_req(b.org, "chat")
            },
            &a.token,
        ))
        .await;
    assert_eq!(code(retry), Code::PermissionDenied);
    // The same key in A is A's own entry, not B's.
    let in_a = log(
        &s,
        proto::LogAiContextRequest {
            idempotency_key: "shared-0".into(),
            ..log_req(a.org, "chat")
        },
        &a.token,
    )
    .await;
    assert!(in_a.duplicate);
    assert_ne!(in_a.id, b_ids[0]);
    assert_eq!(count_entries(&s, b.org).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_cannot_stream_into_another_organization() {
    let s = TestServer::start().await;
    let (a, b, _, _) = twin_tenants(&s).await;
    let fake = Uuid::new_v4();
    let mixed = vec![
        log_req(a.org, "chat"),
        log_req(b.org, "chat"),
        log_req(a.org, "chat"),
    ];
    let real = log_stream(&s, mixed, &a.token).await.unwrap_err();
    let made_up = log_stream(
        &s,
        vec![log_req(a.org, "chat"), log_req(fake, "chat")],
        &a.token,
    )
    .await
    .unwrap_err();
    assert_denied_alike(real, b.org, made_up, fake);
    assert_eq!(
        count_entries(&s, a.org).await,
        5,
        "nothing of the stream stored in A"
    );
    assert_eq!(count_entries(&s, b.org).await, 5);
    // B's keys streamed in A are A's duplicates, counted against A only.
    let keys: Vec<_> = (0..5)
        .map(|i| proto::LogAiContextRequest {
            idempotency_key: format!("shared-{i}"),
            ..log_req(a.org, "chat")
        })
        .collect();
    let r = log_stream(&s, keys, &a.token).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (0, 5));
    let keys: Vec<_> = (5..8)
        .map(|i| proto::LogAiContextRequest {
            idempotency_key: format!("shared-{i}"),
            ..log_req(a.org, "chat")
        })
        .collect();
    let r = log_stream(&s, keys, &a.token).await.unwrap();
    assert_eq!((r.stored, r.duplicates), (3, 0));
    assert_eq!(count_entries(&s, b.org).await, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn search_never_crosses_organizations() {
    let s = TestServer::start().await;
    let (a, b, a_ids, _) = twin_tenants(&s).await;
    let mut c = s.ai_context();
    let fake = Uuid::new_v4();
    let real = c
        .search_ai_context(authed(search_req(b.org, at_angle(0.0)), &a.token))
        .await
        .unwrap_err();
    let made_up = c
        .search_ai_context(authed(search_req(fake, at_angle(0.0)), &a.token))
        .await
        .unwrap_err();
    assert_denied_alike(real, b.org, made_up, fake);
    // Identical vectors in B never show up in A, for a user or service_role.
    for token in [a.token.clone(), service_token()] {
        let got = c
            .search_ai_context(authed(
                proto::SearchAiContextRequest {
                    max_results: 1000,
                    ..search_req(a.org, at_angle(0.0))
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
            .entries;
        assert_eq!(got.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), a_ids);
        assert!(got.iter().all(|e| e.organization_id == a.org.to_string()));
    }
    // Filtering by B's user in A finds nothing of B.
    let got = c
        .search_ai_context(authed(
            proto::SearchAiContextRequest {
                user_id: b.user.to_string(),
                ..search_req(a.org, at_angle(0.0))
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    assert!(got.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn list_never_crosses_organizations() {
    let s = TestServer::start().await;
    let (a, b, a_ids, _) = twin_tenants(&s).await;
    let mut c = s.ai_context();
    let fake = Uuid::new_v4();
    let real = c
        .list_ai_context(authed(list_req(b.org), &a.token))
        .await
        .unwrap_err();
    let made_up = c
        .list_ai_context(authed(list_req(fake), &a.token))
        .await
        .unwrap_err();
    assert_denied_alike(real, b.org, made_up, fake);
    // service_role listing A sees A's entries only.
    let got = c
        .list_ai_context(authed(list_req(a.org), &service_token()))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let mut got: Vec<_> = got.into_iter().map(|e| e.id).collect();
    got.sort();
    let mut want = a_ids.clone();
    want.sort();
    assert_eq!(got, want);
    // A page token taken from B's listing does not work in A.
    let b_page = c
        .list_ai_context(authed(
            proto::ListAiContextRequest {
                page_size: 2,
                ..list_req(b.org)
            },
            &b.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(!b_page.next_page_token.is_empty());
    for token in [a.token.clone(), service_token()] {
        let reused = c
            .list_ai_context(authed(
                proto::ListAiContextRequest {
                    page_token: b_page.next_page_token.clone(),
                    ..list_req(a.org)
                },
                &token,
            ))
            .await;
        assert_eq!(code(reused), Code::InvalidArgument);
    }
}
