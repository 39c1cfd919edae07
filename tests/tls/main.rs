//! Transport: TLS with a certificate and key, mutual TLS with a client CA,
//! plaintext only on loopback or when asked for, and clear refusals of bad
//! TLS settings. Certificates are made per test (rcgen).
#[path = "../common/mod.rs"]
mod common;

mod plaintext;
mod settings;
mod support;
mod tls_clients;
