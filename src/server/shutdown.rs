//! Stopping: on SIGTERM or SIGINT, NOT_SERVING first, stop accepting, let
//! in-flight calls finish within the grace period, close the pool, stop the
//! embedded database.

use super::health::Health;
use super::router::GrpcServer;
use crate::config::Config;
use crate::db::pool::CountedPool;
use crate::db::Database;

/// A background task that ends with its owner.
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

/// The graceful stop, from whatever point the service reached.
pub(super) async fn stop(
    mut health: Health,
    server: GrpcServer,
    config: &Config,
    pool: Option<CountedPool>,
    database: Option<Database>,
) {
    tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
    health.set(false).await;
    match server.stop(config.shutdown_grace()).await {
        true => tracing::info!("in-flight calls finished"),
        false => tracing::warn!(
            grace_secs = config.shutdown_grace_secs,
            "calls still running after the grace period"
        ),
    }
    if let Some(pool) = pool {
        pool.close().await;
    }
    if let Some(db) = database {
        if let Err(e) = db.close().await {
            tracing::warn!(error = %e, "stopping the embedded PostgreSQL");
        }
    }
}
