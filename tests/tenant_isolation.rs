//! Tenant isolation, RPC by RPC: a user of organization A naming organization
//! B's ids (the organization, its entities, users, context entries, page
//! tokens taken from B or forged) gets PERMISSION_DENIED or nothing of B,
//! and the answer is the same as for ids that do not exist, so A cannot
//! tell whether B's ids exist.
mod common;

use affinity::proto::{self, Role};
use common::server::{authed, service_token, Tenant, TestServer};
use tonic::Code;
use uuid::Uuid;

const DIM: usize = 384;
const MODEL: &str = "m";

fn vector(seed: f32) -> Vec<f32> {
    (0..DIM).map(|i| (i as f32 * 0.37 + seed).sin()).collect()
}

fn eref(id: &str) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: id.to_string(),
    })
}

/// B's data, as A must not see it.
struct World {
    s: TestServer,
    a: Tenant,
    b: Tenant,
    a_post: Uuid,
    b_post: Uuid,
    /// A page token from B's own listing of its AI context.
    b_page_token: String,
}

async fn world() -> World {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let b = s.new_tenant().await;
    let (a_post, b_post) = (Uuid::new_v4(), Uuid::new_v4());
    let service = service_token();
    for (t, post, seed) in [(&a, a_post, 0.0), (&b, b_post, 0.01)] {
        s.similarity()
            .upsert_embeddings(authed(
                proto::UpsertEmbeddingsRequest {
                    organization_id: t.org.to_string(),
                    embeddings: vec![proto::EmbeddingRecord {
                        entity: eref(&post.to_string()),
                        vector: vector(seed),
                        model: MODEL.into(),
                    }],
                },
                &service,
            ))
            .await
            .unwrap();
        s.metrics()
            .record_metrics(authed(
                proto::RecordMetricsRequest {
                    organization_id: t.org.to_string(),
                    idempotency_key: String::new(),
                    points: vec![proto::MetricPoint {
                        entity: eref(&post.to_string()),
                        metric_name: "likes".into(),
                        value: 7.0,
                        recorded_at: None,
                    }],
                },
                &service,
            ))
            .await
            .unwrap();
        for i in 0..3 {
            s.ai_context()
                .log_ai_context(authed(
                    proto::LogAiContextRequest {
                        organization_id: t.org.to_string(),
                        user_id: t.user.to_string(),
                        source_type: "chat".into(),
                        context_summary: format!("entry {i}"),
                        embedding: vector(seed + i as f32 * 0.001),
                        embedding_model: MODEL.into(),
                        ..Default::default()
                    },
                    &t.token,
                ))
                .await
                .unwrap();
        }
    }
    let b_page_token = s
        .ai_context()
        .list_ai_context(authed(
            proto::ListAiContextRequest {
                organization_id: b.org.to_string(),
                page_size: 1,
                ..Default::default()
            },
            &b.token,
        ))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    assert!(!b_page_token.is_empty());
    World {
        s,
        a,
        b,
        a_post,
        b_post,
        b_page_token,
    }
}

