//! Reads that may lag (searches, lists, rankings): on the read replica
//! while it answers, else on the primary. A call that must see a write
//! just made sends `cache-control: no-cache` and is served by the primary.
//! A replica call that fails for want of the replica (stopped, restarting)
//! is run again on the primary: a read is safe to repeat.

use tonic::Request;

use super::request::wants_fresh_read;
use super::state::{deadline, timeout_ms, ApiState};
use crate::db::pool::CallConn;
use crate::error::ApiResult;

/// `read!(state, &req, |db| body)`: `body` (an expression over
/// `db: &mut PgConnection`, `?` allowed) as a read (see the module): its
/// value, or the error of the database that served it last.
/// `read!(state, &req, |db, spare if (want)| body)` also binds `spare:
/// Option<&mut PgConnection>`, an idle second connection of the same
/// database when `want` and one is free (HYBRID's two sides at once).
/// A macro rather than a function taking an async closure: the handlers'
/// futures must be `Send`, which a generic async closure's future cannot
/// be shown to be.
macro_rules! read {
    ($state:expr, $req:expr, |$db:ident| $body:expr) => {
        $crate::api::reads::read!($state, $req, |$db, _spare if (false)| $body)
    };
    ($state:expr, $req:expr, |$db:ident, $spare:ident if ($want:expr)| $body:expr) => {{
        let state: &$crate::api::ApiState = $state;
        let req = $req;
        let replicated = match state.replica_call(req).await {
            Some(mut conn) => {
                let mut spare = match $want {
                    true => state.replica_spare(req).await,
                    false => None,
                };
                let answered: $crate::error::ApiResult<_> = async {
                    let $db: &mut ::sqlx::PgConnection = &mut conn;
                    let $spare: Option<&mut ::sqlx::PgConnection> = spare.as_deref_mut();
                    $body
                }
                .await;
                state.replica_answered(answered, conn, spare).await?
            }
            None => None,
        };
        match replicated {
            Some(r) => r,
            None => {
                let mut call = state.db(req).await?;
                let mut spare = match $want {
                    true => state.spare_db(req).await?,
                    false => None,
                };
                let r: $crate::error::ApiResult<_> = async {
                    let $db: &mut ::sqlx::PgConnection = call.conn();
                    let $spare: Option<&mut ::sqlx::PgConnection> =
                        spare.as_mut().map(|s| s.conn());
                    $body
                }
                .await;
                let r = r?;
                if let Some(spare) = spare {
                    spare.finish().await?;
                }
                call.finish().await?;
                state.count_primary_read();
                r
            }
        }
    }};
}
pub(crate) use read;

impl ApiState {
    /// A connection of the read replica for this read, when it should and
    /// can take it (a connection could be had).
    pub(crate) async fn replica_call<T>(&self, req: &Request<T>) -> Option<CallConn> {
        let replica = self.read_replica()?;
        if !replica.state.is_up() || wants_fresh_read(req) {
            return None;
        }
        let timeout = timeout_ms(deadline(req)).ok()?;
        match replica.pool.acquire_call(timeout).await {
            Ok(conn) => Some(conn),
            Err(e) => {
                tracing::warn!(error = %e, "no connection to the read replica: the primary serves the read");
                None
            }
        }
    }

    /// An idle second connection of the read replica, if one is free.
    pub(crate) async fn replica_spare<T>(&self, req: &Request<T>) -> Option<CallConn> {
        let replica = self.read_replica()?;
        let timeout = timeout_ms(deadline(req)).ok()?;
        replica.pool.try_acquire_call(timeout).await.ok().flatten()
    }

    /// What the replica answered: the value (its transactions ended), None
    /// when the replica could not take the read (the primary then serves
    /// it), or the read's own error.
    pub(crate) async fn replica_answered<R>(
        &self,
        answered: ApiResult<R>,
        conn: CallConn,
        spare: Option<CallConn>,
    ) -> ApiResult<Option<R>> {
        let answered = match answered {
            Ok(r) => finish(spare, conn).await.map(|()| r),
            Err(e) => Err(e),
        };
        match answered {
            Ok(r) => {
                if let Some(replica) = self.read_replica() {
                    replica.counters.replica.inc();
                }
                Ok(Some(r))
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "the read replica failed a read: the primary serves it");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Counts a read the primary served, when a replica is configured.
    pub(crate) fn count_primary_read(&self) {
        if let Some(replica) = self.read_replica() {
            replica.counters.primary.inc();
        }
    }
}

/// Ends a replica read's transactions: its spare's, then its own.
async fn finish(spare: Option<CallConn>, conn: CallConn) -> ApiResult<()> {
    if let Some(spare) = spare {
        spare.finish().await?;
    }
    Ok(conn.finish().await?)
}
