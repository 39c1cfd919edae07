//! Throwaway PostgreSQL clusters for tests: the library's [`PgCluster`] in a
//! temporary directory, plus what only tests do to a server (abrupt stops,
//! a standby that refuses connections, its promotion, a streaming replica).

use std::ops::{Deref, DerefMut};

use affinity::db::cluster::{
    give_to_unprivileged_user, ClusterOptions, PgCluster, SOCKET_PORT, SUPERUSER,
};
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

    /// A streaming replica of this server, as deployments make one: a base
    /// backup taken with `pg_basebackup -R` (which writes `standby.signal`
    /// and the connection to this server) into a directory of its own,
    /// started as a hot standby on a socket of its own. Stopping this
    /// server first stops the replica's streaming, not the replica.
    pub fn start_streaming_replica(&self) -> Result<TempCluster> {
        streaming_replica_of(self)
    }

    /// Ends the standby mode of [`TempCluster::start_refusing_connections`]:
    /// the server accepts connections again (on a new timeline), with
    /// every committed transaction.
    pub fn promote(&mut self) -> Result<()> {
        self.pg_ctl("promote", &["-w", "-t", "60"])?;
        Ok(())
    }
}

/// [`TempCluster::start_streaming_replica`] of any running cluster (the
/// benchmarks' durable ones too).
pub fn streaming_replica_of(primary: &PgCluster) -> Result<TempCluster> {
    let dir = tempfile::Builder::new()
        .prefix("affinity-pg-replica-")
        .tempdir()
        .context("creating a temporary directory")?;
    give_to_unprivileged_user(dir.path())?;
    let data = dir.path().join("data");
    // A fast checkpoint: the default spreads it over minutes.
    let out = primary
        .tool("pg_basebackup")
        .arg("-D")
        .arg(&data)
        .args([
            "-R",
            "-X",
            "stream",
            "--checkpoint=fast",
            "--no-sync",
            "-U",
            SUPERUSER,
            "-h",
        ])
        .arg(primary.socket_dir())
        .args(["-p", &SOCKET_PORT.to_string()])
        .output()
        .context("running pg_basebackup")?;
    if !out.status.success() {
        bail!(
            "pg_basebackup failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // The copy holds this server's socket lock file (its socket lives in
    // its data directory) and log: the replica makes its own.
    for copied in [format!(".s.PGSQL.{SOCKET_PORT}.lock"), "server.log".into()] {
        let _ = std::fs::remove_file(data.join(copied));
    }
    let cluster = PgCluster::start(
        &data,
        &ClusterOptions {
            ephemeral: true,
            ..Default::default()
        },
    )?;
    Ok(TempCluster { cluster, _dir: dir })
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

    #[tokio::test(flavor = "multi_thread")]
    async fn a_streaming_replica_answers_reads_and_receives_what_is_committed_after() {
        use sqlx::Connection;
        let primary = TempCluster::start().expect("starting");
        let mut writer = sqlx::PgConnection::connect(&primary.url("postgres"))
            .await
            .expect("connecting to the primary");
        sqlx::raw_sql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
            .execute(&mut writer)
            .await
            .expect("writing");
        let replica = primary.start_streaming_replica().expect("a replica");
        let mut reader = sqlx::PgConnection::connect(&replica.url("postgres"))
            .await
            .expect("connecting to the replica");
        let standby: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
            .fetch_one(&mut reader)
            .await
            .expect("asking the replica");
        assert!(standby);
        sqlx::query("INSERT INTO t VALUES (2)")
            .execute(&mut writer)
            .await
            .expect("writing again");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t")
                .fetch_one(&mut reader)
                .await
                .expect("reading the replica");
            if n == 2 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "not replicated: {n}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let refused = sqlx::query("INSERT INTO t VALUES (3)")
            .execute(&mut reader)
            .await;
        assert!(refused.is_err(), "a replica takes no writes");
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
