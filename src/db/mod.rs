//! The database: the private PostgreSQL cluster, the pools, the probe of
//! its reachability, and the migrations.
pub mod citus;
pub mod cluster;
mod database;
pub mod embedded;
pub mod migrate;
pub mod pool;
pub mod pooler;
pub mod reachability;
pub mod replica;
pub mod rollback;
pub mod sql;
mod warm;

pub use database::Database;
