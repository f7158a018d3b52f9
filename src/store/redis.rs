//! Redis through a deadpool pool of multiplexed connections.
//!
//! A multiplexed connection carries any number of concurrent commands, so
//! commands do not check one out each: that costs a round trip per command,
//! for the pool's `UNWATCH`+`PING` health check, which was almost half of
//! the Redis commands of a bid. A few connections taken from the pool are
//! shared instead, round-robin; each is checked with a PING at most once a
//! second, and replaced from the pool when the check fails.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis::aio::MultiplexedConnection;
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};

use super::StoreError;
use crate::metrics::Metrics;

/// How long a command may wait for a connection before Redis counts as down.
const TIMEOUT: Duration = Duration::from_secs(2);

impl From<deadpool_redis::redis::RedisError> for StoreError {
    fn from(err: deadpool_redis::redis::RedisError) -> Self {
        StoreError::Unavailable(format!("redis: {err}"))
    }
}

/// How many multiplexed connections commands share.
const SHARED_CONNECTIONS: usize = 4;
/// How long a shared connection is trusted without a PING.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A handle on Redis; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    pool: Pool,
    shared: Arc<Shared>,
    prefix: String,
    metrics: Metrics,
}

/// The shared connections and when each was last known good.
struct Shared {
    slots: Vec<Mutex<Option<(MultiplexedConnection, Instant)>>>,
    next: AtomicUsize,
}

/// A connection for some commands; use it as a `MultiplexedConnection`.
pub struct RedisConnection(MultiplexedConnection);

impl Deref for RedisConnection {
    type Target = MultiplexedConnection;
    fn deref(&self) -> &MultiplexedConnection {
        &self.0
    }
}

impl DerefMut for RedisConnection {
    fn deref_mut(&mut self) -> &mut MultiplexedConnection {
        &mut self.0
    }
}

impl Redis {
    /// Makes the pool without connecting.
    pub fn new(url: &str, prefix: &str, size: usize, metrics: Metrics) -> Result<Self, StoreError> {
        let mut config = Config::from_url(url);
        config.pool = Some(PoolConfig {
            max_size: size.max(1),
            timeouts: Timeouts {
                wait: Some(TIMEOUT),
                create: Some(TIMEOUT),
                recycle: Some(TIMEOUT),
            },
            ..PoolConfig::default()
        });
        let pool = config
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|err| StoreError::Internal(format!("bad Redis settings: {err}")))?;
        let shared = Shared {
            slots: (0..SHARED_CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        Ok(Redis {
            pool,
            shared: Arc::new(shared),
            prefix: prefix.to_owned(),
            metrics,
        })
    }

    /// A key under this node's prefix: `key(&["presence", "u1"])` is
    /// `souk:presence:u1` with the default prefix.
    pub fn key(&self, parts: &[&str]) -> String {
        format!("{}{}", self.prefix, parts.join(":"))
    }

    /// The prefix itself, for scripts that build keys.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A shared connection: the next one round-robin, checked with a PING
    /// when it has not been for a second, and replaced when that fails.
    pub async fn connection(&self) -> Result<RedisConnection, StoreError> {
        self.metrics.redis_ops.inc();
        let index = self.shared.next.fetch_add(1, Ordering::Relaxed) % SHARED_CONNECTIONS;
        let slot = &self.shared.slots[index];
        let cached = slot
            .lock()
            .map_err(|_| StoreError::Internal("redis: a connection slot is poisoned".into()))?
            .clone();
        if let Some((mut conn, checked)) = cached {
            if checked.elapsed() < CHECK_EVERY {
                return Ok(RedisConnection(conn));
            }
            if ping(&mut conn).await.is_ok() {
                store(slot, &conn);
                return Ok(RedisConnection(conn));
            }
        }
        let fresh = self
            .pool
            .get()
            .await
            .map_err(|err| StoreError::Unavailable(format!("redis: {err}")))?;
        let conn = deadpool_redis::Connection::take(fresh);
        store(slot, &conn);
        Ok(RedisConnection(conn))
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        ping(&mut conn).await
    }
}

/// Marks `conn` as the slot's connection, known good now.
fn store(slot: &Mutex<Option<(MultiplexedConnection, Instant)>>, conn: &MultiplexedConnection) {
    if let Ok(mut slot) = slot.lock() {
        *slot = Some((conn.clone(), Instant::now()));
    }
}

async fn ping(conn: &mut MultiplexedConnection) -> Result<(), StoreError> {
    let reply: Result<String, _> = tokio::time::timeout(
        TIMEOUT,
        deadpool_redis::redis::cmd("PING").query_async(conn),
    )
    .await
    .map_err(|_| StoreError::Unavailable("redis: PING timed out".into()))?;
    reply.map(|_| ()).map_err(StoreError::from)
}
