//! The node's Redis subscriber: one connection that follows the shard
//! channels (SSUBSCRIBE) of the rooms this node has members in, and hands
//! every message to the registry. It reconnects by itself and subscribes
//! again to everything it followed.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use actix::Recipient;
use bytes::BytesMut;
use deadpool_redis::redis::{ConnectionAddr, IntoConnectionInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::resp::{self, Value};
use super::{room_from_channel, Incoming};
use crate::store::StoreError;

/// How long to wait before connecting again after a failure.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

enum Command {
    Subscribe(String, oneshot::Sender<()>),
    Unsubscribe(String),
}

/// A handle on the node's subscriber; cheap to clone.
#[derive(Clone)]
pub struct Subscriber {
    commands: mpsc::UnboundedSender<Command>,
}

/// Where the subscriber connects, and how it authenticates.
#[derive(Debug, Clone)]
pub struct Target {
    address: String,
    auth: Option<Vec<Vec<u8>>>,
}

impl Target {
    /// Reads a Redis URL.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        let info = url
            .into_connection_info()
            .map_err(|err| StoreError::Internal(format!("bad Redis URL: {err}")))?;
        let address = match info.addr() {
            ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            other => {
                return Err(StoreError::Internal(format!(
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
        Ok(Target { address, auth })
    }
}

impl Subscriber {
    /// Starts the subscriber task on the current runtime.
    pub fn start(target: Target, prefix: String, deliver: Recipient<Incoming>) -> Self {
        let (commands, rx) = mpsc::unbounded_channel();
        let task = Task {
            address: target.address,
            auth: target.auth,
            prefix,
            deliver,
            wanted: HashSet::new(),
            confirmed: HashSet::new(),
            waiting: HashMap::new(),
        };
        actix_web::rt::spawn(task.run(rx));
        Subscriber { commands }
    }

    /// Follows a channel; the answer comes once Redis confirmed it.
    pub fn subscribe(&self, channel: String) -> oneshot::Receiver<()> {
        let (reply, confirmed) = oneshot::channel();
        let _ = self.commands.send(Command::Subscribe(channel, reply));
        confirmed
    }

    /// Stops following a channel.
    pub fn unsubscribe(&self, channel: String) {
        let _ = self.commands.send(Command::Unsubscribe(channel));
    }
}

struct Task {
    address: String,
    auth: Option<Vec<Vec<u8>>>,
    prefix: String,
    deliver: Recipient<Incoming>,
    wanted: HashSet<String>,
    confirmed: HashSet<String>,
    waiting: HashMap<String, Vec<oneshot::Sender<()>>>,
}

enum Ended {
    /// Every handle is gone: the node is stopping.
    Closed,
    Failed(String),
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Command>) {
        loop {
            let ended = match TcpStream::connect(&self.address).await {
                Ok(stream) => self.serve(stream, &mut rx).await,
                Err(err) => Ended::Failed(err.to_string()),
            };
            match ended {
                Ended::Closed => return,
                Ended::Failed(why) => {
                    log::warn!("redis subscriber on {}: {why}; reconnecting", self.address);
                    self.confirmed.clear();
                    let pause = tokio::time::sleep(RECONNECT_DELAY);
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
        }
    }

    /// Records a command; returns the bytes to send, if any.
    fn take(&mut self, command: Command) -> Option<Vec<u8>> {
        match command {
            Command::Subscribe(channel, reply) => {
                if self.confirmed.contains(&channel) {
                    let _ = reply.send(());
                    return None;
                }
                self.waiting.entry(channel.clone()).or_default().push(reply);
                self.wanted
                    .insert(channel.clone())
                    .then(|| resp::encode(&[b"SSUBSCRIBE", channel.as_bytes()]))
            }
            Command::Unsubscribe(channel) => {
                self.confirmed.remove(&channel);
                self.waiting.remove(&channel);
                self.wanted
                    .remove(&channel)
                    .then(|| resp::encode(&[b"SUNSUBSCRIBE", channel.as_bytes()]))
            }
        }
    }

    async fn serve(
        &mut self,
        mut stream: TcpStream,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Ended {
        let _ = stream.set_nodelay(true);
        if let Some(auth) = &self.auth {
            let parts: Vec<&[u8]> = auth.iter().map(Vec::as_slice).collect();
            if let Err(err) = stream.write_all(&resp::encode(&parts)).await {
                return Ended::Failed(err.to_string());
            }
        }
        for channel in &self.wanted {
            let command = resp::encode(&[b"SSUBSCRIBE", channel.as_bytes()]);
            if let Err(err) = stream.write_all(&command).await {
                return Ended::Failed(err.to_string());
            }
        }
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            tokio::select! {
                command = rx.recv() => {
                    let Some(command) = command else { return Ended::Closed };
                    if let Some(bytes) = self.take(command) {
                        if let Err(err) = stream.write_all(&bytes).await {
                            return Ended::Failed(err.to_string());
                        }
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
                                self.handle(value);
                            }
                            Ok(None) => break,
                            Err(_) => return Ended::Failed("malformed reply".into()),
                        }
                    }
                }
            }
        }
    }

    fn handle(&mut self, value: Value) {
        let items = match value {
            Value::Array(Some(items)) => items,
            Value::Error(err) => {
                log::warn!("redis subscriber: {err}");
                return;
            }
            _ => return,
        };
        match (
            items.first().and_then(Value::text),
            items.get(1).and_then(Value::text),
        ) {
            (Some("ssubscribe"), Some(channel)) => {
                if self.wanted.contains(channel) {
                    self.confirmed.insert(channel.to_owned());
                }
                for reply in self.waiting.remove(channel).unwrap_or_default() {
                    let _ = reply.send(());
                }
            }
            (Some("smessage"), Some(channel)) => {
                let Some(room) = room_from_channel(&self.prefix, channel) else {
                    return;
                };
                if let Some(message) = items.get(2).and_then(Value::text) {
                    if let Some(incoming) = Incoming::parse(room, message) {
                        self.deliver.do_send(incoming);
                    }
                }
            }
            _ => {}
        }
    }
}
