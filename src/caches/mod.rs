//! The per-replica caches (membership roles, metric aggregations) and the
//! follower of the database's change announcements that keeps them fresh.
pub mod follow;
pub mod membership;
pub mod metrics;
pub mod poll;

pub use follow::Follower;
pub use membership::MembershipCache;
pub use metrics::MetricsCache;
