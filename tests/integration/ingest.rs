//! The backend's queue (§8b): entries `XADD`ed to `<prefix>{ingest}` reach
//! their room or user once, in stream order, whatever nodes and Redis do
//! meanwhile. Registered in scripts/test as multi-node (run one at a time).

use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::process::{Node, SOUK};
use crate::recovery::connect_with;

/// Quick takeover, so that fault tests wait a second, not ten.
fn fast(s: &mut Settings) {
    s.ingest.lease = Duration::from_millis(1000);
    s.ingest.claim_idle = Duration::from_millis(1000);
}

/// [`fast`] for a node run as a process, which reads its environment.
const FAST_ENV: [(&str, &str); 2] = [
    ("SOUK_INGEST_LEASE_MS", "1000"),
    ("SOUK_INGEST_CLAIM_IDLE_MS", "1000"),
];

fn stream(prefix: &str) -> String {
    format!("{prefix}{{ingest}}")
}

/// Appends an entry as the backend does; answers its stream id.
fn xadd(prefix: &str, fields: &[(&str, &str)]) -> String {
    let mut redis = redis_connection().unwrap();
    let mut cmd = redis::cmd("XADD");
    cmd.arg(stream(prefix)).arg("*");
    for (name, value) in fields {
        cmd.arg(*name).arg(*value);
    }
    cmd.query(&mut *redis).unwrap()
}

/// `tick` number `n` to `room`, with idempotency key `t{n}`.
fn tick(prefix: &str, room: &str, n: i64) {
    xadd(
        prefix,
        &[
            ("kind", "room_event"),
            ("target", room),
            ("event", "tick"),
            ("data", &n.to_string()),
            ("id", &format!("t{n}")),
        ],
    );
}

/// Waits for ticks `from..to`, in order, then for no more.
async fn expect_ticks(client: &mut Client, from: i64, to: i64) {
    for n in from..to {
        assert_eq!(client.wait_event("tick").await, vec![json!(n)], "tick {n}");
    }
    client
        .assert_no_event("tick", Duration::from_millis(500))
        .await;
}

fn query<T: redis::FromRedisValue>(parts: &[&str]) -> T {
    let mut redis = redis_connection().unwrap();
    let mut cmd = redis::cmd(parts[0]);
    for part in &parts[1..] {
        cmd.arg(*part);
    }
    cmd.query(&mut *redis).unwrap()
}

/// Entries of the group still pending (read, not acknowledged).
fn pending(prefix: &str) -> i64 {
    let summary: Vec<redis::Value> = query(&["XPENDING", &stream(prefix), "souk"]);
    match summary.first() {
        Some(redis::Value::Int(n)) => *n,
        other => panic!("XPENDING: {other:?}"),
    }
}

#[actix_web::test]
async fn entries_reach_a_listing_room_on_two_nodes_once_and_in_order() {
    let nodes = TestApp::spawn_cluster(2, |_| {}).await;
    let prefix = nodes[0].redis_prefix();
    nodes[0].listing("l1", "sella").await;
    let mut ann = nodes[0].watching("ann", "l1").await;
    let mut bob = nodes[1].watching("bob", "l1").await;
    for n in 0..30 {
        tick(&prefix, "listing:l1", n);
    }
    expect_ticks(&mut ann, 0, 30).await;
    expect_ticks(&mut bob, 0, 30).await;
    eventually("every entry acknowledged", || async {
        pending(&prefix) == 0
    })
    .await;
    let delivered: i64 = [&nodes[0], &nodes[1]]
        .iter()
        .map(|node| async { counter(&node.metrics().await, "delivered") })
        .collect::<futures_util::future::JoinAll<_>>()
        .await
        .into_iter()
        .sum();
    assert_eq!(delivered, 30, "one node delivered each entry once");
}

