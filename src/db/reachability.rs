//! Whether the database answers right now, as a probe on a connection of
//! its own sees it: the signal that fails calls fast with UNAVAILABLE,
//! turns health to NOT_SERVING, and retires connections kept from before
//! an outage.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

/// How often the probe pings its connection.
const PING_INTERVAL: Duration = Duration::from_millis(250);
/// Longest a probe's connect or ping may take before the database counts
/// as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the database answers right now, as a probe on a connection of
/// its own sees it (see [`Reachability::probe`]). While it does not, calls
/// fail at once with UNAVAILABLE instead of waiting for a pool connection
/// until their deadline (sqlx's pool keeps retrying a server that answers
/// "starting up" or "not accepting connections" until its acquire timeout),
/// and health says NOT_SERVING.
#[derive(Clone, Debug)]
pub struct Reachability {
    tx: Arc<tokio::sync::watch::Sender<bool>>,
    /// Bumped whenever the probe loses its connection (the server may have
    /// restarted or ended sessions): connections kept from before are
    /// checked again before another call uses them.
    epoch: Arc<AtomicU64>,
}

impl Default for Reachability {
    fn default() -> Self {
        Self::new()
    }
}

impl Reachability {
    /// Reachable until a probe says otherwise.
    pub fn new() -> Self {
        Reachability {
            tx: Arc::new(tokio::sync::watch::Sender::new(true)),
            epoch: Default::default(),
        }
    }

    /// Changes when the probe loses its connection.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    pub fn is_reachable(&self) -> bool {
        *self.tx.borrow()
    }

    /// Follows the changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<bool> {
        self.tx.subscribe()
    }

    /// Resolves once the database is unreachable (at once if it is now).
    pub async fn unreachable(&self) {
        let mut rx = self.tx.subscribe();
        // Err only when the sender is gone, which `self` prevents.
        let _ = rx.wait_for(|reachable| !*reachable).await;
    }

    fn set(&self, reachable: bool, why: Option<&dyn std::fmt::Display>) {
        let changed = self.tx.send_if_modified(|cur| {
            let changed = *cur != reachable;
            *cur = reachable;
            changed
        });
        if changed && reachable {
            tracing::info!("the database answers again: serving");
        } else if changed {
            let error = why.map(|e| e.to_string()).unwrap_or_default();
            tracing::warn!(%error, "the database does not answer: calls get UNAVAILABLE until it does");
        }
    }

    /// Keeps one connection to the database (`options`, the pool's) and
    /// pings it every 250 ms. A lost connection is replaced at once (so a
    /// session ended by an administrator is no outage); only when that
    /// fails too is the database unreachable, until a connection succeeds.
    /// Runs until the task is aborted.
    pub async fn probe(self, options: PgConnectOptions) {
        let mut conn: Option<PgConnection> = None;
        loop {
            let alive = match conn.as_mut() {
                Some(c) => matches!(
                    tokio::time::timeout(PROBE_TIMEOUT, c.ping()).await,
                    Ok(Ok(()))
                ),
                None => false,
            };
            if alive {
                self.set(true, None);
            } else {
                self.epoch.fetch_add(1, Ordering::Relaxed);
                conn = None;
                match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&options))
                    .await
                {
                    Ok(Ok(c)) => {
                        conn = Some(c);
                        self.set(true, None);
                    }
                    Ok(Err(e)) => self.set(false, Some(&e)),
                    Err(_) => self.set(false, Some(&"connecting timed out")),
                }
            }
            tokio::time::sleep(PING_INTERVAL).await;
        }
    }
}
