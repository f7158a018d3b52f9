//! Nodes under test: a database per test ([`TestDb`]), the settings a test
//! node starts from ([`test_settings`]), and [`TestApp`], a node started in
//! the test's own process on a free port.

use std::sync::Arc;

use chrono::Utc;
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::json;
use souk::settings::Settings;
use souk::Application;

use super::clients::{sign, Client};
use super::faults::redis_connection;

/// The nodes' HS256 secret: 32 bytes or more, as outside dev mode a node
/// refuses a shorter one.
pub const SECRET: &str = "integration-test-secret-0123456789abcdef";

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

/// The settings every test node starts from: souk's defaults, then what a
/// test node needs to live beside others on one machine.
pub fn test_settings(db: &TestDb) -> Settings {
    let mut settings = Settings::from_values(&Default::default()).expect("default settings");
    settings.http_addr = "127.0.0.1:0".into();
    settings.database_url = db.url.clone();
    settings.jwt.secret = Some(SECRET.into());
    settings.workers = 1;
    settings.db_pool_size = 4;
    settings.node_id = "test-node".into();
    // Every test client opens from 127.0.0.1: the per-address open limit is
    // off unless a test (`hostile::`) sets it.
    settings.guard.opens_per_addr.burst = 0.0;
    settings.redis_url = redis_url();
    // Each node gets its own Redis keys, so parallel tests never meet there.
    settings.redis_prefix = format!("{}:", db.name);
    settings
}

/// [`test_settings`] with a test's own changes made last.
pub fn settings_for(db: &TestDb, tweak: impl FnOnce(&mut Settings)) -> Settings {
    let mut settings = test_settings(db);
    tweak(&mut settings);
    settings
}

/// Dev mode, as `SOUK_DEV=1` gives it: it signs with the fixed dev secret
/// only (a node refuses another), so the test secret goes. Pass it as the
/// tweak (`TestApp::spawn_with(dev_mode)`) or call it from one.
pub fn dev_mode(settings: &mut Settings) {
    settings.dev = true;
    settings.jwt.secret = None;
}

/// A running node.
pub struct TestApp {
    pub address: String,
    stopper: souk::Stopper,
    pub state: actix_web::web::Data<souk::state::AppState>,
    /// Held so the database lives as long as the node (or nodes), and is
    /// dropped after; the other helper files reach it for their lookups.
    pub(super) db: Arc<TestDb>,
    /// The HS256 secret the node checks tokens with.
    secret: String,
}

impl TestApp {
    /// A node with the test settings.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A node with some settings changed, e.g.
    /// `TestApp::spawn_with(|s| s.max_payload = 1000)`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let db = TestDb::create();
        let settings = settings_for(&db, tweak);
        Self::start(settings, db)
    }

    /// `n` nodes (`node-0`, `node-1`, ...) on one database and one Redis
    /// prefix, as a cluster is; `tweak` runs on each node's settings
    /// (`|_| {}` for none).
    pub async fn spawn_cluster(n: usize, tweak: impl Fn(&mut Settings)) -> Vec<TestApp> {
        let db = Arc::new(TestDb::create());
        (0..n)
            .map(|i| {
                let settings = settings_for(&db, |s| {
                    s.node_id = format!("node-{i}");
                    tweak(s);
                });
                Self::start(settings, db.clone())
            })
            .collect()
    }

    /// Another node on this node's database and Redis prefix.
    pub fn another_node(&self, node_id: &str) -> TestApp {
        self.another_node_with(node_id, |_| {})
    }

    /// Another node on this node's database and Redis prefix, with some
    /// settings changed.
    pub fn another_node_with(&self, node_id: &str, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let settings = settings_for(&self.db, |s| {
            s.node_id = node_id.into();
            tweak(s);
        });
        TestApp::start(settings, self.db.clone())
    }

    /// Starts a node with exactly these settings on `db`.
    pub fn start(settings: Settings, db: impl Into<Arc<TestDb>>) -> TestApp {
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
            db,
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

    /// A client CONNECTed as `sub` with a role claim.
    pub async fn connect_with_role(&self, sub: &str, role: &str) -> Client {
        let mut client = Client::open(self).await;
        let reply = client.connect(Some(&self.token_with_role(sub, role))).await;
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
}

/// What the node stored, read straight from its database and Redis.
impl TestApp {
    /// The node's database URL, for a test's own connections.
    pub fn database_url(&self) -> String {
        self.db.url.clone()
    }

    /// How many audit entries with `action` the node's database holds.
    pub async fn audit_count(&self, action: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = PgConnection::establish(&self.db.url).unwrap();
        diesel::sql_query("SELECT count(*) AS n FROM audit_log WHERE action = $1")
            .bind::<diesel::sql_types::Text, _>(action)
            .get_result::<Count>(&mut conn)
            .unwrap()
            .n
    }

    /// Runs SQL against the node's database.
    pub fn sql(&self, query: &str) -> usize {
        let mut conn = PgConnection::establish(&self.db.url).unwrap();
        diesel::sql_query(query).execute(&mut conn).unwrap()
    }

    /// Runs several SQL statements against the node's database at once.
    pub fn batch_sql(&self, statements: &str) {
        use diesel::connection::SimpleConnection;
        let mut conn = PgConnection::establish(&self.db.url).unwrap();
        conn.batch_execute(statements).unwrap();
    }

    /// Rows of two integer columns.
    pub fn rows(&self, query: &str) -> Vec<(i64, i64)> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            auction_version: i64,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            amount: i64,
        }
        let mut conn = PgConnection::establish(&self.db.url).unwrap();
        diesel::sql_query(query)
            .load::<Row>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|r| (r.auction_version, r.amount))
            .collect()
    }

    /// The node's Redis key prefix.
    pub fn redis_prefix(&self) -> String {
        format!("{}:", self.db.name)
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

/// The text of the repository's file at `path` (relative to its root).
pub fn repo_file(path: &str) -> String {
    let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|err| panic!("{}: {err}", full.display()))
}
