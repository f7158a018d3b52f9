//! Room events out of a node: encoded once (all but the offset, which the
//! broker assigns) and published through [`Events::publish`], in order. One
//! task publishes for the whole node, batching whatever has queued up (on
//! Redis, one script call for the whole batch), so events leave in the
//! order they were emitted. What the broker refuses is tried again a few
//! times; what still fails is reported to the requests waiting on it
//! ([`Fanout::emit_published`]).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::{Broker, Events, LogLimits, Publication};
use crate::ids::{ListingId, RoomKey, UserId};
use crate::protocol::events::ServerEvent;
use crate::store::StoreError;

/// Events one batch publishes at most.
const MAX_BATCH: usize = 256;

struct Publish {
    /// Where it stands among everything this node queued.
    seq: u64,
    event: Publication,
}

/// What the publisher is asked to do, in order.
enum Queued {
    Publish(Publish),
    /// Answered once everything queued before it is published: true when
    /// nothing queued since `since` failed to be.
    Barrier {
        since: u64,
        reply: oneshot::Sender<bool>,
    },
    /// Several events, then a barrier for everything before it, queued
    /// with one send (one wake of the publisher).
    Several {
        events: Vec<Publish>,
        reply: oneshot::Sender<bool>,
    },
}

/// How often a publication the broker refused is tried again, and the pause before
/// each try: a reconnection, a failover or a slot migration takes a moment.
const RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_millis(500),
];

/// Sends server events to rooms on every node; cheap to clone.
#[derive(Clone)]
pub struct Fanout {
    queue: mpsc::UnboundedSender<Queued>,
    /// The `seq` of the next event queued.
    next_seq: Arc<AtomicU64>,
}

impl Fanout {
    /// Starts the node's publisher on the current runtime.
    pub fn start(broker: Broker, limits: LogLimits) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        actix_web::rt::spawn(publish(broker, limits, rx));
        Fanout {
            queue,
            next_seq: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Emits `event` to every member of `room`.
    pub fn emit(&self, room: RoomKey, event: ServerEvent) {
        self.send(room, event, None, None);
    }

    /// Emits one event to several rooms: a connection in more than one of
    /// them gets it once, as Socket.IO's `to(a).to(b).emit()` does.
    pub fn emit_to(&self, rooms: &[RoomKey], event: ServerEvent) {
        self.emit_as(rand::random(), rooms, event, None);
    }

    /// [`Fanout::emit_to`] with a given emission id, and the listing
    /// version a listing event shows: a notice published again under the
    /// same id is dropped by the connections that had it.
    pub fn emit_as(
        &self,
        emission: u64,
        rooms: &[RoomKey],
        event: ServerEvent,
        version: Option<i64>,
    ) {
        for publication in publications(emission, rooms, &event, version) {
            self.queue_publication(publication);
        }
    }

    /// Emits to every member of `room` but the connections of `except`.
    pub fn emit_except(&self, room: RoomKey, event: ServerEvent, except: Option<UserId>) {
        self.send(room, event, except, None);
    }

    /// Emits a listing event that shows the listing at `version`.
    pub fn emit_listing(&self, listing: ListingId, event: ServerEvent, version: i64) {
        self.send(RoomKey::Listing(listing), event, None, Some(version));
    }

    /// Emits each event to its rooms (as [`Fanout::emit_to`]) and resolves
    /// as [`Fanout::published`] does, with one send to the publisher for all
    /// of them instead of one per room and one for the barrier: a chat
    /// message's three publications and its ack's wait.
    pub async fn emit_all_published(&self, emissions: Vec<(&[RoomKey], ServerEvent)>) {
        let mut events = Vec::new();
        for (rooms, event) in emissions {
            let each = publications(rand::random(), rooms, &event, None);
            events.extend(each.map(|publication| self.numbered(publication)));
        }
        let (reply, done) = oneshot::channel();
        if self.queue.send(Queued::Several { events, reply }).is_ok() {
            let _ = done.await;
        }
    }

    /// Emits each event to its room, in this order, with one send to the
    /// publisher for all of them (a batch of bids' `bid:new`, `bid:outbid`
    /// and `auction:extended`); what it returns resolves once they are
    /// published, as [`Fanout::published`] does. They are queued when this
    /// is called, not when the answer is awaited, so calls made in turn
    /// publish in turn.
    pub fn emit_several(
        &self,
        events: Vec<(RoomKey, ServerEvent)>,
    ) -> impl Future<Output = ()> + use<> {
        let events = events
            .into_iter()
            .map(|(room, event)| {
                self.numbered(Publication {
                    room,
                    emission: rand::random(),
                    head: event.head(),
                    except: None,
                    version: None,
                })
            })
            .collect();
        let (reply, done) = oneshot::channel();
        let queued = self.queue.send(Queued::Several { events, reply });
        async move {
            if queued.is_ok() {
                let _ = done.await;
            }
        }
    }

    /// Resolves once every event emitted before the call is published, so
    /// that a request is answered only after the events it caused left.
    /// Those that could not be are logged; see [`Fanout::emit_published`].
    pub async fn published(&self) {
        let _ = self.barrier(u64::MAX).await;
    }

    /// Emits `event` to every member of `room` and resolves once it is
    /// published; fails when it could not be, for a request that only
    /// emits and must not be acknowledged then. It may also fail for
    /// another request's event emitted meanwhile; a retry then repeats the
    /// event.
    pub async fn emit_published(
        &self,
        room: RoomKey,
        event: ServerEvent,
    ) -> Result<(), StoreError> {
        self.all_published(|fanout| fanout.emit(room, event)).await
    }

    /// Runs `emit` and resolves once what it emitted is published; fails
    /// as [`Fanout::emit_published`] does.
    pub async fn all_published(&self, emit: impl FnOnce(&Self)) -> Result<(), StoreError> {
        let since = self.next_seq.load(Ordering::Relaxed);
        emit(self);
        match self.barrier(since).await {
            true => Ok(()),
            false => Err(StoreError::unavailable(
                "broker: the event could not be published",
            )),
        }
    }

    async fn barrier(&self, since: u64) -> bool {
        let (reply, done) = oneshot::channel();
        if self.queue.send(Queued::Barrier { since, reply }).is_err() {
            return false;
        }
        done.await.unwrap_or(false)
    }

    fn send(
        &self,
        room: RoomKey,
        event: ServerEvent,
        except: Option<UserId>,
        version: Option<i64>,
    ) {
        self.queue_publication(Publication {
            room,
            emission: rand::random(),
            head: event.head(),
            except,
            version,
        });
    }

    fn queue_publication(&self, event: Publication) {
        let _ = self.queue.send(Queued::Publish(self.numbered(event)));
    }

    /// `event` with its place among everything this node queues.
    fn numbered(&self, event: Publication) -> Publish {
        Publish {
            seq: self.next_seq.fetch_add(1, Ordering::Relaxed),
            event,
        }
    }
}

async fn publish(broker: Broker, limits: LogLimits, mut rx: mpsc::UnboundedReceiver<Queued>) {
    // The highest `seq` of an event that could not be published.
    let mut failed_upto: Option<u64> = None;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut pending = Vec::new();
        let mut barriers = Vec::new();
        for queued in batch {
            match queued {
                Queued::Publish(event) => pending.push(event),
                Queued::Barrier { since, reply } => barriers.push((since, reply)),
                Queued::Several { events, reply } => {
                    pending.extend(events);
                    barriers.push((u64::MAX, reply));
                }
            }
        }
        let mut error = String::new();
        for pause in std::iter::once(Duration::ZERO).chain(RETRY_PAUSES) {
            if pending.is_empty() {
                break;
            }
            tokio::time::sleep(pause).await;
            (pending, error) = send(&broker, limits, pending).await;
        }
        if !pending.is_empty() {
            log::warn!("{} room events not published: {error}", pending.len());
            let worst = pending.iter().map(|event| event.seq).max();
            failed_upto = failed_upto.max(worst);
        }
        for (since, reply) in barriers {
            let _ = reply.send(failed_upto.is_none_or(|failed| failed < since));
        }
    }
}

