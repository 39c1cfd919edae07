//! A user of one organization can neither read, change nor probe another one or its members.
use affinity::proto::{self, Role};
use tonic::Code;
use uuid::Uuid;

use crate::check;
use crate::common;
use crate::common::server::{authed, code, TestServer};

/// Two organizations, A and B, each with its owner; and an id of an
/// organization that does not exist.
async fn two_tenants() -> (
    TestServer,
    common::server::Tenant,
    common::server::Tenant,
    Uuid,
) {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let b = s.new_tenant().await;
    (s, a, b, Uuid::new_v4())
}

/// A's owner naming B, or an organization that does not exist, gets
/// PERMISSION_DENIED with the same message either way (no probing).
fn assert_denied_alike(on_b: tonic::Status, on_ghost: tonic::Status, b: Uuid, ghost: Uuid) {
    assert_eq!(on_b.code(), Code::PermissionDenied, "{}", on_b.message());
    assert_eq!(
        on_ghost.code(),
        Code::PermissionDenied,
        "{}",
        on_ghost.message()
    );
    assert_eq!(
        on_b.message().replace(&b.to_string(), "<org>"),
        on_ghost.message().replace(&ghost.to_string(), "<org>")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_has_org_permission_tells_a_user_nothing_about_another_organizations_members() {
    let (s, a, b, _) = two_tenants().await;
    let r = s
        .orgs()
        .user_has_org_permission(authed(check(b.user, b.org, Role::Viewer), &a.token))
        .await;
    assert_eq!(code(r), Code::PermissionDenied);
    // About themselves in B: simply not a member, whether or not B exists.
    for org in [b.org, Uuid::new_v4()] {
        let r = s
            .orgs()
            .user_has_org_permission(authed(check(a.user, org, Role::Viewer), &a.token))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((r.allowed, r.role), (false, Role::Unspecified as i32));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn check_permissions_tells_a_user_nothing_about_another_organizations_members() {
    let (s, a, b, _) = two_tenants().await;
    let req = proto::CheckPermissionsRequest {
        checks: vec![
            check(a.user, a.org, Role::Viewer),
            check(b.user, b.org, Role::Viewer),
        ],
    };
    assert_eq!(
        code(s.orgs().check_permissions(authed(req, &a.token)).await),
        Code::PermissionDenied
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn create_organization_cannot_act_for_a_user_of_another_organization() {
    let (s, a, b, _) = two_tenants().await;
    let req = proto::CreateOrganizationRequest {
        name: "B2".into(),
        slug: "b-two".into(),
        owner_user_id: b.user.to_string(),
    };
    assert_eq!(
        code(s.orgs().create_organization(authed(req, &a.token)).await),
        Code::PermissionDenied
    );
    let b_orgs: i64 =
        sqlx::query_scalar("SELECT count(*) FROM organization_members WHERE user_id = $1")
            .bind(b.user)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(
        b_orgs, 2,
        "B's personal organization and B's team, nothing more"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_user_organizations_shows_a_user_only_their_own() {
    let (s, a, b, _) = two_tenants().await;
    let r = s
        .orgs()
        .list_user_organizations(authed(
            proto::ListUserOrganizationsRequest {
                user_id: b.user.to_string(),
            },
            &a.token,
        ))
        .await;
    assert_eq!(code(r), Code::PermissionDenied);
    let mine = s
        .orgs()
        .list_user_organizations(authed(
            proto::ListUserOrganizationsRequest {
                user_id: a.user.to_string(),
            },
            &a.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(mine
        .memberships
        .iter()
        .all(|m| m.organization.as_ref().unwrap().id != b.org.to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn put_member_cannot_write_into_another_organization() {
    let (s, a, b, ghost) = two_tenants().await;
    let put = |org: Uuid| proto::PutMemberRequest {
        organization_id: org.to_string(),
        user_id: a.user.to_string(),
        role: Role::Owner as i32,
    };
    let on_b = s
        .orgs()
        .put_member(authed(put(b.org), &a.token))
        .await
        .unwrap_err();
    let on_ghost = s
        .orgs()
        .put_member(authed(put(ghost), &a.token))
        .await
        .unwrap_err();
    assert_denied_alike(on_b, on_ghost, b.org, ghost);
    let in_b: i64 =
        sqlx::query_scalar("SELECT count(*) FROM organization_members WHERE organization_id = $1")
            .bind(b.org)
            .fetch_one(&s.db.pool)
            .await
            .unwrap();
    assert_eq!(in_b, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_member_cannot_touch_another_organization() {
    let (s, a, b, ghost) = two_tenants().await;
    let rm = |org: Uuid| proto::RemoveMemberRequest {
        organization_id: org.to_string(),
        user_id: b.user.to_string(),
    };
    let on_b = s
        .orgs()
        .remove_member(authed(rm(b.org), &a.token))
        .await
        .unwrap_err();
    let on_ghost = s
        .orgs()
        .remove_member(authed(rm(ghost), &a.token))
        .await
        .unwrap_err();
    assert_denied_alike(on_b, on_ghost, b.org, ghost);
    let still: bool = sqlx::query_scalar("SELECT user_has_org_permission($1, $2, 'owner')")
        .bind(b.user)
        .bind(b.org)
        .fetch_one(&s.db.pool)
        .await
        .unwrap();
    assert!(still);
}

#[tokio::test(flavor = "multi_thread")]
async fn list_members_cannot_read_or_probe_another_organization() {
    let (s, a, b, ghost) = two_tenants().await;
    let list = |org: Uuid| proto::ListMembersRequest {
        organization_id: org.to_string(),
    };
    let on_b = s
        .orgs()
        .list_members(authed(list(b.org), &a.token))
        .await
        .unwrap_err();
    let on_ghost = s
        .orgs()
        .list_members(authed(list(ghost), &a.token))
        .await
        .unwrap_err();
    assert_eq!(
        on_b.message().replace(&b.org.to_string(), "<org>"),
        "you are not a member of organization <org>"
    );
    assert_denied_alike(on_b, on_ghost, b.org, ghost);
}
