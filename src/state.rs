//! What every connection and request of a node shares.

use std::sync::atomic::{AtomicU64, Ordering};

use actix::Addr;

use crate::auth::Authenticator;
use crate::broker::bidding::Bidding;
use crate::broker::Broker;
use crate::broker::Fanout;
use crate::metrics::Metrics;
use crate::rooms::presence::PresenceTracker;
use crate::rooms::{Registry, SessionId};
use crate::settings::Settings;
use crate::store::bids::Bids;
use crate::store::messages::Messages;
use crate::store::writer::Writer;
use crate::store::Db;

/// A node's shared state, held behind `web::Data` (an `Arc`).
pub struct AppState {
    pub settings: Settings,
    pub auth: Authenticator,
    pub db: Db,
    /// What this node shares with the others.
    pub broker: Broker,
    /// Bids waiting for their listing's next batch.
    pub bidding: Bidding,
    pub registry: Addr<Registry>,
    pub fanout: Fanout,
    pub messages: Addr<Writer<Messages>>,
    pub bids: Addr<Writer<Bids>>,
    pub presence: Addr<PresenceTracker>,
    pub metrics: Metrics,
    /// Per-user rates of client events.
    pub limiter: crate::limits::Limiter,
    next_session: AtomicU64,
}

/// The actors a node's state points to.
pub struct Actors {
    pub registry: Addr<Registry>,
    pub fanout: Fanout,
    pub messages: Addr<Writer<Messages>>,
    pub bids: Addr<Writer<Bids>>,
    pub presence: Addr<PresenceTracker>,
}

impl AppState {
    pub fn new(
        settings: Settings,
        auth: Authenticator,
        db: Db,
        broker: Broker,
        actors: Actors,
        metrics: Metrics,
    ) -> Self {
        let limiter = crate::limits::Limiter::new(settings.quotas.rates);
        let bidding = Bidding::new(broker.clone(), actors.bids.clone(), actors.fanout.clone());
        AppState {
            limiter,
            settings,
            auth,
            db,
            broker,
            bidding,
            fanout: actors.fanout,
            registry: actors.registry,
            messages: actors.messages,
            bids: actors.bids,
            presence: actors.presence,
            metrics,
            next_session: AtomicU64::new(1),
        }
    }

    /// A fresh node-local connection id.
    pub fn next_session_id(&self) -> SessionId {
        self.next_session.fetch_add(1, Ordering::Relaxed)
    }
}

/// A random id of `len` URL-safe characters (sids, pids).
pub fn random_id(len: usize) -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), len)
}
