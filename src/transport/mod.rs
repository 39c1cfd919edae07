//! The transport under the gRPC services: where the server listens, TLS,
//! one socket write per response, and client deadlines.
pub mod coalesce;
pub mod deadline;
pub mod listen;
pub mod tls;

pub use listen::Listener;
pub use tls::Transport;
