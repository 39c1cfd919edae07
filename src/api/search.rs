//! SimilarityService.Search: TEXT, VECTOR or HYBRID retrieval over the
//! items' texts and vectors, with filters and snippets (`crate::search`).
//! Everything is checked before anything is read; the query is embedded
//! (when it must be) before a database connection is taken.

use std::borrow::Cow;

use tonic::Request;

use super::query_text::{embed_query, text_model};
use super::search_filter::item_filter;
use super::similarity::{entity_types, SimilarityApi};
use super::{limit, parse_uuid, principal, required_text, threshold};
use crate::api::reads::read;
use crate::error::{ApiError, ApiResult};
use crate::proto::{self, SearchMode};
use crate::search::{self, Mode, QueryVector};
use crate::store::organizations::OrgRole;
use crate::store::search::{only_own_types, unknown_types};

/// Longest query text, in bytes (the contract's 8 KiB): what a person types.
pub const MAX_SEARCH_TEXT_BYTES: usize = 8 << 10;

/// The mode a request asks for; UNSPECIFIED is HYBRID with a text, VECTOR
/// without one (the contract).
fn mode(value: i32, has_text: bool) -> ApiResult<Mode> {
    match SearchMode::try_from(value) {
        Ok(SearchMode::Unspecified) if has_text => Ok(Mode::Hybrid),
        Ok(SearchMode::Unspecified | SearchMode::Vector) => Ok(Mode::Vector),
        Ok(SearchMode::Hybrid) => Ok(Mode::Hybrid),
        Ok(SearchMode::Text) => Ok(Mode::Text),
        Err(_) => Err(ApiError::invalid(format!(
            "mode {value} is not a SearchMode (HYBRID, VECTOR or TEXT)"
        ))),
    }
}

/// The query text, checked (None when empty).
fn query_text(text: &str) -> ApiResult<Option<&str>> {
    if text.is_empty() {
        return Ok(None);
    }
    let text = required_text("query_text", text, MAX_SEARCH_TEXT_BYTES)?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid("query_text is only whitespace"));
    }
    Ok(Some(text))
}

/// Where the vector side's query vector comes from.
enum VectorSource<'a> {
    None,
    /// The caller's, with the model it names (None: any of its dimension).
    Given(&'a [f32], Option<&'a str>),
    /// The query text, embedded by the text model of this name.
    Embed(&'a str),
}

fn vector_weight(value: Option<f32>, default: f64) -> ApiResult<f64> {
    match value {
        None => Ok(default),
        Some(w) if w.is_finite() && (0.0..=1.0).contains(&w) => Ok(f64::from(w)),
        Some(w) => Err(ApiError::invalid(format!(
            "vector_weight is {w}; it must be in [0, 1]"
        ))),
    }
}

impl SimilarityApi {
    pub(super) async fn search(
        &self,
        req: Request<proto::SearchRequest>,
    ) -> ApiResult<proto::SearchResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let state = &self.state;
        let org = parse_uuid("organization_id", &r.organization_id)?;
        let text = query_text(&r.query_text)?;
        let mode = mode(r.mode, text.is_some())?;
        if text.is_none() && mode != Mode::Vector {
            return Err(ApiError::invalid(format!(
                "query_text is required in {} mode",
                if mode == Mode::Text { "TEXT" } else { "HYBRID" }
            )));
        }
        if !r.vector.is_empty() {
            state.check_vector("vector", &r.vector)?;
        }
        if mode == Mode::Vector && text.is_none() && r.vector.is_empty() {
            return Err(ApiError::invalid(
                "query_text or vector is required in VECTOR mode",
            ));
        }
        let model = match r.model.as_str() {
            "" => None,
            m => Some(required_text("model", m, 200)?),
        };
        let types = entity_types(state, "entity_types", &r.entity_types)?;
        let k = limit("max_results", r.max_results, 10)?;
        let filter = item_filter(state, r.filter.as_ref())?;
        let weight = vector_weight(r.vector_weight, state.config.search_vector_weight)?;
        let threshold = threshold(r.similarity_threshold)?;

        // The vector side: the caller's vector, or the query text embedded
        // by the text model (as a query). TEXT needs neither.
        let source = if mode == Mode::Text {
            VectorSource::None
        } else if !r.vector.is_empty() {
            VectorSource::Given(&r.vector, model)
        } else {
            let text_model = text_model(state, "query_text")?;
            if let Some(m) = model.filter(|m| *m != text_model) {
                return Err(ApiError::invalid(format!(
                    "model {m:?} is not the service's text model ({text_model:?}): \
                     send a vector of that model, or leave model empty"
                )));
            }
            VectorSource::Embed(text_model)
        };
        state.authorize(&p, org, OrgRole::Viewer).await?;
        if !only_own_types(&types) {
            // Before the query is embedded (a connection of its own, not
            // held while the model works).
            let mut conn = state.conn().await?;
            if let Some(t) = unknown_types(&mut conn, org, &types).await?.first() {
                let i = types.iter().position(|x| x == t).unwrap_or_default();
                return Err(ApiError::invalid(format!(
                    "entity_types[{i}] {t:?} is not a type of any item of organization {org}"
                )));
            }
        }
        let (vector, vector_model): (Option<Cow<'_, [f32]>>, Option<&str>) = match source {
            VectorSource::None => (None, None),
            VectorSource::Given(v, m) => (Some(Cow::Borrowed(v)), m),
            VectorSource::Embed(m) => {
                // A text is there whenever no vector is (checked above).
                let q = text.unwrap_or_default();
                (
                    Some(Cow::Owned(embed_query(state, "query_text", q).await?)),
                    Some(m),
                )
            }
        };
        let query_vector = match &vector {
            Some(v) => Some(QueryVector {
                vector: v,
                cast: state.index_cast(v.len() as i32)?,
                model: vector_model,
            }),
            None => None,
        };

        let s = search::Search {
            organization_id: org,
            mode,
            text,
            vector: query_vector,
            entity_types: (!types.is_empty()).then_some(types.as_slice()),
            filter: &filter,
            max_results: k,
            vector_weight: weight,
            threshold,
        };
        // HYBRID's two sides run at once on a spare connection, if any.
        let (found, snippets) = read!(state, &req, |db, spare if (mode == Mode::Hybrid)| {
            let found = search::run(db, spare, &s).await?;
            let snippets = match r.with_snippets {
                true => search::snippets(db, org, text.unwrap_or_default(), &found).await?,
                false => Vec::new(),
            };
            Ok((found, snippets))
        });

        let mut snippets = snippets.into_iter();
        let hits = found
            .into_iter()
            .map(|f| proto::SearchHit {
                entity: Some(proto::EntityRef {
                    entity_type: f.entity_type,
                    entity_id: f.entity_id.to_string(),
                }),
                score: f.score as f32,
                vector_similarity: f.vector_similarity as f32,
                text_score: f.text_score as f32,
                snippet: snippets.next().unwrap_or_default(),
            })
            .collect();
        Ok(proto::SearchResponse {
            hits,
            model: vector_model.unwrap_or_default().to_string(),
        })
    }
}
