//! Every entry matching a filter, oldest first, through a cursor: the
//! caller opens it in a REPEATABLE READ transaction (one snapshot for the
//! entries and their feedback) and fetches batch by batch, so that memory
//! holds one batch however many entries match.

use crate::db::sql;
use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use super::{Entry, ENTRY_COLUMNS};

/// Which entries an export holds.
#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub user_id: Option<Uuid>,
    pub session_id: Option<String>,
    /// Inclusive.
    pub occurred_after: Option<DateTime<Utc>>,
    /// Exclusive.
    pub occurred_before: Option<DateTime<Utc>>,
}

const CURSOR: &str = "export_entries";

/// Declares the export's cursor in the caller's transaction.
pub async fn open(conn: &mut PgConnection, org: Uuid, f: &ExportFilter) -> sqlx::Result<()> {
    // One statement per combination of filters (as `read::list`), so that
    // the plan walks an index in (occurred_at, id) order from the range.
    let cond = |on: bool, sql: &'static str, absent: &'static str| if on { sql } else { absent };
    let sql = format!(
        "DECLARE {CURSOR} NO SCROLL CURSOR FOR
         SELECT {ENTRY_COLUMNS} FROM ai_context_logs
         WHERE organization_id = $1 {} {} {} {}
         ORDER BY occurred_at, id",
        cond(
            f.user_id.is_some(),
            "AND user_id = $2",
            "AND $2::uuid IS NULL"
        ),
        cond(
            f.session_id.is_some(),
            "AND session_id = $3",
            "AND $3::text IS NULL"
        ),
        cond(
            f.occurred_after.is_some(),
            "AND occurred_at >= $4",
            "AND $4::timestamptz IS NULL"
        ),
        cond(
            f.occurred_before.is_some(),
            "AND occurred_at < $5",
            "AND $5::timestamptz IS NULL"
        ),
    );
    sql::query(&sql)
        .bind(org)
        .bind(f.user_id)
        .bind(f.session_id.as_deref())
        .bind(f.occurred_after)
        .bind(f.occurred_before)
        .execute(conn)
        .await?;
    Ok(())
}

/// The next `n` entries of the cursor [`open`] declared; empty at the end.
pub async fn next(conn: &mut PgConnection, n: usize) -> sqlx::Result<Vec<Entry>> {
    sql::query(&format!("FETCH FORWARD {n} FROM {CURSOR}"))
        .fetch_all(conn)
        .await?
        .iter()
        .map(Entry::from_row)
        .collect()
}
