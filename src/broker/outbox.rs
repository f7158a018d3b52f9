//! The outbox relay: every node publishes the notices commits left in the
//! outbox table (`store::outbox`) through the fanout, and deletes them once
//! the broker took them. A node that dies holding some only delays them by a
//! lease; whatever failed after a commit, its notices go out.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Fanout;
use crate::ids::RoomKey;
use crate::protocol::events::{CustomEvent, ServerEvent};
use crate::settings::OutboxSettings;
use crate::store::outbox::{self, Notice};
use crate::store::{Db, StoreError};

/// Notices one relay pass takes at most.
const BATCH: i64 = 100;

/// A node's relay; stopped with the node. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    stop: Arc<watch::Sender<bool>>,
}

impl Relay {
    /// Starts polling the outbox every `settings.poll` on the current runtime.
    pub fn start(db: Db, fanout: Fanout, node: String, settings: OutboxSettings) -> Relay {
        let (stop, mut stopped) = watch::channel(false);
        actix_web::rt::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(settings.poll) => {}
                    _ = stopped.changed() => return,
                }
                // A full batch: there may be more waiting.
                loop {
                    match relay(&db, &fanout, &node, settings.lease).await {
                        Ok(0) => break,
                        // Mostly what a closer could not publish itself,
                        // or a dead node left.
                        Ok(n) => {
                            log::info!("outbox relay published {n} notices");
                            if n as i64 != BATCH {
                                break;
                            }
                        }
                        Err(err) => {
                            log::warn!("outbox relay: {err}");
                            break;
                        }
                    }
                }
            }
        });
        Relay {
            stop: Arc::new(stop),
        }
    }

    /// Stops polling (a node shutting down); notices it has not published
    /// are left to the other nodes.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }
}

/// Publishes the notices no relay holds, oldest first, and deletes them;
/// answers how many. What the broker refused is freed for the next try.
pub async fn relay(
    db: &Db,
    fanout: &Fanout,
    node: &str,
    lease: Duration,
) -> Result<usize, StoreError> {
    let owner = node.to_owned();
    let notices = db
        .run(move |conn| outbox::take(conn, &owner, lease, BATCH))
        .await?;
    if notices.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = notices.iter().map(|notice| notice.id).collect();
    let published = fanout
        .all_published(|fanout| notices.iter().for_each(|notice| emit(fanout, notice)))
        .await;
    if let Err(err) = published {
        let owner = node.to_owned();
        db.run(move |conn| outbox::release(conn, &owner, &ids))
            .await?;
        return Err(err);
    }
    let count = ids.len();
    db.run(move |conn| outbox::done(conn, &ids)).await?;
    Ok(count)
}

fn emit(fanout: &Fanout, notice: &Notice) {
    let rooms: Vec<RoomKey> = notice
        .rooms
        .iter()
        .flatten()
        .filter_map(|room| {
            let key = RoomKey::parse(room);
            if key.is_none() {
                log::warn!("outbox notice {}: no room {room:?}", notice.id);
            }
            key
        })
        .collect();
    // Written by this code from a typed event, so its name is valid.
    match CustomEvent::new(notice.event.clone(), notice.payload.clone()) {
        Ok(event) => fanout.emit_as(
            notice.emission as u64,
            &rooms,
            ServerEvent::Custom(event),
            notice.listing_version,
        ),
        Err(err) => log::warn!("outbox notice {}: {err}", notice.id),
    }
}
