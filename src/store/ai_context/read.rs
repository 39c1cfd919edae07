//! Reading AI context entries: nearest to a vector, and page by page.

use crate::db::sql;
use std::collections::HashSet;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::{Acquire, FromRow, PgExecutor, Postgres};
use uuid::Uuid;

use super::feedback::not_negative;
use super::{Entry, ScoredEntry, ENTRY_COLUMNS, SEARCHABLE_TYPES};

/// What a search looks for.
pub struct Search<'a> {
    pub organization_id: Uuid,
    pub vector: &'a [f32],
    /// None: any model of the vector's dimension.
    pub model: Option<&'a str>,
    pub threshold: f64,
    pub limit: i64,
    pub user_id: Option<Uuid>,
    /// Empty: every source type.
    pub source_types: &'a [String],
    pub session_id: Option<&'a str>,
    /// Inclusive.
    pub occurred_after: Option<DateTime<Utc>>,
    /// Exclusive.
    pub occurred_before: Option<DateTime<Utc>>,
    /// Leaves out entries whose feedback sums below 0 (mean below 0).
    pub without_negative_feedback: bool,
}

/// Entries whose embedding is nearest to the vector, most similar first.
/// None: the vector's dimension has no index (any more).
pub async fn search<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    q: &Search<'_>,
) -> sqlx::Result<Option<Vec<ScoredEntry>>> {
    let dim = i32::try_from(q.vector.len()).unwrap_or(i32::MAX);
    let mut tx = db.begin().await?;
    // Filtered HNSW scans go on until enough rows pass the filters, in exact
    // distance order. Planned as a cursor with the planning candidate list,
    // run with a longer one (crate::store::fetch_nearest).
    crate::store::begin_nearest(&mut tx).await?;
    let expr: Option<String> = sql::query_scalar("SELECT embedding_index_expression($1)")
        .bind(dim)
        .fetch_one(&mut *tx)
        .await?;
    let Some(expr) = expr else { return Ok(None) };
    // The expression comes from the schema (`embedding::vector(384)`), never
    // from the client; the query vector is cast to the same type.
    let Some(cast) = expr.strip_prefix("embedding::") else {
        return Ok(None);
    };
    let model_filter = if q.model.is_some() {
        "AND e.model = $4"
    } else {
        "AND $4::text IS NULL"
    };
    // The dimension is a literal: the partial HNSW index's predicate
    // (`WHERE dimension = 384`) must be provable from the query, generic plans too.
    let not_negative = not_negative("a.organization_id", "a.id");
    let sql = format!(
        "DECLARE nearest_entries NO SCROLL CURSOR FOR
         SELECT * FROM (
             SELECT a.id, a.organization_id, a.user_id, a.source_type, a.context_summary,
                    a.ai_response, a.metadata, a.occurred_at, a.session_id, a.parent_id,
                    1 - ({expr} <=> $1::{cast}) AS similarity
             FROM embeddings e
             JOIN ai_context_logs a ON a.organization_id = e.organization_id AND a.id = e.entity_id
             WHERE e.organization_id = $2 AND e.dimension = {dim} AND e.entity_type = ANY ($3)
               {model_filter}
               AND ($5::uuid IS NULL OR a.user_id = $5)
               AND (cardinality($6::text[]) = 0 OR a.source_type = ANY ($6))
               AND ($9::text IS NULL OR a.session_id = $9)
               AND ($10::timestamptz IS NULL OR a.occurred_at >= $10)
               AND ($11::timestamptz IS NULL OR a.occurred_at < $11)
               AND (NOT $12 OR {not_negative})
             ORDER BY {expr} <=> $1::{cast}
             LIMIT $7
         ) s
         WHERE s.similarity >= $8
         ORDER BY s.similarity DESC"
    );
    sql::query(&sql)
        .bind(Vector::from(q.vector.to_vec()))
        .bind(q.organization_id)
        .bind(&SEARCHABLE_TYPES[..])
        .bind(q.model)
        .bind(q.user_id)
        .bind(q.source_types)
        .bind(q.limit)
        .bind(q.threshold)
        .bind(q.session_id)
        .bind(q.occurred_after)
        .bind(q.occurred_before)
        .bind(q.without_negative_feedback)
        .execute(&mut *tx)
        .await?;
    let rows =
        crate::store::fetch_nearest(&mut tx, "nearest_entries", crate::store::ef_search(q.limit))
            .await?
            .iter()
            .map(ScoredEntry::from_row)
            .collect::<sqlx::Result<Vec<ScoredEntry>>>()?;
    tx.commit().await?;
    // An entry with embeddings of several models (or both types) counts once,
    // at its best similarity (rows come most similar first).
    let mut seen = HashSet::with_capacity(rows.len());
    Ok(Some(
        rows.into_iter()
            .filter(|r| seen.insert(r.entry.id))
            .collect(),
    ))
}

/// The entries of an organization with these ids (in no order; ids of no
/// entry of it are left out).
pub async fn by_ids<'e>(
    db: impl PgExecutor<'e>,
    org: Uuid,
    ids: &[Uuid],
) -> sqlx::Result<Vec<Entry>> {
    sql::query_as(&format!(
        "SELECT {ENTRY_COLUMNS} FROM ai_context_logs WHERE organization_id = $1 AND id = ANY ($2)"
    ))
    .bind(org)
    .bind(ids)
    .fetch_all(db)
    .await
}

/// Where a page starts: after this (occurred_at, id) in the list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub occurred_at: DateTime<Utc>,
    pub id: Uuid,
}

/// Which entries a list holds: with a session, that session's oldest first
/// (the conversation in order); without, the organization's newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub user_id: Option<Uuid>,
    pub session_id: Option<String>,
}

/// Up to `limit` entries of an organization after `after`, in the order
/// `filter` gives.
pub async fn list<'e>(
    db: impl PgExecutor<'e>,
    org: Uuid,
    filter: &ListFilter,
    after: Option<Cursor>,
    limit: i64,
) -> sqlx::Result<Vec<Entry>> {
    // One statement per combination of filters (no `$n IS NULL OR ...`), so
    // that every plan, generic ones too, walks its index from the cursor:
    // (organization_id[, user_id], occurred_at DESC, id DESC), or
    // (organization_id, session_id, occurred_at, id) for a session.
    let user_filter = if filter.user_id.is_some() {
        "AND user_id = $2"
    } else {
        "AND $2::uuid IS NULL"
    };
    let session_filter = if filter.session_id.is_some() {
        "AND session_id = $6"
    } else {
        "AND $6::text IS NULL"
    };
    let (cmp, dir) = if filter.session_id.is_some() {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    let cursor_filter = if after.is_some() {
        format!("AND (occurred_at, id) {cmp} ($3, $4)")
    } else {
        "AND $3::timestamptz IS NULL AND $4::uuid IS NULL".to_string()
    };
    let sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM ai_context_logs
         WHERE organization_id = $1 {user_filter} {session_filter} {cursor_filter}
         ORDER BY occurred_at {dir}, id {dir}
         LIMIT $5"
    );
    sql::query_as(&sql)
        .bind(org)
        .bind(filter.user_id)
        .bind(after.map(|c| c.occurred_at))
        .bind(after.map(|c| c.id))
        .bind(limit)
        .bind(filter.session_id.as_deref())
        .fetch_all(db)
        .await
}
