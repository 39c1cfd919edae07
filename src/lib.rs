//! affinity: a gRPC service over a refactored PostgreSQL + pgvector schema.
//!
//! Layers point down: `server` wires `transport` and `observability` around
//! `api` (the gRPC edge: auth, validation, mapping), which reads through
//! `caches` and `store` (the SQL) over `db` (pools, migrations, cluster);
//! `jobs` (scheduled maintenance), `vectorizer` and `search` (retrieval
//! over texts and vectors) sit below `api`, over `store`;
//! `commands` are the one-shot commands beside `server`. ARCHITECTURE.md
//! follows a call through them.
pub mod api;
pub mod auth;
pub mod caches;
pub mod commands;
pub mod config;
pub mod db;
pub mod embedding;
pub mod error;
pub mod jobs;
pub mod observability;
pub mod search;
pub mod server;
pub mod store;
pub mod transport;
pub mod vectorizer;

/// Generated protobuf and gRPC code of `proto/affinity/v1/affinity.proto`.
pub mod proto {
    #![allow(clippy::all, clippy::pedantic)]
    tonic::include_proto!("affinity.v1");
    /// Encoded descriptor set, for gRPC server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/affinity_descriptor.bin"));
}

/// A new random (version 4) UUID from the thread's generator (ChaCha,
/// seeded by the OS): `Uuid::new_v4` makes a `getrandom` system call for
/// each one, and the service makes one per call (its request id) and one
/// per AI context entry.
pub fn random_uuid() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(rand::random()).into_uuid()
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_uuids_are_version_4_and_differ() {
        let (a, b) = (super::random_uuid(), super::random_uuid());
        assert_eq!(a.get_version_num(), 4);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(a, b);
    }
}
