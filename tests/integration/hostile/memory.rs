//! A WebSocket client that stops reading: the node closes it within a bound
//! even when nothing more is written to it, and gives its memory back.
//! Measures a `souk serve` process's RSS: run it in the serial pass
//! (`cargo test --test integration -- --test-threads=1 hostile::memory`).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::helpers::*;
use crate::process::{Node, SOUK};

/// Clients that stop reading, each sent its own events (a room's frame is
/// shared by its members, so each has a room of its own).
const STALLED: usize = 8;
/// Bytes sent to each: within SOUK_MAX_OUTBOUND_BYTES, so the node never
/// closes them as slow consumers, and more than the kernel takes.
const EVENTS_EACH: usize = 20;
const EVENT_BYTES: usize = 200_000;

/// The node's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

/// The TCP connections the node holds on its port `port` (and its
/// listener): its sockets, as /proc/net/tcp* lists them.
fn connections(pid: u32, port: u16) -> usize {
    let sockets: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| table.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local_port = fields[1].rsplit(':').next().unwrap();
            u16::from_str_radix(local_port, 16) == Ok(port) && sockets.contains(fields[9])
        })
        .count()
}

/// A client that opens a WebSocket with a 4 kB receive buffer, CONNECTs
/// with `token`, and never reads a byte.
async fn stalled_client(address: &str, token: &str) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address.parse().unwrap()).await.unwrap();
    let upgrade = format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {address}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(upgrade.as_bytes()).await.unwrap();
    let connect = format!("40{}", json!({ "token": token }));
    stream.write_all(&text_frame(&connect)).await.unwrap();
    stream
}

/// A client's text frame (masked, with a zero key) of up to 64 kB.
fn text_frame(text: &str) -> Vec<u8> {
    let mut frame = vec![0x81];
    match u16::try_from(text.len()).unwrap() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&len.to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0; 4]);
    frame.extend_from_slice(text.as_bytes());
    frame
}

async fn node_metrics(node: &Node) -> String {
    let mut resp = awc::Client::new()
        .get(format!("http://{}/metrics", node.address))
        .force_close()
        .send()
        .await
        .unwrap();
    String::from_utf8(resp.body().await.unwrap().to_vec()).unwrap()
}

/// Sends `user` EVENTS_EACH events of `pad` through the server API.
async fn send_events(node: &Node, user: &str, pad: &str) {
    let service = hs256(json!({
        "sub": "backend", "role": "service", "exp": chrono::Utc::now().timestamp() + 600
    }));
    let api = awc::Client::builder()
        .timeout(Duration::from_secs(30))
        .finish();
    for _ in 0..EVENTS_EACH {
        let resp = api
            .post(format!(
                "http://{}/api/v1/rooms/user:{user}/events",
                node.address
            ))
            .bearer_auth(&service)
            .force_close()
            .send_json(&json!({"event": "pad", "data": {"pad": pad}}))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
    }
}

fn token(sub: &str) -> String {
    hs256(json!({"sub": sub, "exp": chrono::Utc::now().timestamp() + 600}))
}

#[actix_web::test]
async fn a_websocket_client_that_stops_reading_is_closed_and_its_memory_freed() {
    let db = TestDb::create();
    let mut command = Command::new(SOUK);
    command.envs([
        // Pings do not end the stalled sessions first: the bound on a
        // stalled write does (longer than sending to them all takes).
        ("SOUK_PING_INTERVAL_MS", "20000"),
        ("SOUK_PING_TIMEOUT_MS", "20000"),
        ("SOUK_TCP_USER_TIMEOUT_MS", "15000"),
        ("SOUK_MAX_OUTBOUND_BYTES", "8000000"),
        ("SOUK_WORKERS", "1"),
        // glibc keeps freed heap memory for reuse, and raises its mmap
        // threshold past the frames' size once one is freed: a fixed
        // threshold puts large buffers in their own mappings, given back
        // when freed, so RSS shows what the node holds, not the allocator's
        // cache.
        ("MALLOC_MMAP_THRESHOLD_", "65536"),
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
    ]);
    let node = Node::spawn_with(&db, "memory", command);
    let pid = node.child.id();
    let mut served = Client::open_url(&node.ws_url(), None).await;
    assert!(served.connect(Some(&token("ann"))).await.starts_with("40{"));
    // The same traffic to a client that reads warms the node's pools and
    // buffers up before the baseline.
    let pad = "x".repeat(EVENT_BYTES);
    send_events(&node, "ann", &pad).await;
    for _ in 0..EVENTS_EACH {
        served.wait_event("pad").await;
    }
    let port: u16 = node.address.rsplit(':').next().unwrap().parse().unwrap();
    let (rss_before, held_before) = (rss(pid), connections(pid, port));

    let mut stalled = Vec::new();
    for n in 0..STALLED {
        // Each is sent its events at once, well within its ping timeout.
        stalled.push(stalled_client(&node.address, &token(&format!("victim{n}"))).await);
        let connected = format!("souk_rooms{{kind=\"user\"}} {}", n + 2);
        eventually("the stalled client CONNECTed", || async {
            node_metrics(&node).await.contains(&connected)
        })
        .await;
        send_events(&node, &format!("victim{n}"), &pad).await;
        // The node serves everyone else meanwhile (and this client answers
        // its pings).
        let ack = served
            .emit_ack("presence:watch", json!({"userIds": [format!("victim{n}")]}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let rss_peak = rss(pid);
    let grown = rss_peak.saturating_sub(rss_before);
    let sent = (STALLED * EVENTS_EACH * EVENT_BYTES) as u64;
    assert!(
        grown > STALLED as u64 * 500_000,
        "the node holds what the stalled clients did not read: {grown} bytes of {sent} sent"
    );

    // Nothing more is written to them: within the TCP user timeout of
    // their last write they are closed, and their memory is freed.
    let started = Instant::now();
    let deadline = started + Duration::from_secs(30);
    while connections(pid, port) > held_before && Instant::now() < deadline {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        // Answer pings meanwhile.
        served
            .assert_no_event("none", Duration::from_millis(100))
            .await;
    }
    assert!(
        connections(pid, port) <= held_before,
        "the stalled connections are still open after {:?}: {} held, {held_before} before",
        started.elapsed(),
        connections(pid, port)
    );
    eventually("their sessions are gone", || async {
        node_metrics(&node).await.contains("souk_connections 1\n")
    })
    .await;
    let metrics = node_metrics(&node).await;
    assert!(
        metrics.contains(r#"souk_limits_tripped_total{limit="stalled_write"}"#),
        "the closes are counted: {metrics}"
    );
    served
        .assert_no_event("none", Duration::from_millis(500))
        .await;
    let rss_after = rss(pid);
    eprintln!(
        "node RSS: {rss_before} before, {rss_peak} with {STALLED} stalled clients, {rss_after} \
         {:?} after the last write",
        started.elapsed()
    );
    assert!(
        rss_after < rss_before + grown / 4,
        "memory not given back: {rss_before} before, {rss_peak} at the peak, {rss_after} after"
    );
    let ack = served
        .emit_ack("presence:watch", json!({"userIds": ["victim1"]}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    drop(stalled);
}
