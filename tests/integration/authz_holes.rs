//! Authorization holes of issue 12: admins' accesses audited, refreshed
//! roles re-checked, listings made private evicting watchers, bookings
//! freeing only listings they hold, message idempotency per booking.

use serde_json::json;

use crate::bookings::booked;
use crate::helpers::*;

/// The audited actions an admin's reading and writing of a thread make.
const THREAD_ACTIONS: [&str; 4] = [
    "booking:join",
    "message:history",
    "message:send",
    "typing:start",
];

/// Every thread event that admins may do, sent by `client`.
async fn use_thread(client: &mut Client, booking: &str, msg: &str) {
    for (event, payload) in [
        ("booking:join", json!({"bookingId": booking})),
        ("message:history", json!({"bookingId": booking})),
        (
            "message:send",
            json!({"bookingId": booking, "body": "hello", "clientMsgId": msg}),
        ),
        ("typing:start", json!({"bookingId": booking})),
    ] {
        let ack = client.emit_ack(event, payload).await;
        assert_eq!(ack["ok"], true, "{event}: {ack}");
    }
}

#[actix_web::test]
async fn every_admin_access_to_a_booking_not_theirs_is_audited() {
    let (app, mut bob, mut seller, booking) = booked().await;
    // The parties' own accesses are not audited.
    use_thread(&mut bob, &booking, "b1").await;
    use_thread(&mut seller, &booking, "s1").await;
    for action in THREAD_ACTIONS {
        assert_eq!(app.audit_count(action).await, 0, "{action} by a party");
    }
    let mut ada = app.connect_with_role("ada", "admin").await;
    use_thread(&mut ada, &booking, "a1").await;
    for action in THREAD_ACTIONS {
        assert_eq!(app.audit_count(action).await, 1, "{action} by an admin");
    }
    // A resolution by an admin is audited too; the parties' moves are not.
    for (client, to) in [(&mut seller, "confirmed"), (&mut bob, "disputed")] {
        let ack = client
            .emit_ack(
                "booking:transition",
                json!({"bookingId": booking, "to": to}),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    assert_eq!(app.audit_count("booking:transition").await, 0);
    let ack = ada
        .emit_ack(
            "booking:transition",
            json!({"bookingId": booking, "to": "resolved"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(app.audit_count("booking:transition").await, 1);
}

#[actix_web::test]
async fn an_admin_who_is_a_party_is_not_audited() {
    let app = TestApp::spawn().await;
    let mut ada = app.connect_with_role("ada", "admin").await;
    let booking = app.booking("l1", "sella", &mut ada).await;
    use_thread(&mut ada, &booking, "a1").await;
    for action in THREAD_ACTIONS {
        assert_eq!(app.audit_count(action).await, 0, "{action} by a party");
    }
}
