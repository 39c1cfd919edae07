//! One entry: a log message checked into an entry to store, and a stored
//! entry as the API answers it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::super::metadata::{json_to_struct, metadata_json};
use super::super::{parse_uuid, required_text, timestamp, to_timestamp, MAX_IDEMPOTENCY_KEY};
use super::AiContextApi;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::proto;
use crate::store::ai_context::{self as store, NewEntry};

/// Longest source_type, in bytes.
pub(super) const MAX_SOURCE_TYPE: usize = 100;
/// Longest model name, in bytes.
pub(super) const MAX_MODEL: usize = 200;
/// Longest session id, in bytes.
pub(super) const MAX_SESSION_ID: usize = 256;

impl AiContextApi {
    /// Validates one log message into an entry to store. `prefix` names the
    /// message in errors ("" for a unary call, "messages[3]." in a stream).
    pub(super) fn parse_entry(
        &self,
        p: &Principal,
        r: proto::LogAiContextRequest,
        prefix: &str,
    ) -> ApiResult<NewEntry> {
        let field = |name: &str| format!("{prefix}{name}");
        let organization_id = parse_uuid(&field("organization_id"), &r.organization_id)?;
        let user_id = match p {
            // A user logs only as itself; an empty user_id means the caller.
            Principal::User(me) => {
                if !r.user_id.is_empty() && parse_uuid(&field("user_id"), &r.user_id)? != *me {
                    return Err(ApiError::PermissionDenied(format!(
                        "{} names another user: a user logs AI context only as itself \
                         (leave it empty or use your own id)",
                        field("user_id")
                    )));
                }
                *me
            }
            Principal::Service { .. } => parse_uuid(&field("user_id"), &r.user_id)?,
        };
        let source_type =
            required_text(&field("source_type"), &r.source_type, MAX_SOURCE_TYPE)?.to_string();
        let context_summary = optional_text(&field("context_summary"), r.context_summary)?;
        let ai_response = optional_text(&field("ai_response"), r.ai_response)?;
        let metadata = metadata_json(
            &field("metadata"),
            r.metadata,
            self.state.config.max_metadata_bytes,
        )?;
        let embedding = if r.embedding.is_empty() {
            None
        } else {
            self.state.check_vector(&field("embedding"), &r.embedding)?;
            if r.embedding_model.is_empty() {
                return Err(ApiError::invalid(format!(
                    "{} is required when {} is set",
                    field("embedding_model"),
                    field("embedding")
                )));
            }
            required_text(&field("embedding_model"), &r.embedding_model, MAX_MODEL)?;
            Some((r.embedding_model, r.embedding))
        };
        let idempotency_key = if r.idempotency_key.is_empty() {
            None
        } else {
            required_text(
                &field("idempotency_key"),
                &r.idempotency_key,
                MAX_IDEMPOTENCY_KEY,
            )?;
            Some(r.idempotency_key)
        };
        let session_id = optional_session(&field("session_id"), r.session_id)?;
        let parent_id = optional_uuid(&field("parent_id"), &r.parent_id)?;
        let occurred_at = match &r.occurred_at {
            Some(t) => timestamp(&field("occurred_at"), t)?,
            None => chrono::Utc::now(),
        };
        Ok(NewEntry {
            id: crate::random_uuid(),
            organization_id,
            user_id,
            source_type,
            context_summary,
            ai_response,
            metadata,
            idempotency_key,
            occurred_at,
            session_id,
            parent_id,
            embedding,
        })
    }
}

/// A session id: empty is none; at most [`MAX_SESSION_ID`] bytes, no NUL.
pub(super) fn optional_session(field: &str, value: String) -> ApiResult<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    required_text(field, &value, MAX_SESSION_ID)?;
    Ok(Some(value))
}

/// Optional free text: empty is absent (NULL); NUL bytes cannot be stored.
pub(super) fn optional_text(field: &str, value: String) -> ApiResult<Option<String>> {
    if value.contains('\0') {
        return Err(ApiError::invalid(format!("{field} contains a NUL byte")));
    }
    Ok((!value.is_empty()).then_some(value))
}

/// An entry as the API answers it; `feedback`: the entry's, where the call
/// carries it (List, Export), else empty.
pub(super) fn entry(
    e: store::Entry,
    similarity: f32,
    feedback: Vec<proto::AiFeedback>,
) -> proto::AiContextEntry {
    proto::AiContextEntry {
        id: e.id.to_string(),
        organization_id: e.organization_id.to_string(),
        user_id: e.user_id.to_string(),
        source_type: e.source_type,
        context_summary: e.context_summary.unwrap_or_default(),
        ai_response: e.ai_response.unwrap_or_default(),
        metadata: Some(json_to_struct(e.metadata)),
        occurred_at: Some(to_timestamp(e.occurred_at)),
        similarity,
        session_id: e.session_id.unwrap_or_default(),
        parent_id: e.parent_id.map(|p| p.to_string()).unwrap_or_default(),
        feedback,
    }
}

pub(super) fn optional_uuid(field: &str, value: &str) -> ApiResult<Option<Uuid>> {
    if value.is_empty() {
        Ok(None)
    } else {
        parse_uuid(field, value).map(Some)
    }
}

/// A time range's optional ends: (inclusive start, exclusive end).
pub(super) type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// An optional time range, `occurred_after` (inclusive) to
/// `occurred_before` (exclusive), checked: a start after its end is refused.
pub(super) fn occurred_range(
    after: Option<&prost_types::Timestamp>,
    before: Option<&prost_types::Timestamp>,
) -> ApiResult<Range> {
    let after = after.map(|t| timestamp("occurred_after", t)).transpose()?;
    let before = before
        .map(|t| timestamp("occurred_before", t))
        .transpose()?;
    if let (Some(a), Some(b)) = (after, before) {
        if a > b {
            return Err(ApiError::invalid(
                "occurred_after is after occurred_before; swap them",
            ));
        }
    }
    Ok((after, before))
}
