//! The user reads (§8a): each route for each role, what each caller sees,
//! paging, and CORS.

use std::collections::HashSet;

use chrono::{Duration as Span, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

/// `GET path` with `Authorization: Bearer token` (none when `None`).
async fn get(app: &TestApp, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut request = awc::Client::new().get(app.http(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let mut resp = request.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

/// `GET path` as `sub` (an ordinary user), expecting 200.
async fn read(app: &TestApp, path: &str, sub: &str) -> Value {
    let (status, body) = get(app, path, Some(&app.token(sub))).await;
    assert_eq!(status, 200, "{sub} GET {path}: {body}");
    body
}

fn ids(items: &Value, pointer: &str) -> Vec<String> {
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item.pointer(pointer).unwrap().as_str().unwrap().to_owned())
        .collect()
}

/// Every page of `path` (which has a `?`) as `token`, `limit` at a time;
/// the items under `key` in order.
async fn all_pages(app: &TestApp, path: &str, key: &str, token: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let (status, body) = get(app, &url, Some(token)).await;
        assert_eq!(status, 200, "{url}: {body}");
        let page = body[key].as_array().unwrap();
        assert!(page.len() <= limit as usize, "{body}");
        items.extend(page.iter().cloned());
        match body["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(
                    page.len(),
                    limit as usize,
                    "a page short of the limit is the last: {body}"
                );
                cursor = Some(next.to_owned());
            }
            None => return items,
        }
    }
    panic!("paging never ended");
}

fn auction_body(seller: &str) -> Value {
    json!({
        "sellerId": seller, "title": "Clock", "price": 5000, "currency": "EUR",
        "auction": {
            "startsAt": (Utc::now() - Span::minutes(1)).to_rfc3339(),
            "endsAt": (Utc::now() + Span::hours(1)).to_rfc3339(),
            "startPrice": 1000, "minIncrement": 100, "reservePrice": 9000
        }
    })
}

