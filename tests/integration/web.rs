//! The web front's routes: static files, and the dev-mode demo backend.

use serde_json::{json, Value};

use crate::helpers::*;

async fn get(url: String, bearer: Option<&str>) -> (u16, String) {
    let mut request = awc::Client::new().get(url);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let mut resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.body().await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[actix_web::test]
async fn the_front_is_served_at_the_root_and_hides_no_route() {
    let app = TestApp::spawn().await;
    let (status, page) = get(app.http("/"), None).await;
    assert_eq!(status, 200);
    assert!(page.contains("js/browse.js"), "{page}");
    let (status, _) = get(app.http("/js/souk.js"), None).await;
    assert_eq!(status, 200);
    // Routes still answer as before, and other methods are not caught.
    assert_eq!(get(app.http("/healthz"), None).await.0, 200);
    assert_eq!(get(app.http("/nothing-here.html"), None).await.0, 404);
    let resp = awc::Client::new()
        .post(app.http("/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    let off = TestApp::spawn_with(|s| s.static_dir = None).await;
    assert_eq!(get(off.http("/"), None).await.0, 404);
}

#[actix_web::test]
async fn pages_forbid_framing_sniffing_and_foreign_scripts() {
    let app = TestApp::spawn().await;
    for path in ["/", "/listing.html", "/js/souk.js", "/css/souk.css"] {
        let resp = awc::Client::new().get(app.http(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(csp.contains(directive), "{path}: {csp}");
        }
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(header("x-frame-options"), "DENY", "{path}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
    }
}

#[actix_web::test]
async fn the_demo_backend_is_dev_only_and_shows_users_their_own() {
    let app = TestApp::spawn().await;
    let token = app.token("ana");
    assert_eq!(get(app.http("/dev/bookings"), Some(&token)).await.0, 404);
    assert_eq!(get(app.http("/dev/listings"), Some(&token)).await.0, 404);

    let dev = TestApp::spawn_with(dev_mode).await;
    let mut buyer = dev.connect("ana").await;
    let booking = dev.booking("l-web", "sam", &mut buyer).await;
    let (status, _) = dev
        .put_listing(
            "l-hidden",
            json!({"sellerId": "sam", "title": "Hidden", "price": 1, "currency": "EUR", "visibility": "private"}),
        )
        .await;
    assert_eq!(status, 201);

    // Without a token, with a service token: refused.
    assert_eq!(get(dev.http("/dev/listings"), None).await.0, 401);
    assert_eq!(
        get(dev.http("/dev/listings"), Some(&dev.service_token()))
            .await
            .0,
        403
    );

    let listed = |body: &str| -> Vec<String> {
        let value: Value = serde_json::from_str(body).unwrap();
        value["listings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, ana_sees) = get(dev.http("/dev/listings"), Some(&dev.token("ana"))).await;
    assert_eq!(listed(&ana_sees), vec!["l-web"]);
    let (_, sam_sees) = get(dev.http("/dev/listings"), Some(&dev.token("sam"))).await;
    assert_eq!(listed(&sam_sees), vec!["l-hidden", "l-web"]);

    // Bookings: the parties see theirs, a stranger none, an admin all.
    let ids = |body: &str| -> Vec<String> {
        let value: Value = serde_json::from_str(body).unwrap();
        value["bookings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["booking"]["id"].as_str().unwrap().to_owned())
            .collect()
    };
    for (who, role, expected) in [
        ("ana", "buyer", vec![booking.clone()]),
        ("sam", "seller", vec![booking.clone()]),
        ("eve", "buyer", vec![]),
        ("ada", "admin", vec![booking.clone()]),
    ] {
        let token = dev.token_with_role(who, role);
        let (status, body) = get(dev.http("/dev/bookings"), Some(&token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(ids(&body), expected, "{who}");
    }
    let admin = dev.token_with_role("ada", "admin");
    let (_, none) = get(dev.http("/dev/bookings?status=disputed"), Some(&admin)).await;
    assert!(ids(&none).is_empty(), "{none}");
    let path = format!("/dev/bookings/{booking}");
    assert_eq!(get(dev.http(&path), Some(&dev.token("eve"))).await.0, 403);
    let (status, one) = get(dev.http(&path), Some(&dev.token("sam"))).await;
    assert_eq!(status, 200, "{one}");
    let one: Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["title"], "Bike");
    assert_eq!(one["unread"], 0);
    assert_eq!(one["lastReadMessageIds"], json!({}));
}
