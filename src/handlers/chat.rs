//! A booking's thread: `message:send`, `message:history`, `typing:start`,
//! `typing:stop`, `read:mark`.

use std::time::Duration;

use serde_json::{json, Value};

use super::booking::{access, Admins};
use super::Caller;
use crate::broker::{Throttle, Throttles};
use crate::error::Failure;
use crate::ids::{BookingId, MessageId, UserId};
use crate::protocol::events::{self, ServerEvent};
use crate::rooms::booking::{TypingStart, TypingStop};
use crate::rooms::registry::ToRoom;
use crate::rooms::RoomKey;
use crate::state::AppState;
use crate::store::messages::{self, NewMessage, Outgoing};
use crate::store::receipts;
use crate::store::writer;
use crate::store::Refusal;
use crate::time::rfc3339;

/// How long one typist's `typing: true` broadcasts are throttled (§5).
const TYPING_THROTTLE: Duration = Duration::from_millis(3000);

/// Sends a message; acked after commit and once its events are published
/// (so [`super::handle`] does not wait again). A repeated `(booking, sender,
/// clientMsgId)` answers the first message and announces nothing.
pub async fn send(
    app: &AppState,
    caller: &Caller,
    booking: BookingId,
    body: String,
    client_msg_id: String,
) -> Result<Value, Failure> {
    // The writer checks the sender against the booking as it writes.
    let outgoing = Outgoing {
        message: NewMessage {
            booking_id: booking.to_string(),
            sender_id: caller.user().to_string(),
            body,
            client_msg_id,
        },
        admin: caller.is_admin(),
    };
    let sent = writer::write(&app.messages, outgoing).await??;
    let message = sent.row.to_message();
    if sent.created {
        let activity = ServerEvent::BookingActivity {
            booking_id: booking.clone(),
            message_id: message.id,
            sender_id: message.sender_id.clone(),
        };
        let new = ServerEvent::MessageNew {
            message: message.clone(),
        };
        let room = [RoomKey::Booking(booking)];
        let rooms = [sent.buyer_id, sent.seller_id].map(|u| RoomKey::User(UserId::from_db(u)));
        app.fanout
            .emit_all_published(vec![(&room, new), (&rooms, activity)])
            .await;
    } else {
        app.fanout.published().await;
    }
    Ok(json!({ "message": message }))
}

/// A page of the thread, oldest first: `{messages, hasMore}`.
pub async fn history(
    app: &AppState,
    caller: &Caller,
    booking: BookingId,
    before: Option<MessageId>,
    limit: u32,
) -> Result<Value, Failure> {
    let who = caller.clone();
    let (rows, has_more) = app
        .db
        .run(move |conn| {
            access(
                conn,
                &booking,
                &who,
                Admins::Audited(events::MESSAGE_HISTORY),
            )?;
            messages::history(conn, &booking, before, limit)
        })
        .await?;
    let messages: Vec<_> = rows.iter().map(|row| row.to_message()).collect();
    Ok(json!({ "messages": messages, "hasMore": has_more }))
}

/// Marks the thread read up to a message; receipts only move forward.
pub async fn read_mark(
    app: &AppState,
    caller: &Caller,
    booking: BookingId,
    message: MessageId,
) -> Result<Value, Failure> {
    let who = caller.clone();
    let lookup = booking.clone();
    let (row, receipt, moved) = app
        .db
        .run(move |conn| {
            let (row, _) = access(conn, &lookup, &who, Admins::Refused)?;
            if !messages::in_booking(conn, &lookup, message)? {
                return Err(Refusal::MessageNotInBooking.into());
            }
            let (receipt, moved) = receipts::mark(conn, &lookup, who.user(), message)?;
            Ok((row, receipt, moved))
        })
        .await?;
    let receipt = ServerEvent::ReadUpdated {
        booking_id: booking.clone(),
        user_id: UserId::from_db(receipt.user_id),
        message_id: MessageId(receipt.last_read_message_id),
        read_at: rfc3339(receipt.read_at),
    };
    let answer = json!({ "receipt": receipt.payload() });
    if moved {
        // The booking room, and the other participants' user rooms.
        let mut rooms = vec![RoomKey::Booking(booking.clone())];
        rooms.extend(
            [&row.buyer_id, &row.seller_id]
                .into_iter()
                .filter(|other| *other != caller.user().as_str())
                .map(|other| RoomKey::User(UserId::from_db(other.clone()))),
        );
        app.fanout.emit_to(&rooms, receipt);
    }
    Ok(answer)
}

/// Says the caller is typing: at most one broadcast per 3 s per user and
/// booking, decided by the broker's `Throttle::Typing`; answers `{throttled}`.
pub async fn typing_start(
    app: &AppState,
    caller: &Caller,
    booking: BookingId,
) -> Result<Value, Failure> {
    let who = caller.clone();
    let lookup = booking.clone();
    app.db
        .run(move |conn| access(conn, &lookup, &who, Admins::Audited(events::TYPING_START)))
        .await?;
    let throttle = Throttle::Typing {
        booking: booking.clone(),
        user: caller.user().clone(),
    };
    let broadcast = app.broker.once(&throttle, TYPING_THROTTLE).await?;
    app.registry.do_send(ToRoom(TypingStart {
        booking,
        user: caller.user().clone(),
        broadcast,
    }));
    Ok(json!({ "throttled": !broadcast }))
}

/// Says the caller stopped typing.
pub async fn typing_stop(
    app: &AppState,
    caller: &Caller,
    booking: BookingId,
) -> Result<Value, Failure> {
    let throttle = Throttle::Typing {
        booking: booking.clone(),
        user: caller.user().clone(),
    };
    app.broker.reset(&throttle).await?;
    app.registry.do_send(ToRoom(TypingStop {
        booking,
        user: caller.user().clone(),
    }));
    Ok(json!({}))
}
