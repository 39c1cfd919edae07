//! OrganizationService through a real client, server and database.
mod common;

use affinity::proto::{self, Role};
use common::server::{authed, code, service_token, user_token, TestServer};
use tonic::Code;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread")]
async fn smoke_create_and_check() {
    let s = TestServer::start().await;
    let t = s.new_tenant().await;
    let r = s
        .orgs()
        .user_has_org_permission(authed(
            proto::UserHasOrgPermissionRequest {
                user_id: t.user.to_string(),
                organization_id: t.org.to_string(),
                required_role: Role::Owner as i32,
            },
            &t.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(r.allowed);
    let _ = (
        service_token(),
        user_token(Uuid::new_v4()),
        code::<()>(Err(tonic::Status::ok(""))),
        Code::Ok,
    );
    s.shutdown().await.unwrap();
}
