//! The test harness: `TestApp` (a node with its own database) and `Client`
//! (a raw Socket.IO v5 client over a real WebSocket).

use std::collections::HashMap;
use std::time::Duration;

use actix_http::ws;
use awc::BoxedSocket;
use chrono::Utc;
use diesel::{Connection, PgConnection, RunQueryDsl};
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use souk::settings::Settings;
use souk::Application;

/// The nodes' HS256 secret: 32 bytes or more, as outside dev mode a node
/// refuses a shorter one.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";
/// How long a test waits for any one frame.
pub const WAIT: Duration = Duration::from_secs(5);

/// A database's URL. Without TLS: Postgres is on this machine, and with
/// TLS libpq left OpenSSL work to the test process's exit, where
/// libcrypto's cleanup crashed it once (SIGSEGV in libcrypto.so.3 after
/// every test had passed).
pub fn pg_url(database: &str) -> String {
    format!("{}/{database}?sslmode=disable", pg_admin_url())
}

pub fn pg_admin_url() -> String {
    std::env::var("SOUK_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub fn redis_url() -> String {
    std::env::var("SOUK_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Whether the tests' Redis is a Redis Cluster (scripts/test runs some
/// suites on one too).
pub fn redis_is_cluster() -> bool {
    static CLUSTER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CLUSTER.get_or_init(|| {
        let mut conn = redis::Client::open(redis_url())
            .and_then(|c| c.get_connection())
            .expect("connect to Redis (is it running? scripts/test starts it)");
        let info: String = redis::cmd("INFO").arg("cluster").query(&mut conn).unwrap();
        info.lines().any(|line| line.trim() == "cluster_enabled:1")
    })
}

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

/// A database made for one test and dropped after it.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn create() -> TestDb {
        let name = format!("souk_test_{}", souk::state::random_id(12).to_lowercase());
        let mut admin = PgConnection::establish(&pg_url("postgres"))
            .expect("connect to Postgres (is it running? scripts/test starts it)");
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create test database");
        let url = pg_url(&name);
        souk::store::db::migrate(&url).expect("migrate test database");
        TestDb { name, url }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // The node's Redis keys carry the database's name as their prefix.
        if let Ok(mut redis) = redis_connection() {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:*", self.name))
                .query(&mut *redis)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<i64, _> = redis::cmd("DEL").arg(keys).query(&mut *redis);
            }
        }
        if let Ok(mut admin) = PgConnection::establish(&pg_url("postgres")) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// A running node.
pub struct TestApp {
    pub address: String,
    stopper: souk::Stopper,
    pub state: actix_web::web::Data<souk::state::AppState>,
    /// Held so the database lives as long as the node (or nodes), and is dropped after.
    _db: std::sync::Arc<TestDb>,
    /// The HS256 secret the node checks tokens with.
    secret: String,
}

/// Settings a test may change before its node starts.
pub fn settings_for(db: &TestDb, extra: &[(&str, &str)]) -> Settings {
    let mut values: HashMap<String, String> = [
        ("SOUK_HTTP_ADDR", "127.0.0.1:0"),
        ("SOUK_DATABASE_URL", db.url.as_str()),
        ("SOUK_JWT_SECRET", SECRET),
        ("SOUK_WORKERS", "1"),
        ("SOUK_DB_POOL_SIZE", "4"),
        ("SOUK_NODE_ID", "test-node"),
        // Every test client opens from 127.0.0.1: the per-address open
        // limit is off unless a test (`hostile::`) sets it.
        ("SOUK_OPENS_PER_ADDR_BURST", "0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    values.insert("SOUK_REDIS_URL".into(), redis_url());
    // Each node gets its own Redis keys, so parallel tests never meet there.
    values.insert("SOUK_REDIS_PREFIX".into(), format!("{}:", db.name));
    for (k, v) in extra {
        values.insert((*k).to_owned(), (*v).to_owned());
    }
    // Dev mode signs with the fixed dev secret only (it refuses another).
    let dev = extra.iter().any(|(k, v)| *k == "SOUK_DEV" && *v == "1");
    if dev && !extra.iter().any(|(k, _)| *k == "SOUK_JWT_SECRET") {
        values.remove("SOUK_JWT_SECRET");
    }
    Settings::from_values(&values).expect("test settings")
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(&[]).await
    }

    /// A node with some settings overridden (`SOUK_*` names).
    pub async fn spawn_with(extra: &[(&str, &str)]) -> TestApp {
        let db = TestDb::create();
        let settings = settings_for(&db, extra);
        Self::start(settings, db)
    }

    /// `n` nodes on one database and one Redis prefix, as a cluster is.
    pub async fn spawn_cluster(n: usize, extra: &[(&str, &str)]) -> Vec<TestApp> {
        let db = std::sync::Arc::new(TestDb::create());
        (0..n)
            .map(|i| {
                let node = format!("node-{i}");
                let mut values: Vec<(&str, &str)> = extra.to_vec();
                values.push(("SOUK_NODE_ID", &node));
                Self::start(settings_for(&db, &values), db.clone())
            })
            .collect()
    }

    pub fn start(settings: Settings, db: impl Into<std::sync::Arc<TestDb>>) -> TestApp {
        let db = db.into();
        let secret = match (&settings.jwt.secret, settings.dev) {
            (Some(secret), _) => secret.clone(),
            (None, true) => souk::settings::DEV_JWT_SECRET.to_owned(),
            (None, false) => SECRET.to_owned(),
        };
        let app = Application::build(settings).expect("build app");
        let address = app.address().to_string();
        let state = app.state();
        let stopper = app.stopper();
        actix_web::rt::spawn(app.run_until_stopped());
        TestApp {
            address,
            stopper,
            state,
            _db: db,
            secret,
        }
    }

    pub fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/socket.io/?EIO=4&transport=websocket", self.address)
    }

    /// A user token signed with the node's secret.
    pub fn token(&self, sub: &str) -> String {
        sign(
            &self.secret,
            json!({ "sub": sub, "exp": Utc::now().timestamp() + 3600 }),
        )
    }

    /// A token with a role claim.
    pub fn token_with_role(&self, sub: &str, role: &str) -> String {
        sign(
            &self.secret,
            json!({ "sub": sub, "role": role, "exp": Utc::now().timestamp() + 3600 }),
        )
    }

    /// A client that has opened Engine.IO and CONNECTed as `sub`.
    pub async fn connect(&self, sub: &str) -> Client {
        let mut client = Client::open(self).await;
        let reply = client.connect(Some(&self.token(sub))).await;
        assert!(reply.starts_with("40{"), "CONNECT refused: {reply}");
        client
    }

    /// A handle that stops the node as SIGTERM does.
    pub fn stopper(&self) -> souk::Stopper {
        self.stopper.clone()
    }

    /// How many sessions and rooms the node's registry holds.
    pub async fn registry_stats(&self) -> souk::rooms::registry::Stats {
        self.state
            .registry
            .send(souk::rooms::registry::GetStats)
            .await
            .expect("registry answers")
    }

    /// The node's Prometheus text.
    pub async fn metrics(&self) -> String {
        let mut resp = awc::Client::new()
            .get(self.http("/metrics"))
            .send()
            .await
            .unwrap();
        String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap()
    }
}

/// Signs claims with the test secret.
pub fn hs256(claims: Value) -> String {
    sign(SECRET, claims)
}

/// Signs claims with an HS256 secret.
pub fn sign(secret: &str, claims: Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A raw Socket.IO client: sends and reads frames exactly as written.
pub struct Client {
    framed: actix_codec::Framed<BoxedSocket, ws::Codec>,
    /// Events read while waiting for something else.
    pub events: Vec<Value>,
    /// Acks read while waiting for another one.
    acks: HashMap<u64, Value>,
    pub open: Value,
    /// Answer the server's pings automatically.
    pub auto_pong: bool,
    /// How long a read waits for a frame.
    pub wait: Duration,
    next_ack: u64,
}

/// What a read found.
#[derive(Debug)]
pub enum Frame {
    Text(String),
    Closed(Option<ws::CloseReason>),
}

impl Client {
    /// Opens a WebSocket and reads the Engine.IO open packet.
    pub async fn open(app: &TestApp) -> Client {
        Self::open_url(&app.ws_url(), None).await
    }

    pub async fn open_url(url: &str, bearer: Option<&str>) -> Client {
        let mut request = awc::Client::new().ws(url).max_frame_size(16 * 1024 * 1024);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let (_, framed) = request.connect().await.expect("websocket upgrade");
        let mut client = Client::from_framed(framed);
        let open = client.recv_text().await;
        let body = open.strip_prefix('0').expect("open packet first");
        client.open = serde_json::from_str(body).expect("open packet JSON");
        client
    }

    /// A client on an open WebSocket whose open packet is not to be read
    /// (an upgrade from polling).
    pub fn from_framed(framed: actix_codec::Framed<BoxedSocket, ws::Codec>) -> Client {
        Client {
            framed,
            events: Vec::new(),
            acks: HashMap::new(),
            open: Value::Null,
            auto_pong: true,
            wait: WAIT,
            next_ack: 0,
        }
    }

    pub async fn send(&mut self, text: &str) {
        self.framed
            .send(ws::Message::Text(text.to_owned().into()))
            .await
            .expect("send frame");
    }

    pub async fn send_message(&mut self, message: ws::Message) {
        self.framed.send(message).await.expect("send frame");
    }

    /// Sends CONNECT (with `{"token"}` when given) and returns the reply frame.
    pub async fn connect(&mut self, token: Option<&str>) -> String {
        match token {
            Some(token) => self.send(&format!("40{}", json!({ "token": token }))).await,
            None => self.send("40").await,
        }
        self.recv_text().await
    }

    /// The next frame, or the close.
    pub async fn recv(&mut self) -> Frame {
        loop {
            let frame = tokio::time::timeout(self.wait, self.framed.next())
                .await
                .expect("a frame within the wait");
            match frame {
                Some(Ok(ws::Frame::Text(bytes))) => {
                    let text = String::from_utf8(bytes.to_vec()).expect("utf-8 frame");
                    if text == "2" && self.auto_pong {
                        self.send("3").await;
                        continue;
                    }
                    return Frame::Text(text);
                }
                Some(Ok(ws::Frame::Close(reason))) => return Frame::Closed(reason),
                Some(Ok(ws::Frame::Ping(bytes))) => {
                    let _ = self.framed.send(ws::Message::Pong(bytes)).await;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Frame::Closed(None),
            }
        }
    }

    /// The next text frame; panics on a close.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Frame::Text(text) => text,
            Frame::Closed(reason) => panic!("closed while waiting for a frame: {reason:?}"),
        }
    }

    /// Reads until the server closes; returns the close reason.
    pub async fn expect_close(&mut self) -> Option<ws::CloseReason> {
        loop {
            match self.recv().await {
                Frame::Closed(reason) => return reason,
                Frame::Text(_) => {}
            }
        }
    }

    /// Emits an event with an ack id and returns the ack's reply object.
    pub async fn emit_ack(&mut self, name: &str, payload: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send(&format!("42{id}{}", json!([name, payload])))
            .await;
        self.wait_ack(id).await
    }

    /// Waits for `43<id>[reply]`, keeping events that arrive meanwhile.
    pub async fn wait_ack(&mut self, id: u64) -> Value {
        loop {
            if let Some(reply) = self.acks.remove(&id) {
                return reply;
            }
            let text = self.recv_text().await;
            if let Some(rest) = text.strip_prefix("43") {
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let ack_id: u64 = rest[..digits].parse().expect("ack id");
                let args: Value = serde_json::from_str(&rest[digits..]).expect("ack JSON");
                self.acks.insert(ack_id, args[0].clone());
                continue;
            }
            self.keep_event(&text);
        }
    }

    /// Waits for an event by name and returns its arguments after the name,
    /// without the room offset a room event carries last.
    pub async fn wait_event(&mut self, name: &str) -> Vec<Value> {
        self.wait_event_with_offset(name).await.0
    }

    /// Waits for an event by name: its arguments and its room offset.
    pub async fn wait_event_with_offset(&mut self, name: &str) -> (Vec<Value>, Option<String>) {
        if let Some(index) = self.events.iter().position(|e| e[0] == name) {
            let event = self.events.remove(index);
            return split_offset(&event);
        }
        loop {
            let text = self.recv_text().await;
            if let Some(body) = text.strip_prefix("42") {
                let event: Value = serde_json::from_str(body).expect("event JSON");
                if event[0] == name {
                    return split_offset(&event);
                }
                self.events.push(event);
            }
        }
    }

    /// Asserts that no event named `name` arrives within `within`.
    pub async fn assert_no_event(&mut self, name: &str, within: Duration) {
        assert!(
            !self.events.iter().any(|e| e[0] == name),
            "unexpected {name} already received"
        );
        let deadline = tokio::time::Instant::now() + within;
        while let Ok(frame) = tokio::time::timeout_at(deadline, self.framed.next()).await {
            match frame {
                Some(Ok(ws::Frame::Text(bytes))) => {
                    let text = String::from_utf8(bytes.to_vec()).unwrap();
                    if text == "2" {
                        self.send("3").await;
                        continue;
                    }
                    assert!(
                        !text.starts_with(&format!("42[\"{name}\"")),
                        "unexpected {name}: {text}"
                    );
                }
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    }

    fn keep_event(&mut self, text: &str) {
        if let Some(body) = text.strip_prefix("42") {
            if let Ok(event) = serde_json::from_str::<Value>(body) {
                self.events.push(event);
            }
        }
    }
}

/// The `server:error` payload of a frame, if it is one.
pub fn server_error(text: &str) -> Option<Value> {
    let event: Value = serde_json::from_str(text.strip_prefix("42")?).ok()?;
    (event[0] == "server:error").then(|| event[1].clone())
}

/// Polls `check` until it is true or the wait runs out.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}

impl TestApp {
    /// The marketplace backend's token.
    pub fn service_token(&self) -> String {
        self.token_with_role("backend", "service")
    }

    /// `PUT /api/v1/listings/{id}` with `body`; returns status and JSON.
    pub async fn put_listing(&self, id: &str, body: Value) -> (u16, Value) {
        let mut resp = awc::Client::new()
            .put(self.http(&format!("/api/v1/listings/{id}")))
            .bearer_auth(self.service_token())
            .send_json(&body)
            .await
            .unwrap();
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// A public fixed-price listing of `seller`'s.
    pub async fn listing(&self, id: &str, seller: &str) {
        let (status, body) = self
            .put_listing(
                id,
                json!({"sellerId": seller, "title": "Bike", "price": 10000, "currency": "EUR"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    /// A connection of `user` that watches `listing` (acked).
    pub async fn watching(&self, user: &str, listing: &str) -> Client {
        let mut client = self.connect(user).await;
        let ack = client
            .emit_ack("listing:watch", json!({"listingId": listing}))
            .await;
        assert_eq!(ack["ok"], true, "{user} watches {listing}: {ack}");
        client
    }

    /// `POST /api/v1/rooms/{room}/events` with `{event, data}`.
    pub async fn room_event(&self, room: &str, event: &str, data: Value) -> (u16, Value) {
        self.api(
            "POST",
            &format!("/api/v1/rooms/{room}/events"),
            Some(json!({"event": event, "data": data})),
        )
        .await
    }

    /// A service-token request with a JSON body; returns status and JSON.
    pub async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let client = awc::Client::new();
        let request = match method {
            "GET" => client.get(self.http(path)),
            "POST" => client.post(self.http(path)),
            "PUT" => client.put(self.http(path)),
            other => panic!("method {other}"),
        }
        .bearer_auth(self.service_token());
        let mut resp = match body {
            Some(body) => request.send_json(&body).await.unwrap(),
            None => request.send().await.unwrap(),
        };
        (
            resp.status().as_u16(),
            resp.json().await.unwrap_or(Value::Null),
        )
    }

    /// A `requested` booking of `buyer` on a new listing of `seller`'s,
    /// made through `listing:reserve`; returns the booking id.
    pub async fn booking(&self, listing: &str, seller: &str, buyer: &mut Client) -> String {
        self.listing(listing, seller).await;
        let ack = buyer
            .emit_ack(
                "listing:reserve",
                json!({"listingId": listing, "idempotencyKey": "k1"}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        ack["booking"]["id"].as_str().unwrap().to_owned()
    }
}

impl TestApp {
    /// How many audit entries with `action` the node's database holds.
    pub async fn audit_count(&self, action: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = PgConnection::establish(&self._db.url).unwrap();
        diesel::sql_query("SELECT count(*) AS n FROM audit_log WHERE action = $1")
            .bind::<diesel::sql_types::Text, _>(action)
            .get_result::<Count>(&mut conn)
            .unwrap()
            .n
    }

    /// Runs SQL against the node's database.
    pub fn sql(&self, query: &str) -> usize {
        let mut conn = PgConnection::establish(&self._db.url).unwrap();
        diesel::sql_query(query).execute(&mut conn).unwrap()
    }
}

impl TestApp {
    /// Cuts the node off from its database: no new connections, and the
    /// open ones are terminated.
    pub fn cut_postgres(&self) {
        let mut admin = PgConnection::establish(&pg_url("postgres")).unwrap();
        let name = &self._db.name;
        diesel::sql_query(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS false"))
            .execute(&mut admin)
            .unwrap();
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
        ))
        .execute(&mut admin)
        .unwrap();
    }

    /// Lets the node reach its database again.
    pub fn restore_postgres(&self) {
        let mut admin = PgConnection::establish(&pg_url("postgres")).unwrap();
        diesel::sql_query(format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            self._db.name
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
            .arg(format!("{}:*", self._db.name))
            .query(&mut *redis)
            .unwrap();
        if !keys.is_empty() {
            let _: i64 = redis::cmd("DEL").arg(keys).query(&mut *redis).unwrap();
        }
    }
}

/// An event's arguments after its name, and the offset when the last one is
/// a room offset (`<ms>-<seq>`).
pub fn split_offset(event: &Value) -> (Vec<Value>, Option<String>) {
    let mut args = event
        .as_array()
        .map(|a| a[1..].to_vec())
        .unwrap_or_default();
    let is_offset = |v: &Value| {
        v.as_str().is_some_and(|s| {
            s.split_once('-').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
            })
        })
    };
    if args.len() >= 2 && args.last().is_some_and(is_offset) {
        let offset = args.pop().and_then(|v| v.as_str().map(str::to_owned));
        return (args, offset);
    }
    (args, None)
}

impl TestApp {
    /// Rows of two integer columns.
    pub fn rows(&self, query: &str) -> Vec<(i64, i64)> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            auction_version: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            amount: i64,
        }
        let mut conn = PgConnection::establish(&self._db.url).unwrap();
        diesel::sql_query(query)
            .load::<Row>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|r| (r.auction_version, r.amount))
            .collect()
    }
}

impl TestApp {
    /// The node's Redis key prefix.
    pub fn redis_prefix(&self) -> String {
        format!("{}:", self._db.name)
    }

    /// Runs a Redis command.
    pub fn redis_cmd(&self, parts: &[&str]) {
        let mut redis = redis_connection().unwrap();
        let mut cmd = redis::cmd(parts[0]);
        for part in &parts[1..] {
            cmd.arg(*part);
        }
        let _: redis::Value = cmd.query(&mut *redis).unwrap();
    }
}

impl TestApp {
    /// Another node on this node's database and Redis prefix.
    pub fn another_node(&self, node_id: &str) -> TestApp {
        TestApp::start(
            settings_for(&self._db, &[("SOUK_NODE_ID", node_id)]),
            self._db.clone(),
        )
    }
}

/// The text of the repository's file at `path` (relative to its root).
pub fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("{}: {err}", full.display()))
}

impl TestApp {
    /// A client CONNECTed as `sub` with a role claim.
    pub async fn connect_with_role(&self, sub: &str, role: &str) -> Client {
        let mut client = Client::open(self).await;
        let reply = client.connect(Some(&self.token_with_role(sub, role))).await;
        assert!(reply.starts_with("40{"), "CONNECT refused: {reply}");
        client
    }
}

impl TestApp {
    /// The node's database URL, for a test's own connections.
    pub fn database_url(&self) -> String {
        self._db.url.clone()
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

impl TestApp {
    /// Runs several SQL statements against the node's database at once.
    pub fn batch_sql(&self, statements: &str) {
        use diesel::connection::SimpleConnection;
        let mut conn = PgConnection::establish(&self._db.url).unwrap();
        conn.batch_execute(statements).unwrap();
    }
}

impl TestApp {
    /// Another node on this node's database and Redis prefix, with some
    /// settings overridden.
    pub fn another_node_with(&self, node_id: &str, extra: &[(&str, &str)]) -> TestApp {
        let mut values = extra.to_vec();
        values.push(("SOUK_NODE_ID", node_id));
        TestApp::start(settings_for(&self._db, &values), self._db.clone())
    }
}
