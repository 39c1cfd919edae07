//! Every RPC of the contract once, with real requests and their answers
//! checked: the part of the suite that runs where the database is deployed
//! differently (behind PgBouncer, on Citus).
#![allow(dead_code)]

use affinity::proto;
use uuid::Uuid;

use super::server::{authed, service_token, user_token, TestServer};
use super::text::{text_record, EMBEDDED_WITHIN};
use super::wait::{eventually, seen};

fn post(id: Uuid) -> Option<proto::EntityRef> {
    Some(proto::EntityRef {
        entity_type: "post".into(),
        entity_id: id.to_string(),
    })
}

/// Calls every RPC once on `s` (a server with the text model), checking
/// each answer; DeleteEmbeddings last.
pub async fn every_rpc_answers(s: &TestServer) {
    let t = s.new_tenant().await; // CreateOrganization
    let (org, service) = (t.org.to_string(), service_token());
    let (mut sim, mut met, mut orgs, mut ai, mut mnt) = (
        s.similarity(),
        s.metrics(),
        s.orgs(),
        s.ai_context(),
        s.maintenance(),
    );
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let vector = |angle: f32| {
        let mut v = vec![0.0f32; 384];
        (v[0], v[1]) = (angle.cos(), angle.sin());
        v
    };
    let records = vec![
        proto::EmbeddingRecord {
            entity: post(a),
            vector: vector(0.0),
            model: "m".into(),
        },
        proto::EmbeddingRecord {
            entity: post(b),
            vector: vector(0.1),
            model: "m".into(),
        },
    ];
    let r = sim
        .upsert_embeddings(authed(
            proto::UpsertEmbeddingsRequest {
                organization_id: org.clone(),
                embeddings: records,
            },
            &service,
        ))
        .await;
    assert!(r.is_ok(), "UpsertEmbeddings: {r:?}");
    let similar = sim
        .find_similar_content(authed(
            proto::FindSimilarContentRequest {
                organization_id: org.clone(),
                entity: post(a),
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("FindSimilarContent")
        .into_inner();
    assert_eq!(similar.items.len(), 1, "{similar:?}");
    let by_vector = sim
        .search_by_vector(authed(
            proto::SearchByVectorRequest {
                organization_id: org.clone(),
                vector: vector(0.05),
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("SearchByVector")
        .into_inner();
    assert_eq!(by_vector.items.len(), 2, "{by_vector:?}");

    // Texts: stored through the pooler, embedded by the vectorizer on the
    // direct URL, found by words and by meaning.
    let note = Uuid::new_v4();
    sim.index_texts(authed(
        proto::IndexTextsRequest {
            organization_id: org.clone(),
            texts: vec![text_record(
                "note",
                note,
                "Latte art workshop on Saturday at the roastery",
            )],
        },
        &service,
    ))
    .await
    .expect("IndexTexts");
    let search = |mode: proto::SearchMode| proto::SearchRequest {
        organization_id: org.clone(),
        query_text: "latte art".into(),
        mode: mode as i32,
        entity_types: vec!["note".into()],
        ..Default::default()
    };
    let text = sim
        .search(authed(search(proto::SearchMode::Text), &t.token))
        .await
        .expect("Search (TEXT)")
        .into_inner();
    assert_eq!(text.hits.len(), 1, "{text:?}");
    let (sim2, token) = (s.similarity(), t.token.clone());
    let hybrid = search(proto::SearchMode::Hybrid);
    eventually(EMBEDDED_WITHIN, || {
        let (mut sim, req, token) = (sim2.clone(), hybrid.clone(), token.clone());
        async move {
            let r = sim.search(authed(req, &token)).await;
            let found = r
                .as_ref()
                .map(|r| r.get_ref().hits.iter().any(|h| h.vector_similarity > 0.0))
                .unwrap_or(false);
            seen(found, format!("{r:?}"))
        }
    })
    .await;

    // Metrics.
    met.record_metrics(authed(
        proto::RecordMetricsRequest {
            organization_id: org.clone(),
            idempotency_key: String::new(),
            points: vec![proto::MetricPoint {
                entity: post(a),
                metric_name: "likes".into(),
                value: 3.0,
                recorded_at: None,
            }],
        },
        &service,
    ))
    .await
    .expect("RecordMetrics");
    let mut aggregation = super::server::aggregation(t.org);
    aggregation.entity = post(a);
    let buckets = met
        .get_metrics_aggregated(authed(aggregation, &t.token))
        .await
        .expect("GetMetricsAggregated")
        .into_inner();
    assert_eq!(buckets.buckets.iter().map(|b| b.sum).sum::<f64>(), 3.0);
    let top = met
        .get_top_entities(authed(
            proto::GetTopEntitiesRequest {
                organization_id: org.clone(),
                entity_type: "post".into(),
                metric_name: "likes".into(),
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("GetTopEntities")
        .into_inner();
    assert_eq!(top.entities.len(), 1, "{top:?}");

    // Organizations.
    let member = Uuid::new_v4();
    s.add_member(t.org, member, proto::Role::Viewer).await; // PutMember
    let check = |user: Uuid| proto::UserHasOrgPermissionRequest {
        user_id: user.to_string(),
        organization_id: org.clone(),
        required_role: proto::Role::Viewer as i32,
    };
    let allowed = orgs
        .user_has_org_permission(authed(check(member), &service))
        .await
        .expect("UserHasOrgPermission")
        .into_inner();
    assert!(allowed.allowed);
    let checks = orgs
        .check_permissions(authed(
            proto::CheckPermissionsRequest {
                checks: vec![check(member), check(Uuid::new_v4())],
            },
            &service,
        ))
        .await
        .expect("CheckPermissions")
        .into_inner();
    assert_eq!(
        checks.results.iter().map(|r| r.allowed).collect::<Vec<_>>(),
        [true, false]
    );
    let listed = orgs
        .list_user_organizations(authed(
            proto::ListUserOrganizationsRequest {
                user_id: member.to_string(),
            },
            &user_token(member),
        ))
        .await
        .expect("ListUserOrganizations")
        .into_inner();
    // The organization it was added to (and a personal workspace).
    assert!(
        listed
            .memberships
            .iter()
            .any(|m| m.organization.as_ref().is_some_and(|o| o.id == org)),
        "{listed:?}"
    );
    let members = orgs
        .list_members(authed(
            proto::ListMembersRequest {
                organization_id: org.clone(),
            },
            &t.token,
        ))
        .await
        .expect("ListMembers")
        .into_inner();
    assert_eq!(members.members.len(), 2);
    assert!(s.remove_member(t.org, member, &t.token).await); // RemoveMember

    // AI context.
    let entry = |summary: &str| proto::LogAiContextRequest {
        organization_id: org.clone(),
        user_id: t.user.to_string(),
        source_type: "chat".into(),
        context_summary: summary.into(),
        session_id: "s1".into(),
        ..Default::default()
    };
    let logged = ai
        .log_ai_context(authed(entry("asked about latte art"), &t.token))
        .await
        .expect("LogAiContext")
        .into_inner();
    let streamed = ai
        .log_ai_context_stream(authed(
            tokio_stream::iter(vec![entry("asked about cold brew")]),
            &t.token,
        ))
        .await
        .expect("LogAiContextStream")
        .into_inner();
    assert_eq!(streamed.stored, 1);
    ai.record_ai_feedback(authed(
        proto::RecordAiFeedbackRequest {
            organization_id: org.clone(),
            entry_id: logged.id.clone(),
            feedback: Some(proto::AiFeedback {
                feedback_id: Uuid::new_v4().to_string(),
                name: "helpful".into(),
                value: 1.0,
                ..Default::default()
            }),
        },
        &t.token,
    ))
    .await
    .expect("RecordAiFeedback");
    let list = ai
        .list_ai_context(authed(
            proto::ListAiContextRequest {
                organization_id: org.clone(),
                session_id: "s1".into(),
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("ListAiContext")
        .into_inner();
    assert_eq!(list.entries.len(), 2);
    let found = ai
        .search_ai_context(authed(
            proto::SearchAiContextRequest {
                organization_id: org.clone(),
                query_text: "latte art".into(),
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("SearchAiContext")
        .into_inner();
    assert!(!found.entries.is_empty());
    let mut export = ai
        .export_ai_context(authed(
            proto::ExportAiContextRequest {
                organization_id: org.clone(),
                ..Default::default()
            },
            &t.token,
        ))
        .await
        .expect("ExportAiContext")
        .into_inner();
    let mut exported = 0;
    while export.message().await.expect("an export message").is_some() {
        exported += 1;
    }
    assert_eq!(exported, 2);

    // Maintenance, and the deletion last.
    mnt.verify_migration_integrity(authed(proto::VerifyMigrationIntegrityRequest {}, &service))
        .await
        .expect("VerifyMigrationIntegrity");
    mnt.archive_old_metrics(authed(
        proto::ArchiveOldMetricsRequest { older_than_days: 0 },
        &service,
    ))
    .await
    .expect("ArchiveOldMetrics");
    sim.delete_embeddings(authed(
        proto::DeleteEmbeddingsRequest {
            organization_id: org.clone(),
            entities: vec![post(b).expect("a ref")],
        },
        &service,
    ))
    .await
    .expect("DeleteEmbeddings");
}
