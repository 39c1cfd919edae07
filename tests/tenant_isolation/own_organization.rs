//! Inside its own organization, a user finds and changes nothing of another one by its ids.
use affinity::proto;
use tonic::Code;
use uuid::Uuid;

use crate::common::server::authed;
use crate::support::call_naming;
use crate::{eref, vector, world};

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
