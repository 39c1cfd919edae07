//! The embedded default: with no DATABASE_URL the service runs a private
//! PostgreSQL in `<data dir>/postgres` (the machine's PostgreSQL binaries,
//! pgvector from scripts/install-deps.sh), and keeps a generated JWT secret
//! in `<data dir>/jwt_secret`.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand::RngCore;

use super::cluster::{self, ClusterOptions, PgCluster};

pub const DATABASE: &str = "affinity";

pub struct EmbeddedDb {
    cluster: PgCluster,
}

impl EmbeddedDb {
    /// Starts (creating on first use) the cluster in `data_dir/postgres` and
    /// makes sure the `affinity` database exists. A second start reuses the data.
    pub async fn start(data_dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let pg_dir = data_dir.join("postgres");
        let cluster = tokio::task::spawn_blocking(move || {
            PgCluster::start(&pg_dir, &ClusterOptions::default())
        })
        .await
        .context("starting the embedded PostgreSQL")??;
        let admin = super::pool::connect_with_retry(&cluster.url("postgres"), 1).await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&admin)
                .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
                .execute(&admin)
                .await?;
        }
        admin.close().await;
        Ok(EmbeddedDb { cluster })
    }

    pub fn url(&self) -> String {
        self.cluster.url(DATABASE)
    }

    /// The URL of the embedded database when a process (a running service)
    /// has it started already.
    pub fn running_url(data_dir: &Path) -> Option<String> {
        let pg_dir = data_dir.join("postgres");
        cluster::is_running(&pg_dir).then(|| cluster::socket_url(&pg_dir, DATABASE))
    }

    /// Stops the server cleanly (fast shutdown).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || self.cluster.stop()).await?
    }
}

/// The JWT secret kept in the data directory, if there is one.
pub fn read_jwt_secret(data_dir: &Path) -> anyhow::Result<Option<String>> {
    let path = secret_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(secret) => Ok(Some(secret.trim().to_string()).filter(|s| !s.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The JWT secret kept in the data directory, generated on first use (0600).
pub fn jwt_secret(data_dir: &Path) -> anyhow::Result<String> {
    if let Some(secret) = read_jwt_secret(data_dir)? {
        return Ok(secret);
    }
    let path = secret_path(data_dir);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(secret)
}

pub fn secret_path(data_dir: &Path) -> PathBuf {
    data_dir.join("jwt_secret")
}
