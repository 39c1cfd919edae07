//! Fault injection with real processes: the `affinity` binary (killed with
//! SIGKILL, stopped with SIGTERM, started as several replicas at once) and
//! a private PostgreSQL restarted under it (fast and immediate shutdown).
//! Every write the service acknowledged must be in the database afterwards,
//! checked in SQL, and no call may outlive its deadline.
//!
//! ("Database down when the service starts" is in tests/service/.)
#[path = "../common/mod.rs"]
mod common;

mod calls;
mod database_restart;
mod health;
mod load;
mod replicas;
mod requests;
mod sigkill;
mod sigterm;
mod stored;

use std::time::Duration;

/// The deadline of every call of a load.
pub(crate) const DEADLINE: Duration = Duration::from_secs(2);
/// How long past its deadline a call may take to end: the server answers
/// at the deadline; this covers the trip back on a loaded 2-core machine.
/// A call still unanswered then is recorded as hung.
pub(crate) const SLACK: Duration = Duration::from_secs(2);
/// Bound of every wait for the service to start (migrations included).
pub(crate) const STARTUP: Duration = Duration::from_secs(120);
/// Bound of the wait for the load to succeed again after a fault.
pub(crate) const RECOVERY: Duration = Duration::from_secs(30);
/// Dimension of the embeddings written.
pub(crate) const DIM: usize = 384;
/// Model of the embeddings LogAiContext stores.
pub(crate) const AI_MODEL: &str = "fault-model";
