//! Every RPC that names an organization, a user or an entity, called as A's owner.
use affinity::proto::{self, Role};
use tonic::Code;
use uuid::Uuid;

use crate::common::server::authed;
use crate::{eref, vector, World, MODEL};

/// Every RPC that names an organization or a user, as A's owner, naming
/// `org` (and `user`, `entity` of it). The code and the message with the
/// named ids replaced, so that answers about real and made-up ids compare.
pub(crate) async fn call_naming(
    w: &World,
    rpc: &str,
    org: &str,
    user: &str,
    entity: &str,
) -> (Code, String) {
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
