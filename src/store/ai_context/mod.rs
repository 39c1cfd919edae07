//! AI context entries (`ai_context_logs`) and their embeddings: the SQL.
//! Writing here; reading (search, pages of a list) in `read`, exports in
//! `export`, feedback in `feedback`.

pub mod export;
pub mod feedback;
mod read;

pub use read::{by_ids, list, search, Cursor, ListFilter, Search};

use crate::db::sql;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::{Acquire, PgConnection, Postgres};
use uuid::Uuid;

/// Rows per INSERT of a batch: large enough to amortize round trips, small
/// enough to keep each statement's arrays a few megabytes.
const CHUNK: usize = 500;

/// The embedding entity types whose entries are AI context: new entries'
/// ('ai_context') and migrated legacy chat messages' ('chat_message'), which
/// keep their id in `ai_context_logs`.
const SEARCHABLE_TYPES: [&str; 2] = ["ai_context", "chat_message"];

/// One entry to store, validated by the caller.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub user_id: Uuid,
    pub source_type: String,
    pub context_summary: Option<String>,
    pub ai_response: Option<String>,
    /// Serialized JSON object (its size was checked on this text).
    pub metadata: String,
    pub idempotency_key: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub session_id: Option<String>,
    /// An entry of the same organization (checked by a foreign key).
    pub parent_id: Option<Uuid>,
    /// (model, vector), stored as entity_type 'ai_context'.
    pub embedding: Option<(String, Vec<f32>)>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entry {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub user_id: Uuid,
    pub source_type: String,
    pub context_summary: Option<String>,
    pub ai_response: Option<String>,
    pub metadata: serde_json::Value,
    pub occurred_at: DateTime<Utc>,
    pub session_id: Option<String>,
    pub parent_id: Option<Uuid>,
}

/// The columns of [`Entry`], for `SELECT`s of `ai_context_logs`.
const ENTRY_COLUMNS: &str = "id, organization_id, user_id, source_type, context_summary, \
                             ai_response, metadata, occurred_at, session_id, parent_id";

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ScoredEntry {
    #[sqlx(flatten)]
    pub entry: Entry,
    pub similarity: f64,
}

/// The profiles (and personal organizations) of users seen for the first
/// time. Sorted, so that concurrent calls take row locks in the same order.
pub async fn ensure_users(conn: &mut PgConnection, users: &[Uuid]) -> sqlx::Result<()> {
    let mut users: Vec<Uuid> = users.to_vec();
    users.sort_unstable();
    users.dedup();
    if users.is_empty() {
        return Ok(());
    }
    sql::query("SELECT ensure_user_profile(u) FROM unnest($1::uuid[]) WITH ORDINALITY AS t(u, n) ORDER BY n")
        .bind(&users)
        .execute(conn)
        .await?;
    Ok(())
}

