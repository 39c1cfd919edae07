//! OrganizationService through a real client, server and database.
#[path = "../common/mod.rs"]
mod common;

mod isolation;
mod management;
mod permissions;

use affinity::proto::{self, Role};
use uuid::Uuid;

fn check(user: Uuid, org: Uuid, role: Role) -> proto::UserHasOrgPermissionRequest {
    proto::UserHasOrgPermissionRequest {
        user_id: user.to_string(),
        organization_id: org.to_string(),
        required_role: role as i32,
    }
}
