//! The service's Prometheus series: one [`Metrics`] registry per server
//! (not a process-global one), so that several servers in one process, as
//! in the tests, count apart. It is handed numbers; it reads nothing itself.

use std::sync::OnceLock;

use super::vectorizer::VectorizerMetrics;
use std::time::Duration;

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Every series of one server.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    pool_connections: IntGaugeVec,
    pool_max: IntGauge,
    pool_waiting: IntGauge,
    migrations_applied: IntGauge,
    ready: IntGauge,
    jobs: IntCounterVec,
    cache: CacheCounters,
    metrics_cache: CacheCounters,
    pool: OnceLock<PoolSampler>,
    reads: IntCounterVec,
    replica_up: IntGauge,
    replica_lag: Gauge,
    replica: OnceLock<ReplicaSampler>,
    pub vectorizer: VectorizerMetrics,
}

/// Where reads that may lag went, with a read replica configured.
#[derive(Clone, Debug)]
pub struct ReadCounters {
    pub replica: IntCounter,
    pub primary: IntCounter,
}

/// The read replica at one moment: whether it answers, its lag in seconds.
type ReplicaSampler = Box<dyn Fn() -> (bool, f64) + Send + Sync>;

/// The calls' pool at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    pub idle: i64,
    pub in_use: i64,
    /// Callers waiting for a connection.
    pub waiting: i64,
}

type PoolSampler = Box<dyn Fn() -> PoolStats + Send + Sync>;

/// A cache's counters (unregistered by default: a cache made outside a
/// server counts into nothing).
#[derive(Clone)]
pub struct CacheCounters {
    pub hit: IntCounter,
    pub miss: IntCounter,
    /// Lookups that skipped the cache: it is off while changes are not being
    /// followed (and, for metrics, when configured off or skipped by the call).
    pub bypass: IntCounter,
}

impl Default for CacheCounters {
    fn default() -> Self {
        let vec = permission_cache_vec();
        CacheCounters::from_vec(&vec)
    }
}

impl CacheCounters {
    fn from_vec(vec: &IntCounterVec) -> Self {
        CacheCounters {
            hit: vec.with_label_values(&["hit"]),
            miss: vec.with_label_values(&["miss"]),
            bypass: vec.with_label_values(&["bypass"]),
        }
    }
}

/// A cache's lookups by result (hit, miss, bypass).
fn cache_vec(name: &str, help: &str) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), &["result"]).expect("static metric definition")
}

fn permission_cache_vec() -> IntCounterVec {
    cache_vec(
        "affinity_permission_cache_requests_total",
        "Membership role lookups by the permission cache's answer.",
    )
}

fn metrics_cache_vec() -> IntCounterVec {
    cache_vec(
        "affinity_metrics_cache_requests_total",
        "GetMetricsAggregated calls by the metrics cache's answer.",
    )
}

