//! The admins' dispute room (§4, §5, §6): `admin:watch` for admins only,
//! and every move into or out of `disputed`, from a socket or the server
//! API, on any node, reaching it as `dispute:changed`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// An admin's connection to `app`; its CONNECT reply too.
async fn admin(app: &TestApp, sub: &str) -> (Client, Value) {
    admin_back(app, sub, None).await
}

/// An admin's connection, recovering `(pid, offset)` when given.
async fn admin_back(app: &TestApp, sub: &str, previous: Option<(&str, &str)>) -> (Client, Value) {
    crate::recovery::connect_with(app, &app.token_with_role(sub, "admin"), previous).await
}

/// An admin watching the dispute room; the ack's open disputes too.
async fn watching(app: &TestApp, sub: &str) -> (Client, Value) {
    let (mut client, hello) = admin(app, sub).await;
    let ack = client.emit_ack("admin:watch", json!({})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    (client, hello)
}

async fn move_to(client: &mut Client, booking: &str, to: &str) {
    let ack = client
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": to}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{to}: {ack}");
}

async fn api_move(app: &TestApp, booking: &str, to: &str, by: &str) {
    let (status, body) = app
        .api(
            "POST",
            &format!("/api/v1/bookings/{booking}/transitions"),
            Some(json!({"to": to, "by": by})),
        )
        .await;
    assert_eq!(status, 200, "{to}: {body}");
}

/// The next `dispute:changed`: `(booking id, status, previousStatus, by)`.
async fn next_change(client: &mut Client) -> (String, String, String, String) {
    let args = client.wait_event("dispute:changed").await;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    (
        text(&args[0]["booking"]["id"]),
        text(&args[0]["booking"]["status"]),
        text(&args[0]["previousStatus"]),
        text(&args[0]["by"]),
    )
}

fn change(
    booking: &str,
    status: &str,
    previous: &str,
    by: &str,
) -> (String, String, String, String) {
    (booking.into(), status.into(), previous.into(), by.into())
}

