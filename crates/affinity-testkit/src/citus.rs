//! A real Citus cluster on this machine: a coordinator and workers, each a
//! throwaway PostgreSQL on a Unix socket of its own with Citus preloaded
//! (built by `scripts/install-deps.sh` from `../shared/vendor`). The
//! coordinator knows the workers by their socket directories, which libpq
//! (and so Citus) takes as hosts.

use std::path::Path;

use affinity::db::cluster::{find_bin_dir, ClusterOptions, PgCluster, SOCKET_PORT};
use anyhow::{bail, Context, Result};
use sqlx::{Connection, PgConnection};

use crate::cluster::TempCluster;

/// Why Citus cannot run on this machine, when it cannot: no `citus`
/// extension in this PostgreSQL's share directory.
pub fn unavailable() -> Option<String> {
    let share = find_bin_dir().and_then(|bin| {
        let out = std::process::Command::new(bin.join("pg_config"))
            .arg("--sharedir")
            .output()
            .context("running pg_config")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let share = match share {
        Ok(s) => s,
        Err(e) => return Some(format!("no pg_config: {e:#}")),
    };
    let control = Path::new(share.trim()).join("extension/citus.control");
    (!control.exists()).then(|| {
        format!(
            "Citus is not installed ({} is missing; scripts/install-deps.sh builds it from \
             ../shared/vendor/citus-*.tar.gz when that is there)",
            control.display()
        )
    })
}

/// Whether the Citus tests run here: true when Citus is installed; false
/// (with one line saying why) when it is not and there is nothing to build
/// it from. Citus missing beside its tarball is a broken set-up, not a
/// skip: it panics naming the install script.
pub fn available_or_say_why() -> bool {
    let Some(why) = unavailable() else {
        return true;
    };
    let tarball = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/vendor");
    let has_tarball = std::fs::read_dir(tarball)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("citus-"))
        })
        .unwrap_or(false);
    if has_tarball {
        panic!("{why}; the tarball is in {tarball}: run scripts/install-deps.sh");
    }
    eprintln!("skipped: {why}");
    false
}

/// A coordinator and its workers; all stopped and removed when dropped.
pub struct CitusCluster {
    pub coordinator: TempCluster,
    pub workers: Vec<TempCluster>,
    database: String,
}

fn node() -> Result<TempCluster> {
    TempCluster::start_with(&ClusterOptions {
        ephemeral: true,
        settings: vec![
            ("shared_preload_libraries".into(), "citus".into()),
            // Citus's two-phase commits across nodes.
            ("max_prepared_transactions".into(), "100".into()),
        ],
    })
}

impl CitusCluster {
    /// Starts a coordinator and `workers` workers with a database
    /// `database` on each, `citus` created in it, and the workers (and the
    /// coordinator itself, which then holds reference tables too) added to
    /// the coordinator's metadata.
    pub async fn start(workers: usize, database: &str) -> Result<Self> {
        if let Some(why) = unavailable() {
            bail!("{why}");
        }
        let coordinator = node()?;
        let workers = (0..workers).map(|_| node()).collect::<Result<Vec<_>>>()?;
        for n in std::iter::once(&coordinator).chain(&workers) {
            let mut admin = PgConnection::connect(&n.url("postgres")).await?;
            sqlx::query(&format!("CREATE DATABASE \"{database}\""))
                .execute(&mut admin)
                .await
                .context("creating the database on a node")?;
            let mut conn = PgConnection::connect(&n.url(database)).await?;
            sqlx::query("CREATE EXTENSION citus")
                .execute(&mut conn)
                .await
                .context("CREATE EXTENSION citus on a node")?;
        }
        let mut c = PgConnection::connect(&coordinator.url(database)).await?;
        let port = i32::from(SOCKET_PORT);
        sqlx::query("SELECT citus_set_coordinator_host($1, $2)")
            .bind(host(&coordinator))
            .bind(port)
            .execute(&mut c)
            .await
            .context("citus_set_coordinator_host")?;
        for w in &workers {
            sqlx::query("SELECT citus_add_node($1, $2)")
                .bind(host(w))
                .bind(port)
                .execute(&mut c)
                .await
                .context("citus_add_node")?;
        }
        Ok(Self {
            coordinator,
            workers,
            database: database.to_string(),
        })
    }

    /// The coordinator's URL of the cluster's database: what the service
    /// and the tests connect to.
    pub fn url(&self) -> String {
        self.coordinator.url(&self.database)
    }

    /// The coordinator and the workers, to be kept (and dropped) by the
    /// caller.
    pub fn into_nodes(self) -> (TempCluster, Vec<TempCluster>) {
        (self.coordinator, self.workers)
    }
}

/// A node's host name as Citus knows it: its socket directory.
pub fn host(node: &PgCluster) -> String {
    node.socket_dir().display().to_string()
}
