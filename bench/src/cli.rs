//! Command-line parsing: the options every scenario shares, and a bag of
//! the scenario's own options that the scenario takes out one by one.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::{fail, Result};

pub const USAGE: &str = "\
souk-bench: a load generator for Socket.IO v5 servers that speak the souk contract

usage: souk-bench SCENARIO --url URL --secret SECRET [options]
       souk-bench report DIR... [--charts DIR] [--link-prefix PREFIX]
                 (tables and charts of `scripts/bench --compare` runs; report --help)

scenarios:
  auction    N bidders on one auction listing, each bidding up to --rate a second
  fanout     R listing rooms x M members, fed events through the server API
  chat       K buyer/seller pairs messaging in their bookings; checks Postgres after
  idle       N authenticated connections held open: connect rate, server RSS per connection
  churn      connections coming and going while S steady members stay in their rooms
  drops      members that drop their connection every few seconds and recover it,
             counting every event they should have got

options every scenario takes:
  --url URL                  server, http://host:port (required)
  --secret SECRET            HS256 secret the server checks tokens with (required)
  --server-pid PID           report this process's CPU seconds and RSS
  --watch-procs NAMES        also report the CPU seconds of every process with one
                             of these names (comma-separated, e.g. redis-server,postgres)
  --json FILE                write the results as JSON to FILE
  --sources IPS              local addresses to spread connections over
                             (comma-separated; default 127.0.0.1)
  --threads N                generator threads (default: one per core)
  --connect-concurrency N    connections being opened at once (default 200)
  --transport websocket|polling
                             Engine.IO transport of every connection (default
                             websocket); polling: long-polling, one GET outstanding
                             and POSTs for what the client sends, on two keep-alive
                             HTTP/1.1 connections per client

auction options:
  --bidders N                bidder connections (default 100)
  --watchers N               how many of them watch the listing and so get every
                             bid:new (default: all); the others learn the amount
                             from their own acks
  --duration SECS            how long they bid (default 10)
  --rate R                   bids a second per bidder (default 5, the server's limit)
  --bump N                   add a random 0..=N to each amount (default 3)
  --amounts known|rising     known (default): latest known amount + 1 + bump, as a
                             person bids; rising: rising with the send time, so a
                             bid is refused only when a later one got there first
                             (measures the server rather than the bidders' view)
  --inflight N               bids one bidder may have unanswered (default 1; a slot
                             that finds N unanswered is skipped and counted)
  --server-limit N           bids a second the server allows one bidder (default 5);
                             a bid waits until 1 s after the ack of the bid N back,
                             so the server never counts more (0: no such wait)
  --drain SECS               how long to wait for the last acks (default 5)
  --listing ID               listing id (default: a fresh random one)
  --database-url URL         afterwards, check with psql that every accepted bid's
                             version is in souk's bid log (table bids) in this
                             database; scripts/bench gives it when it runs souk

fanout options:
  --rooms R                  listings, one room each (default 10)
  --members M                watchers per room, one connection each (default 100)
  --publishers P             tasks posting POST /api/v1/rooms/listing:{id}/events,
                             one request at a time each (default 4)
  --rate N                   events a second in total, round-robin over the rooms
                             (default 100); deliveries/s is about N x M
  --duration SECS            how long they post (default 10)
  --drain SECS               how long members keep listening after (default 5)
  --via api|stream           api (default): POST each event; stream: XADD it to
                             souk's queue <prefix>{ingest} instead (§8b), one Redis
                             connection per publisher; POST latency becomes XADD latency
  --redis HOST:PORT          with --via stream: the Redis (default 127.0.0.1:6379;
                             on a cluster, the node serving the {ingest} slot)
  --prefix PREFIX            with --via stream: the server's SOUK_REDIS_PREFIX (default souk:)

chat options:
  --pairs K                  bookings, each with a buyer and a seller connection
                             (default 100)
  --rate N                   message:send a second in total, buyer and seller
                             taking turns (default 1000)
  --duration SECS            how long they send (default 10)
  --drain SECS               how long to wait for the last acks (default 5)
  afterwards every booking's message:history is read and each acked
  clientMsgId must be in it

idle options:
  --connections N            connections, each its own user, CONNECTed (default 1000)
  --hold SECS                how long they stay open once all are in (default 10)
  --connect-timeout SECS     how long one connection may take to open and CONNECT
                             (default 15); when none has connected for twice that
                             (at least 10 s), the rest are given up and the hold starts
  --processes K              generator processes (default 1): this binary runs itself
                             K times, each child with N/K connections and its share of
                             --sources (one process may hold only `ulimit -Hn` sockets)
  reported: connect rate, the server's RSS before / all connected / end of hold and
  per connection, its open files against its limit, its CPU while connecting and holding

churn options:
  --listings L               listing rooms (default 10)
  --members S                steady members, one connection each, watching listing
                             i mod L for the whole run (default 1000)
  --churners C               tasks looping open, CONNECT, listing:watch, close (default 50)
  --close clean|drop|mixed   churners leave with a close frame, by dropping the TCP
                             connection, or each in turn (default mixed)
  --rate N                   events a second posted to the rooms meanwhile (default 20)
  --duration SECS            how long they churn (default 10)
  --drain SECS               wait after the churn before checking (default 2)
  afterwards the server's connection count (GET /api/v1/cluster) must equal S and one
  more event posted to every room must reach all S members

drops options:
  --rooms R                  listings, one room and one publisher each (default 4)
  --members M                watchers per room, one connection each (default 50)
  --rate N                   events a second in total, numbered per room (default 40)
  --duration SECS            how long events flow and members drop (default 60)
  --drop-min SECS            a member stays connected a random time between
  --drop-max SECS            these, then drops its TCP connection with a reset
                             (defaults 2 and 6)
  --drain SECS               after the window, once all are back, how long members
                             keep listening (default 5)
  a dropped member waits 0.5-1.5 s and reconnects as socket.io-client >= 4.6 does
  (CONNECT {token, pid, offset}); not recovered, it watches its room again. Reported:
  delivered %, missing, duplicates, out of order, recovered and not
";

/// What the server is and how to reach it.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port` as written, for the Host header.
    pub authority: String,
    pub addr: SocketAddr,
    /// How Socket.IO connections reach it.
    pub transport: Transport,
}

/// The Engine.IO transport the connections use.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Transport {
    WebSocket,
    Polling,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::WebSocket => "websocket",
            Transport::Polling => "polling",
        }
    }
}

