//! Presence: online while any connection lives, offline when the key expires,
//! no flicker on a quick reconnect.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::*;

/// Presence that expires in 600 ms, so a test sees a user go offline.
fn short_ttl(s: &mut Settings) {
    s.presence_ttl = Duration::from_millis(600);
}

#[actix_web::test]
async fn watchers_see_a_user_come_online_and_expire_offline() {
    let app = TestApp::spawn_with(short_ttl).await;
    let mut watcher = app.connect("wade").await;
    let ack = watcher
        .emit_ack("presence:watch", json!({"userIds": ["pia"]}))
        .await;
    assert_eq!(
        ack["presence"],
        json!({"pia": {"online": false, "lastSeen": null}})
    );

    let mut pia = app.connect("pia").await;
    let online = watcher.wait_event("presence:changed").await;
    assert_eq!(online[0]["userId"], "pia");
    assert_eq!(online[0]["online"], true);
    assert!(online[0]["lastSeen"].is_string());

    let ack = watcher
        .emit_ack("presence:watch", json!({"userIds": ["pia", "pia"]}))
        .await;
    assert_eq!(ack["presence"]["pia"]["online"], true);

    pia.send("1").await;
    pia.expect_close().await;
    let closed = Instant::now();
    let offline = watcher.wait_event("presence:changed").await;
    assert_eq!(offline[0]["online"], false);
    assert!(offline[0]["lastSeen"].is_string());
    // A disconnect deletes nothing: offline comes with expiry, not at once.
    assert!(
        closed.elapsed() >= Duration::from_millis(200),
        "{:?}",
        closed.elapsed()
    );

    let (status, body) = app
        .api("GET", "/api/v1/presence?userIds=pia,wade", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["presence"]["pia"]["online"], false);
    assert_eq!(body["presence"]["wade"]["online"], true);
    let (status, _) = app
        .api("GET", "/api/v1/presence?userIds=bad%20id", None)
        .await;
    assert_eq!(status, 422);
}

#[actix_web::test]
async fn a_quick_reconnect_never_flickers_and_one_tab_is_enough() {
    let app = TestApp::spawn_with(short_ttl).await;
    let mut watcher = app.connect("wade").await;
    watcher
        .emit_ack("presence:watch", json!({"userIds": ["quin"]}))
        .await;
    let mut tab1 = app.connect("quin").await;
    let tab2 = app.connect("quin").await;
    assert_eq!(
        watcher.wait_event("presence:changed").await[0]["online"],
        true
    );

    tab1.send("1").await;
    tab1.expect_close().await;
    drop(tab2);
    let _back = app.connect("quin").await;
    watcher
        .assert_no_event("presence:changed", Duration::from_millis(1800))
        .await;

    let ack = watcher
        .emit_ack("presence:unwatch", json!({"userIds": ["quin"]}))
        .await;
    assert_eq!(ack, json!({"ok": true}));
}

/// `Presence::states` answers one state per user asked about: none for
/// none (Redis refuses an MGET of no keys, so the broker must not send it).
#[actix_web::test]
async fn the_presence_of_no_users_is_no_states() {
    use souk::broker::Presence;
    let app = TestApp::spawn().await;
    let states = app.state.broker.states(&[]).await.expect("states");
    assert!(states.is_empty());
}
