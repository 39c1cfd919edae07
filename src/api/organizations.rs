//! OrganizationService: permission checks, organizations and memberships.

use std::sync::Arc;

use tonic::Request;
use uuid::Uuid;

use super::{parse_uuid, principal, require_service, to_timestamp, ApiState};
use crate::api::reads::read;
use crate::auth::Principal;
use crate::caches::Follower as _;
use crate::error::{ApiError, ApiResult};
use crate::proto::{self, organization_service_server::OrganizationService, Role};
use crate::store::organizations::{self as store, OrgRole};

/// Most checks in one CheckPermissions call (the contract's limit).
const MAX_CHECKS: usize = 1000;

pub struct OrganizationsApi {
    state: Arc<ApiState>,
}

impl OrganizationsApi {
    pub fn new(state: Arc<ApiState>) -> Self {
        OrganizationsApi { state }
    }
}

pub fn role_from_proto(field: &str, value: i32) -> ApiResult<OrgRole> {
    match Role::try_from(value) {
        Ok(Role::Viewer) => Ok(OrgRole::Viewer),
        Ok(Role::Editor) => Ok(OrgRole::Editor),
        Ok(Role::Admin) => Ok(OrgRole::Admin),
        Ok(Role::Owner) => Ok(OrgRole::Owner),
        Ok(Role::Unspecified) => Err(ApiError::invalid(format!(
            "{field} is required (ROLE_VIEWER..ROLE_OWNER)"
        ))),
        Err(_) => Err(ApiError::invalid(format!("{field} {value} is not a role"))),
    }
}

pub fn role_to_proto(role: Option<OrgRole>) -> Role {
    match role {
        None => Role::Unspecified,
        Some(OrgRole::Viewer) => Role::Viewer,
        Some(OrgRole::Editor) => Role::Editor,
        Some(OrgRole::Admin) => Role::Admin,
        Some(OrgRole::Owner) => Role::Owner,
    }
}

fn organization(o: store::Organization) -> proto::Organization {
    proto::Organization {
        id: o.id.to_string(),
        name: o.name,
        slug: o.slug,
        created_at: Some(to_timestamp(o.created_at)),
    }
}

fn member(m: store::Member) -> proto::Member {
    proto::Member {
        organization_id: m.organization_id.to_string(),
        user_id: m.user_id.to_string(),
        role: role_to_proto(Some(m.role)) as i32,
        joined_at: Some(to_timestamp(m.joined_at)),
    }
}

/// A user may ask only about themselves; service_role about anyone.
fn about_self_or_service(p: &Principal, user: Uuid, what: &str) -> ApiResult<()> {
    match p {
        Principal::User(me) if *me != user => require_service(p, what),
        _ => Ok(()),
    }
}

struct Check {
    user: Uuid,
    org: Uuid,
    required: OrgRole,
}

fn parse_check(c: &proto::UserHasOrgPermissionRequest, prefix: &str) -> ApiResult<Check> {
    Ok(Check {
        user: parse_uuid(&format!("{prefix}user_id"), &c.user_id)?,
        org: parse_uuid(&format!("{prefix}organization_id"), &c.organization_id)?,
        required: role_from_proto(&format!("{prefix}required_role"), c.required_role)?,
    })
}

fn answer(required: OrgRole, held: Option<OrgRole>) -> proto::UserHasOrgPermissionResponse {
    proto::UserHasOrgPermissionResponse {
        allowed: held.is_some_and(|h| h >= required),
        role: role_to_proto(held) as i32,
    }
}

