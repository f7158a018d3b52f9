//! Who may bid, and on what: `bid:place` applies `listing:watch`'s rule and
//! refuses listings that are not available or no longer auctions, without
//! telling a stranger anything about a private auction (issue 12).

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::auctions::{auction, bid};
use crate::helpers::*;

/// sella's auction, open for a minute, with `fields` over the defaults
/// (`"auction": null` makes it a fixed-price listing).
fn lamp(fields: Value) -> Value {
    let starts =
        (Utc::now() - chrono::Duration::seconds(60)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let ends =
        (Utc::now() + chrono::Duration::seconds(60)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut body = json!({"sellerId": "sella", "title": "Lamp", "price": 0, "currency": "EUR",
        "auction": {"startsAt": starts, "endsAt": ends, "startPrice": 1000, "minIncrement": 100}});
    for (key, value) in fields.as_object().into_iter().flatten() {
        match value {
            Value::Null => {
                body.as_object_mut().map(|b| b.remove(key));
            }
            value => body[key] = value.clone(),
        }
    }
    body
}

/// PUTs `body` as listing `id`; answers the status (200 or 201).
async fn put(app: &TestApp, id: &str, body: Value) -> u16 {
    let (status, answer) = app.put_listing(id, body).await;
    assert!(status == 200 || status == 201, "{answer}");
    status
}

/// PUTs [`lamp`] with `fields` as listing `id`.
async fn put_auction(app: &TestApp, id: &str, fields: Value) -> u16 {
    put(app, id, lamp(fields)).await
}

async fn admin(app: &TestApp) -> Client {
    let mut admin = Client::open(app).await;
    let reply = admin
        .connect(Some(&app.token_with_role("ada", "admin")))
        .await;
    assert!(reply.starts_with("40"), "{reply}");
    admin
}

fn code(ack: &Value) -> Value {
    ack["error"]["code"].clone()
}

#[actix_web::test]
async fn a_stranger_can_neither_bid_on_a_private_auction_nor_learn_its_state() {
    let app = TestApp::spawn().await;
    put_auction(&app, "p1", json!({"visibility": "private"})).await;
    app.sql(
        "INSERT INTO bookings (id, listing_id, buyer_id, seller_id, status) \
         VALUES ('bk_b1', 'p1', 'bob', 'sella', 'requested')",
    );
    let mut eve = app.connect("eve").await;
    let mut bob = app.connect("bob").await;
    let mut ada = admin(&app).await;
    let mut sella = app.connect("sella").await;

    // Before any bid, a low bid and a high one: both only `forbidden`.
    for amount in [1, 5000] {
        let ack = bid(&mut eve, "p1", amount, None).await;
        assert_eq!(code(&ack), "forbidden", "{ack}");
        assert_eq!(ack["error"].get("minAmount"), None, "{ack}");
    }
    // Those who may watch it may bid.
    let ack = bid(&mut bob, "p1", 1000, None).await;
    assert_eq!(ack["ok"], true, "a buyer with a booking: {ack}");
    let ack = bid(&mut ada, "p1", 1100, Some("k1")).await;
    assert_eq!(ack["ok"], true, "an admin: {ack}");
    let ack = bid(&mut sella, "p1", 2000, None).await;
    assert_eq!(code(&ack), "forbidden", "the seller still may not: {ack}");
    let ack = bid(&mut bob, "p1", 1150, None).await;
    assert_eq!(ack["error"]["minAmount"], 1200, "{ack}");

    // With live state in Redis and a leader, a stranger still learns
    // nothing: no amount, no leader, no minimum, whatever the amount.
    let mut mal = app.connect("mal").await;
    for amount in [1, 1150, 1200, 9000] {
        let ack = bid(&mut mal, "p1", amount, Some("m1")).await;
        assert_eq!(
            ack,
            json!({"ok": false, "error": {"code": "forbidden", "message": "this listing is private"}})
        );
    }
    assert_eq!(
        app.rows("SELECT auction_version, amount FROM bids ORDER BY id"),
        vec![(1, 1000), (2, 1100)]
    );

    // Made public, the stranger may bid; made private again (live state
    // and all), not any more.
    put_auction(&app, "p1", json!({})).await;
    let ack = bid(&mut eve, "p1", 1200, None).await;
    assert_eq!(ack["ok"], true, "{ack}");
    put_auction(&app, "p1", json!({"visibility": "private"})).await;
    let ack = bid(&mut eve, "p1", 1300, None).await;
    assert_eq!(code(&ack), "forbidden", "{ack}");
}

#[actix_web::test]
async fn bids_on_withdrawn_sold_or_reserved_auctions_are_refused() {
    let app = TestApp::spawn().await;
    auction(&app, "a1", 60_000, 0, None).await;
    let mut ann = app.connect("ann").await;
    assert_eq!(bid(&mut ann, "a1", 1000, None).await["ok"], true);

    let mut amount = 1100;
    for availability in ["withdrawn", "sold", "reserved"] {
        // A bidder of its own each time: five bids a second each.
        let mut ann = app.connect(&format!("ann-{availability}")).await;
        put_auction(&app, "a1", json!({"availability": availability})).await;
        let ack = bid(&mut ann, "a1", amount, None).await;
        assert_eq!(code(&ack), "unavailable", "{availability}: {ack}");
        // Available again, it takes bids again.
        put_auction(&app, "a1", json!({})).await;
        let ack = bid(&mut ann, "a1", amount, None).await;
        assert_eq!(ack["ok"], true, "after {availability}: {ack}");
        amount += 100;
    }
    assert_eq!(app.sql("SELECT 1 FROM bids"), 4);
}

#[actix_web::test]
async fn an_auction_made_fixed_price_drops_its_live_state_and_takes_no_bids() {
    let app = TestApp::spawn().await;
    auction(&app, "a1", 60_000, 0, None).await;
    let mut ann = app.connect("ann").await;
    assert_eq!(bid(&mut ann, "a1", 1000, None).await["ok"], true);

    put_auction(&app, "a1", json!({"auction": null, "price": 5000})).await;
    let ack = bid(&mut ann, "a1", 1100, None).await;
    assert_eq!(code(&ack), "unavailable", "{ack}");
    assert_eq!(app.sql("SELECT 1 FROM bids"), 1);
}

#[actix_web::test]
async fn a_bid_decided_before_its_listing_went_private_is_not_stored_for_a_stranger() {
    let app = TestApp::spawn().await;
    auction(&app, "a1", 60_000, 0, None).await;
    let mut eve = app.connect("eve").await;
    assert_eq!(bid(&mut eve, "a1", 1000, None).await["ok"], true);
    // Made private behind the live state's back, as between a PUT's commit
    // and its drop of the live state (or when that drop failed).
    app.sql("UPDATE listings SET visibility = 'private' WHERE id = 'a1'");
    let ack = bid(&mut eve, "a1", 1100, None).await;
    assert_eq!(code(&ack), "forbidden", "{ack}");
    assert_eq!(app.sql("SELECT 1 FROM bids"), 1);
    // The live state was dropped: rebuilt private, the stranger is refused
    // up front and an admin may bid.
    assert_eq!(code(&bid(&mut eve, "a1", 1100, None).await), "forbidden");
    let ack = bid(&mut admin(&app).await, "a1", 1100, None).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[actix_web::test]
async fn an_unchanged_put_still_drops_the_live_state() {
    let app = TestApp::spawn().await;
    let open = lamp(json!({}));
    let mut withdrawn = open.clone();
    withdrawn["availability"] = json!("withdrawn");
    assert_eq!(put(&app, "a1", open).await, 201);
    let mut eve = app.connect("eve").await;
    assert_eq!(bid(&mut eve, "a1", 1000, None).await["ok"], true);
    // The live state stays behind a PUT (its drop failed, say) ...
    app.sql("UPDATE listings SET availability = 'withdrawn' WHERE id = 'a1'");
    // ... and the backend's retry of it, which changes nothing, drops it.
    let live = format!("{}auction:{{a1}}", app.redis_prefix());
    let exists = |key: &str| -> i64 {
        redis::cmd("EXISTS")
            .arg(key)
            .query(&mut *redis_connection().unwrap())
            .unwrap()
    };
    assert_eq!(exists(&live), 1);
    assert_eq!(put(&app, "a1", withdrawn).await, 200);
    assert_eq!(exists(&live), 0, "the live state is dropped");
    let ack = bid(&mut eve, "a1", 1100, None).await;
    assert_eq!(code(&ack), "unavailable", "{ack}");
}
