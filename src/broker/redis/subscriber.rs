//! The node's Redis subscriber: one connection that follows the shard
//! channels (SSUBSCRIBE) of the rooms this node has members in, and hands
//! every message on, through the catch-up stage ([`super::catchup`]). It
//! reconnects by itself and subscribes again to everything it followed.
//!
//! Nothing published while it was away is lost: it remembers the last
//! offset it passed on, and when a channel is confirmed again it has that
//! room caught up from the room's log ([`Relayed::Resumed`]).
//!
//! On a Redis Cluster the room channels share one slot (see the keyspace in
//! the module above), so one connection to that slot's master follows them
//! all. The URL may name any node: a `MOVED` reply names the right one, and
//! the subscriber moves there; when a slot migrates, Redis unsubscribes the
//! channel, and subscribing again finds the new owner the same way.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::BytesMut;
use deadpool_redis::redis::{ConnectionAddr, IntoConnectionInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::catchup::Relayed;
use super::events::parse_message;
use super::resp::{self, Value};
use super::{offset_counter, room_channel, room_from_channel};
use crate::broker::Follow;
use crate::store::StoreError;

/// How long to wait before connecting again after a failure.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Commands that queued together go in one write, up to about this many bytes.
const MAX_BATCH: usize = 64 * 1024;

/// Where the subscriber connects, and how it authenticates.
#[derive(Debug, Clone)]
pub(super) struct Target {
    /// `host:port`: where the URL points, and where to go back to when the
    /// node a MOVED reply named cannot be reached.
    address: String,
    auth: Option<Vec<Vec<u8>>>,
    /// The connection's name in CLIENT LIST.
    name: String,
}

impl Target {
    /// Reads a Redis URL; `name` names the connection in CLIENT LIST.
    pub(super) fn from_url(url: &str, name: String) -> Result<Self, StoreError> {
        let info = url
            .into_connection_info()
            .map_err(|err| StoreError::internal_by("bad Redis URL", err))?;
        let address = match info.addr() {
            ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            other => {
                return Err(StoreError::internal(format!(
                    "the subscriber speaks plain TCP only, not {other:?}"
                )))
            }
        };
        let settings = info.redis_settings();
        let auth = settings.password().map(|password| {
            let mut parts = vec![b"AUTH".to_vec()];
            if let Some(user) = settings.username() {
                parts.push(user.as_bytes().to_vec());
            }
            parts.push(password.as_bytes().to_vec());
            parts
        });
        Ok(Target {
            address,
            auth,
            name,
        })
    }
}

/// Starts the subscriber task on the current runtime: it follows the
/// rooms `commands` name and hands what arrives to `arrivals`.
pub(super) fn start(
    target: Target,
    prefix: String,
    commands: mpsc::UnboundedReceiver<Follow>,
    arrivals: mpsc::UnboundedSender<Relayed>,
) {
    let task = Task {
        route: Route::new(target.address),
        auth: target.auth,
        name: target.name,
        prefix,
        arrivals,
        followed: HashMap::new(),
        waiting: HashMap::new(),
        last_offset: None,
        to_resume: HashSet::new(),
    };
    actix_web::rt::spawn(task.run(commands));
}

/// Where the subscriber connects: the node a MOVED named, else the URL's
/// node (the seed). After a connect fails it tries the other one, so that
/// neither a gone primary (a failover) nor a gone seed holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Route {
    seed: String,
    moved_to: Option<String>,
    on_seed: bool,
}

impl Route {
    fn new(seed: String) -> Self {
        Route {
            seed,
            moved_to: None,
            on_seed: true,
        }
    }

    /// Where the next connection goes.
    fn address(&self) -> &str {
        match &self.moved_to {
            Some(moved_to) if !self.on_seed => moved_to,
            _ => &self.seed,
        }
    }

    /// A node said `address` serves the room channels.
    fn moved(&mut self, address: String) {
        self.moved_to = Some(address);
        self.on_seed = false;
    }

    /// Connecting to [`Route::address`] failed.
    fn failed(&mut self) {
        if self.moved_to.is_some() {
            self.on_seed = !self.on_seed;
        }
    }
}

