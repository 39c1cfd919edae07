//! Throwaway PostgreSQL clusters for tests: the library's [`PgCluster`] in a
//! temporary directory, plus what only tests do to a server (abrupt stops,
//! a standby that refuses connections, its promotion).

use std::ops::{Deref, DerefMut};

use affinity::db::cluster::{ClusterOptions, PgCluster};
use anyhow::{bail, Context, Result};

/// How `pg_ctl stop` ends the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Sessions are ended, every transaction rolled back, a checkpoint taken.
    Fast,
    /// The server processes are killed: the next start runs crash recovery,
    /// as after a power cut, minus the lost page cache.
    Immediate,
}

impl ShutdownMode {
    fn as_arg(self) -> &'static str {
        match self {
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

/// A cluster in a fresh temporary directory: the server is stopped, then
/// the directory removed, when it is dropped.
#[derive(Debug)]
pub struct TempCluster {
    // Fields drop in order: the cluster (its drop stops the server) first.
    cluster: PgCluster,
    _dir: tempfile::TempDir,
}

impl TempCluster {
    /// A new ephemeral cluster (no fsync, `synchronous_commit` off).
    pub fn start() -> Result<Self> {
        Self::start_with(&ClusterOptions {
            ephemeral: true,
            ..Default::default()
        })
    }

    /// [`TempCluster::start`] with these options.
    pub fn start_with(options: &ClusterOptions) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("affinity-pg-")
            .tempdir()
            .context("creating a temporary directory")?;
        let cluster = PgCluster::start(&dir.path().join("data"), options)?;
        Ok(Self { cluster, _dir: dir })
    }

    /// Stops the server in `mode`, waiting until it is gone.
    pub fn stop_with(&mut self, mode: ShutdownMode) -> Result<()> {
        if !self.is_running() {
            return Ok(());
        }
        self.mark_stopped();
        self.pg_ctl("stop", &["-m", mode.as_arg(), "-w", "-t", "60"])?;
        Ok(())
    }

    /// Starts a stopped server again on the same data directory and socket,
    /// with the same options (after an immediate stop: crash recovery first).
    pub fn restart_stopped(&mut self) -> Result<()> {
        if self.is_running() {
            return Ok(());
        }
        self.start_stopped(&[])
    }

    /// Starts a stopped server as a standby with nowhere to get WAL from and
    /// `hot_standby` off: it is up but refuses every connection with SQLSTATE
    /// 57P03 ("not accepting connections"), like a server in a long crash
    /// recovery, until [`TempCluster::promote`].
    pub fn start_refusing_connections(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("the server is running; stop it first");
        }
        let signal = self.data_dir().join("standby.signal");
        // Only its existence counts (PostgreSQL, owner of the directory,
        // removes it on promotion), whoever owns it.
        std::fs::write(&signal, b"").context("creating standby.signal")?;
        self.start_stopped(&[("hot_standby".to_string(), "off".to_string())])
    }

    /// Ends the standby mode of [`TempCluster::start_refusing_connections`]:
    /// the server accepts connections again (on a new timeline), with
    /// every committed transaction.
    pub fn promote(&mut self) -> Result<()> {
        self.pg_ctl("promote", &["-w", "-t", "60"])?;
        Ok(())
    }
}

impl Deref for TempCluster {
    type Target = PgCluster;

    fn deref(&self) -> &PgCluster {
        &self.cluster
    }
}

impl DerefMut for TempCluster {
    fn deref_mut(&mut self) -> &mut PgCluster {
        &mut self.cluster
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(cluster: &TempCluster) -> bool {
        cluster.pg_ctl("status", &[]).is_ok()
    }

    #[test]
    fn stops_restarts_and_leaves_nothing_behind() {
        let mut cluster = TempCluster::start().expect("starting");
        let dir = cluster.data_dir().to_path_buf();
        assert!(status(&cluster));
        cluster
            .stop_with(ShutdownMode::Immediate)
            .expect("stopping");
        assert!(!cluster.is_running());
        assert!(!status(&cluster));
        cluster.restart_stopped().expect("starting again");
        assert!(cluster.is_running() && status(&cluster));
        assert!(cluster.start_refusing_connections().is_err());
        drop(cluster);
        assert!(!dir.exists(), "{} left behind", dir.display());
    }

    #[test]
    fn starts_as_a_standby_until_promoted() {
        let mut cluster = TempCluster::start().expect("starting");
        cluster.stop_with(ShutdownMode::Fast).expect("stopping");
        cluster
            .start_refusing_connections()
            .expect("starting as a standby");
        assert!(cluster.data_dir().join("standby.signal").exists());
        cluster.promote().expect("promoting");
        assert!(!cluster.data_dir().join("standby.signal").exists());
    }
}
