//! What each client event does: authorize from data, write, fan out, answer.
//! Handlers are plain async functions; the session runs them and sends the
//! answer back as the event's ack.

pub mod admin;
pub mod booking;
pub mod chat;
pub mod listing;
pub mod presence;

use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Value;

use crate::auction::place::BidAnswer;
use crate::auth::{Identity, Role};
use crate::error::{Code, Failure};
use crate::ids::UserId;
use crate::protocol::events::ClientEvent;
use crate::rooms::registry::{Evict, JoinRefused, Reidentify};
use crate::rooms::{Flush, RoomKey, SessionId};
use crate::state::AppState;
use crate::store::{bookings, StoreError};
use actix::Recipient;

/// Of the rooms a recovering socket was in, those its user may still be in,
/// checked as a join checks them: a booking's participants and admins, a
/// listing's watchers (§4), the user's own room, any presence room, the
/// dispute room for admins. A room
/// whose booking or listing is gone is left out. An admin's rejoin is not
/// audited again: the first join was.
pub fn rejoinable(
    conn: &mut diesel::PgConnection,
    user: &UserId,
    admin: bool,
    rooms: Vec<RoomKey>,
) -> Result<Vec<RoomKey>, StoreError> {
    let mut kept = Vec::with_capacity(rooms.len());
    for room in rooms {
        let allowed = match &room {
            RoomKey::User(owner) => owner == user,
            RoomKey::Presence(_) => true,
            RoomKey::AdminDisputes => admin,
            RoomKey::Listing(id) => or_gone(bookings::may_watch(conn, id, user, admin))?,
            RoomKey::Booking(id) => or_gone(
                bookings::get(conn, id).map(|row| booking::standing(&row, user, admin).is_some()),
            )?,
        };
        if allowed {
            kept.push(room);
        }
    }
    Ok(kept)
}

/// Checks every room a socket is in against its caller's identity (after
/// `auth:refresh`, whose token may drop `admin`), as a join would: the
/// socket leaves those it may no longer be in and is told so with
/// `room:left {room, reason: "reauthorized"}`. Admin joins kept are not
/// audited again. When Postgres cannot answer, the rooms that need it to be
/// checked are left.
pub async fn reauthorize(app: &AppState, caller: &Caller) -> Result<(), Failure> {
    let rooms = app
        .registry
        .send(Reidentify {
            session: caller.session,
            admin: caller.is_admin(),
        })
        .await
        .map_err(|err| Failure::new(Code::Internal, format!("registry gone: {err}")))?;
    let (user, admin) = (caller.user().clone(), caller.is_admin());
    let held = rooms.clone();
    let kept = match app
        .db
        .run(move |conn| rejoinable(conn, &user, admin, held))
        .await
    {
        Ok(kept) => kept,
        // The token is taken; rooms that cannot be checked are left, as a
        // recovery leaves them: only those needing no data stay.
        Err(err) => {
            log::warn!("rooms of a refreshed socket not checked, left: {err}");
            rooms
                .iter()
                .filter(|room| match room {
                    RoomKey::User(_) | RoomKey::Presence(_) => true,
                    RoomKey::AdminDisputes => admin,
                    _ => false,
                })
                .cloned()
                .collect()
        }
    };
    let gone: Vec<RoomKey> = rooms.into_iter().filter(|r| !kept.contains(r)).collect();
    if !gone.is_empty() {
        let evicted = app.registry.send(Evict {
            session: caller.session,
            rooms: gone,
            reason: crate::rooms::left::REAUTHORIZED,
        });
        if evicted.await.is_ok() {
            // `room:left` is in the connection's mailbox: written before the answer.
            let _ = caller.mailbox.send(Flush).await;
        }
    }
    Ok(())
}

/// A check on a row that is gone answers no.
fn or_gone(check: Result<bool, StoreError>) -> Result<bool, StoreError> {
    match check {
        Err(StoreError::NotFound) => Ok(false),
        other => other,
    }
}

/// Who sent an event, over which connection.
#[derive(Debug, Clone)]
pub struct Caller {
    pub session: SessionId,
    pub identity: Identity,
    /// The connection's mailbox, to wait until it has written what was
    /// handed to it before (see `Flush`).
    pub mailbox: Recipient<Flush>,
}

impl Caller {
    pub fn user(&self) -> &UserId {
        &self.identity.user_id
    }

    pub fn is_admin(&self) -> bool {
        self.identity.role == Role::Admin
    }
}

/// Joins a room and waits until this node follows its channel.
pub async fn enter_room(
    app: &AppState,
    join: crate::rooms::registry::JoinRoom,
) -> Result<(), Failure> {
    entered(app.registry.send(join).await)
}

/// Joins rooms at once (all or none) and waits until this node follows
/// their channels.
pub async fn enter_rooms(
    app: &AppState,
    join: crate::rooms::registry::JoinRooms,
) -> Result<(), Failure> {
    entered(app.registry.send(join).await)
}

