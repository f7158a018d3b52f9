//! Every setting of a node, read once at start and passed in; no globals.
//!
//! Sources: an optional file of `NAME=value` lines (`--config PATH` or
//! `SOUK_CONFIG`), then environment variables, which win.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod guard;
mod ingest;
mod outbox;
mod quotas;

pub use guard::GuardSettings;
pub use ingest::IngestSettings;
pub use outbox::OutboxSettings;
pub use quotas::{QuotaSettings, Rate, Rates};

/// The HS256 secret used in dev mode when none is configured.
pub const DEV_JWT_SECRET: &str = "souk-dev-secret-do-not-use-in-production";

/// The shortest HS256 secret accepted outside dev mode: RFC 7518 §3.2 asks
/// for a key at least as long as the hash (256 bits), and a shorter one can
/// be guessed offline from any token.
pub const MIN_HS256_SECRET_BYTES: usize = 32;

/// `SOUK_REDIS_URL=memory`: the node keeps what nodes share in its own
/// memory instead of Redis, and is the only node on its database.
pub const MEMORY_BROKER: &str = "memory";

/// A node's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `SOUK_HTTP_ADDR`: listen address; port 0 picks a free port.
    pub http_addr: String,
    /// `SOUK_DATABASE_URL`: Postgres.
    pub database_url: String,
    /// `SOUK_REDIS_URL`: Redis (`redis://…`: any number of nodes), or
    /// [`MEMORY_BROKER`]: no Redis, this node alone (see
    /// [`Settings::memory_broker`]).
    pub redis_url: String,
    /// `SOUK_REDIS_PREFIX`: the start of every key souk writes to Redis.
    pub redis_prefix: String,
    /// Token checking.
    pub jwt: JwtSettings,
    /// `SOUK_NODE_ID`: this node's name in logs and the cluster view.
    pub node_id: String,
    /// `SOUK_DEV`: dev mode (demo tokens, the dev secret).
    pub dev: bool,
    /// `SOUK_PING_INTERVAL_MS`: how often the server pings.
    pub ping_interval: Duration,
    /// `SOUK_PING_TIMEOUT_MS`: how long a pong may take after a ping.
    pub ping_timeout: Duration,
    /// `SOUK_CONNECT_TIMEOUT_MS`: how long a new connection may take to CONNECT.
    pub connect_timeout: Duration,
    /// `SOUK_MAX_PAYLOAD`: the largest frame accepted, in bytes.
    pub max_payload: usize,
    /// `SOUK_MAX_OUTBOUND_BYTES`: how many bytes may wait to be written to
    /// one connection before it is closed as a slow consumer.
    pub max_outbound: usize,
    /// `SOUK_MAX_CONNECTIONS`: Socket.IO connections a node holds at most;
    /// 0 (the default) means the open-files limit less a reserve for the
    /// node's own files and its Postgres and Redis connections.
    pub max_connections: usize,
    /// `SOUK_DB_POOL_SIZE`: Postgres connections per node.
    pub db_pool_size: u32,
    /// `SOUK_REDIS_POOL_SIZE`: Redis connections per node.
    pub redis_pool_size: usize,
    /// `SOUK_WORKERS`: HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// `SOUK_SHUTDOWN_GRACE_MS`: how long `SIGTERM` waits for connections.
    pub shutdown_grace: Duration,
    /// `SOUK_PRESENCE_TTL_MS`: how long a user stays online after their last heartbeat.
    pub presence_ttl: Duration,
    /// `SOUK_ROOM_IDLE_MS`: how long a room without members lives on.
    pub room_idle: Duration,
    /// `SOUK_AUCTION_SCAN_MS`: how often a node looks for auctions to close.
    pub auction_scan: Duration,
    /// `SOUK_RECOVERY_WINDOW_MS`: how long a room's events stay replayable.
    pub recovery_window: Duration,
    /// `SOUK_ROOM_LOG_LEN`: about how many events a room's log keeps.
    pub room_log_len: u64,
    /// `SOUK_NODE_HEARTBEAT_MS`: how often a node renews its cluster entry.
    pub node_heartbeat: Duration,
    /// `SOUK_STATIC_DIR`: the web front served at `/`; `None` serves none.
    pub static_dir: Option<PathBuf>,
    /// `SOUK_CORS_ORIGINS`: comma-separated origins whose pages may use
    /// long-polling across origins (`*`: any); empty: same origin only.
    pub cors_origins: Vec<String>,
    /// Transport bounds on one connection (`settings/guard.rs`).
    pub guard: GuardSettings,
    /// Per-user and per-socket quotas (`settings/quotas.rs`).
    pub quotas: QuotaSettings,
    /// The outbox relay (`settings/outbox.rs`).
    pub outbox: OutboxSettings,
    /// The backend's queue (`settings/ingest.rs`).
    pub ingest: IngestSettings,
}

