//! Throttles in Redis: one key per throttle, set with `NX` and a TTL, so
//! the first `once` of a window sets it and the others find it there.
//!
//! Keyspace (prefix `souk:` by default):
//! - `souk:typing:<booking>:<user>`: a typing broadcast went out for this
//!   user and booking within the window (`PX` the window).

use std::time::Duration;

use super::RedisBroker;
use crate::broker::{Throttle, Throttles};
use crate::store::StoreError;

impl RedisBroker {
    fn throttle_key(&self, key: &Throttle) -> String {
        match key {
            Throttle::Typing { booking, user } => {
                self.redis.key(&["typing", booking.as_str(), user.as_str()])
            }
        }
    }
}

impl Throttles for RedisBroker {
    async fn once(&self, key: &Throttle, ttl: Duration) -> Result<bool, StoreError> {
        let mut conn = self.redis.connection().await?;
        let set: Option<String> = deadpool_redis::redis::cmd("SET")
            .arg(self.throttle_key(key))
            .arg(1)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .arg("NX")
            .query_async(&mut *conn)
            .await?;
        Ok(set.is_some())
    }

    async fn reset(&self, key: &Throttle) -> Result<(), StoreError> {
        let mut conn = self.redis.connection().await?;
        let _: i64 = deadpool_redis::redis::cmd("DEL")
            .arg(self.throttle_key(key))
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{BookingId, UserId};

    #[test]
    fn typing_keys_keep_their_name() {
        let redis = crate::broker::redis::unreached();
        let broker = RedisBroker::new(redis, "redis://127.0.0.1:1", "test")
            .unwrap_or_else(|_| panic!("a broker"));
        let key = Throttle::Typing {
            booking: BookingId::parse("b1").unwrap_or_else(|| panic!("a booking id")),
            user: UserId::parse("u1").unwrap_or_else(|| panic!("a user id")),
        };
        assert_eq!(broker.throttle_key(&key), "souk:typing:b1:u1");
    }
}
