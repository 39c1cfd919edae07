//! AiContextService: logging AI interactions and retrieving them.

mod entry;
mod export;
mod feedback;
mod page_token;
mod search;

use std::collections::HashSet;
use std::sync::Arc;

use prost::Message as _;
use tonic::Request;
use uuid::Uuid;

use super::{deadline, limit, parse_uuid, principal, ApiState};
use crate::api::reads::read;
use crate::error::{ApiError, ApiResult};
use crate::proto::{self, ai_context_service_server::AiContextService};
use crate::store::ai_context::{self as store, Cursor, ListFilter};
use crate::store::organizations::OrgRole;
use entry::{entry, optional_session, optional_uuid};
use export::ExportStream;
use feedback::by_entry;
use page_token::{decode_page_token, encode_page_token};

/// A stream holds at most this many times the largest message, in all: the
/// whole stream is kept in memory until it is stored, all or none.
const STREAM_BYTES_PER_MESSAGE_LIMIT: usize = 16;

pub struct AiContextApi {
    state: Arc<ApiState>,
}

impl AiContextApi {
    pub fn new(state: Arc<ApiState>) -> Self {
        AiContextApi { state }
    }
}

/// The calls, each in the crate's result type (`grpc_handlers!` converts
/// to tonic's once).
impl AiContextApi {
    async fn log_ai_context(
        &self,
        req: Request<proto::LogAiContextRequest>,
    ) -> ApiResult<proto::LogAiContextResponse> {
        let p = principal(&req)?;
        let deadline = deadline(&req);
        let e = self.parse_entry(&p, req.into_inner(), "")?;
        self.state
            .authorize(&p, e.organization_id, OrgRole::Editor)
            .await?;
        // A user's own profile exists (they are a member); a user id named by
        // service_role may be new.
        let mut db = self.state.db_until(deadline).await?;
        let (id, duplicate) = store::log_one(db.conn(), e, p.is_service())
            .await
            .map_err(ApiError::from_write)?;
        db.finish().await?;
        Ok(proto::LogAiContextResponse {
            id: id.to_string(),
            duplicate,
        })
    }

    async fn log_ai_context_stream(
        &self,
        req: Request<tonic::Streaming<proto::LogAiContextRequest>>,
    ) -> ApiResult<proto::LogAiContextStreamResponse> {
        let p = principal(&req)?;
        let deadline = deadline(&req);
        let mut stream = req.into_inner();
        let max_bytes = self
            .state
            .config
            .max_message_bytes
            .saturating_mul(STREAM_BYTES_PER_MESSAGE_LIMIT);
        let mut received = 0usize;
        let mut bytes = 0usize;
        let mut entries = Vec::new();
        let mut authorized = HashSet::new();
        let mut new_users = HashSet::new();
        let mut keys = HashSet::new();
        // Everything is validated and authorized before anything is stored,
        // so that the first bad message fails the stream with nothing stored.
        while let Some(msg) = stream.message().await? {
            received += 1;
            self.state.check_batch("the stream", received)?;
            bytes = bytes.saturating_add(msg.encoded_len());
            if bytes > max_bytes {
                return Err(ApiError::ResourceExhausted(format!(
                    "the stream is over {max_bytes} bytes; split it"
                )));
            }
            let e = self.parse_entry(&p, msg, &format!("messages[{}].", received - 1))?;
            if !authorized.contains(&e.organization_id) {
                self.state
                    .authorize(&p, e.organization_id, OrgRole::Editor)
                    .await?;
                authorized.insert(e.organization_id);
            }
            // A key repeated within the stream is a duplicate of its first use.
            if let Some(k) = &e.idempotency_key {
                if !keys.insert((e.organization_id, k.clone())) {
                    continue;
                }
            }
            if p.is_service() {
                new_users.insert(e.user_id);
            }
            entries.push(e);
        }
        let stored = if entries.is_empty() {
            0
        } else {
            let users: Vec<Uuid> = new_users.into_iter().collect();
            let mut db = self.state.db_until(deadline).await?;
            let stored = store::log_many(db.conn(), entries, &users)
                .await
                .map_err(ApiError::from_write)?;
            db.finish().await?;
            stored
        };
        Ok(proto::LogAiContextStreamResponse {
            stored,
            duplicates: (received as u64).saturating_sub(stored),
        })
    }

    async fn list_ai_context(
        &self,
        req: Request<proto::ListAiContextRequest>,
    ) -> ApiResult<proto::ListAiContextResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        let filter = ListFilter {
            user_id: optional_uuid("user_id", &r.user_id)?,
            session_id: optional_session("session_id", r.session_id.clone())?,
        };
        let page_size = limit("page_size", r.page_size, 50)?;
        let after = decode_page_token(&r.page_token, org, &filter)?;
        self.state.authorize(&p, org, OrgRole::Viewer).await?;
        // One row more than the page tells whether another page follows.
        let (rows, more, feedback) = read!(&self.state, &req, |db| {
            let mut rows = store::list(&mut *db, org, &filter, after, page_size + 1).await?;
            let more = rows.len() as i64 > page_size;
            rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
            let ids: Vec<Uuid> = rows.iter().map(|e| e.id).collect();
            let feedback = store::feedback::of_entries(db, org, &ids).await?;
            Ok((rows, more, feedback))
        });
        let mut feedback = by_entry(feedback);
        let next_page_token = match rows.last() {
            Some(last) if more => encode_page_token(
                org,
                &filter,
                Cursor {
                    occurred_at: last.occurred_at,
                    id: last.id,
                },
            ),
            _ => String::new(),
        };
        Ok(proto::ListAiContextResponse {
            entries: rows
                .into_iter()
                .map(|e| {
                    let f = feedback.remove(&e.id).unwrap_or_default();
                    entry(e, 0.0, f)
                })
                .collect(),
            next_page_token,
        })
    }
}

grpc_handlers! {
    AiContextService for AiContextApi {
        stream ExportAiContextStream = ExportStream;
        rpc log_ai_context(proto::LogAiContextRequest) -> proto::LogAiContextResponse;
        rpc log_ai_context_stream(tonic::Streaming<proto::LogAiContextRequest>) -> proto::LogAiContextStreamResponse;
        rpc search_ai_context(proto::SearchAiContextRequest) -> proto::SearchAiContextResponse;
        rpc list_ai_context(proto::ListAiContextRequest) -> proto::ListAiContextResponse;
        rpc record_ai_feedback(proto::RecordAiFeedbackRequest) -> proto::RecordAiFeedbackResponse;
        rpc export_ai_context(proto::ExportAiContextRequest) -> ExportStream;
    }
}
