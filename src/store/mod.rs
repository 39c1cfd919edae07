//! The SQL of each capability. Handlers in `crate::api` call these; they
//! take a pool or a transaction and return plain rows.
pub mod ai_context;
pub mod maintenance;
pub mod metrics;
pub mod organizations;
pub mod similarity;