struct Task {
    route: Route,
    auth: Option<Vec<Vec<u8>>>,
    name: String,
    prefix: String,
    arrivals: mpsc::UnboundedSender<Relayed>,
    /// The channels followed, and whether Redis confirmed each on this
    /// connection. One entry per room with members here, and every
    /// connected user has a room: one map, not a set of the followed and
    /// another of the confirmed (each its own copy of the name; issue 13).
    followed: HashMap<String, bool>,
    waiting: HashMap<String, Vec<oneshot::Sender<()>>>,
    /// The offset of the last event passed on, or before the first one,
    /// the offset counter when the first connection was made: events after
    /// it are the ones a dropped connection may have missed.
    last_offset: Option<u64>,
    /// Channels followed before the connection dropped and not yet
    /// confirmed again.
    to_resume: HashSet<String>,
}

enum Ended {
    /// Every handle is gone: the node is stopping.
    Closed,
    Failed(String),
    /// A cluster node said another one serves the channels' slot.
    Moved(String),
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Follow>) {
        loop {
            let address = self.route.address().to_owned();
            let ended = match TcpStream::connect(&address).await {
                Ok(stream) => self.serve(stream, &mut rx).await,
                Err(err) => {
                    self.route.failed();
                    Ended::Failed(err.to_string())
                }
            };
            // Whatever was followed must be followed again, and caught up.
            for (channel, confirmed) in &mut self.followed {
                if std::mem::take(confirmed) {
                    self.to_resume.insert(channel.clone());
                }
            }
            let pause = match ended {
                Ended::Closed => return,
                Ended::Moved(address) => {
                    log::info!(
                        "redis subscriber: moving to {address}, which serves the room channels"
                    );
                    self.route.moved(address);
                    Duration::ZERO
                }
                Ended::Failed(why) => {
                    log::warn!("redis subscriber on {address}: {why}; reconnecting");
                    RECONNECT_DELAY
                }
            };
            let pause = tokio::time::sleep(pause);
            tokio::pin!(pause);
            // Keep taking commands while waiting to reconnect.
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    command = rx.recv() => match command {
                        // Sent on reconnect, with everything followed.
                        Some(command) => {
                            self.take(command);
                        }
                        None => return,
                    },
                }
            }
        }
    }

    /// Records a command; returns the bytes to send, if any.
    fn take(&mut self, command: Follow) -> Option<Vec<u8>> {
        match command {
            Follow::Room(room, reply) => {
                let channel = room_channel(&self.prefix, &room);
                if self.followed.get(&channel) == Some(&true) {
                    let _ = reply.send(());
                    return None;
                }
                let command = (!self.followed.contains_key(&channel))
                    .then(|| resp::encode(&[b"SSUBSCRIBE", channel.as_bytes()]));
                self.followed.entry(channel.clone()).or_insert(false);
                self.waiting.entry(channel).or_default().push(reply);
                command
            }
            Follow::Drop(room) => {
                let channel = room_channel(&self.prefix, &room);
                let _ = self.arrivals.send(Relayed::Dropped(room));
                self.waiting.remove(&channel);
                self.to_resume.remove(&channel);
                self.followed
                    .remove(&channel)
                    .map(|_| resp::encode(&[b"SUNSUBSCRIBE", channel.as_bytes()]))
            }
        }
    }

    async fn serve(
        &mut self,
        mut stream: TcpStream,
        rx: &mut mpsc::UnboundedReceiver<Follow>,
    ) -> Ended {
        let _ = stream.set_nodelay(true);
        let mut hello = Vec::new();
        if let Some(auth) = &self.auth {
            let parts: Vec<&[u8]> = auth.iter().map(Vec::as_slice).collect();
            hello.extend(resp::encode(&parts));
        }
        // Named, for operators (and tests) who look for it in CLIENT LIST.
        hello.extend(resp::encode(&[b"CLIENT", b"SETNAME", self.name.as_bytes()]));
        // Read before subscribing, so that its reply is the first bulk
        // string; on a cluster it also finds the right node.
        let counter = offset_counter(&self.prefix);
        hello.extend(resp::encode(&[b"GET", counter.as_bytes()]));
        for channel in self.followed.keys() {
            hello.extend(resp::encode(&[b"SSUBSCRIBE", channel.as_bytes()]));
        }
        if let Err(err) = stream.write_all(&hello).await {
            return Ended::Failed(err.to_string());
        }
        let mut counter_read = false;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            tokio::select! {
                command = rx.recv() => {
                    let Some(command) = command else { return Ended::Closed };
                    let mut bytes = self.take(command).unwrap_or_default();
                    // What queued meanwhile (a burst of connects, each
                    // following its user room) goes in the same write.
                    while bytes.len() < MAX_BATCH {
                        let Ok(command) = rx.try_recv() else { break };
                        bytes.extend(self.take(command).unwrap_or_default());
                    }
                    if bytes.is_empty() {
                        continue;
                    }
                    if let Err(err) = stream.write_all(&bytes).await {
                        return Ended::Failed(err.to_string());
                    }
                }
                read = stream.read_buf(&mut buf) => {
                    match read {
                        Ok(0) => return Ended::Failed("connection closed".into()),
                        Ok(_) => {}
                        Err(err) => return Ended::Failed(err.to_string()),
                    }
                    loop {
                        match resp::decode(&buf) {
                            Ok(Some((value, used))) => {
                                let _ = buf.split_to(used);
                                if let Some(ended) = self.handle(value, &mut counter_read) {
                                    return ended;
                                }
                            }
                            Ok(None) => break,
                            Err(_) => return Ended::Failed("malformed reply".into()),
                        }
                    }
                }
            }
        }
    }

    /// Acts on one reply or pushed message; says when the connection must
    /// be left.
    fn handle(&mut self, value: Value, counter_read: &mut bool) -> Option<Ended> {
        let items = match value {
            Value::Array(Some(items)) => items,
            Value::Error(err) => {
                if let Some(address) = moved_to(&err) {
                    return Some(Ended::Moved(address));
                }
                log::warn!("redis subscriber: {err}");
                return None;
            }
            // GET's reply: the counter (nil before the first event ever).
            Value::Bulk(counter) if !*counter_read => {
                *counter_read = true;
                if self.last_offset.is_none() {
                    let text = counter.as_deref().and_then(|b| std::str::from_utf8(b).ok());
                    self.last_offset = Some(text.and_then(|t| t.parse().ok()).unwrap_or(0));
                }
                return None;
            }
            _ => return None,
        };
        match (
            items.first().and_then(Value::text),
            items.get(1).and_then(Value::text),
        ) {
            (Some("ssubscribe"), Some(channel)) => {
                if let Some(confirmed) = self.followed.get_mut(channel) {
                    *confirmed = true;
                }
                if self.to_resume.remove(channel) {
                    if let Some(room) = room_from_channel(&self.prefix, channel) {
                        let after = self.last_offset.unwrap_or(0);
                        let _ = self.arrivals.send(Relayed::Resumed { room, after });
                    }
                }
                for reply in self.waiting.remove(channel).unwrap_or_default() {
                    let _ = reply.send(());
                }
            }
            // Redis unsubscribed a channel we still follow: its slot moved.
            (Some("sunsubscribe"), Some(channel)) if self.followed.get(channel) == Some(&true) => {
                return Some(Ended::Failed(format!(
                    "{channel} was unsubscribed by Redis"
                )));
            }
            (Some("smessage"), Some(channel)) => {
                let room = room_from_channel(&self.prefix, channel)?;
                if let Some(message) = items.get(2).and_then(Value::text) {
                    if let Some(event) = parse_message(room, message) {
                        let offset = event.offset;
                        self.last_offset = Some(self.last_offset.map_or(offset, |o| o.max(offset)));
                        let _ = self.arrivals.send(Relayed::Live(event));
                    }
                }
            }
            _ => {}
        }
        None
    }
}

/// The `host:port` of a `MOVED <slot> <host:port>` error.
fn moved_to(error: &str) -> Option<String> {
    let mut words = error.split_whitespace();
    (words.next()? == "MOVED").then_some(())?;
    let _slot = words.next()?;
    words.next().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_connect_tries_the_other_known_node() {
        let mut route = Route::new("seed:7101".into());
        route.failed();
        assert_eq!(route.address(), "seed:7101", "the seed is all it knows");
        route.moved("owner:7102".into());
        assert_eq!(route.address(), "owner:7102");
        // The owner is gone (a failover): ask the seed where it went.
        route.failed();
        assert_eq!(route.address(), "seed:7101");
        // The seed is gone too: the owner may be back.
        route.failed();
        assert_eq!(route.address(), "owner:7102");
        route.failed();
        route.moved("new-owner:7103".into());
        assert_eq!(route.address(), "new-owner:7103");
    }

    #[test]
    fn moved_errors_name_the_node_to_ask() {
        assert_eq!(
            moved_to("MOVED 9102 127.0.0.1:7102").as_deref(),
            Some("127.0.0.1:7102")
        );
        assert_eq!(moved_to("ERR unknown command"), None);
        assert_eq!(moved_to("MOVED 9102"), None);
    }
}