/// Publishes events in one batch; gives back those the broker refused,
/// and why.
async fn send(broker: &Broker, limits: LogLimits, events: Vec<Publish>) -> (Vec<Publish>, String) {
    let (seqs, batch): (Vec<u64>, Vec<Publication>) =
        events.into_iter().map(|p| (p.seq, p.event)).unzip();
    let answers = broker.publish(&batch, limits).await;
    let mut refused = Vec::new();
    let mut error = String::new();
    for ((seq, event), answer) in seqs.into_iter().zip(batch).zip(answers) {
        if let Err(err) = answer {
            error = err.to_string();
            refused.push(Publish { seq, event });
        }
    }
    (refused, error)
}

/// One event's publication to each of `rooms`, under one emission id (a
/// connection in several of them takes it once), encoded once.
fn publications<'a>(
    emission: u64,
    rooms: &'a [RoomKey],
    event: &ServerEvent,
    version: Option<i64>,
) -> impl Iterator<Item = Publication> + 'a {
    let head = event.head();
    rooms.iter().map(move |room| Publication {
        room: room.clone(),
        emission,
        head: head.clone(),
        except: None,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::memory::MemoryBroker;
    use crate::broker::History;
    use crate::ids::{BookingId, MessageId};

    #[actix_web::test]
    async fn events_emitted_all_at_once_are_in_their_logs_when_it_resolves() {
        // A chat message's ack waits on this: whoever joins a room after
        // the ack must find the events in the room's log.
        let broker = Broker::Memory(MemoryBroker::new());
        let limits = LogLimits {
            ttl: Duration::from_secs(60),
            max_len: 100,
        };
        let fanout = Fanout::start(broker.clone(), limits);
        let booking = BookingId::from_db("b1".to_owned());
        let users = ["u1", "u2"].map(|u| RoomKey::User(UserId::from_db(u.to_owned())));
        let activity = ServerEvent::BookingActivity {
            booking_id: booking.clone(),
            message_id: MessageId(1),
            sender_id: UserId::from_db("u1".to_owned()),
        };
        let typing = ServerEvent::Typing {
            booking_id: booking.clone(),
            user_id: UserId::from_db("u1".to_owned()),
            typing: true,
        };
        let room = [RoomKey::Booking(booking)];
        fanout
            .emit_all_published(vec![(&room, typing.clone()), (&users, activity.clone())])
            .await;
        let logged = |room: RoomKey| {
            let broker = broker.clone();
            async move {
                match broker.since(&room, 0).await {
                    Ok(History::Events(events)) => events,
                    other => panic!("{other:?}"),
                }
            }
        };
        let in_booking = logged(room[0].clone()).await;
        assert_eq!(in_booking.len(), 1);
        assert!(in_booking[0].frame.starts_with(&typing.head()));
        // One emission for both user rooms: a connection in both takes it once.
        let (first, second) = (
            logged(users[0].clone()).await,
            logged(users[1].clone()).await,
        );
        assert_eq!((first.len(), second.len()), (1, 1));
        assert!(first[0].frame.starts_with(&activity.head()));
        assert_eq!(first[0].emission, second[0].emission);
        assert_ne!(first[0].emission, in_booking[0].emission);
    }
}
