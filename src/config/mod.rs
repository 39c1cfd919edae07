//! Configuration: one typed struct, from flags and environment (clap).
//! Setting names follow the contract README's "Running" table. The command
//! line around it is `cli.rs`; the types of its values, `values.rs`.

mod cli;
mod text_model;
mod values;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

pub use cli::{Cli, Command, MigrateArgs, TokenArgs, TokenRole, VectorizerArgs};
pub use text_model::{InputType, TextModel, TextModelArgs, VectorizerSettings};
pub use values::{redact_url_password, ListenAddr, Schedule};

/// HYBRID's vector weight when neither the request nor the deployment
/// sets one: the search benchmark's choice (BENCHMARKS.md).
pub const DEFAULT_SEARCH_VECTOR_WEIGHT: f64 = 0.4;

/// The smallest HNSW candidate list (`hnsw.ef_search`) by default: 100
/// (pgvector's default is 40), because the organization filter sits behind
/// the index: with 40, organizations holding 1-40% of the rows lose recall;
/// 100 meets the recall target in every size class up to a million
/// vectors, on one node and on Citus, at more calls a second than 200
/// (BENCHMARKS.md, "a million vectors").
pub const DEFAULT_HNSW_EF_SEARCH: i64 = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Everything `affinity serve` needs. Its `Debug` leaves the secrets out.
#[derive(Clone, Args)]
pub struct Config {
    /// PostgreSQL URL. Unset: the embedded PostgreSQL in the data directory,
    /// started and stopped by the service.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// A direct (unpooled) URL of the same database, for migrations, LISTEN
    /// and the jobs' advisory locks, when DATABASE_URL goes through a
    /// transaction-mode pooler (PgBouncer, Supabase's pooler). Set: calls go
    /// through DATABASE_URL without named prepared statements or session
    /// settings. Unset: DATABASE_URL is direct (checked at start).
    #[arg(long, env = "AFFINITY_DIRECT_DATABASE_URL", hide_env_values = true)]
    pub direct_database_url: Option<String>,

    /// A streaming replica of the database for reads that may lag
    /// (searches, lists, rankings); the primary takes them while it does not
    /// answer, and whenever a call sends `cache-control: no-cache`.
    #[arg(long, env = "AFFINITY_READ_DATABASE_URL", hide_env_values = true)]
    pub read_database_url: Option<String>,

    /// Data directory of the embedded database (and of its generated JWT
    /// secret). Default: $XDG_DATA_HOME/affinity, else ~/.local/share/affinity.
    #[arg(long, env = "AFFINITY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// gRPC listen address: `HOST:PORT`, or `unix:PATH` for a Unix domain
    /// socket (clients on the same host).
    #[arg(long, env = "AFFINITY_LISTEN_ADDR", default_value = "127.0.0.1:50051")]
    pub listen_addr: ListenAddr,

    /// HS256 secret of the JWTs (Supabase's JWT secret). Embedded mode:
    /// generated once and kept in the data directory when unset. With
    /// DATABASE_URL: required.
    #[arg(long, env = "AFFINITY_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Log format.
    #[arg(long, env = "AFFINITY_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Largest request message accepted, in bytes.
    #[arg(long, env = "AFFINITY_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,

    /// Most items in one batch (embeddings, metric points, permission checks,
    /// entities to delete); longer batches are refused whole.
    #[arg(long, env = "AFFINITY_MAX_BATCH", default_value_t = 10_000)]
    pub max_batch: usize,

