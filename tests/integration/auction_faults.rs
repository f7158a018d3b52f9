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
    let app = TestApp::spawn_with(&[("SOUK_AUCTION_SCAN_MS", "100")]).await;
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
