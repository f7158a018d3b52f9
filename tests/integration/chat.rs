//! A booking's thread: messages, history, read receipts and typing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::*;

async fn joined() -> (TestApp, Client, Client, String) {
    let app = TestApp::spawn().await;
    let mut bob = app.connect("bob").await;
    let mut seller = app.connect("sella").await;
    let booking = app.booking("l1", "sella", &mut bob).await;
    for client in [&mut bob, &mut seller] {
        let ack = client
            .emit_ack("booking:join", json!({"bookingId": booking}))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    (app, bob, seller, booking)
}

async fn send(client: &mut Client, booking: &str, body: &str, id: &str) -> Value {
    client
        .emit_ack(
            "message:send",
            json!({"bookingId": booking, "body": body, "clientMsgId": id}),
        )
        .await
}

#[actix_web::test]
async fn a_sent_message_is_committed_broadcast_and_announced() {
    let (app, mut bob, mut seller, booking) = joined().await;
    let ack = send(&mut bob, &booking, "Is it still available?", "c1").await;
    assert_eq!(ack["ok"], true, "{ack}");
    let message = ack["message"].clone();
    assert_eq!(message["bookingId"], booking.as_str());
    assert_eq!(message["senderId"], "bob");
    assert_eq!(message["body"], "Is it still available?");
    assert_eq!(message["clientMsgId"], "c1");
    assert!(message["id"].is_string(), "ids are strings: {message}");
    // Acked means committed.
    let id: i64 = message["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        app.sql(&format!("SELECT 1 FROM messages WHERE id = {id}")),
        1
    );

    assert_eq!(
        seller.wait_event("message:new").await[0]["message"],
        message
    );
    let activity = json!({"bookingId": booking, "messageId": message["id"], "senderId": "bob"});
    assert_eq!(seller.wait_event("booking:activity").await[0], activity);
    assert_eq!(bob.wait_event("message:new").await[0]["message"], message);

    // The same clientMsgId again: the first message, nothing new said.
    let again = send(&mut bob, &booking, "different text", "c1").await;
    assert_eq!(again["message"], message);
    seller
        .assert_no_event("message:new", Duration::from_millis(300))
        .await;
    assert_eq!(app.sql("SELECT 1 FROM messages"), 1);
}

#[actix_web::test]
async fn strangers_may_not_write_and_admins_may() {
    let (app, _bob, mut seller, booking) = joined().await;
    let mut eve = app.connect("eve").await;
    let ack = send(&mut eve, &booking, "hi", "e1").await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    let ack = eve
        .emit_ack("message:history", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    let ack = eve
        .emit_ack("typing:start", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    let ack = send(&mut eve, "nope", "hi", "e2").await;
    assert_eq!(ack["error"]["code"], "not_found", "{ack}");
    let ack = send(&mut eve, &booking, "   \n", "e3").await;
    assert_eq!(ack["error"]["code"], "bad_request", "{ack}");
    assert_eq!(ack["error"]["message"], "body must not be blank");

    let mut ada = Client::open(&app).await;
    ada.connect(Some(&app.token_with_role("ada", "admin")))
        .await;
    let ack = send(&mut ada, &booking, "An admin here.", "a1").await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(
        seller.wait_event("message:new").await[0]["message"]["senderId"],
        "ada"
    );
}

#[actix_web::test]
async fn history_pages_back_oldest_first() {
    let (_app, mut bob, _seller, booking) = joined().await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let ack = send(&mut bob, &booking, &format!("m{n}"), &format!("c{n}")).await;
        ids.push(ack["message"]["id"].clone());
    }
    let page = bob
        .emit_ack("message:history", json!({"bookingId": booking, "limit": 2}))
        .await;
    let bodies: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, vec![json!("m3"), json!("m4")]);
    assert_eq!(page["hasMore"], true);
    let page = bob
        .emit_ack(
            "message:history",
            json!({"bookingId": booking, "limit": 2, "beforeId": ids[3]}),
        )
        .await;
    let bodies: Vec<_> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].clone())
        .collect();
    assert_eq!(bodies, vec![json!("m1"), json!("m2")]);
    assert_eq!(page["hasMore"], true);
    let page = bob
        .emit_ack(
            "message:history",
            json!({"bookingId": booking, "beforeId": ids[1]}),
        )
        .await;
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["hasMore"], false);
}

