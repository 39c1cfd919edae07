//! A read replica (AFFINITY_READ_DATABASE_URL): whether it answers and how
//! far it lags, as a probe on a connection of its own sees it. Reads that
//! may lag go there while it answers; the primary takes them otherwise.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection, Row};

/// How often the probe asks.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// Longest a probe's connect or question may take before the replica
/// counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The replay lag: zero when everything received is replayed (an idle
/// primary sends nothing, and the last replayed transaction only ages).
const LAG: &str = "SELECT CASE
    WHEN NOT pg_is_in_recovery() THEN 0
    WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
    ELSE COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0)
  END::float8";

/// The probe's view of the replica. Cheap to clone; the state is shared.
#[derive(Clone, Debug, Default)]
pub struct ReplicaState {
    up: Arc<AtomicBool>,
    /// Seconds, as f64 bits.
    lag: Arc<AtomicU64>,
}

impl ReplicaState {
    /// Down until the probe's first answer.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The replay lag the probe last saw, in seconds.
    pub fn lag_secs(&self) -> f64 {
        f64::from_bits(self.lag.load(Ordering::Relaxed))
    }

    fn set(&self, up: bool, lag: f64) {
        let was = self.up.swap(up, Ordering::Relaxed);
        self.lag.store(lag.to_bits(), Ordering::Relaxed);
        match (was, up) {
            (false, true) => {
                tracing::info!("the read replica answers: reads that may lag go there")
            }
            (true, false) => {
                tracing::warn!("the read replica does not answer: every read goes to the primary")
            }
            _ => {}
        }
    }

    /// Keeps one connection to the replica and asks its lag every 250 ms;
    /// a lost connection is replaced at once. Runs until aborted.
    pub async fn probe(self, options: PgConnectOptions) {
        let mut conn: Option<PgConnection> = None;
        loop {
            if conn.is_none() {
                conn = tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&options))
                    .await
                    .ok()
                    .and_then(Result::ok);
            }
            let lag = match conn.as_mut() {
                // A simple query: nothing prepared, whatever is in between.
                Some(c) => match tokio::time::timeout(PROBE_TIMEOUT, c.fetch_one(LAG)).await {
                    Ok(Ok(row)) => row.try_get::<f64, _>(0).ok(),
                    _ => None,
                },
                None => None,
            };
            match lag {
                Some(lag) => self.set(true, lag),
                None => {
                    conn = None;
                    let last = self.lag_secs();
                    self.set(false, last);
                }
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }
}
