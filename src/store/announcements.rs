//! The change announcements a Citus deployment's triggers write as rows
//! (`change_announcements`, created by `affinity distribute`), read by the
//! caches' poller in place of LISTEN.

use crate::db::sql;
use chrono::{DateTime, Utc};
use sqlx::PgExecutor;
use uuid::Uuid;

/// One announcement: a NOTIFY's channel and payload, and where and when
/// the trigger wrote it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Announcement {
    pub organization_id: Uuid,
    pub id: i64,
    pub channel: String,
    pub payload: String,
    pub announced_at: DateTime<Utc>,
}

/// Every announcement written after `after` (every shard's: one query to
/// each), oldest first.
pub async fn since<'e>(
    db: impl PgExecutor<'e>,
    after: DateTime<Utc>,
) -> sqlx::Result<Vec<Announcement>> {
    sql::query_as(
        "SELECT organization_id, id, channel, payload, announced_at
         FROM change_announcements WHERE announced_at > $1
         ORDER BY announced_at",
    )
    .bind(after)
    .fetch_all(db)
    .await
}

/// The database's clock: where following starts.
pub async fn now<'e>(db: impl PgExecutor<'e>) -> sqlx::Result<DateTime<Utc>> {
    sql::query_scalar("SELECT clock_timestamp()")
        .fetch_one(db)
        .await
}

/// Deletes the announcements written before `before`; how many.
pub async fn prune<'e>(db: impl PgExecutor<'e>, before: DateTime<Utc>) -> sqlx::Result<u64> {
    sql::query("DELETE FROM change_announcements WHERE announced_at < $1")
        .bind(before)
        .execute(db)
        .await
        .map(|r| r.rows_affected())
}
