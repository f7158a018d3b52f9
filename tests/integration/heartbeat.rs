//! Engine.IO heartbeat: the server pings, the client pongs.

use std::time::{Duration, Instant};

use actix_http::ws::CloseCode;
use serde_json::json;

use crate::helpers::*;

/// Pings every 200 ms, answered within 200 ms.
fn fast_pings(s: &mut Settings) {
    s.ping_interval = Duration::from_millis(200);
    s.ping_timeout = Duration::from_millis(200);
}

#[actix_web::test]
async fn a_client_that_answers_pings_stays_connected() {
    let app = TestApp::spawn_with(fast_pings).await;
    let mut client = app.connect("ivy").await;
    assert_eq!(client.open["pingInterval"], 200);
    // Several times interval + timeout, answering every ping.
    client
        .assert_no_event("server:error", Duration::from_millis(1500))
        .await;
    assert_eq!(
        client.emit_ack("nope", json!({})).await["error"]["code"],
        "unsupported"
    );
}

#[actix_web::test]
async fn a_client_that_stops_answering_is_closed_with_ping_timeout() {
    let app = TestApp::spawn_with(fast_pings).await;
    let mut client = app.connect("ivy").await;
    client.auto_pong = false;
    let started = Instant::now();
    let mut pings = 0;
    let reason = loop {
        match client.recv().await {
            Frame::Text(text) if text == "2" => pings += 1,
            Frame::Text(_) => {}
            Frame::Closed(reason) => break reason,
        }
    };
    assert_eq!(pings, 1, "one unanswered ping is enough");
    let reason = reason.expect("close frame");
    assert_eq!(reason.code, CloseCode::Away);
    assert_eq!(reason.description.as_deref(), Some("ping timeout"));
    assert!(started.elapsed() < Duration::from_millis(1500));
    eventually("ping timeout counted and session gone", || async {
        app.metrics()
            .await
            .contains(r#"souk_disconnects_total{reason="ping timeout"} 1"#)
            && app.registry_stats().await.sessions == 0
    })
    .await;
}

#[actix_web::test]
async fn a_connection_that_never_connects_is_closed() {
    let app = TestApp::spawn_with(|s| s.connect_timeout = Duration::from_millis(300)).await;
    let mut client = Client::open(&app).await;
    let reason = client.expect_close().await.expect("close frame");
    assert_eq!(reason.description.as_deref(), Some("connect timeout"));
}
