//! A real PgBouncer (Debian's `pgbouncer`, 1.18) in transaction mode in
//! front of a test cluster, as a transaction-mode pooler is deployed before
//! a database. It listens on a unix socket in its own temporary directory
//! only (no TCP port), trusts its clients as the cluster does, and dies
//! with the test process (killed on drop; PR_SET_PDEATHSIG otherwise). As
//! root it runs as the cluster's unprivileged user (it refuses root).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use affinity::db::cluster::{give_to_unprivileged_user, unprivileged_user, SOCKET_PORT, SUPERUSER};
use anyhow::{bail, Context, Result};
use sqlx::Connection;

use crate::child::{die_with_parent, spawn_from_lasting_thread};

/// The port only names the socket file.
const PORT: u16 = 6432;

pub struct PgBouncer {
    child: Option<Child>,
    dir: tempfile::TempDir,
}

impl PgBouncer {
    /// PgBouncer before the cluster listening in `socket_dir`, in
    /// transaction mode with at most `pool_size` server
    /// connections per database and user; waited for until it accepts.
    pub async fn start(socket_dir: &Path, pool_size: u32) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("affinity-pgbouncer-")
            .tempdir()
            .context("creating a temporary directory")?;
        let d = dir.path().display();
        let config = format!(
            "[databases]\n\
             * = host={socket} port={SOCKET_PORT}\n\
             [pgbouncer]\n\
             listen_addr =\n\
             listen_port = {PORT}\n\
             unix_socket_dir = {d}\n\
             auth_type = trust\n\
             auth_file = {d}/users.txt\n\
             pool_mode = transaction\n\
             default_pool_size = {pool_size}\n\
             max_client_conn = 500\n\
             logfile = {d}/pgbouncer.log\n\
             pidfile = {d}/pgbouncer.pid\n",
            socket = socket_dir.display(),
        );
        std::fs::write(dir.path().join("pgbouncer.ini"), config)?;
        std::fs::write(
            dir.path().join("users.txt"),
            format!("\"{SUPERUSER}\" \"\"\n"),
        )?;
        give_to_unprivileged_user(dir.path())?;
        let mut bouncer = PgBouncer { child: None, dir };
        bouncer.launch().await?;
        Ok(bouncer)
    }

    /// A URL of database `db` through PgBouncer.
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://{SUPERUSER}@localhost/{db}?host={}&port={PORT}",
            self.dir.path().display()
        )
    }

    /// Kills PgBouncer at once (every client connection drops, as in a
    /// crash or a redeploy of the pooler); [`PgBouncer::restart`] brings it
    /// back on the same socket.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill().context("killing pgbouncer")?;
            child.wait().context("waiting for pgbouncer")?;
        }
        // A killed PgBouncer leaves its socket and pid file behind.
        let _ = std::fs::remove_file(self.dir.path().join(format!(".s.PGSQL.{PORT}")));
        let _ = std::fs::remove_file(self.dir.path().join(format!(".s.PGSQL.{PORT}.lock")));
        let _ = std::fs::remove_file(self.dir.path().join("pgbouncer.pid"));
        Ok(())
    }

    /// Starts a killed PgBouncer again, waited for until it accepts.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill()?;
        self.launch().await
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its log, for a failing test's message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }

    async fn launch(&mut self) -> Result<()> {
        let mut command = Command::new("pgbouncer");
        command
            .arg(self.dir.path().join("pgbouncer.ini"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // It refuses root, as PostgreSQL does.
        if let Some(user) = unprivileged_user() {
            let (uid, gid) = user_ids(user)?;
            command.uid(uid).gid(gid);
        }
        die_with_parent(&mut command);
        let mut child = spawn_from_lasting_thread(command)
            .context("starting pgbouncer (install it with scripts/install-deps.sh)")?;
        // Without the startup parameter a transaction pooler refuses.
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.url("postgres"))?
            .extra_float_digits(None);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("pgbouncer exited ({status}): {}", self.log());
            }
            if let Ok(c) = sqlx::PgConnection::connect_with(&options).await {
                let _ = c.close().await;
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!(
                    "pgbouncer did not accept connections in 20 s: {}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

fn user_ids(name: &str) -> Result<(u32, u32)> {
    let out = Command::new("id").arg("-u").arg(name).output()?;
    let uid = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    let out = Command::new("id").arg("-g").arg(name).output()?;
    let gid = String::from_utf8_lossy(&out.stdout).trim().parse()?;
    Ok((uid, gid))
}
