//! The service's configuration as tests want it.

use std::net::SocketAddr;

use affinity::config::{Config, ListenAddr, LogFormat, Schedule, Switch};

/// The configuration with every default and no environment, on an ephemeral
/// loopback port, with the scheduled maintenance off.
pub fn test_config(database_url: String, jwt_secret: &str) -> Config {
    Config {
        database_url: Some(database_url),
        data_dir: None,
        listen_addr: ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
        jwt_secret: Some(jwt_secret.to_string()),
        log_format: LogFormat::Text,
        max_message_bytes: 16 * 1024 * 1024,
        max_batch: 10_000,
        max_metadata_bytes: 64 * 1024,
        statement_timeout_ms: 30_000,
        max_concurrent_streams: 200,
        metrics_retention_days: 365,
        archive_schedule: Schedule::off(),
        partition_schedule: Schedule::off(),
        partition_months_ahead: 3,
        metrics_cache_mb: 64,
        db_max_connections: 8,
        shutdown_grace_secs: 10,
        metric_rollup_zones: vec!["UTC".to_string()],
        tls_cert: None,
        tls_key: None,
        tls_client_ca: None,
        plaintext: false,
        metrics_addr: None,
        warm_connections: Switch::On,
        coalesce_writes: Switch::On,
    }
}
