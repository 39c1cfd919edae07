//! ExportAiContext: every matching entry, oldest first, with its feedback,
//! streamed from one snapshot. A task fetches a batch at a time from a
//! cursor and hands whole batches to a bounded channel: a slow client holds
//! the task (and the memory) at one batch plus the channel's; a client that
//! goes away ends the task at its next send, and its transaction with it.

use std::collections::HashMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::{Request, Status};
use uuid::Uuid;

use super::super::{deadline, parse_uuid, principal, CallDb};
use super::entry::{entry, occurred_range, optional_session, optional_uuid};
use super::feedback::by_entry;
use super::AiContextApi;
use crate::error::{ApiError, ApiResult};
use crate::proto;
use crate::store::ai_context::export::{self, ExportFilter};
use crate::store::ai_context::{self as store, feedback};
use crate::store::organizations::OrgRole;
use crate::transport::deadline::Deadline;

/// Entries per FETCH at most: large enough to amortize the round trips
/// (the FETCH and the batch's feedback).
const BATCH: usize = 1024;
/// Bytes of text a batch aims at: after each batch the next one is sized
/// from the entries' mean size, so that large entries make small batches
/// and memory stays near three batches of this size whatever the entries.
const BATCH_BYTES: usize = 4 << 20;
/// What an entry weighs beyond its texts (ids, time, metadata, message).
const ENTRY_OVERHEAD: usize = 256;
/// Batches sent and not yet taken by the client's stream: the next batch is
/// fetched while the client takes the last one. Whole batches cross the
/// channel, not entries: one wake-up per batch.
const CHANNEL: usize = 2;

/// A batch as the database gave it: its entries and their feedback.
type Batch = (Vec<store::Entry>, HashMap<Uuid, Vec<proto::AiFeedback>>);

/// The client's side of the channel, entry by entry. Entries become
/// messages here, in the response's task, so that the task on the database
/// fetches the next batch meanwhile.
pub struct ExportStream {
    rx: mpsc::Receiver<Result<Batch, Status>>,
    batch: std::vec::IntoIter<store::Entry>,
    feedback: HashMap<Uuid, Vec<proto::AiFeedback>>,
}

impl Stream for ExportStream {
    type Item = Result<proto::AiContextEntry, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(e) = self.batch.next() {
                let f = self.feedback.remove(&e.id).unwrap_or_default();
                return Poll::Ready(Some(Ok(entry(e, 0.0, f))));
            }
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(Ok((batch, feedback)))) => {
                    self.batch = batch.into_iter();
                    self.feedback = feedback;
                }
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl AiContextApi {
    pub(super) async fn export_ai_context(
        &self,
        req: Request<proto::ExportAiContextRequest>,
    ) -> ApiResult<ExportStream> {
        let p = principal(&req)?;
        let deadline = deadline(&req);
        let r = req.get_ref();
        let org = parse_uuid("organization_id", &r.organization_id)?;
        let (occurred_after, occurred_before) =
            occurred_range(r.occurred_after.as_ref(), r.occurred_before.as_ref())?;
        let filter = ExportFilter {
            user_id: optional_uuid("user_id", &r.user_id)?,
            session_id: optional_session("session_id", r.session_id.clone())?,
            occurred_after,
            occurred_before,
        };
        self.state.authorize(&p, org, OrgRole::Viewer).await?;
        // Opened before the reply, so that a database that is down answers
        // UNAVAILABLE as the call's status, not as a broken stream.
        let mut db = self.state.snapshot_db(deadline).await?;
        export::open(db.conn(), org, &filter).await?;
        let (tx, rx) = mpsc::channel(CHANNEL);
        tokio::spawn(pump(db, org, tx, deadline));
        Ok(ExportStream {
            rx,
            batch: Vec::new().into_iter(),
            feedback: HashMap::new(),
        })
    }
}

type Sender = mpsc::Sender<Result<Batch, Status>>;

/// Runs the export to its end, the client's leaving, or the deadline.
async fn pump(mut db: CallDb, org: Uuid, tx: Sender, deadline: Option<Deadline>) {
    let run = send_all(&mut db, org, &tx);
    let outcome = match deadline {
        Some(d) => tokio::time::timeout_at(d.0, run).await.unwrap_or_else(|_| {
            Err(ApiError::DeadlineExceeded(
                "the deadline passed during the export; narrow it (by time or session) \
                     or allow longer"
                    .into(),
            ))
        }),
        None => run.await,
    };
    let outcome = match outcome {
        Ok(true) => db.finish().await.map(|()| true),
        other => {
            // Rolled back and back in the pool before the client hears why.
            drop(db);
            other
        }
    };
    if let Err(e) = outcome {
        let _ = tx.send(Err(Status::from(e))).await;
    }
}

/// Sends every entry of the cursor; false when the client went away.
async fn send_all(db: &mut CallDb, org: Uuid, tx: &Sender) -> ApiResult<bool> {
    let mut size = BATCH;
    loop {
        let batch = export::next(db.conn(), size).await?;
        if batch.is_empty() {
            return Ok(true);
        }
        size = next_size(&batch);
        let ids: Vec<Uuid> = batch.iter().map(|e| e.id).collect();
        let feedback = by_entry(feedback::of_entries(db.conn(), org, &ids).await?);
        if tx.send(Ok((batch, feedback))).await.is_err() {
            return Ok(false);
        }
    }
}

/// The next FETCH's size: [`BATCH_BYTES`] over this batch's mean entry,
/// between 1 and [`BATCH`].
fn next_size(batch: &[store::Entry]) -> usize {
    let text = |t: &Option<String>| t.as_ref().map_or(0, String::len);
    let bytes: usize = batch
        .iter()
        .map(|e| ENTRY_OVERHEAD + text(&e.context_summary) + text(&e.ai_response))
        .sum();
    let mean = bytes / batch.len().max(1);
    (BATCH_BYTES / mean.max(1)).clamp(1, BATCH)
}