/// The registry's answer to a join, as the client is told it.
fn entered(answer: Result<Result<(), JoinRefused>, actix::MailboxError>) -> Result<(), Failure> {
    match answer {
        Ok(Ok(())) => Ok(()),
        Ok(Err(JoinRefused::NotFollowed)) => Err(Failure::new(
            Code::ServiceUnavailable,
            "cannot follow the room's events right now; nothing was joined",
        )),
        Ok(Err(JoinRefused::TooManyRooms { max })) => {
            let mut failure = Failure::new(
                Code::Forbidden,
                format!("a connection may be in at most {max} rooms; nothing was joined"),
            );
            failure
                .extra
                .insert("maxRooms".into(), serde_json::json!(max));
            Err(failure)
        }
        Err(err) => Err(Failure::new(
            Code::Internal,
            format!("registry gone: {err}"),
        )),
    }
}

/// Runs one client event. For `auth:refresh` the session has already taken
/// the new token; what runs here is the check of its rooms.
pub async fn handle(
    app: Arc<AppState>,
    caller: Caller,
    event: ClientEvent,
) -> Result<Answer, Failure> {
    // A message waits for its own events (one send to the publisher). A
    // bid's answer comes once its batch's events are published
    // (broker::bidding), and a bid that fails emits nothing.
    let message = matches!(event, ClientEvent::MessageSend { .. });
    let bid = matches!(event, ClientEvent::BidPlace { .. });
    let outcome = run(&app, &caller, event).await;
    // Answer only once the events this one caused are published: whoever
    // joins a room after the answer will not get them late.
    if !bid && (!message || outcome.is_err()) {
        app.fanout.published().await;
    }
    outcome
}

async fn run(app: &AppState, caller: &Caller, event: ClientEvent) -> Result<Answer, Failure> {
    use ClientEvent::*;
    let fields = match event {
        ListingWatch { listing_id } => listing::watch(app, caller, listing_id).await,
        ListingUnwatch { listing_id } => listing::unwatch(app, caller, listing_id),
        ListingReserve {
            listing_id,
            idempotency_key,
        } => listing::reserve(app, caller, listing_id, idempotency_key).await,
        BidPlace {
            listing_id,
            amount,
            idempotency_key,
        } => {
            let (user, admin, id) = (caller.user().clone(), caller.is_admin(), listing_id.clone());
            let placed = crate::auction::place::place_bid(
                app,
                caller.user(),
                listing_id,
                amount,
                idempotency_key,
                move |conn| bookings::may_watch(conn, &id, &user, admin),
            )
            .await;
            return placed.map(Answer::Bid);
        }
        BookingJoin { booking_id } => booking::join(app, caller, booking_id).await,
        BookingLeave { booking_id } => booking::leave(app, caller, booking_id),
        BookingTransition { booking_id, to } => {
            booking::transition(app, caller, booking_id, to).await
        }
        MessageSend {
            booking_id,
            body,
            client_msg_id,
        } => chat::send(app, caller, booking_id, body, client_msg_id).await,
        MessageHistory {
            booking_id,
            before_id,
            limit,
        } => chat::history(app, caller, booking_id, before_id, limit).await,
        TypingStart { booking_id } => chat::typing_start(app, caller, booking_id).await,
        TypingStop { booking_id } => chat::typing_stop(app, caller, booking_id).await,
        ReadMark {
            booking_id,
            message_id,
        } => chat::read_mark(app, caller, booking_id, message_id).await,
        PresenceWatch { user_ids } => presence::watch(app, caller, user_ids).await,
        PresenceUnwatch { user_ids } => presence::unwatch(app, caller, user_ids),
        AdminWatch => admin::watch(app, caller).await,
        AdminUnwatch => admin::unwatch(app, caller),
        // The session has taken the new token; its rooms follow.
        AuthRefresh { .. } => {
            reauthorize(app, caller).await?;
            let expires_at = crate::time::rfc3339(caller.identity.expires_at);
            Ok(serde_json::json!({ "expiresAt": expires_at }))
        }
    };
    fields.map(Answer::Fields)
}

/// What a client event answers, besides `"ok": true`.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The fields of a JSON object (anything else adds none).
    Fields(Value),
    /// `bid:place`'s `{bid, auction}`, typed.
    Bid(BidAnswer),
}

impl Answer {
    /// The ack payload `{"ok":true,…}`, serialized as it is written into
    /// the frame (no object built for it).
    pub fn ack(&self) -> OkAck<'_> {
        OkAck(self)
    }
}

/// See [`Answer::ack`].
pub struct OkAck<'a>(&'a Answer);

impl Serialize for OkAck<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut ack = serializer.serialize_map(None)?;
        ack.serialize_entry("ok", &true)?;
        match self.0 {
            Answer::Fields(Value::Object(fields)) => {
                for (key, value) in fields {
                    ack.serialize_entry(key, value)?;
                }
            }
            Answer::Fields(_) => {}
            Answer::Bid(placed) => {
                ack.serialize_entry("bid", &placed.bid)?;
                ack.serialize_entry("auction", &placed.auction)?;
            }
        }
        ack.end()
    }
}