/// Which tokens are accepted.
#[derive(Debug, Clone, Default)]
pub struct JwtSettings {
    /// `SOUK_JWT_SECRET`: HS256 shared secret.
    pub secret: Option<String>,
    /// `SOUK_JWT_PUBLIC_KEY`: PEM public key for RS256 or ES256.
    pub public_key_path: Option<PathBuf>,
    /// `SOUK_JWT_ISSUER`: required `iss`, when set.
    pub issuer: Option<String>,
    /// `SOUK_JWT_AUDIENCE`: required `aud`, when set.
    pub audience: Option<String>,
}

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("cannot read settings file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("settings file {path}, line {line}: expected NAME=value")]
    FileLine { path: PathBuf, line: usize },
    #[error("{name}={value:?} is not valid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "no token key configured: set SOUK_JWT_SECRET (HS256) or SOUK_JWT_PUBLIC_KEY \
         (path of an RS256/ES256 PEM public key), or SOUK_DEV=1 for local development"
    )]
    NoJwtKey,
    #[error(
        "SOUK_JWT_SECRET is {0} bytes long: an HS256 secret must be at least 32 bytes \
         (e.g. `openssl rand -base64 48`)"
    )]
    ShortSecret(usize),
    #[error(
        "dev mode (SOUK_DEV) mints any token, admin and service included, so it \
         listens on loopback only: SOUK_HTTP_ADDR={0:?} is not a loopback address"
    )]
    DevNotLoopback(String),
    #[error(
        "dev mode (SOUK_DEV) signs its demo tokens with the fixed dev secret only: \
         unset SOUK_JWT_SECRET and SOUK_JWT_PUBLIC_KEY, or turn dev mode off"
    )]
    DevWithRealKey,
}

