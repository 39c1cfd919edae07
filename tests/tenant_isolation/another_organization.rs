//! Naming B's ids is denied exactly as naming ids that do not exist, and changes nothing of B.
use affinity::proto::{self, Role};
use tonic::Code;
use uuid::Uuid;

use crate::common::server::authed;
use crate::support::call_naming;
use crate::{world, World};

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
