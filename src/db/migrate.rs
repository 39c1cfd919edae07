//! The bundled migrations (`migrations/`), embedded in the binary, and our
//! own runner for them: every pending phase in ONE transaction (a failure
//! anywhere leaves the database exactly as it was), logging each phase's
//! duration and row counts as it goes; the rollup zones and the finalize
//! step. The way back is `super::rollback`.
//!
//! Bookkeeping stays sqlx's: the `_sqlx_migrations` table, its checksums and
//! its advisory lock id are the ones `sqlx::migrate::Migrator` uses, so a
//! database migrated by the earlier sqlx runner is recognised as such.
use std::time::Instant;

use anyhow::Context;
use sqlx::migrate::{Migrate, Migration, Migrator};
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// The bundled migrations: phases 01-04 of the schema refactoring, then
/// 05 (rollups, search tuning) and 06 (metric batch keys). sqlx reads and
/// checksums the files.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The tables each phase produces, whose row counts its progress line logs.
const PHASE_TABLES: &[(i64, &[&str])] = &[
    (
        20240101000001,
        &[
            "posts_core",
            "posts_content",
            "media_files",
            "post_media_links",
            "post_insights",
        ],
    ),
    (20240101000002, &["time_series_metrics", "embeddings"]),
    (
        20240101000003,
        &["organizations", "organization_members", "ai_context_logs"],
    ),
    (
        20240101000004,
        &[
            "scraped_posts",
            "posts_backup",
            "post_analytics_backup",
            "chat_messages_backup",
            "instagram_scraped_posts_backup",
            "scraped_instagram_data_backup",
            "archive.content_generations",
            "archive.hashtag_analytics",
        ],
    ),
    (
        20240101000005,
        &["metric_rollups_hourly", "metric_rollups_daily"],
    ),
    (20240101000006, &["metric_batch_keys"]),
];

/// Checks of the legacy data that the phases rely on, run in the migration's
/// transaction before phase 01 (they raise naming the offending rows).
const LEGACY_CHECKS: &str = include_str!("legacy_checks.sql");

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMPTZ NOT NULL DEFAULT now(),
    success BOOLEAN NOT NULL,
    checksum BYTEA NOT NULL,
    execution_time BIGINT NOT NULL
)";

/// "01" for 20240101000001: how operators and the files name the phases.
fn phase(m: &Migration) -> String {
    format!("{:02}", m.version % 100)
}

/// The message of a database error (a RAISE's text, or PostgreSQL's), with
/// its detail and hint, without sqlx's prefix.
pub(super) fn db_message(e: &sqlx::Error) -> String {
    let Some(d) = e.as_database_error() else {
        return e.to_string();
    };
    let mut out = d.message().to_string();
    if let Some(pg) = d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(detail) = pg.detail() {
            out.push_str(&format!(" ({detail})"));
        }
        if let Some(hint) = pg.hint() {
            out.push_str(&format!("; hint: {hint}"));
        }
    }
    out
}

/// Applies every pending migration in one transaction, after checking that
/// the applied ones are the bundled ones unchanged. Returns how many it
/// applied. On error nothing was applied.
pub async fn run(pool: &PgPool) -> anyhow::Result<usize> {
    // Replicas starting together (or an older replica running sqlx's own
    // runner) migrate one at a time; the others wait, then find nothing
    // pending.
    tracing::info!("taking the migration lock (waits while another replica migrates)");
    with_migration_lock(pool, async |conn| apply_pending(conn).await).await
}

/// Runs `work` on a connection holding sqlx's migration advisory lock, then
/// releases it. A connection whose work failed or that cannot unlock is
/// closed, not handed back to the pool (closing the session releases the
/// lock too).
pub(super) async fn with_migration_lock<T>(
    pool: &PgPool,
    work: impl AsyncFnOnce(&mut PgConnection) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut conn = pool.acquire().await.context("connecting to the database")?;
    conn.lock()
        .await
        .context("taking the migration advisory lock")?;
    let result = work(&mut conn).await;
    if let Err(e) = conn.unlock().await {
        tracing::warn!(error = %e, "releasing the migration advisory lock; closing the connection instead");
        conn.close_on_drop();
    } else if result.is_err() {
        conn.close_on_drop();
    }
    result
}

/// (version, checksum, success) of the migrations the database records.
pub(super) async fn applied_migrations(
    conn: &mut PgConnection,
) -> anyhow::Result<Vec<(i64, Vec<u8>, bool)>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(&mut *conn)
            .await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(
        sqlx::query_as("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
            .await?,
    )
}

