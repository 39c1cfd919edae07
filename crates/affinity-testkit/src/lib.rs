//! What only the tests and the benchmark of affinity use, kept out of the
//! service's library.
pub mod cluster;
pub mod legacy;
