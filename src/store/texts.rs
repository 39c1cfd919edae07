//! The texts of items given to IndexTexts (`item_texts`; posts and AI
//! context entries get theirs from triggers). A changed text goes into the
//! vectorizer's queue in the same statement (the table's trigger).

use crate::db::sql;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// One text to store.
pub struct NewText {
    pub entity_type: String,
    pub entity_id: Uuid,
    pub body: String,
    /// A JSON object's text.
    pub metadata: String,
    /// Unset: now for a new item, unchanged for one already indexed.
    pub created_at: Option<DateTime<Utc>>,
}

/// Types whose text the schema keeps from their own tables: IndexTexts may
/// not overwrite it.
pub const OWN_TEXT_TYPES: [&str; 2] = ["post", "ai_context"];

/// Inserts or replaces `texts` in `org`, all or none, in one statement
/// (several for one item: the last wins). Returns how many items got a new
/// or changed text (and so were queued for embedding).
pub async fn upsert<'e>(
    db: impl PgExecutor<'e>,
    org: Uuid,
    texts: &[NewText],
) -> sqlx::Result<u64> {
    let mut last: HashMap<(&str, Uuid), usize> = HashMap::with_capacity(texts.len());
    for (i, t) in texts.iter().enumerate() {
        last.insert((t.entity_type.as_str(), t.entity_id), i);
    }
    let mut keep: Vec<usize> = last.into_values().collect();
    keep.sort_unstable();
    let pick = |f: fn(&NewText) -> &str| keep.iter().map(|&i| f(&texts[i])).collect::<Vec<_>>();
    let types = pick(|t| &t.entity_type);
    let bodies = pick(|t| &t.body);
    let metadata = pick(|t| &t.metadata);
    let ids: Vec<Uuid> = keep.iter().map(|&i| texts[i].entity_id).collect();
    let created: Vec<Option<DateTime<Utc>>> = keep.iter().map(|&i| texts[i].created_at).collect();

    // `old` reads the bodies before the statement's writes, and `upd`
    // depends on it so that it is read first where CTEs run one by one
    // (Citus plans them so); `upd` changes the items already there, saying
    // whether each body changed, `ins` adds the others.
    sql::query_scalar(
        "WITH input AS (
             SELECT * FROM unnest($2::text[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[])
                 AS t(entity_type, entity_id, body, metadata, created_at)
         ), old AS (
             SELECT i.entity_type, i.entity_id, t.body
             FROM input i
             JOIN item_texts t ON t.organization_id = $1 AND t.entity_type = i.entity_type
                              AND t.entity_id = i.entity_id
         ), upd AS (
             UPDATE item_texts t
             SET body = i.body, metadata = i.metadata::jsonb,
                 created_at = coalesce(i.created_at, t.created_at)
             FROM input i
             LEFT JOIN old o ON o.entity_type = i.entity_type AND o.entity_id = i.entity_id
             WHERE t.organization_id = $1 AND t.entity_type = i.entity_type AND t.entity_id = i.entity_id
             RETURNING t.entity_type, t.entity_id, o.body IS DISTINCT FROM i.body AS changed
         ), ins AS (
             INSERT INTO item_texts (organization_id, entity_type, entity_id, body, metadata, created_at)
             SELECT $1, i.entity_type, i.entity_id, i.body, i.metadata::jsonb, coalesce(i.created_at, now())
             FROM input i
             WHERE NOT EXISTS (SELECT 1 FROM upd u
                               WHERE u.entity_type = i.entity_type AND u.entity_id = i.entity_id)
             ON CONFLICT (organization_id, entity_type, entity_id) DO UPDATE
             SET body = EXCLUDED.body, metadata = EXCLUDED.metadata
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM upd WHERE upd.changed) + (SELECT count(*) FROM ins)",
    )
    .bind(org)
    .bind(&types)
    .bind(&ids)
    .bind(&bodies)
    .bind(&metadata)
    .bind(&created)
    .fetch_one(db)
    .await
    .map(|n: i64| n as u64)
}
