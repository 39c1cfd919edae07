//! Watching the service: the Prometheus endpoint on its own port, the
//! request id that comes back with every response, and the log lines calls
//! leave.
#[path = "../common/mod.rs"]
mod common;

mod logs;
mod metrics_endpoint;
mod request_ids;

use affinity::proto::{self, Role};
use uuid::Uuid;

/// The value of the series whose line starts with `series` (name and labels).
pub(crate) fn value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

pub(crate) fn permission_request(user: Uuid, org: Uuid) -> proto::UserHasOrgPermissionRequest {
    proto::UserHasOrgPermissionRequest {
        user_id: user.to_string(),
        organization_id: org.to_string(),
        required_role: Role::Viewer as i32,
    }
}
