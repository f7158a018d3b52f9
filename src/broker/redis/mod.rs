//! The Redis broker: standalone Redis or Redis Cluster, for any number of
//! nodes. Every key name and every script of souk's lives under this module.

mod auctions;
pub mod conn;
mod events;
mod nodes;
mod presence;
mod records;
mod throttles;

pub use conn::Redis;

use crate::store::StoreError;

/// The Redis broker; cheap to clone.
#[derive(Clone)]
pub struct RedisBroker {
    redis: Redis,
}

impl RedisBroker {
    pub fn new(redis: Redis) -> Self {
        RedisBroker { redis }
    }

    /// The connection pool (until every user of Redis is behind the traits).
    pub fn redis(&self) -> &Redis {
        &self.redis
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.redis.ping().await
    }
}

/// PLACEHOLDER while the implementations are built.
fn not_yet() -> StoreError {
    StoreError::unavailable("the Redis broker is not built yet")
}

/// A handle on a Redis that is never reached, for tests of key names.
#[cfg(test)]
fn unreached() -> Redis {
    let metrics = crate::metrics::Metrics::new().unwrap_or_else(|_| panic!("metrics"));
    Redis::new("redis://127.0.0.1:1", "souk:", 1, metrics).unwrap_or_else(|_| panic!("a handle"))
}
