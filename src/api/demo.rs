//! The demo backend, served only in dev mode: the lists a web front needs
//! (listings to browse, a user's bookings, disputes for admins) and that
//! the contract leaves to the marketplace's own backend. The caller shows a
//! user token, as a browser would to its marketplace's backend, and sees
//! only what that user may see.

use actix_web::{web, HttpResponse};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::service_auth::UserCaller;
use super::{bad_field, path_id};
use crate::auth::Role;
use crate::domain::BookingStatus;
use crate::error::{Code, Failure};
use crate::ids::{BookingId, UserId};
use crate::state::AppState;
use crate::store::bookings::BookingRow;
use crate::store::browse::{self, BookingFilter};
use crate::store::receipts;

/// `GET /dev/listings`: public listings and the caller's own; the reserve
/// price only to the seller and admins.
pub async fn listings(
    UserCaller(who): UserCaller,
    app: web::Data<AppState>,
) -> Result<HttpResponse, Failure> {
    let viewer = who.user_id.clone();
    let rows = app
        .db
        .run(move |conn| browse::listings_for(conn, &viewer))
        .await?;
    let now = Utc::now();
    let listings: Vec<_> = rows
        .iter()
        .map(|(row, progress)| {
            let listing = row.to_listing(progress, now);
            if who.role == Role::Admin || listing.seller_id == who.user_id {
                listing
            } else {
                listing.without_reserve()
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "listings": listings })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BookingsQuery {
    status: Option<String>,
}

/// `GET /dev/bookings[?status=]`: the caller's bookings as buyer or seller,
/// or for an admin every booking; each with its listing's title and how
/// many messages the caller has not read.
pub async fn bookings(
    UserCaller(who): UserCaller,
    app: web::Data<AppState>,
    query: web::Query<BookingsQuery>,
) -> Result<HttpResponse, Failure> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<BookingStatus>()
                .map_err(|_| bad_field("status must be a booking status (§7)"))?,
        ),
    };
    let admin = who.role == Role::Admin;
    let user = who.user_id;
    let items = app
        .db
        .run(move |conn| {
            let filter = if admin {
                BookingFilter::All
            } else {
                BookingFilter::Party(&user)
            };
            let rows = browse::bookings_for(conn, filter, status)?;
            let mut items = Vec::with_capacity(rows.len());
            for (row, title) in rows {
                let (unread, _) = receipts::unread(conn, &booking_id(&row), &user)?;
                items.push(item(&row, &title, unread, None));
            }
            Ok(items)
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "bookings": items })))
}

/// `GET /dev/bookings/{id}`: one booking for its participants and admins,
/// with every participant's last read message (for read ticks on open).
pub async fn booking(
    UserCaller(who): UserCaller,
    app: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Failure> {
    let id: BookingId = path_id(&path, "booking id")?;
    let user: UserId = who.user_id;
    let admin = who.role == Role::Admin;
    let body = app
        .db
        .run(move |conn| {
            let (row, title) = browse::booking(conn, &id)?;
            let party = row.buyer_id == user.as_str() || row.seller_id == user.as_str();
            if !party && !admin {
                return Ok(None);
            }
            let (unread, _) = receipts::unread(conn, &id, &user)?;
            let read = browse::read_positions(conn, &id)?;
            Ok(Some(item(&row, &title, unread, Some(read))))
        })
        .await?
        .ok_or_else(|| Failure::new(Code::Forbidden, "not a participant of this booking"))?;
    Ok(HttpResponse::Ok().json(body))
}

fn booking_id(row: &BookingRow) -> BookingId {
    BookingId::from_db(row.id.clone())
}

fn item(
    row: &BookingRow,
    title: &str,
    unread: i64,
    read: Option<std::collections::BTreeMap<String, i64>>,
) -> Value {
    let mut item = json!({ "booking": row.to_booking(), "title": title, "unread": unread });
    if let Some(read) = read {
        // Message ids are decimal strings on the wire.
        let read: serde_json::Map<String, Value> = read
            .into_iter()
            .map(|(user, id)| (user, Value::String(id.to_string())))
            .collect();
        item["lastReadMessageIds"] = Value::Object(read);
    }
    item
}
