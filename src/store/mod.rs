//! The SQL of each capability. Handlers in `crate::api` call these; they
//! take a pool or a transaction and return plain rows.
pub mod ai_context;
pub mod announcements;
pub mod maintenance;
pub mod metrics;
pub mod organizations;
pub mod search;
pub mod similarity;
pub mod texts;
pub mod vectorizer;

/// The types the service's statements bind or read that sqlx looks up by
/// name or oid (pgvector's, the schema's enum; with their arrays): looked
/// up once per connection behind a transaction pooler (`db::pooler`).
pub const SQL_TYPES: &[&str] = &["vector", "_vector", "org_role", "_org_role"];

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use sqlx::postgres::PgRow;
use sqlx::{Executor, PgConnection};

use crate::config::DEFAULT_HNSW_EF_SEARCH;

/// pgvector's largest candidate list.
const MAX_EF_SEARCH: i64 = 1000;

/// The deployment's smallest candidate list (set once at start-up from the
/// configuration): a shorter list trades recall for speed.
static EF_SEARCH_FLOOR: AtomicI64 = AtomicI64::new(DEFAULT_HNSW_EF_SEARCH);

pub fn set_ef_search_floor(ef: i64) {
    EF_SEARCH_FLOOR.store(ef.clamp(1, MAX_EF_SEARCH), Ordering::Relaxed);
}

/// The candidate list a search of `k` results runs with: `k`, at least the
/// deployment's floor, at most pgvector's limit.
pub fn ef_search(k: i64) -> i64 {
    k.clamp(EF_SEARCH_FLOOR.load(Ordering::Relaxed), MAX_EF_SEARCH)
}

/// The floor `find_similar_content` (a schema function, migration 5) sets
/// for itself on one node, whatever the deployment's.
const SCHEMA_EF_SEARCH: i64 = 200;

/// `find_similar_content`'s rule, for Citus, where the service sets the
/// candidate list around the call: the schema's floor whatever the
/// deployment's.
pub fn schema_ef_search(k: i64) -> i64 {
    k.clamp(SCHEMA_EF_SEARCH, MAX_EF_SEARCH)
}

/// The candidate list nearest-neighbour queries are planned with: pgvector's
/// default. The planner's cost of an HNSW scan grows with `hnsw.ef_search`;
/// planned at 200 it picks exact scans of 10,000-row organizations, 40 times
/// slower than the index.
pub const PLANNING_EF_SEARCH: i64 = 40;

/// Whether the schema is distributed by Citus (set once at start-up): the
/// nearest-neighbour settings then go as `SET LOCAL` commands, one per
/// statement, which Citus repeats on the workers that scan the index.
static ON_CITUS: AtomicBool = AtomicBool::new(false);

pub fn set_on_citus(distributed: bool) {
    ON_CITUS.store(distributed, Ordering::Relaxed);
}

fn on_citus() -> bool {
    ON_CITUS.load(Ordering::Relaxed)
}

/// One setting for this transaction. On Citus a `SET LOCAL` command alone
/// in its statement (`citus.propagate_set_commands = local` repeats its
/// whole text on the workers; a `set_config()` stays on the coordinator,
/// where no index is scanned, and the workers then searched with pgvector's
/// defaults: BENCHMARKS.md, "Vectors").
async fn set_local(conn: &mut PgConnection, name: &str, value: &str) -> sqlx::Result<()> {
    // Names and values are constants of this module: nothing from a client.
    conn.execute(format!("SET LOCAL {name} = {value}").as_str())
        .await?;
    Ok(())
}

/// Sets up a nearest-neighbour transaction: HNSW scans iterate in strict
/// order (so filters cannot starve them) and are planned with
/// [`PLANNING_EF_SEARCH`]. One round trip on plain PostgreSQL.
pub(crate) async fn begin_nearest(conn: &mut PgConnection) -> sqlx::Result<()> {
    begin_nearest_with(conn, PLANNING_EF_SEARCH).await
}

/// [`begin_nearest`] with a candidate list of `ef` (for statements that
/// set their own planning value, as `find_similar_content` does).
pub(crate) async fn begin_nearest_with(conn: &mut PgConnection, ef: i64) -> sqlx::Result<()> {
    if on_citus() {
        set_local(conn, "citus.propagate_set_commands", "'local'").await?;
        set_local(conn, "hnsw.iterative_scan", "strict_order").await?;
        return set_local(conn, "hnsw.ef_search", &ef.to_string()).await;
    }
    let sql = format!(
        "SELECT set_config('hnsw.iterative_scan', 'strict_order', true), \
                set_config('hnsw.ef_search', '{ef}', true)"
    );
    conn.execute(sql.as_str()).await?;
    Ok(())
}

/// Runs the nearest-neighbour query declared (hence planned, with
/// [`PLANNING_EF_SEARCH`] in effect) as cursor `cursor` in this transaction,
/// with a candidate list of `ef`: the HNSW scan reads `hnsw.ef_search` when
/// it starts, at the first FETCH. One round trip on plain PostgreSQL (three
/// on Citus, where a worker plans the shard's statement only then, with
/// `ef`); the cursor is closed and the planning value restored for the next
/// declaration.
pub(crate) async fn fetch_nearest(
    conn: &mut PgConnection,
    cursor: &'static str,
    ef: i64,
) -> sqlx::Result<Vec<PgRow>> {
    if on_citus() {
        set_local(conn, "hnsw.ef_search", &ef.to_string()).await?;
        let rows = conn
            .fetch_all(format!("FETCH ALL FROM {cursor}; CLOSE {cursor}").as_str())
            .await?;
        set_local(conn, "hnsw.ef_search", &PLANNING_EF_SEARCH.to_string()).await?;
        return Ok(rows);
    }
    // Integers and a constant name only: nothing from the client.
    let sql = format!(
        "SET LOCAL hnsw.ef_search = {ef}; FETCH ALL FROM {cursor}; CLOSE {cursor}; \
         SET LOCAL hnsw.ef_search = {PLANNING_EF_SEARCH}"
    );
    // A query without arguments goes as a simple query: several statements.
    conn.fetch_all(sql.as_str()).await
}
