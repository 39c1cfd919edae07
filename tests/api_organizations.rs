//! OrganizationService through a real client, server and database.
mod common;

use affinity::proto::{self, Role};
use common::server::{authed, code, service_token, user_token, TestServer};
use tonic::Code;
use uuid::Uuid;

fn check(user: Uuid, org: Uuid, role: Role) -> proto::UserHasOrgPermissionRequest {
    proto::UserHasOrgPermissionRequest {
        user_id: user.to_string(),
        organization_id: org.to_string(),
        required_role: role as i32,
    }
}

const ROLES: [Role; 4] = [Role::Viewer, Role::Editor, Role::Admin, Role::Owner];

#[tokio::test(flavor = "multi_thread")]
async fn permission_checks_follow_the_role_hierarchy_and_match_the_sql_function() {
    let s = TestServer::start().await;
    let owner = s.new_tenant().await;
    let mut members = vec![(owner.user, Role::Owner)];
    for role in [Role::Viewer, Role::Editor, Role::Admin] {
        let u = Uuid::new_v4();
        s.add_member(owner.org, u, role).await;
        members.push((u, role));
    }
    let stranger = Uuid::new_v4();
    members.push((stranger, Role::Unspecified));
    let svc = service_token();
    for (user, held) in &members {
        for required in ROLES {
            // A user asks about themselves; service_role about anyone.
            for token in [user_token(*user), svc.clone()] {
                let r = s
                    .orgs()
                    .user_has_org_permission(authed(check(*user, owner.org, required), &token))
                    .await
                    .unwrap()
                    .into_inner();
                assert_eq!(
                    r.allowed,
                    *held as i32 >= required as i32,
                    "{held:?} asking for {required:?}"
                );
                assert_eq!(r.role, *held as i32);
                let sql: bool = sqlx::query_scalar("SELECT user_has_org_permission($1, $2, $3)")
                    .bind(user)
                    .bind(owner.org)
                    .bind(format!("{required:?}").to_lowercase())
                    .fetch_one(&s.db.pool)
                    .await
                    .unwrap();
                assert_eq!(r.allowed, sql, "RPC and SQL function agree");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_permission_checks_answer_in_request_order() {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let b = s.new_tenant().await;
    let viewer = Uuid::new_v4();
    s.add_member(a.org, viewer, Role::Viewer).await;
    let checks = vec![
        check(viewer, a.org, Role::Editor),
        check(a.user, a.org, Role::Owner),
        check(viewer, b.org, Role::Viewer),
        check(viewer, a.org, Role::Viewer),
        check(b.user, b.org, Role::Admin),
    ];
    let r = s
        .orgs()
        .check_permissions(authed(
            proto::CheckPermissionsRequest { checks },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner();
    let got: Vec<(bool, i32)> = r.results.iter().map(|r| (r.allowed, r.role)).collect();
    assert_eq!(
        got,
        vec![
            (false, Role::Viewer as i32),
            (true, Role::Owner as i32),
            (false, Role::Unspecified as i32),
            (true, Role::Viewer as i32),
            (true, Role::Owner as i32)
        ]
    );
    // A user may check only themselves, in bulk too.
    let mine = vec![
        check(viewer, a.org, Role::Viewer),
        check(viewer, b.org, Role::Viewer),
    ];
    let r = s
        .orgs()
        .check_permissions(authed(
            proto::CheckPermissionsRequest { checks: mine },
            &user_token(viewer),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.results.iter().map(|r| r.allowed).collect::<Vec<_>>(),
        vec![true, false]
    );
    let about_other = vec![
        check(viewer, a.org, Role::Viewer),
        check(a.user, a.org, Role::Viewer),
    ];
    let r = s
        .orgs()
        .check_permissions(authed(
            proto::CheckPermissionsRequest {
                checks: about_other,
            },
            &user_token(viewer),
        ))
        .await;
    assert_eq!(code(r), Code::PermissionDenied);
    // At most 1000 checks; malformed checks name their index.
    let too_many = vec![check(viewer, a.org, Role::Viewer); 1001];
    let r = s
        .orgs()
        .check_permissions(authed(
            proto::CheckPermissionsRequest { checks: too_many },
            &service_token(),
        ))
        .await;
    assert_eq!(code(r), Code::InvalidArgument);
    let bad = vec![
        check(viewer, a.org, Role::Viewer),
        check(viewer, a.org, Role::Unspecified),
    ];
    let err = s
        .orgs()
        .check_permissions(authed(
            proto::CheckPermissionsRequest { checks: bad },
            &service_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("checks[1]"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn permission_checks_refuse_bad_arguments_and_questions_about_other_users() {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let mut orgs = s.orgs();
    let cases = [
        (
            check(a.user, a.org, Role::Unspecified),
            &a.token,
            Code::InvalidArgument,
        ),
        (
            proto::UserHasOrgPermissionRequest {
                user_id: "not-a-uuid".into(),
                ..check(a.user, a.org, Role::Viewer)
            },
            &a.token,
            Code::InvalidArgument,
        ),
        (
            proto::UserHasOrgPermissionRequest {
                organization_id: String::new(),
                ..check(a.user, a.org, Role::Viewer)
            },
            &a.token,
            Code::InvalidArgument,
        ),
        (
            check(Uuid::new_v4(), a.org, Role::Viewer),
            &a.token,
            Code::PermissionDenied,
        ),
    ];
    for (req, token, want) in cases {
        assert_eq!(
            code(
                orgs.user_has_org_permission(authed(req.clone(), token))
                    .await
            ),
            want,
            "{req:?}"
        );
    }
    // No token at all.
    let r = orgs
        .user_has_org_permission(tonic::Request::new(check(a.user, a.org, Role::Viewer)))
        .await;
    assert_eq!(code(r), Code::Unauthenticated);
}

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
