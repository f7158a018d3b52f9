//! Between the subscriber and the node: passes each room's events on once,
//! in offset order, and catches a room up from its log when the subscriber
//! followed its channel again after a dropped connection, holding the live
//! events that arrive meanwhile until the log's are passed on.

use std::collections::HashMap;

use actix::Recipient;
use tokio::sync::mpsc;

use super::RedisBroker;
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

/// Starts the stage on the current runtime; it hands arrivals to `sink`.
pub(super) fn start(
    broker: RedisBroker,
    sink: Recipient<Arrival>,
) -> mpsc::UnboundedSender<Relayed> {
    let (relayed, rx) = mpsc::unbounded_channel();
    let stage = Stage {
        broker,
        sink,
        rooms: HashMap::new(),
        next_generation: 0,
    };
    actix_web::rt::spawn(stage.run(rx));
    relayed
}

struct Stage {
    broker: RedisBroker,
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

impl Stage {
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
        let (broker, reads) = (self.broker.clone(), reads.clone());
        actix_web::rt::spawn(async move {
            let history = broker.since(&room, after).await;
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
