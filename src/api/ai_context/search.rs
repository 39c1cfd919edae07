//! SearchAiContext: the entries nearest to a vector, or, for a
//! `query_text`, the hybrid search of Search (full text and the text
//! model's vectors, fused) over the entries' texts; every filter inside the
//! search either way.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use tonic::Request;
use uuid::Uuid;

use super::super::query_text::{check_query, embed_query, text_model};
use super::super::{limit, parse_uuid, principal, required_text, threshold};
use super::entry::{
    entry, occurred_range, optional_session, optional_uuid, MAX_MODEL, MAX_SOURCE_TYPE,
};
use super::AiContextApi;
use crate::api::reads::read;
use crate::error::{ApiError, ApiResult};
use crate::proto;
use crate::search::{self, Mode, QueryVector};
use crate::store::ai_context as store;
use crate::store::organizations::OrgRole;
use crate::store::search::ItemFilter;

/// The type of AI context entries' texts (migration 09) and of the
/// vectors the vectorizer makes of them.
const ENTRY_TEXT_TYPE: &str = "ai_context";

/// A request's filters, checked, with how many entries it asks for and
/// the lowest similarity.
struct Filters {
    threshold: f64,
    limit: i64,
    user_id: Option<Uuid>,
    session_id: Option<String>,
    occurred_after: Option<DateTime<Utc>>,
    occurred_before: Option<DateTime<Utc>>,
}

fn filters(r: &proto::SearchAiContextRequest) -> ApiResult<Filters> {
    let (occurred_after, occurred_before) =
        occurred_range(r.occurred_after.as_ref(), r.occurred_before.as_ref())?;
    Ok(Filters {
        threshold: threshold(r.similarity_threshold)?,
        limit: limit("max_results", r.max_results, 10)?,
        user_id: optional_uuid("user_id", &r.user_id)?,
        session_id: optional_session("session_id", r.session_id.clone())?,
        occurred_after,
        occurred_before,
    })
}

impl AiContextApi {
    pub(super) async fn search_ai_context(
        &self,
        req: Request<proto::SearchAiContextRequest>,
    ) -> ApiResult<proto::SearchAiContextResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        let query_text = if r.query_text.is_empty() {
            self.state.check_vector("vector", &r.vector)?;
            None
        } else if !r.vector.is_empty() {
            return Err(ApiError::invalid("send vector or query_text, not both"));
        } else {
            Some(check_query("query_text", &r.query_text)?)
        };
        let filters = filters(r)?;
        let model = if r.model.is_empty() {
            None
        } else {
            Some(required_text("model", &r.model, MAX_MODEL)?)
        };
        let text_model = match query_text {
            Some(_) => {
                let text_model = text_model(&self.state, "query_text")?;
                if model.is_some_and(|m| m != text_model) {
                    return Err(ApiError::invalid(format!(
                        "model {:?} is not the text model ({text_model:?}) that embeds \
                         query_text; leave model empty",
                        r.model
                    )));
                }
                Some(text_model)
            }
            None => None,
        };
        self.state
            .check_batch("source_types", r.source_types.len())?;
        for (i, s) in r.source_types.iter().enumerate() {
            required_text(&format!("source_types[{i}]"), s, MAX_SOURCE_TYPE)?;
        }
        self.state.authorize(&p, org, OrgRole::Viewer).await?;
        let entries = match (query_text, text_model) {
            (Some(text), Some(text_model)) => {
                self.by_text(&req, org, text, text_model, filters).await?
            }
            _ => {
                let rows = read!(&self.state, &req, |db| Ok(store::search(
                    db,
                    &store::Search {
                        organization_id: org,
                        vector: &r.vector,
                        model,
                        threshold: filters.threshold,
                        limit: filters.limit,
                        user_id: filters.user_id,
                        source_types: &r.source_types,
                        session_id: filters.session_id.as_deref(),
                        occurred_after: filters.occurred_after,
                        occurred_before: filters.occurred_before,
                        without_negative_feedback: r.exclude_negative_feedback,
                    },
                )
                .await?))
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "vector has {} dimensions, which have no index",
                        r.vector.len()
                    ))
                })?;
                rows.into_iter()
                    .map(|r| entry(r.entry, r.similarity as f32, Vec::new()))
                    .collect()
            }
        };
        Ok(proto::SearchAiContextResponse { entries })
    }

    /// HYBRID over the entries' texts and the text model's vectors of them,
    /// fused as Search fuses. `similarity` is the entry's cosine similarity
    /// to the query when the vector side found it, else 0; the threshold
    /// applies to what only the vector side found (a full-text match is
    /// kept whatever its vector says).
    async fn by_text(
        &self,
        req: &Request<proto::SearchAiContextRequest>,
        org: Uuid,
        text: &str,
        text_model: &str,
        f: Filters,
    ) -> ApiResult<Vec<proto::AiContextEntry>> {
        let r = req.get_ref();
        let state = &self.state;
        let vector = embed_query(state, "query_text", text).await?;
        let filter = ItemFilter {
            created_after: f.occurred_after,
            created_before: f.occurred_before,
            user_id: f.user_id,
            source_types: r.source_types.clone(),
            session_id: f.session_id,
            without_negative_feedback: r.exclude_negative_feedback,
            ..ItemFilter::default()
        };
        let types = [ENTRY_TEXT_TYPE.to_string()];
        let s = search::Search {
            organization_id: org,
            mode: Mode::Hybrid,
            text: Some(text),
            vector: Some(QueryVector {
                vector: &vector,
                cast: state.index_cast(vector.len() as i32)?,
                model: Some(text_model),
            }),
            entity_types: Some(&types),
            filter: &filter,
            max_results: f.limit,
            vector_weight: state.config.search_vector_weight,
            threshold: f.threshold,
        };
        let (found, rows) = read!(state, req, |db, spare if (true)| {
            let found: Vec<_> = search::run(db, spare, &s)
                .await?
                .into_iter()
                .filter(|hit| hit.text_score > 0.0 || hit.vector_similarity >= f.threshold)
                .collect();
            let ids: Vec<Uuid> = found.iter().map(|f| f.entity_id).collect();
            Ok((found, store::by_ids(db, org, &ids).await?))
        });
        let mut rows: HashMap<Uuid, store::Entry> = rows.into_iter().map(|e| (e.id, e)).collect();
        // An entry deleted between the search and this read is left out.
        Ok(found
            .into_iter()
            .filter_map(|f| {
                rows.remove(&f.entity_id)
                    .map(|e| entry(e, f.vector_similarity as f32, Vec::new()))
            })
            .collect())
    }
}