#[actix_web::test]
async fn only_admins_may_watch_disputes() {
    let app = TestApp::spawn().await;
    let mut bob = app.connect("bob").await;
    let mut sella = app.connect("sella").await;
    let booking = app.booking("l1", "sella", &mut bob).await;
    for client in [&mut bob, &mut sella] {
        let ack = client.emit_ack("admin:watch", json!({})).await;
        assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    }
    // Without an ack id the refusal is a server:error.
    bob.send(r#"42["admin:watch",{}]"#).await;
    let refused = loop {
        if let Some(error) = server_error(&bob.recv_text().await) {
            break error;
        }
    };
    assert_eq!(refused["code"], "forbidden");
    assert_eq!(refused["event"], "admin:watch");
    // Nor did the refusal join them: a dispute does not reach them.
    move_to(&mut sella, &booking, "confirmed").await;
    move_to(&mut bob, &booking, "disputed").await;
    bob.assert_no_event("dispute:changed", Duration::from_millis(300))
        .await;
    sella
        .assert_no_event("dispute:changed", Duration::from_millis(100))
        .await;
    // Unwatching a room one is not in is fine, as for listings.
    let ack = bob.emit_ack("admin:unwatch", json!({})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = bob.emit_ack("admin:watch", json!(null)).await;
    assert_eq!(ack["error"]["code"], "bad_request", "{ack}");
}

#[actix_web::test]
async fn watch_answers_the_open_disputes_oldest_first() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for (listing, buyer) in [("l1", "bob"), ("l2", "carl"), ("l3", "dan")] {
        let mut client = app.connect(buyer).await;
        ids.push(app.booking(listing, "sella", &mut client).await);
    }
    // l3's booking is disputed first, then l1's; l2's stays requested.
    for booking in [&ids[2], &ids[0]] {
        api_move(&app, booking, "confirmed", "sella").await;
        api_move(&app, booking, "disputed", "sella").await;
    }
    let (mut ada, _) = admin(&app, "ada").await;
    let ack = ada.emit_ack("admin:watch", json!({})).await;
    let open: Vec<&str> = ack["disputes"]
        .as_array()
        .unwrap_or_else(|| panic!("{ack}"))
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(open, [ids[2].as_str(), ids[0].as_str()], "{ack}");
    assert_eq!(ack["disputes"][0]["status"], "disputed");
}

#[actix_web::test]
async fn moves_into_and_out_of_disputed_reach_the_room_from_sockets_and_the_api() {
    let app = TestApp::spawn().await;
    let (mut ada, _) = watching(&app, "ada").await;
    let (mut eve, _) = watching(&app, "eve").await;
    let mut bob = app.connect("bob").await;
    let mut sella = app.connect("sella").await;
    let b1 = app.booking("l1", "sella", &mut bob).await;

    // Into disputed from the socket; the confirm before is no dispute move.
    move_to(&mut sella, &b1, "confirmed").await;
    move_to(&mut bob, &b1, "disputed").await;
    let want = change(&b1, "disputed", "confirmed", "bob");
    assert_eq!(next_change(&mut ada).await, want);
    assert_eq!(next_change(&mut eve).await, want, "every admin in the room");

    // Out of disputed: an admin resolves it on the socket.
    move_to(&mut ada, &b1, "resolved").await;
    assert_eq!(
        next_change(&mut ada).await,
        change(&b1, "resolved", "disputed", "ada")
    );
    assert_eq!(
        next_change(&mut eve).await,
        change(&b1, "resolved", "disputed", "ada")
    );

    // From the server API, in and out.
    let mut carl = app.connect("carl").await;
    let b2 = app.booking("l2", "sella", &mut carl).await;
    api_move(&app, &b2, "confirmed", "sella").await;
    api_move(&app, &b2, "completed", "sella").await;
    api_move(&app, &b2, "disputed", "carl").await;
    let args = ada.wait_event("dispute:changed").await;
    assert_eq!(args[0]["booking"]["id"], b2.as_str(), "{args:?}");
    assert_eq!(args[0]["booking"]["status"], "disputed");
    assert_eq!(args[0]["booking"]["listingId"], "l2");
    assert_eq!(
        args[0]["previousStatus"], "completed",
        "the complete was not a dispute move"
    );
    assert_eq!(args[0]["by"], "carl");
    api_move(&app, &b2, "resolved", "ops").await;
    assert_eq!(
        next_change(&mut ada).await,
        change(&b2, "resolved", "disputed", "ops")
    );

    assert_eq!(
        next_change(&mut eve).await,
        change(&b2, "disputed", "completed", "carl")
    );
    assert_eq!(
        next_change(&mut eve).await,
        change(&b2, "resolved", "disputed", "ops")
    );

    // Unwatching stops them.
    let ack = eve.emit_ack("admin:unwatch", json!({})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    eve.assert_no_event("dispute:changed", Duration::from_millis(100))
        .await;
    let mut dan = app.connect("dan").await;
    let b3 = app.booking("l3", "sella", &mut dan).await;
    api_move(&app, &b3, "confirmed", "sella").await;
    api_move(&app, &b3, "disputed", "dan").await;
    assert_eq!(
        next_change(&mut ada).await,
        change(&b3, "disputed", "confirmed", "dan")
    );
    eve.assert_no_event("dispute:changed", Duration::from_millis(300))
        .await;
    // The server API may not write into the admins' room.
    let (status, body) = app
        .room_event("admin:disputes", "dispute:changed", json!({}))
        .await;
    assert_eq!(status, 400, "{body}");
}

#[actix_web::test]
async fn an_admin_back_within_the_window_gets_the_disputes_it_missed() {
    let app = TestApp::spawn().await;
    let (mut ada, hello) = watching(&app, "ada").await;
    let pid = hello["pid"].as_str().unwrap().to_owned();
    let mut bob = app.connect("bob").await;
    let mut carl = app.connect("carl").await;
    let b1 = app.booking("l1", "sella", &mut bob).await;
    let b2 = app.booking("l2", "sella", &mut carl).await;
    api_move(&app, &b1, "confirmed", "sella").await;
    api_move(&app, &b1, "disputed", "bob").await;
    let (_, offset) = ada.wait_event_with_offset("dispute:changed").await;
    let offset = offset.unwrap();
    drop(ada); // gone without a word

    api_move(&app, &b2, "confirmed", "sella").await;
    api_move(&app, &b2, "disputed", "carl").await;
    let (mut back, hello) = admin_back(&app, "ada", Some((&pid, &offset))).await;
    assert_eq!(hello["pid"], pid.as_str(), "recovered");
    assert_eq!(
        next_change(&mut back).await,
        change(&b2, "disputed", "confirmed", "carl")
    );
    // The room came back without a new admin:watch.
    api_move(&app, &b1, "resolved", "ops").await;
    assert_eq!(
        next_change(&mut back).await,
        change(&b1, "resolved", "disputed", "ops")
    );
}

/// Two nodes: run in the serial pass of `scripts/test` (`cluster::`).
mod cluster {
    use super::*;

    #[actix_web::test]
    async fn an_admin_on_one_node_sees_disputes_moved_on_another() {
        let nodes = TestApp::spawn_cluster(2, |_| {}).await;
        let (mut ada, _) = watching(&nodes[0], "ada").await;
        let mut bob = nodes[1].connect("bob").await;
        let mut sella = nodes[1].connect("sella").await;
        let b1 = nodes[1].booking("l1", "sella", &mut bob).await;

        // Opened on the socket of node 1.
        move_to(&mut sella, &b1, "confirmed").await;
        move_to(&mut bob, &b1, "disputed").await;
        assert_eq!(
            next_change(&mut ada).await,
            change(&b1, "disputed", "confirmed", "bob")
        );

        // Opened and resolved through node 1's server API.
        let mut carl = nodes[1].connect("carl").await;
        let b2 = nodes[1].booking("l2", "sella", &mut carl).await;
        api_move(&nodes[1], &b2, "confirmed", "sella").await;
        api_move(&nodes[1], &b2, "disputed", "carl").await;
        assert_eq!(
            next_change(&mut ada).await,
            change(&b2, "disputed", "confirmed", "carl")
        );
        api_move(&nodes[1], &b2, "resolved", "ops").await;
        assert_eq!(
            next_change(&mut ada).await,
            change(&b2, "resolved", "disputed", "ops")
        );

        // Resolved by an admin on node 1's socket.
        let (mut eve, _) = admin(&nodes[1], "eve").await;
        move_to(&mut eve, &b1, "resolved").await;
        assert_eq!(
            next_change(&mut ada).await,
            change(&b1, "resolved", "disputed", "eve")
        );
    }
}