impl Settings {
    /// Reads the settings file (if any) and the process environment.
    pub fn load(config_file: Option<&Path>) -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = config_file
            .map(Path::to_path_buf)
            .or_else(|| env.get("SOUK_CONFIG").map(PathBuf::from));
        let mut values = match file {
            Some(path) => read_file(&path)?,
            None => HashMap::new(),
        };
        values.extend(env.into_iter().filter(|(k, _)| k.starts_with("SOUK_")));
        Self::from_values(&values)
    }

    /// Builds settings from `NAME → value` pairs, filling in defaults.
    pub fn from_values(values: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let get = |name: &str| values.get(name).filter(|v| !v.is_empty()).cloned();
        let dev = match get("SOUK_DEV") {
            None => false,
            Some(v) => parse_bool("SOUK_DEV", &v)?,
        };
        let settings = Settings {
            http_addr: get("SOUK_HTTP_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into()),
            database_url: get("SOUK_DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/souk".into()),
            redis_url: get("SOUK_REDIS_URL").unwrap_or_else(|| "redis://127.0.0.1:6379".into()),
            redis_prefix: get("SOUK_REDIS_PREFIX").unwrap_or_else(|| "souk:".into()),
            jwt: JwtSettings {
                secret: get("SOUK_JWT_SECRET"),
                public_key_path: get("SOUK_JWT_PUBLIC_KEY").map(PathBuf::from),
                issuer: get("SOUK_JWT_ISSUER"),
                audience: get("SOUK_JWT_AUDIENCE"),
            },
            node_id: get("SOUK_NODE_ID").unwrap_or_else(default_node_id),
            dev,
            ping_interval: millis(values, "SOUK_PING_INTERVAL_MS", 25_000)?,
            ping_timeout: millis(values, "SOUK_PING_TIMEOUT_MS", 20_000)?,
            connect_timeout: millis(values, "SOUK_CONNECT_TIMEOUT_MS", 10_000)?,
            max_payload: number(values, "SOUK_MAX_PAYLOAD", 1_000_000)?,
            max_outbound: number(values, "SOUK_MAX_OUTBOUND_BYTES", 4_000_000)?,
            max_connections: number(values, "SOUK_MAX_CONNECTIONS", 0)?,
            db_pool_size: number(values, "SOUK_DB_POOL_SIZE", 16)?,
            redis_pool_size: number(values, "SOUK_REDIS_POOL_SIZE", 64)?,
            workers: number(values, "SOUK_WORKERS", 0)?,
            shutdown_grace: millis(values, "SOUK_SHUTDOWN_GRACE_MS", 10_000)?,
            presence_ttl: millis(values, "SOUK_PRESENCE_TTL_MS", 60_000)?,
            room_idle: millis(values, "SOUK_ROOM_IDLE_MS", 30_000)?,
            auction_scan: millis(values, "SOUK_AUCTION_SCAN_MS", 1_000)?,
            recovery_window: millis(values, "SOUK_RECOVERY_WINDOW_MS", 120_000)?,
            room_log_len: number(values, "SOUK_ROOM_LOG_LEN", 1_000)?,
            node_heartbeat: millis(values, "SOUK_NODE_HEARTBEAT_MS", 5_000)?,
            static_dir: static_dir(get("SOUK_STATIC_DIR")),
            cors_origins: get("SOUK_CORS_ORIGINS")
                .map(|list| {
                    list.split(',')
                        .map(|origin| origin.trim().trim_end_matches('/').to_owned())
                        .filter(|origin| !origin.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            guard: GuardSettings::from_values(values)?,
            quotas: QuotaSettings::from_values(values)?,
            outbox: OutboxSettings::from_values(values)?,
            ingest: IngestSettings::from_values(values)?,
        };
        Ok(settings)
    }

    /// Whether the node runs on the memory broker (`SOUK_REDIS_URL=memory`):
    /// one node, no Redis; for trying souk, a small marketplace on one
    /// machine, and tests that need no services.
    pub fn memory_broker(&self) -> bool {
        self.redis_url == MEMORY_BROKER
    }

    /// Whether these settings may serve: a way to check tokens (a key, or
    /// dev mode); outside dev mode an HS256 secret of at least 32 bytes; and
    /// dev mode, which mints any token, only on loopback with the fixed dev
    /// secret, so that it can never sign tokens a real deployment accepts.
    pub fn check_for_serving(&self) -> Result<(), SettingsError> {
        let secret = self.jwt.secret.as_deref();
        if self.dev {
            let real_secret = secret.is_some_and(|s| s != DEV_JWT_SECRET);
            if real_secret || self.jwt.public_key_path.is_some() {
                return Err(SettingsError::DevWithRealKey);
            }
            if !is_loopback(&self.http_addr) {
                return Err(SettingsError::DevNotLoopback(self.http_addr.clone()));
            }
            return Ok(());
        }
        if secret.is_none() && self.jwt.public_key_path.is_none() {
            return Err(SettingsError::NoJwtKey);
        }
        match secret {
            Some(secret) if secret.len() < MIN_HS256_SECRET_BYTES => {
                Err(SettingsError::ShortSecret(secret.len()))
            }
            _ => Ok(()),
        }
    }
}

/// Whether a listen address (`host:port`) is on loopback only: an IP in
/// 127.0.0.0/8 or ::1, or `localhost`. `0.0.0.0` and `[::]` are not.
fn is_loopback(addr: &str) -> bool {
    if let Ok(socket) = addr.parse::<std::net::SocketAddr>() {
        return socket.ip().is_loopback();
    }
    addr.rsplit_once(':')
        .is_some_and(|(host, _)| host.eq_ignore_ascii_case("localhost"))
}

fn read_file(path: &Path) -> Result<HashMap<String, String>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let mut values = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').ok_or(SettingsError::FileLine {
            path: path.to_path_buf(),
            line: index + 1,
        })?;
        values.insert(name.trim().to_owned(), value.trim().to_owned());
    }
    Ok(values)
}

