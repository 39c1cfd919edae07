//! affinity: a gRPC service over a refactored PostgreSQL + pgvector schema.
//!
//! Layers point down: `server` wires `api` (the gRPC edge: auth, validation,
//! mapping) over `store` (the SQL) over `db` (pool, migrations, cluster);
//! `jobs` (scheduled maintenance) sits beside `api`, over `store`.
pub mod api;
pub mod auth;
pub mod config;
pub mod db;
pub mod deadline;
pub mod error;
pub mod jobs;
pub mod legacy;
pub mod membership;
pub mod observability;
pub mod server;
pub mod store;
pub mod transport;

/// Generated protobuf and gRPC code of `proto/affinity/v1/affinity.proto`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("affinity.v1");
    /// Encoded descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/affinity_descriptor.bin"));
}
