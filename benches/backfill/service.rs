//! The service: the release `affinity` binary cargo built with this
//! benchmark, as a child process (so that its CPU time and memory are its
//! own), with the text model pointing at the shared embedding server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tonic::transport::Endpoint;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// The service's JWT secret (for tokens of benchmarks that call it).
pub const SECRET: &str = "benchmark-secret-of-at-least-thirty-two-bytes";

/// How the service is configured for the run.
pub struct Settings {
    pub database_url: String,
    /// Empty: no text model (the other text-model settings are unused).
    pub embedding_url: String,
    pub model: String,
    pub dimensions: u32,
    pub batch: usize,
    pub workers: usize,
    /// Where its logs go, one file per start.
    pub dir: PathBuf,
    /// Further settings (environment variables) of this run.
    pub env: Vec<(String, String)>,
}

/// A running `affinity serve`; killed if dropped without [`Service::stop`].
pub struct Service {
    child: tokio::process::Child,
    pub pid: u32,
    /// (The search benchmark calls it; this one only scrapes metrics.)
    #[allow(dead_code)]
    pub grpc_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub log: PathBuf,
    pub spawned: Instant,
}

fn free_addr() -> Result<SocketAddr> {
    // Bind, read, release: the service binds it a moment later.
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Service {
    /// Spawns it and waits until its health service says SERVING; returns
    /// it with the time that took.
    pub async fn start(s: &Settings, name: &str) -> Result<(Service, Duration)> {
        let grpc = free_addr()?;
        let metrics_addr = free_addr()?;
        let log = s.dir.join(format!("service-{name}.log"));
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let spawned = Instant::now();
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_affinity"));
        command
            .arg("serve")
            .env("DATABASE_URL", &s.database_url)
            .env("AFFINITY_JWT_SECRET", SECRET)
            .env("AFFINITY_LISTEN_ADDR", grpc.to_string())
            .env("AFFINITY_METRICS_ADDR", metrics_addr.to_string())
            .envs(s.env.iter().map(|(k, v)| (k, v)));
        if !s.embedding_url.is_empty() {
            command
                .env("AFFINITY_EMBEDDING_URL", &s.embedding_url)
                .env("AFFINITY_EMBEDDING_MODEL", &s.model)
                .env("AFFINITY_EMBEDDING_DIMENSIONS", s.dimensions.to_string())
                .env("AFFINITY_EMBEDDING_BATCH", s.batch.to_string())
                .env("AFFINITY_EMBEDDING_INPUT_TYPE", "field")
                .env("AFFINITY_VECTORIZER_WORKERS", s.workers.to_string());
        }
        let child = command
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .context("starting the affinity binary")?;
        let pid = child.id().context("the service exited at once")?;
        let mut service = Service {
            child,
            pid,
            grpc_addr: grpc,
            metrics_addr,
            log,
            spawned,
        };
        service.wait_serving(grpc).await?;
        Ok((service, spawned.elapsed()))
    }

    async fn wait_serving(&mut self, grpc: SocketAddr) -> Result<()> {
        let channel = Endpoint::from_shared(format!("http://{grpc}"))?.connect_lazy();
        let mut health = HealthClient::new(channel);
        let deadline = Instant::now() + Duration::from_secs(600);
        while Instant::now() < deadline {
            self.check_alive()?;
            let r = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if r.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!(
            "the service was not SERVING after 10 minutes; see {}",
            self.log.display()
        )
    }

    /// An error naming its log if it has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the service exited ({status}); see {}", self.log.display());
        }
        Ok(())
    }

    /// SIGTERM, then wait for the graceful exit (killed after 30 s).
    pub async fn stop(mut self) -> Result<()> {
        // SAFETY: kill(2) on our own child's pid, which has not been reaped
        // (try_wait found it running or we would not be here).
        let pid = libc::pid_t::try_from(self.pid)?;
        unsafe { libc::kill(pid, libc::SIGTERM) };
        match tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => self.child.kill().await?,
        }
        Ok(())
    }

    /// `affinity_vectorizer_items_embedded_total` from its metrics endpoint.
    pub async fn embedded_counter(&self) -> Result<u64> {
        let v = self
            .sample("affinity_vectorizer_items_embedded_total")
            .await?;
        // A counter of items: an integer, far below 2^52.
        Ok(v as u64)
    }

    /// The value of `series` (name and labels, as exposed) from its
    /// metrics endpoint: finite and not negative.
    pub async fn sample(&self, series: &str) -> Result<f64> {
        let body = scrape(self.metrics_addr).await?;
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .with_context(|| format!("no {series} in /metrics"))
    }
}

/// `GET /metrics` over a plain TCP connection: the whole answer.
async fn scrape(addr: SocketAddr) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .context("the service's metrics endpoint")?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw).await?;
    if !raw.starts_with("HTTP/1.1 200") {
        bail!(
            "/metrics answered {}",
            raw.lines().next().unwrap_or_default()
        );
    }
    Ok(raw)
}

/// Resident memory of a process sampled over time: (seconds since the
/// first sample, bytes).
#[derive(Debug, Clone, Default)]
pub struct RssTrace {
    pub samples: Vec<(f64, u64)>,
}

impl RssTrace {
    pub fn push(&mut self, since: Instant, pid: u32) {
        if let Some((rss, _)) = crate::procfs::memory(pid) {
            self.samples.push((since.elapsed().as_secs_f64(), rss));
        }
    }

    pub fn first(&self) -> u64 {
        self.samples.first().map_or(0, |s| s.1)
    }

    pub fn last(&self) -> u64 {
        self.samples.last().map_or(0, |s| s.1)
    }

    pub fn max(&self) -> u64 {
        self.samples.iter().map(|s| s.1).max().unwrap_or(0)
    }

    /// Highest sample in [from, to) seconds.
    pub fn max_between(&self, from: f64, to: f64) -> u64 {
        self.samples
            .iter()
            .filter(|s| s.0 >= from && s.0 < to)
            .map(|s| s.1)
            .max()
            .unwrap_or(0)
    }
}
