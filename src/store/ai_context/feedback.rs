//! Feedback on AI context entries (`ai_context_feedback`): one row per
//! (organization, feedback_id), the caller's id, so a retry stores nothing.

use crate::db::sql;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// One piece of feedback to store, validated by the caller.
#[derive(Debug, Clone)]
pub struct NewFeedback {
    pub organization_id: Uuid,
    pub entry_id: Uuid,
    pub feedback_id: Uuid,
    pub name: String,
    pub value: f64,
    pub comment: Option<String>,
    pub user_id: Option<Uuid>,
    /// None: the database's now.
    pub created_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Feedback {
    pub entry_id: Uuid,
    pub feedback_id: Uuid,
    pub name: String,
    pub value: f64,
    pub comment: Option<String>,
    pub user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// The foreign key that refuses feedback on an entry that is not in the
/// organization (the key holds both, so no organization reaches another's).
pub const ENTRY_KEY: &str = "ai_context_feedback_organization_id_entry_id_fkey";

/// SQL true when the entry (`org`, `id`: column expressions of the
/// enclosing query) has no feedback or its values sum to 0 or more (a mean
/// not below 0). The entry key of feedback holds the organization: one
/// index lookup per entry.
pub fn not_negative(org: &str, id: &str) -> String {
    format!(
        "coalesce((SELECT sum(f.value) FROM ai_context_feedback f
                   WHERE f.organization_id = {org} AND f.entry_id = {id}), 0) >= 0"
    )
}

/// Stores the feedback, committed on return; true when its feedback_id was
/// taken in the organization already (a retry: nothing new is stored,
/// whatever the retry says). An entry not in the organization fails on
/// [`ENTRY_KEY`].
pub async fn record<'e>(db: impl PgExecutor<'e>, f: &NewFeedback) -> sqlx::Result<bool> {
    let inserted: Option<Uuid> = sql::query_scalar(
        "INSERT INTO ai_context_feedback (organization_id, feedback_id, entry_id, name, value,
                                          comment, user_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, coalesce($8, now()))
         ON CONFLICT (organization_id, feedback_id) DO NOTHING
         RETURNING feedback_id",
    )
    .bind(f.organization_id)
    .bind(f.feedback_id)
    .bind(f.entry_id)
    .bind(&f.name)
    .bind(f.value)
    .bind(f.comment.as_deref())
    .bind(f.user_id)
    .bind(f.created_at)
    .fetch_optional(db)
    .await?;
    Ok(inserted.is_none())
}

/// The feedback on these entries of an organization, by entry, oldest first.
pub async fn of_entries<'e>(
    db: impl PgExecutor<'e>,
    org: Uuid,
    entries: &[Uuid],
) -> sqlx::Result<Vec<Feedback>> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    sql::query_as(
        "SELECT entry_id, feedback_id, name, value, comment, user_id, created_at
         FROM ai_context_feedback
         WHERE organization_id = $1 AND entry_id = ANY ($2)
         ORDER BY entry_id, created_at, feedback_id",
    )
    .bind(org)
    .bind(entries)
    .fetch_all(db)
    .await
}
