//! Handshake, CONNECT, refusals, the user room and `auth:refresh`.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};

use crate::helpers::*;

#[actix_web::test]
async fn open_packet_and_connect_reply_follow_the_contract() {
    let app = TestApp::spawn().await;
    let mut client = Client::open(&app).await;
    assert_eq!(client.open["upgrades"], json!([]));
    assert_eq!(client.open["pingInterval"], 25000);
    assert_eq!(client.open["pingTimeout"], 20000);
    assert_eq!(client.open["maxPayload"], 1_000_000);
    assert_eq!(client.open["sid"].as_str().map(str::len), Some(20));

    let reply = client.connect(Some(&app.token("alice"))).await;
    let body: Value = serde_json::from_str(reply.strip_prefix("40").unwrap()).unwrap();
    assert!(
        body["sid"].as_str().is_some_and(|s| !s.is_empty()),
        "{reply}"
    );
    assert!(
        body["pid"].as_str().is_some_and(|s| !s.is_empty()),
        "{reply}"
    );
    assert_ne!(
        body["sid"], client.open["sid"],
        "socket sid differs from engine sid"
    );
}

#[actix_web::test]
async fn connects_with_a_bearer_header_instead_of_the_payload() {
    let app = TestApp::spawn().await;
    let token = app.token("bob");
    let mut client = Client::open_url(&app.ws_url(), Some(&token)).await;
    let reply = client.connect(None).await;
    assert!(reply.starts_with("40{\"sid\""), "{reply}");
}

#[actix_web::test]
async fn refusals_carry_the_contract_codes() {
    let app = TestApp::spawn().await;
    let now = Utc::now().timestamp();
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "missing_token"),
        (Some(String::new()), "missing_token"),
        (Some("not-a-jwt".into()), "invalid_token"),
        // {"alg":"none"} with a valid-looking body and no signature.
        (
            Some(format!(
                "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
                base64_url(&json!({"sub": "a", "exp": now + 60}).to_string())
            )),
            "invalid_token",
        ),
        (
            Some(forged(json!({"sub": "a", "exp": now + 60}))),
            "invalid_token",
        ),
        (
            Some(hs256(json!({"sub": "a", "exp": now - 10}))),
            "token_expired",
        ),
        (
            Some(hs256(
                json!({"sub": "a", "exp": now + 60, "nbf": now + 600}),
            )),
            "invalid_token",
        ),
        (Some(hs256(json!({"sub": "a"}))), "invalid_token"),
        (Some(hs256(json!({"exp": now + 60}))), "invalid_token"),
        (
            Some(hs256(json!({"sub": "no spaces", "exp": now + 60}))),
            "invalid_token",
        ),
        (
            Some(app.token_with_role("backend", "service")),
            "invalid_token",
        ),
    ];
    for (token, code) in cases {
        let mut client = Client::open(&app).await;
        let reply = client.connect(token.as_deref()).await;
        assert_eq!(
            reply,
            format!(r#"44{{"message":"unauthorized","data":{{"code":"{code}"}}}}"#),
            "token {token:?}"
        );
    }
}

