//! Engine.IO long-polling, its upgrade to WebSocket, and the bounded
//! outbound queue that closes slow consumers.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

/// A raw long-polling client: one GET or POST at a time, as written.
pub(crate) struct Poller {
    base: String,
    pub(crate) sid: String,
    open: Value,
    /// Packets read but not yet looked at.
    unread: RefCell<VecDeque<String>>,
}

impl Poller {
    /// The handshake GET.
    pub(crate) async fn open(app: &TestApp) -> Poller {
        let base = app.http("/socket.io/?EIO=4&transport=polling");
        let (status, body) = get(&base).await;
        assert_eq!(status, 200, "{body}");
        let open: Value =
            serde_json::from_str(body.strip_prefix('0').expect("open packet")).expect("open JSON");
        let sid = open["sid"].as_str().expect("sid").to_owned();
        Poller {
            base,
            sid,
            open,
            unread: RefCell::default(),
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("{}&sid={}", self.base, self.sid)
    }

    pub(crate) async fn get(&self) -> (u16, String) {
        get(&self.url()).await
    }

    pub(crate) async fn post(&self, body: &str) -> (u16, String) {
        let mut resp = awc::Client::new()
            .post(self.url())
            .timeout(Duration::from_secs(10))
            .send_body(body.to_owned())
            .await
            .expect("POST");
        let body = resp.body().limit(1 << 24).await.expect("body");
        (
            resp.status().as_u16(),
            String::from_utf8(body.to_vec()).expect("UTF-8"),
        )
    }

    /// GETs until a packet matching `wanted` arrives; answers pings on the way.
    pub(crate) async fn wait_for(&self, wanted: impl Fn(&str) -> bool) -> String {
        for _ in 0..5 {
            let unread: Vec<String> = self.unread.borrow_mut().drain(..).collect();
            let mut found = None;
            for packet in unread {
                if found.is_none() && wanted(&packet) {
                    found = Some(packet);
                } else if found.is_some() {
                    self.unread.borrow_mut().push_back(packet);
                }
            }
            if let Some(packet) = found {
                return packet;
            }
            let (status, body) = self.get().await;
            assert_eq!(status, 200, "{body}");
            for packet in body.split('\x1e') {
                if packet == "2" {
                    assert_eq!(self.post("3").await.0, 200);
                } else {
                    self.unread.borrow_mut().push_back(packet.to_owned());
                }
            }
        }
        panic!("no such packet in 5 polls");
    }

    /// CONNECTs with `token` over polling; answers the CONNECT reply.
    pub(crate) async fn connect(&self, token: &str) -> Value {
        let (status, body) = self.post(&format!("40{}", json!({ "token": token }))).await;
        assert_eq!((status, body.as_str()), (200, "ok"));
        let reply = self.wait_for(|p| p.starts_with("40")).await;
        serde_json::from_str(&reply[2..]).expect("CONNECT reply JSON")
    }
}

pub(crate) async fn get(url: &str) -> (u16, String) {
    let mut resp = awc::Client::new()
        .get(url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("GET");
    let body = resp.body().limit(1 << 24).await.expect("body");
    (
        resp.status().as_u16(),
        String::from_utf8(body.to_vec()).expect("UTF-8"),
    )
}

async fn tick(app: &TestApp, n: i64, pad: &str) {
    let (status, body) = app
        .room_event("listing:l1", "tick", json!({"n": n, "pad": pad}))
        .await;
    assert_eq!(status, 202, "{body}");
}

#[actix_web::test]
async fn a_polling_client_connects_acks_and_gets_room_events() {
    let app = TestApp::spawn().await;
    app.listing("l1", "sella").await;
    let poller = Poller::open(&app).await;
    assert_eq!(poller.open["upgrades"], json!(["websocket"]));

    let hello = poller.connect(&app.token("ann")).await;
    assert!(hello["pid"].is_string(), "{hello}");
    let watch = json!(["listing:watch", {"listingId": "l1"}]);
    assert_eq!(poller.post(&format!("421{watch}")).await.0, 200);
    let ack = poller.wait_for(|p| p.starts_with("431")).await;
    let ack: Value = serde_json::from_str(&ack[3..]).unwrap();
    assert_eq!(ack[0]["ok"], true, "{ack}");

    // A GET waits until the event comes.
    let waiting = actix_web::rt::spawn({
        let url = poller.url();
        async move { get(&url).await }
    });
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "the GET waits for something to send"
    );
    tick(&app, 1, "").await;
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with(r#"42["tick",{"n":1"#), "{body}");
    // The room put it in the long-polling queue and woke the GET: no
    // message through the session's mailbox.
    let metrics = app.metrics().await;
    assert!(metrics.contains("\nsouk_deliveries_total 1\n"), "{metrics}");
    assert!(
        metrics.contains("\nsouk_deliveries_mailbox_total 0\n"),
        "{metrics}"
    );
}

#[actix_web::test]
async fn several_packets_in_one_post_run_in_order() {
    let app = TestApp::spawn().await;
    let poller = Poller::open(&app).await;
    poller.connect(&app.token("ann")).await;
    let bad = r#"42["listing:watch",{"listingId":"no such"}]"#;
    let body = format!("421[\"nope\"]\x1e{bad}\x1exyz");
    assert_eq!(poller.post(&body).await.0, 200);
    let ack = poller.wait_for(|p| p.starts_with("431")).await;
    assert!(ack.contains("unknown event"), "{ack}");
    let error = poller.wait_for(|p| p.contains("server:error")).await;
    assert!(error.contains("listing:watch"), "{error}");
    let malformed = poller.wait_for(|p| p.contains("server:error")).await;
    assert!(malformed.contains("malformed frame"), "{malformed}");
}

/// A node with listing `l1`, and ann watching it by long-polling.
async fn polling_watcher() -> (TestApp, Poller) {
    let app = TestApp::spawn().await;
    app.listing("l1", "sella").await;
    let poller = Poller::open(&app).await;
    poller.connect(&app.token("ann")).await;
    let watch = json!(["listing:watch", {"listingId": "l1"}]);
    assert_eq!(poller.post(&format!("421{watch}")).await.0, 200);
    poller.wait_for(|p| p.starts_with("431")).await;
    (app, poller)
}

#[actix_web::test]
async fn a_polling_session_upgrades_to_websocket() {
    let (app, poller) = polling_watcher().await;
    let pending = actix_web::rt::spawn({
        let url = poller.url();
        async move { get(&url).await }
    });
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;

    let ws_url = format!("{}&sid={}", app.ws_url(), poller.sid);
    let (_, framed) = awc::Client::new().ws(ws_url).connect().await.unwrap();
    let mut ws = Client::from_framed(framed);
    ws.send("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    // The waiting GET lets go with a noop, so the client can pause polling.
    assert_eq!(pending.await.unwrap(), (200, "6".to_owned()));
    // An event sent while upgrading waits for the new transport.
    tick(&app, 0, "").await;
    ws.send("5").await;
    assert_eq!(ws.wait_event("tick").await[0]["n"], 0);

    let ack = ws
        .emit_ack("auth:refresh", json!({"token": app.token("ann")}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    tick(&app, 1, "").await;
    assert_eq!(ws.wait_event("tick").await[0]["n"], 1);
    // Polling is over for this session.
    let (status, body) = poller.get().await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = poller.post("6").await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn an_upgrade_that_never_completes_leaves_polling_working() {
    let app = TestApp::spawn().await;
    let poller = Poller::open(&app).await;
    poller.connect(&app.token("ann")).await;
    let ws_url = format!("{}&sid={}", app.ws_url(), poller.sid);
    let (_, framed) = awc::Client::new().ws(ws_url).connect().await.unwrap();
    let mut ws = Client::from_framed(framed);
    ws.send("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    drop(ws);
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let refresh = json!(["auth:refresh", {"token": app.token("ann")}]);
    assert_eq!(poller.post(&format!("427{refresh}")).await.0, 200);
    let ack = poller.wait_for(|p| p.starts_with("437")).await;
    assert!(ack.contains(r#""ok":true"#), "{ack}");
}

#[actix_web::test]
async fn bad_polling_requests_get_clear_errors() {
    let app = TestApp::spawn_with(|s| s.max_payload = 1000).await;
    // An unknown sid.
    let (status, body) = get(&app.http("/socket.io/?EIO=4&transport=polling&sid=nope")).await;
    assert_eq!(status, 400);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("sid"));

    // Two GETs at once: the session is closed, the first GET says so.
    let poller = Poller::open(&app).await;
    let first = actix_web::rt::spawn({
        let url = poller.url();
        async move { get(&url).await }
    });
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let (status, _) = poller.get().await;
    assert_eq!(status, 400);
    assert_eq!(first.await.unwrap(), (200, "1".to_owned()));
    assert_eq!(poller.get().await.0, 400, "the session is gone");

    // A body over maxPayload is refused and closes the session.
    let poller = Poller::open(&app).await;
    let (status, body) = poller.post(&"4".repeat(2000)).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(poller.get().await, (200, "1".to_owned()), "closed");
    assert_eq!(poller.get().await.0, 400, "the session is gone");

    // A WebSocket session does not poll.
    let mut client = Client::open(&app).await;
    let sid = client.open["sid"].as_str().unwrap().to_owned();
    let url = app.http(&format!("/socket.io/?EIO=4&transport=polling&sid={sid}"));
    assert_eq!(get(&url).await.0, 400);
    client.connect(Some(&app.token("ann"))).await;
}

#[actix_web::test]
async fn a_client_that_stops_reading_is_closed_and_starts_fresh_past_the_replay_bound() {
    let app = TestApp::spawn_with(|s| {
        s.max_outbound = 100_000;
        s.room_log_len = 20_000;
    })
    .await;
    app.listing("l1", "sella").await;
    let mut stalled = Client::open(&app).await;
    let hello = stalled.connect(Some(&app.token("ann"))).await;
    let hello: Value = serde_json::from_str(&hello[2..]).unwrap();
    let pid = hello["pid"].as_str().unwrap().to_owned();
    stalled
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    tick(&app, 0, "").await;
    let (_, offset) = stalled.wait_event_with_offset("tick").await;
    let offset = offset.unwrap();

    // The client reads no more; events pile up in the kernel's buffers and
    // then in the node, until the node gives up on it.
    let pad = "x".repeat(8000);
    let mut sent = 0;
    let slow = r#"souk_disconnects_total{reason="slow consumer"} 1"#;
    while !app.metrics().await.contains(slow) {
        for _ in 0..50 {
            sent += 1;
            tick(&app, sent, &pad).await;
        }
        assert!(sent < 10_000, "no slow-consumer close after {sent} events");
    }
    drop(stalled);

    // Back with its pid and last offset: it missed more than a replay may
    // carry (SOUK_MAX_REPLAY_BYTES, half the outbound bound, since a replay
    // counts against it), so it starts fresh, told so by a new pid; the
    // node stays whole. A replay within the bound is in hostile_limits.rs.
    let mut back = Client::open(&app).await;
    let auth = json!({"token": app.token("ann"), "pid": pid, "offset": offset});
    back.send(&format!("40{auth}")).await;
    let reply = back.recv_text().await;
    assert!(
        reply.starts_with("40") && !reply.contains(&pid),
        "fresh: {reply}"
    );
    back.assert_no_event("tick", Duration::from_millis(300))
        .await;
    assert!(app
        .metrics()
        .await
        .contains(r#"souk_limits_tripped_total{limit="replay_bytes"} 1"#));
}

/// A polling session CONNECTed with a token that expires `secs` seconds
/// from now (whole seconds: sooner by up to one).
async fn poller_expiring_in(app: &TestApp, secs: i64) -> Poller {
    let poller = Poller::open(app).await;
    let exp = chrono::Utc::now().timestamp() + secs;
    poller
        .connect(&hs256(json!({ "sub": "ann", "exp": exp })))
        .await;
    poller
}

#[actix_web::test]
async fn a_polling_session_closed_between_gets_keeps_its_last_packets_for_the_next_get() {
    let app = TestApp::spawn().await;
    let poller = poller_expiring_in(&app, 2).await;
    // No GET waits when the token expires.
    actix_web::rt::time::sleep(Duration::from_millis(2600)).await;
    let (status, body) = poller.get().await;
    assert_eq!(status, 200);
    let packets: Vec<&str> = body.split('\x1e').collect();
    assert!(packets[0].contains("token_expired"), "{body}");
    assert_eq!(packets.last(), Some(&"41"), "then DISCONNECT: {body}");
    // The close packet travels alone, so the client handles the rest first.
    assert_eq!(poller.get().await, (200, "1".to_owned()));
    assert_eq!(poller.get().await.0, 400, "the session is gone");
}

#[actix_web::test]
async fn a_closed_polling_session_ends_once_a_get_takes_its_close_packet() {
    let app = TestApp::spawn().await;
    let poller = poller_expiring_in(&app, 2).await;
    actix_web::rt::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(poller.get().await.0, 200, "the last packets");
    assert_eq!(poller.get().await, (200, "1".to_owned()));
    // The GET took the close packet from the session's queue on its own;
    // the session, told, stops now rather than at the end of its linger
    // (5 s from its close, some 4 s from here).
    let told = std::time::Instant::now();
    eventually("the session ends after its last GET", || async {
        app.registry_stats().await.sessions == 0
    })
    .await;
    assert!(
        told.elapsed() < Duration::from_secs(2),
        "{:?}",
        told.elapsed()
    );
}

#[actix_web::test]
async fn a_closed_polling_session_that_nobody_polls_ends_after_its_linger() {
    let app = TestApp::spawn().await;
    let _poller = poller_expiring_in(&app, 1).await;
    // The token expires within a second, with no GET waiting: the session
    // closes and waits 5 s (CLOSE_LINGER) for the GET of its close packet.
    actix_web::rt::time::sleep(Duration::from_millis(4000)).await;
    assert_eq!(app.registry_stats().await.sessions, 1, "still lingering");
    eventually("the lingering session ends without a GET", || async {
        app.registry_stats().await.sessions == 0
    })
    .await;
}

#[actix_web::test]
async fn pages_of_the_allowed_origins_may_long_poll_across_origins() {
    let app = TestApp::spawn_with(|s| {
        s.cors_origins = vec![
            "https://shop.example".into(),
            "https://admin.example".into(),
        ]
    })
    .await;
    let url = app.http("/socket.io/?EIO=4&transport=polling");
    let allow_origin = |resp: &awc::ClientResponse<_>| {
        resp.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_owned())
    };

    let client = awc::Client::new();
    let resp = client
        .get(&url)
        .insert_header(("Origin", "https://shop.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(allow_origin(&resp).as_deref(), Some("https://shop.example"));
    assert_eq!(
        resp.headers()
            .get("access-control-allow-credentials")
            .unwrap(),
        "true",
        "socket.io-client polls withCredentials when asked"
    );

    let preflight = client
        .request(awc::http::Method::OPTIONS, &url)
        .insert_header(("Origin", "https://admin.example"))
        .insert_header(("Access-Control-Request-Method", "POST"))
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(
        allow_origin(&preflight).as_deref(),
        Some("https://admin.example")
    );
    let methods = preflight
        .headers()
        .get("access-control-allow-methods")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(methods.contains("POST"), "{methods}");

    // Errors carry the header too, so the page can read them.
    let unknown = client
        .get(format!("{url}&sid=nope"))
        .insert_header(("Origin", "https://shop.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 400);
    assert_eq!(
        allow_origin(&unknown).as_deref(),
        Some("https://shop.example")
    );

    // Another origin's page gets no permission.
    for method in [awc::http::Method::GET, awc::http::Method::OPTIONS] {
        let resp = client
            .request(method.clone(), &url)
            .insert_header(("Origin", "https://evil.example"))
            .send()
            .await
            .unwrap();
        assert_eq!(allow_origin(&resp), None, "{method}");
    }
}

#[actix_web::test]
async fn a_node_at_its_connection_limit_refuses_new_ones_until_one_closes() {
    let app = TestApp::spawn_with(|s| s.max_connections = 2).await;
    let first = app.connect("ann").await;
    let mut second = app.connect("ben").await;

    let refused = awc::Client::new().ws(app.ws_url()).connect().await;
    match refused {
        Err(awc::error::WsClientError::InvalidResponseStatus(status)) => {
            assert_eq!(status.as_u16(), 503)
        }
        other => panic!("a third WebSocket was not refused: {:?}", other.is_ok()),
    }
    let (status, body) = get(&app.http("/socket.io/?EIO=4&transport=polling")).await;
    assert_eq!(status, 503, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("limit of 2 connections"));
    // Those held are served as before.
    let ack = second
        .emit_ack("presence:watch", json!({"userIds": ["ann"]}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert!(app
        .metrics()
        .await
        .contains("souk_connections_refused_total 2"));

    drop(first);
    eventually("a place is free again", || async {
        get(&app.http("/socket.io/?EIO=4&transport=polling"))
            .await
            .0
            == 200
    })
    .await;
}

/// The ticks (`n`) among the packets of a polling payload.
fn ticks_in(payload: &str) -> Vec<i64> {
    payload
        .split('\x1e')
        .filter_map(|packet| packet.strip_prefix("42"))
        .filter_map(|body| serde_json::from_str::<Value>(body).ok())
        .filter(|event| event[0] == "tick")
        .filter_map(|event| event[1]["n"].as_i64())
        .collect()
}

#[actix_web::test]
async fn an_upgrade_in_the_middle_of_a_stream_loses_nothing_and_keeps_order() {
    let (app, poller) = polling_watcher().await;

    const TICKS: i64 = 60;
    let ticker = async {
        for n in 0..TICKS {
            tick(&app, n, "").await;
            actix_web::rt::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let client = async {
        let mut seen = Vec::new();
        // Some ticks by polling,
        while seen.len() < 5 {
            let (status, body) = poller.get().await;
            assert_eq!(status, 200, "{body}");
            seen.extend(ticks_in(&body));
        }
        // an upgrade while they keep coming,
        let pending = actix_web::rt::spawn({
            let url = poller.url();
            async move { get(&url).await }
        });
        let ws_url = format!("{}&sid={}", app.ws_url(), poller.sid);
        let (_, framed) = awc::Client::new().ws(ws_url).connect().await.unwrap();
        let mut ws = Client::from_framed(framed);
        ws.send("2probe").await;
        assert_eq!(ws.recv_text().await, "3probe");
        let (status, body) = pending.await.unwrap();
        assert_eq!(status, 200, "{body}");
        seen.extend(ticks_in(&body));
        ws.send("5").await;
        // and the rest on the WebSocket.
        while seen.last() != Some(&(TICKS - 1)) {
            seen.push(ws.wait_event("tick").await[0]["n"].as_i64().unwrap());
        }
        (seen, ws)
    };
    let ((), (seen, mut ws)) = tokio::join!(ticker, client);
    assert_eq!(
        seen,
        (0..TICKS).collect::<Vec<_>>(),
        "each tick once, in order"
    );
    ws.assert_no_event("tick", Duration::from_millis(200)).await;
}

#[actix_web::test]
async fn a_room_frame_past_the_bound_closes_the_websocket_with_1013() {
    let app = TestApp::spawn_with(|s| s.max_outbound = 20_000).await;
    app.listing("l1", "sella").await;
    let mut ann = app.connect("ann").await;
    let ack = ann
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    tick(&app, 0, "").await;
    assert_eq!(ann.wait_event("tick").await[0]["n"], 0);
    // Larger than all the bound lets wait: the node closes it as a slow
    // consumer, with "try again later".
    tick(&app, 1, &"x".repeat(30_000)).await;
    let reason = ann.expect_close().await.expect("a close frame");
    assert_eq!(u16::from(reason.code), 1013, "{reason:?}");
    let slow = r#"souk_disconnects_total{reason="slow consumer"} 1"#;
    eventually("the slow consumer counted", || async {
        app.metrics().await.contains(slow)
    })
    .await;
    assert!(app
        .metrics()
        .await
        .contains(r#"souk_limits_tripped_total{limit="outbound_bytes"} 1"#));
}

/// Reads from `stream` until what came contains `wanted`: all of it.
async fn read_until(stream: &mut tokio::net::TcpStream, wanted: &str) -> String {
    use tokio::io::AsyncReadExt;
    let mut seen = Vec::new();
    let mut chunk = [0u8; 1024];
    while !String::from_utf8_lossy(&seen).contains(wanted) {
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await;
        match read {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&chunk[..n]),
            other => panic!(
                "no {wanted:?} ({other:?}); read: {}",
                String::from_utf8_lossy(&seen)
            ),
        }
    }
    String::from_utf8_lossy(&seen).into_owned()
}

/// nginx reuses its kept-alive connections to a node for any request, an
/// upgrade included: one that carried an API request first is the HTTP
/// server's, and an upgrade on it is still served (the front door's
/// upgrade, through the server's upgrade hook).
#[actix_web::test]
async fn a_websocket_upgrade_on_a_connection_that_carried_an_api_request_is_served() {
    use tokio::io::AsyncWriteExt;

    let app = TestApp::spawn().await;
    let mut stream = tokio::net::TcpStream::connect(&app.address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut stream, "{\"status\":\"ok\"}").await;
    let upgrade = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
                   Upgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    stream.write_all(upgrade.as_bytes()).await.unwrap();
    let answer = read_until(&mut stream, "\"pingInterval\"").await;
    assert!(
        answer.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{answer}"
    );
    assert!(answer.contains("0{\"sid\":"), "the open packet: {answer}");
}
