//! Organizations in SQL: role hierarchy, last owner kept, a personal organization per user.
use uuid::Uuid;

use crate::common::TestDb;
use crate::new_user;

#[tokio::test]
async fn org_permission_follows_the_role_hierarchy() {
    let db = TestDb::migrated().await;
    let (owner, org) = new_user(&db.pool).await;
    let (stranger, _) = new_user(&db.pool).await;
    let roles = ["viewer", "editor", "admin", "owner"];
    let mut members = vec![];
    for role in &roles[..3] {
        let (u, _) = new_user(&db.pool).await;
        sqlx::query("INSERT INTO organization_members (organization_id, user_id, role) VALUES ($1, $2, $3::org_role)")
            .bind(org)
            .bind(u)
            .bind(role)
            .execute(&db.pool)
            .await
            .unwrap();
        members.push((u, *role));
    }
    members.push((owner, "owner"));
    for (user, held) in &members {
        let held_rank = roles.iter().position(|r| r == held).unwrap();
        for (rank, required) in roles.iter().enumerate() {
            let allowed: bool = sqlx::query_scalar("SELECT user_has_org_permission($1, $2, $3)")
                .bind(user)
                .bind(org)
                .bind(required)
                .fetch_one(&db.pool)
                .await
                .unwrap();
            assert_eq!(allowed, held_rank >= rank, "{held} asking for {required}");
        }
    }
    let allowed: bool = sqlx::query_scalar("SELECT user_has_org_permission($1, $2, 'viewer')")
        .bind(stranger)
        .bind(org)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert!(!allowed);
}

#[tokio::test]
async fn an_organization_never_loses_its_last_owner() {
    let db = TestDb::migrated().await;
    let (owner, org) = new_user(&db.pool).await;
    let err =
        sqlx::query("DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2")
            .bind(org)
            .bind(owner)
            .execute(&db.pool)
            .await
            .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("AF001"),
        "{err}"
    );
    let err =
        sqlx::query("UPDATE organization_members SET role = 'admin' WHERE organization_id = $1")
            .bind(org)
            .execute(&db.pool)
            .await
            .unwrap_err();
    assert_eq!(
        err.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("AF001"),
        "{err}"
    );
    // With a second owner, the first may go; deleting the organization is fine too.
    let (second, _) = new_user(&db.pool).await;
    sqlx::query("INSERT INTO organization_members VALUES ($1, $2, 'owner')")
        .bind(org)
        .bind(second)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2")
        .bind(org)
        .bind(owner)
        .execute(&db.pool)
        .await
        .unwrap();
    // Deleting a whole organization takes its owners with it.
    let team: Uuid = sqlx::query_scalar(
        "INSERT INTO organizations (name, slug) VALUES ('Team', 'team') RETURNING id",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO organization_members VALUES ($1, $2, 'owner')")
        .bind(team)
        .bind(second)
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM organizations WHERE id = $1")
        .bind(team)
        .execute(&db.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_new_user_gets_a_personal_organization_on_first_sight() {
    let db = TestDb::migrated().await;
    let (user, org) = new_user(&db.pool).await;
    let again: Uuid = sqlx::query_scalar("SELECT ensure_user_profile($1)")
        .bind(user)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(org, again);
    let (personal_owner, role): (Option<Uuid>, String) = sqlx::query_as(
        "SELECT o.personal_owner_id, m.role::text FROM organizations o
         JOIN organization_members m ON m.organization_id = o.id WHERE o.id = $1",
    )
    .bind(org)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!((personal_owner, role.as_str()), (Some(user), "owner"));
}
