//! A private PostgreSQL cluster driven through the machine's own binaries
//! (`initdb`, `pg_ctl`): the throwaway database of every test, and later the
//! service's embedded default.
//!
//! The cluster listens on a unix socket inside its own directory only (no TCP
//! port, so parallel clusters never race for a port) and trusts local
//! connections: the socket directory is private to the cluster's owner.
//! PostgreSQL refuses to run as root, so when we are root every command runs
//! as the unprivileged `postgres` user through `runuser`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The superuser name given to `initdb`.
pub const SUPERUSER: &str = "postgres";
/// The port only names the socket file (`.s.PGSQL.<port>`); nothing listens on TCP.
const SOCKET_PORT: u16 = 5432;
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

/// A PostgreSQL cluster in a data directory, started by [`PgCluster::start`]
/// and stopped by [`PgCluster::stop`] or on drop.
#[derive(Debug)]
pub struct PgCluster {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    run_as: Option<String>,
    running: bool,
    options: ClusterOptions,
    // Keeps a temporary directory alive (and removes it) for throwaway clusters.
    _temp: Option<tempfile::TempDir>,
}

impl PgCluster {
    /// A new cluster in a fresh temporary directory, removed when dropped.
    pub fn start_temporary() -> Result<Self> {
        Self::start_temporary_with(&ClusterOptions {
            ephemeral: true,
            ..Default::default()
        })
    }

    /// [`PgCluster::start_temporary`] with these options.
    pub fn start_temporary_with(options: &ClusterOptions) -> Result<Self> {
        let temp = tempfile::Builder::new()
            .prefix("affinity-pg-")
            .tempdir()
            .context("creating a temporary directory")?;
        let data_dir = temp.path().join("data");
        let mut cluster = Self::start(&data_dir, options)?;
        cluster._temp = Some(temp);
        Ok(cluster)
    }

    /// Starts the cluster in `data_dir`, creating it with `initdb` first when
    /// the directory holds no cluster yet. A second start reuses the data.
    pub fn start(data_dir: &Path, options: &ClusterOptions) -> Result<Self> {
        let bin_dir = find_bin_dir()?;
        let run_as = if is_root() {
            Some(UNPRIVILEGED_USER.to_string())
        } else {
            None
        };
        let data_dir = absolute(data_dir)?;
        let mut cluster = Self {
            data_dir,
            bin_dir,
            run_as,
            running: false,
            options: options.clone(),
            _temp: None,
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
        format!(
            "postgres://{SUPERUSER}@localhost/{db}?host={}&port={SOCKET_PORT}",
            percent_encode(&self.socket_dir().to_string_lossy())
        )
    }

    /// Stops the server (fast shutdown: open sessions are ended, data is safe).
    pub fn stop(&mut self) -> Result<()> {
        self.stop_with(ShutdownMode::Fast)
    }

    /// Starts a stopped server again on the same data directory and socket,
    /// with the same options (after an immediate stop: crash recovery first).
    pub fn restart_stopped(&mut self) -> Result<()> {
        if self.running {
            return Ok(());
        }
        self.clear_stale_pid()?;
        self.pg_ctl_start(&self.options)?;
        self.running = true;
        Ok(())
    }

    /// Starts a stopped server as a standby with nowhere to get WAL from and
    /// `hot_standby` off: it is up but refuses every connection with SQLSTATE
    /// 57P03 ("not accepting connections"), like a server in a long crash
    /// recovery, until [`PgCluster::promote`].
    pub fn start_refusing_connections(&mut self) -> Result<()> {
        if self.running {
            bail!("the server is running; stop it first");
        }
        let signal = self.data_dir.join("standby.signal");
        // Only its existence counts (PostgreSQL, owner of the directory,
        // removes it on promotion), whoever owns it.
        std::fs::write(&signal, b"").context("creating standby.signal")?;
        let mut options = self.options.clone();
        options
            .settings
            .push(("hot_standby".to_string(), "off".to_string()));
        self.clear_stale_pid()?;
        self.pg_ctl_start(&options)?;
        self.running = true;
        Ok(())
    }

    /// Ends the standby mode of [`PgCluster::start_refusing_connections`]:
    /// the server accepts connections again (on a new timeline), with
    /// every committed transaction.
    pub fn promote(&mut self) -> Result<()> {
        let out = self
            .command("pg_ctl")
            .arg("promote")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-w", "-t", "60"])
            .output()
            .context("running pg_ctl promote")?;
        if !out.status.success() {
            bail!(
                "pg_ctl promote failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Stops the server in `mode`, waiting until it is gone.
    pub fn stop_with(&mut self, mode: ShutdownMode) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        self.running = false;
        let out = self
            .command("pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", mode.as_arg(), "-w", "-t", "60"])
            .output()
            .context("running pg_ctl stop")?;
        if !out.status.success() {
            bail!(
                "pg_ctl stop failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    fn init(&self, options: &ClusterOptions) -> Result<()> {
        std::fs::create_dir_all(&self.data_dir)
            .with_context(|| format!("creating data directory {}", self.data_dir.display()))?;
        self.give_to_run_as_user(&self.data_dir)?;
        let mut cmd = self.command("initdb");
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
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(&self.data_dir)
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

    fn give_to_run_as_user(&self, dir: &Path) -> Result<()> {
        let Some(user) = &self.run_as else {
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

    fn command(&self, program: &str) -> Command {
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