    /// HYBRID search: the vector list's share of the fusion when a request
    /// sets no `vector_weight`, in [0, 1] (README "Search": the benchmark
    /// that chose the default).
    #[arg(
        long,
        env = "AFFINITY_SEARCH_VECTOR_WEIGHT",
        default_value_t = DEFAULT_SEARCH_VECTOR_WEIGHT,
        value_parser = values::unit_interval
    )]
    pub search_vector_weight: f64,

    /// The smallest HNSW candidate list (`hnsw.ef_search`) of the service's
    /// vector searches, 1 to 1000: shorter is faster and finds fewer of the
    /// true nearest (README "Configuration").
    #[arg(
        long,
        env = "AFFINITY_HNSW_EF_SEARCH",
        default_value_t = DEFAULT_HNSW_EF_SEARCH,
        value_parser = clap::value_parser!(i64).range(1..=1000)
    )]
    pub hnsw_ef_search: i64,

    /// Largest AI-context metadata accepted, in bytes of JSON.
    #[arg(long, env = "AFFINITY_MAX_METADATA_BYTES", default_value_t = 64 * 1024)]
    pub max_metadata_bytes: usize,

    /// Default statement timeout, in milliseconds, of the database work of a
    /// call whose client sent no deadline (0: none). A client deadline
    /// (grpc-timeout) replaces it for that call.
    #[arg(long, env = "AFFINITY_STATEMENT_TIMEOUT_MS", default_value_t = 30_000)]
    pub statement_timeout_ms: u64,

    /// Most concurrent calls (HTTP/2 streams) on one client connection;
    /// clients queue further calls until one ends.
    #[arg(long, env = "AFFINITY_MAX_CONCURRENT_STREAMS", default_value_t = 200)]
    pub max_concurrent_streams: u32,

    /// Metric points older than this many days are moved to the archive by
    /// the scheduled archival, and by ArchiveOldMetrics when the request
    /// names no retention.
    #[arg(long, env = "AFFINITY_METRICS_RETENTION_DAYS", default_value_t = 365)]
    pub metrics_retention_days: u32,

    /// When old metric points are archived: a cron expression in UTC
    /// (minute hour day-of-month month day-of-week, optionally seconds
    /// first), or `off`. One replica at a time runs it; the others skip.
    #[arg(long, env = "AFFINITY_ARCHIVE_SCHEDULE", default_value = "0 2 * * 0")]
    pub archive_schedule: Schedule,

    /// When the monthly metric partitions ahead are created (besides at
    /// start): a cron expression in UTC, or `off`.
    #[arg(
        long,
        env = "AFFINITY_PARTITION_SCHEDULE",
        default_value = "30 1 * * *"
    )]
    pub partition_schedule: Schedule,

    /// How many months after the current one get their metric partition
    /// ahead of time.
    #[arg(long, env = "AFFINITY_PARTITION_MONTHS_AHEAD", default_value_t = 3)]
    pub partition_months_ahead: u32,

    /// Memory for the cache of metric aggregations, in MiB (0: off). Answers
    /// are dropped when their points change, on every replica (README
    /// "Metrics cache").
    #[arg(long, env = "AFFINITY_METRICS_CACHE_MB", default_value_t = 64)]
    pub metrics_cache_mb: u64,

    /// Most database connections of this replica.
    #[arg(long, env = "AFFINITY_DB_MAX_CONNECTIONS", default_value_t = 16)]
    pub db_max_connections: u32,

    /// Seconds in-flight calls get to finish after SIGTERM/SIGINT.
    #[arg(long, env = "AFFINITY_SHUTDOWN_GRACE_SECS", default_value_t = 30)]
    pub shutdown_grace_secs: u64,

    /// Time zones (IANA names, comma-separated) whose local days get metric
    /// rollups: day, week and month aggregations in them read one row per
    /// day. Other zones read hourly rollups. Added at start (building a new
    /// zone's rollups blocks metric writes meanwhile); never removed.
    #[arg(
        long,
        env = "AFFINITY_METRIC_ROLLUP_ZONES",
        value_delimiter = ',',
        default_value = "UTC"
    )]
    pub metric_rollup_zones: Vec<String>,

    /// TLS certificate chain (PEM) of the gRPC server; with --tls-key, the
    /// service speaks only TLS. Without them it serves plaintext on a
    /// loopback address only, unless --plaintext.
    #[arg(long, env = "AFFINITY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "AFFINITY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) for mutual TLS: clients must present a
    /// certificate signed by one of them. Needs --tls-cert and --tls-key.
    #[arg(long, env = "AFFINITY_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve plaintext gRPC on a non-loopback address (behind a
    /// TLS-terminating proxy, or in a private network). Not with --tls-cert.
    #[arg(
        long,
        env = "AFFINITY_PLAINTEXT",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub plaintext: bool,

    /// Address of the Prometheus metrics endpoint (plain HTTP, `GET
    /// /metrics`), a port apart from gRPC. Unset: no metrics endpoint.
    #[arg(long, env = "AFFINITY_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Hand a connection that just ended a call cleanly straight to the next
    /// call, without sqlx's checks on its way back to the pool and out again
    /// (README "Performance switches").
    #[arg(
        long,
        env = "AFFINITY_WARM_CONNECTIONS",
        value_enum,
        default_value = "on"
    )]
    pub warm_connections: Switch,

    /// Send each response in one socket write: hold back HTTP/2's write of a
    /// body chunk until the trailers after it (README "Performance switches").
    #[arg(
        long,
        env = "AFFINITY_COALESCE_WRITES",
        value_enum,
        default_value = "on"
    )]
    pub coalesce_writes: Switch,

    /// The text model and its vectorizer.
    #[command(flatten)]
    pub text: TextModelArgs,
}

