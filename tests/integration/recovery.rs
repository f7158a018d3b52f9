//! Connection state recovery: a client that comes back within the window
//! with `{pid, offset}` gets its rooms and every missed event, in order, on
//! whichever node it lands.

use serde_json::{json, Value};

use crate::helpers::*;

/// Connects as `user` (optionally recovering) and answers the CONNECT reply.
async fn connect_as(app: &TestApp, user: &str, previous: Option<(&str, &str)>) -> (Client, Value) {
    let mut client = Client::open(app).await;
    let mut auth = json!({ "token": app.token(user) });
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
    let (status, _) = app
        .api(
            "POST",
            "/api/v1/rooms/listing:l1/events",
            Some(json!({"event": "tick", "data": n})),
        )
        .await;
    assert_eq!(status, 202);
}

#[actix_web::test]
async fn a_client_back_on_another_node_gets_its_rooms_and_every_missed_event() {
    let nodes = TestApp::spawn_cluster(2, &[]).await;
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

#[actix_web::test]
async fn a_recovery_is_refused_for_another_user_or_a_trimmed_log() {
    let app = TestApp::spawn().await;
    app.listing("l1", "sella").await;
    let (mut first, hello) = connect_as(&app, "ann", None).await;
    let pid = hello["pid"].as_str().unwrap().to_owned();
    first
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    tick(&app, 0).await;
    let (_, offset) = first.wait_event_with_offset("tick").await;
    let offset = offset.unwrap();
    drop(first);

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
