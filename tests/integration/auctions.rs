//! Auctions: bids decided atomically, acked after they are in Postgres,
//! rebuilt when Redis loses them, and closed exactly once.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

/// An auction of sella's that is open now and ends in `ends_in_ms`.
pub async fn auction(
    app: &TestApp,
    id: &str,
    ends_in_ms: i64,
    extend_secs: i32,
    reserve: Option<i64>,
) {
    let starts =
        (Utc::now() - chrono::Duration::seconds(60)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let ends = (Utc::now() + chrono::Duration::milliseconds(ends_in_ms))
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let mut settings = json!({"startsAt": starts, "endsAt": ends, "startPrice": 1000, "minIncrement": 100, "extendWindowSecs": extend_secs});
    if let Some(reserve) = reserve {
        settings["reservePrice"] = json!(reserve);
    }
    let (status, body) = app
        .put_listing(id, json!({"sellerId": "sella", "title": "Lamp", "price": 0, "currency": "EUR", "auction": settings}))
        .await;
    assert_eq!(status, 201, "{body}");
}

pub async fn bid(client: &mut Client, listing: &str, amount: i64, key: Option<&str>) -> Value {
    let mut payload = json!({"listingId": listing, "amount": amount});
    if let Some(key) = key {
        payload["idempotencyKey"] = json!(key);
    }
    client.emit_ack("bid:place", payload).await
}

#[actix_web::test]
async fn bids_follow_the_rules_and_everyone_is_told() {
    let app = TestApp::spawn().await;
    auction(&app, "a1", 60_000, 0, None).await;
    let mut watcher = app.connect("wendy").await;
    watcher
        .emit_ack("listing:watch", json!({"listingId": "a1"}))
        .await;
    let mut ann = app.connect("ann").await;
    let mut ben = app.connect("ben").await;
    let mut seller = app.connect("sella").await;

    let ack = bid(&mut ann, "a1", 999, None).await;
    assert_eq!(ack["error"]["code"], "bid_too_low", "{ack}");
    assert_eq!(
        ack["error"]["minAmount"], 1000,
        "the first bid needs the start price"
    );

    let ack = bid(&mut ann, "a1", 1000, None).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["bid"]["amount"], 1000);
    assert_eq!(ack["bid"]["version"], 1);
    assert_eq!(ack["auction"]["currentAmount"], 1000);
    assert_eq!(ack["auction"]["leaderId"], "ann");
    let new = watcher.wait_event("bid:new").await;
    assert_eq!(new[0]["bidderId"], "ann");
    assert_eq!(new[0]["amount"], 1000);
    assert_eq!(new[0]["version"], 1);

    let ack = bid(&mut ben, "a1", 1050, None).await;
    assert_eq!(
        (
            ack["error"]["code"].clone(),
            ack["error"]["minAmount"].clone()
        ),
        (json!("bid_too_low"), json!(1100))
    );
    let ack = bid(&mut ben, "a1", 1100, None).await;
    assert_eq!(ack["bid"]["version"], 2, "{ack}");
    let outbid = ann.wait_event("bid:outbid").await;
    assert_eq!(
        outbid[0],
        json!({"listingId": "a1", "amount": 1100, "yourAmount": 1000})
    );

    let ack = bid(&mut seller, "a1", 5000, None).await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    app.listing("fixed", "sella").await;
    let ack = bid(&mut ann, "fixed", 5000, None).await;
    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
    let ack = bid(&mut ann, "nope", 5000, None).await;
    assert_eq!(ack["error"]["code"], "not_found", "{ack}");

    let (_, listing) = app.api("GET", "/api/v1/listings/a1", None).await;
    let live = &listing["listing"]["auction"];
    assert_eq!(
        (
            live["currentAmount"].clone(),
            live["leaderId"].clone(),
            live["bidCount"].clone()
        ),
        (json!(1100), json!("ben"), json!(2))
    );
}

