//! What each client event does: authorize from data, write, fan out, answer.
//! Handlers are plain async functions; the session runs them and sends the
//! answer back as the event's ack.

pub mod booking;
pub mod chat;
pub mod listing;
pub mod presence;

use std::sync::Arc;

use serde_json::Value;

use crate::auth::{Identity, Role};
use crate::error::{Code, Failure};
use crate::ids::UserId;
use crate::protocol::events::ClientEvent;
use crate::rooms::{Flush, RoomKey, SessionId};
use crate::state::AppState;
use crate::store::{bookings, StoreError};
use actix::Recipient;

/// Of the rooms a recovering socket was in, those its user may still be in,
/// checked as a join checks them: a booking's participants and admins, a
/// listing's watchers (§4), the user's own room, any presence room. A room
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
            RoomKey::Listing(id) => or_gone(listing::may_watch(conn, id, user, admin))?,
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
pub async fn enter_room(app: &AppState, join: crate::rooms::registry::Join) -> Result<(), Failure> {
    match app.registry.send(join).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Failure::new(
            Code::ServiceUnavailable,
            "cannot follow the room's events right now; nothing was joined",
        )),
        Err(err) => Err(Failure::new(
            Code::Internal,
            format!("registry gone: {err}"),
        )),
    }
}

/// Runs one client event (all but `auth:refresh`, which the session keeps).
pub async fn handle(
    app: Arc<AppState>,
    caller: Caller,
    event: ClientEvent,
) -> Result<Value, Failure> {
    let outcome = run(&app, &caller, event).await;
    // Answer only once the events this one caused are published: whoever
    // joins a room after the answer will not get them late.
    app.fanout.published().await;
    outcome
}

async fn run(app: &AppState, caller: &Caller, event: ClientEvent) -> Result<Value, Failure> {
    use ClientEvent::*;
    match event {
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
            crate::auction::place::place_bid(
                app,
                caller.user(),
                listing_id,
                amount,
                idempotency_key,
                move |conn| listing::may_watch(conn, &id, &user, admin),
            )
            .await
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
        AuthRefresh { .. } => Err(Failure::new(
            Code::Internal,
            "auth:refresh belongs to the session",
        )),
    }
}
