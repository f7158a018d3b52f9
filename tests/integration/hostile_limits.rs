//! Bounds on what one user or socket may cost a node (issue 12): rooms per
//! socket, recovery replay, per-user rates, Postgres time. Each test shows
//! that the bound trips, that it is counted, and that the node keeps serving
//! another client meanwhile.

use serde_json::{json, Value};

use crate::helpers::*;

/// `souk_limits_tripped_total{limit}` as the node reports it.
async fn tripped(app: &TestApp, limit: &str) -> u64 {
    let text = app.metrics().await;
    let line = format!("souk_limits_tripped_total{{limit=\"{limit}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&line))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// User ids `p{from}`..`p{to}` (exclusive).
fn ids(from: usize, to: usize) -> Value {
    json!((from..to).map(|n| format!("p{n}")).collect::<Vec<_>>())
}

/// Another client gets an answer: the node still serves.
async fn still_served(app: &TestApp, user: &str) {
    let mut other = app.connect(user).await;
    let ack = other
        .emit_ack("presence:watch", json!({"userIds": ["zed"]}))
        .await;
    assert_eq!(ack["ok"], true, "another client is served: {ack}");
}

#[actix_web::test]
async fn a_socket_cannot_join_more_rooms_than_its_bound() {
    let app = TestApp::spawn_with(&[("SOUK_MAX_ROOMS_PER_SOCKET", "10")]).await;
    let mut ann = app.connect("ann").await;
    // The user's own room is one; nine presence rooms make ten.
    let ack = ann
        .emit_ack("presence:watch", json!({"userIds": ids(0, 9)}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // Watching again what is watched costs nothing.
    let ack = ann
        .emit_ack("presence:watch", json!({"userIds": ids(0, 9)}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = ann
        .emit_ack("presence:watch", json!({"userIds": ["p9"]}))
        .await;
    assert_eq!(ack["ok"], false, "{ack}");
    assert_eq!(ack["error"]["code"], "forbidden");
    assert_eq!(ack["error"]["maxRooms"], 10);
    assert!(tripped(&app, "rooms_per_socket").await >= 1);

    // A batch past the bound joins none of its rooms.
    ann.emit_ack("presence:unwatch", json!({"userIds": ids(0, 3)}))
        .await;
    let ack = ann
        .emit_ack("presence:watch", json!({"userIds": ids(20, 24)}))
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    let ack = ann
        .emit_ack("presence:watch", json!({"userIds": ids(20, 23)}))
        .await;
    assert_eq!(ack["ok"], true, "room freed by unwatch: {ack}");
    still_served(&app, "bob").await;
}

/// `total_net_input_bytes` of the tests' Redis (every node of a cluster).
fn redis_bytes_in() -> u64 {
    let mut conn = redis_connection().unwrap();
    let info: String = redis::cmd("INFO").arg("stats").query(&mut *conn).unwrap();
    info.lines()
        .filter_map(|l| l.strip_prefix("total_net_input_bytes:"))
        .filter_map(|n| n.trim().parse::<u64>().ok())
        .sum()
}

/// A join writes what changed of the socket's recovery record, not the
/// whole record again: 400 joins one by one write O(400) bytes, where a
/// rewrite per join wrote O(400²) (about 2 MB). Measures all of Redis's
/// input: runs in the serial pass.
#[actix_web::test]
async fn serial_joins_write_the_recovery_record_incrementally() {
    let app = TestApp::spawn_with(&[
        ("SOUK_RATE_ROOMS", "10000"),
        ("SOUK_RATE_ROOMS_BURST", "10000"),
    ])
    .await;
    let mut ann = app.connect("ann").await;
    let before = redis_bytes_in();
    for n in 0..400 {
        let ack = ann
            .emit_ack(
                "presence:watch",
                json!({"userIds": [format!("watched-user-{n:04}")]}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let written = redis_bytes_in() - before;
    eprintln!("400 joins wrote {written} bytes");
    assert!(
        written < 400_000,
        "400 joins wrote {written} bytes to Redis"
    );
}
