//! Search over items' texts (`item_texts`, migration 10): the full-text
//! side, the filters both sides apply inside their scans, the vector side's
//! filter-first plan, and snippets.
//!
//! Every statement is scoped to one organization by a bound
//! `organization_id`; the query text, the vector and every filter value are
//! bound parameters. Filters read the columns migration 10 keeps on each
//! item's text, so an item without text (a client's own vector) never
//! matches a filter.

use crate::db::sql;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{FromRow, PgConnection, Postgres};
use uuid::Uuid;

use super::ai_context::feedback::not_negative;
use super::similarity::{self, Hit, VectorQuery};
use super::texts::OWN_TEXT_TYPES;

/// SearchFilter, checked: what an item's text row must carry. Empty lists
/// and `None` filter nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ItemFilter {
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub user_id: Option<Uuid>,
    pub platforms: Vec<String>,
    pub source_types: Vec<String>,
    pub session_id: Option<String>,
    /// Lower case, without '#': the item carries every one.
    pub hashtags: Vec<String>,
    /// AI context entries whose feedback sums below 0 (mean below 0) are
    /// left out; entries without feedback stay.
    pub without_negative_feedback: bool,
}

type PgQuery<'q> = Query<'q, Postgres, PgArguments>;

impl ItemFilter {
    pub fn is_empty(&self) -> bool {
        *self == ItemFilter::default()
    }

    /// The conditions on item text `t`, each ` AND ...` with parameters
    /// numbered from `*n` on (advanced past them). [`ItemFilter::bind`]
    /// binds the values in the same order.
    pub fn sql(&self, n: &mut usize) -> String {
        let conditions = [
            (self.created_after.is_some(), "t.created_at >= #"),
            (self.created_before.is_some(), "t.created_at < #"),
            (self.user_id.is_some(), "t.user_id = #"),
            (!self.platforms.is_empty(), "t.platform = ANY (#::text[])"),
            (
                !self.source_types.is_empty(),
                "t.source_type = ANY (#::text[])",
            ),
            (self.session_id.is_some(), "t.session_id = #"),
            (!self.hashtags.is_empty(), "t.hashtags @> #::text[]"),
        ];
        let mut out = String::new();
        for (_, c) in conditions.iter().filter(|(on, _)| *on) {
            out.push_str(" AND ");
            out.push_str(&c.replace('#', &format!("${n}", n = *n)));
            *n += 1;
        }
        if self.without_negative_feedback {
            out.push_str(&format!(
                " AND (t.entity_type <> 'ai_context' OR {})",
                not_negative("t.organization_id", "t.entity_id")
            ));
        }
        out
    }

    /// Binds the values of [`ItemFilter::sql`]'s parameters, in its order.
    pub fn bind<'q>(&'q self, mut q: PgQuery<'q>) -> PgQuery<'q> {
        if let Some(t) = self.created_after {
            q = q.bind(t);
        }
        if let Some(t) = self.created_before {
            q = q.bind(t);
        }
        if let Some(u) = self.user_id {
            q = q.bind(u);
        }
        if !self.platforms.is_empty() {
            q = q.bind(&self.platforms);
        }
        if !self.source_types.is_empty() {
            q = q.bind(&self.source_types);
        }
        if let Some(s) = &self.session_id {
            q = q.bind(s);
        }
        if !self.hashtags.is_empty() {
            q = q.bind(&self.hashtags);
        }
        q
    }
}

/// ` AND t.entity_type = ANY ($n)` when `types` is set (advancing `*n`).
fn types_sql(types: Option<&[String]>, n: &mut usize) -> String {
    match types {
        Some(_) => {
            let s = format!(" AND t.entity_type = ANY (${}::text[])", *n);
            *n += 1;
            s
        }
        None => String::new(),
    }
}

/// One full-text match: its rank is `ts_rank` normalized to [0, 1).
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct TextHit {
    pub entity_type: String,
    pub entity_id: Uuid,
    pub rank: f64,
}

