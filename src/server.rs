//! The service's life: serve health (NOT_SERVING) at once, connect to the
//! database (the embedded one when no DATABASE_URL), migrate, then SERVING;
//! on shutdown NOT_SERVING first, stop accepting, let in-flight calls finish
//! within the grace period, close the pool, stop the embedded database.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tokio_stream::StreamExt;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use tower::util::MapResponseLayer;

use crate::api::ai_context::AiContextApi;
use crate::api::maintenance::MaintenanceApi;
use crate::api::metrics::MetricsApi;
use crate::api::organizations::OrganizationsApi;
use crate::api::similarity::SimilarityApi;
use crate::api::ApiState;
use crate::auth::Authenticator;
use crate::changes::{self, Follower};
use crate::coalesce::CoalescedWrites;
use crate::config::Config;
use crate::db::embedded::{self, EmbeddedDb};
use crate::db::migrate;
use crate::db::pool::{connect_with_retry, connect_with_timeout};
use crate::observability::{self, Metrics, ObserveLayer};
use crate::proto::{
    ai_context_service_server::AiContextServiceServer,
    maintenance_service_server::MaintenanceServiceServer,
    metrics_service_server::MetricsServiceServer,
    organization_service_server::OrganizationServiceServer,
    similarity_service_server::SimilarityServiceServer, FILE_DESCRIPTOR_SET,
};
use crate::transport::{Listener, Transport};

/// The JWT secret in effect: configured, else (embedded mode only) the one
/// generated in the data directory.
pub fn jwt_secret(config: &Config) -> anyhow::Result<String> {
    match (&config.jwt_secret, &config.database_url) {
        (Some(s), _) if !s.is_empty() => Ok(s.clone()),
        (_, Some(_)) => anyhow::bail!(
            "AFFINITY_JWT_SECRET (or --jwt-secret) is required when DATABASE_URL is set: \
             the HS256 secret your auth provider signs tokens with"
        ),
        (_, None) => embedded::jwt_secret(&config.data_dir()),
    }
}