/// Inserts entries (and their embeddings) in the caller's transaction. An
/// entry whose idempotency key is already taken in its organization is
/// skipped with its embedding. Returns the ids of the entries inserted.
///
/// The caller removes duplicate keys within `entries` itself (ON CONFLICT
/// would skip them too, but the caller decides which one is "first").
pub async fn insert_entries(
    conn: &mut PgConnection,
    entries: &[NewEntry],
) -> sqlx::Result<HashSet<Uuid>> {
    let mut inserted = HashSet::with_capacity(entries.len());
    for chunk in entries.chunks(CHUNK) {
        let n = chunk.len();
        let mut ids = Vec::with_capacity(n);
        let mut orgs = Vec::with_capacity(n);
        let mut users = Vec::with_capacity(n);
        let mut sources = Vec::with_capacity(n);
        let mut summaries = Vec::with_capacity(n);
        let mut responses = Vec::with_capacity(n);
        let mut metadata = Vec::with_capacity(n);
        let mut keys = Vec::with_capacity(n);
        let mut occurred = Vec::with_capacity(n);
        let mut sessions = Vec::with_capacity(n);
        let mut parents = Vec::with_capacity(n);
        let mut emb_ids = Vec::new();
        let mut emb_models = Vec::new();
        let mut emb_vectors = Vec::new();
        for e in chunk {
            ids.push(e.id);
            orgs.push(e.organization_id);
            users.push(e.user_id);
            sources.push(e.source_type.as_str());
            summaries.push(e.context_summary.as_deref());
            responses.push(e.ai_response.as_deref());
            metadata.push(e.metadata.as_str());
            keys.push(e.idempotency_key.as_deref());
            occurred.push(e.occurred_at);
            sessions.push(e.session_id.as_deref());
            parents.push(e.parent_id);
            if let Some((model, v)) = &e.embedding {
                emb_ids.push(e.id);
                emb_models.push(model.as_str());
                emb_vectors.push(Vector::from(v.clone()));
            }
        }
        // One statement per chunk: the entries, then the embeddings of those
        // that were inserted (not of the ones skipped as duplicates).
        let rows: Vec<Uuid> = sql::query_scalar(
            "WITH ins AS (
                 INSERT INTO ai_context_logs (id, organization_id, user_id, source_type, context_summary,
                                              ai_response, metadata, idempotency_key, occurred_at,
                                              session_id, parent_id)
                 SELECT t.id, t.org, t.usr, t.source_type, t.summary, t.response, t.metadata::jsonb,
                        t.key, t.occurred_at, t.session_id, t.parent_id
                 FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::text[], $5::text[], $6::text[],
                             $7::text[], $8::text[], $9::timestamptz[], $13::text[], $14::uuid[])
                      AS t(id, org, usr, source_type, summary, response, metadata, key, occurred_at,
                           session_id, parent_id)
                 ON CONFLICT (organization_id, idempotency_key) WHERE idempotency_key IS NOT NULL
                 DO NOTHING
                 RETURNING id, organization_id
             ), emb AS (
                 INSERT INTO embeddings (organization_id, entity_type, entity_id, model, dimension, embedding)
                 SELECT ins.organization_id, 'ai_context', ins.id, v.model, vector_dims(v.embedding), v.embedding
                 FROM unnest($10::uuid[], $11::text[], $12::vector[]) AS v(id, model, embedding)
                 JOIN ins ON ins.id = v.id
             )
             SELECT id FROM ins",
        )
        .bind(&ids)
        .bind(&orgs)
        .bind(&users)
        .bind(&sources)
        .bind(&summaries)
        .bind(&responses)
        .bind(&metadata)
        .bind(&keys)
        .bind(&occurred)
        .bind(&emb_ids)
        .bind(&emb_models)
        .bind(&emb_vectors)
        .bind(&sessions)
        .bind(&parents)
        .fetch_all(&mut *conn)
        .await?;
        inserted.extend(rows);
    }
    Ok(inserted)
}

/// The id of the entry holding an idempotency key in an organization.
pub async fn id_by_key(
    conn: &mut PgConnection,
    org: Uuid,
    key: &str,
) -> sqlx::Result<Option<Uuid>> {
    sql::query_scalar(
        "SELECT id FROM ai_context_logs WHERE organization_id = $1 AND idempotency_key = $2",
    )
    .bind(org)
    .bind(key)
    .fetch_optional(conn)
    .await
}

/// Logs one entry, committed on return: its id and false, or, when its
/// idempotency key is taken in its organization, the first entry's id and
/// true (nothing new is stored). `new_user`: the user may have no profile yet.
pub async fn log_one<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    entry: NewEntry,
    new_user: bool,
) -> sqlx::Result<(Uuid, bool)> {
    let mut tx = db.begin().await?;
    if new_user {
        ensure_users(&mut tx, &[entry.user_id]).await?;
    }
    let inserted = insert_entries(&mut tx, std::slice::from_ref(&entry)).await?;
    let result = if inserted.contains(&entry.id) {
        (entry.id, false)
    } else {
        // ON CONFLICT waited for a concurrent holder of the key to commit, so
        // this statement's snapshot sees it.
        let key = entry.idempotency_key.as_deref().unwrap_or_default();
        match id_by_key(&mut tx, entry.organization_id, key).await? {
            Some(first) => (first, true),
            None => return Err(sqlx::Error::RowNotFound),
        }
    };
    tx.commit().await?;
    Ok(result)
}

/// Logs entries all or none, in one transaction committed on return; returns
/// how many were stored (the others' idempotency keys were taken already).
/// `new_users`: users that may have no profile yet.
pub async fn log_many<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    mut entries: Vec<NewEntry>,
    new_users: &[Uuid],
) -> sqlx::Result<u64> {
    // Keys in a consistent order, so that concurrent batches with the same
    // keys wait for each other instead of deadlocking.
    entries.sort_by(|a, b| {
        (
            a.idempotency_key.is_none(),
            a.organization_id,
            &a.idempotency_key,
        )
            .cmp(&(
                b.idempotency_key.is_none(),
                b.organization_id,
                &b.idempotency_key,
            ))
    });
    let mut tx = db.begin().await?;
    ensure_users(&mut tx, new_users).await?;
    let inserted = insert_entries(&mut tx, &entries).await?;
    tx.commit().await?;
    Ok(inserted.len() as u64)
}
