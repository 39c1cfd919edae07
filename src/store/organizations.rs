//! Organizations and memberships: the SQL.

use crate::db::sql;
use chrono::{DateTime, Utc};
use sqlx::{Acquire, PgExecutor, Postgres};
use uuid::Uuid;

/// The schema's `org_role`; the order is the hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, sqlx::Type)]
#[sqlx(type_name = "org_role", rename_all = "lowercase")]
pub enum OrgRole {
    Viewer,
    Editor,
    Admin,
    Owner,
}

impl OrgRole {
    pub fn as_str(&self) -> &'static str {
        match self {
            OrgRole::Viewer => "viewer",
            OrgRole::Editor => "editor",
            OrgRole::Admin => "admin",
            OrgRole::Owner => "owner",
        }
    }
}

/// The role of `user` in `org`, if a member.
pub async fn member_role<'e>(
    db: impl PgExecutor<'e>,
    org: Uuid,
    user: Uuid,
) -> sqlx::Result<Option<OrgRole>> {
    sql::query_scalar(
        "SELECT role FROM organization_members WHERE organization_id = $1 AND user_id = $2",
    )
    .bind(org)
    .bind(user)
    .fetch_optional(db)
    .await
}

/// Roles of many (user, org) pairs at once, in the order given.
pub async fn member_roles<'e>(
    db: impl PgExecutor<'e>,
    pairs: &[(Uuid, Uuid)],
) -> sqlx::Result<Vec<Option<OrgRole>>> {
    let users: Vec<Uuid> = pairs.iter().map(|p| p.0).collect();
    let orgs: Vec<Uuid> = pairs.iter().map(|p| p.1).collect();
    sql::query_scalar(
        "SELECT m.role FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS c(user_id, organization_id, n)
         LEFT JOIN organization_members m ON m.organization_id = c.organization_id AND m.user_id = c.user_id
         ORDER BY c.n",
    )
    .bind(&users)
    .bind(&orgs)
    .fetch_all(db)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Member {
    pub organization_id: Uuid,
    pub user_id: Uuid,
    pub role: OrgRole,
    pub joined_at: DateTime<Utc>,
}

/// The profile (and personal organization) of a user seen for the first time.
pub async fn ensure_user<'e>(db: impl PgExecutor<'e>, user: Uuid) -> sqlx::Result<Uuid> {
    sql::query_scalar("SELECT ensure_user_profile($1)")
        .bind(user)
        .fetch_one(db)
        .await
}

/// Creates an organization with `owner` as its owner. None: the slug is taken.
pub async fn create<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    name: &str,
    slug: &str,
    owner: Uuid,
) -> sqlx::Result<Option<Organization>> {
    let mut tx = db.begin().await?;
    ensure_user(&mut *tx, owner).await?;
    let org: Option<Organization> = sql::query_as(
        "INSERT INTO organizations (name, slug) VALUES ($1, $2)
         ON CONFLICT (slug) DO NOTHING
         RETURNING id, name, slug, created_at",
    )
    .bind(name)
    .bind(slug)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(org) = org else { return Ok(None) };
    sql::query("INSERT INTO organization_members (organization_id, user_id, role) VALUES ($1, $2, 'owner')")
        .bind(org.id)
        .bind(owner)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(org))
}

/// Every organization `user` belongs to, with the role, oldest membership first.
pub async fn memberships<'e>(
    db: impl PgExecutor<'e>,
    user: Uuid,
) -> sqlx::Result<Vec<(Organization, OrgRole)>> {
    let rows: Vec<(Uuid, String, String, DateTime<Utc>, OrgRole)> = sql::query_as(
        "SELECT o.id, o.name, o.slug, o.created_at, m.role
         FROM organization_members m JOIN organizations o ON o.id = m.organization_id
         WHERE m.user_id = $1 ORDER BY m.joined_at, o.id",
    )
    .bind(user)
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, slug, created_at, role)| {
            (
                Organization {
                    id,
                    name,
                    slug,
                    created_at,
                },
                role,
            )
        })
        .collect())
}

/// Adds `user` to `org` with `role`, or changes their role. The schema's
/// trigger refuses (AF001) a change that leaves the organization ownerless.
pub async fn put_member<'c>(
    db: impl Acquire<'c, Database = Postgres>,
    org: Uuid,
    user: Uuid,
    role: OrgRole,
) -> sqlx::Result<Member> {
    let mut tx = db.begin().await?;
    ensure_user(&mut *tx, user).await?;
    let member: Member = sql::query_as(
        "INSERT INTO organization_members (organization_id, user_id, role) VALUES ($1, $2, $3)
         ON CONFLICT (organization_id, user_id) DO UPDATE SET role = EXCLUDED.role, updated_at = EXCLUDED.updated_at
         RETURNING organization_id, user_id, role, joined_at",
    )
    .bind(org)
    .bind(user)
    .bind(role)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(member)
}

/// Removes a membership; false when there was none.
pub async fn remove_member<'e>(
    db: impl PgExecutor<'e>,
    org: Uuid,
    user: Uuid,
) -> sqlx::Result<bool> {
    let done =
        sql::query("DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2")
            .bind(org)
            .bind(user)
            .execute(db)
            .await?;
    Ok(done.rows_affected() > 0)
}

pub async fn members<'e>(db: impl PgExecutor<'e>, org: Uuid) -> sqlx::Result<Vec<Member>> {
    sql::query_as(
        "SELECT organization_id, user_id, role, joined_at FROM organization_members
         WHERE organization_id = $1 ORDER BY joined_at, user_id",
    )
    .bind(org)
    .fetch_all(db)
    .await
}

/// Whether the organization exists (for service_role callers only: users
/// never learn whether an organization they do not belong to exists).
pub async fn exists<'e>(db: impl PgExecutor<'e>, org: Uuid) -> sqlx::Result<bool> {
    sql::query_scalar("SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1)")
        .bind(org)
        .fetch_one(db)
        .await
}
