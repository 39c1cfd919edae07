//! Texts sent as queries (SearchAiContext's `query_text`): embedded by the
//! service's text model, as queries, within the call.

use std::time::Duration;

use super::{required_text, ApiState};
use crate::embedding::{query_modality, EmbedError, EmbeddingClient};
use crate::error::{ApiError, ApiResult};

/// Longest query text, in bytes: a question, not a document.
pub const MAX_QUERY_BYTES: usize = 64 << 10;
/// How long a call retries an endpoint that is unavailable before it gives
/// up with UNAVAILABLE (a client deadline may end it sooner).
const PATIENCE: Duration = Duration::from_secs(10);

/// Checks a query text before anything else is done with it.
pub fn check_query<'a>(field: &str, text: &'a str) -> ApiResult<&'a str> {
    let text = required_text(field, text, MAX_QUERY_BYTES)?;
    if text.trim().is_empty() {
        return Err(ApiError::invalid(format!("{field} is only whitespace")));
    }
    Ok(text)
}

/// The text model's client, or FAILED_PRECONDITION when there is none.
fn embedder<'a>(state: &'a ApiState, field: &str) -> ApiResult<&'a EmbeddingClient> {
    state.embedder.as_ref().ok_or_else(|| {
        ApiError::FailedPrecondition(format!(
            "{field} needs the service's text model, and none is configured \
             (AFFINITY_EMBEDDING_URL); send a vector instead"
        ))
    })
}

/// The text model's name, or FAILED_PRECONDITION when there is none.
pub fn text_model<'a>(state: &'a ApiState, field: &str) -> ApiResult<&'a str> {
    embedder(state, field).map(EmbeddingClient::model)
}

/// The query vector of a checked text.
pub async fn embed_query(state: &ApiState, field: &str, text: &str) -> ApiResult<Vec<f32>> {
    let mut vectors = embedder(state, field)?
        .embed(&[text], query_modality(text), PATIENCE)
        .await
        .map_err(|e| from_embed(field, e))?;
    vectors
        .pop()
        .ok_or_else(|| ApiError::Internal("the embedding endpoint answered no vector".into()))
}

/// What the client is told when its query could not be embedded: the
/// contract's UNAVAILABLE, whether the endpoint is down, slow or refuses
/// (vector-only calls are unaffected). The cause, never the endpoint's
/// whole answer, goes to the client; the log has the rest.
fn from_embed(field: &str, e: EmbedError) -> ApiError {
    tracing::warn!(error = %e, "embedding {field} failed");
    ApiError::Unavailable(format!(
        "the text model could not embed {field}: {}",
        e.cause()
    ))
}
