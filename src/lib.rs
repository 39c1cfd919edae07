//! affinity: a gRPC service over a refactored PostgreSQL + pgvector schema.
pub mod db;
pub mod legacy;

/// Generated protobuf and gRPC code of `proto/affinity/v1/affinity.proto`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("affinity.v1");
    /// Encoded descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/affinity_descriptor.bin"));
}
