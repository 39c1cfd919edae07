//! One hostile request generator per RPC, and the case (caller and call) of each run.
use affinity::proto;
use proptest::prelude::*;

use crate::cases::{Call, Case, Seeded, Who};
use crate::fields::{batch, entity_ref, log_entry, permission_check, strings};
use crate::values::{
    hostile_enum, hostile_f32, hostile_f64, hostile_page_token, hostile_string, hostile_time_zone,
    hostile_timestamp, hostile_u32, hostile_vector, uuid_string,
};

/// One request generator per RPC of the five services.
pub(crate) fn call(s: &Seeded) -> BoxedStrategy<Call> {
    let find_similar = (
        uuid_string(s),
        entity_ref(s),
        hostile_f32(),
        hostile_u32(),
        strings(hostile_string()),
    )
        .prop_map(
            |(organization_id, entity, similarity_threshold, max_results, target_entity_types)| {
                Call::FindSimilarContent(proto::FindSimilarContentRequest {
                    organization_id,
                    entity,
                    similarity_threshold,
                    max_results,
                    target_entity_types,
                })
            },
        );
    let search_by_vector = (
        uuid_string(s),
        hostile_vector(),
        hostile_string(),
        hostile_f32(),
        hostile_u32(),
        strings(hostile_string()),
    )
        .prop_map(
            |(organization_id, vector, model, similarity_threshold, max_results, entity_types)| {
                Call::SearchByVector(proto::SearchByVectorRequest {
                    organization_id,
                    vector,
                    model,
                    similarity_threshold,
                    max_results,
                    entity_types,
                })
            },
        );
    let record = (entity_ref(s), hostile_vector(), hostile_string())
        .prop_map(|(entity, vector, model)| proto::EmbeddingRecord {
            entity,
            vector,
            model,
        })
        .boxed();
    let upsert = (uuid_string(s), batch(record)).prop_map(|(organization_id, embeddings)| {
        Call::UpsertEmbeddings(proto::UpsertEmbeddingsRequest {
            organization_id,
            embeddings,
        })
    });
    let entity = entity_ref(s).prop_map(Option::unwrap_or_default).boxed();
    let delete = (uuid_string(s), batch(entity)).prop_map(|(organization_id, entities)| {
        Call::DeleteEmbeddings(proto::DeleteEmbeddingsRequest {
            organization_id,
            entities,
        })
    });
    let point = (
        entity_ref(s),
        hostile_string(),
        hostile_f64(),
        hostile_timestamp(),
    )
        .prop_map(
            |(entity, metric_name, value, recorded_at)| proto::MetricPoint {
                entity,
                metric_name,
                value,
                recorded_at,
            },
        )
        .boxed();
    let record_metrics = (uuid_string(s), batch(point), hostile_string()).prop_map(
        |(organization_id, points, idempotency_key)| {
            Call::RecordMetrics(proto::RecordMetricsRequest {
                organization_id,
                idempotency_key,
                points,
            })
        },
    );
    let aggregated = (
        (uuid_string(s), entity_ref(s), hostile_string()),
        (hostile_enum(), hostile_timestamp(), hostile_timestamp()),
        hostile_time_zone(),
    )
        .prop_map(
            |((organization_id, entity, metric_name), (granularity, start, end), time_zone)| {
                Call::GetMetricsAggregated(proto::GetMetricsAggregatedRequest {
                    organization_id,
                    entity,
                    metric_name,
                    granularity,
                    start,
                    end,
                    time_zone,
                    ..Default::default()
                })
            },
        );
    let has_permission = permission_check(s).prop_map(Call::UserHasOrgPermission);
    let check_permissions = batch(permission_check(s))
        .prop_map(|checks| Call::CheckPermissions(proto::CheckPermissionsRequest { checks }));
    let slug = prop_oneof![
        2 => "[a-z0-9-]{1,20}".boxed(),
        1 => hostile_string(),
    ];
    let create_org =
        (hostile_string(), slug, uuid_string(s)).prop_map(|(name, slug, owner_user_id)| {
            Call::CreateOrganization(proto::CreateOrganizationRequest {
                name,
                slug,
                owner_user_id,
            })
        });
    let list_orgs = uuid_string(s).prop_map(|user_id| {
        Call::ListUserOrganizations(proto::ListUserOrganizationsRequest { user_id })
    });
    let put_member = (uuid_string(s), uuid_string(s), hostile_enum()).prop_map(
        |(organization_id, user_id, role)| {
            Call::PutMember(proto::PutMemberRequest {
                organization_id,
                user_id,
                role,
            })
        },
    );
    let remove_member = (uuid_string(s), uuid_string(s)).prop_map(|(organization_id, user_id)| {
        Call::RemoveMember(proto::RemoveMemberRequest {
            organization_id,
            user_id,
        })
    });
    let list_members = uuid_string(s).prop_map(|organization_id| {
        Call::ListMembers(proto::ListMembersRequest { organization_id })
    });
    let log = log_entry(s).prop_map(Call::LogAiContext);
    let log_stream =
        proptest::collection::vec(log_entry(s), 0..4).prop_map(Call::LogAiContextStream);
    let search_ai = (
        (uuid_string(s), hostile_vector(), hostile_string()),
        (hostile_f32(), hostile_u32(), uuid_string(s)),
        (strings(hostile_string()), hostile_string()),
        (
            hostile_string(),
            hostile_timestamp(),
            hostile_timestamp(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (organization_id, vector, model),
                (similarity_threshold, max_results, user_id),
                (source_types, query_text),
                (session_id, occurred_after, occurred_before, exclude_negative_feedback),
            )| {
                Call::SearchAiContext(proto::SearchAiContextRequest {
                    organization_id,
                    vector,
                    model,
                    similarity_threshold,
                    max_results,
                    user_id,
                    source_types,
                    query_text,
                    session_id,
                    occurred_after,
                    occurred_before,
                    exclude_negative_feedback,
                })
            },
        );
    let list_ai = (
        uuid_string(s),
        uuid_string(s),
        hostile_u32(),
        hostile_page_token(),
        hostile_string(),
    )
        .prop_map(
            |(organization_id, user_id, page_size, page_token, session_id)| {
                Call::ListAiContext(proto::ListAiContextRequest {
                    organization_id,
                    user_id,
                    page_size,
                    page_token,
                    session_id,
                })
            },
        );
    let feedback_value = prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        any::<f64>(),
    ];
    let feedback = (
        (uuid_string(s), uuid_string(s), uuid_string(s)),
        (hostile_string(), feedback_value, hostile_string()),
        (uuid_string(s), hostile_timestamp(), any::<bool>()),
    )
        .prop_map(
            |(
                (organization_id, entry_id, feedback_id),
                (name, value, comment),
                (user_id, created_at, present),
            )| {
                Call::RecordAiFeedback(proto::RecordAiFeedbackRequest {
                    organization_id,
                    entry_id,
                    feedback: present.then_some(proto::AiFeedback {
                        feedback_id,
                        name,
                        value,
                        comment,
                        user_id,
                        created_at,
                    }),
                })
            },
        );
    let export = (
        (uuid_string(s), uuid_string(s), hostile_string()),
        (hostile_timestamp(), hostile_timestamp()),
    )
        .prop_map(
            |((organization_id, user_id, session_id), (occurred_after, occurred_before))| {
                Call::ExportAiContext(proto::ExportAiContextRequest {
                    organization_id,
                    user_id,
                    session_id,
                    occurred_after,
                    occurred_before,
                })
            },
        );
    let verify = Just(Call::VerifyMigrationIntegrity);
    let archive = hostile_u32().prop_map(|older_than_days| {
        Call::ArchiveOldMetrics(proto::ArchiveOldMetricsRequest { older_than_days })
    });
    prop_oneof![
        find_similar.boxed(),
        search_by_vector.boxed(),
        upsert.boxed(),
        delete.boxed(),
        record_metrics.boxed(),
        aggregated.boxed(),
        has_permission.boxed(),
        check_permissions.boxed(),
        create_org.boxed(),
        list_orgs.boxed(),
        put_member.boxed(),
        remove_member.boxed(),
        list_members.boxed(),
        log.boxed(),
        log_stream.boxed(),
        search_ai.boxed(),
        list_ai.boxed(),
        feedback.boxed(),
        export.boxed(),
        verify.boxed(),
        archive.boxed(),
    ]
    .boxed()
}

pub(crate) fn case(s: &Seeded) -> impl Strategy<Value = Case> {
    let who = prop_oneof![
        3 => Just(Who::Service),
        2 => Just(Who::Owner),
        1 => Just(Who::Stranger),
    ];
    (who, call(s)).prop_map(|(who, call)| Case(who, call))
}
