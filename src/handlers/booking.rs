//! `booking:join`, `booking:leave`, `booking:transition`, and the access
//! check every booking event shares.

use serde_json::{json, Value};

use super::{enter_room, Caller};
use crate::domain::{BookingStatus, Mover};
use crate::error::Failure;
use crate::ids::{BookingId, UserId};
use crate::protocol::events::{self, ServerEvent};
use crate::rooms::registry::{JoinRoom, LeaveRoom};
use crate::rooms::RoomKey;
use crate::state::AppState;
use crate::store::bookings::{self, BookingRow, Moved};
use crate::store::{audit, receipts, StoreError};

/// How a caller stands to a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The buyer or the seller.
    Participant,
    /// An admin who is not a participant.
    Admin,
}

/// Whether admins who are not a party may do an event, and under which
/// audit action their doing it is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admins {
    /// Only the buyer and the seller may.
    Refused,
    /// Admins may too; each such access is written to the audit log.
    Audited(&'static str),
    /// Admins may too; the action writes its own audit entry for everyone
    /// (a booking's moves: `store::bookings::transition`).
    Recorded,
}

/// Loads a booking and how `caller` may act on it: see [`admit`].
pub fn access(
    conn: &mut diesel::PgConnection,
    booking: &BookingId,
    caller: &Caller,
    admins: Admins,
) -> Result<(BookingRow, Access), StoreError> {
    let row = bookings::get(conn, booking)?;
    let how = admit(conn, &row, caller, admins)?;
    Ok((row, how))
}

/// How `caller` may act on a booking: participants always; admins when
/// `admins` lets them, and then the access is written to the audit log (in
/// the caller's transaction, if it runs in one); anyone else is `forbidden`.
pub fn admit(
    conn: &mut diesel::PgConnection,
    row: &BookingRow,
    caller: &Caller,
    admins: Admins,
) -> Result<Access, StoreError> {
    let (admitted, action) = match admins {
        Admins::Audited(action) if caller.is_admin() => (true, Some(action)),
        Admins::Recorded => (caller.is_admin(), None),
        _ => (false, None),
    };
    match standing(row, caller.user(), admitted) {
        Some(Access::Admin) => {
            if let Some(action) = action {
                audit::admin_access(
                    conn,
                    caller.user().as_str(),
                    action,
                    &row.id,
                    json!({ "status": row.status }),
                )?;
            }
            Ok(Access::Admin)
        }
        Some(Access::Participant) => Ok(Access::Participant),
        None => Err(bookings::not_a_party()),
    }
}

/// How `user` stands to a booking: a participant, else an admin when
/// `admin` (the caller is one and admins may act here), else nothing.
pub fn standing(row: &BookingRow, user: &UserId, admin: bool) -> Option<Access> {
    if row.is_party(user) {
        Some(Access::Participant)
    } else if admin {
        Some(Access::Admin)
    } else {
        None
    }
}

/// Joins `booking:{id}`; an admin's join is written to the audit log.
/// Answers `{booking, unread, lastReadMessageId}`.
pub async fn join(app: &AppState, caller: &Caller, id: BookingId) -> Result<Value, Failure> {
    let who = caller.clone();
    let lookup = id.clone();
    let (row, unread, last_read) = app
        .db
        .run(move |conn| {
            let (row, _) = access(conn, &lookup, &who, Admins::Audited(events::BOOKING_JOIN))?;
            let (unread, last_read) = receipts::unread(conn, &lookup, who.user())?;
            Ok((row, unread, last_read))
        })
        .await?;
    enter_room(
        app,
        JoinRoom {
            session: caller.session,
            user: caller.user().clone(),
            admin: caller.is_admin(),
            room: RoomKey::Booking(id),
        },
    )
    .await?;
    Ok(json!({
        "booking": row.to_booking(),
        "unread": unread,
        "lastReadMessageId": last_read,
    }))
}

/// Leaves `booking:{id}`.
pub fn leave(app: &AppState, caller: &Caller, id: BookingId) -> Result<Value, Failure> {
    app.registry.do_send(LeaveRoom {
        session: caller.session,
        room: RoomKey::Booking(id),
    });
    Ok(json!({}))
}

/// Moves a booking as §7 allows the caller; answers `{booking}`.
pub async fn transition(
    app: &AppState,
    caller: &Caller,
    id: BookingId,
    to: BookingStatus,
) -> Result<Value, Failure> {
    let who = caller.clone();
    let moved = app
        .db
        .run(move |conn| {
            bookings::transition(conn, &id, to, who.user().as_str(), |conn, row| {
                let how = admit(conn, row, &who, Admins::Recorded);
                match how {
                    Ok(Access::Participant) => Ok(row.to_booking().mover(who.user())),
                    Ok(Access::Admin) => Ok(Some(Mover::Admin)),
                    Err(_) => Ok(None),
                }
            })
        })
        .await?;
    announce_move(app, &moved, caller.user().as_str());
    Ok(json!({ "booking": moved.booking.to_booking() }))
}

/// Tells the booking's room and both participants' user rooms about a move,
/// the listing's room when its availability followed, and the admins'
/// dispute room when the booking moved into or out of `disputed`.
pub fn announce_move(app: &AppState, moved: &Moved, by: &str) {
    let booking = moved.booking.to_booking();
    let changed = ServerEvent::BookingStatusChanged {
        booking_id: booking.id.clone(),
        status: booking.status,
        previous_status: moved.previous,
        by: by.to_owned(),
    };
    let rooms = [
        RoomKey::Booking(booking.id.clone()),
        RoomKey::User(booking.buyer_id.clone()),
        RoomKey::User(booking.seller_id.clone()),
    ];
    app.fanout.emit_to(&rooms, changed);
    if moved.previous == BookingStatus::Disputed || booking.status == BookingStatus::Disputed {
        let dispute = ServerEvent::DisputeChanged {
            booking,
            previous_status: moved.previous,
            by: by.to_owned(),
        };
        app.fanout.emit(RoomKey::AdminDisputes, dispute);
    }
    if let Some(listing) = &moved.listing {
        let id = listing.listing_id();
        let availability = ServerEvent::AvailabilityChanged {
            listing_id: id.clone(),
            availability: listing.availability(),
        };
        app.fanout.emit_listing(id, availability, listing.version);
    }
}
