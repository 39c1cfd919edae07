//! The database: the private PostgreSQL cluster, the pool and the migrations.
pub mod cluster;
pub mod embedded;
pub mod migrate;
pub mod pool;
