//! The connection pool: connects with retry and backoff, logging why.
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// Connects to `url`, retrying with exponential backoff (100 ms doubling to
/// 5 s) for as long as the database refuses; a malformed URL fails at once.
pub async fn connect_with_retry(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    connect_with_timeout(url, max_connections, None).await
}

/// [`connect_with_retry`] whose connections have `statement_timeout` as their
/// session default (a startup parameter: no extra round trip per call).
pub async fn connect_with_timeout(
    url: &str,
    max_connections: u32,
    statement_timeout: Option<Duration>,
) -> anyhow::Result<PgPool> {
    let mut options = PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("DATABASE_URL is not a valid PostgreSQL URL: {e}"))?
        .application_name("affinity")
        // Statements are logged by our own spans, never with their parameters.
        .log_statements(tracing::log::LevelFilter::Off)
        .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(5));
    if let Some(t) = statement_timeout {
        options = options.options([("statement_timeout", t.as_millis().to_string())]);
    }
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1u32;
    loop {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await;
        match pool {
            Ok(pool) => return Ok(pool),
            Err(e) => {
                tracing::warn!(attempt, retry_in_ms = delay.as_millis() as u64, error = %e, "database not reachable yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
                attempt += 1;
            }
        }
    }
}
