//! Running one call against the server, listing its tables, and seeding a tenant.
use std::collections::BTreeSet;

use affinity::proto;
use tonic::Code;
use uuid::Uuid;

use crate::cases::{Call, Seeded};
use crate::common::server::{authed, service_token, TestServer};

// ------------------------------------------------------------- execution

/// The status code of one call (OK or the error's code).
pub(crate) async fn execute(s: &TestServer, token: &str, call: Call) -> Code {
    fn code<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Code {
        r.map_or_else(|e| e.code(), |_| Code::Ok)
    }
    match call {
        Call::FindSimilarContent(r) => {
            code(s.similarity().find_similar_content(authed(r, token)).await)
        }
        Call::SearchByVector(r) => code(s.similarity().search_by_vector(authed(r, token)).await),
        Call::UpsertEmbeddings(r) => code(s.similarity().upsert_embeddings(authed(r, token)).await),
        Call::DeleteEmbeddings(r) => code(s.similarity().delete_embeddings(authed(r, token)).await),
        Call::RecordMetrics(r) => code(s.metrics().record_metrics(authed(r, token)).await),
        Call::GetMetricsAggregated(r) => {
            code(s.metrics().get_metrics_aggregated(authed(r, token)).await)
        }
        Call::UserHasOrgPermission(r) => {
            code(s.orgs().user_has_org_permission(authed(r, token)).await)
        }
        Call::CheckPermissions(r) => code(s.orgs().check_permissions(authed(r, token)).await),
        Call::CreateOrganization(r) => code(s.orgs().create_organization(authed(r, token)).await),
        Call::ListUserOrganizations(r) => {
            code(s.orgs().list_user_organizations(authed(r, token)).await)
        }
        Call::PutMember(r) => code(s.orgs().put_member(authed(r, token)).await),
        Call::RemoveMember(r) => code(s.orgs().remove_member(authed(r, token)).await),
        Call::ListMembers(r) => code(s.orgs().list_members(authed(r, token)).await),
        Call::LogAiContext(r) => code(s.ai_context().log_ai_context(authed(r, token)).await),
        Call::LogAiContextStream(r) => code(
            s.ai_context()
                .log_ai_context_stream(authed(tokio_stream::iter(r), token))
                .await,
        ),
        Call::SearchAiContext(r) => code(s.ai_context().search_ai_context(authed(r, token)).await),
        Call::ListAiContext(r) => code(s.ai_context().list_ai_context(authed(r, token)).await),
        Call::RecordAiFeedback(r) => {
            code(s.ai_context().record_ai_feedback(authed(r, token)).await)
        }
        Call::ExportAiContext(r) => {
            match s.ai_context().export_ai_context(authed(r, token)).await {
                Ok(res) => {
                    // Read to the end: an error may come mid-stream.
                    let mut stream = res.into_inner();
                    loop {
                        match stream.message().await {
                            Ok(Some(_)) => {}
                            Ok(None) => break Code::Ok,
                            Err(e) => break e.code(),
                        }
                    }
                }
                Err(e) => e.code(),
            }
        }
        Call::VerifyMigrationIntegrity => code(
            s.maintenance()
                .verify_migration_integrity(authed(
                    proto::VerifyMigrationIntegrityRequest {},
                    token,
                ))
                .await,
        ),
        Call::ArchiveOldMetrics(r) => {
            code(s.maintenance().archive_old_metrics(authed(r, token)).await)
        }
    }
}

pub(crate) async fn public_tables(s: &TestServer) -> BTreeSet<String> {
    sqlx::query_scalar("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
        .fetch_all(&s.db.pool)
        .await
        .expect("listing tables")
        .into_iter()
        .collect()
}

/// One tenant with an embedded entity, a metric point and an AI context
/// entry, so that valid-looking requests reach deep validation.
pub(crate) async fn seed(s: &TestServer) -> Seeded {
    let t = s.new_tenant().await;
    let entity = Uuid::new_v4();
    let service = service_token();
    let entity_ref = proto::EntityRef {
        entity_type: "post".into(),
        entity_id: entity.to_string(),
    };
    s.similarity()
        .upsert_embeddings(authed(
            proto::UpsertEmbeddingsRequest {
                organization_id: t.org.to_string(),
                embeddings: vec![proto::EmbeddingRecord {
                    entity: Some(entity_ref.clone()),
                    vector: (0..384).map(|i| (i as f32).sin()).collect(),
                    model: "m".into(),
                }],
            },
            &service,
        ))
        .await
        .expect("seeding an embedding");
    s.metrics()
        .record_metrics(authed(
            proto::RecordMetricsRequest {
                organization_id: t.org.to_string(),
                idempotency_key: String::new(),
                points: vec![proto::MetricPoint {
                    entity: Some(entity_ref),
                    metric_name: "likes".into(),
                    value: 3.0,
                    recorded_at: None,
                }],
            },
            &service,
        ))
        .await
        .expect("seeding a metric point");
    s.ai_context()
        .log_ai_context(authed(
            proto::LogAiContextRequest {
                organization_id: t.org.to_string(),
                user_id: t.user.to_string(),
                source_type: "chat".into(),
                context_summary: "seed".into(),
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("seeding an AI context entry");
    Seeded {
        org: t.org,
        owner: t.user,
        entity,
    }
}