fn valid_slug(slug: &str) -> bool {
    (1..=100).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// The calls, each in the crate's result type (`grpc_handlers!` converts
/// to tonic's once).
impl OrganizationsApi {
    async fn user_has_org_permission(
        &self,
        req: Request<proto::UserHasOrgPermissionRequest>,
    ) -> ApiResult<proto::UserHasOrgPermissionResponse> {
        let p = principal(&req)?;
        let check = parse_check(req.get_ref(), "")?;
        about_self_or_service(&p, check.user, "asking about another user")?;
        tracing::Span::current().record("organization", tracing::field::display(check.org));
        let held = self
            .state
            .membership
            .role(self.state.pool()?, check.org, check.user)
            .await?;
        Ok(answer(check.required, held))
    }

    async fn check_permissions(
        &self,
        req: Request<proto::CheckPermissionsRequest>,
    ) -> ApiResult<proto::CheckPermissionsResponse> {
        let p = principal(&req)?;
        let checks = &req.get_ref().checks;
        if checks.len() > MAX_CHECKS {
            return Err(ApiError::invalid(format!(
                "{} checks; at most {MAX_CHECKS} per call",
                checks.len()
            )));
        }
        let parsed = checks
            .iter()
            .enumerate()
            .map(|(i, c)| parse_check(c, &format!("checks[{i}].")))
            .collect::<ApiResult<Vec<_>>>()?;
        for c in &parsed {
            about_self_or_service(&p, c.user, "asking about another user")?;
        }
        let pairs: Vec<(Uuid, Uuid)> = parsed.iter().map(|c| (c.user, c.org)).collect();
        let held = self
            .state
            .membership
            .roles(self.state.pool()?, &pairs)
            .await?;
        let results = parsed
            .iter()
            .zip(held)
            .map(|(c, h)| answer(c.required, h))
            .collect();
        Ok(proto::CheckPermissionsResponse { results })
    }

    async fn create_organization(
        &self,
        req: Request<proto::CreateOrganizationRequest>,
    ) -> ApiResult<proto::Organization> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let name = r.name.trim();
        if name.is_empty() || name.len() > 200 || name.contains('\0') {
            return Err(ApiError::invalid("name is required (at most 200 bytes)"));
        }
        if !valid_slug(&r.slug) {
            return Err(ApiError::invalid(
                "slug must be 1 to 100 characters of a-z, 0-9 and -",
            ));
        }
        // A user creates organizations for themselves; empty owner means the caller.
        let owner = if r.owner_user_id.is_empty() && !p.is_service() {
            p.subject()
        } else {
            parse_uuid("owner_user_id", &r.owner_user_id)?
        };
        about_self_or_service(&p, owner, "creating an organization owned by another user")?;
        let mut db = self.state.db(&req).await?;
        let org = store::create(db.conn(), name, &r.slug, owner)
            .await?
            .ok_or_else(|| ApiError::AlreadyExists(format!("the slug {:?} is taken", r.slug)))?;
        db.finish().await?;
        self.state.membership.invalidate(org.id, owner);
        tracing::Span::current().record("organization", tracing::field::display(org.id));
        Ok(organization(org))
    }

    async fn list_user_organizations(
        &self,
        req: Request<proto::ListUserOrganizationsRequest>,
    ) -> ApiResult<proto::ListUserOrganizationsResponse> {
        let p = principal(&req)?;
        let user = parse_uuid("user_id", &req.get_ref().user_id)?;
        about_self_or_service(&p, user, "listing another user's organizations")?;
        let mut db = self.state.db(&req).await?;
        let rows = store::memberships(db.conn(), user).await?;
        db.finish().await?;
        let memberships = rows
            .into_iter()
            .map(|(o, role)| proto::Membership {
                organization: Some(organization(o)),
                role: role_to_proto(Some(role)) as i32,
            })
            .collect();
        Ok(proto::ListUserOrganizationsResponse { memberships })
    }

    async fn put_member(&self, req: Request<proto::PutMemberRequest>) -> ApiResult<proto::Member> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        let user = parse_uuid("user_id", &r.user_id)?;
        let role = role_from_proto("role", r.role)?;
        self.state.authorize(&p, org, OrgRole::Admin).await?;
        // Granting or taking the owner role takes an owner.
        let current = store::member_role(&mut *self.state.conn().await?, org, user).await?;
        if role == OrgRole::Owner || current == Some(OrgRole::Owner) {
            self.state.authorize(&p, org, OrgRole::Owner).await?;
        }
        if p.is_service() && !store::exists(&mut *self.state.conn().await?, org).await? {
            return Err(ApiError::NotFound(format!(
                "organization {org} does not exist"
            )));
        }
        // The checks above take connections of their own (authorization);
        // the write is the call's.
        let mut db = self.state.db(&req).await?;
        let m = store::put_member(db.conn(), org, user, role).await?;
        db.finish().await?;
        // This replica reads its own write at once; the others on the notification.
        self.state.membership.invalidate(org, user);
        Ok(member(m))
    }

    async fn remove_member(
        &self,
        req: Request<proto::RemoveMemberRequest>,
    ) -> ApiResult<proto::RemoveMemberResponse> {
        let p = principal(&req)?;
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        let user = parse_uuid("user_id", &r.user_id)?;
        self.state.authorize(&p, org, OrgRole::Admin).await?;
        if store::member_role(&mut *self.state.conn().await?, org, user).await?
            == Some(OrgRole::Owner)
        {
            self.state.authorize(&p, org, OrgRole::Owner).await?;
        }
        let mut db = self.state.db(&req).await?;
        let removed = store::remove_member(db.conn(), org, user).await?;
        db.finish().await?;
        self.state.membership.invalidate(org, user);
        Ok(proto::RemoveMemberResponse { removed })
    }

    async fn list_members(
        &self,
        req: Request<proto::ListMembersRequest>,
    ) -> ApiResult<proto::ListMembersResponse> {
        let p = principal(&req)?;
        let org = parse_uuid("organization_id", &req.get_ref().organization_id)?;
        self.state.authorize(&p, org, OrgRole::Viewer).await?;
        let rows = read!(&self.state, &req, |db| Ok(store::members(db, org).await?));
        Ok(proto::ListMembersResponse {
            members: rows.into_iter().map(member).collect(),
        })
    }
}

grpc_handlers! {
    OrganizationService for OrganizationsApi {
        rpc user_has_org_permission(proto::UserHasOrgPermissionRequest) -> proto::UserHasOrgPermissionResponse;
        rpc check_permissions(proto::CheckPermissionsRequest) -> proto::CheckPermissionsResponse;
        rpc create_organization(proto::CreateOrganizationRequest) -> proto::Organization;
        rpc list_user_organizations(proto::ListUserOrganizationsRequest) -> proto::ListUserOrganizationsResponse;
        rpc put_member(proto::PutMemberRequest) -> proto::Member;
        rpc remove_member(proto::RemoveMemberRequest) -> proto::RemoveMemberResponse;
        rpc list_members(proto::ListMembersRequest) -> proto::ListMembersResponse;
    }
}
