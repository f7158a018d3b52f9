//! A rolling restart under steady traffic: every node is stopped in turn
//! (as SIGTERM does); clients reconnect to a live node with `{pid, offset}`
//! and lose no event.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::future::join_all;
use serde_json::{json, Value};

use crate::helpers::*;

const EVENTS: i64 = 60;

#[actix_web::test]
async fn a_rolling_restart_under_traffic_loses_no_event() {
    let nodes = TestApp::spawn_cluster(3, |_| {}).await;
    let (a, b, backend) = (&nodes[0], &nodes[1], &nodes[2]);
    backend.listing("l1", "sella").await;
    let current = Rc::new(RefCell::new(a.ws_url()));
    let watching = Rc::new(std::cell::Cell::new(0));

    let clients = (0..6).map(|n| {
        let current = current.clone();
        let watching = watching.clone();
        let token = a.token(&format!("fan{n}"));
        async move {
            let first = current.borrow().clone();
            let mut client = Client::open_url(&first, None).await;
            // Stopping a node may take a while; losing an event would still
            // leave this client waiting, and fail the test.
            client.wait = std::time::Duration::from_secs(20);
            let hello = client.connect(Some(&token)).await;
            let mut pid = pid_of(&hello);
            client
                .emit_ack("listing:watch", json!({"listingId": "l1"}))
                .await;
            watching.set(watching.get() + 1);
            let (mut got, mut offset, mut moves) = (Vec::new(), String::new(), 0);
            while got.last() != Some(&(EVENTS - 1)) {
                match client.recv().await {
                    Frame::Text(text) => {
                        let Some(body) = text.strip_prefix("42") else {
                            continue;
                        };
                        let event: Value = serde_json::from_str(body).unwrap();
                        if event[0] == "tick" {
                            got.push(event[1].as_i64().unwrap());
                            offset = event[2].as_str().unwrap().to_owned();
                        }
                    }
                    Frame::Closed(_) => {
                        // The node went away: reconnect wherever is live now.
                        moves += 1;
                        let url = current.borrow().clone();
                        client = Client::open_url(&url, None).await;
                        client.wait = std::time::Duration::from_secs(20);
                        let auth = json!({"token": token, "pid": pid, "offset": offset});
                        client.send(&format!("40{auth}")).await;
                        let hello = client.recv_text().await;
                        assert_eq!(pid_of(&hello), pid, "recovered, not a fresh socket");
                        pid = pid_of(&hello);
                    }
                }
            }
            (got, moves)
        }
    });

    let driver = async {
        let post = |n: i64| backend.room_event("listing:l1", "tick", json!(n));
        // Let every client connect and watch first (the listing's room
        // exists as soon as one watches, so count the acks).
        eventually("six watchers", || async { watching.get() == 6 }).await;
        for n in 0..20 {
            assert_eq!(post(n).await.0, 202);
        }
        *current.borrow_mut() = b.ws_url();
        a.stopper().stop().await;
        for n in 20..40 {
            assert_eq!(post(n).await.0, 202);
        }
        let a2 = b.another_node("node-a2");
        *current.borrow_mut() = a2.ws_url();
        b.stopper().stop().await;
        for n in 40..EVENTS {
            assert_eq!(post(n).await.0, 202);
        }
        a2
    };
    let (results, _a2) = futures_util::join!(join_all(clients), driver);
    for (got, moves) in results {
        assert_eq!(
            got,
            (0..EVENTS).collect::<Vec<_>>(),
            "every event once, in order"
        );
        assert_eq!(moves, 2, "moved twice");
    }
}

fn pid_of(hello: &str) -> String {
    let body: Value = serde_json::from_str(
        hello
            .strip_prefix("40")
            .unwrap_or_else(|| panic!("{hello}")),
    )
    .unwrap();
    body["pid"].as_str().unwrap().to_owned()
}
