//! Bounds on what one user or socket may cost a node (issue 12): rooms per
//! socket, recovery replay, per-user rates, Postgres time. Each test shows
//! that the bound trips, that it is counted, and that the node keeps serving
//! another client meanwhile.

use std::time::Duration;

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
    let app = TestApp::spawn_with(|s| s.quotas.max_rooms_per_socket = 10).await;
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
    if redis_is_cluster() {
        // INFO's byte count is per node; the standalone pass measures it.
        return;
    }
    let app = TestApp::spawn_with(|s| {
        s.quotas.rates.rooms = Rate {
            per_second: 10_000.0,
            burst: 10_000.0,
        }
    })
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

/// Connects as `user`, recovering `previous` (`pid`, `offset`) if given;
/// answers the client and the CONNECT reply.
async fn connect_recovering(
    app: &TestApp,
    user: &str,
    previous: Option<(&str, &str)>,
) -> (Client, Value) {
    let mut client = Client::open(app).await;
    let mut auth = json!({ "token": app.token(user) });
    if let Some((pid, offset)) = previous {
        auth["pid"] = json!(pid);
        auth["offset"] = json!(offset);
    }
    client.send(&format!("40{auth}")).await;
    let reply = client.recv_text().await;
    let body = reply
        .strip_prefix("40")
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or_else(|| panic!("not connected: {reply}"));
    (client, body)
}

/// Emits `tick` with a payload of `bytes` bytes to listing l1's room.
async fn big_tick(app: &TestApp, bytes: usize) {
    let (status, _) = app
        .room_event("listing:l1", "tick", json!("x".repeat(bytes)))
        .await;
    assert_eq!(status, 202);
}

/// ann watches l1, gets one tick and goes without a word: her pid and the
/// offset she got last.
async fn watched_then_gone(app: &TestApp) -> (String, String) {
    let (mut ann, hello) = connect_recovering(app, "ann", None).await;
    let pid = hello["pid"].as_str().unwrap().to_owned();
    ann.emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    big_tick(app, 10).await;
    let (_, offset) = ann.wait_event_with_offset("tick").await;
    drop(ann);
    (pid, offset.unwrap())
}

#[actix_web::test]
async fn a_replay_past_its_byte_bound_starts_the_socket_fresh() {
    let app = TestApp::spawn_with(|s| s.quotas.replay_bytes = Some(5000)).await;
    app.listing("l1", "sella").await;

    // Under the bound: recovered.
    let (pid, offset) = watched_then_gone(&app).await;
    for _ in 0..3 {
        big_tick(&app, 1000).await;
    }
    let (mut back, hello) = connect_recovering(&app, "ann", Some((&pid, &offset))).await;
    assert_eq!(hello["pid"], pid.as_str(), "3 kB replayed: recovered");
    back.wait_event("tick").await;
    drop(back);

    // Past it: a fresh socket, nothing replayed.
    let (pid, offset) = watched_then_gone(&app).await;
    for _ in 0..6 {
        big_tick(&app, 1000).await;
    }
    let (mut back, hello) = connect_recovering(&app, "ann", Some((&pid, &offset))).await;
    assert_ne!(hello["pid"], pid.as_str(), "6 kB to replay: not recovered");
    // The failed recovery released its claim: the next may try at once.
    let mut conn = redis_connection().unwrap();
    let key = format!("{}recovery:{pid}", app.redis_prefix());
    let claimed: bool = redis::cmd("HEXISTS")
        .arg(&key)
        .arg("c")
        .query(&mut *conn)
        .unwrap();
    assert!(!claimed, "claim released");
    back.assert_no_event("tick", std::time::Duration::from_millis(300))
        .await;
    assert!(tripped(&app, "replay_bytes").await >= 1);
    still_served(&app, "bob").await;
}

#[actix_web::test]
async fn replayed_packets_count_against_the_outbound_bound() {
    // A replay bound above the outbound bound: the replay alone overflows.
    let app = TestApp::spawn_with(|s| {
        s.max_outbound = 4000;
        s.quotas.replay_bytes = Some(100_000);
    })
    .await;
    app.listing("l1", "sella").await;
    let (pid, offset) = watched_then_gone(&app).await;
    for _ in 0..8 {
        big_tick(&app, 1000).await;
    }
    let (mut back, hello) = connect_recovering(&app, "ann", Some((&pid, &offset))).await;
    assert_eq!(hello["pid"], pid.as_str());
    back.expect_close().await;
    eventually("the slow consumer is counted", || async {
        app.metrics()
            .await
            .contains("souk_disconnects_total{reason=\"slow consumer\"} 1")
    })
    .await;
    still_served(&app, "bob").await;
}

