//! SimilarityService: vector similarity over the central embeddings table.
//!
//! Every call names one organization and sees only that organization's
//! embeddings: reads need ROLE_VIEWER, writes ROLE_EDITOR (service_role: any
//! organization). Requests are validated in full before anything is read or
//! written.

use std::sync::Arc;

use tonic::Request;
use uuid::Uuid;

use super::{
    deadline, entity_ref, entity_type, limit, parse_uuid, principal, required_text, threshold,
    ApiState,
};
use crate::api::reads::read;
use crate::error::{ApiError, ApiResult};
use crate::proto::{self, similarity_service_server::SimilarityService};
use crate::store::organizations::OrgRole;
use crate::store::similarity as store;

/// Longest model name accepted, in bytes.
const MAX_MODEL_BYTES: usize = 200;

pub struct SimilarityApi {
    pub(super) state: Arc<ApiState>,
}

impl SimilarityApi {
    pub fn new(state: Arc<ApiState>) -> Self {
        SimilarityApi { state }
    }
}

/// A list of entity types, each validated, duplicates dropped.
pub(super) fn entity_types(
    state: &ApiState,
    field: &str,
    values: &[String],
) -> ApiResult<Vec<String>> {
    state.check_batch(field, values.len())?;
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for (i, v) in values.iter().enumerate() {
        let t = entity_type(&format!("{field}[{i}]"), v)?;
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

fn item(entity_type: String, entity_id: Uuid, similarity: f64) -> proto::SimilarItem {
    proto::SimilarItem {
        entity: Some(proto::EntityRef {
            entity_type,
            entity_id: entity_id.to_string(),
        }),
        similarity: similarity as f32,
    }
}

/// The calls, each in the crate's result type (`grpc_handlers!` converts
/// to tonic's once).
impl SimilarityApi {
    async fn find_similar_content(
        &self,
        req: Request<proto::FindSimilarContentRequest>,
    ) -> ApiResult<proto::FindSimilarContentResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        let (etype, eid) = entity_ref("entity", r.entity.as_ref())?;
        let threshold = threshold(r.similarity_threshold)?;
        let k = limit("max_results", r.max_results, 10)?;
        let mut targets = entity_types(&self.state, "target_entity_types", &r.target_entity_types)?;
        if targets.is_empty() {
            targets.push(etype.clone());
        }
        self.state.authorize(&p, org, OrgRole::Viewer).await?;
        let rows = read!(&self.state, &req, |db| {
            // An item with embeddings only in another organization is,
            // here, an item without embeddings: nothing of that
            // organization is revealed.
            if !store::has_embedding(&mut *db, org, &etype, eid).await? {
                return Err(ApiError::NotFound(format!(
                    "{etype} {eid} has no embedding in organization {org}"
                )));
            }
            let k = k as i32;
            Ok(store::find_similar_content(db, org, &etype, eid, threshold, k, &targets).await?)
        });
        let items = rows
            .into_iter()
            .filter(|row| {
                // The function guarantees it; never let anything else out.
                let ours = row.organization_id == org;
                if !ours {
                    tracing::error!(%org, other = %row.organization_id,
                        "find_similar_content returned another organization's item; dropped");
                }
                ours
            })
            .map(|row| item(row.entity_type, row.entity_id, row.similarity))
            .collect();
        Ok(proto::FindSimilarContentResponse { items })
    }

    async fn search_by_vector(
        &self,
        req: Request<proto::SearchByVectorRequest>,
    ) -> ApiResult<proto::SearchByVectorResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        self.state.check_vector("vector", &r.vector)?;
        let model = if r.model.is_empty() {
            None
        } else {
            Some(required_text("model", &r.model, MAX_MODEL_BYTES)?)
        };
        let types = entity_types(&self.state, "entity_types", &r.entity_types)?;
        let threshold = threshold(r.similarity_threshold)?;
        let k = limit("max_results", r.max_results, 10)?;
        self.state.authorize(&p, org, OrgRole::Viewer).await?;

        let cast = self.state.index_cast(r.vector.len() as i32)?;
        let query = store::VectorQuery {
            organization_id: org,
            vector: &r.vector,
            cast,
            model,
            entity_types: (!types.is_empty()).then_some(types.as_slice()),
            threshold,
            max_results: k,
        };
        let hits = read!(&self.state, &req, |db| Ok(store::search(db, &query).await?));
        let items = hits
            .into_iter()
            .map(|h| item(h.entity_type, h.entity_id, h.similarity))
            .collect();
        Ok(proto::SearchByVectorResponse { items })
    }

    /// All or none: every record is validated before anything is written,
    /// then all are written in one statement. Several records for the same
    /// (entity, model) are allowed: the last one wins, as if applied in
    /// order, and each counts in `upserted`.
    async fn upsert_embeddings(
        &self,
        req: Request<proto::UpsertEmbeddingsRequest>,
    ) -> ApiResult<proto::UpsertEmbeddingsResponse> {
        let p = principal(&req)?;
        let deadline = deadline(&req);
        let r = req.into_inner();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        if r.embeddings.is_empty() {
            return Err(ApiError::invalid("embeddings is empty; send at least one"));
        }
        self.state.check_batch("embeddings", r.embeddings.len())?;
        let mut records = Vec::with_capacity(r.embeddings.len());
        for (i, e) in r.embeddings.into_iter().enumerate() {
            let (entity_type, entity_id) =
                entity_ref(&format!("embeddings[{i}].entity"), e.entity.as_ref())?;
            let model =
                required_text(&format!("embeddings[{i}].model"), &e.model, MAX_MODEL_BYTES)?
                    .to_string();
            self.state
                .check_vector(&format!("embeddings[{i}].vector"), &e.vector)?;
            records.push(store::NewEmbedding {
                entity_type,
                entity_id,
                model,
                vector: e.vector,
            });
        }
        self.state.authorize(&p, org, OrgRole::Editor).await?;

        let mut db = self.state.db_until(deadline).await?;
        let upserted = store::upsert(db.conn(), org, &records)
            .await
            .map_err(ApiError::from_write)?;
        db.finish().await?;
        Ok(proto::UpsertEmbeddingsResponse {
            upserted: upserted as u32,
        })
    }

    async fn delete_embeddings(
        &self,
        req: Request<proto::DeleteEmbeddingsRequest>,
    ) -> ApiResult<proto::DeleteEmbeddingsResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        if r.entities.is_empty() {
            return Err(ApiError::invalid("entities is empty; send at least one"));
        }
        self.state.check_batch("entities", r.entities.len())?;
        let entities = r
            .entities
            .iter()
            .enumerate()
            .map(|(i, e)| entity_ref(&format!("entities[{i}]"), Some(e)))
            .collect::<ApiResult<Vec<_>>>()?;
        self.state.authorize(&p, org, OrgRole::Editor).await?;

        let mut db = self.state.db(&req).await?;
        let deleted = store::delete(db.conn(), org, &entities).await?;
        db.finish().await?;
        Ok(proto::DeleteEmbeddingsResponse {
            deleted: deleted as u32,
        })
    }
}

grpc_handlers! {
    SimilarityService for SimilarityApi {
        rpc find_similar_content(proto::FindSimilarContentRequest) -> proto::FindSimilarContentResponse;
        rpc search_by_vector(proto::SearchByVectorRequest) -> proto::SearchByVectorResponse;
        rpc upsert_embeddings(proto::UpsertEmbeddingsRequest) -> proto::UpsertEmbeddingsResponse;
        rpc delete_embeddings(proto::DeleteEmbeddingsRequest) -> proto::DeleteEmbeddingsResponse;
        rpc index_texts(proto::IndexTextsRequest) -> proto::IndexTextsResponse;
        rpc search(proto::SearchRequest) -> proto::SearchResponse;
    }
}