/// `souk_ingest_total{outcome}` in a node's metrics text.
fn counter(metrics: &str, outcome: &str) -> i64 {
    let series = format!("souk_ingest_total{{outcome=\"{outcome}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .unwrap_or_else(|| panic!("{series} in {metrics}"))
        .parse()
        .unwrap()
}

#[actix_web::test]
async fn a_notification_reaches_every_tab_of_the_user() {
    let nodes = TestApp::spawn_cluster(2, |_| {}).await;
    let prefix = nodes[0].redis_prefix();
    let mut tabs = vec![
        nodes[0].connect("ann").await,
        nodes[0].connect("ann").await,
        nodes[1].connect("ann").await,
    ];
    let mut other = nodes[1].connect("bob").await;
    xadd(
        &prefix,
        &[
            ("kind", "notification"),
            ("target", "ann"),
            ("data", r#"{"kind":"payout","data":{"amount":5}}"#),
            ("id", "n1"),
        ],
    );
    for tab in &mut tabs {
        assert_eq!(
            tab.wait_event("notification").await,
            vec![json!({"kind": "payout", "data": {"amount": 5}})]
        );
    }
    other
        .assert_no_event("notification", Duration::from_millis(300))
        .await;
}

#[actix_web::test]
async fn a_repeated_id_is_dropped() {
    let node = TestApp::spawn().await;
    let prefix = node.redis_prefix();
    node.listing("l1", "sella").await;
    let mut ann = node.watching("ann", "l1").await;
    let entry = |id: &str, n: &str| {
        xadd(
            &prefix,
            &[
                ("kind", "room_event"),
                ("target", "listing:l1"),
                ("event", "tick"),
                ("data", n),
                ("id", id),
            ],
        )
    };
    entry("a", "0");
    entry("a", "99"); // the backend's retry
    entry("b", "1");
    expect_ticks(&mut ann, 0, 2).await;
    // Later, within the window: still a repeat.
    entry("a", "98");
    entry("c", "2");
    assert_eq!(ann.wait_event("tick").await, vec![json!(2)]);
    ann.assert_no_event("tick", Duration::from_millis(300))
        .await;
    let metrics = node.metrics().await;
    assert_eq!(counter(&metrics, "duplicate"), 2);
    assert_eq!(counter(&metrics, "delivered"), 3);
    assert_eq!(pending(&prefix), 0, "repeats are acknowledged too");
}

#[actix_web::test]
async fn malformed_entries_go_to_the_dead_letters_and_the_next_one_arrives() {
    let node = TestApp::spawn().await;
    let prefix = node.redis_prefix();
    node.listing("l1", "sella").await;
    let mut ann = node.watching("ann", "l1").await;
    let bad = xadd(
        &prefix,
        &[
            ("kind", "room_event"),
            ("target", "listing:l1"),
            ("event", "bid:place"),
            ("data", "{}"),
            ("id", "x1"),
        ],
    );
    xadd(&prefix, &[("kind", "room_event"), ("id", "x2")]);
    xadd(
        &prefix,
        &[
            ("kind", "room_event"),
            ("target", "listing:l1"),
            ("event", "tick"),
            ("data", "{not json"),
            ("id", "x3"),
        ],
    );
    tick(&prefix, "listing:l1", 0);
    expect_ticks(&mut ann, 0, 1).await;
    let dead: Vec<(String, Vec<String>)> =
        query(&["XRANGE", &format!("{}:dead", stream(&prefix)), "-", "+"]);
    assert_eq!(dead.len(), 3, "{dead:?}");
    let field = |i: usize, name: &str| -> String {
        dead[i]
            .1
            .chunks(2)
            .find(|pair| pair[0] == name)
            .map(|pair| pair[1].clone())
            .unwrap_or_default()
    };
    assert_eq!(field(0, "entry"), bad);
    assert_eq!(
        field(0, "event"),
        "bid:place",
        "the entry's fields are kept"
    );
    assert!(field(0, "reason").contains("reserved"), "{dead:?}");
    assert!(field(1, "reason").contains("missing"), "{dead:?}");
    assert!(field(2, "reason").contains("JSON"), "{dead:?}");
    assert_eq!(pending(&prefix), 0, "dead letters are acknowledged");
    assert_eq!(counter(&node.metrics().await, "dead"), 3);
}

#[actix_web::test]
async fn entries_appended_while_every_node_is_stopped_arrive_in_order_once_back() {
    let nodes = TestApp::spawn_cluster(2, |_| {}).await;
    let prefix = nodes[0].redis_prefix();
    nodes[0].listing("l1", "sella").await;
    let (mut ann, hello) = connect_with(&nodes[0], &nodes[0].token("ann"), None).await;
    let pid = hello["pid"].as_str().unwrap().to_owned();
    ann.emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    tick(&prefix, "listing:l1", 0);
    let (_, offset) = ann.wait_event_with_offset("tick").await;
    let offset = offset.unwrap();
    for node in &nodes {
        node.stopper().stop().await;
    }
    for n in 1..=20 {
        tick(&prefix, "listing:l1", n);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pending(&prefix), 0, "no stopped node reads");
    let back = nodes[0].another_node("node-back");
    let (mut ann, hello) = connect_with(&back, &back.token("ann"), Some((&pid, &offset))).await;
    assert_eq!(hello["pid"], pid.as_str(), "recovered");
    expect_ticks(&mut ann, 1, 21).await;
}

#[actix_web::test]
async fn a_redis_outage_pauses_reading_and_it_resumes_without_repeats() {
    let proxy = RedisProxy::start().await;
    let node = TestApp::spawn_with(|s| {
        fast(s);
        s.redis_url = proxy.url.clone();
    })
    .await;
    let prefix = node.redis_prefix();
    node.listing("l1", "sella").await;
    let mut ann = node.watching("ann", "l1").await;
    // Redis goes away just after a batch was published, before its
    // acknowledgement: it is read again once Redis is back.
    proxy.go_down_when_sent(b"XACK");
    for n in 0..10 {
        tick(&prefix, "listing:l1", n);
    }
    eventually("the outage", || async { proxy.is_down() }).await;
    for n in 10..20 {
        tick(&prefix, "listing:l1", n);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.come_back();
    expect_ticks(&mut ann, 0, 20).await;
    eventually("every entry acknowledged", || async {
        pending(&prefix) == 0
    })
    .await;
}

/// A node that read entries dies (SIGKILL) before acknowledging them;
/// the survivor takes them over and delivers each once. `needle` is the
/// command at which the doomed node loses Redis: before it published
/// (`{events}:log`, in the publish script's keys) or after (`XACK`).
async fn killed_holder(needle: &[u8]) {
    let db = TestDb::create();
    let prefix = format!("{}:", db.name);
    let proxy = RedisProxy::start().await;
    let mut doomed_cmd = Command::new("sh");
    doomed_cmd.args([
        "-c",
        &format!("SOUK_REDIS_URL={} exec \"$0\" \"$@\"", proxy.url),
        SOUK,
    ]);
    doomed_cmd.envs(FAST_ENV);
    let doomed = Node::spawn_with(&db, "doomed", doomed_cmd);
    let lease = format!("{}:lease", stream(&prefix));
    eventually("the doomed node holds the lease", || async {
        query::<Option<String>>(&["GET", &lease]).is_some_and(|h| h.starts_with("doomed/"))
    })
    .await;
    let mut survivor_cmd = Command::new(SOUK);
    survivor_cmd.envs(FAST_ENV);
    let survivor = Node::spawn_with(&db, "survivor", survivor_cmd);

    let api = |path: &str| format!("http://{}{path}", survivor.address);
    let service = hs256(
        json!({"sub": "backend", "role": "service", "exp": chrono::Utc::now().timestamp() + 600}),
    );
    let resp = awc::Client::new()
        .put(api("/api/v1/listings/l1"))
        .bearer_auth(&service)
        .send_json(&json!({"sellerId": "sella", "title": "Bike", "price": 1, "currency": "EUR"}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let mut ann = Client::open_url(&survivor.ws_url(), None).await;
    let token = hs256(json!({"sub": "ann", "exp": chrono::Utc::now().timestamp() + 600}));
    assert!(ann.connect(Some(&token)).await.starts_with("40{"));
    let ack = ann
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    proxy.go_down_when_sent(needle);
    for n in 0..40 {
        tick(&prefix, "listing:l1", n);
    }
    eventually("the doomed node loses Redis", || async { proxy.is_down() }).await;
    assert!(
        pending(&prefix) > 0,
        "the doomed node holds pending entries"
    );
    drop(doomed); // SIGKILL
    for n in 40..60 {
        tick(&prefix, "listing:l1", n);
    }
    let mut slow = ann;
    slow.wait = Duration::from_secs(10);
    expect_ticks(&mut slow, 0, 60).await;
    eventually("every entry acknowledged", || async {
        pending(&prefix) == 0
    })
    .await;
}

#[actix_web::test]
async fn entries_a_killed_node_read_but_did_not_publish_are_delivered_once_by_another() {
    killed_holder(b"{events}:log").await;
}

#[actix_web::test]
async fn entries_a_killed_node_published_but_did_not_acknowledge_are_not_repeated() {
    killed_holder(b"XACK").await;
}

#[actix_web::test]
async fn ingestion_can_be_turned_off() {
    let node = TestApp::spawn_with(|s| s.ingest.enabled = false).await;
    let prefix = node.redis_prefix();
    let mut ann = node.connect("ann").await;
    xadd(
        &prefix,
        &[
            ("kind", "notification"),
            ("target", "ann"),
            ("data", r#"{"kind":"k"}"#),
            ("id", "n1"),
        ],
    );
    ann.assert_no_event("notification", Duration::from_millis(500))
        .await;
    let value: Value = json!(query::<i64>(&["XLEN", &stream(&prefix)]));
    assert_eq!(value, json!(1), "left in the queue");
}

/// A test database whose queue holds ticks 0 to 4, of which a consumer
/// `ghost` (a reader that died) read the first three and acknowledged none.
fn ghost_holds_three_of_five() -> (TestDb, String) {
    let db = TestDb::create();
    let prefix = format!("{}:", db.name);
    let key = stream(&prefix);
    for n in 0..5 {
        tick(&prefix, "listing:l1", n);
    }
    let _: redis::Value = query(&["XGROUP", "CREATE", &key, "souk", "0"]);
    let read: redis::Value = query(&[
        "XREADGROUP",
        "GROUP",
        "souk",
        "ghost",
        "COUNT",
        "3",
        "STREAMS",
        &key,
        ">",
    ]);
    assert!(matches!(read, redis::Value::Array(_)), "{read:?}");
    assert_eq!(pending(&prefix), 3);
    (db, prefix)
}

/// What a reader that died leaves, made by hand (so that it runs on a
/// Redis Cluster too, where the proxy of the SIGKILL tests cannot stand):
/// a lease about to run out and entries read, not acknowledged. The node
/// waits for the lease, takes the entries over, and delivers them before
/// the newer ones.
#[actix_web::test]
async fn entries_a_dead_reader_left_pending_go_out_before_newer_ones() {
    let (db, prefix) = ghost_holds_three_of_five();
    let key = stream(&prefix);
    let _: redis::Value = query(&["SET", &format!("{key}:lease"), "ghost/1", "PX", "60000"]);
    let node = TestApp::start(settings_for(&db, fast), db);
    node.listing("l1", "sella").await;
    let mut ann = node.watching("ann", "l1").await;
    // Nothing moves while the ghost's lease lasts.
    ann.assert_no_event("tick", Duration::from_millis(300))
        .await;
    for n in 5..8 {
        tick(&prefix, "listing:l1", n);
    }
    // The ghost dies: its lease runs out.
    let _: redis::Value = query(&["PEXPIRE", &format!("{key}:lease"), "300"]);
    // Its three first, then the two it did not read, then the rest.
    expect_ticks(&mut ann, 0, 8).await;
    eventually("every entry acknowledged", || async {
        pending(&prefix) == 0
    })
    .await;
}

/// Entries another reader holds and that are not idle long enough to take
/// over hold back the newer ones, and `souk_ingest_lag` counts them all.
#[actix_web::test]
async fn the_lag_counts_entries_held_and_unread() {
    let (db, prefix) = ghost_holds_three_of_five();
    let node = TestApp::start(
        settings_for(&db, |s| s.ingest.claim_idle = Duration::from_millis(60_000)),
        db,
    );
    let lag = || async {
        let text = node.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix("souk_ingest_lag "))
            .map(str::to_owned)
    };
    eventually("the lag is 5", || async {
        lag().await.as_deref() == Some("5")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lag().await.as_deref(), Some("5"), "nothing newer went out");
    assert_eq!(pending(&prefix), 3);
}

/// A Redis server of the test's own, with an append-only file, that can be
/// stopped and started again on the same port and data.
struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("souk-ingest-redis-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = OwnRedis {
            port,
            dir,
            child: None,
        };
        redis.up();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/test installs it)");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + WAIT;
        while redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_err()
        {
            assert!(std::time::Instant::now() < deadline, "redis-server started");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops it as a restart does (SIGTERM: it writes its file and exits).
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let _ = child.wait();
        }
    }

    /// `tick` number `n` to listing l1, as [`tick`] appends it.
    fn tick(&self, prefix: &str, n: i64) {
        let mut conn = redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .unwrap();
        let (data, id) = (n.to_string(), format!("t{n}"));
        let _: String = redis::cmd("XADD")
            .arg(stream(prefix))
            .arg("*")
            .arg(&[
                "kind",
                "room_event",
                "target",
                "listing:l1",
                "event",
                "tick",
            ])
            .arg(&["data", &data, "id", &id])
            .query(&mut conn)
            .unwrap();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.down();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[actix_web::test]
async fn a_redis_restart_mid_stream_loses_and_repeats_nothing() {
    let mut redis = OwnRedis::start();
    let url = redis.url();
    let node = TestApp::spawn_with(|s| {
        fast(s);
        s.redis_url = url.clone();
        // Small batches: the restart falls in the middle of the stream.
        s.ingest.batch = 5;
    })
    .await;
    let prefix = node.redis_prefix();
    node.listing("l1", "sella").await;
    let mut ann = node.watching("ann", "l1").await;
    for n in 0..200 {
        redis.tick(&prefix, n);
    }
    assert_eq!(ann.wait_event("tick").await, vec![json!(0)]);
    redis.down();
    tokio::time::sleep(Duration::from_millis(500)).await;
    redis.up();
    for n in 200..220 {
        redis.tick(&prefix, n);
    }
    let mut slow = ann;
    slow.wait = Duration::from_secs(10);
    expect_ticks(&mut slow, 1, 220).await;
}
