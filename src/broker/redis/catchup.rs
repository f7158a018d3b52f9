//! Between the subscriber and the node: passes each room's events on once,
//! in offset order, and catches a room up from its log when the subscriber
//! followed its channel again after a dropped connection, holding the live
//! events that arrive meanwhile until the log's are passed on.

use std::collections::HashMap;

use actix::Recipient;
use tokio::sync::mpsc;

use crate::broker::{Arrival, Events, History, RoomEvent};
use crate::ids::RoomKey;
use crate::store::StoreError;

/// What the subscriber hands on, in the order it happened.
#[derive(Debug)]
pub(super) enum Relayed {
    /// An event that arrived on a followed room's channel.
    Live(RoomEvent),
    /// A room's channel was followed again after the connection dropped:
    /// the room may have missed its events after offset `after`.
    Resumed { room: RoomKey, after: u64 },
    /// The room is no longer followed.
    Dropped(RoomKey),
}

/// Starts the stage on the current runtime; it reads logs from `log` and
/// hands arrivals to `sink`.
pub(super) fn start<E>(log: E, sink: Recipient<Arrival>) -> mpsc::UnboundedSender<Relayed>
where
    E: Events + Clone + Send + Sync + 'static,
{
    let (relayed, rx) = mpsc::unbounded_channel();
    let stage = Stage {
        log,
        sink,
        rooms: HashMap::new(),
        next_generation: 0,
    };
    actix_web::rt::spawn(stage.run(rx));
    relayed
}

struct Stage<E> {
    log: E,
    sink: Recipient<Arrival>,
    rooms: HashMap<RoomKey, Followed>,
    next_generation: u64,
}

/// A followed room.
struct Followed {
    /// Tells a log read for an earlier following of the room from one for
    /// this one.
    generation: u64,
    /// The offset of the last event passed on, so that one arriving twice
    /// (live and from the log) is passed once.
    delivered: u64,
    /// Set while the room is caught up from its log.
    catch_up: Option<CatchUp>,
}

/// A room being caught up.
struct CatchUp {
    /// Live events that arrived meanwhile, passed on after the log's.
    arrived: Vec<RoomEvent>,
    /// Another drop happened meanwhile: catch up again after this offset.
    again: Option<u64>,
}

/// What a log read found.
struct Read {
    room: RoomKey,
    generation: u64,
    after: u64,
    history: Result<History, StoreError>,
}

impl Followed {
    /// Passes an event on unless it already was.
    fn pass(&mut self, event: RoomEvent, sink: &Recipient<Arrival>) {
        if event.offset <= self.delivered {
            return;
        }
        self.delivered = event.offset;
        sink.do_send(Arrival::Event(event));
    }
}

