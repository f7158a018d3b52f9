//! Auctions under faults: an acked bid is in the result whatever Postgres'
//! timing, and close notices survive a Redis failure and the closing node's
//! death (issue 12).

use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::json;

use crate::auctions::{auction, bid};
use crate::helpers::*;

#[actix_web::test]
async fn a_bid_is_not_stored_once_its_auction_has_a_result() {
    let app = TestApp::spawn().await;
    auction(&app, "a1", 60_000, 0, None).await;
    let mut ann = app.connect("ann").await;
    assert_eq!(bid(&mut ann, "a1", 1000, None).await["ok"], true);
    // Another node closed it while this one's live state still says open.
    app.sql(
        "INSERT INTO auction_results (listing_id, reserve_met, bid_count, closed_by) \
         VALUES ('a1', false, 1, 'elsewhere')",
    );
    let ack = bid(&mut ann, "a1", 1100, None).await;
    assert_eq!(ack["error"]["code"], "auction_closed", "{ack}");
    assert_eq!(
        app.rows("SELECT auction_version, amount FROM bids"),
        vec![(1, 1000)]
    );
    // The live state was dropped and is rebuilt closed.
    let ack = bid(&mut ann, "a1", 1200, None).await;
    assert_eq!(ack["error"]["code"], "auction_closed", "{ack}");
}

/// Holds every insert into `bids` back for `hold` (a slow Postgres, as the
/// bid writer sees it), from a thread of its own; answers once the lock is
/// taken. Reads of `bids` go on.
fn slow_bid_inserts(app: &TestApp, hold: Duration) -> std::thread::JoinHandle<()> {
    let url = app.database_url();
    let (taken, is_taken) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        conn.transaction::<_, diesel::result::Error, _>(|conn| {
            diesel::sql_query("LOCK TABLE bids IN EXCLUSIVE MODE").execute(conn)?;
            taken.send(()).unwrap();
            std::thread::sleep(hold);
            Ok(())
        })
        .unwrap();
    });
    is_taken.recv().unwrap();
    holder
}

#[actix_web::test]
async fn a_bid_acked_ok_is_in_the_result_even_when_its_commit_is_slow() {
    let app = TestApp::spawn_with(|s| s.auction_scan = Duration::from_millis(100)).await;
    let mut ann = app.connect("ann").await;
    let mut sella = app.connect("sella").await;
    auction(&app, "a1", 400, 0, None).await;
    // The bid is decided at once, but its commit waits until well after
    // the end, and after the closer's wait for stored bids (2 s).
    let holder = slow_bid_inserts(&app, Duration::from_millis(2900));
    let ack = bid(&mut ann, "a1", 1500, None).await;
    holder.join().unwrap();

    let closed = sella.wait_event("auction:closed").await[0].clone();
    if ack["ok"] == true {
        assert_eq!(ack["auction"]["leaderId"], "ann", "{ack}");
        assert_eq!(
            closed,
            json!({"listingId": "a1", "winnerId": "ann", "amount": 1500, "reserveMet": true}),
            "ann was told she leads: {ack}"
        );
    } else {
        // Refused is fine too, as long as it was not stored either.
        assert_eq!(closed["winnerId"], json!(null), "{ack}");
        assert_eq!(app.sql("SELECT 1 FROM bids"), 0, "{ack}");
    }
    // Both ways, the result is what Postgres holds.
    assert_eq!(
        app.sql("SELECT 1 FROM auction_results r WHERE bid_count = (SELECT count(*) FROM bids)"),
        1
    );
}

/// What ann's win announces, on her side and the seller's.
fn closed_to_ann() -> serde_json::Value {
    json!({"listingId": "a1", "winnerId": "ann", "amount": 1000, "reserveMet": true})
}