#[actix_web::test]
async fn two_sockets_recovering_one_pid_do_not_both_get_it() {
    let app = TestApp::spawn().await;
    app.listing("l1", "sella").await;
    let (pid, offset) = watched_then_gone(&app).await;
    let (first, second) = futures_util::join!(
        connect_recovering(&app, "ann", Some((&pid, &offset))),
        connect_recovering(&app, "ann", Some((&pid, &offset))),
    );
    let recovered = [&first.1, &second.1]
        .iter()
        .filter(|hello| hello["pid"] == pid.as_str())
        .count();
    assert_eq!(recovered, 1, "{} / {}", first.1, second.1);
    assert_eq!(tripped(&app, "session_per_pid").await, 1);

    // A later recovery of the pid takes it over: the socket that held it
    // is unbound, and only the new owner writes the record.
    let mut holder = if first.1["pid"] == pid.as_str() {
        first.0
    } else {
        second.0
    };
    let mut taker = None;
    for _ in 0..50 {
        // The first claim holds until its socket is bound.
        let (client, hello) = connect_recovering(&app, "ann", Some((&pid, &offset))).await;
        if hello["pid"] == pid.as_str() {
            taker = Some(client);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut taker = taker.expect("a later recovery takes the pid over");
    taker
        .emit_ack("presence:watch", json!({"userIds": ["pia"]}))
        .await;
    holder
        .emit_ack("presence:watch", json!({"userIds": ["quin"]}))
        .await;
    eventually("the record holds the new owner's rooms only", || async {
        let mut rooms = redis_record_rooms(&app, &pid);
        rooms.sort();
        rooms == ["listing:l1", "presence:pia", "user:ann"]
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!redis_record_rooms(&app, &pid).contains(&"presence:quin".to_owned()));
    still_served(&app, "bob").await;
}

/// The rooms of a recovery record, as Redis holds it.
fn redis_record_rooms(app: &TestApp, pid: &str) -> Vec<String> {
    let mut conn = redis_connection().unwrap();
    let key = format!("{}recovery:{pid}", app.redis_prefix());
    let fields: Vec<String> = redis::cmd("HKEYS").arg(&key).query(&mut *conn).unwrap();
    fields
        .into_iter()
        .filter_map(|f| f.strip_prefix("r:").map(str::to_owned))
        .collect()
}

/// Sends `n` events without waiting, then reads their acks.
async fn burst(client: &mut Client, n: u64, event: impl Fn(u64) -> Value) -> Vec<Value> {
    let first = 1000;
    for i in 0..n {
        client.send(&format!("42{}{}", first + i, event(i))).await;
    }
    let mut acks = Vec::new();
    for i in 0..n {
        acks.push(client.wait_ack(first + i).await);
    }
    acks
}

fn limited(acks: &[Value]) -> Vec<&Value> {
    acks.iter()
        .filter(|a| a["error"]["code"] == "rate_limited")
        .collect()
}

#[actix_web::test]
async fn a_user_sending_too_fast_is_rate_limited_and_others_are_served() {
    let app = TestApp::spawn_with(|s| {
        s.quotas.rates.messages = Rate {
            per_second: 1.0,
            burst: 5.0,
        }
    })
    .await;
    let mut buyer = app.connect("bea").await;
    let booking = app.booking("l1", "sella", &mut buyer).await;
    let acks = burst(&mut buyer, 10, |i| {
        json!(["message:send", {"bookingId": booking, "body": format!("m{i}"), "clientMsgId": format!("c{i}")}])
    })
    .await;
    let refused = limited(&acks);
    // The burst passes (and a token that came back meanwhile, on a slow
    // machine); the rest are refused.
    let passed = acks.len() - refused.len();
    assert!((5..=6).contains(&passed), "the burst passes: {acks:?}");
    for ack in &refused {
        let wait = ack["error"]["retryAfterMs"].as_u64().unwrap();
        assert!(wait > 0 && wait <= 1000, "{ack}");
    }
    assert!(tripped(&app, "rate_messages").await >= 4);
    // The seller, another user, is served meanwhile.
    let mut seller = app.connect("sella").await;
    let ack = seller
        .emit_ack(
            "message:send",
            json!({"bookingId": booking, "body": "hi", "clientMsgId": "s1"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // One second on, the buyer may send again.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let ack = buyer
        .emit_ack(
            "message:send",
            json!({"bookingId": booking, "body": "again", "clientMsgId": "c99"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[actix_web::test]
async fn bids_on_a_listing_that_is_not_an_auction_count_against_the_rate() {
    let app = TestApp::spawn_with(|s| {
        s.quotas.rates.bids = Rate {
            per_second: 1.0,
            burst: 3.0,
        }
    })
    .await;
    app.listing("fixed", "sella").await;
    let mut ann = app.connect("ann").await;
    let acks = burst(
        &mut ann,
        6,
        |i| json!(["bid:place", {"listingId": "fixed", "amount": 100 + i}]),
    )
    .await;
    assert!((2..=3).contains(&limited(&acks).len()), "{acks:?}");
    assert!(tripped(&app, "rate_bids").await >= 2);
    still_served(&app, "bob").await;
}

#[actix_web::test]
async fn presence_watch_costs_one_join_per_id() {
    let app = TestApp::spawn_with(|s| {
        s.quotas.rates.rooms = Rate {
            per_second: 1.0,
            burst: 10.0,
        }
    })
    .await;
    let mut ann = app.connect("ann").await;
    let ack = ann
        .emit_ack("presence:watch", json!({"userIds": ids(0, 10)}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = ann
        .emit_ack("presence:watch", json!({"userIds": ids(10, 12)}))
        .await;
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    assert!(tripped(&app, "rate_rooms").await >= 1);
    still_served(&app, "bob").await;
}

/// Holds an exclusive lock on `table` of the node's database until the
/// returned sender is dropped or sent to; answers once the lock is held.
fn lock_table(app: &TestApp, table: &str) -> std::sync::mpsc::Sender<()> {
    use diesel::{Connection, RunQueryDsl};
    let url = app.state.settings.database_url.clone();
    let table = table.to_owned();
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (held, is_held) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let mut conn = diesel::PgConnection::establish(&url).unwrap();
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            diesel::sql_query(format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
                .execute(conn)?;
            held.send(()).unwrap();
            let _ = released.recv();
            Ok(())
        })
        .unwrap();
    });
    is_held.recv().unwrap();
    release
}

#[actix_web::test]
async fn slow_reads_cannot_take_the_writers_connections_and_time_out() {
    let app = TestApp::spawn_with(|s| {
        s.db_pool_size = 2;
        s.quotas.db_statement_timeout = Duration::from_millis(2500);
    })
    .await;
    let mut bea = app.connect("bea").await;
    let booking = app.booking("l1", "sella", &mut bea).await;
    app.listing("l2", "sella").await;

    // Reads of listings wait on a lock: every pooled read connection is
    // taken, until the statement timeout cancels them.
    let release = lock_table(&app, "listings");
    let mut readers = Vec::new();
    for n in 0..4 {
        let mut reader = app.connect(&format!("reader{n}")).await;
        reader
            .send(&format!(
                "42{}{}",
                77,
                json!(["listing:watch", {"listingId": "l2"}])
            ))
            .await;
        readers.push(reader);
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    // A message is still stored, on the writer's own connection.
    let started = std::time::Instant::now();
    let ack = bea
        .emit_ack(
            "message:send",
            json!({"bookingId": booking, "body": "still here", "clientMsgId": "w1"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(2000),
        "the write did not wait for the reads: {:?}",
        started.elapsed()
    );

    // The stuck reads end at the statement timeout, answered unavailable.
    let first = readers[0].wait_ack(77).await;
    assert_eq!(first["error"]["code"], "service_unavailable", "{first}");
    assert!(tripped(&app, "statement_timeout").await >= 1);
    drop(release);
    still_served(&app, "bob").await;
}

#[actix_web::test]
async fn a_record_redis_lost_is_written_whole_at_the_next_change() {
    let app = TestApp::spawn().await;
    let (mut ann, hello) = connect_recovering(&app, "ann", None).await;
    let pid = hello["pid"].as_str().unwrap().to_owned();
    ann.emit_ack("presence:watch", json!({"userIds": ["pia"]}))
        .await;
    eventually("the record is saved", || async {
        redis_record_rooms(&app, &pid).len() == 2
    })
    .await;
    app.redis_cmd(&["DEL", &format!("{}recovery:{pid}", app.redis_prefix())]);
    ann.emit_ack("presence:watch", json!({"userIds": ["quin"]}))
        .await;
    eventually("the record is whole again", || async {
        let mut rooms = redis_record_rooms(&app, &pid);
        rooms.sort();
        rooms == ["presence:pia", "presence:quin", "user:ann"]
    })
    .await;
}

#[actix_web::test]
async fn user_reads_over_http_are_rate_limited_per_user() {
    let app = TestApp::spawn_with(|s| {
        s.quotas.rates.pages = Rate {
            per_second: 1.0,
            burst: 3.0,
        }
    })
    .await;
    let path = "/api/v1/me/bookings";
    let (bob, carl) = (app.token("bob"), app.token("carl"));
    let get = |token: String| {
        let url = app.http(path);
        async move {
            let mut resp = awc::Client::new()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    for _ in 0..3 {
        assert_eq!(get(bob.clone()).await.0, 200);
    }
    let (status, body) = get(bob.clone()).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(
        body["error"]["retryAfterMs"].as_u64().unwrap_or(0) > 0,
        "{body}"
    );
    assert_eq!(tripped(&app, "rate_pages").await, 1);
    // Another user is served meanwhile.
    assert_eq!(get(carl).await.0, 200);
}
