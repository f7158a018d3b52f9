//! Several nodes on one Postgres and one Redis: room events reach every
//! node in one order, reservations have one winner, auctions close once.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use crate::auctions::{auction, bid};
use crate::helpers::*;

/// Two nodes, listing l1, and a watcher of it on each node (ann on the
/// first, ben on the second).
pub async fn watchers_on_two_nodes() -> (Vec<TestApp>, Client, Client) {
    let nodes = TestApp::spawn_cluster(2, |_| {}).await;
    nodes[0].listing("l1", "sella").await;
    let on_a = nodes[0].watching("ann", "l1").await;
    let on_b = nodes[1].watching("ben", "l1").await;
    (nodes, on_a, on_b)
}

#[actix_web::test]
async fn a_room_split_across_nodes_gets_every_event_in_one_order() {
    let (nodes, mut on_a, mut on_b) = watchers_on_two_nodes().await;
    // Publishers on both nodes at once.
    for n in 0..20 {
        let (status, _) = nodes[n % 2]
            .room_event("listing:l1", "tick", json!(n))
            .await;
        assert_eq!(status, 202);
    }
    let mut seen = Vec::new();
    for client in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        for _ in 0..20 {
            let (args, offset) = client.wait_event_with_offset("tick").await;
            got.push((
                args[0].clone(),
                offset.expect("room events carry an offset"),
            ));
        }
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "same events, same order, same offsets");
    let values: HashSet<Value> = seen[0].iter().map(|(v, _)| v.clone()).collect();
    assert_eq!(values.len(), 20, "every event exactly once");
    let offsets: Vec<(u64, u64)> = seen[0]
        .iter()
        .map(|(_, o)| {
            let (ms, seq) = o.split_once('-').unwrap();
            (ms.parse().unwrap(), seq.parse().unwrap())
        })
        .collect();
    assert!(
        offsets.windows(2).all(|w| w[0] < w[1]),
        "offsets increase: {offsets:?}"
    );
}

#[actix_web::test]
async fn a_node_whose_subscriber_dropped_catches_its_rooms_up_from_their_logs() {
    let nodes = TestApp::spawn_cluster(2, |_| {}).await;
    nodes[0].listing("l1", "sella").await;
    let mut on_a = nodes[0].watching("ann", "l1").await;
    let tick = |n: u64| nodes[1].room_event("listing:l1", "tick", json!(n));
    assert_eq!(tick(0).await.0, 202);
    assert_eq!(on_a.wait_event("tick").await[0], 0);

    // Node A stops hearing Redis for a while (it reconnects after 500 ms);
    // node B goes on publishing.
    let name = format!("{}subscriber:node-0", nodes[0].redis_prefix());
    assert_eq!(kill_redis_clients(&name), 1, "one subscriber per node");
    for n in 1..=20 {
        assert_eq!(tick(n).await.0, 202);
    }
    let mut got = Vec::new();
    for _ in 1..=20 {
        got.push(on_a.wait_event("tick").await[0].as_u64().unwrap());
    }
    assert_eq!(got, (1..=20).collect::<Vec<_>>(), "each once, in order");
    assert_eq!(tick(21).await.0, 202);
    assert_eq!(on_a.wait_event("tick").await[0], 21);
    on_a.assert_no_event("tick", Duration::from_millis(300))
        .await;
}

