//! Maintenance: the schema's integrity checks and metric archival.

use crate::db::sql;
use sqlx::PgExecutor;

/// One row of `verify_migration_integrity()`.
#[derive(Debug, Clone)]
pub struct IntegrityCheck {
    pub name: String,
    pub passed: bool,
    pub details: String,
}

/// The names of the checks that did not pass.
pub fn failed(checks: &[IntegrityCheck]) -> Vec<&str> {
    checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect()
}

/// Every check, in the function's order.
pub async fn verify_migration_integrity<'e>(
    db: impl PgExecutor<'e>,
) -> sqlx::Result<Vec<IntegrityCheck>> {
    let rows: Vec<(Option<String>, Option<bool>, Option<String>)> =
        sql::query_as("SELECT check_name, passed, details FROM verify_migration_integrity()")
            .fetch_all(db)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(name, passed, details)| IntegrityCheck {
            name: name.unwrap_or_default(),
            // A check that could not decide (NULL) has not passed.
            passed: passed.unwrap_or(false),
            details: details.unwrap_or_default(),
        })
        .collect())
}

/// Advisory lock key of archival: one run at a time across replicas.
pub const ARCHIVE_LOCK_KEY: i64 = 0x6166_6669_6172_6368; // "affiarch"

/// Whether archival waits for a run in progress elsewhere, or skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfBusy {
    Wait,
    Skip,
}

/// Moves the points recorded more than `days` days ago to the archive, in one
/// transaction, holding the archival lock (one run at a time across
/// replicas); returns how many moved, or None when `IfBusy::Skip` found
/// another run in progress.
pub async fn archive_old_metrics<'e>(
    db: impl PgExecutor<'e>,
    days: i32,
    if_busy: IfBusy,
) -> sqlx::Result<Option<u64>> {
    // One statement: the transaction-scoped lock is held until it commits,
    // in a caller's transaction or in the statement's own. MATERIALIZED makes
    // the lock come first.
    let sql = match if_busy {
        IfBusy::Wait => {
            "WITH l AS MATERIALIZED (SELECT pg_advisory_xact_lock($1) IS NULL AS got)
             SELECT archive_old_metrics(make_interval(days => $2)) FROM l"
        }
        IfBusy::Skip => {
            "WITH l AS MATERIALIZED (SELECT pg_try_advisory_xact_lock($1) AS got)
             SELECT CASE WHEN got THEN archive_old_metrics(make_interval(days => $2)) END FROM l"
        }
    };
    let moved: Option<i64> = sql::query_scalar(sql)
        .bind(ARCHIVE_LOCK_KEY)
        .bind(days)
        .fetch_one(db)
        .await?;
    // The function returns a row count: never negative.
    Ok(moved.map(|n| u64::try_from(n).unwrap_or_default()))
}
