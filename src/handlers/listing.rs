//! `listing:watch`, `listing:unwatch`, `listing:reserve`.

use chrono::Utc;
use serde_json::{json, Value};

use super::{enter_room, Caller};
use crate::domain::Visibility;
use crate::error::{Code, Failure};
use crate::ids::{BookingId, ListingId};
use crate::protocol::events::ServerEvent;
use crate::rooms::listing::{AfterVersion, ListingSeen};
use crate::rooms::registry::{JoinRoom, LeaveRoom, ToRoom};
use crate::rooms::Flush;
use crate::rooms::RoomKey;
use crate::state::{random_id, AppState};
use crate::store::bookings::Reservation;
use crate::store::{bookings, listings};
use tokio::sync::oneshot;

/// Joins `listing:{id}` if the caller may see the listing; answers `{listing}`.
pub async fn watch(app: &AppState, caller: &Caller, id: ListingId) -> Result<Value, Failure> {
    let (user, admin) = (caller.user().clone(), caller.is_admin());
    let lookup = id.clone();
    let allowed = app
        .db
        .run(move |conn| bookings::may_watch(conn, &lookup, &user, admin))
        .await?;
    if !allowed {
        return Err(Failure::new(Code::Forbidden, "this listing is private"));
    }
    enter_room(
        app,
        JoinRoom {
            session: caller.session,
            user: caller.user().clone(),
            admin: caller.is_admin(),
            room: RoomKey::Listing(id.clone()),
        },
    )
    .await?;
    // Read the listing again now that changes reach this watcher: a change
    // made between the check above and the join is in this snapshot, and
    // every later one arrives as an event. One that made it private may
    // have missed this watcher's eviction (the room had not got it yet):
    // check again.
    let (lookup, user) = (id.clone(), caller.user().clone());
    let (row, progress, allowed) = app
        .db
        .run(move |conn| {
            let (row, progress) = listings::get_with_progress(conn, &lookup)?;
            let allowed = row.visibility() == Visibility::Public
                || bookings::may_watch(conn, &lookup, &user, admin)?;
            Ok((row, progress, allowed))
        })
        .await?;
    if !allowed {
        app.registry.do_send(LeaveRoom {
            session: caller.session,
            room: RoomKey::Listing(id),
        });
        return Err(Failure::new(Code::Forbidden, "this listing is private"));
    }
    // The room is at least at the version this watcher was shown.
    app.registry.do_send(ToRoom(ListingSeen {
        listing: id,
        version: row.version,
    }));
    let listing = row
        .to_listing(&progress, Utc::now())
        .for_viewer(caller.user(), caller.is_admin());
    Ok(json!({ "listing": listing }))
}

/// Leaves `listing:{id}`; leaving a room one is not in is fine.
pub fn unwatch(app: &AppState, caller: &Caller, id: ListingId) -> Result<Value, Failure> {
    app.registry.do_send(LeaveRoom {
        session: caller.session,
        room: RoomKey::Listing(id),
    });
    Ok(json!({}))
}

/// Reserves a listing: one winner among concurrent reservers; a repeated key
/// returns the same booking and announces nothing new.
pub async fn reserve(
    app: &AppState,
    caller: &Caller,
    id: ListingId,
    key: String,
) -> Result<Value, Failure> {
    let buyer = caller.user().clone();
    let new_id = BookingId::parse(&format!("bk_{}", random_id(20)))
        .ok_or_else(|| Failure::new(Code::Internal, "bad generated booking id"))?;
    let listing_id = id.clone();
    let reserved = match app
        .db
        .run(move |conn| bookings::reserve(conn, &listing_id, &buyer, &key, &new_id))
        .await?
    {
        Reservation::Made(reserved) => reserved,
        Reservation::Taken {
            availability,
            version,
        } => {
            // Answer only once this node's watchers were told of the change
            // that beat us, so no loser hears before a watcher does.
            let (reply, told) = oneshot::channel();
            app.registry.do_send(ToRoom(AfterVersion {
                listing: id,
                version,
                reply,
            }));
            let _ = told.await;
            // The change reached this node's room, and so this connection's
            // mailbox; let the connection write it before this answer.
            let _ = caller.mailbox.send(Flush).await;
            return Err(Failure::new(
                Code::Unavailable,
                format!("listing is {availability}"),
            ));
        }
    };
    let booking = reserved.booking.to_booking();
    if let Some(listing) = &reserved.listing {
        let availability = ServerEvent::AvailabilityChanged {
            listing_id: id.clone(),
            availability: listing.availability(),
        };
        app.fanout.emit_listing(id, availability, listing.version);
        let rooms = [
            RoomKey::User(booking.buyer_id.clone()),
            RoomKey::User(booking.seller_id.clone()),
        ];
        let created = ServerEvent::BookingCreated {
            booking: booking.clone(),
        };
        app.fanout.emit_to(&rooms, created);
    }
    Ok(json!({ "booking": booking }))
}
