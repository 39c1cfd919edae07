//! Working behind a transaction-mode pooler (PgBouncer, Supabase's pooler):
//! each transaction may run on another server connection, so nothing may
//! outlive one. The calls' connections there send no startup parameters a
//! pooler refuses, prepare unnamed statements only (`super::sql`), run
//! every call in a transaction that sets what a session would
//! (`SET LOCAL`), and look up the types sqlx resolves by name or oid once,
//! when they connect, dropping the statements of those lookups at once.
//! And a service pointed at a pooler without a direct URL says so at start.

use std::time::Duration;

use anyhow::bail;
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgConnectOptions, PgTypeInfo};
use sqlx::{Connection, Encode, Executor, PgConnection, Postgres, Row, Type};

use super::pool::until_reachable;
use super::sql;

/// How long the check waits for its second transaction: one that waits at
/// all shares a server connection with the first.
const CHECK_WAIT: Duration = Duration::from_secs(3);

/// `options` without what a transaction pooler refuses (PgBouncer 1.18
/// refuses `options` and `extra_float_digits`) or cannot keep (the
/// statement cache, whose statements are named).
pub fn pooled_options(options: PgConnectOptions) -> PgConnectOptions {
    options.extra_float_digits(None).statement_cache_capacity(0)
}

/// What each call's transaction sets behind a pooler, where a session's
/// settings may belong to another client by the next transaction.
pub fn call_settings(statement_timeout: Option<Duration>) -> String {
    // Statement timeout 0: none, as the session default would be.
    let ms = statement_timeout.map_or(0, |t| t.as_millis());
    format!("SET LOCAL jit = off; SET LOCAL statement_timeout = {ms}")
}

/// A NULL of the named type: binding it makes sqlx resolve the name.
struct NullOf(PgTypeInfo);

impl Type<Postgres> for NullOf {
    fn type_info() -> PgTypeInfo {
        PgTypeInfo::with_name("text")
    }
}

impl Encode<'_, Postgres> for NullOf {
    fn encode_by_ref(&self, _: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Ok(IsNull::Yes)
    }

    fn produces(&self) -> Option<PgTypeInfo> {
        Some(self.0.clone())
    }
}

/// Makes sqlx look up `types` (names of types it does not know, and of
/// their arrays) on `conn` now, in one transaction: binding by name and
/// decoding by oid. Its lookups are named statements, which would stay on
/// the pooler's server connection and collide with another client's of the
/// same name: they are deallocated before the transaction ends.
pub async fn resolve_types(conn: &mut PgConnection, types: &[&'static str]) -> sqlx::Result<()> {
    let mut tx = conn.begin().await?;
    let mut binds = Vec::new();
    let mut select = Vec::new();
    for name in types {
        select.push(format!("NULL::{name}"));
        binds.push(PgTypeInfo::with_name(name));
        if !name.starts_with('_') {
            // How sqlx's derives declare arrays of a type.
            binds.push(PgTypeInfo::array_of(name));
        }
    }
    select.extend((1..=binds.len()).map(|i| format!("${i} IS NULL")));
    if !select.is_empty() {
        let statement = format!("SELECT {}", select.join(", "));
        let mut q = sql::query(&statement);
        for ty in binds {
            q = q.bind(NullOf(ty));
        }
        q.fetch_one(&mut *tx).await?;
    }
    tx.execute("DEALLOCATE ALL").await?;
    tx.commit().await
}

/// Fails when `options` lead to a transaction-mode pooler: a session
/// setting made in one transaction is gone (or the pooler makes the second
/// client wait) while another client holds a transaction open. Retries with
/// backoff, as the pools connect, while the database cannot be asked.
pub async fn check_direct(options: &PgConnectOptions) -> anyhow::Result<()> {
    let options = pooled_options(options.clone());
    if !until_reachable(|| session_kept(&options)).await {
        bail!(
            "DATABASE_URL leads to a transaction-mode pooler (a session setting did not \
             survive from one transaction to the next): set AFFINITY_DIRECT_DATABASE_URL \
             to a direct (unpooled) URL of the same database, for migrations, LISTEN and \
             advisory locks"
        );
    }
    Ok(())
}

/// Whether a session setting survives (see [`check_direct`]).
async fn session_kept(options: &PgConnectOptions) -> sqlx::Result<bool> {
    let mut first = PgConnection::connect_with(options).await?;
    let mut second = PgConnection::connect_with(options).await?;
    // Simple queries (no statement prepared), as every one here.
    first
        .execute("SELECT set_config('affinity.pooler_check', 'set', false)")
        .await?;
    // A pooler hands the server connection just released to the next
    // transaction: this one's, held open while the first client asks.
    second.execute("BEGIN; SELECT 1").await?;
    let kept = tokio::time::timeout(
        CHECK_WAIT,
        first.fetch_one("SELECT current_setting('affinity.pooler_check', true)"),
    )
    .await;
    let kept = match kept {
        Ok(row) => row?.try_get::<Option<String>, _>(0)?.as_deref() == Some("set"),
        Err(_) => false,
    };
    // Both connections are closed on drop (the first may be mid-statement).
    drop(second);
    drop(first);
    Ok(kept)
}
