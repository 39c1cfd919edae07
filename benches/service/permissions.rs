//! UserHasOrgPermission, CheckPermissions (batches of 100) and
//! ListUserOrganizations, as the BFF calls them with its service_role token,
//! against the same questions asked in SQL.

use std::sync::Arc;

use affinity::proto::{
    organization_service_client::OrganizationServiceClient, CheckPermissionsRequest,
    ListUserOrganizationsRequest, UserHasOrgPermissionRequest,
};
use anyhow::Result;
use rand::Rng;
use uuid::Uuid;

use crate::drive::{compare, op, Op, Row};
use crate::env::request;
use crate::world::{self, ORGS, ROLES};
use crate::Ctx;

pub const BATCH: usize = 100;

#[derive(Clone)]
struct Check {
    user: Uuid,
    org: Uuid,
    /// Index into ROLES; the proto's Role is one more.
    role: usize,
}

const SQL_ONE: &str = "SELECT user_has_org_permission($1, $2, $3)";
/// What CheckPermissions' store runs.
const SQL_BATCH: &str = "SELECT m.role::text
     FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS c(user_id, organization_id, n)
     LEFT JOIN organization_members m
            ON m.organization_id = c.organization_id AND m.user_id = c.user_id
     ORDER BY c.n";
/// What ListUserOrganizations' store runs.
const SQL_LIST: &str = "SELECT o.id, o.name, o.slug, o.created_at, m.role::text
     FROM organization_members m JOIN organizations o ON o.id = m.organization_id
     WHERE m.user_id = $1 ORDER BY m.joined_at, o.id";

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let w = &ctx.world;
    // The pages of active users: every tenth user, each checked against
    // their organizations (personal one included) and one they are not in.
    let mut r = world::rng(w.seed, "permissions");
    let active: Vec<usize> = (0..w.scale.users).step_by(10).collect();
    let mut checks = Vec::new();
    for &u in &active {
        let user = w.user_id(u);
        let mut orgs: Vec<Uuid> = w.memberships[u].iter().map(|m| w.org_id(m.0)).collect();
        orgs.push(w.personal_org_id(u));
        orgs.push(w.org_id(r.random_range(0..ORGS)));
        for org in orgs {
            checks.push(Check {
                user,
                org,
                role: r.random_range(0..ROLES.len()),
            });
        }
    }
    // Shuffled, so that consecutive calls ask about different users.
    for i in (1..checks.len()).rev() {
        checks.swap(i, r.random_range(0..=i));
    }
    let checks = Arc::new(checks);
    let batches: Arc<Vec<Vec<Check>>> = Arc::new(
        (0..200)
            .map(|b| {
                (0..BATCH)
                    .map(|i| checks[(b * BATCH + i) % checks.len()].clone())
                    .collect()
            })
            .collect(),
    );
    let users: Arc<Vec<Uuid>> = Arc::new(active.iter().map(|&u| w.user_id(u)).collect());

    let mut rows = compare(
        "UserHasOrgPermission",
        &one_rpc(ctx, &checks),
        Some(&one_sql(ctx, &checks)),
        &ctx.concurrency,
        ctx.timing,
    )
    .await;
    rows.extend(
        compare(
            &format!("CheckPermissions (batch of {BATCH}; per check)"),
            &batch_rpc(ctx, &batches),
            Some(&batch_sql(ctx, &batches)),
            &ctx.concurrency,
            ctx.timing,
        )
        .await,
    );
    rows.extend(
        compare(
            "ListUserOrganizations",
            &list_rpc(ctx, &users),
            Some(&list_sql(ctx, &users)),
            &ctx.concurrency,
            ctx.timing,
        )
        .await,
    );
    Ok(rows)
}

fn proto_check(c: &Check) -> UserHasOrgPermissionRequest {
    UserHasOrgPermissionRequest {
        user_id: c.user.to_string(),
        organization_id: c.org.to_string(),
        required_role: c.role as i32 + 1,
    }
}

fn one_rpc(ctx: &Ctx, checks: &Arc<Vec<Check>>) -> Op {
    let (checks, channels, auth) = (
        checks.clone(),
        ctx.channels.clone(),
        ctx.service_auth.clone(),
    );
    op(move |i| {
        let c = proto_check(&checks[i as usize % checks.len()]);
        let mut client = OrganizationServiceClient::new(crate::pick(&channels, i));
        let auth = auth.clone();
        async move {
            client.user_has_org_permission(request(c, &auth)).await?;
            Ok(1)
        }
    })
}

fn one_sql(ctx: &Ctx, checks: &Arc<Vec<Check>>) -> Op {
    let (checks, pool) = (checks.clone(), ctx.pool.clone());
    op(move |i| {
        let c = checks[i as usize % checks.len()].clone();
        let pool = pool.clone();
        async move {
            let _: bool = sqlx::query_scalar(SQL_ONE)
                .bind(c.user)
                .bind(c.org)
                .bind(ROLES[c.role])
                .fetch_one(&pool)
                .await?;
            Ok(1)
        }
    })
}

fn batch_rpc(ctx: &Ctx, batches: &[Vec<Check>]) -> Op {
    // Built once: formatting 200 UUIDs per call would load the shared CPUs.
    let requests: Arc<Vec<CheckPermissionsRequest>> = Arc::new(
        batches
            .iter()
            .map(|b| CheckPermissionsRequest {
                checks: b.iter().map(proto_check).collect(),
            })
            .collect(),
    );
    let (channels, auth) = (ctx.channels.clone(), ctx.service_auth.clone());
    op(move |i| {
        let r = requests[i as usize % requests.len()].clone();
        let mut client = OrganizationServiceClient::new(crate::pick(&channels, i));
        let auth = auth.clone();
        async move {
            let r = client.check_permissions(request(r, &auth)).await?;
            Ok(r.into_inner().results.len() as u64)
        }
    })
}

fn batch_sql(ctx: &Ctx, batches: &Arc<Vec<Vec<Check>>>) -> Op {
    let (batches, pool) = (batches.clone(), ctx.pool.clone());
    op(move |i| {
        let batch = &batches[i as usize % batches.len()];
        let users: Vec<Uuid> = batch.iter().map(|c| c.user).collect();
        let orgs: Vec<Uuid> = batch.iter().map(|c| c.org).collect();
        let pool = pool.clone();
        async move {
            let roles: Vec<Option<String>> = sqlx::query_scalar(SQL_BATCH)
                .bind(users)
                .bind(orgs)
                .fetch_all(&pool)
                .await?;
            Ok(roles.len() as u64)
        }
    })
}

fn list_rpc(ctx: &Ctx, users: &Arc<Vec<Uuid>>) -> Op {
    let (users, channels, auth) = (
        users.clone(),
        ctx.channels.clone(),
        ctx.service_auth.clone(),
    );
    op(move |i| {
        let user_id = users[i as usize % users.len()].to_string();
        let mut client = OrganizationServiceClient::new(crate::pick(&channels, i));
        let auth = auth.clone();
        async move {
            client
                .list_user_organizations(request(ListUserOrganizationsRequest { user_id }, &auth))
                .await?;
            Ok(1)
        }
    })
}

fn list_sql(ctx: &Ctx, users: &Arc<Vec<Uuid>>) -> Op {
    let (users, pool) = (users.clone(), ctx.pool.clone());
    op(move |i| {
        let user = users[i as usize % users.len()];
        let pool = pool.clone();
        async move {
            sqlx::query(SQL_LIST).bind(user).fetch_all(&pool).await?;
            Ok(1)
        }
    })
}
