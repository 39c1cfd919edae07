//! Search's `SearchFilter`, checked: each refusal names its field.

use super::{parse_uuid, required_text, timestamp, ApiState};
use crate::error::{ApiError, ApiResult};
use crate::proto;
use crate::store::search::ItemFilter;

/// Longest platform, source type or hashtag, in bytes.
const MAX_VALUE_BYTES: usize = 256;
/// Longest session id, in bytes (the contract's).
const MAX_SESSION_ID_BYTES: usize = 256;

/// The filter of a request (none: an empty filter).
pub fn item_filter(state: &ApiState, f: Option<&proto::SearchFilter>) -> ApiResult<ItemFilter> {
    let Some(f) = f else {
        return Ok(ItemFilter::default());
    };
    let created_after = f
        .created_after
        .as_ref()
        .map(|t| timestamp("filter.created_after", t))
        .transpose()?;
    let created_before = f
        .created_before
        .as_ref()
        .map(|t| timestamp("filter.created_before", t))
        .transpose()?;
    if let (Some(a), Some(b)) = (created_after, created_before) {
        if a >= b {
            return Err(ApiError::invalid(format!(
                "filter.created_after ({a}) is not before filter.created_before ({b}): \
                 nothing could match"
            )));
        }
    }
    let user_id = match f.user_id.as_str() {
        "" => None,
        u => Some(parse_uuid("filter.user_id", u)?),
    };
    let session_id = match f.session_id.as_str() {
        "" => None,
        s => Some(required_text("filter.session_id", s, MAX_SESSION_ID_BYTES)?.to_string()),
    };
    let hashtags = values(state, "filter.hashtags", &f.hashtags)?
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let tag = h.trim().trim_start_matches('#').trim().to_lowercase();
            if tag.is_empty() {
                Err(ApiError::invalid(format!(
                    "filter.hashtags[{i}] has no letters: {h:?}"
                )))
            } else {
                Ok(tag)
            }
        })
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(ItemFilter {
        created_after,
        created_before,
        user_id,
        platforms: values(state, "filter.platforms", &f.platforms)?,
        source_types: values(state, "filter.source_types", &f.source_types)?,
        session_id,
        hashtags,
        without_negative_feedback: false,
    })
}

/// A list of short texts, each required and bounded, duplicates dropped.
fn values(state: &ApiState, field: &str, list: &[String]) -> ApiResult<Vec<String>> {
    state.check_batch(field, list.len())?;
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let v = required_text(&format!("{field}[{i}]"), v, MAX_VALUE_BYTES)?;
        if !out.iter().any(|o| o == v) {
            out.push(v.to_string());
        }
    }
    Ok(out)
}
