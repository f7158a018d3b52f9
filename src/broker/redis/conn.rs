//! Redis through deadpool pools of multiplexed connections, standalone or
//! Redis Cluster.
//!
//! Which one the URL leads to is found on first contact (`INFO cluster`),
//! not at start, so a node starts while Redis is down. A cluster is then
//! reached through redis-rs's cluster client, which routes each command by
//! its key's slot and follows MOVED redirects.
//!
//! A multiplexed connection carries any number of concurrent commands, so
//! commands do not check one out each: that costs a round trip per command,
//! for the pool's `UNWATCH`+`PING` health check, which was almost half of
//! the Redis commands of a bid. A few connections taken from the pool are
//! shared instead, round-robin; each is checked with a PING at most once a
//! second, and replaced from the pool when the check fails.

use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_redis::redis::aio::{ConnectionLike, MultiplexedConnection};
use deadpool_redis::redis::cluster_async::ClusterConnection;
use deadpool_redis::redis::{Cmd, IntoConnectionInfo, Pipeline, RedisResult, Value};
use deadpool_redis::{Config, Pool, PoolConfig, Runtime, Timeouts};
use tokio::sync::OnceCell;

use crate::metrics::Metrics;
use crate::store::StoreError;

/// How long a command may wait for a connection before Redis counts as down.
const TIMEOUT: Duration = Duration::from_secs(2);

impl From<deadpool_redis::redis::RedisError> for StoreError {
    fn from(err: deadpool_redis::redis::RedisError) -> Self {
        StoreError::unavailable_by("redis", err)
    }
}

/// How many multiplexed connections commands share.
const SHARED_CONNECTIONS: usize = 4;
/// How long a shared connection is trusted without a PING.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// A handle on Redis; cheap to clone.
#[derive(Clone)]
pub struct Redis {
    url: String,
    pool_config: PoolConfig,
    /// Set on first contact.
    backend: Arc<OnceCell<Backend>>,
    shared: Arc<Shared>,
    prefix: String,
    metrics: Metrics,
}

/// The pool of the kind of Redis the URL leads to.
enum Backend {
    Standalone(Pool),
    Cluster(deadpool_redis::cluster::Pool),
}

/// The shared connections and when each was last known good.
struct Shared {
    slots: Vec<Mutex<Option<(Conn, Instant)>>>,
    next: AtomicUsize,
}

/// A multiplexed connection to a standalone Redis or to a cluster.
#[derive(Clone)]
pub enum Conn {
    Standalone(MultiplexedConnection),
    Cluster(ClusterConnection),
}

type RedisFuture<'a, T> = Pin<Box<dyn Future<Output = RedisResult<T>> + Send + 'a>>;

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Standalone(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Standalone(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

/// A connection for some commands. On a cluster, a pipeline's commands
/// must all be in one slot; [`Redis::run_all`] runs commands that are not.
pub struct RedisConnection(Conn);

impl Deref for RedisConnection {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.0
    }
}

impl DerefMut for RedisConnection {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.0
    }
}

