//! Booking rooms: who may join, who may move a booking where (§7), and what
//! everyone is told.

use serde_json::json;

use crate::helpers::*;

/// A node with a `requested` booking of bob's on sella's listing `l1`.
pub async fn booked() -> (TestApp, Client, Client, String) {
    let app = TestApp::spawn().await;
    let mut bob = app.connect("bob").await;
    let seller = app.connect("sella").await;
    let booking = app.booking("l1", "sella", &mut bob).await;
    (app, bob, seller, booking)
}

async fn admin(app: &TestApp) -> Client {
    let mut admin = Client::open(app).await;
    assert!(admin
        .connect(Some(&app.token_with_role("ada", "admin")))
        .await
        .starts_with("40"));
    admin
}

#[actix_web::test]
async fn join_admits_participants_and_audited_admins_only() {
    let (app, mut bob, mut seller, booking) = booked().await;
    for client in [&mut bob, &mut seller] {
        let ack = client
            .emit_ack("booking:join", json!({"bookingId": booking}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        assert_eq!(ack["booking"]["id"], booking.as_str());
        assert_eq!(ack["unread"], 0);
        assert_eq!(ack["lastReadMessageId"], json!(null));
    }
    let mut stranger = app.connect("eve").await;
    let ack = stranger
        .emit_ack("booking:join", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    let ack = stranger
        .emit_ack("booking:join", json!({"bookingId": "nope"}))
        .await;
    assert_eq!(ack["error"]["code"], "not_found", "{ack}");

    assert_eq!(app.audit_count("booking:join").await, 0);
    let mut ada = admin(&app).await;
    let ack = ada
        .emit_ack("booking:join", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        app.audit_count("booking:join").await,
        1,
        "an admin join is audited"
    );
}

#[actix_web::test]
async fn the_seller_confirms_and_everyone_is_told() {
    let (app, mut bob, mut seller, booking) = booked().await;
    let mut watcher = app.connect("wendy").await;
    seller
        .emit_ack("booking:join", json!({"bookingId": booking}))
        .await;

    let ack = bob
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "confirmed"}),
        )
        .await;
    assert_eq!(
        ack["error"]["code"], "forbidden",
        "the buyer may not confirm: {ack}"
    );
    let mut eve = app.connect("eve").await;
    let ack = eve
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "cancelled"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");

    let ack = seller
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "confirmed"}),
        )
        .await;
    assert_eq!(ack["booking"]["status"], "confirmed", "{ack}");
    let expected = json!({"bookingId": booking, "status": "confirmed", "previousStatus": "requested", "by": "sella"});
    // The seller is in the booking room and their user room: told once, as
    // Socket.IO's to(a).to(b).emit() would.
    assert_eq!(
        seller.wait_event("booking:statusChanged").await[0],
        expected
    );
    assert_eq!(bob.wait_event("booking:statusChanged").await[0], expected);
    seller
        .assert_no_event(
            "booking:statusChanged",
            std::time::Duration::from_millis(300),
        )
        .await;

    let ack = seller
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "requested"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "invalid_transition", "{ack}");
    watcher
        .assert_no_event(
            "booking:statusChanged",
            std::time::Duration::from_millis(200),
        )
        .await;
}

#[actix_web::test]
async fn a_declined_booking_frees_the_listing() {
    let (app, _bob, mut seller, booking) = booked().await;
    let mut watcher = app.connect("wendy").await;
    watcher
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    let ack = seller
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "declined"}),
        )
        .await;
    assert_eq!(ack["booking"]["status"], "declined", "{ack}");
    let changed = watcher.wait_event("listing:availabilityChanged").await;
    assert_eq!(
        changed[0],
        json!({"listingId": "l1", "availability": "available"})
    );
    let (_, listing) = app.api("GET", "/api/v1/listings/l1", None).await;
    assert_eq!(listing["listing"]["availability"], "available");
    assert_eq!(listing["listing"]["version"], 3, "created, reserved, freed");
}

#[actix_web::test]
async fn disputes_are_opened_by_a_party_and_resolved_by_an_admin() {
    let (app, mut bob, mut seller, booking) = booked().await;
    seller
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "confirmed"}),
        )
        .await;
    let ack = bob
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "disputed"}),
        )
        .await;
    assert_eq!(ack["booking"]["status"], "disputed", "{ack}");
    let ack = seller
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "resolved"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    let mut ada = admin(&app).await;
    let ack = ada
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "resolved"}),
        )
        .await;
    assert_eq!(ack["booking"]["status"], "resolved", "{ack}");
    // Bob is in his user room only: he hears each move once, in order.
    let mut heard = Vec::new();
    for _ in 0..3 {
        let changed = bob.wait_event("booking:statusChanged").await;
        heard.push((changed[0]["status"].clone(), changed[0]["by"].clone()));
    }
    assert_eq!(
        heard,
        vec![
            (json!("confirmed"), json!("sella")),
            (json!("disputed"), json!("bob")),
            (json!("resolved"), json!("ada")),
        ]
    );
}

#[actix_web::test]
async fn the_server_api_makes_any_listed_move() {
    let (app, mut bob, mut seller, booking) = booked().await;
    let path = format!("/api/v1/bookings/{booking}/transitions");
    let (status, body) = app
        .api("POST", &path, Some(json!({"to": "confirmed", "by": "ops"})))
        .await;
    assert_eq!(
        (status, body["booking"]["status"].clone()),
        (200, json!("confirmed"))
    );
    let changed = bob.wait_event("booking:statusChanged").await;
    assert_eq!(changed[0]["by"], "ops");
    let (status, body) = app
        .api("POST", &path, Some(json!({"to": "completed"})))
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, listing) = app.api("GET", "/api/v1/listings/l1", None).await;
    assert_eq!(listing["listing"]["availability"], "sold");
    let (status, body) = app
        .api("POST", &path, Some(json!({"to": "requested"})))
        .await;
    assert_eq!(status, 409);
    assert_eq!(body["error"]["code"], "invalid_transition");
    let (status, body) = app.api("POST", &path, Some(json!({"to": "flying"}))).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (422, json!("bad_request"))
    );
    let (status, _) = app
        .api(
            "POST",
            "/api/v1/bookings/nope/transitions",
            Some(json!({"to": "confirmed"})),
        )
        .await;
    assert_eq!(status, 404);
    let (status, body) = app
        .api("GET", &format!("/api/v1/bookings/{booking}"), None)
        .await;
    assert_eq!(
        (status, body["booking"]["status"].clone()),
        (200, json!("completed"))
    );
    seller.wait_event("booking:statusChanged").await;
}

#[actix_web::test]
async fn leaving_a_booking_room_stops_its_events() {
    let (_app, mut bob, mut seller, booking) = booked().await;
    bob.emit_ack("booking:join", json!({"bookingId": booking}))
        .await;
    let ack = bob
        .emit_ack("booking:leave", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack, json!({"ok": true}));
    let ack = seller
        .emit_ack(
            "message:send",
            json!({"bookingId": booking, "body": "hi", "clientMsgId": "s1"}),
        )
        .await;
    assert_eq!(ack["ok"], true);
    // Still told through the user room, but no longer in the booking room.
    bob.wait_event("booking:activity").await;
    bob.assert_no_event("message:new", std::time::Duration::from_millis(300))
        .await;
}
