//! One error type for the whole service, mapped to gRPC status codes in one
//! place (the contract's error table): the handlers' errors, the database's
//! SQLSTATEs, and the refusals tonic makes before any handler runs. Messages
//! say what to do; nothing internal (SQL, connection strings, stack traces)
//! reaches the client.

use tonic::{Code, Response, Status};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// Logged in full; the client sees a generic message.
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// What tonic said reading a client's stream (a message that does not
    /// decode, a cancelled call): passed on as it is.
    #[error("{}", .0.message())]
    Stream(Box<Status>),
}

impl From<Status> for ApiError {
    fn from(status: Status) -> Self {
        ApiError::Stream(Box::new(status))
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::InvalidArgument(msg.into())
    }

    /// Whether this maps to UNAVAILABLE: the database could not take the
    /// call at all (another database may).
    pub fn is_unavailable(&self) -> bool {
        match self {
            ApiError::Unavailable(_) => true,
            ApiError::Database(e) => is_unavailable_error(e),
            _ => false,
        }
    }

    /// The database does not answer (the probe says so, or a call found out).
    pub fn database_unavailable() -> Self {
        ApiError::Unavailable(DATABASE_UNAVAILABLE.into())
    }

    /// The error of a write into tenant tables. Naming an organization that
    /// does not exist fails on an `organization_id` foreign key: only
    /// service_role gets that far (users are authorized as members first),
    /// and it learns NOT_FOUND.
    pub fn from_write(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e {
            let constraint = constraint_of(db.as_ref());
            let constraint = constraint.as_deref();
            let on_organization = constraint.is_some_and(|c| c.ends_with("organization_id_fkey"));
            if db.code().as_deref() == Some("23503") && on_organization {
                return ApiError::NotFound("the organization does not exist".into());
            }
            // The parent key holds the organization: one message whether the
            // parent does not exist or is another organization's (no probing
            // for other organizations' entries).
            if db.code().as_deref() == Some("23503")
                && constraint == Some("ai_context_logs_parent_fkey")
            {
                return ApiError::invalid("parent_id names no entry of this organization");
            }
            // Feedback's entry key holds the organization too: NOT_FOUND for
            // members (the contract's table), who passed authorization.
            if db.code().as_deref() == Some("23503")
                && constraint == Some(crate::store::ai_context::feedback::ENTRY_KEY)
            {
                return ApiError::NotFound("entry_id names no entry of this organization".into());
            }
        }
        ApiError::from(e)
    }
}

/// The constraint a database error names: its own field, or, where Citus
/// relays a worker's error (without its fields), the name its message
/// quotes, less the shard id Citus appends to a shard's constraints.
fn constraint_of(db: &dyn sqlx::error::DatabaseError) -> Option<String> {
    if let Some(c) = db.constraint() {
        return Some(c.to_owned());
    }
    let (_, quoted) = db.message().split_once(" constraint \"")?;
    let (name, _) = quoted.split_once('"')?;
    Some(match name.rsplit_once('_') {
        Some((table, shard)) if shard.bytes().all(|b| b.is_ascii_digit()) => table.to_owned(),
        _ => name.to_owned(),
    })
}

/// A handler's answer, converted to tonic's types once.
pub fn respond<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

const DATABASE_UNAVAILABLE: &str = "the database is unavailable; retry shortly";

/// SQLSTATEs raised by the schema's own functions and triggers.
const LAST_OWNER: &str = "AF001";
const INTEGRITY_FAILED: &str = "AF002";

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Status {
        match err {
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::Unavailable(m) => Status::unavailable(m),
            ApiError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error; it has been logged")
            }
            ApiError::Database(e) => database_status(&e),
            ApiError::Stream(status) => *status,
        }
    }
}

/// Whether the database could not take the call at all: gone, refusing,
/// shutting down, out of connections (UNAVAILABLE to clients).
fn is_unavailable_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            code.starts_with("08") || code.starts_with("57P") || code == "53300"
        }
        _ => false,
    }
}

fn database_status(err: &sqlx::Error) -> Status {
    if is_unavailable_error(err) {
        tracing::warn!(error = %err, "database unavailable");
        return Status::unavailable(DATABASE_UNAVAILABLE);
    }
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // Raised by the schema's functions with a message meant for people.
                LAST_OWNER => Status::new(Code::FailedPrecondition, db.message().to_string()),
                INTEGRITY_FAILED => Status::new(Code::FailedPrecondition, db.message().to_string()),
                "22023" => Status::invalid_argument(db.message().to_string()),
                "23505" => Status::already_exists("that already exists"),
                "40001" | "40P01" => Status::aborted("conflicting concurrent write; retry"),
                "57014" => Status::deadline_exceeded(
                    "the query was cancelled: deadline or statement timeout",
                ),
                _ => {
                    tracing::error!(error = %err, sqlstate = %code, "database error");
                    Status::internal("internal error; it has been logged")
                }
            }
        }
        _ => {
            tracing::error!(error = %err, "database error");
            Status::internal("internal error; it has been logged")
        }
    }
}

/// A way tonic refuses a request before any handler runs, and what the
/// contract says instead. Such refusals are trailers-only responses: the
/// status is in the headers, its message percent-encoded.
struct Refusal {
    tonic_code: &'static str,
    message_is: fn(&str) -> bool,
    code: &'static str,
    message: &'static str,
}

const REFUSALS: [Refusal; 2] = [
    // Over the decoding limit: OUT_OF_RANGE; the contract says RESOURCE_EXHAUSTED.
    Refusal {
        tonic_code: "11",
        message_is: |m| {
            m.contains("message%20length%20too%20large") || m.contains("message length too large")
        },
        code: "8",
        message: "request%20message%20too%20large%20(AFFINITY_MAX_MESSAGE_BYTES)",
    },
    // Not valid protobuf (e.g. a metadata Struct nested past prost's
    // recursion limit of 100): INTERNAL, but it is the client's fault:
    // INVALID_ARGUMENT, without echoing the decoder's path.
    Refusal {
        tonic_code: "13",
        message_is: |m| {
            m.starts_with("failed%20to%20decode%20Protobuf%20message")
                || m.starts_with("failed to decode Protobuf message")
        },
        code: "3",
        message:
            "request%20is%20not%20valid%20protobuf%20(or%20nested%20deeper%20than%20100%20levels)",
    },
];

/// Rewrites tonic's own refusals ([`REFUSALS`]) into the contract's codes,
/// in one look at the headers per response (a response layer of the
/// server). `tests/tonic_refusals.rs` pins the wording it matches.
pub fn refusals_in_contract_codes<B>(mut res: http::Response<B>) -> http::Response<B> {
    let headers = res.headers_mut();
    let Some(status) = headers.get("grpc-status").and_then(|v| v.to_str().ok()) else {
        return res;
    };
    let message = headers
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let rewrite = REFUSALS
        .iter()
        .find(|r| r.tonic_code == status && (r.message_is)(message));
    if let Some(r) = rewrite {
        headers.insert("grpc-status", http::HeaderValue::from_static(r.code));
        headers.insert("grpc-message", http::HeaderValue::from_static(r.message));
    }
    res
}