impl Redis {
    /// Reads the URL and makes the handle without connecting.
    pub fn new(url: &str, prefix: &str, size: usize, metrics: Metrics) -> Result<Self, StoreError> {
        url.into_connection_info()
            .map_err(|err| StoreError::internal_by("bad Redis URL", err))?;
        let pool_config = PoolConfig {
            max_size: size.max(1),
            timeouts: Timeouts {
                wait: Some(TIMEOUT),
                create: Some(TIMEOUT),
                recycle: Some(TIMEOUT),
            },
            ..PoolConfig::default()
        };
        let shared = Shared {
            slots: (0..SHARED_CONNECTIONS).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        };
        Ok(Redis {
            url: url.to_owned(),
            pool_config,
            backend: Arc::new(OnceCell::new()),
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
            .map_err(|_| StoreError::internal("redis: a connection slot is poisoned"))?
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
        let conn = match self.backend().await? {
            Backend::Standalone(pool) => {
                let fresh = pool
                    .get()
                    .await
                    .map_err(|err| StoreError::unavailable_by("redis pool", err))?;
                Conn::Standalone(deadpool_redis::Connection::take(fresh))
            }
            Backend::Cluster(pool) => {
                let fresh = pool
                    .get()
                    .await
                    .map_err(|err| StoreError::unavailable_by("redis pool", err))?;
                Conn::Cluster(deadpool_redis::cluster::Connection::take(fresh))
            }
        };
        store(slot, &conn);
        Ok(RedisConnection(conn))
    }

    /// Drops the shared connections, so that the next commands take fresh
    /// ones from the pool: for a caller whose command failed on one, which
    /// may have broken a moment ago and would fail until its next check.
    pub fn reset_connections(&self) {
        for slot in &self.shared.slots {
            if let Ok(mut slot) = slot.lock() {
                *slot = None;
            }
        }
    }

    /// Runs commands that may be in different slots, ignoring their
    /// replies: one pipeline on a standalone Redis, each on its own (at
    /// once, over the same multiplexed connection) on a cluster, where a
    /// pipeline must stay in one slot.
    pub async fn run_all(&self, commands: Vec<Cmd>) -> Result<(), StoreError> {
        if commands.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        match &mut conn.0 {
            Conn::Standalone(conn) => {
                let mut pipe = deadpool_redis::redis::pipe();
                for command in commands {
                    pipe.add_command(command).ignore();
                }
                pipe.query_async::<()>(conn).await?;
            }
            Conn::Cluster(conn) => {
                let runs = commands.into_iter().map(|command| {
                    let mut conn = conn.clone();
                    async move { command.query_async::<Value>(&mut conn).await }
                });
                futures_util::future::try_join_all(runs).await?;
            }
        }
        Ok(())
    }

    /// Whether Redis answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.connection().await?;
        ping(&mut conn).await
    }

    /// The pool, made on first contact for the kind of Redis found there.
    async fn backend(&self) -> Result<&Backend, StoreError> {
        self.backend
            .get_or_try_init(|| async {
                let backend = if is_cluster(&self.url).await? {
                    log::info!("redis: {} is a Redis Cluster", self.url);
                    let mut config =
                        deadpool_redis::cluster::Config::from_urls(vec![self.url.clone()]);
                    config.pool = Some(self.pool_config);
                    Backend::Cluster(
                        config
                            .create_pool(Some(Runtime::Tokio1))
                            .map_err(bad_settings)?,
                    )
                } else {
                    let mut config = Config::from_url(self.url.clone());
                    config.pool = Some(self.pool_config);
                    Backend::Standalone(
                        config
                            .create_pool(Some(Runtime::Tokio1))
                            .map_err(bad_settings)?,
                    )
                };
                Ok(backend)
            })
            .await
    }
}

fn bad_settings(err: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::internal_by("bad Redis settings", err)
}

/// Asks the server at `url` whether it runs in cluster mode.
async fn is_cluster(url: &str) -> Result<bool, StoreError> {
    let client = deadpool_redis::redis::Client::open(url)?;
    let mut conn = tokio::time::timeout(TIMEOUT, client.get_multiplexed_async_connection())
        .await
        .map_err(|err| StoreError::unavailable_by("redis: connecting", err))??;
    let info: String = tokio::time::timeout(
        TIMEOUT,
        deadpool_redis::redis::cmd("INFO")
            .arg("cluster")
            .query_async(&mut conn),
    )
    .await
    .map_err(|err| StoreError::unavailable_by("redis: INFO", err))??;
    Ok(info.lines().any(|line| line.trim() == "cluster_enabled:1"))
}

/// Marks `conn` as the slot's connection, known good now.
fn store(slot: &Mutex<Option<(Conn, Instant)>>, conn: &Conn) {
    if let Ok(mut slot) = slot.lock() {
        *slot = Some((conn.clone(), Instant::now()));
    }
}

async fn ping(conn: &mut Conn) -> Result<(), StoreError> {
    let reply: Result<String, _> = tokio::time::timeout(
        TIMEOUT,
        deadpool_redis::redis::cmd("PING").query_async(conn),
    )
    .await
    .map_err(|err| StoreError::unavailable_by("redis: PING", err))?;
    reply.map(|_| ()).map_err(StoreError::from)
}
