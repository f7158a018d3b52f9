//! Group commit: rows are written in batches. While one batch is being
//! written, new rows queue; the next batch takes them all, so throughput
//! grows with load and an idle writer adds no delay. Each kind of row (chat
//! messages, bids) has its own writer.

use actix::prelude::*;
use diesel::PgConnection;
use tokio::sync::oneshot;

use super::db::Kept;
use super::{Db, StoreError};

/// The most rows one transaction writes.
const MAX_BATCH: usize = 512;

/// A kind of row written in batches.
pub trait Batch: Unpin + 'static {
    type Row: Send + Unpin + 'static;
    type Written: Send + Unpin + 'static;
    /// Writes `rows` in the writer's transaction (the writer begins and
    /// commits it); one answer per row, in order.
    fn write(conn: &mut PgConnection, rows: &[Self::Row])
        -> Result<Vec<Self::Written>, StoreError>;
}

/// What a write answers.
pub type Answer<B> = Result<<B as Batch>::Written, StoreError>;

/// What a write of several rows answers: one answer per row, in order.
pub type Answers<B> = Result<Vec<<B as Batch>::Written>, StoreError>;

/// Batches writes of one kind.
pub struct Writer<B: Batch> {
    db: Db,
    /// The connection of the last batch that committed: the next batch
    /// needs no checkout from the pool (see [`Db::transaction_kept`]).
    kept: Option<Kept>,
    /// Rows waiting for the next batch, each message's with its answer.
    queue: Vec<Write<B>>,
    writing: bool,
    /// Answered when the queue is empty and nothing is being written.
    drained: Vec<oneshot::Sender<()>>,
}

impl<B: Batch> Writer<B> {
    pub fn new(db: Db) -> Self {
        Writer {
            db,
            kept: None,
            queue: Vec::new(),
            writing: false,
            drained: Vec::new(),
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.writing {
            return;
        }
        if self.queue.is_empty() {
            for waiter in self.drained.drain(..) {
                let _ = waiter.send(());
            }
            return;
        }
        // Whole entries, until MAX_BATCH rows or more: an entry is never
        // split over two transactions (its answer is one).
        let mut counted = 0;
        let entries = self
            .queue
            .iter()
            .take_while(|queued| {
                if counted >= MAX_BATCH {
                    return false;
                }
                counted += queued.rows.len();
                true
            })
            .count();
        let mut rows = Vec::with_capacity(counted);
        let mut replies = Vec::with_capacity(entries);
        for queued in self.queue.drain(..entries) {
            replies.push((queued.rows.len(), queued.reply));
            rows.extend(queued.rows);
        }
        let take = rows.len();
        self.writing = true;
        let db = self.db.clone();
        let kept = self.kept.take();
        let write = async move {
            db.transaction_kept(kept, move |conn| B::write(conn, &rows))
                .await
        };
        ctx.spawn(
            write
                .into_actor(self)
                .map(move |(kept, result), writer, ctx| {
                    writer.kept = kept;
                    match result {
                        Ok(written) => {
                            let mut written = written.into_iter();
                            for (count, reply) in replies {
                                let rows = written.by_ref().take(count).collect();
                                let _ = reply.send(Ok(rows));
                            }
                        }
                        Err(err) => {
                            log::warn!("batch of {take} failed: {err}");
                            for (_, reply) in replies {
                                let _ = reply.send(Err(err.clone()));
                            }
                        }
                    }
                    writer.writing = false;
                    writer.flush(ctx);
                }),
        );
    }
}

impl<B: Batch> Actor for Writer<B> {
    type Context = Context<Self>;
}

/// Writes rows (one, or several decided together) in one transaction,
/// with others queued meanwhile; one answer for all of them comes on
/// `reply` after commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Write<B: Batch> {
    pub rows: Vec<B::Row>,
    pub reply: oneshot::Sender<Answers<B>>,
}

impl<B: Batch> Handler<Write<B>> for Writer<B> {
    type Result = ();
    fn handle(&mut self, msg: Write<B>, ctx: &mut Context<Self>) {
        self.queue.push(msg);
        self.flush(ctx);
    }
}

/// Answers once everything queued so far is written (a node stopping).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain(pub oneshot::Sender<()>);

impl<B: Batch> Handler<Drain> for Writer<B> {
    type Result = ();
    fn handle(&mut self, msg: Drain, ctx: &mut Context<Self>) {
        self.drained.push(msg.0);
        self.flush(ctx);
    }
}

/// Waits until `writer` has written everything queued so far.
pub async fn drain<B: Batch>(writer: &Addr<Writer<B>>) {
    let (reply, done) = oneshot::channel();
    writer.do_send(Drain(reply));
    let _ = done.await;
}

/// Writes one row through `writer` and waits for its commit.
pub async fn write<B: Batch>(writer: &Addr<Writer<B>>, row: B::Row) -> Answer<B>
where
    B::Row: Send,
{
    write_all(writer, vec![row])
        .await?
        .pop()
        .ok_or_else(|| StoreError::internal("the writer answered no row"))
}

/// Writes several rows through `writer`, in one transaction, and waits for
/// its commit: one answer per row, in order (a batch of bids decided
/// together: one message and one wake for all of them).
pub async fn write_all<B: Batch>(writer: &Addr<Writer<B>>, rows: Vec<B::Row>) -> Answers<B>
where
    B::Row: Send,
{
    let (reply, answer) = oneshot::channel();
    writer.do_send(Write { rows, reply });
    answer
        .await
        .map_err(|err| StoreError::internal_by("writer stopped", err))?
}
