//! Rooms and sessions do not leak, and a store outage loses nothing acked.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

#[actix_web::test]
async fn a_thousand_connect_join_disconnect_cycles_leave_the_registry_empty() {
    // A thousand opens from one address in seconds, churning as fast as it
    // goes: neither the per-address open limit nor the per-user join rate
    // is what this tests.
    let app = TestApp::spawn_with(|s| {
        s.room_idle = Duration::from_millis(50);
        s.guard.opens_per_addr.burst = 0.0;
        s.quotas.rates.rooms = Rate {
            per_second: 100_000.0,
            burst: 100_000.0,
        };
    })
    .await;
    app.listing("l1", "sella").await;
    let mut bob = app.connect("bob").await;
    let booking = app.booking("l2", "sella", &mut bob).await;
    bob.send("1").await;
    bob.expect_close().await;

    for cycle in 0..1000 {
        let user = if cycle % 2 == 0 { "bob" } else { "sella" };
        let mut client = app.connect(user).await;
        let ack = client
            .emit_ack("listing:watch", json!({"listingId": "l1"}))
            .await;
        assert_eq!(ack["ok"], true, "cycle {cycle}: {ack}");
        let ack = client
            .emit_ack("booking:join", json!({"bookingId": booking}))
            .await;
        assert_eq!(ack["ok"], true, "cycle {cycle}: {ack}");
        client
            .emit_ack("presence:watch", json!({"userIds": ["someone"]}))
            .await;
        // Every way a connection ends: Engine.IO close, Socket.IO disconnect,
        // a WebSocket close, and a dropped TCP connection.
        match cycle % 4 {
            0 => client.send("1").await,
            1 => client.send("41").await,
            2 => {
                client
                    .send_message(actix_http::ws::Message::Close(None))
                    .await
            }
            _ => {}
        }
        drop(client);
    }
    eventually("no sessions and no rooms left", || async {
        let stats = app.registry_stats().await;
        stats.sessions == 0 && stats.rooms == 0
    })
    .await;
    let metrics = app.metrics().await;
    assert!(metrics.contains("souk_connections 0"), "{metrics}");
    for kind in ["listing", "booking", "user", "presence"] {
        assert!(
            metrics.contains(&format!("souk_rooms{{kind=\"{kind}\"}} 0")),
            "{kind}"
        );
    }
}

#[actix_web::test]
async fn a_postgres_outage_answers_service_unavailable_and_loses_nothing_acked() {
    let app = TestApp::spawn().await;
    let mut bob = app.connect("bob").await;
    let booking = app.booking("l1", "sella", &mut bob).await;
    let mut acked = Vec::new();
    for n in 0..3 {
        let ack = bob
            .emit_ack("message:send", json!({"bookingId": booking, "body": format!("before {n}"), "clientMsgId": format!("b{n}")}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        acked.push(ack["message"]["id"].clone());
    }

    app.cut_postgres();
    let ack = bob
        .emit_ack(
            "message:send",
            json!({"bookingId": booking, "body": "during", "clientMsgId": "d1"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "service_unavailable", "{ack}");
    let ack = bob
        .emit_ack("booking:join", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["error"]["code"], "service_unavailable", "{ack}");
    let (status, body) = app.api("GET", "/readyz", None).await;
    assert_eq!((status, body["postgres"].clone()), (503, json!("down")));

    app.restore_postgres();
    let ack = bob
        .emit_ack(
            "message:send",
            json!({"bookingId": booking, "body": "after", "clientMsgId": "a1"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "the node recovers by itself: {ack}");
    acked.push(ack["message"]["id"].clone());

    let page = bob
        .emit_ack(
            "message:history",
            json!({"bookingId": booking, "limit": 200}),
        )
        .await;
    let ids: Vec<Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(ids, acked, "every acked message, and nothing else");
}

#[actix_web::test]
async fn a_connection_may_queue_only_so_many_events() {
    // The per-user rate is not what this tests.
    let app = TestApp::spawn_with(|s| {
        s.quotas.rates.messages = Rate {
            per_second: 100_000.0,
            burst: 100_000.0,
        }
    })
    .await;
    let mut bob = app.connect("bob").await;
    let booking = app.booking("l1", "sella", &mut bob).await;
    // With Postgres cut the first event stalls, so the rest wait in line.
    app.cut_postgres();
    for n in 0..300u64 {
        let frame = json!(["message:send", {"bookingId": booking, "body": "x", "clientMsgId": format!("q{n}")}]);
        bob.send(&format!("42{n}{frame}")).await;
    }
    // 1 running + 256 waiting; the last 43 are refused at once.
    for n in 257..300u64 {
        let ack = bob.wait_ack(n).await;
        assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
        assert_eq!(ack["error"]["retryAfterMs"], 100);
    }
    drop(bob);
    app.restore_postgres();
}

#[actix_web::test]
async fn a_room_that_cannot_be_followed_is_not_joined() {
    // Redis is unreachable: the node cannot follow any room's channel.
    let app = TestApp::spawn_with(|s| {
        s.redis_url = "redis://127.0.0.1:1".into();
        s.room_idle = Duration::from_millis(50);
    })
    .await;
    app.listing("l1", "sella").await;
    let mut client = Client::open(&app).await;
    client.wait = std::time::Duration::from_secs(15);
    // A socket is still accepted, once the bound on following its user room ran out.
    assert!(client
        .connect(Some(&app.token("bob")))
        .await
        .starts_with("40{"));
    let ack = client
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    assert_eq!(ack["error"]["code"], "service_unavailable", "{ack}");
    // Only the user room is left (joined on a best-effort basis).
    eventually("the listing room was undone", || async {
        app.registry_stats().await.rooms == 1
    })
    .await;
}
