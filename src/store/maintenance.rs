//! Maintenance: the schema's integrity checks and metric archival.

use sqlx::PgExecutor;

/// One row of `verify_migration_integrity()`.
#[derive(Debug, Clone)]
pub struct IntegrityCheck {
    pub name: String,
    pub passed: bool,
    pub details: String,
}

/// Every check, in the function's order.
pub async fn verify_migration_integrity<'e>(
    db: impl PgExecutor<'e>,
) -> sqlx::Result<Vec<IntegrityCheck>> {
    let rows: Vec<(Option<String>, Option<bool>, Option<String>)> =
        sqlx::query_as("SELECT check_name, passed, details FROM verify_migration_integrity()")
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

/// Moves the points recorded more than `days` days ago to the archive, in one
/// transaction; returns how many moved.
pub async fn archive_old_metrics<'e>(db: impl PgExecutor<'e>, days: i32) -> sqlx::Result<u64> {
    let moved: i64 = sqlx::query_scalar("SELECT archive_old_metrics(make_interval(days => $1))")
        .bind(days)
        .fetch_one(db)
        .await?;
    // The function returns a row count: never negative.
    Ok(u64::try_from(moved).unwrap_or_default())
}
