//! The message writer: chat messages are committed in batches. While one
//! batch is being written, new messages queue; the next batch takes them all
//! (group commit), so throughput grows with load and an idle writer adds no
//! delay.

use actix::prelude::*;
use tokio::sync::oneshot;

use super::messages::{self, MessageRow, NewMessage};
use super::{Db, StoreError};

/// The most messages one transaction writes.
const MAX_BATCH: usize = 512;

/// What a write answers: the stored message and whether this write made it.
pub type Written = Result<(MessageRow, bool), StoreError>;

/// Batches message inserts.
pub struct MessageWriter {
    db: Db,
    queue: Vec<(NewMessage, oneshot::Sender<Written>)>,
    writing: bool,
}

impl MessageWriter {
    pub fn new(db: Db) -> Self {
        MessageWriter {
            db,
            queue: Vec::new(),
            writing: false,
        }
    }

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.queue.is_empty() {
            return;
        }
        let take = self.queue.len().min(MAX_BATCH);
        let (batch, replies): (Vec<NewMessage>, Vec<oneshot::Sender<Written>>) =
            self.queue.drain(..take).unzip();
        self.writing = true;
        let db = self.db.clone();
        let write = async move {
            db.run(move |conn| messages::insert_batch(conn, &batch))
                .await
        };
        ctx.spawn(write.into_actor(self).map(move |result, writer, ctx| {
            match result {
                Ok(rows) => {
                    for (reply, row) in replies.into_iter().zip(rows) {
                        let _ = reply.send(Ok(row));
                    }
                }
                Err(err) => {
                    log::warn!("message batch of {take} failed: {err}");
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                }
            }
            writer.writing = false;
            writer.flush(ctx);
        }));
    }
}

impl Actor for MessageWriter {
    type Context = Context<Self>;
}

/// Writes one message; the answer comes on `reply` after commit.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Write {
    pub message: NewMessage,
    pub reply: oneshot::Sender<Written>,
}

impl Handler<Write> for MessageWriter {
    type Result = ();
    fn handle(&mut self, msg: Write, ctx: &mut Context<Self>) {
        self.queue.push((msg.message, msg.reply));
        self.flush(ctx);
    }
}
