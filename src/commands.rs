//! The one-shot commands: `migrate` (or `migrate --rollback`), `verify`,
//! `finalize`, `distribute`, `token` and `vectorizer`. Each works on the database `serve` would use
//! ([`Database::open`]) and says what it did on stdout.

use sqlx::PgPool;

use crate::auth::{self, SecretSource};
use crate::config::{Config, TokenArgs, TokenRole, VectorizerArgs};
use crate::db::citus::{self, Outcome};
use crate::db::{migrate, rollback, Database};
use crate::store::maintenance::{self, IntegrityCheck};
use crate::store::vectorizer as queue;

/// Runs `work` on an admin pool of the configured database (the embedded
/// one a running service has started, else started for the command; the
/// direct URL when DATABASE_URL is a pooler's), then closes both, whatever
/// the outcome.
async fn on_database<T>(
    config: &Config,
    work: impl AsyncFnOnce(&PgPool) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let db = Database::attach(config).await?;
    let admin = match db.check_not_pooled().await {
        Ok(()) => db.admin_pool().await,
        Err(e) => Err(e),
    };
    let result = match admin {
        Ok(pool) => {
            let result = work(&pool).await;
            pool.close().await;
            result
        }
        Err(e) => Err(e),
    };
    db.close().await?;
    result
}

/// `affinity migrate`: apply the bundled migrations and the rollup zones.
pub async fn migrate(config: Config) -> anyhow::Result<()> {
    let zones = &config.metric_rollup_zones;
    on_database(&config, async |pool| migrate::apply(pool, zones).await).await?;
    tracing::info!("migrations applied");
    Ok(())
}

/// `affinity distribute`: the migrated schema made a Citus one.
pub async fn distribute(config: Config) -> anyhow::Result<()> {
    match on_database(&config, async |pool| citus::distribute(pool).await).await? {
        Outcome::Distributed { workers } => println!(
            "distributed: {} reference tables, {} tenant tables by organization_id over {workers} workers",
            citus::REFERENCE_TABLES.len(),
            citus::TENANT_TABLES.len()
        ),
        Outcome::AlreadyDistributed => println!("already distributed: nothing to do"),
    }
    Ok(())
}

/// `affinity migrate --rollback`: back to the legacy schema.
pub async fn rollback(config: Config) -> anyhow::Result<()> {
    let done = on_database(&config, async |pool| {
        rollback::rollback(pool)
            .await
            .map_err(|e| e.context("rolling back the migrations"))
    })
    .await?;
    tracing::info!(
        migrations = done.migrations,
        "rolled back to the legacy schema"
    );
    println!(
        "rolled back {} migrations: the database is in the legacy schema",
        done.migrations
    );
    Ok(())
}

/// `affinity verify`: prints the integrity checks; Ok(false) when one fails.
pub async fn verify(config: Config) -> anyhow::Result<bool> {
    let checks = on_database(&config, async |pool| integrity_checks(pool).await).await?;
    print!("{}", format_checks(&checks));
    Ok(checks.iter().all(|c| c.passed))
}

/// `affinity finalize`: drops the legacy backups, only when verify passes.
pub async fn finalize(config: Config) -> anyhow::Result<()> {
    let done = on_database(&config, async |pool| {
        let checks = integrity_checks(pool).await?;
        print!("{}", format_checks(&checks));
        let failed = maintenance::failed(&checks);
        if !failed.is_empty() {
            anyhow::bail!(
                "finalize refused, nothing was dropped: integrity checks failed: {}",
                failed.join(", ")
            );
        }
        migrate::finalize(pool).await
    })
    .await?;
    println!("finalized: {done}");
    Ok(())
}

/// `affinity token`: a JWT signed with the secret `serve` would use.
pub fn token(args: TokenArgs) -> anyhow::Result<()> {
    let source = SecretSource {
        configured: args.jwt_secret.as_deref(),
        database_url: args.database_url.as_deref(),
        data_dir: args
            .data_dir
            .clone()
            .unwrap_or_else(crate::config::default_data_dir),
    };
    // Only read: a secret generated here would not be the one a running
    // service uses.
    let secret = auth::jwt_secret(&source, false)?;
    let role = match args.role {
        TokenRole::Authenticated => auth::ROLE_AUTHENTICATED,
        TokenRole::ServiceRole => auth::ROLE_SERVICE,
    };
    println!(
        "{}",
        auth::mint(secret.as_bytes(), args.user, role, args.ttl)?
    );
    Ok(())
}

/// `affinity vectorizer`: the embedding queue's state; with
/// `--requeue-failed`, the items set aside go back in the queue first.
pub async fn vectorizer(args: VectorizerArgs) -> anyhow::Result<()> {
    let requeue = args.requeue_failed;
    on_database(&args.config, async |pool| {
        if requeue {
            let n = queue::requeue_failed(pool).await?;
            println!("requeued {n} items set aside");
        }
        let state = queue::state(pool).await?;
        println!(
            "pending  {}  (being embedded: {})",
            state.pending, state.claimed
        );
        println!("oldest   {:.0} s", state.oldest_pending_secs);
        println!(
            "failed   {}  (set aside until --requeue-failed)",
            state.failed
        );
        for (error, count) in queue::failures(pool).await? {
            println!("  {count:>8}  {error}");
        }
        Ok(())
    })
    .await
}

/// The same checks VerifyMigrationIntegrity answers with, or a hint when
/// the database is not migrated.
async fn integrity_checks(pool: &PgPool) -> anyhow::Result<Vec<IntegrityCheck>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regproc('public.verify_migration_integrity') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !exists {
        anyhow::bail!(
            "the database is not migrated (no verify_migration_integrity()): run `affinity migrate` first"
        );
    }
    Ok(maintenance::verify_migration_integrity(pool).await?)
}

/// The checks as a table for a terminal: check, passed, detail.
fn format_checks(checks: &[IntegrityCheck]) -> String {
    let width = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max("CHECK".len());
    let mut out = format!("{:width$}  {:6}  DETAIL\n", "CHECK", "PASSED");
    for c in checks {
        let passed = if c.passed { "yes" } else { "NO" };
        out.push_str(&format!("{:width$}  {:6}  {}\n", c.name, passed, c.details));
    }
    out
}
