//! Full-text posting lists of one organization each (migration 15) against
//! migration 10's index over (organization, document), on the same data in
//! one run: the TEXT statement in a small organization beside the large
//! one, and in the large one.

use std::time::Instant;

use affinity::store::search::{text_search, ItemFilter};
use anyhow::{Context, Result};
use sqlx::postgres::PgArguments;
use sqlx::query::Query;
use sqlx::{PgConnection, PgPool, Postgres, Row};
use uuid::Uuid;

use crate::speed::Latencies;

/// Migration 10's statement (before a1054f8): the organization and the
/// document in one GIN index (btree_gin), which holds one posting list per
/// word across every organization.
const MIGRATION_10_FORM: &str =
    "SELECT t.entity_type, t.entity_id, ts_rank(t.document, q, 32)::float8 AS rank
     FROM item_texts t, search_query($2) AS q
     WHERE t.organization_id = $1 AND t.document @@ q AND t.entity_type = ANY ($4::text[])
     ORDER BY rank DESC, t.entity_type, t.entity_id
     LIMIT $3";

/// Built for the comparison, dropped after it.
const MIGRATION_10_INDEX: &str = "bench_migration10_document_idx";

/// One organization's TEXT statements, both forms.
pub struct OrgRow {
    pub label: &'static str,
    pub items: i64,
    /// The service's statement (`store::search::text_search`).
    pub tenant: Latencies,
    pub migration_10: Latencies,
    /// The indexes migration 10's form was planned with (for one query).
    pub migration_10_plan: String,
}

/// `passes` passes (the first a warm-up) over `queries` in each of `orgs`,
/// the two forms alternating which goes first, 10 results each.
pub async fn compare(
    pool: &PgPool,
    orgs: &[(&'static str, Uuid)],
    queries: &[String],
    passes: usize,
) -> Result<Vec<OrgRow>> {
    let mut conn = pool.acquire().await?;
    sqlx::query(&format!(
        "CREATE INDEX {MIGRATION_10_INDEX} ON item_texts
         USING gin (organization_id, document) WITH (fastupdate = off)"
    ))
    .execute(&mut *conn)
    .await
    .context("building migration 10's index")?;
    sqlx::query("ANALYZE item_texts")
        .execute(&mut *conn)
        .await?;
    let mut rows = Vec::new();
    for &(label, org) in orgs {
        let items: i64 =
            sqlx::query_scalar("SELECT count(*) FROM item_texts WHERE organization_id = $1")
                .bind(org)
                .fetch_one(&mut *conn)
                .await?;
        let (mut tenant, mut old) = (Vec::new(), Vec::new());
        for pass in 0..passes {
            for (qi, q) in queries.iter().enumerate() {
                for step in 0..2 {
                    let old_form = (qi + pass + step) % 2 == 1;
                    let took = timed(&mut conn, org, q, old_form).await?;
                    if pass > 0 {
                        if old_form { &mut old } else { &mut tenant }.push(took);
                    }
                }
            }
        }
        let sample = queries.first().map(String::as_str).unwrap_or("review");
        rows.push(OrgRow {
            label,
            items,
            tenant: Latencies::from(tenant),
            migration_10: Latencies::from(old),
            migration_10_plan: plan_indexes(&mut conn, org, sample).await?,
        });
    }
    sqlx::query(&format!("DROP INDEX {MIGRATION_10_INDEX}"))
        .execute(&mut *conn)
        .await?;
    Ok(rows)
}

/// Migration 10's form (`sql`: it, or it explained) for `q` in `org`,
/// posts only, 10 results: the service's statement's parameters.
fn migration_10<'q>(
    sql: &'q str,
    org: Uuid,
    q: &'q str,
    types: &'q [String],
) -> Query<'q, Postgres, PgArguments> {
    sqlx::query(sql).bind(org).bind(q).bind(10_i64).bind(types)
}

/// Milliseconds of one statement of either form.
async fn timed(conn: &mut PgConnection, org: Uuid, q: &str, old_form: bool) -> Result<f64> {
    let types = ["post".to_string()];
    let started = Instant::now();
    if old_form {
        migration_10(MIGRATION_10_FORM, org, q, &types)
            .fetch_all(&mut *conn)
            .await?;
    } else {
        let filter = ItemFilter::default();
        text_search(&mut *conn, org, q, Some(&types), &filter, 10).await?;
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
}

/// The indexes in migration 10's form's plan for `q`.
async fn plan_indexes(conn: &mut PgConnection, org: Uuid, q: &str) -> Result<String> {
    let explain = format!("EXPLAIN (COSTS OFF) {MIGRATION_10_FORM}");
    let types = ["post".to_string()];
    let lines: Vec<String> = migration_10(&explain, org, q, &types)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<sqlx::Result<_>>()?;
    // "Index Scan using NAME on ..." or "Bitmap Index Scan on NAME".
    let mut names: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("Index"))
        .filter_map(|l| match l.split_once(" using ") {
            Some((_, rest)) => rest.split_whitespace().next(),
            None => l
                .split(" on ")
                .nth(1)
                .and_then(|r| r.split_whitespace().next()),
        })
        .collect();
    names.dedup();
    Ok(if names.is_empty() {
        "no index (sequential scan)".to_string()
    } else {
        names.join(", ")
    })
}