#[actix_web::test]
async fn a_repeated_key_returns_the_first_outcome() {
    let app = TestApp::spawn().await;
    auction(&app, "a1", 60_000, 0, None).await;
    let mut watcher = app.connect("wendy").await;
    watcher
        .emit_ack("listing:watch", json!({"listingId": "a1"}))
        .await;
    let mut ann = app.connect("ann").await;
    let first = bid(&mut ann, "a1", 1500, Some("k1")).await;
    assert_eq!(first["ok"], true, "{first}");
    watcher.wait_event("bid:new").await;
    let again = bid(&mut ann, "a1", 1500, Some("k1")).await;
    assert_eq!(again, first);
    watcher
        .assert_no_event("bid:new", Duration::from_millis(300))
        .await;
    let refused = bid(&mut ann, "a1", 1, Some("k2")).await;
    assert_eq!(refused["error"]["code"], "bid_too_low");
    assert_eq!(bid(&mut ann, "a1", 1, Some("k2")).await, refused);
    assert_eq!(app.sql("SELECT 1 FROM bids"), 1);
}

#[actix_web::test]
async fn a_bidder_may_place_five_bids_a_second() {
    let app = TestApp::spawn().await;
    auction(&app, "a1", 60_000, 0, None).await;
    let mut ann = app.connect("ann").await;
    let mut outcomes = Vec::new();
    for n in 0..6 {
        outcomes.push(bid(&mut ann, "a1", 1000 + n * 100, None).await);
    }
    let limited: Vec<&Value> = outcomes
        .iter()
        .filter(|a| a["error"]["code"] == "rate_limited")
        .collect();
    assert!(!limited.is_empty(), "{outcomes:?}");
    let retry = limited[0]["error"]["retryAfterMs"].as_i64().unwrap();
    assert!((1..=1000).contains(&retry), "{retry}");
    assert!(outcomes.iter().filter(|a| a["ok"] == true).count() <= 5);
}

#[actix_web::test]
async fn the_bid_rate_limit_counts_each_auction_apart() {
    // Per auction, so that the bid script stays in the auction's Redis
    // Cluster slot (docs/DECISIONS.md).
    let app = TestApp::spawn().await;
    auction(&app, "a1", 60_000, 0, None).await;
    auction(&app, "a2", 60_000, 0, None).await;
    let mut ann = app.connect("ann").await;
    let mut limited = false;
    for n in 0..6 {
        let ack = bid(&mut ann, "a1", 1000 + n * 100, None).await;
        limited |= ack["error"]["code"] == "rate_limited";
    }
    assert!(limited, "six bids in a second on a1");
    let ack = bid(&mut ann, "a2", 1000, None).await;
    assert_eq!(ack["ok"], true, "a2 has its own count: {ack}");
}

