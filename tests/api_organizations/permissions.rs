//! Permission checks, one and in bulk: role hierarchy, agreement with SQL, refused arguments.
use affinity::proto::{self, Role};
use tonic::Code;
use uuid::Uuid;

use crate::check;
use crate::common::server::{authed, code, service_token, user_token, TestServer};

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
