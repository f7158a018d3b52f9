//! Health, readiness, metrics, dev tokens and the server API's auth.

use std::time::Duration;

use serde_json::{json, Value};

use crate::helpers::*;

async fn get(url: String) -> (u16, Value) {
    let mut resp = awc::Client::new().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

#[actix_web::test]
async fn healthz_and_readyz_answer_when_stores_are_up() {
    let app = TestApp::spawn().await;
    assert_eq!(
        get(app.http("/healthz")).await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        get(app.http("/readyz")).await,
        (200, json!({"postgres": "ok", "redis": "ok"}))
    );
}

#[actix_web::test]
async fn readyz_is_503_while_redis_is_down() {
    let app = TestApp::spawn_with(|s| s.redis_url = "redis://127.0.0.1:1".into()).await;
    let (status, body) = get(app.http("/readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(body["redis"], "down");
    assert_eq!(body["postgres"], "ok");
    assert_eq!(body["error"]["code"], "service_unavailable");
    assert_eq!(
        get(app.http("/healthz")).await.0,
        200,
        "alive though not ready"
    );
}

#[actix_web::test]
async fn a_room_event_that_cannot_be_published_is_not_acknowledged() {
    let app = TestApp::spawn_with(|s| s.redis_url = "redis://127.0.0.1:1".into()).await;
    let (status, body) = app.room_event("listing:l1", "tick", json!(1)).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "service_unavailable");
    let (status, _) = app
        .api(
            "POST",
            "/api/v1/users/ann/notifications",
            Some(json!({"kind": "hello", "data": {}})),
        )
        .await;
    assert_eq!(status, 503);
}

#[actix_web::test]
async fn readyz_is_503_while_postgres_is_down() {
    let app =
        TestApp::spawn_with(|s| s.database_url = "postgres://postgres@127.0.0.1:1/souk".into())
            .await;
    let (status, body) = get(app.http("/readyz")).await;
    assert_eq!(status, 503);
    assert_eq!(body["postgres"], "down");
    assert_eq!(body["redis"], "ok");
}

#[actix_web::test]
async fn metrics_count_connections_events_and_disconnects() {
    let app = TestApp::spawn_with(|s| s.room_idle = Duration::from_millis(50)).await;
    let mut client = app.connect("mia").await;
    client.emit_ack("nope", json!({})).await;
    client
        .emit_ack("auth:refresh", json!({"token": app.token("mia")}))
        .await;
    let text = app.metrics().await;
    for line in [
        "souk_connections 1",
        r#"souk_events_total{event="unknown",outcome="error"} 1"#,
        r#"souk_events_total{event="auth:refresh",outcome="ok"} 1"#,
        r#"souk_rooms{kind="user"} 1"#,
        "# TYPE souk_event_duration_seconds histogram",
        "# TYPE souk_deliveries_total counter",
        "# TYPE souk_redis_ops_total counter",
        "# TYPE souk_db_ops_total counter",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    client.send("1").await;
    client.expect_close().await;
    eventually("disconnect counted", || async {
        let text = app.metrics().await;
        text.contains("souk_connections 0")
            && text.contains(r#"souk_disconnects_total{reason="transport close"} 1"#)
            && text.contains(r#"souk_rooms{kind="user"} 0"#)
    })
    .await;
}

#[actix_web::test]
async fn the_server_api_needs_a_service_token() {
    let app = TestApp::spawn().await;
    let url = app.http("/api/v1/users/u1/notifications");
    let body = json!({"kind": "k", "data": {}});
    let client = awc::Client::new();

    let mut resp = client.post(&url).send_json(&body).await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["code"], "unauthorized");

    let resp = client
        .post(&url)
        .bearer_auth("forged")
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    let mut resp = client
        .post(&url)
        .bearer_auth(app.token("u1"))
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let error: Value = resp.json().await.unwrap();
    assert_eq!(error["error"]["code"], "forbidden");

    let service = app.token_with_role("backend", "service");
    let resp = client
        .post(&url)
        .bearer_auth(&service)
        .send_json(&body)
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
}

#[actix_web::test]
async fn the_server_api_refuses_bad_bodies_with_json_errors() {
    let app = TestApp::spawn().await;
    let service = app.token_with_role("backend", "service");
    let client = awc::Client::new();
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("/api/v1/users/u1/notifications", b"{not json".to_vec(), 400),
        (
            "/api/v1/users/u1/notifications",
            br#"{"data":{}}"#.to_vec(),
            422,
        ),
        (
            "/api/v1/users/u1/notifications",
            br#"{"kind":5}"#.to_vec(),
            422,
        ),
        (
            "/api/v1/users/u1/notifications",
            br#"{"kind":""}"#.to_vec(),
            422,
        ),
        (
            "/api/v1/users/bad%20id/notifications",
            br#"{"kind":"k"}"#.to_vec(),
            400,
        ),
        (
            "/api/v1/users/u1/notifications",
            format!(r#"{{"kind":"k","data":"{}"}}"#, "x".repeat(300 * 1024)).into_bytes(),
            413,
        ),
    ];
    for (path, body, status) in cases {
        let mut resp = client
            .post(app.http(path))
            .bearer_auth(&service)
            .content_type("application/json")
            .send_body(body)
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status, "{path}");
        let error: Value = resp.json().await.unwrap();
        assert_eq!(error["error"]["code"], "bad_request", "{path}: {error}");
        assert!(error["error"]["message"].is_string());
    }
}

#[actix_web::test]
async fn dev_tokens_exist_only_in_dev_mode() {
    let app = TestApp::spawn().await;
    let resp = awc::Client::new()
        .post(app.http("/dev/token"))
        .send_json(&json!({"sub": "a"}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    // The web front asks GET /dev/ whether to offer the demo user switcher.
    let resp = awc::Client::new()
        .get(app.http("/dev/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    let dev = TestApp::spawn_with(dev_mode).await;
    let mut resp = awc::Client::new()
        .get(dev.http("/dev/"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["dev"], true);
    let mut resp = awc::Client::new()
        .post(dev.http("/dev/token"))
        .send_json(&json!({"sub": "nina", "role": "seller"}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    let mut client = Client::open(&dev).await;
    let reply = client.connect(body["token"].as_str()).await;
    assert!(reply.starts_with("40{"), "{reply}");

    let resp = awc::Client::new()
        .post(dev.http("/dev/token"))
        .send_json(&json!({"sub": "nina", "role": "root"}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 422);
}

#[actix_web::test]
async fn listings_are_validated_naming_the_field() {
    let app = TestApp::spawn().await;
    let base = json!({"sellerId": "s", "title": "T", "price": 1, "currency": "EUR"});
    let cases = [
        ("sellerId", json!("bad id"), "sellerId"),
        ("title", json!("  "), "title"),
        ("price", json!(-1), "price"),
        ("price", json!(1_000_000_000_001_i64), "price"),
        ("currency", json!("euro"), "currency"),
        ("visibility", json!("secret"), "visibility"),
        ("availability", json!("gone"), "availability"),
        (
            "auction",
            json!({"startsAt": "2030-01-02T00:00:00Z", "endsAt": "2030-01-01T00:00:00Z", "startPrice": 1, "minIncrement": 1}),
            "auction.startsAt",
        ),
        (
            "auction",
            json!({"startsAt": "2030-01-01T00:00:00Z", "endsAt": "2030-01-02T00:00:00Z", "startPrice": 1, "minIncrement": 0}),
            "auction.minIncrement",
        ),
    ];
    for (field, value, named) in cases {
        let mut body = base.clone();
        body[field] = value;
        let (status, error) = app.put_listing("l1", body).await;
        assert_eq!(status, 422, "{field}: {error}");
        assert_eq!(error["error"]["code"], "bad_request");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{message} should name {named}");
    }
    let (status, _) = app.put_listing("bad%20id", base.clone()).await;
    assert_eq!(status, 400);
    let (status, body) = app.put_listing("l1", base.clone()).await;
    assert_eq!(status, 201, "{body}");
    let mut other_seller = base;
    other_seller["sellerId"] = json!("someone-else");
    let (status, body) = app.put_listing("l1", other_seller).await;
    assert_eq!(
        (status, body["error"]["code"].clone()),
        (409, json!("conflict"))
    );
    let (status, _) = app.api("GET", "/api/v1/listings/nope", None).await;
    assert_eq!(status, 404);
}

#[actix_web::test]
async fn auction_listings_show_the_reserve_price_to_the_seller_only() {
    let app = TestApp::spawn().await;
    let (status, body) = app
        .put_listing(
            "a1",
            json!({"sellerId": "sella", "title": "Lamp", "price": 0, "currency": "EUR",
                   "auction": {"startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
                               "startPrice": 500, "minIncrement": 50, "reservePrice": 2000, "extendWindowSecs": 30}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        body["listing"]["auction"]["reservePrice"], 2000,
        "the backend sees it"
    );
    let mut buyer = app.connect("bob").await;
    let ack = buyer
        .emit_ack("listing:watch", json!({"listingId": "a1"}))
        .await;
    let auction = &ack["listing"]["auction"];
    assert_eq!(auction["status"], "open");
    assert_eq!(auction["startPrice"], 500);
    assert_eq!(auction["bidCount"], 0);
    assert!(auction.get("reservePrice").is_none(), "{auction}");
    let mut seller = app.connect("sella").await;
    let ack = seller
        .emit_ack("listing:watch", json!({"listingId": "a1"}))
        .await;
    assert_eq!(ack["listing"]["auction"]["reservePrice"], 2000);
    let ack = buyer
        .emit_ack(
            "listing:reserve",
            json!({"listingId": "a1", "idempotencyKey": "k"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "unavailable", "{ack}");
}

#[actix_web::test]
async fn the_backend_emits_to_any_room() {
    let app = TestApp::spawn().await;
    app.listing("l1", "sella").await;
    let mut watcher = app.connect("wendy").await;
    watcher
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    let (status, body) = app
        .api(
            "POST",
            "/api/v1/rooms/listing:l1/events",
            Some(json!({"event": "promo", "data": {"pct": 10}})),
        )
        .await;
    assert_eq!((status, body), (202, json!({"room": "listing:l1"})));
    assert_eq!(watcher.wait_event("promo").await, vec![json!({"pct": 10})]);
    for room in ["lobby", "listing:", "auction:x", "user:a%20b"] {
        let (status, _) = app
            .api(
                "POST",
                &format!("/api/v1/rooms/{room}/events"),
                Some(json!({"event": "x"})),
            )
            .await;
        assert_eq!(status, 400, "{room}");
    }
    let (status, _) = app
        .api(
            "POST",
            "/api/v1/rooms/listing:l1/events",
            Some(json!({"event": "server:error"})),
        )
        .await;
    assert_eq!(status, 422);
}

#[actix_web::test]
async fn the_node_comes_back_after_its_redis_connections_are_cut() {
    let proxy = RedisProxy::start().await;
    let app = TestApp::spawn_with(|s| s.redis_url = proxy.url.clone()).await;
    app.listing("l1", "sella").await;
    // Enough commands that every shared connection is in use.
    for _ in 0..8 {
        assert_eq!(get(app.http("/readyz")).await.0, 200);
    }

    proxy.cut_all();
    // Shared connections are checked at most a second apart; broken ones
    // are replaced, so the node is ready again within a few seconds.
    eventually("ready again after the cut", || async {
        get(app.http("/readyz")).await.0 == 200
    })
    .await;
    // And room events flow again, publish and subscription both.
    let mut watcher = app.connect("ann").await;
    let ack = watcher
        .emit_ack("listing:watch", json!({"listingId": "l1"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, _) = app.room_event("listing:l1", "tick", json!(1)).await;
    assert_eq!(status, 202);
    assert_eq!(watcher.wait_event("tick").await, vec![json!(1)]);
}

#[actix_web::test]
async fn room_events_sent_just_after_redis_connections_are_cut_are_acked_and_delivered() {
    let proxy = RedisProxy::start().await;
    let app = TestApp::spawn_with(|s| s.redis_url = proxy.url.clone()).await;
    app.listing("l1", "sella").await;
    let mut watcher = app.watching("ann", "l1").await;
    let tick = |n: u64| app.room_event("listing:l1", "tick", json!(n));
    assert_eq!(tick(0).await.0, 202);
    assert_eq!(watcher.wait_event("tick").await, vec![json!(0)]);

    // The publisher's connection and the subscriber's both break; the
    // publisher retries on a fresh one, the subscriber reconnects and
    // catches the room up from its log.
    proxy.cut_all();
    for n in 1..=5 {
        let (status, body) = tick(n).await;
        assert_eq!(status, 202, "tick {n}: {body}");
    }
    for n in 1..=5 {
        assert_eq!(watcher.wait_event("tick").await, vec![json!(n)]);
    }
}