#[actix_web::test]
async fn read_receipts_move_forward_and_tell_the_other_party() {
    let (app, mut bob, mut seller, booking) = joined().await;
    let first = send(&mut seller, &booking, "hello", "s1").await["message"]["id"].clone();
    let second = send(&mut seller, &booking, "still there?", "s2").await["message"]["id"].clone();

    let mut bob_tab2 = app.connect("bob").await;
    let ack = bob_tab2
        .emit_ack("booking:join", json!({"bookingId": booking}))
        .await;
    assert_eq!(
        (ack["unread"].clone(), ack["lastReadMessageId"].clone()),
        (json!(2), json!(null))
    );

    let ack = bob
        .emit_ack(
            "read:mark",
            json!({"bookingId": booking, "messageId": second}),
        )
        .await;
    assert_eq!(ack["receipt"]["messageId"], second, "{ack}");
    assert_eq!(ack["receipt"]["userId"], "bob");
    let updated = seller.wait_event("read:updated").await;
    assert_eq!(updated[0], ack["receipt"]);
    // Sent to the booking room and the seller's user room, taken once.
    seller
        .assert_no_event("read:updated", Duration::from_millis(300))
        .await;

    // An older message leaves the receipt where it is and says nothing.
    let ack = bob
        .emit_ack(
            "read:mark",
            json!({"bookingId": booking, "messageId": first}),
        )
        .await;
    assert_eq!(ack["receipt"]["messageId"], second);
    seller
        .assert_no_event("read:updated", Duration::from_millis(300))
        .await;

    let ack = bob_tab2
        .emit_ack("booking:join", json!({"bookingId": booking}))
        .await;
    assert_eq!(
        (ack["unread"].clone(), ack["lastReadMessageId"].clone()),
        (json!(0), second.clone())
    );

    let ack = bob
        .emit_ack(
            "read:mark",
            json!({"bookingId": booking, "messageId": "999999"}),
        )
        .await;
    assert_eq!(ack["error"]["code"], "not_found", "{ack}");
    let mut ada = Client::open(&app).await;
    ada.connect(Some(&app.token_with_role("ada", "admin")))
        .await;
    let ack = ada
        .emit_ack(
            "read:mark",
            json!({"bookingId": booking, "messageId": second}),
        )
        .await;
    assert_eq!(
        ack["error"]["code"], "forbidden",
        "receipts are for participants: {ack}"
    );
}

#[actix_web::test]
async fn typing_is_throttled_and_stops_by_itself() {
    let (_app, mut bob, mut seller, booking) = joined().await;
    let ack = bob
        .emit_ack("typing:start", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack, json!({"ok": true, "throttled": false}));
    let started = Instant::now();
    let typing = seller.wait_event("typing").await;
    assert_eq!(
        typing[0],
        json!({"bookingId": booking, "userId": "bob", "typing": true})
    );
    bob.assert_no_event("typing", Duration::from_millis(200))
        .await;

    let ack = bob
        .emit_ack("typing:start", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack, json!({"ok": true, "throttled": true}));
    seller
        .assert_no_event("typing", Duration::from_millis(300))
        .await;

    // No stop: 5 s after the last start the server says false by itself.
    let stopped = seller.wait_event("typing").await;
    assert_eq!(stopped[0]["typing"], false);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(4900), "{waited:?}");

    // A stop says false at once, and the next start is not throttled.
    let ack = seller
        .emit_ack("typing:start", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["throttled"], false);
    assert_eq!(bob.wait_event("typing").await[0]["typing"], true);
    assert_eq!(
        seller
            .emit_ack("typing:stop", json!({"bookingId": booking}))
            .await,
        json!({"ok": true})
    );
    assert_eq!(bob.wait_event("typing").await[0]["typing"], false);
    let ack = seller
        .emit_ack("typing:start", json!({"bookingId": booking}))
        .await;
    assert_eq!(ack["throttled"], false);
}

