//! A private PostgreSQL cluster driven through the machine's own binaries
//! (`initdb`, `pg_ctl`): the service's embedded default, and the base of the
//! tests' throwaway clusters (`affinity-testkit`, which adds what only tests
//! do: temporary directories, abrupt stops, standbys).
//!
//! The cluster listens on a unix socket inside its own directory only (no TCP
//! port, so parallel clusters never race for a port) and trusts local
//! connections: the socket directory is private to the cluster's owner.
//! PostgreSQL refuses to run as root, so when we are root every command runs
//! as the unprivileged `postgres` user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

/// The superuser name given to `initdb`.
pub const SUPERUSER: &str = "postgres";
/// The port only names the socket file (`.s.PGSQL.<port>`); nothing listens on TCP.
pub const SOCKET_PORT: u16 = 5432;
/// The user PostgreSQL runs as when we are root.
const UNPRIVILEGED_USER: &str = "postgres";

/// Options of a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    /// `fsync=off` and no sync after initdb: for throwaway test clusters only.
    pub ephemeral: bool,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
}

/// A PostgreSQL cluster in a data directory, started by [`PgCluster::start`]
/// and stopped by [`PgCluster::stop`] or on drop.
#[derive(Debug)]
pub struct PgCluster {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<String>,
    running: bool,
    options: ClusterOptions,
}

impl PgCluster {
    /// Starts the cluster in `data_dir`, creating it with `initdb` first when
    /// the directory holds no cluster yet. A second start reuses the data.
    pub fn start(data_dir: &Path, options: &ClusterOptions) -> Result<Self> {
        let bin_dir = find_bin_dir()?;
        let run_as = unprivileged_user().map(String::from);
        let data_dir = absolute(data_dir)?;
        let mut cluster = Self {
            data_dir,
            bin_dir,
            run_as,
            running: false,
            options: options.clone(),
        };
        if !cluster.data_dir.join("PG_VERSION").exists() {
            cluster.init(options)?;
        }
        cluster.clear_stale_pid()?;
        cluster.pg_ctl_start(options)?;
        cluster.running = true;
        Ok(cluster)
    }

    /// The directory holding the unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// A connection URL for database `db` as the superuser, over the socket.
    pub fn url(&self, db: &str) -> String {
        socket_url(self.socket_dir(), db)
    }

