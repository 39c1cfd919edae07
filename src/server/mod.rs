//! The service's life: bind and answer health (NOT_SERVING) at once; start
//! the database (the embedded one when no DATABASE_URL), migrate, open the
//! calls' pool; SERVING; on shutdown NOT_SERVING first, stop accepting, let
//! in-flight calls finish within the grace period, close the pool, stop the
//! embedded database.

mod health;
mod router;
mod shutdown;
mod startup;

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

pub use shutdown::shutdown_signal;
use shutdown::AbortOnDrop;

use crate::api::ApiState;
use crate::auth::{self, Authenticator, SecretSource};
use crate::config::Config;
use crate::db::migrate::MIGRATOR;
use crate::observability::{endpoint, Metrics};
use crate::transport::{Listener, Transport};

/// `affinity serve`: on the configured addresses until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = Listener::bind(&config.listen_addr).await?;
    run(config, listener, shutdown_signal()).await
}

/// Runs the service on `listener` until `shutdown` resolves, with the
/// metrics endpoint on `AFFINITY_METRICS_ADDR` when set.
pub async fn run(
    config: Config,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(endpoint::bind(addr).await?),
        None => None,
    };
    run_with_metrics(config, listener, metrics_listener, shutdown).await
}

/// [`run`] with the metrics endpoint on `metrics_listener` (if any) instead
/// of `AFFINITY_METRICS_ADDR`.
pub async fn run_with_metrics(
    config: Config,
    listener: impl Into<Listener>,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    // Bind: the server answers health (NOT_SERVING) before the database is up.
    let secret = auth::jwt_secret(&secret_source(&config), true)?;
    // Before any call is served.
    crate::store::set_ef_search_floor(config.hnsw_ef_search);
    let listener = listener.into();
    let addr = listener.addr()?;
    let transport = Transport::from_config(&config, &addr)?;
    let metrics = Arc::new(Metrics::new(MIGRATOR.iter().count())?);
    let embedder = startup::text_model(&config)?;
    let state = Arc::new(ApiState::new(
        config.clone(),
        embedder,
        metrics.cache_counters(),
        metrics.metrics_cache_counters(),
    ));
    let _metrics_endpoint =
        metrics_listener.map(|l| AbortOnDrop(endpoint::serve(l, metrics.clone())));
    let (mut health, health_service) = health::Health::new(metrics.clone()).await;
    let auth = Arc::new(Authenticator::new(secret.as_bytes()));
    let mut server = router::serve(
        &config,
        &transport,
        &state,
        &metrics,
        auth,
        health_service,
        listener,
    )?;
    tracing::info!(%addr, transport = transport.describe(), "listening; NOT_SERVING until the database is ready");

    // Start the database and migrate, unless told to stop first.
    tokio::pin!(shutdown);
    let mut database = None;
    let started = tokio::select! {
        r = startup::prepare(&config, &state, &metrics, &mut database) => Some(r),
        _ = &mut shutdown => None,
        r = &mut server.task => {
            r.context("gRPC server task")?.context("gRPC server")?;
            anyhow::bail!("the gRPC server stopped during startup");
        }
    };
    let (pool, beside) = match started {
        Some(Ok(pools)) => pools,
        failed_or_stopped => {
            shutdown::stop(health, server, &config, None, database).await;
            return failed_or_stopped.map_or(Ok(()), |r| r.map(drop));
        }
    };

    // Serve until told to stop.
    let background_pool = beside.as_ref().unwrap_or(pool.pool());
    let background = startup::background(&config, &state, &metrics, background_pool).await;
    health.set(true).await;
    tracing::info!(%addr, "SERVING");
    let health_follower = AbortOnDrop(health.follow(&state.reachability));
    let probe = startup::probe(&state, &pool);
    let ended = tokio::select! {
        _ = &mut shutdown => None,
        r = &mut server.task => Some(r),
    };
    // Before `stop` says NOT_SERVING for good.
    drop((health_follower, probe));
    background.stop().await;
    if let Some(r) = ended {
        r.context("gRPC server task")?.context("gRPC server")?;
        anyhow::bail!("the gRPC server stopped on its own");
    }

    // Stop.
    shutdown::stop(health, server, &config, Some(pool), database).await;
    if let Some(direct) = beside {
        direct.close().await;
    }
    Ok(())
}

/// Where `serve` finds its JWT secret.
fn secret_source(config: &Config) -> SecretSource<'_> {
    SecretSource {
        configured: config.jwt_secret.as_deref(),
        database_url: config.database_url.as_deref(),
        data_dir: config.data_dir(),
    }
}
