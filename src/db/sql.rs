//! The service's statements: sqlx's `query`, `query_as` and `query_scalar`,
//! prepared as named (cached per connection) statements on a direct
//! database, and as unnamed ones once the process works behind a
//! transaction-mode pooler ([`use_unnamed_statements`]): there a named
//! statement prepared on one server connection is missing on the next (or,
//! under the same name, already there), while an unnamed one lives exactly
//! as long as the transaction that runs it.

use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::{Query, QueryAs, QueryScalar};
use sqlx::{FromRow, Postgres};

/// One-way: a process that talks to a pooler once keeps unnamed statements
/// (which work on a direct database too, one round trip dearer).
static UNNAMED: AtomicBool = AtomicBool::new(false);

/// Every statement from now on is prepared unnamed.
pub fn use_unnamed_statements() {
    UNNAMED.store(true, Ordering::Relaxed);
}

fn persistent() -> bool {
    !UNNAMED.load(Ordering::Relaxed)
}

/// `sqlx::query`, named or unnamed as the process works.
pub fn query(sql: &str) -> Query<'_, Postgres, PgArguments> {
    sqlx::query(sql).persistent(persistent())
}

/// `sqlx::query_as`, named or unnamed as the process works.
pub fn query_as<'q, O>(sql: &'q str) -> QueryAs<'q, Postgres, O, PgArguments>
where
    O: for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_as::<Postgres, O>(sql).persistent(persistent())
}

/// `sqlx::query_scalar`, named or unnamed as the process works.
pub fn query_scalar<'q, O>(sql: &'q str) -> QueryScalar<'q, Postgres, O, PgArguments>
where
    (O,): for<'r> FromRow<'r, PgRow>,
{
    sqlx::query_scalar::<Postgres, O>(sql).persistent(persistent())
}