    /// Stops the server (fast shutdown: open sessions are ended, data is safe).
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        self.mark_stopped();
        self.pg_ctl("stop", &["-m", "fast", "-w", "-t", "60"])?;
        Ok(())
    }

    /// Whether the server was started and not stopped since (as far as this
    /// value knows: see [`PgCluster::mark_stopped`]).
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Records that the server is stopped, or being stopped, by other means
    /// than [`PgCluster::stop`] (`pg_ctl stop` in another mode through
    /// [`PgCluster::pg_ctl`]): dropping the cluster no longer stops it, and
    /// [`PgCluster::start_stopped`] may start it again.
    pub fn mark_stopped(&mut self) {
        self.running = false;
    }

    /// Starts the stopped server again on the same data directory and
    /// socket, with the cluster's options and then `extra` settings (given
    /// last, so they win). Fails when it is running.
    pub fn start_stopped(&mut self, extra: &[(String, String)]) -> Result<()> {
        if self.running {
            bail!("the server is running; stop it first");
        }
        let mut options = self.options.clone();
        options.settings.extend_from_slice(extra);
        self.clear_stale_pid()?;
        self.pg_ctl_start(&options)?;
        self.running = true;
        Ok(())
    }

    /// Runs `pg_ctl <action> -D <data dir> <args>` as the cluster's user and
    /// returns its output; fails with what it printed unless it succeeds.
    /// To stop, call [`PgCluster::mark_stopped`] first, as [`PgCluster::stop`]
    /// does: a stop that fails is then not tried again on drop.
    pub fn pg_ctl(&self, action: &str, args: &[&str]) -> Result<Output> {
        let out = self
            .pg_ctl_command(action)
            .args(args)
            .output()
            .with_context(|| format!("running pg_ctl {action}"))?;
        if !out.status.success() {
            bail!(
                "pg_ctl {action} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(out)
    }

    fn init(&self, options: &ClusterOptions) -> Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating data directory {}", self.data_dir.display()))?;
        give_to_unprivileged_user(&self.data_dir)?;
        let mut cmd = self.tool("initdb");
        cmd.arg("-D").arg(&self.data_dir).args([
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        ]);
        if options.ephemeral {
            cmd.arg("--no-sync");
        }
        let out = cmd.output().context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed in {}: {}{}",
                self.data_dir.display(),
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn pg_ctl_start(&self, options: &ClusterOptions) -> Result<()> {
        let mut server_opts = vec![
            format!("-p {SOCKET_PORT}"),
            "-c listen_addresses=''".to_string(),
            format!(
                "-c unix_socket_directories='{}'",
                self.socket_dir().display()
            ),
            "-c unix_socket_permissions=0700".to_string(),
        ];
        if options.ephemeral {
            server_opts.extend(
                [
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                ]
                .map(String::from),
            );
        }
        for (name, value) in &options.settings {
            server_opts.push(format!("-c {name}={value}"));
        }
        let log = self.data_dir.join("server.log");
        let out = self
            .pg_ctl_command("start")
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "120", "-o"])
            .arg(server_opts.join(" "))
            .output()
            .context("running pg_ctl start")?;
        if !out.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(20).collect();
            bail!(
                "PostgreSQL did not start in {}: {}\n{}",
                self.data_dir.display(),
                String::from_utf8_lossy(&out.stderr).trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(())
    }

    // A server killed without shutdown leaves postmaster.pid behind; pg_ctl
    // handles a stale one itself unless its pid was reused, so only remove it
    // when no process has that pid.
    fn clear_stale_pid(&self) -> Result<()> {
        let pid_file = self.data_dir.join("postmaster.pid");
        let Ok(text) = std::fs::read_to_string(&pid_file) else {
            return Ok(());
        };
        let pid = text.lines().next().unwrap_or("").trim();
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            std::fs::remove_file(&pid_file).context("removing a stale postmaster.pid")?;
        }
        Ok(())
    }

    fn pg_ctl_command(&self, action: &str) -> Command {
        let mut cmd = self.tool("pg_ctl");
        cmd.arg(action).arg("-D").arg(&self.data_dir);
        cmd
    }

    /// PostgreSQL's `program` from the cluster's binaries, run as the
    /// cluster's user.
    pub fn tool(&self, program: &str) -> Command {
        let path = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(path);
                cmd
            }
            None => Command::new(path),
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::warn!(error = %e, "stopping PostgreSQL");
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The user PostgreSQL (and what runs beside it, as PgBouncer, which
/// refuses root too) runs as: the unprivileged `postgres` user when we are
/// root, None (ourselves) otherwise.
pub fn unprivileged_user() -> Option<&'static str> {
    is_root().then_some(UNPRIVILEGED_USER)
}

/// Gives `dir` (and what it holds) to [`unprivileged_user`], with its
/// parent directories made traversable for it; nothing when we are not
/// root.
pub fn give_to_unprivileged_user(dir: &Path) -> Result<()> {
    let Some(user) = unprivileged_user() else {
        return Ok(());
    };
    // The parent directories must be traversable by that user.
    let mut parent = dir.parent();
    while let Some(p) = parent {
        if p == Path::new("/") {
            break;
        }
        let status = Command::new("chmod")
            .arg("a+x")
            .arg(p)
            .status()
            .context("running chmod")?;
        if !status.success() {
            bail!("could not make {} traversable for {user}", p.display());
        }
        parent = p.parent();
    }
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(dir)
        .status()
        .context("running chown")?;
    if !status.success() {
        bail!("could not give {} to user {user}", dir.display());
    }
    Ok(())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(p))
    }
}

/// The directory of `initdb`, `pg_ctl` and `postgres`: `$AFFINITY_PG_BIN_DIR`,
/// else `pg_config --bindir`, else Debian's PostgreSQL 15 location.
pub fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("AFFINITY_PG_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let debian = PathBuf::from("/usr/lib/postgresql/15/bin");
    if debian.join("initdb").exists() {
        return Ok(debian);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    bail!(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run scripts/install-deps.sh, \
         or set AFFINITY_PG_BIN_DIR to their directory"
    )
}

/// The URL of database `db` of the cluster in `data_dir`, as the superuser,
/// over its socket.
pub fn socket_url(data_dir: &Path, db: &str) -> String {
    format!(
        "postgres://{SUPERUSER}@localhost/{db}?host={}&port={SOCKET_PORT}",
        percent_encode(&data_dir.to_string_lossy())
    )
}

/// Whether a server runs in `data_dir` now (its postmaster.pid names a live
/// process).
pub fn is_running(data_dir: &Path) -> bool {
    std::fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next().map(|l| l.trim().to_string()))
        .is_some_and(|pid| !pid.is_empty() && Path::new("/proc").join(pid).exists())
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
