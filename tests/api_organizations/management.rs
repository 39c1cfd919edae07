//! Organizations created with their owner and unique slugs; membership changes by role.
use affinity::proto::{self, Role};
use tonic::Code;
use uuid::Uuid;

use crate::common::server::{authed, code, service_token, user_token, TestServer};

#[tokio::test(flavor = "multi_thread")]
async fn organizations_are_created_with_their_owner_and_unique_slugs() {
    let s = TestServer::start().await;
    let user = Uuid::new_v4();
    let token = user_token(user);
    let mut orgs = s.orgs();
    let created = orgs
        .create_organization(authed(
            proto::CreateOrganizationRequest {
                name: "Acme Studio".into(),
                slug: "acme-studio".into(),
                owner_user_id: String::new(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (created.name.as_str(), created.slug.as_str()),
        ("Acme Studio", "acme-studio")
    );
    assert!(created.created_at.is_some());
    // The caller (a user the service had never seen) owns it, beside their personal organization.
    let list = orgs
        .list_user_organizations(authed(
            proto::ListUserOrganizationsRequest {
                user_id: user.to_string(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    let acme = list
        .memberships
        .iter()
        .find(|m| m.organization.as_ref().unwrap().id == created.id)
        .unwrap();
    assert_eq!(acme.role, Role::Owner as i32);
    assert_eq!(list.memberships.len(), 2, "personal organization + acme");

    let dup = orgs
        .create_organization(authed(
            proto::CreateOrganizationRequest {
                name: "Other".into(),
                slug: "acme-studio".into(),
                owner_user_id: user.to_string(),
            },
            &token,
        ))
        .await;
    assert_eq!(code(dup), Code::AlreadyExists);
    for (name, slug) in [
        ("", "ok-slug"),
        ("Name", "Bad Slug"),
        ("Name", ""),
        ("Name", "UPPER"),
    ] {
        let r = orgs
            .create_organization(authed(
                proto::CreateOrganizationRequest {
                    name: name.into(),
                    slug: slug.into(),
                    owner_user_id: user.to_string(),
                },
                &token,
            ))
            .await;
        assert_eq!(code(r), Code::InvalidArgument, "{name:?} {slug:?}");
    }
    // A user cannot create an organization owned by someone else; service_role can.
    let other = Uuid::new_v4().to_string();
    let req = || proto::CreateOrganizationRequest {
        name: "X".into(),
        slug: "x-org".into(),
        owner_user_id: other.clone(),
    };
    assert_eq!(
        code(orgs.create_organization(authed(req(), &token)).await),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            orgs.create_organization(authed(req(), &service_token()))
                .await
        ),
        Code::Ok
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn membership_changes_need_admin_and_owner_changes_need_an_owner() {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let (admin, editor, newcomer) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    s.add_member(a.org, admin, Role::Admin).await;
    s.add_member(a.org, editor, Role::Editor).await;
    let mut orgs = s.orgs();
    let put = |user: Uuid, role: Role| proto::PutMemberRequest {
        organization_id: a.org.to_string(),
        user_id: user.to_string(),
        role: role as i32,
    };
    // An editor cannot change memberships; an admin can, below owner.
    assert_eq!(
        code(
            orgs.put_member(authed(put(newcomer, Role::Viewer), &user_token(editor)))
                .await
        ),
        Code::PermissionDenied
    );
    let m = orgs
        .put_member(authed(put(newcomer, Role::Viewer), &user_token(admin)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (m.role, m.user_id.clone()),
        (Role::Viewer as i32, newcomer.to_string())
    );
    assert!(m.joined_at.is_some());
    assert_eq!(
        code(
            orgs.put_member(authed(put(newcomer, Role::Owner), &user_token(admin)))
                .await
        ),
        Code::PermissionDenied
    );
    assert_eq!(
        code(
            orgs.put_member(authed(put(a.user, Role::Viewer), &user_token(admin)))
                .await
        ),
        Code::PermissionDenied
    );
    // The owner can grant ownership.
    assert_eq!(
        code(
            orgs.put_member(authed(put(newcomer, Role::Owner), &a.token))
                .await
        ),
        Code::Ok
    );
    assert_eq!(
        code(
            orgs.put_member(authed(put(newcomer, Role::Unspecified), &a.token))
                .await
        ),
        Code::InvalidArgument
    );

    // The last owner can neither leave nor be demoted.
    let remove = |user: Uuid| proto::RemoveMemberRequest {
        organization_id: a.org.to_string(),
        user_id: user.to_string(),
    };
    assert!(
        orgs.remove_member(authed(remove(newcomer), &a.token))
            .await
            .unwrap()
            .into_inner()
            .removed
    );
    assert_eq!(
        code(orgs.remove_member(authed(remove(a.user), &a.token)).await),
        Code::FailedPrecondition
    );
    let err = orgs
        .put_member(authed(put(a.user, Role::Admin), &a.token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("owner"), "{}", err.message());
    // Removing an owner takes an owner; removing a non-member says so.
    assert_eq!(
        code(
            orgs.remove_member(authed(remove(a.user), &user_token(admin)))
                .await
        ),
        Code::PermissionDenied
    );
    assert!(
        !orgs
            .remove_member(authed(remove(Uuid::new_v4()), &user_token(admin)))
            .await
            .unwrap()
            .into_inner()
            .removed
    );
    assert!(
        orgs.remove_member(authed(remove(editor), &user_token(admin)))
            .await
            .unwrap()
            .into_inner()
            .removed
    );

    let members = orgs
        .list_members(authed(
            proto::ListMembersRequest {
                organization_id: a.org.to_string(),
            },
            &user_token(admin),
        ))
        .await
        .unwrap()
        .into_inner()
        .members;
    let mut got: Vec<(String, i32)> = members
        .iter()
        .map(|m| (m.user_id.clone(), m.role))
        .collect();
    got.sort();
    let mut want = vec![
        (a.user.to_string(), Role::Owner as i32),
        (admin.to_string(), Role::Admin as i32),
    ];
    want.sort();
    assert_eq!(got, want);
    // service_role on an organization that does not exist.
    let ghost = proto::PutMemberRequest {
        organization_id: Uuid::new_v4().to_string(),
        ..put(newcomer, Role::Viewer)
    };
    assert_eq!(
        code(orgs.put_member(authed(ghost, &service_token())).await),
        Code::NotFound
    );
}
