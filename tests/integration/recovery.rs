//! Connection state recovery: a client that comes back within the window
//! with `{pid, offset}` gets its rooms and every missed event, in order, on
//! whichever node it lands.

use serde_json::{json, Value};

use crate::helpers::*;

/// Connects as `user` (optionally recovering) and answers the CONNECT reply.
async fn connect_as(app: &TestApp, user: &str, previous: Option<(&str, &str)>) -> (Client, Value) {
    connect_with(app, &app.token(user), previous).await
}

/// Connects with `token` (optionally recovering) and answers the CONNECT reply.
pub async fn connect_with(
    app: &TestApp,
    token: &str,
    previous: Option<(&str, &str)>,
) -> (Client, Value) {
    let mut client = Client::open(app).await;
    let mut auth = json!({ "token": token });
    if let Some((pid, offset)) = previous {
        auth["pid"] = json!(pid);
        auth["offset"] = json!(offset);
    }
    client.send(&format!("40{auth}")).await;
    let reply = client.recv_text().await;
    let body: Value = serde_json::from_str(
        reply
            .strip_prefix("40")
            .unwrap_or_else(|| panic!("not connected: {reply}")),
    )
    .unwrap();
    (client, body)
}

async fn tick(app: &TestApp, n: i64) {
    let (status, _) = app.room_event("listing:l1", "tick", json!(n)).await;
    assert_eq!(status, 202);
}

#[actix_web::test]
async fn a_client_back_on_another_node_gets_its_rooms_and_every_missed_event() {
    let nodes = TestApp::spawn_cluster(2, |_| {}).await;
    nodes[0].listing("l1", "sella").await;
    let (mut first, hello) = connect_as(&nodes[0], "ann", None).await;
    let pid = hello["pid"].as_str().unwrap().to_owned();
    first
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    tick(&nodes[0], 0).await;
    let (_, offset) = first.wait_event_with_offset("tick").await;
    let offset = offset.unwrap();
    drop(first); // the connection is gone without a word

    for n in 1..=3 {
        tick(&nodes[1], n).await;
    }
    let (mut back, hello) = connect_as(&nodes[1], "ann", Some((&pid, &offset))).await;
    assert_eq!(
        hello["pid"],
        pid.as_str(),
        "same pid: socket.recovered is true"
    );
    for n in 1..=3 {
        let (args, _) = back.wait_event_with_offset("tick").await;
        assert_eq!(args, vec![json!(n)], "missed events in order");
    }
    // Its room came back: new events arrive without watching again.
    tick(&nodes[0], 4).await;
    assert_eq!(back.wait_event("tick").await, vec![json!(4)]);
    back.assert_no_event("tick", std::time::Duration::from_millis(300))
        .await;
}

/// ann watches l1, gets tick 0 and goes without a word: her pid and the
/// offset she got last.
async fn watched_tick_then_gone(app: &TestApp) -> (String, String) {
    let (mut first, hello) = connect_as(app, "ann", None).await;
    let pid = hello["pid"].as_str().unwrap().to_owned();
    first
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    tick(app, 0).await;
    let (_, offset) = first.wait_event_with_offset("tick").await;
    (pid, offset.unwrap())
}

#[actix_web::test]
async fn a_recovery_is_refused_for_another_user_or_a_trimmed_log() {
    let app = TestApp::spawn().await;
    app.listing("l1", "sella").await;
    let (pid, offset) = watched_tick_then_gone(&app).await;

    let (_, hello) = connect_as(&app, "mallory", Some((&pid, &offset))).await;
    assert_ne!(
        hello["pid"],
        pid.as_str(),
        "another user's socket is not theirs"
    );

    for n in 1..=3 {
        tick(&app, n).await;
    }
    app.redis_cmd(&[
        "XTRIM",
        &format!("{}{{events}}:log:listing:l1", app.redis_prefix()),
        "MAXLEN",
        "1",
    ]);
    let (mut back, hello) = connect_as(&app, "ann", Some((&pid, &offset))).await;
    assert_ne!(hello["pid"], pid.as_str(), "events were lost: start afresh");
    tick(&app, 9).await;
    back.assert_no_event("tick", std::time::Duration::from_millis(300))
        .await;

    let (_, hello) = connect_as(&app, "ann", Some(("x".repeat(20).as_str(), "1-0"))).await;
    assert_ne!(hello["pid"], "x".repeat(20).as_str());
}

#[actix_web::test]
async fn a_trimmed_log_still_recovers_when_nothing_past_the_offset_was_dropped() {
    // Offsets count over all rooms, so a room's log has gaps: the first
    // entry kept after trimming is rarely the client's offset plus one.
    let app = TestApp::spawn().await;
    app.listing("l1", "sella").await;
    let (pid, offset) = watched_tick_then_gone(&app).await;

    // Another room takes an offset, so l1's next entry is not offset + 1.
    assert_eq!(app.room_event("listing:l2", "other", json!(0)).await.0, 202);
    tick(&app, 1).await;
    tick(&app, 2).await;
    // Trim l1's log up to and including what the client has.
    let seen: u64 = offset.strip_suffix("-0").unwrap().parse().unwrap();
    app.redis_cmd(&[
        "XTRIM",
        &format!("{}{{events}}:log:listing:l1", app.redis_prefix()),
        "MINID",
        &format!("{}-0", seen + 1),
    ]);
    let (mut back, hello) = connect_as(&app, "ann", Some((&pid, &offset))).await;
    assert_eq!(hello["pid"], pid.as_str(), "nothing it missed was dropped");
    assert_eq!(back.wait_event("tick").await, vec![json!(1)]);
    assert_eq!(back.wait_event("tick").await, vec![json!(2)]);
}

#[actix_web::test]
async fn a_recovering_socket_gets_back_only_the_rooms_it_may_still_be_in() {
    let app = TestApp::spawn().await;
    let mut bob = app.connect("bob").await;
    let booking = app.booking("l1", "sella", &mut bob).await;
    let thread = format!("booking:{booking}");
    let (mut ada, hello) = connect_with(&app, &app.token_with_role("ada", "admin"), None).await;
    let pid = hello["pid"].as_str().unwrap().to_owned();
    let ack = ada
        .emit_ack("booking:join", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["ok"], true, "an admin may join: {ack}");
    ada.emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    assert_eq!(app.room_event(&thread, "note", json!(1)).await.0, 202);
    let (_, offset) = ada.wait_event_with_offset("note").await;
    drop(ada);

    assert_eq!(app.room_event(&thread, "note", json!(2)).await.0, 202);
    tick(&app, 2).await;
    // Back within the window, but no longer an admin.
    let (mut back, hello) = connect_with(
        &app,
        &app.token_with_role("ada", "user"),
        Some((&pid, &offset.unwrap())),
    )
    .await;
    assert_eq!(
        hello["pid"],
        pid.as_str(),
        "recovered: the listing is public"
    );
    assert_eq!(back.wait_event("tick").await, vec![json!(2)]);
    back.assert_no_event("note", std::time::Duration::from_millis(300))
        .await;
    assert_eq!(app.room_event(&thread, "note", json!(3)).await.0, 202);
    tick(&app, 3).await;
    assert_eq!(back.wait_event("tick").await, vec![json!(3)]);
    assert!(
        !back.events.iter().any(|e| e[0] == "note"),
        "no booking event reached a user who may not join it: {:?}",
        back.events
    );
}
