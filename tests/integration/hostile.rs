//! Hostile clients against the transport's bounds (issue 12): each test
//! shows a bound trip and the node go on serving another client meanwhile.
//! `memory` measures a node's memory and must run in the serial pass.

mod memory;

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
    let app = TestApp::spawn_with(|s| {
        s.max_connections = 100;
        s.guard.max_handshakes = 3;
        s.connect_timeout = Duration::from_millis(1500);
    })
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
    let app = TestApp::spawn_with(|s| {
        s.guard.opens_per_addr = Rate {
            per_second: 1.0,
            burst: 3.0,
        }
    })
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
    let app = TestApp::spawn_with(|s| {
        s.guard.opens_per_addr = Rate {
            per_second: 1.0,
            burst: 2.0,
        };
        s.guard.trusted_proxies = vec![std::net::Ipv4Addr::LOCALHOST.into()];
    })
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

/// The value of a counter or gauge line (0 when absent).
async fn metric(app: &TestApp, line_prefix: &str) -> u64 {
    app.metrics()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

/// `n` packets joined as a long-polling body.
fn payload(packet: &str, n: usize) -> String {
    vec![packet; n].join("\u{1e}")
}

#[actix_web::test]
async fn every_queued_packet_costs_an_overhead_in_the_outbound_bound() {
    // 1000 pongs are 1000 bytes of payload, well within 50 kB; counted
    // with their overhead they are not.
    let app = TestApp::spawn_with(|s| s.max_outbound = 50_000).await;
    let mut served = app.connect("ann").await;
    let poller = Poller::open(&app).await;
    poller.connect(&app.token("ben")).await;
    // No GET takes them: every pong waits in the node.
    let (status, body) = poller.post(&payload("2", 1000)).await;
    assert_eq!(status, 200, "{body}");
    eventually("the poller is closed as a slow consumer", || async {
        metric(&app, r#"souk_disconnects_total{reason="slow consumer"}"#).await == 1
    })
    .await;
    assert_eq!(tripped(&app, "outbound_bytes").await, 1);
    still_served(&mut served).await;
}

#[actix_web::test]
async fn a_post_carries_a_bounded_number_of_packets_and_stops_when_its_session_closes() {
    let app = TestApp::spawn_with(|s| s.guard.max_post_packets = 50).await;
    let mut served = app.connect("ann").await;

    let flood = Poller::open(&app).await;
    flood.connect(&app.token("ben")).await;
    let (status, body) = flood.post(&payload("6", 51)).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("at most 50 packets"), "{body}");
    assert_eq!(tripped(&app, "post_packets").await, 1);
    assert_eq!(flood.get().await, (200, "1".to_owned()), "closed");

    // Ten bad frames in a row close a session: the forty after them in the
    // same POST are not even read.
    let garbage = Poller::open(&app).await;
    let (status, body) = garbage.post(&payload("x", 50)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(metric(&app, "souk_bad_frames_total").await, 10);
    still_served(&mut served).await;
}

#[actix_web::test]
async fn overlapping_posts_on_one_sid_are_refused_and_end_the_session() {
    use tokio::io::AsyncWriteExt;

    let app = TestApp::spawn().await;
    let mut served = app.connect("ann").await;
    let poller = Poller::open(&app).await;
    poller.connect(&app.token("ben")).await;
    // A POST whose body never ends...
    let mut first = tokio::net::TcpStream::connect(&app.address).await.unwrap();
    let head = format!(
        "POST /socket.io/?EIO=4&transport=polling&sid={} HTTP/1.1\r\nHost: {}\r\n\
         Content-Length: 1000\r\n\r\n6",
        poller.sid, app.address
    );
    first.write_all(head.as_bytes()).await.unwrap();
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    // ...and a second one on the same sid meanwhile.
    let (status, body) = poller.post("6").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("overlapping"), "{body}");
    assert_eq!(tripped(&app, "overlapping_post").await, 1);
    assert_eq!(poller.get().await, (200, "1".to_owned()), "closed");
    drop(first);
    still_served(&mut served).await;
    let other = Poller::open(&app).await;
    other.connect(&app.token("cy")).await;
}

#[actix_web::test]
async fn connect_attempts_and_token_refreshes_are_rate_limited_per_socket() {
    let app = TestApp::spawn_with(|s| {
        s.guard.token_checks = Rate {
            per_second: 1.0,
            burst: 3.0,
        }
    })
    .await;
    let mut guesser = Client::open(&app).await;
    for _ in 0..3 {
        let reply = guesser.connect(Some("guess")).await;
        assert!(reply.contains("invalid_token"), "{reply}");
    }
    // Past the burst even a good token waits: no token is checked at all.
    let reply = guesser.connect(Some(&app.token("ann"))).await;
    let body: Value = serde_json::from_str(reply.strip_prefix("44").unwrap()).unwrap();
    assert_eq!(body["message"], "rate_limited", "{reply}");
    assert_eq!(body["data"]["code"], "rate_limited", "{reply}");
    let wait = body["data"]["retryAfterMs"].as_u64().unwrap();
    assert!((1..=1000).contains(&wait), "{reply}");
    // Another socket has its own checks meanwhile.
    let mut other = app.connect("ben").await;
    still_served(&mut other).await;
    actix_web::rt::time::sleep(Duration::from_millis(wait + 50)).await;
    let reply = guesser.connect(Some(&app.token("ann"))).await;
    assert!(reply.starts_with("40{"), "{reply}");
    still_served(&mut guesser).await;

    // auth:refresh draws on the same checks: CONNECT took one of three.
    let mut other = app.connect("ben").await;
    for _ in 0..2 {
        let ack = other
            .emit_ack("auth:refresh", json!({"token": app.token("ben")}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let ack = other
        .emit_ack("auth:refresh", json!({"token": app.token("ben")}))
        .await;
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    assert!(ack["error"]["retryAfterMs"].as_u64().unwrap() >= 1, "{ack}");
    assert_eq!(tripped(&app, "token_checks").await, 2);
    still_served(&mut other).await;
}

/// A connection that never sends a request is closed after the request
/// timeout (5 s), once: looking at its first bytes to route it must not
/// give it a second timeout at the HTTP server.
#[actix_web::test]
async fn a_connection_that_sends_nothing_is_closed_after_one_request_timeout() {
    use tokio::io::AsyncReadExt;

    let app = TestApp::spawn().await;
    let mut silent = tokio::net::TcpStream::connect(&app.address).await.unwrap();
    let started = std::time::Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), silent.read_to_end(&mut rest)).await;
    let took = started.elapsed();
    assert!(read.is_ok(), "still open after 15 s");
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_millis(7500),
        "closed after {took:?}"
    );
}
