//! Calls refused before any work: bad or missing tokens, oversized requests.
use std::time::{SystemTime, UNIX_EPOCH};

use affinity::proto;
use jsonwebtoken::{encode, EncodingKey, Header};
use tonic::Code;

use crate::common::server::{authed, code, TestServer, SECRET};
use crate::common::TestDb;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn sign(claims: serde_json::Value, secret: &str) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_bad_token_is_unauthenticated() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let user = t.user.to_string();
    let good = serde_json::json!({"sub": user, "role": "authenticated", "exp": now() + 600});
    // alg "none": a header and claims with no signature.
    let b64 = |v: serde_json::Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let alg_none = format!(
        "{}.{}.",
        b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
        b64(good.clone())
    );
    let tokens: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("garbage", Some("Bearer not.a.jwt".into())),
        (
            "not bearer",
            Some(format!("Basic {}", sign(good.clone(), SECRET))),
        ),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "wrong secret",
            Some(format!(
                "Bearer {}",
                sign(good.clone(), "another-secret-another-secret-xx")
            )),
        ),
        (
            "expired",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"sub": user, "role": "authenticated", "exp": now() - 600}),
                    SECRET
                )
            )),
        ),
        (
            "not yet valid",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"sub": user, "role": "authenticated", "exp": now() + 6000, "nbf": now() + 3000}),
                    SECRET
                )
            )),
        ),
        (
            "no sub",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"role": "authenticated", "exp": now() + 600}),
                    SECRET
                )
            )),
        ),
        (
            "sub not a uuid",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"sub": "bob", "role": "authenticated", "exp": now() + 600}),
                    SECRET
                )
            )),
        ),
        (
            "unknown role",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"sub": user, "role": "superuser", "exp": now() + 600}),
                    SECRET
                )
            )),
        ),
        (
            "no exp",
            Some(format!(
                "Bearer {}",
                sign(
                    serde_json::json!({"sub": user, "role": "service_role"}),
                    SECRET
                )
            )),
        ),
    ];
    for (what, header) in tokens {
        let mut req = tonic::Request::new(proto::ListMembersRequest {
            organization_id: t.org.to_string(),
        });
        if let Some(h) = header {
            req.metadata_mut()
                .insert("authorization", h.parse().unwrap());
        }
        let err = s.orgs().list_members(req).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::Unauthenticated,
            "{what}: {}",
            err.message()
        );
    }
    // The same call with a good token works (the tests above are not vacuous).
    let ok = s
        .orgs()
        .list_members(authed(
            proto::ListMembersRequest {
                organization_id: t.org.to_string(),
            },
            &sign(good, SECRET),
        ))
        .await;
    assert_eq!(code(ok), Code::Ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_over_the_message_size_limit_is_resource_exhausted() {
    let s = TestServer::start_with(TestDb::empty().await, |c| c.max_message_bytes = 4096).await;
    let t = s.new_tenant().await;
    let big = proto::CreateOrganizationRequest {
        name: "x".repeat(8192),
        slug: "big".into(),
        owner_user_id: String::new(),
    };
    let err = s
        .orgs()
        .create_organization(authed(big, &t.token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{}", err.message());
    // Under the limit, the same call is judged on its merits.
    let small = proto::CreateOrganizationRequest {
        name: "x".repeat(100),
        slug: "small".into(),
        owner_user_id: String::new(),
    };
    assert_eq!(
        code(s.orgs().create_organization(authed(small, &t.token)).await),
        Code::Ok
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_refuses_a_call_without_a_token() {
    let s = TestServer::start().await;
    let (mut sim, mut met, mut org, mut ai, mut mnt) = (
        s.similarity(),
        s.metrics(),
        s.orgs(),
        s.ai_context(),
        s.maintenance(),
    );
    use tonic::Request as R;
    let codes = vec![
        (
            "FindSimilarContent",
            code(sim.find_similar_content(R::new(Default::default())).await),
        ),
        (
            "SearchByVector",
            code(sim.search_by_vector(R::new(Default::default())).await),
        ),
        (
            "UpsertEmbeddings",
            code(sim.upsert_embeddings(R::new(Default::default())).await),
        ),
        (
            "DeleteEmbeddings",
            code(sim.delete_embeddings(R::new(Default::default())).await),
        ),
        (
            "RecordMetrics",
            code(met.record_metrics(R::new(Default::default())).await),
        ),
        (
            "GetMetricsAggregated",
            code(met.get_metrics_aggregated(R::new(Default::default())).await),
        ),
        (
            "UserHasOrgPermission",
            code(
                org.user_has_org_permission(R::new(Default::default()))
                    .await,
            ),
        ),
        (
            "CheckPermissions",
            code(org.check_permissions(R::new(Default::default())).await),
        ),
        (
            "CreateOrganization",
            code(org.create_organization(R::new(Default::default())).await),
        ),
        (
            "ListUserOrganizations",
            code(
                org.list_user_organizations(R::new(Default::default()))
                    .await,
            ),
        ),
        (
            "PutMember",
            code(org.put_member(R::new(Default::default())).await),
        ),
        (
            "RemoveMember",
            code(org.remove_member(R::new(Default::default())).await),
        ),
        (
            "ListMembers",
            code(org.list_members(R::new(Default::default())).await),
        ),
        (
            "LogAiContext",
            code(ai.log_ai_context(R::new(Default::default())).await),
        ),
        (
            "LogAiContextStream",
            code(
                ai.log_ai_context_stream(R::new(tokio_stream::iter(Vec::<
                    proto::LogAiContextRequest,
                >::new())))
                    .await,
            ),
        ),
        (
            "SearchAiContext",
            code(ai.search_ai_context(R::new(Default::default())).await),
        ),
        (
            "ListAiContext",
            code(ai.list_ai_context(R::new(Default::default())).await),
        ),
        (
            "VerifyMigrationIntegrity",
            code(
                mnt.verify_migration_integrity(R::new(Default::default()))
                    .await,
            ),
        ),
        (
            "ArchiveOldMetrics",
            code(mnt.archive_old_metrics(R::new(Default::default())).await),
        ),
    ];
    assert_eq!(codes.len(), 19, "every RPC of the contract");
    for (rpc, c) in codes {
        assert_eq!(c, Code::Unauthenticated, "{rpc}");
    }
}