#[actix_web::test]
async fn messages_sent_without_waiting_are_stored_in_send_order() {
    let (_app, mut bob, _seller, booking) = joined().await;
    for n in 0..30 {
        let frame = json!(["message:send", {"bookingId": booking, "body": format!("m{n}"), "clientMsgId": format!("o{n}")}]);
        bob.send(&format!("42{}{frame}", 100 + n)).await;
    }
    for n in 0..30 {
        let ack = bob.wait_ack(100 + n).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let page = bob
        .emit_ack(
            "message:history",
            json!({"bookingId": booking, "limit": 50}),
        )
        .await;
    let bodies: Vec<String> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect();
    let expected: Vec<String> = (0..30).map(|n| format!("m{n}")).collect();
    assert_eq!(bodies, expected);
}

#[actix_web::test]
async fn a_stranger_refused_in_the_same_batch_does_not_fail_the_others() {
    // The writer checks senders inside the batch it writes: a refused
    // message is refused alone.
    let (app, mut bob, _seller, booking) = joined().await;
    let mut eve = app.connect("eve").await;
    for n in 0..20 {
        for (client, who) in [(&mut bob, "b"), (&mut eve, "e")] {
            let frame = json!(["message:send", {"bookingId": booking, "body": format!("{who}{n}"), "clientMsgId": format!("{who}{n}")}]);
            client.send(&format!("42{}{frame}", 100 + n)).await;
        }
    }
    for n in 0..20 {
        let ack = bob.wait_ack(100 + n).await;
        assert_eq!(ack["ok"], true, "{ack}");
        let ack = eve.wait_ack(100 + n).await;
        assert_eq!(ack["error"]["code"], "forbidden", "{ack}");
    }
    assert_eq!(
        app.sql("SELECT 1 FROM messages WHERE sender_id = 'bob'"),
        20
    );
    assert_eq!(app.sql("SELECT 1 FROM messages WHERE sender_id = 'eve'"), 0);
}

/// Every statement a batch of messages sends to Postgres, as text.
fn statements_of_a_batch(app: &TestApp, rows: &[souk::store::messages::Outgoing]) -> Vec<String> {
    use diesel::connection::{Instrumentation, InstrumentationEvent};
    use diesel::Connection;
    use souk::store::writer::Batch;
    use std::sync::{Arc, Mutex};

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut conn = diesel::PgConnection::establish(&app.database_url()).unwrap();
    let record = move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { query, .. } = event {
            log.lock().unwrap().push(query.to_string());
        }
    };
    conn.set_instrumentation(Box::new(record) as Box<dyn Instrumentation>);
    let written = souk::store::messages::Messages::write(&mut conn, rows).unwrap();
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    let statements = seen.lock().unwrap().clone();
    statements
}

#[actix_web::test]
async fn a_batch_of_messages_costs_four_statements_and_no_savepoint() {
    // Each round trip to Postgres costs souk and Postgres CPU per batch:
    // BEGIN, the parties' check, the insert, COMMIT; no savepoint.
    let (app, _bob, _seller, booking) = joined().await;
    let rows: Vec<_> = (0..5)
        .map(|i| souk::store::messages::Outgoing {
            message: souk::store::messages::NewMessage {
                booking_id: booking.clone(),
                sender_id: "bob".into(),
                body: format!("m{i}"),
                client_msg_id: format!("batch-{i}"),
            },
            admin: false,
        })
        .collect();
    let statements = statements_of_a_batch(&app, &rows);
    assert!(
        !statements.iter().any(|s| s.contains("SAVEPOINT")),
        "{statements:#?}"
    );
    assert_eq!(statements.len(), 4, "{statements:#?}");
    // Repeats within a batch and of an earlier one are still answered.
    let statements = statements_of_a_batch(&app, &rows);
    assert!(
        !statements.iter().any(|s| s.contains("SAVEPOINT")),
        "{statements:#?}"
    );
}
