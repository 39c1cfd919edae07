//! The environment under test: a durable private PostgreSQL, the database,
//! the real `affinity` binary serving it as a child process (so that its
//! resident memory is its own), clients and tokens.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use affinity::db::cluster::{ClusterOptions, PgCluster};
use anyhow::{bail, Context, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};
use uuid::Uuid;

use crate::procfs::memory;
use crate::world::Size;

pub const DATABASE: &str = "bench";
/// The service's own default (AFFINITY_DB_MAX_CONNECTIONS): the baseline pool
/// gets the same connection budget, so a ratio compares code, not pools.
pub const POOL_SIZE: u32 = 16;
/// HTTP/2 connections the clients share, round-robin by task.
pub const CHANNELS: usize = 4;
const SECRET: &str = "benchmark-secret-of-at-least-thirty-two-bytes";

/// Durable settings (fsync and synchronous_commit stay on: the targets speak
/// of committed writes), with memory for the data set and no checkpoints in
/// the middle of a bulk load.
pub fn cluster_options(size: Size) -> ClusterOptions {
    let shared_buffers = match size {
        Size::Small => "256MB",
        Size::Full => "2GB",
    };
    let settings = [
        ("shared_buffers", shared_buffers),
        ("effective_cache_size", "8GB"),
        ("maintenance_work_mem", "1GB"),
        ("max_wal_size", "16GB"),
        ("checkpoint_timeout", "30min"),
        ("max_connections", "200"),
    ];
    ClusterOptions {
        ephemeral: false,
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

/// Starts (creating it on first use) the cluster in `dir/pg`.
pub fn start_cluster(dir: &Path, size: Size) -> Result<PgCluster> {
    PgCluster::start(&dir.join("pg"), &cluster_options(size))
        .with_context(|| format!("starting PostgreSQL in {}", dir.join("pg").display()))
}

/// A pool of up to `max` connections; `ping`: sqlx's default check of a
/// connection (a round trip) each time the pool hands it out.
pub async fn connect(url: &str, max: u32, ping: bool) -> Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?
        .application_name("affinity-bench")
        .log_statements(tracing::log::LevelFilter::Off)
        .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(60));
    PgPoolOptions::new()
        .max_connections(max)
        .min_connections(max.min(POOL_SIZE))
        .acquire_timeout(Duration::from_secs(60))
        .test_before_acquire(ping)
        .connect_with(options)
        .await
        .context("connecting to the benchmark database")
}

/// Creates the database unless it exists. `fresh`: drop it first.
pub async fn create_database(cluster: &PgCluster, fresh: bool) -> Result<()> {
    let admin = connect(&cluster.url("postgres"), 1, true).await?;
    if fresh {
        sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
            .execute(&admin)
            .await
            .context("dropping a partially loaded database")?;
    }
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&admin)
            .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
            .execute(&admin)
            .await
            .context("creating the benchmark database")?;
    }
    admin.close().await;
    Ok(())
}

/// The time zones the service keeps daily metric rollups for: UTC and the
/// zone of the metrics scenarios (an operator lists their users' zones).
pub const ROLLUP_ZONES: &str = "UTC,Europe/Berlin";

/// The socket the clients reach the service on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GrpcSocket {
    /// A Unix domain socket, as the baseline reaches PostgreSQL.
    Unix,
    /// TCP on 127.0.0.1.
    Tcp,
}

/// The service: `affinity serve` (the release binary cargo built with this
/// benchmark) over the benchmark database, on a Unix socket in the data
/// directory or on a free local port.
pub struct Service {
    child: tokio::process::Child,
    pub pid: u32,
    /// Its Prometheus endpoint.
    pub metrics_addr: std::net::SocketAddr,
    pub channels: Vec<Channel>,
    pub log: PathBuf,
}

impl Service {
    pub async fn start(url: &str, dir: &Path, socket: GrpcSocket) -> Result<Service> {
        let (addr, uri) = match socket {
            GrpcSocket::Tcp => {
                // A free port: bind, read, release (the service binds it a
                // moment later).
                let port = std::net::TcpListener::bind("127.0.0.1:0")?
                    .local_addr()?
                    .port();
                let addr = format!("127.0.0.1:{port}");
                (addr.clone(), format!("http://{addr}"))
            }
            GrpcSocket::Unix => {
                let addr = format!("unix:{}", dir.join("affinity.sock").display());
                (addr.clone(), addr)
            }
        };
        let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = dir.join("service.log");
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_affinity"))
            .arg("serve")
            .env("DATABASE_URL", url)
            .env("AFFINITY_JWT_SECRET", SECRET)
            .env("AFFINITY_LISTEN_ADDR", &addr)
            .env("AFFINITY_METRIC_ROLLUP_ZONES", ROLLUP_ZONES)
            .env("AFFINITY_METRICS_ADDR", metrics_addr.to_string())
            // The service's own runtime size, when the run asks for one.
            .envs(std::env::var("BENCH_SERVICE_WORKERS").map(|n| ("TOKIO_WORKER_THREADS", n)))
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting the affinity binary")?;
        let pid = child.id().context("the service exited at once")?;
        let mut channels = Vec::new();
        for _ in 0..CHANNELS {
            channels.push(Endpoint::from_shared(uri.clone())?.connect_lazy());
        }
        let mut service = Service {
            child,
            pid,
            metrics_addr,
            channels,
            log,
        };
        service.wait_serving().await?;
        Ok(service)
    }

    async fn wait_serving(&mut self) -> Result<()> {
        let mut health = HealthClient::new(self.channels[0].clone());
        // Long enough for a new migration or rollup zone over the full load.
        for _ in 0..18_000 {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the service exited ({status}) before SERVING; see {}",
                    self.log.display()
                );
            }
            let r = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if r.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the service was not SERVING after 30 minutes; see {}",
            self.log.display()
        )
    }

    /// SIGTERM, then wait for the graceful exit.
    pub async fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => self.child.kill().await?,
        }
        Ok(())
    }
}

/// `authorization: Bearer <JWT>` for a user or for service_role.
pub fn bearer(user: Uuid, service_role: bool) -> Result<MetadataValue<Ascii>> {
    let role = if service_role {
        "service_role"
    } else {
        "authenticated"
    };
    // A day: a full run (load included) must not outlive its tokens.
    let token = affinity::auth::mint(SECRET.as_bytes(), user, role, 86_400)?;
    Ok(format!("Bearer {token}").parse()?)
}

/// A request with its token.
pub fn request<T>(msg: T, auth: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", auth.clone());
    r
}

/// Samples a process's VmRSS every 100 ms; `take_peak` returns and resets
/// the highest value seen since the last call.
#[derive(Clone)]
pub struct RssSampler {
    peak: Arc<AtomicU64>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let peak = Arc::new(AtomicU64::new(0));
        let p = peak.clone();
        tokio::spawn(async move {
            while let Some((rss, _)) = memory(pid) {
                p.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        RssSampler { peak }
    }

    pub fn take_peak(&self) -> u64 {
        self.peak.swap(0, Ordering::Relaxed)
    }
}

/// The service's metrics cache counters (hit, miss, bypass), or None when
/// its endpoint does not answer.
pub async fn metrics_cache_counters(addr: std::net::SocketAddr) -> Option<[u64; 3]> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.ok()?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await.ok()?;
    let count = |result: &str| {
        let series = format!("affinity_metrics_cache_requests_total{{result=\"{result}\"}}");
        raw.lines()
            .find_map(|l| l.strip_prefix(series.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    Some([count("hit"), count("miss"), count("bypass")])
}
