//! SimilarityService.IndexTexts: searchable text for items of any type,
//! embedded in the background by the vectorizer (never in the call).

use tonic::Request;

use super::metadata::metadata_json;
use super::similarity::SimilarityApi;
use super::{deadline, entity_ref, parse_uuid, principal, required_text, timestamp};
use crate::error::{ApiError, ApiResult};
use crate::proto;
use crate::store::organizations::OrgRole;
use crate::store::texts::{self as store, NewText, OWN_TEXT_TYPES};

/// Longest text accepted, in bytes (the contract's 1 MiB).
pub const MAX_TEXT_BYTES: usize = 1 << 20;

impl SimilarityApi {
    /// All or none: every record is validated before anything is written,
    /// then all are written in one statement, their embedding queued in the
    /// same transaction.
    pub(super) async fn index_texts(
        &self,
        req: Request<proto::IndexTextsRequest>,
    ) -> ApiResult<proto::IndexTextsResponse> {
        let p = principal(&req)?;
        let deadline = deadline(&req);
        let r = req.into_inner();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        if r.texts.is_empty() {
            return Err(ApiError::invalid("texts is empty; send at least one"));
        }
        self.state.check_batch("texts", r.texts.len())?;
        let max_metadata = self.state.config.max_metadata_bytes;
        let mut texts = Vec::with_capacity(r.texts.len());
        for (i, t) in r.texts.into_iter().enumerate() {
            let (entity_type, entity_id) =
                entity_ref(&format!("texts[{i}].entity"), t.entity.as_ref())?;
            if OWN_TEXT_TYPES.contains(&entity_type.as_str()) {
                return Err(ApiError::invalid(format!(
                    "texts[{i}].entity.entity_type {entity_type:?} keeps its text from its own table \
                     (posts_content, LogAiContext); index it under another type"
                )));
            }
            let body = required_text(&format!("texts[{i}].text"), &t.text, MAX_TEXT_BYTES)?;
            if body.trim().is_empty() {
                return Err(ApiError::invalid(format!(
                    "texts[{i}].text is only whitespace"
                )));
            }
            let metadata =
                metadata_json(&format!("texts[{i}].metadata"), t.metadata, max_metadata)?;
            let created_at = t
                .created_at
                .as_ref()
                .map(|ts| timestamp(&format!("texts[{i}].created_at"), ts))
                .transpose()?;
            texts.push(NewText {
                entity_type,
                entity_id,
                body: t.text,
                metadata,
                created_at,
            });
        }
        self.state.authorize(&p, org, OrgRole::Editor).await?;

        let mut db = self.state.db_until(deadline).await?;
        let changed = store::upsert(db.conn(), org, &texts)
            .await
            .map_err(ApiError::from_write)?;
        db.finish().await?;
        let queued = if self.state.config.text.configured() {
            changed as u32
        } else {
            0
        };
        Ok(proto::IndexTextsResponse {
            indexed: texts.len() as u32,
            queued_for_embedding: queued,
        })
    }
}
