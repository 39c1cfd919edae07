//! One error type for the whole service, mapped to gRPC status codes in one
//! place (the contract's error table). Messages say what to do; nothing
//! internal (SQL, connection strings, stack traces) reaches the client.

use tonic::{Code, Status};

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
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        ApiError::InvalidArgument(msg.into())
    }
}

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
        }
    }
}

fn database_status(err: &sqlx::Error) -> Status {
    let unavailable = || Status::unavailable("the database is unavailable; retry shortly");
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => {
            tracing::warn!(error = %err, "database unavailable");
            unavailable()
        }
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
                c if c.starts_with("08") || c.starts_with("57P") || c == "53300" => {
                    tracing::warn!(error = %err, "database unavailable");
                    unavailable()
                }
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
