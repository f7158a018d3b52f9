//! Authorization holes of issue 12: admins' accesses audited, refreshed
//! roles re-checked, listings made private evicting watchers, bookings
//! freeing only listings they hold, message idempotency per booking.

use serde_json::json;

use crate::bookings::booked;
use crate::helpers::*;

/// The audited actions an admin's reading and writing of a thread make.
const THREAD_ACTIONS: [&str; 4] = [
    "booking:join",
    "message:history",
    "message:send",
    "typing:start",
];

/// Every thread event that admins may do, sent by `client`.
async fn use_thread(client: &mut Client, booking: &str, msg: &str) {
    for (event, payload) in [
        ("booking:join", json!({"bookingId": booking})),
        ("message:history", json!({"bookingId": booking})),
        (
            "message:send",
            json!({"bookingId": booking, "body": "hello", "clientMsgId": msg}),
        ),
        ("typing:start", json!({"bookingId": booking})),
    ] {
        let ack = client.emit_ack(event, payload).await;
        assert_eq!(ack["ok"], true, "{event}: {ack}");
    }
}

#[actix_web::test]
async fn every_admin_access_to_a_booking_not_theirs_is_audited() {
    let (app, mut bob, mut seller, booking) = booked().await;
    // The parties' own accesses are not audited.
    use_thread(&mut bob, &booking, "b1").await;
    use_thread(&mut seller, &booking, "s1").await;
    for action in THREAD_ACTIONS {
        assert_eq!(app.audit_count(action).await, 0, "{action} by a party");
    }
    let mut ada = app.connect_with_role("ada", "admin").await;
    use_thread(&mut ada, &booking, "a1").await;
    for action in THREAD_ACTIONS {
        assert_eq!(app.audit_count(action).await, 1, "{action} by an admin");
    }
    // Every move is in the audit log, the parties' and an admin's alike,
    // with who made it (`store::bookings::transition`).
    for (client, to) in [(&mut seller, "confirmed"), (&mut bob, "disputed")] {
        let ack = client
            .emit_ack(
                "booking:transition",
                json!({"bookingId": booking, "to": to}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    assert_eq!(app.audit_count("booking:transition").await, 2);
    let ack = ada
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "resolved"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(app.audit_count("booking:transition").await, 3);
}

#[actix_web::test]
async fn an_admin_who_is_a_party_is_not_audited() {
    let app = TestApp::spawn().await;
    let mut ada = app.connect_with_role("ada", "admin").await;
    let booking = app.booking("l1", "sella", &mut ada).await;
    use_thread(&mut ada, &booking, "a1").await;
    for action in THREAD_ACTIONS {
        assert_eq!(app.audit_count(action).await, 0, "{action} by a party");
    }
}

/// Creates or updates sella's listing `id` with a visibility and availability.
pub async fn put_visibility(app: &TestApp, id: &str, visibility: &str, availability: &str) {
    let (status, body) = app
        .put_listing(
            id,
            json!({"sellerId": "sella", "title": "Flat", "price": 100, "currency": "EUR",
                   "visibility": visibility, "availability": availability}),
        )
        .await;
    assert!(status == 200 || status == 201, "{status} {body}");
}

#[actix_web::test]
async fn a_refresh_that_drops_admin_leaves_the_rooms_joined_as_admin() {
    let (app, mut bob, _seller, booking) = booked().await;
    put_visibility(&app, "p1", "private", "available").await;
    let mut ada = app.connect_with_role("ada", "admin").await;
    for (event, payload) in [
        ("booking:join", json!({"bookingId": booking})),
        ("listing:watch", json!({"listingId": "p1"})),
        ("listing:watch", json!({"listingId": "l1"})),
    ] {
        let ack = ada.emit_ack(event, payload).await;
        assert_eq!(ack["ok"], true, "{event}: {ack}");
    }
    let ack = ada
        .emit_ack("auth:refresh", json!({"token": app.token("ada")}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    // Told before the answer, for each room the new token may not be in.
    let mut left = Vec::new();
    for _ in 0..2 {
        let args = ada.wait_event("room:left").await;
        assert_eq!(args[0]["reason"], "reauthorized", "{args:?}");
        left.push(args[0]["room"].as_str().unwrap().to_owned());
    }
    left.sort();
    assert_eq!(
        left,
        [format!("booking:{booking}"), "listing:p1".to_owned()]
    );
    // Nothing more comes from those rooms; the public listing's room stays.
    let ack = bob
        .emit_ack(
            "message:send",
            json!({"bookingId": booking, "body": "hi", "clientMsgId": "m1"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    put_visibility(&app, "p1", "private", "withdrawn").await;
    let (status, _) = app.room_event("listing:l1", "tick", json!(1)).await;
    assert_eq!(status, 202);
    ada.wait_event("tick").await;
    for event in ["message:new", "listing:updated"] {
        assert!(!ada.events.iter().any(|e| e[0] == event), "{event} came");
    }
    let ack = ada
        .emit_ack("booking:join", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
}

#[actix_web::test]
async fn a_refresh_that_keeps_the_role_keeps_the_rooms() {
    let (app, _bob, _seller, booking) = booked().await;
    let mut ada = app.connect_with_role("ada", "admin").await;
    let ack = ada
        .emit_ack("booking:join", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = ada
        .emit_ack(
            "auth:refresh",
            json!({"token": app.token_with_role("ada", "admin")}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert!(ack["expiresAt"].is_string(), "{ack}");
    let (status, _) = app
        .room_event(&format!("booking:{booking}"), "tick", json!(1))
        .await;
    assert_eq!(status, 202);
    ada.wait_event("tick").await;
    assert!(!ada.events.iter().any(|e| e[0] == "room:left"));
}

#[actix_web::test]
async fn a_listing_made_private_evicts_its_watchers_who_may_not_watch_it_on_every_node() {
    let nodes = TestApp::spawn_cluster(2, |_| {}).await;
    put_visibility(&nodes[0], "l1", "public", "available").await;
    // bob reserves it (a buyer with a booking); sella sells it; ada is an
    // admin; eve and ed are strangers, one on each node.
    let mut bob = nodes[0].watching("bob", "l1").await;
    let ack = bob
        .emit_ack(
            "listing:reserve",
            json!({"listingId": "l1", "idempotencyKey": "k"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let mut sella = nodes[1].watching("sella", "l1").await;
    let mut ada = nodes[1].connect_with_role("ada", "admin").await;
    let ack = ada
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let mut eve = nodes[0].watching("eve", "l1").await;
    let mut ed = nodes[1].watching("ed", "l1").await;

    put_visibility(&nodes[0], "l1", "private", "reserved").await;
    for stranger in [&mut eve, &mut ed] {
        let args = stranger.wait_event("room:left").await;
        assert_eq!(
            args[0],
            json!({"room": "listing:l1", "reason": "listing_private"})
        );
        let ack = stranger
            .emit_ack("listing:watch", json!({"listingId": "l1"}))
            .await;
        assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    }
    // Those who may watch it stay and hear what follows; the strangers do not.
    let (status, _) = nodes[1].room_event("listing:l1", "tick", json!(1)).await;
    assert_eq!(status, 202);
    for watcher in [&mut bob, &mut sella, &mut ada] {
        watcher.wait_event("tick").await;
        assert!(!watcher.events.iter().any(|e| e[0] == "room:left"));
    }
    for stranger in [&mut eve, &mut ed] {
        stranger
            .assert_no_event("tick", std::time::Duration::from_millis(300))
            .await;
    }
}

#[actix_web::test]
async fn a_withdrawn_public_listing_keeps_its_watchers() {
    let app = TestApp::spawn().await;
    put_visibility(&app, "l1", "public", "available").await;
    let mut eve = app.watching("eve", "l1").await;
    put_visibility(&app, "l1", "public", "withdrawn").await;
    let args = eve.wait_event("listing:availabilityChanged").await;
    assert_eq!(args[0]["availability"], "withdrawn");
    let (status, _) = app.room_event("listing:l1", "tick", json!(1)).await;
    assert_eq!(status, 202);
    eve.wait_event("tick").await;
    assert!(!eve.events.iter().any(|e| e[0] == "room:left"));
}

#[actix_web::test]
async fn an_older_booking_declined_leaves_the_listing_to_the_booking_that_holds_it() {
    let (app, _bob, mut seller, older) = booked().await;
    // The backend puts the listing on sale again; carl reserves it.
    let (status, body) = app
        .put_listing(
            "l1",
            json!({"sellerId": "sella", "title": "Bike", "price": 10000, "currency": "EUR",
                   "availability": "available"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut carl = app.connect("carl").await;
    let ack = carl
        .emit_ack(
            "listing:reserve",
            json!({"listingId": "l1", "idempotencyKey": "k2"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let newer = ack["booking"]["id"].as_str().unwrap().to_owned();
    let availability = || async {
        let (_, body) = app.api("GET", "/api/v1/listings/l1", None).await;
        body["listing"]["availability"].clone()
    };
    assert_eq!(availability().await, "reserved");
    // Declining the older booking does not free carl's reservation.
    let ack = seller
        .emit_ack(
            "booking:transition",
            json!({"bookingId": older, "to": "declined"}),
        )
        .await;
    assert_eq!(ack["booking"]["status"], "declined", "{ack}");
    assert_eq!(availability().await, "reserved");
    // Cancelling the one that holds it does.
    let ack = carl
        .emit_ack(
            "booking:transition",
            json!({"bookingId": newer, "to": "cancelled"}),
        )
        .await;
    assert_eq!(ack["booking"]["status"], "cancelled", "{ack}");
    assert_eq!(availability().await, "available");
}

#[actix_web::test]
async fn a_client_msg_id_is_idempotent_per_booking_not_per_sender() {
    let (app, mut bob, _seller, first) = booked().await;
    app.listing("l2", "sella").await;
    let ack = bob
        .emit_ack(
            "listing:reserve",
            json!({"listingId": "l2", "idempotencyKey": "k2"}),
        )
        .await;
    let second = ack["booking"]["id"].as_str().unwrap().to_owned();
    let mut acks = Vec::new();
    for booking in [&first, &second, &first] {
        let ack = bob
            .emit_ack(
                "message:send",
                json!({"bookingId": booking, "body": format!("to {booking}"), "clientMsgId": "same"}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        assert_eq!(ack["message"]["bookingId"], booking.as_str(), "{ack}");
        acks.push(ack["message"].clone());
    }
    assert_ne!(acks[0]["id"], acks[1]["id"], "two bookings, two messages");
    assert_eq!(
        acks[2], acks[0],
        "a repeat in one booking is the first message"
    );
    for (booking, expected) in [(&first, 1), (&second, 1)] {
        let ack = bob
            .emit_ack("message:history", json!({"bookingId": booking}))
            .await;
        assert_eq!(ack["messages"].as_array().unwrap().len(), expected, "{ack}");
    }
}

#[actix_web::test]
async fn a_recovery_does_not_bring_back_a_listing_made_private_meanwhile() {
    let app = TestApp::spawn().await;
    put_visibility(&app, "l1", "public", "available").await;
    put_visibility(&app, "l2", "public", "available").await;
    let (mut eve, hello) = crate::recovery::connect_with(&app, &app.token("eve"), None).await;
    let pid = hello["pid"].as_str().unwrap().to_owned();
    for listing in ["l1", "l2"] {
        let ack = eve
            .emit_ack("listing:watch", json!({"listingId": listing}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    assert_eq!(app.room_event("listing:l2", "tick", json!(0)).await.0, 202);
    let (_, offset) = eve.wait_event_with_offset("tick").await;
    drop(eve);
    put_visibility(&app, "l1", "private", "available").await;
    let (mut back, hello) =
        crate::recovery::connect_with(&app, &app.token("eve"), Some((&pid, &offset.unwrap())))
            .await;
    assert_eq!(hello["pid"], pid.as_str(), "recovered: l2 is still public");
    for listing in ["l1", "l2"] {
        let (status, _) = app
            .room_event(&format!("listing:{listing}"), "tick", json!(listing))
            .await;
        assert_eq!(status, 202);
    }
    assert_eq!(back.wait_event("tick").await, vec![json!("l2")]);
    back.assert_no_event("tick", std::time::Duration::from_millis(300))
        .await;
    assert!(
        !back.events.iter().any(|e| e[0] == "listing:updated"),
        "nothing of l1 replayed: {:?}",
        back.events
    );
}

#[actix_web::test]
async fn a_refresh_that_cannot_check_the_rooms_leaves_those_that_need_checking() {
    let (app, _bob, _seller, booking) = booked().await;
    let mut ada = app.connect_with_role("ada", "admin").await;
    for (event, payload) in [
        ("booking:join", json!({"bookingId": booking})),
        ("listing:watch", json!({"listingId": "l1"})),
        ("presence:watch", json!({"userIds": ["bob"]})),
    ] {
        let ack = ada.emit_ack(event, payload).await;
        assert_eq!(ack["ok"], true, "{event}: {ack}");
    }
    app.cut_postgres();
    let ack = ada
        .emit_ack("auth:refresh", json!({"token": app.token("ada")}))
        .await;
    app.restore_postgres();
    assert_eq!(ack["ok"], true, "the token is taken: {ack}");
    let mut left = Vec::new();
    for _ in 0..2 {
        let args = ada.wait_event("room:left").await;
        left.push(args[0]["room"].as_str().unwrap().to_owned());
    }
    left.sort();
    assert_eq!(
        left,
        [format!("booking:{booking}"), "listing:l1".to_owned()]
    );
    let (status, _) = app.room_event("presence:bob", "tick", json!(1)).await;
    assert_eq!(status, 202);
    ada.wait_event("tick").await;
}

#[actix_web::test]
async fn watchers_that_cannot_be_checked_are_evicted_but_admins() {
    let app = TestApp::spawn().await;
    put_visibility(&app, "l1", "public", "available").await;
    let mut eve = app.watching("eve", "l1").await;
    let mut ada = app.connect_with_role("ada", "admin").await;
    let ack = ada
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    app.cut_postgres();
    // The update that shows the listing private arrives while Postgres is away.
    let update = json!({"listing": {"id": "l1", "sellerId": "sella", "visibility": "private"}});
    let (status, _) = app
        .room_event("listing:l1", "listing:updated", update)
        .await;
    assert_eq!(status, 202);
    let args = eve.wait_event("room:left").await;
    app.restore_postgres();
    assert_eq!(args[0]["reason"], "listing_private");
    let (status, _) = app.room_event("listing:l1", "tick", json!(1)).await;
    assert_eq!(status, 202);
    ada.wait_event("tick").await;
    assert!(!ada.events.iter().any(|e| e[0] == "room:left"));
}
