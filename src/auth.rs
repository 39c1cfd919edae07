//! Authentication: Supabase-compatible HS256 JWTs (`sub`, `role`, `exp`).
//! The interceptor puts the caller's [`Principal`] in the request
//! extensions; handlers authorize against organizations with it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use tonic::{Request, Status};
use uuid::Uuid;

use crate::db::embedded;
use crate::error::ApiError;

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Principal {
    /// `role: service_role`: a trusted backend, any organization.
    Service { subject: Uuid },
    /// `role: authenticated`: a user, only the organizations they belong to.
    User(Uuid),
}

impl Principal {
    pub fn subject(&self) -> Uuid {
        match self {
            Principal::Service { subject } => *subject,
            Principal::User(id) => *id,
        }
    }

    pub fn is_service(&self) -> bool {
        matches!(self, Principal::Service { .. })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    iat: Option<u64>,
}

pub const ROLE_AUTHENTICATED: &str = "authenticated";
pub const ROLE_SERVICE: &str = "service_role";

/// Verifies tokens signed with the shared secret.
pub struct Authenticator {
    key: DecodingKey,
    validation: Validation,
}

impl Authenticator {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        // Supabase tokens carry `aud: authenticated`; the role claim decides.
        validation.validate_aud = false;
        validation.leeway = 30;
        Authenticator {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// The principal of a bearer token.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let data = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| ApiError::Unauthenticated(format!("invalid token: {e}")))?;
        let sub = Uuid::parse_str(&data.claims.sub)
            .map_err(|_| ApiError::Unauthenticated("invalid token: `sub` is not a UUID".into()))?;
        match data.claims.role.as_str() {
            ROLE_AUTHENTICATED => Ok(Principal::User(sub)),
            ROLE_SERVICE => Ok(Principal::Service { subject: sub }),
            other => Err(ApiError::Unauthenticated(format!(
                "invalid token: unknown role {other:?} (expected authenticated or service_role)"
            ))),
        }
    }

    /// A tonic interceptor that authenticates every call of a service.
    pub fn interceptor(
        self: &Arc<Self>,
    ) -> impl Fn(Request<()>) -> Result<Request<()>, Status> + Clone {
        let auth = Arc::clone(self);
        move |mut req: Request<()>| {
            let principal = auth.authenticate(&req).map_err(Status::from)?;
            req.extensions_mut().insert(principal);
            Ok(req)
        }
    }

    fn authenticate<T>(&self, req: &Request<T>) -> Result<Principal, ApiError> {
        let value = req.metadata().get("authorization").ok_or_else(|| {
            ApiError::Unauthenticated("missing `authorization: Bearer <JWT>` metadata".into())
        })?;
        let value = value
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("malformed authorization metadata".into()))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or_else(|| {
                ApiError::Unauthenticated("authorization metadata must be `Bearer <JWT>`".into())
            })?;
        self.verify(token.trim())
    }
}

/// A token for `user` with `role`, valid for `ttl_secs`.
pub fn mint(secret: &[u8], user: Uuid, role: &str, ttl_secs: u64) -> anyhow::Result<String> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = Claims {
        sub: user.to_string(),
        role: role.to_string(),
        exp: now + ttl_secs,
        iat: Some(now),
    };
    Ok(encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

/// Where the HS256 secret comes from, for `serve` and `token` alike.
pub struct SecretSource<'a> {
    /// AFFINITY_JWT_SECRET (or --jwt-secret).
    pub configured: Option<&'a str>,
    /// With a DATABASE_URL the secret must be configured: it is the auth
    /// provider's.
    pub database_url: Option<&'a str>,
    /// Otherwise (embedded mode) the secret kept in this data directory.
    pub data_dir: PathBuf,
}

/// The JWT secret in effect: configured, else (embedded mode only) the one
/// kept in the data directory, generated there on first use when
/// `generate` (`serve`), else only read (`token`, which refuses when
/// `serve` never ran).
pub fn jwt_secret(source: &SecretSource<'_>, generate: bool) -> anyhow::Result<String> {
    match (source.configured, source.database_url) {
        (Some(s), _) if !s.is_empty() => Ok(s.to_string()),
        (_, Some(_)) => anyhow::bail!(
            "AFFINITY_JWT_SECRET (or --jwt-secret) is required when DATABASE_URL is set: \
             the HS256 secret your auth provider signs tokens with"
        ),
        (_, None) if generate => embedded::jwt_secret(&source.data_dir),
        (_, None) => embedded::read_jwt_secret(&source.data_dir)?.ok_or_else(|| {
            anyhow::anyhow!(
                "no secret: set AFFINITY_JWT_SECRET, or start `affinity serve` once so that it generates {}",
                embedded::secret_path(&source.data_dir).display()
            )
        }),
    }
}

/// The principal the interceptor stored in a request.
pub fn principal<T>(req: &Request<T>) -> Result<Principal, ApiError> {
    req.extensions()
        .get::<Principal>()
        .copied()
        .ok_or_else(|| ApiError::Unauthenticated("missing credentials".into()))
}