/// A performance switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    #[value(alias = "true", alias = "1")]
    On,
    #[value(alias = "false", alias = "0")]
    Off,
}

impl Switch {
    pub fn is_on(self) -> bool {
        self == Switch::On
    }
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url_password),
            )
            .field(
                "direct_database_url",
                &self.direct_database_url.as_deref().map(redact_url_password),
            )
            .field(
                "read_database_url",
                &self.read_database_url.as_deref().map(redact_url_password),
            )
            .field("data_dir", &self.data_dir)
            .field("listen_addr", &self.listen_addr)
            .field(
                "jwt_secret",
                &self.jwt_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("log_format", &self.log_format)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_batch", &self.max_batch)
            .field("max_metadata_bytes", &self.max_metadata_bytes)
            .field("search_vector_weight", &self.search_vector_weight)
            .field("hnsw_ef_search", &self.hnsw_ef_search)
            .field("metrics_retention_days", &self.metrics_retention_days)
            .field("archive_schedule", &self.archive_schedule)
            .field("partition_schedule", &self.partition_schedule)
            .field("partition_months_ahead", &self.partition_months_ahead)
            .field("metrics_cache_mb", &self.metrics_cache_mb)
            .field("db_max_connections", &self.db_max_connections)
            .field("shutdown_grace_secs", &self.shutdown_grace_secs)
            .field("metric_rollup_zones", &self.metric_rollup_zones)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("tls_client_ca", &self.tls_client_ca)
            .field("plaintext", &self.plaintext)
            .field("metrics_addr", &self.metrics_addr)
            .field("warm_connections", &self.warm_connections)
            .field("coalesce_writes", &self.coalesce_writes)
            .field("text", &self.text)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The statement timeout of calls without a client deadline.
    pub fn statement_timeout(&self) -> Option<Duration> {
        (self.statement_timeout_ms > 0).then(|| Duration::from_millis(self.statement_timeout_ms))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The data directory in effect.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(default_data_dir)
    }
}

/// $XDG_DATA_HOME/affinity, else ~/.local/share/affinity, else ./affinity-data.
pub fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("affinity");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(home).join(".local/share/affinity");
    }
    PathBuf::from("affinity-data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn debug_of_the_config_shows_no_secret() {
        let cli = Cli::try_parse_from([
            "affinity",
            "serve",
            "--database-url",
            "postgres://app:db-password-42@db/x",
            "--jwt-secret",
            "jwt-secret-of-the-debug-test",
            "--plaintext",
        ])
        .expect("valid arguments");
        let Some(Command::Serve(config)) = &cli.command else {
            panic!("not `serve`: {cli:?}");
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("db-password-42"), "{shown}");
        assert!(!shown.contains("jwt-secret-of-the-debug-test"), "{shown}");
    }

    /// `affinity serve` with `args`, parsed.
    fn serve_config(args: &[&str]) -> Result<Config, clap::Error> {
        let mut argv = vec!["affinity", "serve"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.command {
            Some(Command::Serve(c)) => Ok(c),
            other => panic!("not `serve`: {other:?}"),
        }
    }

    #[test]
    fn the_hnsw_candidate_list_floor_defaults_to_100_and_takes_1_to_1000() {
        let floor = |args: &[&str]| {
            serve_config(args)
                .map(|c| c.hnsw_ef_search)
                .map_err(|e| e.to_string())
        };
        assert_eq!(floor(&[]), Ok(100));
        assert_eq!(floor(&["--hnsw-ef-search", "1"]), Ok(1));
        assert_eq!(floor(&["--hnsw-ef-search", "1000"]), Ok(1000));
        for bad in ["0", "1001", "-5", "many"] {
            let e = floor(&[&format!("--hnsw-ef-search={bad}")]).expect_err(bad);
            assert!(e.contains("--hnsw-ef-search"), "{e}");
        }
    }

    #[test]
    fn a_performance_switch_is_on_by_default_and_takes_on_off_true_false() {
        let serve = |args: &[&str]| {
            serve_config(args)
                .map(|c| (c.warm_connections, c.coalesce_writes))
                .map_err(|e| e.kind())
        };
        assert_eq!(serve(&[]), Ok((Switch::On, Switch::On)));
        for (off, on) in [("off", "on"), ("false", "true"), ("0", "1")] {
            assert_eq!(
                serve(&["--warm-connections", off, "--coalesce-writes", on]),
                Ok((Switch::Off, Switch::On))
            );
        }
        assert!(serve(&["--warm-connections", "maybe"]).is_err());
    }
}