async fn apply_pending(conn: &mut PgConnection) -> anyhow::Result<usize> {
    let mut tx = conn.begin().await?;
    let applied = applied_migrations(&mut tx).await?;
    // The same refusals as sqlx's runner.
    if let Some((version, ..)) = applied.iter().find(|(_, _, success)| !success) {
        anyhow::bail!(
            "migration {version} is recorded as partially applied (success = false in \
             _sqlx_migrations): repair the database by hand"
        );
    }
    for (version, ..) in &applied {
        if !MIGRATOR.iter().any(|m| m.version == *version) {
            anyhow::bail!(
                "the database records migration {version}, which this affinity does not bundle \
                 (migrated by a newer version?)"
            );
        }
    }
    let mut pending = Vec::new();
    for m in MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
    {
        match applied.iter().find(|(v, ..)| *v == m.version) {
            Some((_, checksum, _)) if checksum.as_slice() != &*m.checksum => anyhow::bail!(
                "migration {} ({}) was changed after it was applied: its checksum differs from \
                 the one recorded in _sqlx_migrations",
                m.version,
                m.description
            ),
            Some(_) => {}
            None => pending.push(m),
        }
    }
    if let Some(m) = pending.iter().find(|m| m.no_tx) {
        // Such a file (`-- no-transaction`) would break the all-or-nothing promise.
        anyhow::bail!(
            "migration {} ({}) asks to run outside a transaction, which this runner refuses",
            m.version,
            m.description
        );
    }
    if pending.is_empty() {
        tx.rollback().await?;
        tracing::info!("migrations: nothing pending");
        return Ok(0);
    }

    let started = Instant::now();
    tracing::info!(
        pending = pending.len(),
        first = %phase(pending[0]),
        "migrations: applying every pending phase in one transaction"
    );
    tx.execute(CREATE_MIGRATIONS_TABLE).await?;
    if pending[0].version == MIGRATOR.iter().map(|m| m.version).min().unwrap_or(0) {
        tracing::info!("checking the legacy data before phase 01");
        tx.execute(LEGACY_CHECKS).await.map_err(|e| {
            anyhow::anyhow!(
                "migration refused before phase 01, nothing was applied: {}",
                db_message(&e)
            )
        })?;
    }
    for m in &pending {
        let phase_started = Instant::now();
        tracing::info!(phase = %phase(m), description = %m.description, "phase started");
        tx.execute(&*m.sql).await.map_err(|e| {
            anyhow::anyhow!(
                "phase {} ({}) failed, nothing was applied: {}",
                phase(m),
                m.description,
                db_message(&e)
            )
        })?;
        let elapsed = phase_started.elapsed();
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
             VALUES ($1, $2, TRUE, $3, $4)",
        )
        .bind(m.version)
        .bind(&*m.description)
        .bind(&*m.checksum)
        .bind(i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        let rows = row_counts(&mut tx, m.version).await?;
        tracing::info!(
            phase = %phase(m),
            description = %m.description,
            elapsed_ms = elapsed.as_millis() as u64,
            rows = %rows,
            "phase done (committed with the others at the end)"
        );
    }
    let commit_started = Instant::now();
    tx.commit().await.context("committing the migrations")?;
    tracing::info!(
        phases = pending.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        commit_ms = commit_started.elapsed().as_millis() as u64,
        "migrations committed"
    );
    Ok(pending.len())
}

/// "posts_core=6000 posts_content=6000 ..." for the tables of a phase that exist.
async fn row_counts(conn: &mut PgConnection, version: i64) -> anyhow::Result<String> {
    let tables = PHASE_TABLES
        .iter()
        .find(|(v, _)| *v == version)
        .map_or(&[][..], |(_, t)| *t);
    let mut out = Vec::new();
    for table in tables {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
            .bind(table)
            .fetch_one(&mut *conn)
            .await?;
        if exists {
            // Our own constant names: identifiers cannot be parameters.
            let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
                .fetch_one(&mut *conn)
                .await?;
            out.push(format!("{table}={n}"));
        }
    }
    Ok(out.join(" "))
}

/// What `serve` and `affinity migrate` do: [`run`], then
/// [`add_rollup_zones`]. Returns how many migrations the database records
/// as applied (None when that count could not be read).
pub async fn apply(pool: &PgPool, rollup_zones: &[String]) -> anyhow::Result<Option<i64>> {
    run(pool).await.context("migrating the database")?;
    let recorded = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(pool)
        .await;
    if let Err(e) = &recorded {
        tracing::warn!(error = %e, "counting the applied migrations for the metrics");
    }
    add_rollup_zones(pool, rollup_zones).await?;
    Ok(recorded.ok())
}

/// Makes sure each zone has daily metric rollups (the schema's
/// `add_metric_rollup_zone`; a new zone's are built from every point, which
/// takes a while on a large table).
pub async fn add_rollup_zones(pool: &PgPool, zones: &[String]) -> anyhow::Result<()> {
    for zone in zones.iter().map(|z| z.trim()).filter(|z| !z.is_empty()) {
        let started = Instant::now();
        let added: bool = sqlx::query_scalar("SELECT add_metric_rollup_zone($1)")
            .bind(zone)
            .fetch_one(pool)
            .await
            .with_context(|| format!("adding metric rollups for the time zone {zone:?}"))?;
        if added {
            tracing::info!(
                zone,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "built daily metric rollups for a new time zone"
            );
        }
    }
    Ok(())
}

/// finalize_migration_cleanup(): drops the *_backup tables. The function
/// itself refuses (and drops nothing) unless every integrity check passes.
pub async fn finalize(pool: &PgPool) -> anyhow::Result<String> {
    sqlx::query_scalar("SELECT finalize_migration_cleanup()")
        .fetch_one(pool)
        .await
        .map_err(|e| anyhow::anyhow!("finalize_migration_cleanup(): {}", db_message(&e)))
}
