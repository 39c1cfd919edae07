//! The real `affinity` binary as a child process, configured through its
//! environment like an operator would, for the fault-injection tests that
//! kill it (SIGKILL, SIGTERM) or run several replicas of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::process::{Child, Command};
use tonic::transport::Channel;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use super::server::SECRET;

pub struct ServiceProcess {
    child: Child,
    pub addr: SocketAddr,
    /// A lazily connected channel to `addr`.
    pub channel: Channel,
    /// Where its stderr (the logs) and stdout go.
    log: PathBuf,
    _log_dir: tempfile::TempDir,
}

/// A port free right now (the kernel's choice for port 0, released), never
/// one this test process was given before: the kernel may offer a released
/// port again at once, and replicas started together would share it.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("binding 127.0.0.1:0")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

impl ServiceProcess {
    /// `affinity` (serve) over `database_url`, with the test secret, on a
    /// free loopback port, plus `env`.
    pub fn spawn(database_url: &str, env: &[(&str, &str)]) -> ServiceProcess {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let log_dir = tempfile::tempdir().expect("a directory for the service's log");
        let log = log_dir.path().join("affinity.log");
        let out = std::fs::File::create(&log).expect("creating the log file");
        let err = out.try_clone().expect("cloning the log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_affinity"));
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("DATABASE_URL", database_url)
            .env("AFFINITY_JWT_SECRET", SECRET)
            .env("AFFINITY_LISTEN_ADDR", addr.to_string())
            .env("RUST_LOG", "info,sqlx=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            // A test that panics must not leave a service behind.
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("starting the affinity binary");
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("a channel URL")
            .connect_lazy();
        ServiceProcess {
            child,
            addr,
            channel,
            log,
            _log_dir: log_dir,
        }
    }

    /// The process id (to signal it).
    pub fn pid(&self) -> i32 {
        self.child.id().expect("the service is still running") as i32
    }

    /// Health of the whole server, or None when it does not answer.
    pub async fn health(&self) -> Option<ServingStatus> {
        let mut client = HealthClient::new(self.channel.clone());
        let mut req = tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        });
        req.set_timeout(Duration::from_secs(2));
        let r = client.check(req).await.ok()?;
        ServingStatus::try_from(r.into_inner().status).ok()
    }

    /// Waits (at most `within`) until health says SERVING; panics with the
    /// log otherwise, or when the process exits first.
    pub async fn wait_serving(&mut self, within: Duration) {
        let until = tokio::time::Instant::now() + within;
        while tokio::time::Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the service exited ({status}) before SERVING:\n{}",
                    self.log()
                );
            }
            if self.health().await == Some(ServingStatus::Serving) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the service was not SERVING within {within:?}:\n{}",
            self.log()
        );
    }

    /// Sends `signal` (libc::SIGKILL, libc::SIGTERM...).
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on the pid of our own child, which has not been
        // reaped yet (we hold its Child), so the pid cannot have been reused.
        let r = unsafe { libc::kill(self.pid(), signal) };
        assert_eq!(r, 0, "kill({}, {signal})", self.pid());
    }

    /// Waits (at most `within`) for the process to exit.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        tokio::time::timeout(within, self.child.wait())
            .await
            .ok()
            .map(|r| r.expect("waiting for the service"))
    }

    /// Whether it has exited (without waiting).
    pub fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Everything it has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}