/// A node where bob booked sella's `l1` (and wrote in it), carl booked
/// sella's `l2`, and sella has a private listing and an auction.
async fn marketplace() -> (TestApp, String, String) {
    let app = TestApp::spawn().await;
    let mut bob = app.connect("bob").await;
    let mut carl = app.connect("carl").await;
    let b1 = app.booking("l1", "sella", &mut bob).await;
    let b2 = app.booking("l2", "sella", &mut carl).await;
    let ack = bob
        .emit_ack(
            "message:send",
            json!({"bookingId": b1, "body": "Is it still red?", "clientMsgId": "m1"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, body) = app
        .put_listing(
            "lp",
            json!({"sellerId": "sella", "title": "Secret", "price": 1, "currency": "EUR", "visibility": "private"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = app.put_listing("la", auction_body("sella")).await;
    assert_eq!(status, 201, "{body}");
    (app, b1, b2)
}

/// Every route of §8a, with a path an admin may read.
fn routes(booking: &str) -> Vec<String> {
    vec![
        "/api/v1/me/bookings".into(),
        "/api/v1/me/listings".into(),
        "/api/v1/listings?availability=available".into(),
        "/api/v1/admin/bookings?status=disputed".into(),
        format!("/api/v1/admin/bookings/{booking}/audit"),
        "/api/v1/admin/cluster".into(),
    ]
}

#[actix_web::test]
async fn every_route_wants_a_user_token_and_admin_routes_an_admin() {
    let (app, b1, _) = marketplace().await;
    let wrong = sign(
        "another secret",
        json!({"sub": "bob", "exp": Utc::now().timestamp() + 60}),
    );
    let old = hs256(json!({"sub": "bob", "exp": Utc::now().timestamp() - 600}));
    for path in routes(&b1) {
        let admin_route = path.starts_with("/api/v1/admin/");
        let (status, body) = get(&app, &path, None).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{path} without a token: {body}"
        );
        for bad in [&wrong, &old, &"not.a.jwt".to_owned()] {
            let (status, body) = get(&app, &path, Some(bad)).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (401, Some("unauthorized")),
                "{path} bad token: {body}"
            );
        }
        let (status, body) = get(&app, &path, Some(&app.service_token())).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{path} service token: {body}"
        );
        for user in ["bob", "sella", "sam"] {
            let (status, body) = get(&app, &path, Some(&app.token(user))).await;
            if admin_route {
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (403, Some("forbidden")),
                    "{path} as {user}: {body}"
                );
            } else {
                assert_eq!(status, 200, "{path} as {user}: {body}");
            }
        }
        let (status, body) = get(&app, &path, Some(&app.token_with_role("ada", "admin"))).await;
        assert_eq!(status, 200, "{path} as admin: {body}");
    }
    let admin = app.token_with_role("ada", "admin");
    eventually("the admin's cluster view names this node", || async {
        let (status, body) = get(&app, "/api/v1/admin/cluster", Some(&admin)).await;
        status == 200 && body["nodes"][0]["nodeId"] == json!("test-node")
    })
    .await;
}

#[actix_web::test]
async fn my_bookings_hold_only_the_callers_with_unread_and_last_message() {
    let (app, b1, b2) = marketplace().await;

    let bob = read(&app, "/api/v1/me/bookings", "bob").await;
    assert_eq!(
        ids(&bob["bookings"], "/booking/id"),
        vec![b1.clone()],
        "{bob}"
    );
    let line = &bob["bookings"][0];
    assert_eq!(
        line["listing"],
        json!({"id": "l1", "title": "Bike", "price": 10000, "currency": "EUR"})
    );
    assert_eq!(line["unread"], 0, "bob wrote the only message");
    assert_eq!(line["lastMessage"]["body"], "Is it still red?");
    assert_eq!(line["lastMessage"]["senderId"], "bob");
    assert_eq!(line["booking"]["status"], "requested");
    assert_eq!(bob["nextCursor"], Value::Null);

    let sella = read(&app, "/api/v1/me/bookings", "sella").await;
    // The most recently active first: b1 has a message after b2 was made.
    assert_eq!(
        ids(&sella["bookings"], "/booking/id"),
        [b1.clone(), b2.clone()],
        "{sella}"
    );
    assert_eq!(
        sella["bookings"][0]["unread"], 1,
        "bob's message is unread for sella"
    );
    assert_eq!(sella["bookings"][1]["lastMessage"], Value::Null);
    let as_buyer = read(&app, "/api/v1/me/bookings?as=buyer", "sella").await;
    assert_eq!(as_buyer["bookings"], json!([]));
    let as_seller = read(
        &app,
        "/api/v1/me/bookings?as=seller&status=requested",
        "sella",
    )
    .await;
    assert_eq!(as_seller["bookings"].as_array().unwrap().len(), 2);

    let carl = read(&app, "/api/v1/me/bookings?as=buyer", "carl").await;
    assert_eq!(ids(&carl["bookings"], "/booking/id"), vec![b2.clone()]);
    for stranger in ["sam"] {
        let seen = read(&app, "/api/v1/me/bookings", stranger).await;
        assert_eq!(seen["bookings"], json!([]), "{stranger}: {seen}");
    }
    // An admin's own list is theirs only: the admin list is elsewhere.
    let (_, ada) = get(
        &app,
        "/api/v1/me/bookings",
        Some(&app.token_with_role("ada", "admin")),
    )
    .await;
    assert_eq!(ada["bookings"], json!([]));

    // Reading moves the count; a move moves the booking up.
    let (status, _) = app
        .api(
            "POST",
            &format!("/api/v1/bookings/{b2}/transitions"),
            Some(json!({"to": "confirmed"})),
        )
        .await;
    assert_eq!(status, 200);
    let sella = read(&app, "/api/v1/me/bookings?status=confirmed", "sella").await;
    assert_eq!(ids(&sella["bookings"], "/booking/id"), vec![b2.clone()]);
    let sella = read(&app, "/api/v1/me/bookings", "sella").await;
    assert_eq!(ids(&sella["bookings"], "/booking/id"), [b2, b1]);

    for (query, status) in [
        ("?as=owner", 422),
        ("?status=lost", 422),
        ("?limit=0", 422),
        ("?limit=201", 422),
        ("?cursor=zz", 422),
        ("?cursor=abc", 422),
        ("?limit=ten", 400),
        ("?colour=red", 400),
    ] {
        let (got, body) = get(
            &app,
            &format!("/api/v1/me/bookings{query}"),
            Some(&app.token("bob")),
        )
        .await;
        assert_eq!(got, status, "{query}: {body}");
        assert!(body["error"]["code"].is_string(), "{query}: {body}");
    }
}

#[actix_web::test]
async fn browse_shows_public_listings_only_and_never_a_reserve() {
    let (app, _, _) = marketplace().await;
    for user in ["sam", "sella", "bob"] {
        let seen = read(&app, "/api/v1/listings", user).await;
        let listed = ids(&seen["listings"], "/id");
        assert!(
            !listed.contains(&"lp".to_owned()),
            "{user} sees a private listing: {seen}"
        );
        // Newest first.
        assert_eq!(listed, ["la", "l2", "l1"], "{user}: {seen}");
        let auction = &seen["listings"][0]["auction"];
        assert!(
            auction.is_object() && auction.get("reservePrice").is_none(),
            "{user}: {auction}"
        );
    }
    let (_, admin) = get(
        &app,
        "/api/v1/listings",
        Some(&app.token_with_role("ada", "admin")),
    )
    .await;
    assert_eq!(
        ids(&admin["listings"], "/id"),
        ["la", "l2", "l1"],
        "browse is public listings, for admins too"
    );
    let available = read(&app, "/api/v1/listings?availability=available", "sam").await;
    assert_eq!(
        ids(&available["listings"], "/id"),
        ["la"],
        "l1 and l2 are reserved"
    );
    let reserved = read(&app, "/api/v1/listings?availability=reserved", "sam").await;
    assert_eq!(ids(&reserved["listings"], "/id"), ["l2", "l1"]);
}

#[actix_web::test]
async fn my_listings_show_the_sellers_own_with_reserve_and_live_auction_state() {
    let (app, _, _) = marketplace().await;
    // An auction near its end, whose end a bid moves.
    let mut closing = auction_body("sella");
    let ends = Utc::now() + Span::seconds(30);
    closing["auction"]["endsAt"] = json!(ends.to_rfc3339());
    closing["auction"]["extendWindowSecs"] = json!(600);
    let (status, body) = app.put_listing("lx", closing).await;
    assert_eq!(status, 201, "{body}");
    let mut bob = app.connect("bob").await;
    for listing in ["la", "lx"] {
        let ack = bob
            .emit_ack("bid:place", json!({"listingId": listing, "amount": 1500}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let mine = read(&app, "/api/v1/me/listings", "sella").await;
    assert_eq!(
        ids(&mine["listings"], "/id"),
        ["lx", "la", "lp", "l2", "l1"],
        "{mine}"
    );
    let auction = &mine["listings"][1]["auction"];
    assert_eq!(auction["reservePrice"], 9000, "{auction}");
    assert_eq!(auction["currentAmount"], 1500, "{auction}");
    assert_eq!(auction["leaderId"], "bob", "{auction}");
    assert_eq!(auction["bidCount"], 1, "{auction}");
    assert_eq!(auction["status"], "open", "{auction}");
    assert_eq!(mine["listings"][2]["visibility"], "private");
    // The end the bid moved, as a watcher is shown it.
    let shown: chrono::DateTime<Utc> = mine["listings"][0]["auction"]["endsAt"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        shown > ends + Span::seconds(300),
        "extended end {shown}, was {ends}"
    );
    let browsed = read(&app, "/api/v1/listings", "sam").await;
    assert_eq!(
        browsed["listings"][0]["auction"]["endsAt"],
        mine["listings"][0]["auction"]["endsAt"]
    );

    let private = read(&app, "/api/v1/me/listings?availability=available", "sella").await;
    assert_eq!(ids(&private["listings"], "/id"), ["lx", "la", "lp"]);
    for other in ["bob", "sam"] {
        let theirs = read(&app, "/api/v1/me/listings", other).await;
        assert_eq!(theirs["listings"], json!([]), "{other}: {theirs}");
    }
    let (status, _) = get(
        &app,
        "/api/v1/me/listings?availability=gone",
        Some(&app.token("sella")),
    )
    .await;
    assert_eq!(status, 422);
}

#[actix_web::test]
async fn admins_list_bookings_disputes_first_and_read_the_audit_trail() {
    let (app, b1, b2) = marketplace().await;
    let admin = app.token_with_role("ada", "admin");
    for to in ["confirmed", "disputed"] {
        let (status, body) = app
            .api(
                "POST",
                &format!("/api/v1/bookings/{b2}/transitions"),
                Some(json!({"to": to, "by": "carl"})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, disputed) = get(&app, "/api/v1/admin/bookings?status=disputed", Some(&admin)).await;
    assert_eq!(
        ids(&disputed["bookings"], "/id"),
        vec![b2.clone()],
        "{disputed}"
    );
    assert_eq!(disputed["bookings"][0]["listingId"], "l2");
    let (_, all) = get(&app, "/api/v1/admin/bookings", Some(&admin)).await;
    assert_eq!(
        ids(&all["bookings"], "/id"),
        [b2.clone(), b1.clone()],
        "disputes first: {all}"
    );
    let (_, requested) = get(
        &app,
        "/api/v1/admin/bookings?status=requested",
        Some(&admin),
    )
    .await;
    assert_eq!(ids(&requested["bookings"], "/id"), vec![b1.clone()]);

    // An admin's join is audited too.
    let mut ada = Client::open(&app).await;
    assert!(ada.connect(Some(&admin)).await.starts_with("40"));
    let ack = ada.emit_ack("booking:join", json!({"bookingId": b2})).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let (status, audit) = get(
        &app,
        &format!("/api/v1/admin/bookings/{b2}/audit"),
        Some(&admin),
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actorId"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("booking:transition", "carl"),
            ("booking:transition", "carl"),
            ("booking:join", "ada")
        ],
        "{audit}"
    );
    assert_eq!(
        entries[1]["detail"],
        json!({"from": "confirmed", "to": "disputed"})
    );
    assert!(entries[0]["at"].as_str().unwrap().ends_with('Z'));
    // The other booking's trail is its own.
    let (_, other) = get(
        &app,
        &format!("/api/v1/admin/bookings/{b1}/audit"),
        Some(&admin),
    )
    .await;
    assert_eq!(other["entries"], json!([]), "{other}");
    let (status, body) = get(&app, "/api/v1/admin/bookings/nope/audit", Some(&admin)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = get(&app, "/api/v1/admin/bookings/a%20b/audit", Some(&admin)).await;
    assert_eq!(status, 400);
}

#[actix_web::test]
async fn paging_visits_every_row_exactly_once() {
    let app = TestApp::spawn().await;
    let mut bob = app.connect("bob").await;
    let mut made = Vec::new();
    for i in 0..7 {
        app.listing(&format!("p{i}"), "sella").await;
        let ack = bob
            .emit_ack(
                "listing:reserve",
                json!({"listingId": format!("p{i}"), "idempotencyKey": format!("k{i}")}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        made.push(ack["booking"]["id"].as_str().unwrap().to_owned());
    }
    // Some bookings change (so they sort by another time), two disputed.
    for (i, to) in [
        (1, "confirmed"),
        (3, "confirmed"),
        (3, "disputed"),
        (5, "confirmed"),
        (5, "disputed"),
    ] {
        let (status, body) = app
            .api(
                "POST",
                &format!("/api/v1/bookings/{}/transitions", made[i]),
                Some(json!({"to": to})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let want: HashSet<String> = made.iter().cloned().collect();
    for limit in [1, 2, 3, 7, 50] {
        for (path, token) in [
            ("/api/v1/me/bookings?as=buyer", app.token("bob")),
            ("/api/v1/me/bookings?", app.token("sella")),
            (
                "/api/v1/admin/bookings?",
                app.token_with_role("ada", "admin"),
            ),
        ] {
            let items = all_pages(&app, path, "bookings", &token, limit).await;
            let admin = path.starts_with("/api/v1/admin");
            let booking = if admin { "" } else { "/booking" };
            let got = ids(&Value::Array(items.clone()), &format!("{booking}/id"));
            assert_eq!(got.len(), 7, "{path} limit {limit}: {got:?}");
            assert_eq!(
                got.iter().cloned().collect::<HashSet<_>>(),
                want,
                "{path} limit {limit}"
            );
            if admin {
                let statuses: Vec<&str> = items
                    .iter()
                    .map(|i| i["status"].as_str().unwrap())
                    .collect();
                assert_eq!(
                    &statuses[..2],
                    ["disputed", "disputed"],
                    "disputes first: {statuses:?}"
                );
            }
        }
        let listings = all_pages(
            &app,
            "/api/v1/listings?",
            "listings",
            &app.token("sam"),
            limit,
        )
        .await;
        let got = ids(&Value::Array(listings), "/id");
        let expected: Vec<String> = (0..7).rev().map(|i| format!("p{i}")).collect();
        assert_eq!(got, expected, "browse, limit {limit}");
        let mine = all_pages(
            &app,
            "/api/v1/me/listings?",
            "listings",
            &app.token("sella"),
            limit,
        )
        .await;
        assert_eq!(
            ids(&Value::Array(mine), "/id"),
            expected,
            "my listings, limit {limit}"
        );
        let audit = all_pages(
            &app,
            &format!("/api/v1/admin/bookings/{}/audit?", made[5]),
            "entries",
            &app.token_with_role("ada", "admin"),
            limit,
        )
        .await;
        assert_eq!(audit.len(), 2, "limit {limit}: {audit:?}");
    }
}

#[actix_web::test]
async fn reads_answer_pages_of_allowed_origins_only() {
    let app = TestApp::spawn_with(|s| s.cors_origins = vec!["https://shop.example".into()]).await;
    let client = awc::Client::new();
    for path in [
        "/api/v1/me/bookings",
        "/api/v1/listings",
        "/api/v1/admin/cluster",
    ] {
        let resp = client
            .get(app.http(path))
            .insert_header(("Origin", "https://shop.example"))
            .bearer_auth(app.token("bob"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.headers()
                .get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            Some("https://shop.example"),
            "{path}"
        );
        let preflight = client
            .request(awc::http::Method::OPTIONS, app.http(path))
            .insert_header(("Origin", "https://shop.example"))
            .insert_header(("Access-Control-Request-Method", "GET"))
            .insert_header(("Access-Control-Request-Headers", "authorization"))
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status().as_u16(), 204, "{path}");
        let allowed = preflight
            .headers()
            .get("access-control-allow-headers")
            .unwrap()
            .to_str()
            .unwrap();
        assert!(allowed.contains("authorization"), "{path}: {allowed}");
        let foreign = client
            .get(app.http(path))
            .insert_header(("Origin", "https://evil.example"))
            .bearer_auth(app.token("bob"))
            .send()
            .await
            .unwrap();
        assert!(
            foreign
                .headers()
                .get("access-control-allow-origin")
                .is_none(),
            "{path}"
        );
    }
    // The server API stays without CORS.
    let resp = client
        .get(app.http("/api/v1/cluster"))
        .insert_header(("Origin", "https://shop.example"))
        .bearer_auth(app.service_token())
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}

#[actix_web::test]
async fn admins_read_the_node_metrics_with_their_own_token() {
    let app = TestApp::spawn().await;
    let path = "/api/v1/admin/metrics";
    let mut resp = awc::Client::new()
        .get(app.http(path))
        .bearer_auth(app.token_with_role("ada", "admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = resp.body().await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("souk_connections "), "{text}");
    for token in [app.token("bob"), app.service_token()] {
        let (status, body) = get(&app, path, Some(&token)).await;
        assert_eq!(status, 403, "{body}");
    }
    assert_eq!(get(&app, path, None).await.0, 401);
}
