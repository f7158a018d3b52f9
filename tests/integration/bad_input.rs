//! What a hostile client sends: every frame gets the contract's answer and
//! the node keeps serving everyone else.

use actix_http::ws::{CloseCode, Item, Message};
use serde_json::json;

use crate::helpers::*;

const GARBAGE: &[&str] = &[
    "",
    "x",
    "9",
    "0{}",
    "4",
    "47",
    "42",
    "42{\"a\":1}",
    "42[1,2]",
    "42[\"unterminated",
    "4212345678901234567[\"x\"]",
    "43[1]",
    "44{\"message\":\"x\"}",
    "40\"token\"",
    "\u{0}\u{1}\u{2}",
];

#[actix_web::test]
async fn each_garbage_frame_is_answered_with_bad_request() {
    let app = TestApp::spawn().await;
    let mut client = app.connect("eve").await;
    for frame in GARBAGE {
        client.send(frame).await;
        let reply = client.recv_text().await;
        let error = server_error(&reply).unwrap_or_else(|| panic!("{frame:?} got {reply}"));
        assert_eq!(error["code"], "bad_request", "{frame:?}");
        assert_eq!(error["event"], json!(null), "{frame:?}");
        // A good frame between keeps the run short of the limit.
        let ack = client.emit_ack("nope", json!({})).await;
        assert_eq!(ack["error"]["code"], "unsupported");
    }
    assert!(app
        .metrics()
        .await
        .contains(&format!("souk_bad_frames_total {}", GARBAGE.len())));
}

#[actix_web::test]
async fn ten_bad_frames_in_a_row_close_the_connection() {
    let app = TestApp::spawn().await;
    let mut client = app.connect("eve").await;
    for _ in 0..9 {
        client.send("garbage").await;
        assert!(server_error(&client.recv_text().await).is_some());
    }
    // Nine in a row, then a good one: the count starts again.
    assert_eq!(
        client.emit_ack("nope", json!({})).await["error"]["code"],
        "unsupported"
    );
    for _ in 0..9 {
        client.send("garbage").await;
        assert!(server_error(&client.recv_text().await).is_some());
    }
    client.send("garbage").await;
    let reason = client.expect_close().await.expect("close frame");
    assert_eq!(reason.code, CloseCode::Protocol);
    assert_eq!(reason.description.as_deref(), Some("parse error"));

    let mut other = app.connect("frank").await;
    assert_eq!(
        other.emit_ack("nope", json!({})).await["error"]["code"],
        "unsupported"
    );
}

#[actix_web::test]
async fn a_frame_over_max_payload_closes_with_parse_error() {
    let app = TestApp::spawn_with(|s| s.max_payload = 1000).await;
    let mut client = app.connect("eve").await;
    assert_eq!(client.open["maxPayload"], 1000);
    let big = format!(r#"42["nope",{{"x":"{}"}}]"#, "a".repeat(2000));
    client.send(&big).await;
    let reason = client.expect_close().await.expect("close frame");
    assert_eq!(reason.code, CloseCode::Size);
    eventually("parse error counted", || async {
        app.metrics()
            .await
            .contains(r#"souk_disconnects_total{reason="parse error"} 1"#)
    })
    .await;

    let mut other = app.connect("frank").await;
    assert_eq!(
        other.emit_ack("nope", json!({})).await["error"]["code"],
        "unsupported"
    );
}

#[actix_web::test]
async fn fragmented_messages_are_reassembled_within_max_payload() {
    let app = TestApp::spawn_with(|s| s.max_payload = 1000).await;
    let mut client = app.connect("eve").await;
    let frame = r#"427["nope",{"padding":"xxxxxxxxxxxx"}]"#;
    let (a, rest) = frame.split_at(5);
    let (b, c) = rest.split_at(10);
    client
        .send_message(Message::Continuation(Item::FirstText(
            a.as_bytes().to_vec().into(),
        )))
        .await;
    client
        .send_message(Message::Continuation(Item::Continue(
            b.as_bytes().to_vec().into(),
        )))
        .await;
    client
        .send_message(Message::Continuation(Item::Last(
            c.as_bytes().to_vec().into(),
        )))
        .await;
    let ack = client.wait_ack(7).await;
    assert_eq!(ack["error"]["code"], "unsupported");

    // Fragments that add up to more than maxPayload close the connection.
    let part = "a".repeat(600);
    client
        .send_message(Message::Continuation(Item::FirstText(
            part.clone().into_bytes().into(),
        )))
        .await;
    client
        .send_message(Message::Continuation(Item::Continue(
            part.into_bytes().into(),
        )))
        .await;
    let reason = client.expect_close().await.expect("close frame");
    assert_eq!(reason.code, CloseCode::Size);
}

#[actix_web::test]
async fn binary_packets_and_frames_are_unsupported_and_the_connection_stays() {
    let app = TestApp::spawn().await;
    let mut client = app.connect("eve").await;
    client
        .send(r#"451-3["upload",{"_placeholder":true,"num":0}]"#)
        .await;
    let ack = client.wait_ack(3).await;
    assert_eq!(ack["error"]["code"], "unsupported");

    client
        .send(r#"451-["upload",{"_placeholder":true,"num":0}]"#)
        .await;
    let error = server_error(&client.recv_text().await).expect("server:error");
    assert_eq!(error["code"], "unsupported");

    client
        .send_message(Message::Binary(vec![1u8, 2, 3].into()))
        .await;
    let error = server_error(&client.recv_text().await).expect("server:error");
    assert_eq!(error["code"], "unsupported");

    assert_eq!(
        client.emit_ack("nope", json!({})).await["error"]["code"],
        "unsupported"
    );
}

#[actix_web::test]
async fn wrong_engine_io_version_or_transport_is_an_http_400_with_json() {
    let app = TestApp::spawn().await;
    for query in [
        "EIO=3&transport=websocket",
        "transport=websocket",
        "EIO=4&transport=carrier-pigeon",
        "EIO=4&transport=polling&sid=abc",
        "EIO=4&transport=polling&j=0",
        "EIO=4&transport=websocket&sid=abc",
    ] {
        let mut resp = awc::Client::new()
            .get(app.http(&format!("/socket.io/?{query}")))
            .insert_header(("Upgrade", "websocket"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{query}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(body["error"]["code"].is_string(), "{query}: {body}");
        assert!(body["error"]["message"].is_string(), "{query}: {body}");
    }
}

#[actix_web::test]
async fn engine_io_probe_ping_is_answered_and_close_packet_closes() {
    let app = TestApp::spawn().await;
    let mut client = app.connect("eve").await;
    client.send("2probe").await;
    assert_eq!(client.recv_text().await, "3probe");
    client.send("6").await;
    client.send("1").await;
    let reason = client.expect_close().await.expect("close frame");
    assert_eq!(reason.code, CloseCode::Normal);
}

#[actix_web::test]
async fn repeated_refused_connects_close_the_connection() {
    let app = TestApp::spawn().await;
    let mut client = Client::open(&app).await;
    for _ in 0..9 {
        assert!(client.connect(Some("bad")).await.starts_with("44"));
    }
    client.send(r#"40{"token":"bad"}"#).await;
    let reason = client.expect_close().await.expect("close frame");
    assert_eq!(reason.code, CloseCode::Policy);
}
