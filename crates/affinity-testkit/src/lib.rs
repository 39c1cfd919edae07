//! What only the tests and the benchmark of affinity use, kept out of the
//! service's library.
pub mod cluster;
pub mod config;
pub mod legacy;

pub use config::test_config;