/// Runs the service on `listener` until `shutdown` resolves, with the
/// metrics endpoint on `AFFINITY_METRICS_ADDR` when set.
pub async fn run(
    config: Config,
    listener: impl Into<Listener>,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let metrics_listener = match config.metrics_addr {
        Some(addr) => Some(observability::bind(addr).await?),
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
    let secret = jwt_secret(&config)?;
    let listener = listener.into();
    let addr = listener.addr()?;
    let transport = Transport::from_config(&config, &addr)?;
    let auth = Arc::new(Authenticator::new(secret.as_bytes()));
    let metrics = Arc::new(Metrics::new()?);
    let state = Arc::new(ApiState::new(
        config.clone(),
        metrics.cache_counters(),
        metrics.metrics_cache_counters(),
    ));
    let _metrics_server = match metrics_listener {
        Some(l) => {
            let metrics_addr = l.local_addr()?;
            tracing::info!(%metrics_addr, "serving Prometheus metrics at /metrics");
            Some(AbortOnDrop(observability::serve(l, metrics.clone())))
        }
        None => None,
    };

    let (mut health, health_service) = tonic_health::server::health_reporter();
    set_status(&mut health, ServingStatus::NotServing).await;

    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let max = config.max_message_bytes;
    let check = auth.interceptor();
    let mut builder = Server::builder().max_concurrent_streams(config.max_concurrent_streams);
    if let Transport::Tls { config, .. } = &transport {
        builder = builder.tls_config(config.clone()).context(
            "TLS settings (AFFINITY_TLS_CERT, AFFINITY_TLS_KEY, AFFINITY_TLS_CLIENT_CA)",
        )?;
    }
    let router = builder
        .layer(ObserveLayer::new(metrics.clone()))
        .layer(MapResponseLayer::new(refusals_in_contract_codes))
        .layer(crate::deadline::DeadlineLayer::new(
            state.reachability.clone(),
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(InterceptedService::new(
            SimilarityServiceServer::new(SimilarityApi::new(state.clone()))
                .max_decoding_message_size(max),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            MetricsServiceServer::new(MetricsApi::new(state.clone()))
                .max_decoding_message_size(max),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            OrganizationServiceServer::new(OrganizationsApi::new(state.clone()))
                .max_decoding_message_size(max),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            AiContextServiceServer::new(AiContextApi::new(state.clone()))
                .max_decoding_message_size(max),
            check.clone(),
        ))
        .add_service(InterceptedService::new(
            MaintenanceServiceServer::new(MaintenanceApi::new(state.clone()))
                .max_decoding_message_size(max),
            check,
        ));

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stopped = async {
        let _ = stop_rx.await;
    };
    let (mut server, _socket_file) = match listener {
        Listener::Tcp(listener) => {
            // TCP_NODELAY on every connection: without it, Nagle's algorithm
            // and the client's delayed ACKs add ~40 ms to small responses
            // under concurrency.
            let incoming = TcpListenerStream::new(listener).map(|conn| {
                let conn = conn?;
                conn.set_nodelay(true)?;
                Ok::<_, std::io::Error>(CoalescedWrites::new(conn))
            });
            let server = router.serve_with_incoming_shutdown(incoming, stopped);
            (tokio::spawn(server), None)
        }
        Listener::Unix { listener, file } => {
            let incoming =
                UnixListenerStream::new(listener).map(|conn| conn.map(CoalescedWrites::new));
            let server = router.serve_with_incoming_shutdown(incoming, stopped);
            // Kept to the end of this function: the file goes when it returns.
            (tokio::spawn(server), Some(file))
        }
    };
    tracing::info!(%addr, transport = transport.describe(), "listening; NOT_SERVING until the database is ready");

    tokio::pin!(shutdown);
    let mut embedded_db: Option<EmbeddedDb> = None;
    let startup = async {
        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => {
                let dir = config.data_dir();
                tracing::info!(data_dir = %dir.display(), "starting the embedded PostgreSQL");
                let db = EmbeddedDb::start(&dir).await?;
                let url = db.url();
                embedded_db = Some(db);
                url
            }
        };
        // Migrations and new rollup zones may take minutes: a pool of their
        // own, without the calls' statement timeout.
        let setup = connect_with_retry(&url, 2).await?;
        tracing::info!("connected; running migrations");
        let migrated = async {
            migrate::run(&setup)
                .await
                .context("migrating the database")?;
            if let Err(e) = metrics.record_migrations(&setup).await {
                tracing::warn!(error = %e, "counting the applied migrations for the metrics");
            }
            add_rollup_zones(&setup, &config.metric_rollup_zones).await
        }
        .await;
        setup.close().await;
        migrated?;
        let pool =
            connect_with_timeout(&url, config.db_max_connections, config.statement_timeout())
                .await?;
        let counted = crate::db::pool::CountedPool::new(pool.clone(), state.reachability.clone());
        state.set_ready(counted.clone()).await?;
        metrics.set_pool(counted.clone(), config.db_max_connections);
        anyhow::Ok(counted)
    };
    let outcome = tokio::select! {
        r = startup => Some(r),
        _ = &mut shutdown => None,
        r = &mut server => {
            r.context("gRPC server task")?.context("gRPC server")?;
            anyhow::bail!("the gRPC server stopped during startup");
        }
    };
    let pool = match outcome {
        Some(Ok(counted)) => {
            let pool = counted.pool().clone();
            // Partitions ahead now, then the schedules; stopped when dropped.
            let _jobs = crate::jobs::spawn(&config, pool.clone(), metrics.clone());
            // SERVING once membership and metric changes are followed (until
            // then, and whenever that connection drops, the caches are off).
            let (subscribed, is_subscribed) = tokio::sync::oneshot::channel();
            let followers: Vec<Arc<dyn Follower>> = vec![
                Arc::new(state.membership.clone()),
                Arc::new(state.metrics_cache.clone()),
            ];
            let listener = tokio::spawn(changes::follow(pool.clone(), followers, subscribed));
            if tokio::time::timeout(Duration::from_secs(10), is_subscribed)
                .await
                .is_err()
            {
                tracing::warn!(
                    "not yet following membership and metric changes; permission checks and metric aggregations go to the database"
                );
            }
            set_status(&mut health, ServingStatus::Serving).await;
            metrics.set_ready(true);
            tracing::info!(%addr, "SERVING");
            // From now on health follows the database: NOT_SERVING while it
            // does not answer, SERVING again when it does.
            let probe = AbortOnDrop(tokio::spawn(
                state
                    .reachability
                    .clone()
                    .probe((*pool.connect_options()).clone()),
            ));
            let follower = {
                let mut changes = state.reachability.subscribe();
                let (mut health, metrics) = (health.clone(), metrics.clone());
                AbortOnDrop(tokio::spawn(async move {
                    while changes.changed().await.is_ok() {
                        let up = *changes.borrow_and_update();
                        let status = match up {
                            true => ServingStatus::Serving,
                            false => ServingStatus::NotServing,
                        };
                        set_status(&mut health, status).await;
                        metrics.set_ready(up);
                    }
                }))
            };
            tokio::select! {
                _ = &mut shutdown => {}
                r = &mut server => {
                    listener.abort();
                    r.context("gRPC server task")?.context("gRPC server")?;
                }
            }
            // Before `stop` says NOT_SERVING for good.
            drop((follower, probe));
            listener.abort();
            Some(counted)
        }
        Some(Err(e)) => {
            stop(&mut health, stop_tx, server, &config, None, embedded_db).await;
            return Err(e);
        }
        None => None,
    };
    metrics.set_ready(false);
    stop(&mut health, stop_tx, server, &config, pool, embedded_db).await;
    Ok(())
}

/// Stops the metrics endpoint when the service returns, however it does.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn stop(
    health: &mut HealthReporter,
    stop_tx: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    config: &Config,
    pool: Option<crate::db::pool::CountedPool>,
    embedded_db: Option<EmbeddedDb>,
) {
    tracing::info!("shutting down: NOT_SERVING, draining in-flight calls");
    set_status(health, ServingStatus::NotServing).await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(config.shutdown_grace(), server).await {
        Ok(_) => tracing::info!("in-flight calls finished"),
        Err(_) => tracing::warn!(
            grace_secs = config.shutdown_grace_secs,
            "calls still running after the grace period"
        ),
    }
    if let Some(pool) = pool {
        pool.close().await;
    }
    if let Some(db) = embedded_db {
        match db.stop().await {
            Ok(()) => tracing::info!("embedded PostgreSQL stopped"),
            Err(e) => tracing::warn!(error = %e, "stopping the embedded PostgreSQL"),
        }
    }
}

/// A way tonic refuses a request before any handler runs, and what the
/// contract says instead. Such refusals are trailers-only responses: the
/// status is in the headers.
struct Refusal {
    tonic_code: &'static str,
    message_is: fn(&str) -> bool,
    code: &'static str,
    message: &'static str,
}

const REFUSALS: [Refusal; 2] = [
    // Over the decoding limit: OUT_OF_RANGE; the contract says RESOURCE_EXHAUSTED.
    Refusal {
        tonic_code: "11",
        message_is: |m| {
            m.contains("message%20length%20too%20large") || m.contains("message length too large")
        },
        code: "8",
        message: "request%20message%20too%20large%20(AFFINITY_MAX_MESSAGE_BYTES)",
    },
    // Not valid protobuf (e.g. a metadata Struct nested past prost's
    // recursion limit of 100): INTERNAL, but it is the client's fault:
    // INVALID_ARGUMENT, without echoing the decoder's path.
    Refusal {
        tonic_code: "13",
        message_is: |m| {
            m.starts_with("failed%20to%20decode%20Protobuf%20message")
                || m.starts_with("failed to decode Protobuf message")
        },
        code: "3",
        message:
            "request%20is%20not%20valid%20protobuf%20(or%20nested%20deeper%20than%20100%20levels)",
    },
];

/// Rewrites tonic's own refusals ([`REFUSALS`]) into the contract's codes,
/// in one look at the headers per response.
fn refusals_in_contract_codes<B>(mut res: http::Response<B>) -> http::Response<B> {
    let headers = res.headers_mut();
    let Some(status) = headers.get("grpc-status").and_then(|v| v.to_str().ok()) else {
        return res;
    };
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let rewrite = REFUSALS
        .iter()
        .find(|r| r.tonic_code == status && (r.message_is)(message));
    if let Some(r) = rewrite {
        headers.insert("grpc-status", http::HeaderValue::from_static(r.code));
        headers.insert("grpc-message", http::HeaderValue::from_static(r.message));
    }
    res
}

async fn set_status(health: &mut HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in [
        "affinity.v1.SimilarityService",
        "affinity.v1.MetricsService",
        "affinity.v1.OrganizationService",
        "affinity.v1.AiContextService",
        "affinity.v1.MaintenanceService",
    ] {
        health.set_service_status(name, status).await;
    }
}

/// Makes sure each configured zone has daily metric rollups (a new zone's
/// are built from every point, which takes a while on a large table).
async fn add_rollup_zones(pool: &sqlx::PgPool, zones: &[String]) -> anyhow::Result<()> {
    for zone in zones.iter().map(|z| z.trim()).filter(|z| !z.is_empty()) {
        let started = std::time::Instant::now();
        let added = crate::store::metrics::add_rollup_zone(pool, zone)
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

/// The database of the one-shot commands (`migrate`, `verify`,
/// `finalize`): DATABASE_URL, else the embedded one, started for the command.
struct OneShotDb {
    pool: sqlx::PgPool,
    embedded: Option<EmbeddedDb>,
}

impl OneShotDb {
    async fn open(config: &Config) -> anyhow::Result<OneShotDb> {
        let mut embedded = None;
        let url = match &config.database_url {
            Some(url) => url.clone(),
            None => {
                let db = EmbeddedDb::start(&config.data_dir()).await?;
                let url = db.url();
                embedded = Some(db);
                url
            }
        };
        let pool = connect_with_retry(&url, 2).await?;
        Ok(OneShotDb { pool, embedded })
    }

    async fn close(self) -> anyhow::Result<()> {
        self.pool.close().await;
        if let Some(db) = self.embedded {
            db.stop().await?;
        }
        Ok(())
    }
}

/// `affinity migrate`: connect, apply the bundled migrations, exit.
pub async fn migrate_only(config: Config) -> anyhow::Result<()> {
    let db = OneShotDb::open(&config).await?;
    let result = match migrate::run(&db.pool)
        .await
        .context("migrating the database")
    {
        Ok(_) => add_rollup_zones(&db.pool, &config.metric_rollup_zones).await,
        Err(e) => Err(e),
    };
    db.close().await?;
    result?;
    tracing::info!("migrations applied");
    Ok(())
}

/// `affinity migrate --rollback`: back to the legacy schema, exit.
pub async fn rollback_only(config: Config) -> anyhow::Result<()> {
    let db = OneShotDb::open(&config).await?;
    let result = migrate::rollback(&db.pool)
        .await
        .context("rolling back the migrations");
    db.close().await?;
    let done = result?;
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
pub async fn verify_only(config: Config) -> anyhow::Result<bool> {
    let db = OneShotDb::open(&config).await?;
    let checks = migrate::verify(&db.pool).await;
    db.close().await?;
    let checks = checks?;
    print!("{}", migrate::format_checks(&checks));
    Ok(checks.iter().all(|c| c.passed))
}

/// `affinity finalize`: drops the legacy backups, only when verify passes.
pub async fn finalize_only(config: Config) -> anyhow::Result<()> {
    let db = OneShotDb::open(&config).await?;
    let result = async {
        let checks = migrate::verify(&db.pool).await?;
        print!("{}", migrate::format_checks(&checks));
        let failed: Vec<&str> = checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.check_name.as_str())
            .collect();
        if !failed.is_empty() {
            anyhow::bail!(
                "finalize refused, nothing was dropped: integrity checks failed: {}",
                failed.join(", ")
            );
        }
        migrate::finalize(&db.pool).await
    }
    .await;
    db.close().await?;
    let done = result?;
    println!("finalized: {done}");
    Ok(())
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