impl<E: Events + Clone + Send + Sync + 'static> Stage<E> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Relayed>) {
        let (reads, mut read) = mpsc::unbounded_channel();
        loop {
            tokio::select! {
                relayed = rx.recv() => match relayed {
                    Some(relayed) => self.take(relayed, &reads),
                    None => return,
                },
                Some(done) = read.recv() => self.caught_up(done, &reads),
            }
        }
    }

    fn followed(&mut self, room: &RoomKey) -> &mut Followed {
        let Stage {
            rooms,
            next_generation,
            ..
        } = self;
        rooms.entry(room.clone()).or_insert_with(|| {
            *next_generation += 1;
            Followed {
                generation: *next_generation,
                delivered: 0,
                catch_up: None,
            }
        })
    }

    fn take(&mut self, relayed: Relayed, reads: &mpsc::UnboundedSender<Read>) {
        match relayed {
            Relayed::Live(event) => {
                let sink = self.sink.clone();
                let room = self.followed(&event.room);
                match &mut room.catch_up {
                    Some(catch_up) => catch_up.arrived.push(event),
                    None => room.pass(event, &sink),
                }
            }
            Relayed::Resumed { room, after } => {
                let followed = self.followed(&room);
                match &mut followed.catch_up {
                    Some(catch_up) => {
                        catch_up.again = Some(catch_up.again.map_or(after, |a| a.min(after)));
                    }
                    None => {
                        followed.catch_up = Some(CatchUp {
                            arrived: Vec::new(),
                            again: None,
                        });
                        let generation = followed.generation;
                        self.read(room, generation, after, reads);
                    }
                }
            }
            Relayed::Dropped(room) => {
                self.rooms.remove(&room);
            }
        }
    }

    /// Reads what `room` missed after `after` from its log, off the stage.
    fn read(
        &self,
        room: RoomKey,
        generation: u64,
        after: u64,
        reads: &mpsc::UnboundedSender<Read>,
    ) {
        let (log, reads) = (self.log.clone(), reads.clone());
        actix_web::rt::spawn(async move {
            let history = log.since(&room, after).await;
            let _ = reads.send(Read {
                room,
                generation,
                after,
                history,
            });
        });
    }

    /// Passes on what the log held (or a gap), then what arrived live
    /// meanwhile, and catches the room up again if its connection dropped
    /// meanwhile.
    fn caught_up(&mut self, read: Read, reads: &mpsc::UnboundedSender<Read>) {
        let Read {
            room,
            generation,
            after,
            history,
        } = read;
        let sink = self.sink.clone();
        let Some(followed) = self.rooms.get_mut(&room) else {
            return;
        };
        if followed.generation != generation {
            return;
        }
        match history {
            Ok(History::Events(events)) => {
                log::info!(
                    "room {room}: caught up {} events after {after}",
                    events.len()
                );
                for event in events {
                    followed.pass(event, &sink);
                }
            }
            Ok(History::Trimmed) => {
                log::warn!(
                    "room {room}: its log no longer holds every event after {after}; \
                     members here missed some"
                );
                sink.do_send(Arrival::Gap {
                    room: room.clone(),
                    after,
                });
            }
            Err(err) => {
                log::warn!("room {room}: cannot catch up after {after}: {err}");
                sink.do_send(Arrival::Gap {
                    room: room.clone(),
                    after,
                });
            }
        }
        let Some(catch_up) = followed.catch_up.take() else {
            return;
        };
        for event in catch_up.arrived {
            followed.pass(event, &sink);
        }
        if let Some(again) = catch_up.again {
            followed.catch_up = Some(CatchUp {
                arrived: Vec::new(),
                again: None,
            });
            self.read(room, generation, again, reads);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use actix::{Actor, Context, Handler};
    use tokio::sync::Notify;

    use super::*;
    use crate::broker::{LogLimits, Publication, Subscription};

    /// A log that answers `history` once `open` is notified.
    #[derive(Clone)]
    struct Gated {
        history: History,
        open: Arc<Notify>,
    }

    impl Events for Gated {
        async fn publish(&self, _: &[Publication], _: LogLimits) -> Vec<Result<u64, StoreError>> {
            Vec::new()
        }
        async fn since(&self, _: &RoomKey, _: u64) -> Result<History, StoreError> {
            self.open.notified().await;
            Ok(self.history.clone())
        }
        fn subscribe(&self, _: Recipient<Arrival>) -> Subscription {
            Subscription::new(mpsc::unbounded_channel().0)
        }
    }

    /// Keeps what arrives.
    struct Sink(Arc<Mutex<Vec<Arrival>>>);

    impl Actor for Sink {
        type Context = Context<Self>;
    }

    impl Handler<Arrival> for Sink {
        type Result = ();
        fn handle(&mut self, arrival: Arrival, _: &mut Context<Self>) {
            if let Ok(mut arrived) = self.0.lock() {
                arrived.push(arrival);
            }
        }
    }

    fn room() -> RoomKey {
        RoomKey::parse("listing:l1").unwrap_or_else(|| unreachable!())
    }

    fn event(offset: u64) -> RoomEvent {
        RoomEvent {
            room: room(),
            offset,
            emission: offset,
            frame: format!("42[\"e\",{offset},\"{offset}-0\"]"),
            except: None,
            version: None,
        }
    }

    /// Sends `before`, resumes the room after offset 1, sends `meanwhile`,
    /// opens the log, and answers what arrived.
    async fn resume(history: History, before: &[u64], meanwhile: &[u64]) -> Vec<Arrival> {
        let open = Arc::new(Notify::new());
        let arrived = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(arrived.clone()).start().recipient();
        let log = Gated {
            history,
            open: open.clone(),
        };
        let stage = start(log, sink);
        for &offset in before {
            let _ = stage.send(Relayed::Live(event(offset)));
        }
        let _ = stage.send(Relayed::Resumed {
            room: room(),
            after: 1,
        });
        for &offset in meanwhile {
            let _ = stage.send(Relayed::Live(event(offset)));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let held = arrived.lock().map(|a| a.len()).unwrap_or_default();
        assert_eq!(held, before.len(), "what arrives meanwhile is held");
        open.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let arrived = arrived.lock().map(|a| a.clone()).unwrap_or_default();
        arrived
    }

    fn offsets(arrived: &[Arrival]) -> Vec<Option<u64>> {
        arrived
            .iter()
            .map(|arrival| match arrival {
                Arrival::Event(event) => Some(event.offset),
                Arrival::Gap { .. } => None,
            })
            .collect()
    }

    #[actix_web::test]
    async fn a_resumed_room_gets_the_log_then_what_arrived_meanwhile_each_once() {
        let log = History::Events(vec![event(3), event(4), event(5)]);
        let arrived = resume(log, &[1], &[5, 6]).await;
        assert_eq!(
            offsets(&arrived),
            vec![Some(1), Some(3), Some(4), Some(5), Some(6)]
        );
    }

    #[actix_web::test]
    async fn a_trimmed_log_is_a_gap_before_what_arrived_meanwhile() {
        let arrived = resume(History::Trimmed, &[1], &[6]).await;
        assert_eq!(offsets(&arrived), vec![Some(1), None, Some(6)]);
        assert_eq!(
            arrived.get(1),
            Some(&Arrival::Gap {
                room: room(),
                after: 1
            })
        );
    }
}
