//! Faults a test causes on purpose: Redis connections cut
//! ([`RedisProxy`], [`kill_redis_clients`]), Postgres refused, Redis data
//! lost; and [`redis_connection`], the tests' own way into Redis.

use diesel::{Connection, PgConnection, RunQueryDsl};

use super::servers::{pg_url, redis_is_cluster, redis_url, TestApp};

/// A connection to the tests' Redis that routes keys to their cluster
/// node when it is a cluster.
pub fn redis_connection() -> redis::RedisResult<Box<dyn redis::ConnectionLike>> {
    if redis_is_cluster() {
        let client = redis::cluster::ClusterClient::new(vec![redis_url()])?;
        Ok(Box::new(client.get_connection()?))
    } else {
        Ok(Box::new(
            redis::Client::open(redis_url())?.get_connection()?,
        ))
    }
}

/// Closes every Redis connection named `name`, on every node of a cluster;
/// says how many there were.
pub fn kill_redis_clients(name: &str) -> usize {
    let mut seed = redis::Client::open(redis_url())
        .and_then(|c| c.get_connection())
        .unwrap();
    let addresses: Vec<String> = if redis_is_cluster() {
        let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(&mut seed).unwrap();
        nodes
            .lines()
            .filter(|line| line.contains("master"))
            .filter_map(|line| line.split_whitespace().nth(1))
            .map(|address| format!("redis://{}", address.split('@').next().unwrap()))
            .collect()
    } else {
        vec![redis_url()]
    };
    let mut killed = 0;
    for address in addresses {
        let mut conn = redis::Client::open(address)
            .and_then(|c| c.get_connection())
            .unwrap();
        let clients: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn).unwrap();
        for line in clients.lines() {
            let field = |key: &str| {
                line.split_whitespace()
                    .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))
            };
            if field("name") == Some(name) {
                if let Some(id) = field("id") {
                    let _: redis::Value = redis::cmd("CLIENT")
                        .arg("KILL")
                        .arg("ID")
                        .arg(id)
                        .query(&mut conn)
                        .unwrap();
                    killed += 1;
                }
            }
        }
    }
    killed
}

impl TestApp {
    /// Cuts the node off from its database: no new connections, and the
    /// open ones are terminated.
    pub fn cut_postgres(&self) {
        let mut admin = PgConnection::establish(&pg_url("postgres")).unwrap();
        let name = &self.db.name;
        diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            .execute(&mut admin)
            .unwrap();
        self.drop_postgres_connections();
    }

    /// Terminates the node's open connections to its database, as a
    /// Postgres restart does, and waits until they are gone; new ones may
    /// be opened.
    pub fn drop_postgres_connections(&self) {
        use diesel::sql_types::{Array, BigInt, Integer};
        #[derive(diesel::QueryableByName)]
        struct Pid {
            #[diesel(sql_type = Integer)]
            pid: i32,
        }
        #[derive(diesel::QueryableByName)]
        struct Left {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let mut admin = PgConnection::establish(&pg_url("postgres")).unwrap();
        let name = &self.db.name;
        // Two statements: in one, Postgres may call pg_terminate_backend
        // before it filters on the database.
        let pids: Vec<i32> = diesel::sql_query(format!(
            "SELECT pid FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .load::<Pid>(&mut admin)
        .unwrap()
        .into_iter()
        .map(|row| row.pid)
        .collect();
        diesel::sql_query("SELECT pg_terminate_backend(pid) FROM unnest($1) AS pid")
            .bind::<Array<Integer>, _>(&pids)
            .execute(&mut admin)
            .unwrap();
        for _ in 0..500 {
            let left: Left =
                diesel::sql_query("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind::<Array<Integer>, _>(&pids)
                    .get_result(&mut admin)
                    .unwrap();
            if left.n == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the node's connections to {name} did not go");
    }

    /// Lets the node reach its database again.
    pub fn restore_postgres(&self) {
        let mut admin = PgConnection::establish(&pg_url("postgres")).unwrap();
        diesel::sql_query(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self.db.name
        ))
        .execute(&mut admin)
        .unwrap();
    }
}

impl TestApp {
    /// Deletes every Redis key of this node (as if Redis lost its data).
    pub fn flush_redis(&self) {
        let mut redis = redis_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:*", self.db.name))
            .query(&mut *redis)
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(keys).query(&mut *redis).unwrap();
        }
    }
}

/// A TCP proxy to the test Redis whose connections can all be cut at once,
/// as a Redis restart or a network blip would. It can also stay down
/// (cutting and refusing every connection) until told to come back, from a
/// moment chosen with [`RedisProxy::go_down_when_sent`].
pub struct RedisProxy {
    pub url: String,
    cut: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Bytes that, sent by a client, take the proxy down before they pass.
    trip: std::sync::Arc<std::sync::Mutex<Option<Vec<u8>>>>,
}

impl RedisProxy {
    pub async fn start() -> RedisProxy {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let upstream = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let (cut, cuts) = tokio::sync::watch::channel(0u64);
        let proxy = RedisProxy {
            url,
            cut: std::sync::Arc::new(cut),
            down: Default::default(),
            trip: Default::default(),
        };
        let (cut, down, trip) = (proxy.cut.clone(), proxy.down.clone(), proxy.trip.clone());
        actix_web::rt::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if down.load(Ordering::SeqCst) {
                    continue;
                }
                let upstream = upstream.clone();
                let mut cuts = cuts.clone();
                cuts.mark_unchanged();
                let (cut, down, trip) = (cut.clone(), down.clone(), trip.clone());
                actix_web::rt::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    let upward = async {
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match from_client.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => n,
                            };
                            let tripped = {
                                let mut needle = trip.lock().unwrap();
                                let hit = needle.as_ref().is_some_and(|want| {
                                    buf[..n].windows(want.len()).any(|w| w == want)
                                });
                                if hit {
                                    *needle = None;
                                }
                                hit
                            };
                            if tripped {
                                down.store(true, Ordering::SeqCst);
                                cut.send_modify(|n| *n += 1);
                                return;
                            }
                            if to_server.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    };
                    tokio::select! {
                        () = upward => {}
                        _ = tokio::io::copy(&mut from_server, &mut to_client) => {}
                        _ = cuts.changed() => {}
                    }
                });
            }
        });
        proxy
    }

    pub fn cut_all(&self) {
        self.cut.send_modify(|n| *n += 1);
    }

    /// Goes down (cutting every connection and refusing new ones until
    /// [`RedisProxy::come_back`]) as soon as a client sends `needle`, which
    /// never reaches Redis: a failure at one chosen command.
    pub fn go_down_when_sent(&self, needle: &[u8]) {
        *self.trip.lock().unwrap() = Some(needle.to_vec());
    }

    pub fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn come_back(&self) {
        self.down.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}
