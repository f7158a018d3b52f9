//! Listing rooms: watching, private listings, live updates, reservations.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

#[actix_web::test]
async fn a_watcher_sees_updates_prices_and_availability() {
    let app = TestApp::spawn().await;
    app.listing("l1", "sella").await;
    let mut buyer = app.connect("bob").await;
    let ack = buyer
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["listing"]["id"], "l1");
    assert_eq!(ack["listing"]["sellerId"], "sella");
    assert_eq!(ack["listing"]["price"], 10000);
    assert_eq!(ack["listing"]["availability"], "available");
    assert_eq!(ack["listing"]["version"], 1);
    assert_eq!(ack["listing"]["auction"], json!(null));

    let (status, body) = app
        .put_listing(
            "l1",
            json!({"sellerId": "sella", "title": "Bike", "price": 9000, "currency": "EUR", "availability": "withdrawn"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let updated = buyer.wait_event("listing:updated").await;
    assert_eq!(updated[0]["listing"]["price"], 9000);
    assert_eq!(updated[0]["listing"]["version"], 2);
    let price = buyer.wait_event("listing:priceChanged").await;
    assert_eq!(
        price[0],
        json!({"listingId": "l1", "price": 9000, "previousPrice": 10000, "currency": "EUR", "version": 2})
    );
    let availability = buyer.wait_event("listing:availabilityChanged").await;
    assert_eq!(
        availability[0],
        json!({"listingId": "l1", "availability": "withdrawn"})
    );

    // The same body again changes nothing and announces nothing.
    let (status, body) = app
        .put_listing(
            "l1",
            json!({"sellerId": "sella", "title": "Bike", "price": 9000, "currency": "EUR", "availability": "withdrawn"}),
        )
        .await;
    assert_eq!(
        (status, body["listing"]["version"].clone()),
        (200, json!(2))
    );
    buyer
        .assert_no_event("listing:updated", Duration::from_millis(300))
        .await;

    let ack = buyer
        .emit_ack("listing:unwatch", json!({"listingId": "l1"}))
        .await;
    assert_eq!(ack, json!({"ok": true}));
    app.put_listing(
        "l1",
        json!({"sellerId": "sella", "title": "Bike", "price": 1, "currency": "EUR"}),
    )
    .await;
    buyer
        .assert_no_event("listing:updated", Duration::from_millis(300))
        .await;
}

#[actix_web::test]
async fn private_listings_admit_seller_admins_and_buyers_with_a_booking() {
    let app = TestApp::spawn().await;
    let (status, _) = app
        .put_listing(
            "p1",
            json!({"sellerId": "sella", "title": "Flat", "price": 1, "currency": "EUR", "visibility": "private"}),
        )
        .await;
    assert_eq!(status, 201);
    let mut stranger = app.connect("stranger").await;
    let ack = stranger
        .emit_ack("listing:watch", json!({"listingId": "p1"}))
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    let mut seller = app.connect("sella").await;
    assert_eq!(
        seller
            .emit_ack("listing:watch", json!({"listingId": "p1"}))
            .await["ok"],
        true
    );
    let mut admin = Client::open(&app).await;
    admin
        .connect(Some(&app.token_with_role("ada", "admin")))
        .await;
    assert_eq!(
        admin
            .emit_ack("listing:watch", json!({"listingId": "p1"}))
            .await["ok"],
        true
    );
    let ack = stranger
        .emit_ack("listing:watch", json!({"listingId": "nope"}))
        .await;
    assert_eq!(ack["error"]["code"], "not_found", "{ack}");
    let ack = stranger
        .emit_ack("listing:watch", json!({"listingId": "bad id"}))
        .await;
    assert_eq!(ack["error"]["code"], "bad_request", "{ack}");
}

#[actix_web::test]
async fn reserve_picks_one_buyer_and_tells_everyone() {
    let app = TestApp::spawn().await;
    app.listing("l1", "sella").await;
    let mut watcher = app.connect("wendy").await;
    watcher
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    let mut seller = app.connect("sella").await;
    let mut bob = app.connect("bob").await;
    let mut carl = app.connect("carl").await;

    let ack = bob
        .emit_ack(
            "listing:reserve",
            json!({"listingId": "l1", "idempotencyKey": "k1"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let booking = ack["booking"].clone();
    assert_eq!(booking["status"], "requested");
    assert_eq!(booking["buyerId"], "bob");
    assert_eq!(booking["sellerId"], "sella");
    assert_eq!(booking["listingId"], "l1");

    let changed = watcher.wait_event("listing:availabilityChanged").await;
    assert_eq!(
        changed[0],
        json!({"listingId": "l1", "availability": "reserved"})
    );
    assert_eq!(
        seller.wait_event("booking:created").await[0]["booking"],
        booking
    );
    assert_eq!(
        bob.wait_event("booking:created").await[0]["booking"],
        booking
    );

    let ack = carl
        .emit_ack(
            "listing:reserve",
            json!({"listingId": "l1", "idempotencyKey": "k1"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");

    let again = bob
        .emit_ack(
            "listing:reserve",
            json!({"listingId": "l1", "idempotencyKey": "k1"}),
        )
        .await;
    assert_eq!(again["booking"], booking, "same key, same booking");
    seller
        .assert_no_event("booking:created", Duration::from_millis(300))
        .await;

    let ack = seller
        .emit_ack(
            "listing:reserve",
            json!({"listingId": "l1", "idempotencyKey": "k9"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
}

#[actix_web::test]
async fn a_buyer_with_a_booking_may_watch_a_private_listing() {
    let app = TestApp::spawn().await;
    app.put_listing(
        "p1",
        json!({"sellerId": "sella", "title": "Flat", "price": 1, "currency": "EUR", "visibility": "private"}),
    )
    .await;
    let mut bob = app.connect("bob").await;
    let ack = bob
        .emit_ack("listing:watch", json!({"listingId": "p1"}))
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    let ack = bob
        .emit_ack(
            "listing:reserve",
            json!({"listingId": "p1", "idempotencyKey": "k"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    // A booking made by the marketplace (say, an offline deal) admits him.
    app.sql("INSERT INTO bookings (id, listing_id, buyer_id, seller_id) VALUES ('b1', 'p1', 'bob', 'sella')");
    let ack = bob
        .emit_ack("listing:watch", json!({"listingId": "p1"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[actix_web::test]
async fn offsets_keep_increasing_after_redis_loses_the_counter() {
    // A Redis restarted without persistence has no counter; a node drops
    // an event whose offset is not past the last one its room passed on.
    let app = TestApp::spawn().await;
    app.listing("l1", "sella").await;
    let mut watcher = app.watching("ann", "l1").await;
    let tick = |n: u64| app.room_event("listing:l1", "tick", json!(n));
    let offset = |text: Option<String>| -> u64 {
        let text = text.expect("an offset");
        text.strip_suffix("-0").unwrap().parse().unwrap()
    };
    assert_eq!(tick(1).await.0, 202);
    let before = offset(watcher.wait_event_with_offset("tick").await.1);
    app.redis_cmd(&["DEL", &format!("{}{{events}}:offset", app.redis_prefix())]);
    assert_eq!(tick(2).await.0, 202);
    let (args, after) = watcher.wait_event_with_offset("tick").await;
    assert_eq!(args[0], 2);
    assert!(offset(after) > before, "offsets increase across the loss");
}

/// A connection in several rooms: every event reaches it once and in the
/// order it was sent, whichever rooms carry it (rooms put frames straight
/// into its WebSocket's queue, see `rooms::mailslot`).
#[actix_web::test]
async fn a_member_of_several_rooms_gets_each_event_once_and_in_order() {
    let (app, mut bob, _seller, booking) = crate::bookings::booked().await;
    let ack = bob
        .emit_ack("booking:join", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = bob
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    let rooms = [
        "user:bob".to_owned(),
        format!("booking:{booking}"),
        "listing:l1".to_owned(),
    ];
    const TICKS: i64 = 30;
    for n in 0..TICKS {
        if n == TICKS / 2 {
            // One emission to the booking room and both users' rooms: bob
            // is in two of them.
            let path = format!("/api/v1/bookings/{booking}/transitions");
            let (status, body) = app
                .api("POST", &path, Some(json!({"to": "confirmed", "by": "ops"})))
                .await;
            assert_eq!(status, 200, "{body}");
        }
        let room = &rooms[n as usize % rooms.len()];
        let (status, body) = app.room_event(room, "tick", json!({"n": n})).await;
        assert_eq!(status, 202, "{body}");
    }

    let mut seen = Vec::new();
    let mut last_offset = 0u64;
    while seen.last() != Some(&format!("tick {}", TICKS - 1)) {
        let text = bob.recv_text().await;
        let Some(body) = text.strip_prefix("42") else {
            continue;
        };
        let event: Value = serde_json::from_str(body).unwrap();
        let (args, offset) = split_offset(&event);
        match event[0].as_str() {
            Some("tick") => seen.push(format!("tick {}", args[0]["n"])),
            Some("booking:statusChanged") => seen.push("changed".to_owned()),
            _ => continue,
        }
        let offset = offset.expect("a room event's offset");
        let offset: u64 = offset.split('-').next().unwrap().parse().unwrap();
        assert!(
            offset > last_offset,
            "offsets increase: {offset} after {last_offset}"
        );
        last_offset = offset;
    }
    let mut expected: Vec<String> = (0..TICKS).map(|n| format!("tick {n}")).collect();
    expected.insert(TICKS as usize / 2, "changed".to_owned());
    assert_eq!(seen, expected);
    bob.assert_no_event("booking:statusChanged", Duration::from_millis(300))
        .await;
    bob.assert_no_event("tick", Duration::from_millis(100))
        .await;
}