/// The items of `org` whose text matches `query` (websearch syntax, the
/// schema's `search_query`), best rank first (ties by type, then id), at
/// most `k`. A query without words (only punctuation) matches nothing.
pub async fn text_search(
    conn: &mut PgConnection,
    org: Uuid,
    query: &str,
    types: Option<&[String]>,
    filter: &ItemFilter,
    k: i64,
) -> sqlx::Result<Vec<TextHit>> {
    let mut n = 4;
    let types_cond = types_sql(types, &mut n);
    let filters = filter.sql(&mut n);
    // Every match is ranked, so the rank must be cheap: ts_rank (term
    // frequency), not ts_rank_cd (cover density, much more work per
    // row). Normalization 32: rank / (rank + 1), in [0, 1).
    // The index reads the organization's own posting lists (migration 15);
    // each row's organization and document decide, as the index's lexemes
    // name an organization by part of its id.
    let sql = format!(
        "SELECT t.entity_type, t.entity_id, ts_rank(t.document, q, 32)::float8 AS rank
         FROM item_texts t, search_query($2) AS q
         WHERE search_tenant_document(t.organization_id, t.document) @@ search_tenant_query($1, $2)
           AND t.organization_id = $1 AND t.document @@ q{types_cond}{filters}
         ORDER BY rank DESC, t.entity_type, t.entity_id
         LIMIT $3"
    );
    let mut q = sql::query(&sql).bind(org).bind(query).bind(k);
    if let Some(types) = types {
        q = q.bind(types);
    }
    let rows = filter.bind(q).fetch_all(&mut *conn).await?;
    rows.iter().map(TextHit::from_row).collect()
}

/// Below this many matching items, the vector side filters first and
/// compares every match exactly; above, it walks the HNSW index with the
/// filter applied inside the scan (pgvector's iterative scan).
pub const FILTER_FIRST_AT_MOST: i64 = 2_000;

/// Items nearest to `q.vector` among those whose text passes `filter`:
/// [`similarity::search`] for an empty filter; with one, an exact scan of
/// the matches when they are few, else the index walked with the filter
/// inside it, and the exact scan after all when the walk ends short (the
/// index stops after `hnsw.max_scan_tuples`). So whenever `q.max_results`
/// items match, that many come back.
pub async fn nearest(
    conn: &mut PgConnection,
    q: &VectorQuery<'_>,
    filter: &ItemFilter,
) -> sqlx::Result<Vec<Hit>> {
    if filter.is_empty() {
        return similarity::search(&mut *conn, q).await;
    }
    let few = count_matching(conn, q.organization_id, q.entity_types, filter).await?
        <= FILTER_FIRST_AT_MOST;
    if !few {
        let (hits, complete) = similarity::walk(&mut *conn, q, Some(filter)).await?;
        if complete {
            return Ok(hits);
        }
    }
    exact_nearest(conn, q, filter).await
}

/// How many items of `org` pass `filter` (and `types`), counted up to one
/// more than [`FILTER_FIRST_AT_MOST`].
async fn count_matching(
    conn: &mut PgConnection,
    org: Uuid,
    types: Option<&[String]>,
    filter: &ItemFilter,
) -> sqlx::Result<i64> {
    let mut n = 3;
    let types_cond = types_sql(types, &mut n);
    let filters = filter.sql(&mut n);
    let sql = format!(
        "SELECT count(*) FROM (SELECT 1 FROM item_texts t
                               WHERE t.organization_id = $1{types_cond}{filters} LIMIT $2) AS m"
    );
    let mut q = sql::query(&sql).bind(org).bind(FILTER_FIRST_AT_MOST + 1);
    if let Some(types) = types {
        q = q.bind(types);
    }
    let row = filter.bind(q).fetch_one(&mut *conn).await?;
    sqlx::Row::try_get(&row, 0)
}