#[actix_web::test]
async fn a_late_bid_extends_the_auction() {
    let app = TestApp::spawn().await;
    auction(&app, "a1", 1500, 3, None).await;
    let mut watcher = app.connect("wendy").await;
    watcher
        .emit_ack("listing:watch", json!({"listingId": "a1"}))
        .await;
    let mut ann = app.connect("ann").await;
    let before = Utc::now();
    let ack = bid(&mut ann, "a1", 1000, None).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let extended = watcher.wait_event("auction:extended").await;
    let ends =
        chrono::DateTime::parse_from_rfc3339(extended[0]["endsAt"].as_str().unwrap()).unwrap();
    let moved = ends.timestamp_millis() - before.timestamp_millis();
    assert!(
        (2900..4000).contains(&moved),
        "end moved to now + 3 s, was {moved} ms"
    );
    assert_eq!(ack["bid"]["endsAt"], extended[0]["endsAt"]);
    // Past the original end the auction is still open.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let ack = bid(&mut ann, "a1", 1100, None).await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[actix_web::test]
async fn an_auction_closes_once_with_a_confirmed_booking_for_the_winner() {
    let app = TestApp::spawn_with(|s| s.auction_scan = Duration::from_millis(100)).await;
    auction(&app, "a1", 1200, 0, Some(1100)).await;
    let mut watcher = app.connect("wendy").await;
    watcher
        .emit_ack("listing:watch", json!({"listingId": "a1"}))
        .await;
    let mut ann = app.connect("ann").await;
    let mut ben = app.connect("ben").await;
    let mut seller = app.connect("sella").await;
    bid(&mut ann, "a1", 1000, None).await;
    let ack = bid(&mut ben, "a1", 1200, None).await;
    assert_eq!(ack["ok"], true, "{ack}");

    let closed = json!({"listingId": "a1", "winnerId": "ben", "amount": 1200, "reserveMet": true});
    assert_eq!(watcher.wait_event("auction:closed").await[0], closed);
    assert_eq!(ben.wait_event("auction:closed").await[0], closed);
    assert_eq!(seller.wait_event("auction:closed").await[0], closed);
    let booking = ben.wait_event("booking:created").await[0]["booking"].clone();
    assert_eq!(
        (booking["status"].clone(), booking["buyerId"].clone()),
        (json!("confirmed"), json!("ben"))
    );
    ann.assert_no_event("auction:closed", Duration::from_millis(300))
        .await;

    let ack = bid(&mut ann, "a1", 5000, None).await;
    assert_eq!(ack["error"]["code"], "auction_closed", "{ack}");
    assert_eq!(
        app.sql("SELECT 1 FROM auction_results WHERE winner_id = 'ben' AND reserve_met"),
        1
    );
    assert_eq!(app.audit_count("auction:closed").await, 1);
    let (_, listing) = app.api("GET", "/api/v1/listings/a1", None).await;
    assert_eq!(listing["listing"]["auction"]["status"], "closed");
    assert_eq!(listing["listing"]["availability"], "reserved");
}

#[actix_web::test]
async fn no_winner_when_the_reserve_is_not_met() {
    let app = TestApp::spawn_with(|s| s.auction_scan = Duration::from_millis(100)).await;
    auction(&app, "a1", 800, 0, Some(5000)).await;
    let mut seller = app.connect("sella").await;
    let mut ann = app.connect("ann").await;
    bid(&mut ann, "a1", 1000, None).await;
    let closed = seller.wait_event("auction:closed").await;
    assert_eq!(
        closed[0],
        json!({"listingId": "a1", "winnerId": null, "amount": 1000, "reserveMet": false})
    );
    assert_eq!(app.sql("SELECT 1 FROM bookings"), 0);
}

#[actix_web::test]
async fn an_auction_withdrawn_before_its_end_closes_without_a_winner() {
    let app = TestApp::spawn_with(|s| s.auction_scan = Duration::from_millis(100)).await;
    auction(&app, "a1", 1500, 0, None).await;
    let mut seller = app.connect("sella").await;
    let mut ann = app.connect("ann").await;
    let ack = bid(&mut ann, "a1", 1000, None).await;
    assert_eq!(ack["ok"], true, "{ack}");
    app.sql("UPDATE listings SET availability = 'withdrawn' WHERE id = 'a1'");
    let closed = seller.wait_event("auction:closed").await;
    assert_eq!(closed[0]["winnerId"], Value::Null, "{closed:?}");
    assert_eq!(app.sql("SELECT 1 FROM bookings"), 0);
    assert_eq!(
        app.sql("SELECT 1 FROM listings WHERE id = 'a1' AND availability = 'withdrawn'"),
        1
    );
}

#[actix_web::test]
async fn the_live_state_is_rebuilt_from_postgres_when_redis_loses_it() {
    let app = TestApp::spawn().await;
    auction(&app, "a1", 60_000, 0, None).await;
    let mut ann = app.connect("ann").await;
    let mut ben = app.connect("ben").await;
    let first = bid(&mut ann, "a1", 1000, Some("k1")).await;
    bid(&mut ben, "a1", 1300, None).await;
    assert_eq!(ann.wait_event("bid:outbid").await[0]["yourAmount"], 1000);
    bid(&mut ann, "a1", 1500, None).await;

    app.flush_redis();
    let ack = bid(&mut ben, "a1", 1550, None).await;
    assert_eq!(
        (
            ack["error"]["code"].clone(),
            ack["error"]["minAmount"].clone()
        ),
        (json!("bid_too_low"), json!(1600))
    );
    let ack = bid(&mut ben, "a1", 1600, None).await;
    assert_eq!(ack["bid"]["version"], 4, "{ack}");
    let outbid = ann.wait_event("bid:outbid").await;
    assert_eq!(
        outbid[0]["yourAmount"], 1500,
        "the previous leader survived the flush"
    );
    // A retry of a bid from before the flush still answers its first outcome.
    assert_eq!(bid(&mut ann, "a1", 1000, Some("k1")).await, first);
}
