//! The `souk` binary itself: refusing to start without a key, JSON log
//! lines, and a clean close on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actix_http::ws::CloseCode;
use serde_json::Value;

use crate::helpers::*;

pub(crate) const SOUK: &str = env!("CARGO_BIN_EXE_souk");

#[test]
fn serve_refuses_to_start_without_a_key_outside_dev_mode() {
    let output = Command::new(SOUK)
        .arg("serve")
        .env_clear()
        .env("SOUK_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("SOUK_JWT_SECRET"), "{stderr}");
    assert!(stderr.contains("SOUK_JWT_PUBLIC_KEY"), "{stderr}");
}

/// `souk serve` with these variables only: its exit code and stderr.
fn serve_refused(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(SOUK)
        .arg("serve")
        .env_clear()
        .env("SOUK_DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.code(), stderr)
}

#[test]
fn serve_refuses_dev_mode_off_loopback_or_with_a_real_secret_and_short_secrets() {
    // Dev mode mints admin and service tokens for anyone who asks.
    let (code, stderr) = serve_refused(&[("SOUK_DEV", "1"), ("SOUK_HTTP_ADDR", "0.0.0.0:0")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("loopback"), "{stderr}");
    let (code, stderr) = serve_refused(&[("SOUK_DEV", "1"), ("SOUK_JWT_SECRET", SECRET)]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("dev secret"), "{stderr}");
    let (code, stderr) = serve_refused(&[("SOUK_JWT_SECRET", "too-short-a-secret")]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("at least 32 bytes"), "{stderr}");
}

#[test]
fn a_start_that_fails_says_why_and_exits_without_panicking() {
    // A node whose start fails drops actors it created but never ran; one
    // of them used to panic for want of a runtime, hiding the reason.
    let db = TestDb::create();
    let output = Command::new(SOUK)
        .arg("serve")
        .env_clear()
        .env("SOUK_DATABASE_URL", &db.url)
        .env("SOUK_JWT_SECRET", SECRET)
        .env("SOUK_HTTP_ADDR", "127.0.0.1:0")
        .env("SOUK_REDIS_URL", "redis://[not-a-url")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bad Redis URL"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn migrate_needs_no_token_key() {
    // scripts/dev migrates before it serves in dev mode.
    let db = TestDb::create();
    let output = Command::new(SOUK)
        .arg("migrate")
        .env_clear()
        .env("SOUK_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn unknown_arguments_print_usage() {
    let output = Command::new(SOUK).arg("launch").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("usage: souk serve"));
}

/// A `souk serve` process on a test database, its address and its log.
pub(crate) struct Node {
    pub(crate) child: std::process::Child,
    pub(crate) address: String,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Node {
    fn spawn(db: &TestDb, node_id: &str) -> Node {
        Node::spawn_with(db, node_id, Command::new(SOUK))
    }

    /// A node whose soft open-files limit is `limit`.
    fn spawn_with_fd_limit(db: &TestDb, node_id: &str, limit: u32) -> Node {
        let mut command = Command::new("sh");
        command.args([
            "-c",
            &format!("ulimit -Sn {limit} && exec \"$0\" \"$@\""),
            SOUK,
        ]);
        Node::spawn_with(db, node_id, command)
    }

    pub(crate) fn spawn_with(db: &TestDb, node_id: &str, mut command: Command) -> Node {
        let mut child = command
            .args(["serve", "--no-migrate"])
            .env("SOUK_HTTP_ADDR", "127.0.0.1:0")
            .env("SOUK_DATABASE_URL", &db.url)
            .env("SOUK_REDIS_URL", redis_url())
            .env("SOUK_REDIS_PREFIX", format!("{}:", db.name))
            .env("SOUK_JWT_SECRET", SECRET)
            .env("SOUK_NODE_ID", node_id)
            .env("SOUK_SHUTDOWN_GRACE_MS", "3000")
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let (lines_tx, lines) = mpsc::channel::<String>();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut seen = Vec::new();
        let address = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(10))
                .expect("souk logs");
            seen.push(line.clone());
            let json: Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            if let Some(rest) = json["msg"]
                .as_str()
                .unwrap_or_default()
                .strip_prefix("listening on ")
            {
                break rest.split(' ').next().unwrap().to_owned();
            }
        };
        Node {
            child,
            address,
            lines,
            seen,
        }
    }

    /// The first log line from now on that contains `text`.
    fn wait_for_line(&mut self, text: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => panic!("no log line with {text:?} in {within:?}: {:#?}", self.seen),
            }
        }
    }

    pub(crate) fn ws_url(&self) -> String {
        format!("ws://{}/socket.io/?EIO=4&transport=websocket", self.address)
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn token(sub: &str) -> String {
    hs256(serde_json::json!({"sub": sub, "exp": chrono::Utc::now().timestamp() + 600}))
}

#[actix_web::test]
async fn sigterm_closes_connections_and_exits_cleanly_with_json_logs() {
    let db = TestDb::create();
    let mut node = Node::spawn(&db, "term");
    let mut client = Client::open_url(&node.ws_url(), None).await;
    assert!(client.connect(Some(&token("sam"))).await.starts_with("40{"));

    let started = Instant::now();
    node.signal("-TERM");
    let reason = client.expect_close().await.expect("close frame");
    assert_eq!(reason.code, CloseCode::Restart);
    assert_eq!(reason.description.as_deref(), Some("server shutting down"));

    let exit = loop {
        if let Some(exit) = node.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "souk did not exit within the grace"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit:?}");
    while let Ok(line) = node.lines.recv_timeout(Duration::from_millis(200)) {
        node.seen.push(line);
    }
    for line in &node.seen {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not JSON: {line}"
        );
    }
    assert!(
        node.seen.iter().any(|l| l.contains("SIGTERM received")),
        "{:#?}",
        node.seen
    );
}

#[actix_web::test]
async fn a_client_whose_node_is_killed_recovers_everything_on_another() {
    let db = TestDb::create();
    let doomed = Node::spawn(&db, "doomed");
    let survivor = Node::spawn(&db, "survivor");
    let api = |path: &str| format!("http://{}{path}", survivor.address);
    let service = hs256(
        serde_json::json!({"sub": "backend", "role": "service", "exp": chrono::Utc::now().timestamp() + 600}),
    );
    let resp = awc::Client::new()
        .put(api("/api/v1/listings/l1"))
        .bearer_auth(&service)
        .send_json(&serde_json::json!({"sellerId": "sella", "title": "Bike", "price": 1, "currency": "EUR"}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let post = |n: i64| {
        awc::Client::new()
            .post(api("/api/v1/rooms/listing:l1/events"))
            .bearer_auth(&service)
            .send_json(&serde_json::json!({"event": "tick", "data": n}))
    };

    let mut client = Client::open_url(&doomed.ws_url(), None).await;
    let hello = client.connect(Some(&token("ann"))).await;
    let pid: Value = serde_json::from_str(hello.strip_prefix("40").unwrap()).unwrap();
    let pid = pid["pid"].as_str().unwrap().to_owned();
    client
        .emit_ack("listing:watch", serde_json::json!({"listingId": "l1"}))
        .await;
    assert_eq!(post(0).await.unwrap().status().as_u16(), 202);
    let (_, offset) = client.wait_event_with_offset("tick").await;

    doomed.signal("-KILL");
    assert!(
        client.expect_close().await.is_none(),
        "no close frame from a killed node"
    );
    for n in 1..=5 {
        assert_eq!(post(n).await.unwrap().status().as_u16(), 202);
    }
    let mut back = Client::open_url(&survivor.ws_url(), None).await;
    let auth = serde_json::json!({"token": token("ann"), "pid": pid, "offset": offset.unwrap()});
    back.send(&format!("40{auth}")).await;
    let hello = back.recv_text().await;
    assert!(hello.contains(&pid), "recovered on the survivor: {hello}");
    for n in 1..=5 {
        assert_eq!(back.wait_event("tick").await, vec![serde_json::json!(n)]);
    }
}

#[actix_web::test]
async fn fifty_reservers_on_two_souk_processes_have_one_winner_every_time() {
    let db = TestDb::create();
    let nodes = [Node::spawn(&db, "p0"), Node::spawn(&db, "p1")];
    let service = hs256(
        serde_json::json!({"sub": "backend", "role": "service", "exp": chrono::Utc::now().timestamp() + 600}),
    );
    let mut clients = Vec::new();
    for n in 0..50 {
        let mut client = Client::open_url(&nodes[n % 2].ws_url(), None).await;
        assert!(client
            .connect(Some(&token(&format!("buyer{n}"))))
            .await
            .starts_with("40{"));
        clients.push(client);
    }
    for round in 0..20 {
        let listing = format!("l{round}");
        let resp = awc::Client::new()
            .put(format!("http://{}/api/v1/listings/{listing}", nodes[round % 2].address))
            .bearer_auth(&service)
            .send_json(&serde_json::json!({"sellerId": "sella", "title": "Bike", "price": 1, "currency": "EUR"}))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 201);
        for client in clients.iter_mut() {
            client
                .emit_ack("listing:watch", serde_json::json!({"listingId": listing}))
                .await;
        }
        for (n, client) in clients.iter_mut().enumerate() {
            let frame = serde_json::json!(["listing:reserve", {"listingId": listing, "idempotencyKey": format!("r{round}")}]);
            client
                .send(&format!("42{}{frame}", 1000 + round * 100 + n))
                .await;
        }
        let mut winners = 0;
        for (n, client) in clients.iter_mut().enumerate() {
            let ack = client.wait_ack((1000 + round * 100 + n) as u64).await;
            if ack["ok"] == true {
                winners += 1;
            } else {
                assert_eq!(ack["error"]["code"], "unavailable", "round {round}: {ack}");
                let heard = client.events.iter().any(|e| {
                    e[0] == "listing:availabilityChanged" && e[1]["listingId"] == listing.as_str()
                });
                assert!(heard, "round {round}: buyer{n} answered before told");
            }
            client.events.clear();
        }
        assert_eq!(winners, 1, "round {round}");
    }
}

#[test]
fn a_node_out_of_file_descriptors_says_so_once_and_when_it_recovers() {
    const LIMIT: u32 = 200;
    let db = TestDb::create();
    let mut node = Node::spawn_with_fd_limit(&db, "fds", LIMIT);
    // Plain TCP connections: every one the node accepts takes a descriptor,
    // and the ones past the limit wait in the listen backlog.
    let held: Vec<std::net::TcpStream> = (0..LIMIT + 50)
        .map(|_| std::net::TcpStream::connect(&node.address).unwrap())
        .collect();
    let line = node.wait_for_line("refusing connections", Duration::from_secs(10));
    let json: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(json["level"], "ERROR", "{line}");
    assert!(
        json["msg"].as_str().unwrap().starts_with(&format!(
            "refusing connections: all {LIMIT} file descriptors in use"
        )),
        "{line}"
    );
    drop(held);
    let line = node.wait_for_line("accepting connections again", Duration::from_secs(20));
    assert!(line.contains("\"level\":\"INFO\""), "{line}");
    let refusals = node
        .seen
        .iter()
        .filter(|l| l.contains("refusing connections"))
        .count();
    assert_eq!(refusals, 1, "said once per episode: {:#?}", node.seen);
}

/// `souk serve` on the memory broker, on `db`.
fn memory_node_command() -> Command {
    let mut command = Command::new("sh");
    command.args(["-c", "SOUK_REDIS_URL=memory exec \"$0\" \"$@\"", SOUK]);
    command
}

#[actix_web::test]
async fn a_second_node_on_the_memory_broker_refuses_to_start() {
    // Two nodes with a memory broker each would split every room in two.
    let db = TestDb::create();
    let first = Node::spawn_with(&db, "only", memory_node_command());
    let output = memory_node_command()
        .args(["serve", "--no-migrate"])
        .env("SOUK_HTTP_ADDR", "127.0.0.1:0")
        .env("SOUK_DATABASE_URL", &db.url)
        .env("SOUK_JWT_SECRET", SECRET)
        .env("SOUK_NODE_ID", "second")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "another souk node on the memory broker uses this database; \
             several nodes need Redis (SOUK_REDIS_URL=redis://…)"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The first node goes on serving; once it is gone, a node may start.
    assert_eq!(ready(&first).await, 200);
    drop(first);
    let next = Node::spawn_with(&db, "next", memory_node_command());
    assert_eq!(ready(&next).await, 200);
}

/// The status of a node's `/readyz`.
async fn ready(node: &Node) -> u16 {
    let url = format!("http://{}/readyz", node.address);
    awc::Client::new()
        .get(url)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn seed_demo_on_the_memory_broker_needs_no_redis() {
    // Nothing to clear: the memory broker lives in the node, not here.
    let db = TestDb::create();
    let output = memory_node_command()
        .arg("seed-demo")
        .env("SOUK_DATABASE_URL", &db.url)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
}
