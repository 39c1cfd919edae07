//! The SQL of each capability. Handlers in `crate::api` call these; they
//! take a pool or a transaction and return plain rows.
pub mod organizations;
pub mod similarity;