#[actix_web::test]
async fn close_notices_survive_a_redis_failure_right_after_the_commit() {
    let proxy = RedisProxy::start().await;
    let app = TestApp::spawn_with(|s| {
        s.redis_url = proxy.url.clone();
        s.auction_scan = Duration::from_millis(100);
        s.outbox.poll = Duration::from_millis(200);
    })
    .await;
    auction(&app, "a1", 800, 0, None).await;
    let mut wendy = app.watching("wendy", "a1").await;
    let mut ann = app.connect("ann").await;
    let mut sella = app.connect("sella").await;
    assert_eq!(bid(&mut ann, "a1", 1000, None).await["ok"], true);
    // Redis goes away as the close's first notice is sent, after the commit.
    proxy.go_down_when_sent(b"auction:closed");
    eventually("the close committed and Redis went down", || async {
        proxy.is_down() && app.sql("SELECT 1 FROM auction_results") == 1
    })
    .await;
    // Down for longer than the publisher's retries last.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    proxy.come_back();

    assert_eq!(wendy.wait_event("auction:closed").await[0], closed_to_ann());
    assert_eq!(ann.wait_event("auction:closed").await[0], closed_to_ann());
    assert_eq!(sella.wait_event("auction:closed").await[0], closed_to_ann());
    let booking = ann.wait_event("booking:created").await[0]["booking"].clone();
    assert_eq!(booking["buyerId"], "ann", "{booking}");
    let booking = sella.wait_event("booking:created").await[0]["booking"].clone();
    assert_eq!(booking["buyerId"], "ann", "{booking}");
    eventually("the outbox is empty once published", || async {
        app.sql("SELECT 1 FROM outbox") == 0
    })
    .await;
    // Once each.
    ann.assert_no_event("auction:closed", Duration::from_millis(500))
        .await;
}

#[actix_web::test]
async fn another_node_relays_the_notices_of_a_closing_node_that_died() {
    // The clients' node takes no part: it closes nothing and relays late.
    let clients = TestApp::spawn_with(|s| {
        s.auction_scan = Duration::from_millis(600_000);
        s.outbox.poll = Duration::from_millis(600_000);
    })
    .await;
    let proxy = RedisProxy::start().await;
    let closing = clients.another_node_with("closing", |s| {
        s.redis_url = proxy.url.clone();
        s.auction_scan = Duration::from_millis(100);
        s.outbox.poll = Duration::from_millis(200);
    });
    auction(&clients, "a1", 800, 0, None).await;
    let mut wendy = clients.watching("wendy", "a1").await;
    let mut ann = clients.connect("ann").await;
    let mut sella = clients.connect("sella").await;
    assert_eq!(bid(&mut ann, "a1", 1000, None).await["ok"], true);
    proxy.go_down_when_sent(b"auction:closed");
    eventually("the close committed and Redis went down", || async {
        proxy.is_down() && clients.sql("SELECT 1 FROM auction_results") == 1
    })
    .await;
    closing.stopper().stop().await;
    // As if it died in the middle of publishing: its lease still runs.
    clients.sql(
        "UPDATE outbox SET leased_by = 'closing', \
         leased_until = now() + interval '1500 milliseconds'",
    );
    sella
        .assert_no_event("auction:closed", Duration::from_millis(300))
        .await;

    let _relay = clients.another_node_with("relay", |s| {
        s.auction_scan = Duration::from_millis(600_000);
        s.outbox.poll = Duration::from_millis(200);
        s.outbox.lease = Duration::from_millis(1500);
    });
    // The new node respects the dead one's lease (about a second more) ...
    sella
        .assert_no_event("auction:closed", Duration::from_millis(500))
        .await;
    // ... and publishes once it ran out.
    assert_eq!(wendy.wait_event("auction:closed").await[0], closed_to_ann());
    assert_eq!(sella.wait_event("auction:closed").await[0], closed_to_ann());
    assert_eq!(ann.wait_event("auction:closed").await[0], closed_to_ann());
    let booking = ann.wait_event("booking:created").await[0]["booking"].clone();
    assert_eq!(booking["status"], "confirmed", "{booking}");
    eventually("the outbox is empty once published", || async {
        clients.sql("SELECT 1 FROM outbox") == 0
    })
    .await;
}