impl Metrics {
    /// A registry; `bundled_migrations`: how many migrations this binary
    /// carries.
    pub fn new(bundled_migrations: usize) -> anyhow::Result<Self> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "affinity_rpc_requests_total",
                "RPCs finished, by method and gRPC status.",
            ),
            &["method", "code"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "affinity_rpc_duration_seconds",
                "RPC latency, from the request's headers to the response's end.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["method"],
        )?;
        let pool_connections = IntGaugeVec::new(
            Opts::new(
                "affinity_db_pool_connections",
                "Open database connections of the pool, idle or in use (at scrape time).",
            ),
            &["state"],
        )?;
        let pool_max = IntGauge::new(
            "affinity_db_pool_max_connections",
            "Most connections the pool opens (AFFINITY_DB_MAX_CONNECTIONS).",
        )?;
        let pool_waiting = IntGauge::new(
            "affinity_db_pool_waiting",
            "Callers waiting for a connection of the calls' pool (at scrape time).",
        )?;
        let migrations_applied = IntGauge::new(
            "affinity_migrations_applied",
            "Migrations recorded as applied in the database (_sqlx_migrations).",
        )?;
        let migrations_bundled = IntGauge::new(
            "affinity_migrations_bundled",
            "Migrations bundled in this binary.",
        )?;
        let ready = IntGauge::new(
            "affinity_ready",
            "1 once the service is SERVING, 0 before and while shutting down.",
        )?;
        let jobs = IntCounterVec::new(
            Opts::new(
                "affinity_maintenance_runs_total",
                "Runs of the scheduled maintenance jobs (partitions, archive) by outcome: \
                 done, skipped (another replica held the job's lock) or failed.",
            ),
            &["job", "outcome"],
        )?;
        let reads = IntCounterVec::new(
            Opts::new(
                "affinity_db_reads_total",
                "Reads that may lag (searches, lists, rankings) by the database that served \
                 them, with a read replica configured: replica or primary.",
            ),
            &["database"],
        )?;
        let replica_up = IntGauge::new(
            "affinity_read_replica_up",
            "1 while the read replica answers the probe (at scrape time).",
        )?;
        let replica_lag = Gauge::new(
            "affinity_read_replica_lag_seconds",
            "The read replica's replay lag as the probe last saw it (0 when all it received \
             is replayed).",
        )?;
        registry.register(Box::new(reads.clone()))?;
        registry.register(Box::new(replica_up.clone()))?;
        registry.register(Box::new(replica_lag.clone()))?;
        let cache_vec = permission_cache_vec();
        let metrics_cache_vec = metrics_cache_vec();
        registry.register(Box::new(jobs.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(pool_connections.clone()))?;
        registry.register(Box::new(pool_max.clone()))?;
        registry.register(Box::new(pool_waiting.clone()))?;
        registry.register(Box::new(migrations_applied.clone()))?;
        registry.register(Box::new(migrations_bundled.clone()))?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(cache_vec.clone()))?;
        registry.register(Box::new(metrics_cache_vec.clone()))?;
        let vectorizer = VectorizerMetrics::register(&registry)?;
        migrations_bundled.set(i64::try_from(bundled_migrations).unwrap_or(i64::MAX));
        Ok(Metrics {
            registry,
            requests,
            duration,
            pool_connections,
            pool_max,
            pool_waiting,
            migrations_applied,
            ready,
            jobs,
            cache: CacheCounters::from_vec(&cache_vec),
            metrics_cache: CacheCounters::from_vec(&metrics_cache_vec),
            pool: OnceLock::new(),
            reads,
            replica_up,
            replica_lag,
            replica: OnceLock::new(),
            vectorizer,
        })
    }

    pub fn cache_counters(&self) -> CacheCounters {
        self.cache.clone()
    }

    pub fn metrics_cache_counters(&self) -> CacheCounters {
        self.metrics_cache.clone()
    }

    /// The calls' pool, read by `sample` at every scrape.
    pub fn set_pool(
        &self,
        max_connections: u32,
        sample: impl Fn() -> PoolStats + Send + Sync + 'static,
    ) {
        self.pool_max.set(i64::from(max_connections));
        let _ = self.pool.set(Box::new(sample));
    }

    /// The read replica's counters, and its state read by `sample` at
    /// every scrape.
    pub fn set_replica(
        &self,
        sample: impl Fn() -> (bool, f64) + Send + Sync + 'static,
    ) -> ReadCounters {
        let _ = self.replica.set(Box::new(sample));
        ReadCounters {
            replica: self.reads.with_label_values(&["replica"]),
            primary: self.reads.with_label_values(&["primary"]),
        }
    }

    /// How many migrations the database records as applied.
    pub fn set_migrations_applied(&self, applied: i64) {
        self.migrations_applied.set(applied);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// Counts one run of a maintenance job.
    pub fn record_job(&self, job: &str, outcome: &str) {
        self.jobs.with_label_values(&[job, outcome]).inc();
    }

    pub(super) fn record_rpc(&self, method: &str, code: &'static str, elapsed: Duration) {
        // A path no service knows would otherwise mint a series per path.
        let method = if code == "UNIMPLEMENTED" {
            "unknown"
        } else {
            method
        };
        self.requests.with_label_values(&[method, code]).inc();
        self.duration
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition of every series.
    pub fn render(&self) -> Vec<u8> {
        if let Some(sample) = self.pool.get() {
            let stats = sample();
            self.pool_waiting.set(stats.waiting);
            let connections = &self.pool_connections;
            connections.with_label_values(&["idle"]).set(stats.idle);
            connections.with_label_values(&["in_use"]).set(stats.in_use);
        }
        if let Some(sample) = self.replica.get() {
            let (up, lag) = sample();
            self.replica_up.set(i64::from(up));
            self.replica_lag.set(lag);
        }
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding the metrics");
        }
        out
    }
}
