//! Watching the service: the Prometheus registry, its `/metrics` endpoint,
//! and the per-call layer (request ids, spans, counts and latencies).
pub mod endpoint;
pub mod layer;
pub mod registry;
pub mod vectorizer;

pub use layer::{ObserveLayer, REQUEST_ID};
pub use registry::{CacheCounters, Metrics, PoolStats, ReadCounters};
pub use vectorizer::VectorizerMetrics;
