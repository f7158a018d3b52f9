//! Redis through a deadpool pool of multiplexed connections.

use std::time::Duration;

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

/// A handle on Redis; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    pool: Pool,
    prefix: String,
    metrics: Metrics,
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
        Ok(Redis {
            pool,
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

    /// A pooled connection.
    pub async fn connection(&self) -> Result<deadpool_redis::Connection, StoreError> {
        self.metrics.redis_ops.inc();
        self.pool
            .get()
            .await
            .map_err(|err| StoreError::Unavailable(format!("redis: {err}")))
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        let reply: Result<String, _> = tokio::time::timeout(
            TIMEOUT,
            deadpool_redis::redis::cmd("PING").query_async(&mut *conn),
        )
        .await
        .map_err(|_| StoreError::Unavailable("redis: PING timed out".into()))?;
        reply.map(|_| ()).map_err(StoreError::from)
    }
}