/// The filter first, then every match's distance, exactly (no index):
/// each item once, with its best model's similarity.
async fn exact_nearest(
    conn: &mut PgConnection,
    q: &VectorQuery<'_>,
    filter: &ItemFilter,
) -> sqlx::Result<Vec<Hit>> {
    let mut n = 6;
    let model_cond = match q.model {
        Some(_) => {
            n += 1;
            " AND e.model = $6"
        }
        None => "",
    };
    let types_cond = types_sql(q.entity_types, &mut n);
    let filters = filter.sql(&mut n);
    // `embedding <=> $3` is not the index's expression: an exact scan.
    let sql = format!(
        "SELECT e.entity_type, e.entity_id,
                max(1 - (e.embedding <=> $3::vector))::float8 AS similarity
         FROM item_texts t
         JOIN embeddings e ON e.organization_id = t.organization_id
                          AND e.entity_type = t.entity_type AND e.entity_id = t.entity_id
         WHERE t.organization_id = $1 AND e.dimension = $2{model_cond}{types_cond}{filters}
         GROUP BY e.entity_type, e.entity_id
         HAVING max(1 - (e.embedding <=> $3::vector)) >= $5
         ORDER BY similarity DESC, e.entity_type, e.entity_id
         LIMIT $4"
    );
    let mut query = sql::query(&sql)
        .bind(q.organization_id)
        .bind(q.cast.dimension)
        .bind(Vector::from(q.vector.to_vec()))
        .bind(q.max_results.max(1))
        .bind(q.threshold);
    if let Some(model) = q.model {
        query = query.bind(model);
    }
    if let Some(types) = q.entity_types {
        query = query.bind(types);
    }
    let rows = filter.bind(query).fetch_all(&mut *conn).await?;
    rows.iter().map(Hit::from_row).collect()
}

/// Each item's best passage for `query` (its beginning when the query has
/// no words or none of them is in it), the terms between U+0002 and U+0003.
/// Items without a text get none.
pub async fn snippets(
    conn: &mut PgConnection,
    org: Uuid,
    query: &str,
    items: &[(String, Uuid)],
) -> sqlx::Result<HashMap<(String, Uuid), String>> {
    let types: Vec<&str> = items.iter().map(|i| i.0.as_str()).collect();
    let ids: Vec<Uuid> = items.iter().map(|i| i.1).collect();
    let rows: Vec<(String, Uuid, String)> = sql::query_as(
        "SELECT t.entity_type, t.entity_id, search_snippet(t.body, search_query($2))
         FROM unnest($3::text[], $4::uuid[]) AS i(entity_type, entity_id)
         JOIN item_texts t ON t.organization_id = $1 AND t.entity_type = i.entity_type
                          AND t.entity_id = i.entity_id",
    )
    .bind(org)
    .bind(query)
    .bind(&types)
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(|(t, id, s)| ((t, id), s)).collect())
}

/// Whether `types` names only the schema's own types, which every
/// organization knows: then [`unknown_types`] has nothing to look up.
pub fn only_own_types(types: &[String]) -> bool {
    types.iter().all(|t| OWN_TEXT_TYPES.contains(&t.as_str()))
}

/// Of `types`, those `org` has no item of (no text, no vector), apart from
/// the schema's own types, which every organization knows.
pub async fn unknown_types(
    conn: &mut PgConnection,
    org: Uuid,
    types: &[String],
) -> sqlx::Result<Vec<String>> {
    sql::query_scalar(
        "SELECT t FROM unnest($2::text[]) WITH ORDINALITY AS u(t, i)
         WHERE t <> ALL ($3::text[])
           AND NOT EXISTS (SELECT 1 FROM item_texts x WHERE x.organization_id = $1 AND x.entity_type = t)
           AND NOT EXISTS (SELECT 1 FROM embeddings x WHERE x.organization_id = $1 AND x.entity_type = t)
         ORDER BY i",
    )
    .bind(org)
    .bind(types)
    .bind(&OWN_TEXT_TYPES[..])
    .fetch_all(&mut *conn)
    .await
}