fn number<T: std::str::FromStr>(
    values: &HashMap<String, String>,
    name: &'static str,
    default: T,
) -> Result<T, SettingsError> {
    match values.get(name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(value) => value.trim().parse().map_err(|_| SettingsError::Invalid {
            name,
            value: value.clone(),
            reason: "expected a whole number",
        }),
    }
}

fn millis(
    values: &HashMap<String, String>,
    name: &'static str,
    default: u64,
) -> Result<Duration, SettingsError> {
    let ms: u64 = number(values, name, default)?;
    if ms == 0 {
        return Err(SettingsError::Invalid {
            name,
            value: "0".into(),
            reason: "must be at least 1 ms",
        });
    }
    Ok(Duration::from_millis(ms))
}

fn parse_bool(name: &'static str, value: &str) -> Result<bool, SettingsError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(SettingsError::Invalid {
            name,
            value: value.into(),
            reason: "expected 1/0, true/false, yes/no or on/off",
        }),
    }
}

/// `off` serves no web front; unset looks for `static/` in the working
/// directory, then in the checkout the binary was built from, so both
/// `target/debug/souk serve` and `cargo run` from anywhere find it.
fn static_dir(value: Option<String>) -> Option<PathBuf> {
    match value.as_deref().map(str::trim) {
        Some("off") => None,
        Some(path) => Some(PathBuf::from(path)),
        None => [
            PathBuf::from("static"),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("static"),
        ]
        .into_iter()
        .find(|dir| dir.join("index.html").is_file()),
    }
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "souk".into());
    format!("{host}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// What `check_for_serving` says of these settings.
    fn serving(pairs: &[(&str, &str)]) -> Result<(), SettingsError> {
        Settings::from_values(&values(pairs))?.check_for_serving()
    }

    #[test]
    fn refuses_to_start_without_a_key_outside_dev_mode() {
        assert!(matches!(serving(&[]), Err(SettingsError::NoJwtKey)));
        assert!(serving(&[("SOUK_DEV", "1")]).is_ok());
        let message = SettingsError::NoJwtKey.to_string();
        assert!(message.contains("SOUK_JWT_SECRET"));
        assert!(message.contains("SOUK_JWT_PUBLIC_KEY"));
    }

    #[test]
    fn hs256_secrets_shorter_than_32_bytes_are_refused_outside_dev_mode() {
        let short = "s".repeat(31);
        assert!(matches!(
            serving(&[("SOUK_JWT_SECRET", &short)]),
            Err(SettingsError::ShortSecret(31))
        ));
        assert!(serving(&[("SOUK_JWT_SECRET", &"s".repeat(32))]).is_ok());
        // A public key alone needs no secret.
        assert!(serving(&[("SOUK_JWT_PUBLIC_KEY", "/etc/souk/key.pem")]).is_ok());
    }

    #[test]
    fn dev_mode_serves_on_loopback_with_the_dev_secret_only() {
        let long = "s".repeat(40);
        for refused in [
            vec![("SOUK_DEV", "1"), ("SOUK_JWT_SECRET", long.as_str())],
            vec![
                ("SOUK_DEV", "1"),
                ("SOUK_JWT_PUBLIC_KEY", "/etc/souk/key.pem"),
            ],
        ] {
            assert!(
                matches!(serving(&refused), Err(SettingsError::DevWithRealKey)),
                "{refused:?}"
            );
        }
        for addr in [
            "0.0.0.0:8080",
            "[::]:8080",
            "10.1.2.3:8080",
            "example.com:80",
        ] {
            assert!(
                matches!(
                    serving(&[("SOUK_DEV", "1"), ("SOUK_HTTP_ADDR", addr)]),
                    Err(SettingsError::DevNotLoopback(_))
                ),
                "{addr}"
            );
        }
        for addr in [
            "127.0.0.1:0",
            "127.0.0.2:8080",
            "[::1]:8080",
            "localhost:8080",
        ] {
            assert!(
                serving(&[("SOUK_DEV", "1"), ("SOUK_HTTP_ADDR", addr)]).is_ok(),
                "{addr}"
            );
        }
        assert!(serving(&[("SOUK_DEV", "1"), ("SOUK_JWT_SECRET", DEV_JWT_SECRET)]).is_ok());
    }

    #[test]
    fn dev_mode_needs_no_key_and_defaults_follow_the_contract() -> Result<(), SettingsError> {
        let s = Settings::from_values(&values(&[("SOUK_DEV", "1")]))?;
        assert!(s.dev);
        assert_eq!(s.http_addr, "127.0.0.1:8080");
        assert_eq!(s.database_url, "postgres://postgres@127.0.0.1:5432/souk");
        assert_eq!(s.redis_url, "redis://127.0.0.1:6379");
        assert!(!s.memory_broker());
        assert_eq!(s.ping_interval, Duration::from_millis(25_000));
        assert_eq!(s.ping_timeout, Duration::from_millis(20_000));
        assert_eq!(s.max_payload, 1_000_000);
        Ok(())
    }

    #[test]
    fn memory_in_place_of_a_redis_url_selects_the_memory_broker() -> Result<(), SettingsError> {
        let s = Settings::from_values(&values(&[("SOUK_DEV", "1"), ("SOUK_REDIS_URL", "memory")]))?;
        assert!(s.memory_broker());
        let s = Settings::from_values(&values(&[
            ("SOUK_DEV", "1"),
            ("SOUK_REDIS_URL", "redis://memory:6379"),
        ]))?;
        assert!(!s.memory_broker());
        Ok(())
    }

    #[test]
    fn the_web_front_is_found_in_the_checkout_and_can_be_turned_off() -> Result<(), SettingsError> {
        let found = Settings::from_values(&values(&[("SOUK_DEV", "1")]))?;
        assert!(found
            .static_dir
            .is_some_and(|dir| dir.join("index.html").is_file()));
        let off = Settings::from_values(&values(&[("SOUK_STATIC_DIR", "off")]))?;
        assert_eq!(off.static_dir, None);
        let given = Settings::from_values(&values(&[("SOUK_STATIC_DIR", "/srv/web")]))?;
        assert_eq!(given.static_dir, Some(PathBuf::from("/srv/web")));
        Ok(())
    }

    #[test]
    fn rejects_bad_numbers_and_booleans() {
        let bad = [
            ("SOUK_PING_INTERVAL_MS", "soon"),
            ("SOUK_PING_INTERVAL_MS", "0"),
            ("SOUK_MAX_PAYLOAD", "-1"),
            ("SOUK_DEV", "maybe"),
        ];
        for (name, value) in bad {
            let result = Settings::from_values(&values(&[("SOUK_JWT_SECRET", "s"), (name, value)]));
            assert!(
                matches!(result, Err(SettingsError::Invalid { .. })),
                "{name}={value}"
            );
        }
    }

    /// The integration tests set origins as typed settings; how the list is
    /// written in the environment (spaces, a trailing slash) is read here.
    #[test]
    fn cors_origins_are_a_trimmed_comma_separated_list() -> Result<(), SettingsError> {
        let s = Settings::from_values(&values(&[(
            "SOUK_CORS_ORIGINS",
            " https://shop.example, https://admin.example/ ,,",
        )]))?;
        assert_eq!(
            s.cors_origins,
            ["https://shop.example", "https://admin.example"]
        );
        assert!(Settings::from_values(&values(&[]))?.cors_origins.is_empty());
        Ok(())
    }

    #[test]
    fn file_values_are_read_and_environment_wins() -> Result<(), Box<dyn std::error::Error>> {
        let dir = std::env::temp_dir().join(format!("souk-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("souk.env");
        std::fs::write(
            &path,
            "# comment\nSOUK_JWT_SECRET=from-file\nSOUK_HTTP_ADDR = 0.0.0.0:9000\n",
        )?;
        let mut merged = read_file(&path)?;
        merged.extend(values(&[("SOUK_HTTP_ADDR", "127.0.0.1:1")]));
        let s = Settings::from_values(&merged)?;
        assert_eq!(s.jwt.secret.as_deref(), Some("from-file"));
        assert_eq!(s.http_addr, "127.0.0.1:1");
        std::fs::write(&path, "NOT A SETTING\n")?;
        assert!(matches!(
            read_file(&path),
            Err(SettingsError::FileLine { line: 1, .. })
        ));
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
