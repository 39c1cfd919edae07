//! RecordAiFeedback, and feedback as entries carry it.

use std::collections::HashMap;

use tonic::Request;
use uuid::Uuid;

use super::super::{parse_uuid, principal, required_text, timestamp, to_timestamp};
use super::entry::{optional_text, optional_uuid};
use super::AiContextApi;
use crate::auth::Principal;
use crate::error::{ApiError, ApiResult};
use crate::proto;
use crate::store::ai_context::feedback::{self as store, Feedback, NewFeedback};
use crate::store::organizations::OrgRole;

/// Longest feedback name, in bytes.
const MAX_NAME: usize = 200;

impl AiContextApi {
    pub(super) async fn record_ai_feedback(
        &self,
        req: Request<proto::RecordAiFeedbackRequest>,
    ) -> ApiResult<proto::RecordAiFeedbackResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let f = parse_feedback(&p, r)?;
        self.state
            .authorize(&p, f.organization_id, OrgRole::Editor)
            .await?;
        let mut db = self.state.db(&req).await?;
        let duplicate = store::record(db.conn(), &f)
            .await
            .map_err(ApiError::from_write)?;
        db.finish().await?;
        Ok(proto::RecordAiFeedbackResponse { duplicate })
    }
}

fn parse_feedback(p: &Principal, r: &proto::RecordAiFeedbackRequest) -> ApiResult<NewFeedback> {
    let organization_id = parse_uuid("organization_id", &r.organization_id)?;
    let entry_id = parse_uuid("entry_id", &r.entry_id)?;
    let f = r
        .feedback
        .as_ref()
        .ok_or_else(|| ApiError::invalid("feedback is required"))?;
    let feedback_id = parse_uuid("feedback.feedback_id", &f.feedback_id)?;
    let name = required_text("feedback.name", &f.name, MAX_NAME)?.to_string();
    if !f.value.is_finite() {
        return Err(ApiError::invalid("feedback.value is NaN or infinite"));
    }
    let comment = optional_text("feedback.comment", f.comment.clone())?;
    let named = optional_uuid("feedback.user_id", &f.user_id)?;
    let user_id =
        match p {
            // A user gives feedback as itself; empty means the caller.
            Principal::User(me) => match named {
                Some(u) if u != *me => return Err(ApiError::PermissionDenied(
                    "feedback.user_id names another user: a user gives feedback only as itself \
                     (leave it empty or use your own id)"
                        .into(),
                )),
                _ => Some(*me),
            },
            // A service gives it for anyone, or for no one in particular.
            Principal::Service { .. } => named,
        };
    let created_at = match &f.created_at {
        Some(t) => Some(timestamp("feedback.created_at", t)?),
        None => None,
    };
    Ok(NewFeedback {
        organization_id,
        entry_id,
        feedback_id,
        name,
        value: f.value,
        comment,
        user_id,
        created_at,
    })
}

/// Feedback rows grouped by their entry, in the order they came.
pub(super) fn by_entry(rows: Vec<Feedback>) -> HashMap<Uuid, Vec<proto::AiFeedback>> {
    let mut map: HashMap<Uuid, Vec<proto::AiFeedback>> = HashMap::new();
    for f in rows {
        map.entry(f.entry_id).or_default().push(proto::AiFeedback {
            feedback_id: f.feedback_id.to_string(),
            name: f.name,
            value: f.value,
            comment: f.comment.unwrap_or_default(),
            user_id: f.user_id.map(|u| u.to_string()).unwrap_or_default(),
            created_at: Some(to_timestamp(f.created_at)),
        });
    }
    map
}