/// Every RPC that names an organization or a user, as A's owner, naming
/// `org` (and `user`, `entity` of it). The code and the message with the
/// named ids replaced, so that answers about real and made-up ids compare.
async fn call_naming(w: &World, rpc: &str, org: &str, user: &str, entity: &str) -> (Code, String) {
    let token = &w.a.token;
    let s = &w.s;
    let entity_ref = eref(entity);
    let result: Result<(), tonic::Status> = match rpc {
        "FindSimilarContent" => s
            .similarity()
            .find_similar_content(authed(
                proto::FindSimilarContentRequest {
                    organization_id: org.into(),
                    entity: entity_ref,
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "SearchByVector" => s
            .similarity()
            .search_by_vector(authed(
                proto::SearchByVectorRequest {
                    organization_id: org.into(),
                    vector: vector(0.01),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "UpsertEmbeddings" => s
            .similarity()
            .upsert_embeddings(authed(
                proto::UpsertEmbeddingsRequest {
                    organization_id: org.into(),
                    embeddings: vec![proto::EmbeddingRecord {
                        entity: entity_ref,
                        vector: vector(0.5),
                        model: MODEL.into(),
                    }],
                },
                token,
            ))
            .await
            .map(drop),
        "DeleteEmbeddings" => s
            .similarity()
            .delete_embeddings(authed(
                proto::DeleteEmbeddingsRequest {
                    organization_id: org.into(),
                    entities: vec![entity_ref.unwrap_or_default()],
                },
                token,
            ))
            .await
            .map(drop),
        "RecordMetrics" => s
            .metrics()
            .record_metrics(authed(
                proto::RecordMetricsRequest {
                    organization_id: org.into(),
                    idempotency_key: String::new(),
                    points: vec![proto::MetricPoint {
                        entity: entity_ref,
                        metric_name: "likes".into(),
                        value: 1.0,
                        recorded_at: None,
                    }],
                },
                token,
            ))
            .await
            .map(drop),
        "GetMetricsAggregated" => s
            .metrics()
            .get_metrics_aggregated(authed(
                proto::GetMetricsAggregatedRequest {
                    organization_id: org.into(),
                    entity: entity_ref,
                    metric_name: "likes".into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "UserHasOrgPermission" => s
            .orgs()
            .user_has_org_permission(authed(
                proto::UserHasOrgPermissionRequest {
                    user_id: user.into(),
                    organization_id: org.into(),
                    required_role: Role::Viewer as i32,
                },
                token,
            ))
            .await
            .map(drop),
        "CheckPermissions" => s
            .orgs()
            .check_permissions(authed(
                proto::CheckPermissionsRequest {
                    checks: vec![proto::UserHasOrgPermissionRequest {
                        user_id: user.into(),
                        organization_id: org.into(),
                        required_role: Role::Viewer as i32,
                    }],
                },
                token,
            ))
            .await
            .map(drop),
        "CreateOrganization" => s
            .orgs()
            .create_organization(authed(
                proto::CreateOrganizationRequest {
                    name: "x".into(),
                    slug: format!("x-{}", &Uuid::new_v4().simple().to_string()[..8]),
                    owner_user_id: user.into(),
                },
                token,
            ))
            .await
            .map(drop),
        "ListUserOrganizations" => s
            .orgs()
            .list_user_organizations(authed(
                proto::ListUserOrganizationsRequest {
                    user_id: user.into(),
                },
                token,
            ))
            .await
            .map(drop),
        "PutMember" => s
            .orgs()
            .put_member(authed(
                proto::PutMemberRequest {
                    organization_id: org.into(),
                    user_id: user.into(),
                    role: Role::Viewer as i32,
                },
                token,
            ))
            .await
            .map(drop),
        "RemoveMember" => s
            .orgs()
            .remove_member(authed(
                proto::RemoveMemberRequest {
                    organization_id: org.into(),
                    user_id: user.into(),
                },
                token,
            ))
            .await
            .map(drop),
        "ListMembers" => s
            .orgs()
            .list_members(authed(
                proto::ListMembersRequest {
                    organization_id: org.into(),
                },
                token,
            ))
            .await
            .map(drop),
        "LogAiContext" => s
            .ai_context()
            .log_ai_context(authed(log_request(org, user), token))
            .await
            .map(drop),
        "LogAiContextStream" => s
            .ai_context()
            .log_ai_context_stream(authed(
                tokio_stream::iter(vec![log_request(org, user)]),
                token,
            ))
            .await
            .map(drop),
        "SearchAiContext" => s
            .ai_context()
            .search_ai_context(authed(
                proto::SearchAiContextRequest {
                    organization_id: org.into(),
                    vector: vector(0.01),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "ListAiContext" => s
            .ai_context()
            .list_ai_context(authed(
                proto::ListAiContextRequest {
                    organization_id: org.into(),
                    ..Default::default()
                },
                token,
            ))
            .await
            .map(drop),
        "RecordAiFeedback" => s
            .ai_context()
            .record_ai_feedback(authed(
                proto::RecordAiFeedbackRequest {
                    organization_id: org.into(),
                    entry_id: entity.into(),
                    feedback: Some(proto::AiFeedback {
                        feedback_id: Uuid::new_v4().to_string(),
                        name: "helpful".into(),
                        value: 1.0,
                        ..Default::default()
                    }),
                },
                token,
            ))
            .await
            .map(drop),
        "ExportAiContext" => match s
            .ai_context()
            .export_ai_context(authed(
                proto::ExportAiContextRequest {
                    organization_id: org.into(),
                    ..Default::default()
                },
                token,
            ))
            .await
        {
            Ok(r) => {
                let mut stream = r.into_inner();
                let mut result = Ok(());
                loop {
                    match stream.message().await {
                        Ok(Some(_)) => {}
                        Ok(None) => break,
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                result
            }
            Err(e) => Err(e),
        },
        other => panic!("no such RPC in this test: {other}"),
    };
    match result {
        Ok(()) => (Code::Ok, String::new()),
        Err(status) => {
            let mut message = status.message().to_string();
            for (id, name) in [(org, "<org>"), (user, "<user>"), (entity, "<entity>")] {
                if !id.is_empty() {
                    message = message.replace(id, name);
                }
            }
            (status.code(), message)
        }
    }
}

fn log_request(org: &str, user: &str) -> proto::LogAiContextRequest {
    proto::LogAiContextRequest {
        organization_id: org.into(),
        user_id: user.into(),
        source_type: "chat".into(),
        context_summary: "probe".into(),
        ..Default::default()
    }
}

const ORG_SCOPED: [&str; 17] = [
    "FindSimilarContent",
    "SearchByVector",
    "UpsertEmbeddings",
    "DeleteEmbeddings",
    "RecordMetrics",
    "GetMetricsAggregated",
    "UserHasOrgPermission",
    "CheckPermissions",
    "PutMember",
    "RemoveMember",
    "ListMembers",
    "LogAiContext",
    "LogAiContextStream",
    "SearchAiContext",
    "ListAiContext",
    "RecordAiFeedback",
    "ExportAiContext",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_user_naming_another_organization_is_denied_exactly_as_for_one_that_does_not_exist() {
    let w = world().await;
    let (b_org, b_user, b_post) = (
        w.b.org.to_string(),
        w.b.user.to_string(),
        w.b_post.to_string(),
    );
    let (nobody_org, nobody, no_post) = (
        Uuid::new_v4().to_string(),
        Uuid::new_v4().to_string(),
        Uuid::new_v4().to_string(),
    );
    let before = b_rows(&w).await;
    assert_eq!(before, (4, 1, 3, 1), "a post's and 3 entries' embeddings");
    for rpc in ORG_SCOPED {
        let real = call_naming(&w, rpc, &b_org, &b_user, &b_post).await;
        let made_up = call_naming(&w, rpc, &nobody_org, &nobody, &no_post).await;
        assert_eq!(real.0, Code::PermissionDenied, "{rpc} naming B: {real:?}");
        assert_eq!(
            real, made_up,
            "{rpc}: B's real ids and made-up ones must get the same answer"
        );
    }
    // Acting for B's user, outside any organization.
    for rpc in ["CreateOrganization", "ListUserOrganizations"] {
        let real = call_naming(&w, rpc, &b_org, &b_user, &b_post).await;
        let made_up = call_naming(&w, rpc, &nobody_org, &nobody, &no_post).await;
        assert_eq!(
            real.0,
            Code::PermissionDenied,
            "{rpc} for B's user: {real:?}"
        );
        assert_eq!(real, made_up, "{rpc}");
    }
    assert_eq!(
        b_rows(&w).await,
        before,
        "nothing of B changed: embeddings, points, entries, members"
    );
}

/// B's rows: embeddings, metric points, AI context entries, members.
async fn b_rows(w: &World) -> (i64, i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM embeddings WHERE organization_id = $1),
                (SELECT count(*) FROM time_series_metrics WHERE organization_id = $1),
                (SELECT count(*) FROM ai_context_logs WHERE organization_id = $1),
                (SELECT count(*) FROM organization_members WHERE organization_id = $1)",
    )
    .bind(w.b.org)
    .fetch_one(&w.s.db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_users_own_membership_question_about_another_organization_reveals_nothing() {
    let w = world().await;
    let me = w.a.user.to_string();
    let ask = |org: String| {
        let mut c = w.s.orgs();
        let token = w.a.token.clone();
        let me = me.clone();
        async move {
            c.user_has_org_permission(authed(
                proto::UserHasOrgPermissionRequest {
                    user_id: me,
                    organization_id: org,
                    required_role: Role::Viewer as i32,
                },
                &token,
            ))
            .await
            .unwrap()
            .into_inner()
        }
    };
    let real = ask(w.b.org.to_string()).await;
    let made_up = ask(Uuid::new_v4().to_string()).await;
    assert!(!real.allowed);
    assert_eq!(real.role, Role::Unspecified as i32);
    assert_eq!(real, made_up);
}

#[tokio::test(flavor = "multi_thread")]
async fn inside_its_own_organization_a_user_finds_nothing_of_another_by_its_ids() {
    let w = world().await;
    let (a_org, b_post) = (w.a.org.to_string(), w.b_post.to_string());
    let pool = &w.s.db.pool;

    // B's post as the source of a similarity search in A: as unknown as a
    // post that does not exist.
    let real = call_naming(&w, "FindSimilarContent", &a_org, "", &b_post).await;
    let made_up = call_naming(
        &w,
        "FindSimilarContent",
        &a_org,
        "",
        &Uuid::new_v4().to_string(),
    )
    .await;
    assert_eq!(real.0, Code::NotFound, "{real:?}");
    assert_eq!(real, made_up);

    // A vector next to B's post finds A's post only (among posts; A's own
    // context entries are embedded too).
    let items =
        w.s.similarity()
            .search_by_vector(authed(
                proto::SearchByVectorRequest {
                    organization_id: a_org.clone(),
                    vector: vector(0.01),
                    similarity_threshold: -1.0,
                    max_results: 1000,
                    entity_types: vec!["post".into()],
                    ..Default::default()
                },
                &w.a.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .items;
    let ids: Vec<String> = items
        .iter()
        .filter_map(|i| i.entity.as_ref().map(|e| e.entity_id.clone()))
        .collect();
    assert_eq!(ids, vec![w.a_post.to_string()], "{items:?}");

    // B's post's metrics, asked in A: no buckets.
    let buckets =
        w.s.metrics()
            .get_metrics_aggregated(authed(
                proto::GetMetricsAggregatedRequest {
                    organization_id: a_org.clone(),
                    entity: eref(&b_post),
                    metric_name: "likes".into(),
                    ..Default::default()
                },
                &w.a.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .buckets;
    assert!(buckets.is_empty(), "{buckets:?}");

    // Deleting B's post in A deletes nothing; upserting it in A makes A's own
    // embedding and leaves B's as it was.
    let deleted =
        w.s.similarity()
            .delete_embeddings(authed(
                proto::DeleteEmbeddingsRequest {
                    organization_id: a_org.clone(),
                    entities: vec![eref(&b_post).unwrap()],
                },
                &w.a.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .deleted;
    assert_eq!(deleted, 0);
    let (code, _) = call_naming(&w, "UpsertEmbeddings", &a_org, "", &b_post).await;
    assert_eq!(code, Code::Ok);
    let b_vector: String = sqlx::query_scalar(
        "SELECT embedding::text FROM embeddings WHERE organization_id = $1 AND entity_id = $2",
    )
    .bind(w.b.org)
    .bind(w.b_post)
    .fetch_one(pool)
    .await
    .unwrap();
    let original = pgvector::Vector::from(vector(0.01));
    let original: String = sqlx::query_scalar("SELECT $1::vector::text")
        .bind(original)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(b_vector, original, "B's embedding is untouched");

    // B's user: A cannot log as them, search or list their entries in A,
    // remove them, or see them among A's members.
    let b_user = w.b.user.to_string();
    let (code, _) = call_naming(&w, "LogAiContext", &a_org, &b_user, "").await;
    assert_eq!(code, Code::PermissionDenied);
    let found =
        w.s.ai_context()
            .search_ai_context(authed(
                proto::SearchAiContextRequest {
                    organization_id: a_org.clone(),
                    vector: vector(0.01),
                    user_id: b_user.clone(),
                    similarity_threshold: -1.0,
                    ..Default::default()
                },
                &w.a.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .entries;
    assert!(found.is_empty(), "{found:?}");
    let listed =
        w.s.ai_context()
            .list_ai_context(authed(
                proto::ListAiContextRequest {
                    organization_id: a_org.clone(),
                    user_id: b_user.clone(),
                    ..Default::default()
                },
                &w.a.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .entries;
    assert!(listed.is_empty(), "{listed:?}");
    let removed =
        w.s.orgs()
            .remove_member(authed(
                proto::RemoveMemberRequest {
                    organization_id: a_org.clone(),
                    user_id: b_user.clone(),
                },
                &w.a.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .removed;
    assert!(!removed);
    let members =
        w.s.orgs()
            .list_members(authed(
                proto::ListMembersRequest {
                    organization_id: a_org.clone(),
                },
                &w.a.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .members;
    assert!(members.iter().all(|m| m.user_id != b_user));
}

#[tokio::test(flavor = "multi_thread")]
async fn page_tokens_taken_from_another_organization_or_forged_yield_nothing_of_it() {
    let w = world().await;
    let a_org = w.a.org.to_string();
    let list = |page_token: String| {
        let mut c = w.s.ai_context();
        let token = w.a.token.clone();
        let org = a_org.clone();
        async move {
            c.list_ai_context(authed(
                proto::ListAiContextRequest {
                    organization_id: org,
                    page_token,
                    ..Default::default()
                },
                &token,
            ))
            .await
        }
    };
    // B's token in A's listing: refused, or A's entries only.
    match list(w.b_page_token.clone()).await {
        Ok(r) => {
            let r = r.into_inner();
            assert!(
                r.entries.iter().all(|e| e.organization_id == a_org),
                "B's page token showed another organization's entries: {:?}",
                r.entries
            );
        }
        Err(s) => assert_eq!(s.code(), Code::InvalidArgument, "{s:?}"),
    }
    // B's token in B's organization, by A: denied like any call into B.
    let denied =
        w.s.ai_context()
            .list_ai_context(authed(
                proto::ListAiContextRequest {
                    organization_id: w.b.org.to_string(),
                    page_token: w.b_page_token.clone(),
                    ..Default::default()
                },
                &w.a.token,
            ))
            .await
            .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    // Forged tokens: random bytes, and B's token with a byte changed.
    let mut tampered = w.b_page_token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    for forged in [
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
        "%%%not base64%%%".to_string(),
        String::from_utf8(tampered).unwrap(),
    ] {
        match list(forged.clone()).await {
            Ok(r) => assert!(
                r.into_inner()
                    .entries
                    .iter()
                    .all(|e| e.organization_id == a_org),
                "{forged}"
            ),
            Err(s) => assert_eq!(s.code(), Code::InvalidArgument, "{forged}: {s:?}"),
        }
    }
}
