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
/// A connection to `app`'s database that records what it sends: each
/// statement, and `PREPARE <sql>` when it prepares one for its cache.
fn recording_connection(
    app: &TestApp,
) -> (
    diesel::PgConnection,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    use diesel::connection::{Instrumentation, InstrumentationEvent};
    use diesel::Connection;

    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let mut conn = diesel::PgConnection::establish(&app.database_url()).unwrap();
    let record = move |event: InstrumentationEvent<'_>| match event {
        InstrumentationEvent::StartQuery { query, .. } => {
            log.lock().unwrap().push(query.to_string());
        }
        InstrumentationEvent::CacheQuery { sql, .. } => {
            log.lock().unwrap().push(format!("PREPARE {sql}"));
        }
        _ => {}
    };
    conn.set_instrumentation(Box::new(record) as Box<dyn Instrumentation>);
    (conn, seen)
}

/// Writes `rows` as the writer does, in a transaction of its own.
fn write_batch(
    conn: &mut diesel::PgConnection,
    rows: &[souk::store::messages::Outgoing],
) -> Vec<Result<souk::store::messages::Sent, souk::store::StoreError>> {
    use diesel::Connection;
    use souk::store::writer::Batch;
    conn.transaction(|conn| souk::store::messages::Messages::write(conn, rows))
        .unwrap()
}

/// Every statement a batch of messages sends to Postgres, as text.
fn statements_of_a_batch(app: &TestApp, rows: &[souk::store::messages::Outgoing]) -> Vec<String> {
    let (mut conn, seen) = recording_connection(app);
    let written = write_batch(&mut conn, rows);
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    let statements = seen.lock().unwrap().clone();
    statements
        .into_iter()
        .filter(|s| !s.starts_with("PREPARE "))
        .collect()
}

#[actix_web::test]
async fn a_batch_of_messages_costs_three_statements_and_no_savepoint() {
    // Each round trip to Postgres costs souk and Postgres CPU per batch:
    // BEGIN (the writer's), the insert with the parties' check folded in,
    // COMMIT; no savepoint.
    let (app, _bob, _seller, booking) = joined().await;
    let rows: Vec<_> = (0..5)
        .map(|i| outgoing("bob", false, &booking, &format!("batch-{i}")))
        .collect();
    let statements = statements_of_a_batch(&app, &rows);
    assert!(
        !statements.iter().any(|s| s.contains("SAVEPOINT")),
        "{statements:#?}"
    );
    assert_eq!(statements.len(), 3, "{statements:#?}");
    // Repeats within a batch and of an earlier one are still answered.
    let statements = statements_of_a_batch(&app, &rows);
    assert!(
        !statements.iter().any(|s| s.contains("SAVEPOINT")),
        "{statements:#?}"
    );
}

#[actix_web::test]
async fn a_batchs_statement_is_prepared_once_per_connection() {
    // Its text is the same for every batch size, so Postgres parses and
    // plans it once per connection, not once per batch.
    let (app, _bob, _seller, booking) = joined().await;
    let (mut conn, seen) = recording_connection(&app);
    for size in 1..=3 {
        let rows: Vec<_> = (0..size)
            .map(|i| outgoing("bob", false, &booking, &format!("size-{size}-{i}")))
            .collect();
        let written = write_batch(&mut conn, &rows);
        assert!(written.iter().all(Result::is_ok), "{written:?}");
    }
    let seen = seen.lock().unwrap();
    let prepared = seen
        .iter()
        .filter(|s| s.starts_with("PREPARE ") && s.contains("INSERT INTO messages"))
        .count();
    assert_eq!(prepared, 1, "{seen:#?}");
}

fn outgoing(sender: &str, admin: bool, booking: &str, id: &str) -> souk::store::messages::Outgoing {
    souk::store::messages::Outgoing {
        message: souk::store::messages::NewMessage {
            booking_id: booking.into(),
            sender_id: sender.into(),
            body: format!("{sender} {id}"),
            client_msg_id: id.into(),
        },
        admin,
    }
}

