//! The permission cache: every replica caches membership roles, and a
//! membership change reaches every replica within a second.
mod common;

use std::time::Duration;

use affinity::proto::{self, Role};
use common::changes::metrics_caught_up;
use common::server::{authed, code, service_token, user_token, Replica, TestServer};
use common::wait::{eventually, seen};
use sqlx::PgPool;
use tonic::Code;
use uuid::Uuid;

async fn allowed(r: &Replica, user: Uuid, org: Uuid) -> bool {
    r.orgs()
        .user_has_org_permission(authed(
            proto::UserHasOrgPermissionRequest {
                user_id: user.to_string(),
                organization_id: org.to_string(),
                required_role: Role::Viewer as i32,
            },
            &service_token(),
        ))
        .await
        .unwrap()
        .into_inner()
        .allowed
}

/// How long a membership change may take to reach every replica.
const PROPAGATION: Duration = Duration::from_secs(1);

/// Waits (at most [`PROPAGATION`]) until the replica answers `want` after
/// `change`.
async fn answers_within_propagation(r: &Replica, user: Uuid, org: Uuid, want: bool, change: &str) {
    eventually(PROPAGATION, || async {
        let got = allowed(r, user, org).await;
        seen(
            got == want,
            format!("after {change}: allowed {got}, want {want}"),
        )
    })
    .await;
}

/// Runs `statement` with `$1` and `$2` bound to an organization and a user.
async fn membership_sql(pool: &PgPool, statement: &str, org: Uuid, user: Uuid) {
    sqlx::query(statement)
        .bind(org)
        .bind(user)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// Adds `user` to `org` as `role` with plain SQL (another tool).
async fn insert_member(pool: &PgPool, org: Uuid, user: Uuid, role: &str) {
    let insert = format!(
        "INSERT INTO organization_members (organization_id, user_id, role) VALUES ($1, $2, '{role}')"
    );
    membership_sql(pool, &insert, org, user).await;
}

/// Turns the announcement of membership changes off or on (`switch`:
/// DISABLE or ENABLE).
async fn announcements(pool: &PgPool, switch: &str) {
    common::alter_trigger(
        pool,
        &format!("ALTER TABLE organization_members {switch} TRIGGER organization_members_notify"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_membership_change_reaches_every_replica_within_a_second() {
    let s = TestServer::start().await;
    let other = s.replica().await;
    let a = s.new_tenant().await;
    let viewer = Uuid::new_v4();
    s.add_member(a.org, viewer, Role::Viewer).await;
    // That change's own announcement must have reached the other replica
    // (it would evict whatever is warmed before it arrives); then warm its
    // cache.
    metrics_caught_up(&other.channel, &s.db.pool, a.org).await;
    assert!(allowed(&other, viewer, a.org).await);

    // The answer really comes from the cache: a change the database does
    // not announce stays invisible to the replica.
    announcements(&s.db.pool, "DISABLE").await;
    membership_sql(
        &s.db.pool,
        "UPDATE organization_members SET role = 'viewer'
         WHERE organization_id = $1 AND user_id = $2",
        a.org,
        viewer,
    )
    .await;
    membership_sql(
        &s.db.pool,
        "DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2",
        a.org,
        viewer,
    )
    .await;
    // Had they been announced, the announcements would have been acted on
    // before a later one.
    metrics_caught_up(&other.channel, &s.db.pool, a.org).await;
    assert!(
        allowed(&other, viewer, a.org).await,
        "served from the cache"
    );
    insert_member(&s.db.pool, a.org, viewer, "viewer").await;
    announcements(&s.db.pool, "ENABLE").await;

    // A revocation through one replica reaches the other within a second.
    assert!(s.remove_member(a.org, viewer, &a.token).await);
    answers_within_propagation(&other, viewer, a.org, false, "a revocation").await;
    // And the revoked user is refused there, through authorization too.
    let r = other
        .orgs()
        .list_members(authed(
            proto::ListMembersRequest {
                organization_id: a.org.to_string(),
            },
            &user_token(viewer),
        ))
        .await;
    assert_eq!(code(r), Code::PermissionDenied);

    // A change made directly in the database (another tool) reaches it too,
    // including over a cached "not a member".
    insert_member(&s.db.pool, a.org, viewer, "editor").await;
    answers_within_propagation(&other, viewer, a.org, true, "a grant").await;
    other.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replica_reads_its_own_membership_writes_at_once() {
    let s = TestServer::start().await;
    let a = s.new_tenant().await;
    let user = Uuid::new_v4();
    let mut orgs = s.orgs();
    let check = || proto::UserHasOrgPermissionRequest {
        user_id: user.to_string(),
        organization_id: a.org.to_string(),
        required_role: Role::Editor as i32,
    };
    assert!(
        !orgs
            .user_has_org_permission(authed(check(), &service_token()))
            .await
            .unwrap()
            .into_inner()
            .allowed
    );
    for (role, allowed) in [
        (Role::Editor, true),
        (Role::Viewer, false),
        (Role::Admin, true),
    ] {
        orgs.put_member(authed(
            proto::PutMemberRequest {
                organization_id: a.org.to_string(),
                user_id: user.to_string(),
                role: role as i32,
            },
            &a.token,
        ))
        .await
        .unwrap();
        // No waiting: the writing replica dropped its entry on commit.
        let r = orgs
            .user_has_org_permission(authed(check(), &service_token()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.allowed, allowed, "after {role:?}");
    }
}
