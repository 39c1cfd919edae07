//! The way back: a migrated legacy database returned to the legacy schema
//! (`affinity migrate --rollback`), in one transaction.

use anyhow::Context;
use sqlx::{Connection, Executor, PgConnection, PgPool};

use super::migrate::{applied_migrations, db_message, with_migration_lock};

/// The last migration [`rollback`] knows how to undo. A new migration file
/// must extend `rollback.sql` (and this constant) with what it creates.
pub const ROLLBACK_KNOWS_UP_TO: i64 = 20240101000015;

/// Undoes every phase on a legacy database (see [`rollback`]).
const ROLLBACK_SQL: &str = include_str!("rollback.sql");

/// What [`rollback`] did.
#[derive(Debug)]
pub struct RolledBack {
    /// The migrations that were undone.
    pub migrations: usize,
}

/// Returns a migrated legacy database to the legacy schema, in one
/// transaction: the *_backup tables renamed back, the archived legacy tables
/// moved back to `public`, the column the migrations added to user_profiles
/// dropped, every object the migrations created dropped, and
/// `_sqlx_migrations` dropped. Refused (changing nothing) when
/// finalize_migration_cleanup() has dropped the backups, when the schema was
/// built on an empty database (there is no legacy state), or when the
/// database has migrations this rollback does not know.
pub async fn rollback(pool: &PgPool) -> anyhow::Result<RolledBack> {
    // The migrations' lock: no replica migrates meanwhile.
    with_migration_lock(pool, async |conn| rollback_locked(conn).await).await
}

async fn rollback_locked(conn: &mut PgConnection) -> anyhow::Result<RolledBack> {
    let mut tx = conn.begin().await?;
    let applied = applied_migrations(&mut tx).await?;
    if applied.is_empty() {
        anyhow::bail!("rollback refused: no migration was applied to this database");
    }
    let unknown: Vec<String> = applied
        .iter()
        .filter(|(v, ..)| *v > ROLLBACK_KNOWS_UP_TO)
        .map(|(v, ..)| v.to_string())
        .collect();
    if !unknown.is_empty() {
        anyhow::bail!(
            "rollback refused: it does not know how to undo migration(s) {}",
            unknown.join(", ")
        );
    }
    let has_events: bool =
        sqlx::query_scalar("SELECT to_regclass('public.migration_events') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await?;
    let finalized: Option<String> = if has_events {
        sqlx::query_scalar("SELECT at::text FROM migration_events WHERE event = 'finalized'")
            .fetch_optional(&mut *tx)
            .await?
    } else {
        None
    };
    if let Some(at) = finalized {
        anyhow::bail!(
            "rollback refused: finalize_migration_cleanup() dropped the legacy backups at {at}; \
             there is no legacy state left to return to"
        );
    }
    let has_snapshot: bool =
        sqlx::query_scalar("SELECT to_regclass('public.migration_legacy_snapshot') IS NOT NULL")
            .fetch_one(&mut *tx)
            .await?;
    let legacy = has_snapshot
        && sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM migration_legacy_snapshot)")
            .fetch_one(&mut *tx)
            .await?;
    if !legacy {
        anyhow::bail!(
            "rollback refused: the schema was built on an empty database (no legacy data was \
             migrated), so there is no legacy state to return to"
        );
    }
    let legacy_posts: bool = sqlx::query_scalar(
        "SELECT to_regclass('public.posts_backup') IS NOT NULL OR to_regclass('public.posts') IS NOT NULL",
    )
    .fetch_one(&mut *tx)
    .await?;
    if !legacy_posts {
        anyhow::bail!("rollback refused: neither posts_backup nor posts exists any more");
    }
    tracing::info!(
        migrations = applied.len(),
        "rolling back to the legacy schema"
    );
    tx.execute(ROLLBACK_SQL)
        .await
        .map_err(|e| anyhow::anyhow!("rollback failed, nothing was changed: {}", db_message(&e)))?;
    tx.commit().await.context("committing the rollback")?;
    Ok(RolledBack {
        migrations: applied.len(),
    })
}