#[actix_web::test]
async fn a_token_that_is_not_a_string_is_invalid() {
    let app = TestApp::spawn().await;
    let mut client = Client::open(&app).await;
    client.send(r#"40{"token":42}"#).await;
    let reply = client.recv_text().await;
    assert_eq!(
        reply,
        r#"44{"message":"unauthorized","data":{"code":"invalid_token"}}"#
    );
}

#[actix_web::test]
async fn other_namespaces_are_refused() {
    let app = TestApp::spawn().await;
    let mut client = Client::open(&app).await;
    client
        .send(&format!("40/admin,{}", json!({"token": app.token("a")})))
        .await;
    assert_eq!(
        client.recv_text().await,
        r#"44/admin,{"message":"Invalid namespace"}"#
    );
    // The root namespace still works on the same connection.
    let reply = client.connect(Some(&app.token("a"))).await;
    assert!(reply.starts_with("40{"), "{reply}");
}

#[actix_web::test]
async fn no_handler_runs_before_connect() {
    let app = TestApp::spawn().await;
    let mut client = Client::open(&app).await;
    client.send(r#"421["auth:refresh",{"token":"x"}]"#).await;
    let ack = client.recv_text().await;
    assert!(ack.starts_with("431["), "{ack}");
    assert!(ack.contains(r#""code":"unauthorized""#), "{ack}");
    assert_eq!(app.registry_stats().await.rooms, 0, "no room joined");
}

#[actix_web::test]
async fn every_tab_of_a_user_is_in_its_user_room() {
    let app = TestApp::spawn().await;
    let mut tab1 = app.connect("carol").await;
    let mut tab2 = app.connect("carol").await;
    let mut other = app.connect("dave").await;
    eventually("three sessions in two rooms", || async {
        let stats = app.registry_stats().await;
        stats.sessions == 3 && stats.rooms == 2
    })
    .await;

    let resp = awc::Client::new()
        .post(app.http("/api/v1/users/carol/notifications"))
        .bearer_auth(app.token_with_role("backend", "service"))
        .send_json(&json!({"kind": "payout", "data": {"amount": 1200}}))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);

    let expected = json!({"kind": "payout", "data": {"amount": 1200}});
    assert_eq!(
        tab1.wait_event("notification").await,
        vec![expected.clone()]
    );
    assert_eq!(tab2.wait_event("notification").await, vec![expected]);
    other
        .assert_no_event("notification", Duration::from_millis(300))
        .await;
}

/// An idle connection starts no room actor (issue 13): a user room's actor
/// starts with the room's first event, and takes over the members who
/// joined before it; one who left before it is not among them, and one who
/// joins after it joins the actor. The room retires once all have gone.
#[actix_web::test]
async fn a_user_rooms_actor_starts_with_its_first_event() {
    let app = TestApp::spawn_with(|s| s.room_idle = Duration::from_millis(50)).await;
    let mut tab1 = app.connect("carol").await;
    let tab2 = app.connect("carol").await;
    let _other = app.connect("dave").await;
    eventually("three sessions in two rooms", || async {
        let stats = app.registry_stats().await;
        stats.sessions == 3 && stats.rooms == 2
    })
    .await;
    assert_eq!(app.registry_stats().await.actors, 0, "no actor while idle");
    drop(tab2);
    eventually("the second tab left", || async {
        app.registry_stats().await.sessions == 2
    })
    .await;

    let app = &app;
    let notify = |amount: u32| async move {
        let resp = awc::Client::new()
            .post(app.http("/api/v1/users/carol/notifications"))
            .bearer_auth(app.token_with_role("backend", "service"))
            .send_json(&json!({"kind": "payout", "data": {"amount": amount}}))
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 202);
    };
    notify(1).await;
    assert_eq!(
        tab1.wait_event("notification").await,
        vec![json!({"kind": "payout", "data": {"amount": 1}})]
    );
    let stats = app.registry_stats().await;
    assert_eq!((stats.rooms, stats.actors), (2, 1), "carol's room started");

    let mut tab3 = app.connect("carol").await;
    notify(2).await;
    let expected = vec![json!({"kind": "payout", "data": {"amount": 2}})];
    assert_eq!(tab1.wait_event("notification").await, expected);
    assert_eq!(tab3.wait_event("notification").await, expected);
    assert_eq!(app.registry_stats().await.actors, 1);

    drop((tab1, tab3, _other));
    eventually("every room retired", || async {
        let stats = app.registry_stats().await;
        (stats.sessions, stats.rooms, stats.actors) == (0, 0, 0)
    })
    .await;
}

#[actix_web::test]
async fn auth_refresh_moves_the_expiry_for_the_same_user_only() {
    let app = TestApp::spawn().await;
    let mut client = app.connect("erin").await;

    let exp = Utc::now().timestamp() + 7200;
    let ack = client
        .emit_ack(
            "auth:refresh",
            json!({"token": hs256(json!({"sub": "erin", "exp": exp}))}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(ack["expiresAt"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at.timestamp(), exp);
    assert!(
        ack["expiresAt"].as_str().unwrap().ends_with(".000Z"),
        "{ack}"
    );

    let ack = client
        .emit_ack("auth:refresh", json!({"token": app.token("mallory")}))
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");

    let ack = client
        .emit_ack("auth:refresh", json!({"token": "garbage"}))
        .await;
    assert_eq!(ack["error"]["code"], "unauthorized", "{ack}");

    let ack = client.emit_ack("auth:refresh", json!({})).await;
    assert_eq!(ack["error"]["code"], "bad_request", "{ack}");
    assert_eq!(ack["error"]["message"], "token is required", "{ack}");
}

#[actix_web::test]
async fn an_expiring_token_disconnects_unless_refreshed() {
    let app = TestApp::spawn().await;
    let soon = Utc::now().timestamp() + 2;
    let token = hs256(json!({"sub": "frank", "exp": soon}));

    let mut expiring = Client::open(&app).await;
    assert!(expiring.connect(Some(&token)).await.starts_with("40{"));
    let mut refreshed = Client::open(&app).await;
    assert!(refreshed.connect(Some(&token)).await.starts_with("40{"));
    let ack = refreshed
        .emit_ack("auth:refresh", json!({"token": app.token("frank")}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    let error = server_error(&expiring.recv_text().await).expect("server:error first");
    assert_eq!(error["code"], "token_expired");
    assert_eq!(expiring.recv_text().await, "41");
    let reason = expiring.expect_close().await.expect("close reason");
    assert_eq!(reason.description.as_deref(), Some("token expired"));
    assert!(Utc::now().timestamp() >= soon, "not before exp");

    // The refreshed connection outlives the first token.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let ack = refreshed.emit_ack("nope", json!({})).await;
    assert_eq!(ack["error"]["code"], "unsupported", "{ack}");
}

#[actix_web::test]
async fn unknown_events_are_unsupported_with_or_without_ack() {
    let app = TestApp::spawn().await;
    let mut client = app.connect("gina").await;
    let ack = client.emit_ack("listing:explode", json!({})).await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["code"], "unsupported");

    client.send(r#"42["listing:explode",{}]"#).await;
    let error = server_error(&client.recv_text().await).expect("server:error");
    assert_eq!(
        error,
        json!({"code": "unsupported", "message": "unknown event \"listing:explode\"", "event": "listing:explode"})
    );
}

#[actix_web::test]
async fn a_client_disconnect_leaves_every_room() {
    let app = TestApp::spawn_with(|s| s.room_idle = Duration::from_millis(50)).await;
    let mut client = app.connect("hank").await;
    eventually("one room", || async {
        app.registry_stats().await.rooms == 1
    })
    .await;
    client.send("41").await;
    client.expect_close().await;
    eventually("registry empty", || async {
        let stats = app.registry_stats().await;
        stats.sessions == 0 && stats.rooms == 0
    })
    .await;
}

/// Signs with a secret the node does not hold.
fn forged(claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"not-the-secret"),
    )
    .unwrap()
}

/// Unpadded base64url, as JWT segments are written.
fn base64_url(text: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[test]
fn base64_url_matches_the_jwt_alphabet() {
    assert_eq!(
        base64_url(r#"{"sub":"a","exp":123}"#),
        "eyJzdWIiOiJhIiwiZXhwIjoxMjN9"
    );
    assert_eq!(base64_url("ab"), "YWI");
    assert_eq!(base64_url("abc?>"), "YWJjPz4");
}
