//! The test harness, by what it does:
//!
//! - `servers`: [`TestDb`] (a database per test), [`TestApp`] (a node in
//!   this process on a free port) and its settings;
//! - `clients`: [`Client`] (a raw Socket.IO v5 client over a real
//!   WebSocket), tokens, frame helpers, [`eventually`];
//! - `faults`: [`RedisProxy`], [`kill_redis_clients`], cutting Postgres;
//! - `api`: the server HTTP API as the backend calls it (`TestApp::api`,
//!   `listing`, `booking`, `room_event`, ...).
//!
//! Everything is reachable as `crate::helpers::X`.
//!
//! # Settings
//!
//! A node starts from [`test_settings`] (souk's defaults, plus: HTTP on
//! 127.0.0.1:0, the test's own database, [`SECRET`], 1 worker, a pool of 4,
//! node id `test-node`, the per-address open limit off, the tests' Redis and
//! a Redis prefix of the test's own). A test changes what it needs with a
//! closure on [`Settings`], typed, not `SOUK_*` names:
//!
//! ```ignore
//! let app = TestApp::spawn_with(|s| s.max_payload = 1000).await;
//! let nodes = TestApp::spawn_cluster(2, |s| s.auction_scan = Duration::from_millis(50)).await;
//! let nodes = TestApp::spawn_cluster(2, |_| {}).await;
//! let dev = TestApp::spawn_with(dev_mode).await; // SOUK_DEV=1: the dev secret
//! let app = TestApp::spawn_with(|s| {
//!     s.quotas.rates.messages = Rate { per_second: 1.0, burst: 5.0 };
//!     s.redis_url = proxy.url.clone();
//! })
//! .await;
//! let settings = settings_for(&db, |s| s.room_idle = Duration::from_millis(50));
//! ```
//!
//! Each `SOUK_*` variable's field is named on it in `src/settings.rs`.
//! Tests of how settings are *read* (`process.rs`, `hostile/memory.rs`,
//! which run the `souk` binary) keep the variables' names: that is what
//! they test.

mod api;
mod clients;
mod faults;
mod servers;

pub use clients::*;
pub use faults::*;
pub use servers::*;
pub use souk::settings::{Rate, Settings};