impl FromStr for Transport {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Transport, String> {
        match text {
            "websocket" => Ok(Transport::WebSocket),
            "polling" => Ok(Transport::Polling),
            other => Err(format!("websocket or polling, not {other:?}")),
        }
    }
}

impl Target {
    pub fn parse(url: &str) -> Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .ok_or("--url must start with http:// (TLS is not supported)")?;
        let authority = rest.split('/').next().unwrap_or_default().to_owned();
        if authority.is_empty() {
            return fail(format!("--url {url} has no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            authority.clone()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {with_port}: {e}"))?
            .next()
            .ok_or_else(|| format!("{with_port} resolves to nothing"))?;
        Ok(Target {
            authority,
            addr,
            transport: Transport::WebSocket,
        })
    }

    /// The WebSocket URL of the Engine.IO endpoint.
    pub fn ws_url(&self) -> String {
        format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            self.authority
        )
    }
}

/// The options every scenario shares.
#[derive(Clone, Debug)]
pub struct Common {
    pub url: String,
    pub target: Target,
    pub secret: String,
    pub server_pid: Option<u32>,
    pub watch_procs: Vec<String>,
    pub json: Option<PathBuf>,
    pub sources: Vec<IpAddr>,
    pub threads: usize,
    pub connect_concurrency: usize,
}

/// A scenario's own options, taken out by name; whatever is left over is
/// an error.
pub struct Options {
    values: BTreeMap<String, String>,
}

impl Options {
    /// The option's value parsed, or `default` when absent.
    pub fn take<T: FromStr>(&mut self, name: &str, default: T) -> Result<T> {
        match self.values.remove(name) {
            None => Ok(default),
            Some(text) => text
                .parse()
                .or_else(|_| fail(format!("--{name}: cannot understand {text:?}"))),
        }
    }

    /// The option's value as text, if given.
    pub fn take_text(&mut self, name: &str) -> Option<String> {
        self.values.remove(name)
    }

    /// Fails on any option nobody took.
    pub fn finish(self) -> Result<()> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(name) => fail(format!("unknown option --{name} (see --help)")),
        }
    }
}

/// What the command line asked for.
pub enum Command {
    Help,
    Run {
        scenario: String,
        common: Box<Common>,
        options: Options,
    },
}

pub fn parse(args: &[String]) -> Result<Command> {
    let mut scenario = None;
    let mut values = BTreeMap::new();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--help" || arg == "-h" || arg == "help" {
            return Ok(Command::Help);
        }
        if let Some(name) = arg.strip_prefix("--") {
            let (name, value) = match name.split_once('=') {
                Some((name, value)) => (name.to_owned(), value.to_owned()),
                None => {
                    let value = iter
                        .next()
                        .ok_or_else(|| format!("--{name} needs a value"))?;
                    (name.to_owned(), value.clone())
                }
            };
            values.insert(name, value);
        } else if scenario.is_none() {
            scenario = Some(arg.clone());
        } else {
            return fail(format!("unexpected argument {arg:?} (see --help)"));
        }
    }
    let Some(scenario) = scenario else {
        return Ok(Command::Help);
    };
    let mut options = Options { values };
    let url = options
        .take_text("url")
        .ok_or("--url is required (see --help)")?;
    let mut target = Target::parse(&url)?;
    target.transport = options.take("transport", Transport::WebSocket)?;
    let secret = options
        .take_text("secret")
        .ok_or("--secret is required (see --help)")?;
    let server_pid = match options.take_text("server-pid") {
        None => None,
        Some(text) => Some(
            text.parse()
                .map_err(|_| format!("--server-pid: not a pid: {text:?}"))?,
        ),
    };
    let watch_procs = options
        .take_text("watch-procs")
        .map(|text| {
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let json = options.take_text("json").map(PathBuf::from);
    let sources = match options.take_text("sources") {
        None => vec![IpAddr::from([127, 0, 0, 1])],
        Some(text) => text
            .split(',')
            .map(|s| {
                s.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| format!("--sources: not an IP address: {s:?}"))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?,
    };
    if sources.is_empty() {
        return fail("--sources is empty");
    }
    if let Some(bad) = sources
        .iter()
        .find(|ip| ip.is_ipv4() != target.addr.is_ipv4())
    {
        return fail(format!(
            "source {bad} and server {} are not the same IP version",
            target.addr
        ));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = options.take("threads", cores)?.max(1);
    let connect_concurrency = options.take("connect-concurrency", 200usize)?.max(1);
    Ok(Command::Run {
        scenario,
        common: Box::new(Common {
            url,
            target,
            secret,
            server_pid,
            watch_procs,
            json,
            sources,
            threads,
            connect_concurrency,
        }),
        options,
    })
}