#[actix_web::test]
async fn fifty_reservers_on_two_nodes_have_one_winner_every_time() {
    let nodes = TestApp::spawn_cluster(2, |_| {}).await;
    let mut clients = Vec::new();
    for n in 0..50 {
        clients.push(nodes[n % 2].connect(&format!("buyer{n}")).await);
    }
    for round in 0..20 {
        let listing = format!("l{round}");
        nodes[round % 2].listing(&listing, "sella").await;
        for client in clients.iter_mut() {
            client
                .emit_ack("listing:watch", json!({"listingId": listing}))
                .await;
        }
        for (n, client) in clients.iter_mut().enumerate() {
            let frame = json!(["listing:reserve", {"listingId": listing, "idempotencyKey": format!("r{round}")}]);
            client
                .send(&format!("42{}{frame}", 1000 + round * 100 + n))
                .await;
        }
        let mut winners = Vec::new();
        for (n, client) in clients.iter_mut().enumerate() {
            let ack = client.wait_ack((1000 + round * 100 + n) as u64).await;
            if ack["ok"] == true {
                winners.push(n);
            } else {
                assert_eq!(ack["error"]["code"], "unavailable", "round {round}: {ack}");
                // A loser who watches heard of the change before its answer.
                let heard = client.events.iter().any(|e| {
                    e[0] == "listing:availabilityChanged" && e[1]["listingId"] == listing.as_str()
                });
                assert!(heard, "round {round}: buyer{n} answered before told");
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        for client in clients.iter_mut() {
            client.events.clear();
        }
    }
    assert_eq!(nodes[0].sql("SELECT 1 FROM bookings"), 20);
}

#[actix_web::test]
async fn twenty_bidders_racing_on_two_nodes_end_at_the_highest_valid_bid() {
    let nodes = TestApp::spawn_cluster(2, |_| {}).await;
    auction(&nodes[0], "a1", 60_000, 0, None).await;
    let mut bidders = Vec::new();
    for n in 0..20 {
        bidders.push(nodes[n % 2].connect(&format!("bidder{n}")).await);
    }
    let mut acked = Vec::new();
    for round in 0..4 {
        for (n, client) in bidders.iter_mut().enumerate() {
            let amount = 1000 + (round * 20 + n as i64) * 37;
            let frame = json!(["bid:place", {"listingId": "a1", "amount": amount, "idempotencyKey": format!("k{round}")}]);
            client
                .send(&format!("42{}{frame}", round * 100 + n as i64))
                .await;
        }
        for (n, client) in bidders.iter_mut().enumerate() {
            let ack = client.wait_ack((round * 100 + n as i64) as u64).await;
            if ack["ok"] == true {
                acked.push((
                    ack["bid"]["version"].as_i64().unwrap(),
                    ack["bid"]["amount"].as_i64().unwrap(),
                ));
            } else {
                assert_eq!(ack["error"]["code"], "bid_too_low", "{ack}");
            }
        }
    }
    acked.sort();
    let versions: Vec<i64> = acked.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions,
        (1..=acked.len() as i64).collect::<Vec<_>>(),
        "versions 1, 2, 3, … with no gap"
    );
    assert!(
        acked.windows(2).all(|w| w[0].1 < w[1].1),
        "amounts rise with versions: {acked:?}"
    );
    let stored: Vec<(i64, i64)> =
        nodes[0].rows("SELECT auction_version, amount FROM bids ORDER BY auction_version");
    assert_eq!(
        stored, acked,
        "every acked bid is in Postgres, and nothing else"
    );
    let (_, listing) = nodes[1].api("GET", "/api/v1/listings/a1", None).await;
    let top = acked.last().unwrap();
    assert_eq!(listing["listing"]["auction"]["currentAmount"], top.1);
    assert_eq!(listing["listing"]["auction"]["version"], top.0);
}

#[actix_web::test]
async fn two_nodes_reaching_the_end_together_close_it_once() {
    let nodes = TestApp::spawn_cluster(2, |s| s.auction_scan = Duration::from_millis(50)).await;
    auction(&nodes[0], "a1", 1500, 0, None).await;
    let mut watchers = Vec::new();
    for node in &nodes {
        let mut watcher = node.connect("wendy").await;
        watcher
            .emit_ack("listing:watch", json!({"listingId": "a1"}))
            .await;
        watchers.push(watcher);
    }
    let mut ann = nodes[1].connect("ann").await;
    assert_eq!(bid(&mut ann, "a1", 1000, None).await["ok"], true);
    for watcher in watchers.iter_mut() {
        let closed = watcher.wait_event("auction:closed").await;
        assert_eq!(closed[0]["winnerId"], "ann");
        watcher
            .assert_no_event("auction:closed", Duration::from_millis(700))
            .await;
    }
    assert_eq!(nodes[0].sql("SELECT 1 FROM auction_results"), 1);
    assert_eq!(
        nodes[0].sql("SELECT 1 FROM bookings WHERE status = 'confirmed'"),
        1
    );
    assert_eq!(nodes[0].audit_count("auction:closed").await, 1);
}

#[actix_web::test]
async fn a_node_that_was_down_at_the_end_closes_it_when_it_comes_back() {
    let db = std::sync::Arc::new(TestDb::create());
    let first = TestApp::start(
        settings_for(&db, |s| s.auction_scan = Duration::from_millis(60_000)),
        db.clone(),
    );
    auction(&first, "a1", 300, 0, None).await;
    let mut ann = first.connect("ann").await;
    assert_eq!(bid(&mut ann, "a1", 1000, None).await["ok"], true);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        first.sql("SELECT 1 FROM auction_results"),
        0,
        "nobody closed it yet"
    );
    // A node starting later finds the auction past its end and closes it.
    let later = TestApp::start(
        settings_for(&db, |s| s.auction_scan = Duration::from_millis(50)),
        db.clone(),
    );
    eventually("closed by the new node", || async {
        later.sql("SELECT 1 FROM auction_results") == 1
    })
    .await;
    assert_eq!(
        later.sql("SELECT 1 FROM auction_results WHERE winner_id = 'ann'"),
        1
    );
}

#[actix_web::test]
async fn the_cluster_view_lists_live_nodes_with_their_counts() {
    let nodes = TestApp::spawn_cluster(2, |s| s.node_heartbeat = Duration::from_millis(100)).await;
    let _a = nodes[0].connect("ann").await;
    let _b1 = nodes[1].connect("ben").await;
    let _b2 = nodes[1].connect("ben").await;
    eventually("both nodes with their connections", || async {
        let (status, body) = nodes[0].api("GET", "/api/v1/cluster", None).await;
        let counts: Vec<(Value, Value, Value)> = body["nodes"]
            .as_array()
            .map(|all| {
                all.iter()
                    .map(|n| {
                        (
                            n["nodeId"].clone(),
                            n["connections"].clone(),
                            n["rooms"].clone(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        status == 200
            && counts
                == vec![
                    (json!("node-0"), json!(1), json!(1)),
                    (json!("node-1"), json!(2), json!(1)),
                ]
    })
    .await;
    // A stopped node leaves the view.
    nodes[1].stopper().stop().await;
    eventually("one node left", || async {
        let (_, body) = nodes[0].api("GET", "/api/v1/cluster", None).await;
        body["nodes"].as_array().map(Vec::len) == Some(1)
    })
    .await;
    let resp = awc::Client::new()
        .get(nodes[0].http("/api/v1/cluster"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}
