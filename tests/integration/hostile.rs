//! Hostile clients against the transport's bounds (issue 12): each test
//! shows a bound trip and the node go on serving another client meanwhile.
//! `memory` measures a node's memory and must run in the serial pass.

// mod memory;

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;
use crate::transports::Poller;

/// Opens a long-polling session, as from `forwarded` when given (an
/// `X-Forwarded-For` header); the status and the body.
async fn open_polling(app: &TestApp, forwarded: Option<&str>) -> (u16, String) {
    let mut request = awc::Client::new().get(app.http("/socket.io/?EIO=4&transport=polling"));
    if let Some(forwarded) = forwarded {
        request = request.insert_header(("X-Forwarded-For", forwarded));
    }
    let mut resp = request.send().await.expect("GET");
    let body = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        String::from_utf8(body.to_vec()).expect("UTF-8"),
    )
}

/// The value of `souk_limits_tripped_total{limit}` (0 when never tripped).
async fn tripped(app: &TestApp, limit: &str) -> u64 {
    let prefix = format!("souk_limits_tripped_total{{limit=\"{limit}\"}} ");
    app.metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&prefix)?.parse().ok())
        .unwrap_or(0)
}

/// Asserts that `client` is still served: an event is acked `ok`.
async fn still_served(client: &mut Client) {
    let ack = client
        .emit_ack("presence:watch", json!({"userIds": ["someone"]}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[actix_web::test]
async fn sessions_before_connect_have_their_own_cap_and_a_deadline() {
    let app = TestApp::spawn_with(&[
        ("SOUK_MAX_CONNECTIONS", "100"),
        ("SOUK_MAX_HANDSHAKES", "3"),
        ("SOUK_CONNECT_TIMEOUT_MS", "1500"),
    ])
    .await;
    // A CONNECTed client does not hold a handshake place.
    let mut served = app.connect("ann").await;
    for _ in 0..3 {
        assert_eq!(open_polling(&app, None).await.0, 200);
    }
    // Three sessions that never CONNECT hold every place: the next opens,
    // polling or WebSocket, are refused though the node holds 4 of 100.
    let (status, body) = open_polling(&app, None).await;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("yet to CONNECT"),
        "{body}"
    );
    match awc::Client::new().ws(app.ws_url()).connect().await {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 503)
        }
        other => panic!("a WebSocket open was not refused: {:?}", other.is_ok()),
    }
    assert_eq!(tripped(&app, "handshakes").await, 2);
    still_served(&mut served).await;

    // They are closed at the deadline, and their places are free again.
    eventually("the handshakes timed out", || async {
        tripped(&app, "connect_timeout").await == 3
    })
    .await;
    let mut next = Client::open(&app).await;
    assert!(next
        .connect(Some(&app.token("ben")))
        .await
        .starts_with("40{"));
    still_served(&mut next).await;
}

#[actix_web::test]
async fn an_address_may_open_only_so_many_sessions() {
    let app = TestApp::spawn_with(&[
        ("SOUK_OPENS_PER_ADDR_BURST", "3"),
        ("SOUK_OPENS_PER_ADDR_PER_SEC", "1"),
    ])
    .await;
    let mut served = app.connect("ann").await;
    // X-Forwarded-For from a peer that is not a trusted proxy changes nothing.
    for n in 0..2 {
        let (status, body) = open_polling(&app, Some(&format!("10.0.0.{n}"))).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = open_polling(&app, Some("10.0.0.9")).await;
    assert_eq!(status, 429, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    let wait = body["error"]["retryAfterMs"].as_u64().unwrap();
    assert!((1..=1000).contains(&wait), "{body}");
    assert_eq!(tripped(&app, "opens_per_addr").await, 1);
    // Sessions already open are served; the address opens again once its
    // bucket refills.
    still_served(&mut served).await;
    actix_web::rt::time::sleep(Duration::from_millis(wait + 50)).await;
    assert_eq!(open_polling(&app, None).await.0, 200);
    assert_eq!(open_polling(&app, None).await.0, 429);
}

#[actix_web::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_opens() {
    let app = TestApp::spawn_with(&[
        ("SOUK_OPENS_PER_ADDR_BURST", "2"),
        ("SOUK_OPENS_PER_ADDR_PER_SEC", "1"),
        ("SOUK_TRUSTED_PROXIES", "127.0.0.1"),
    ])
    .await;
    // The address the proxy appended counts, not one the client wrote before it.
    for forged in ["1.1.1.1, 10.0.0.1", "2.2.2.2, 10.0.0.1"] {
        assert_eq!(open_polling(&app, Some(forged)).await.0, 200);
    }
    assert_eq!(open_polling(&app, Some("3.3.3.3, 10.0.0.1")).await.0, 429);
    assert_eq!(open_polling(&app, Some("10.0.0.1")).await.0, 429);
    // Another client behind the same proxy is served meanwhile.
    assert_eq!(open_polling(&app, Some("10.0.0.2")).await.0, 200);
    let poller = Poller::open(&app).await;
    let hello = poller.connect(&app.token("ann")).await;
    assert!(hello["sid"].is_string(), "{hello}");
    // The proxy's own requests count as one more client.
    assert_eq!(open_polling(&app, None).await.0, 200);
    assert_eq!(open_polling(&app, None).await.0, 429);
}