#[actix_web::test]
async fn each_message_of_a_mixed_batch_is_answered_on_its_own() {
    use souk::store::{Refusal, StoreError};

    let (app, _bob, _seller, booking) = joined().await;
    let (mut conn, _) = recording_connection(&app);
    let mut write = |rows: &[souk::store::messages::Outgoing]| write_batch(&mut conn, rows);
    let earlier = write(&[outgoing("bob", false, &booking, "old")]);
    let earlier = earlier[0].as_ref().unwrap().row.id;
    let written = write(&[
        outgoing("bob", false, &booking, "new"),
        outgoing("bob", false, &booking, "new"),
        outgoing("bob", false, &booking, "old"),
        outgoing("eve", false, &booking, "stranger"),
        outgoing("bob", false, "no-such-booking", "lost"),
        outgoing("ada", true, &booking, "admin"),
        outgoing("ada", true, &booking, "admin"),
        // An admin who is a party is not audited.
        outgoing("sella", true, &booking, "party"),
    ]);
    let answer = |n: usize| written[n].as_ref().map(|sent| (sent.row.id, sent.created));
    let id = |n: usize| answer(n).unwrap().0;
    assert!(answer(0).unwrap().1);
    assert_eq!(answer(1).unwrap(), (id(0), false), "a repeat in the batch");
    assert_eq!(
        answer(2).unwrap(),
        (earlier, false),
        "a repeat of a batch before"
    );
    assert!(
        matches!(written[3], Err(StoreError::Refused(Refusal::NotAParty))),
        "{:?}",
        written[3]
    );
    assert!(
        matches!(written[4], Err(StoreError::NotFound)),
        "{:?}",
        written[4]
    );
    assert!(answer(5).unwrap().1);
    assert_eq!(answer(6).unwrap(), (id(5), false));
    assert!(answer(7).unwrap().1);
    assert!(id(0) < id(5) && id(5) < id(7), "written in order");
    for n in [0, 1, 2, 5, 6, 7] {
        let sent = written[n].as_ref().unwrap();
        assert_eq!(
            (sent.buyer_id.as_str(), sent.seller_id.as_str()),
            ("bob", "sella")
        );
        assert_eq!(
            sent.row.body,
            format!("{} {}", sent.row.sender_id, sent.row.client_msg_id)
        );
    }
    assert_eq!(
        app.audit_count("message:send").await,
        2,
        "both of ada's sends"
    );
}

/// The statements of every connection to the databases in `WATCHED`,
/// connection by connection, opened once [`watch_statements`] ran.
static STATEMENTS: std::sync::Mutex<Vec<Vec<String>>> = std::sync::Mutex::new(Vec::new());
static WATCHED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Records the statements of each connection souk opens to `app`'s
/// database from now on (diesel's default instrumentation, which every
/// connection of this test binary gets; those to other databases record
/// nothing).
fn watch_statements(app: &TestApp) {
    use diesel::connection::{Instrumentation, InstrumentationEvent};
    fn recorder() -> Option<Box<dyn Instrumentation>> {
        let mut mine: Option<usize> = None;
        let record = move |event: InstrumentationEvent<'_>| match event {
            InstrumentationEvent::StartEstablishConnection { url, .. }
                if WATCHED.lock().unwrap().iter().any(|db| db == url) =>
            {
                let mut all = STATEMENTS.lock().unwrap();
                all.push(Vec::new());
                mine = Some(all.len() - 1);
            }
            InstrumentationEvent::StartQuery { query, .. } => {
                if let Some(n) = mine {
                    STATEMENTS.lock().unwrap()[n].push(query.to_string());
                }
            }
            _ => {}
        };
        Some(Box::new(record))
    }
    WATCHED.lock().unwrap().push(app.database_url());
    diesel::connection::set_default_instrumentation(recorder).unwrap();
}

#[actix_web::test]
async fn the_writer_keeps_its_connection_between_batches() {
    // A checkout from the pool tests the connection first (`SELECT 1`, a
    // round trip per batch); the writer keeps its connection instead.
    let (app, mut bob, _seller, booking) = joined().await;
    watch_statements(&app);
    for n in 0..3 {
        // One at a time: each message is a batch of its own.
        let ack = send(&mut bob, &booking, "one by one", &format!("kept-{n}")).await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let all = STATEMENTS.lock().unwrap().clone();
    let writers: Vec<&Vec<String>> = all
        .iter()
        .filter(|statements| {
            statements
                .iter()
                .any(|s| s.contains("INSERT INTO messages"))
        })
        .collect();
    assert_eq!(writers.len(), 1, "one connection wrote: {all:#?}");
    let batches = writers[0].iter().filter(|s| s.contains("INSERT")).count();
    assert_eq!(batches, 3, "{writers:#?}");
    // The pool tests the connection at the first checkout only.
    let first = writers[0].iter().position(|s| s == "BEGIN").unwrap();
    assert!(
        !writers[0][first..].iter().any(|s| s.contains("SELECT 1")),
        "no check per batch: {writers:#?}"
    );
}

#[actix_web::test]
async fn a_batch_after_postgres_dropped_the_writers_connection_is_written() {
    let (app, mut bob, _seller, booking) = joined().await;
    let first = send(&mut bob, &booking, "before", "r1").await;
    assert_eq!(first["ok"], true, "{first}");
    // As a Postgres restart does: the writer's kept connection is gone.
    app.drop_postgres_connections();
    let second = send(&mut bob, &booking, "after", "r2").await;
    assert_eq!(
        second["ok"], true,
        "taken again on a fresh connection: {second}"
    );
    let page = bob
        .emit_ack("message:history", json!({"bookingId": booking}))
        .await;
    let bodies: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["before", "after"], "{page}");
}
