//! The user reads (§8a): what the web front shows a signed-in user, each
//! answer holding only what the caller's own token may see, decided from
//! data as joins are. Paged by `limit` and an opaque `cursor`.

use actix_web::{web, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::service_auth::UserCaller;
use super::{bad_field, path_id};
use crate::domain::{Availability, BookingStatus, Listing};
use crate::error::{Code, Failure};
use crate::ids::BookingId;
use crate::state::AppState;
use crate::store::bookings::{self, BookingRow};
use crate::store::listings;
use crate::store::reads::{self, AdminKey, BookingLine, ListingsOf, Sides};
use crate::time::rfc3339;

/// Mounts the reads, with CORS as for `/socket.io/` and query errors as
/// JSON: `/api/v1/me/…`, `/api/v1/admin/…` and `/api/v1/listings`.
pub fn mount(cfg: &mut web::ServiceConfig) {
    let cors = || actix_web::middleware::from_fn(crate::cors::socket_io);
    let query = || {
        web::QueryConfig::default().error_handler(|err, _| {
            Failure::new(Code::BadRequest, format!("bad query: {err}")).into()
        })
    };
    cfg.service(
        web::scope("/api/v1/me")
            .app_data(query())
            .wrap(cors())
            .route("/bookings", web::get().to(my_bookings))
            .route("/listings", web::get().to(my_listings)),
    )
    .service(
        web::scope("/api/v1/admin")
            .app_data(query())
            .wrap(cors())
            .route("/bookings", web::get().to(admin_bookings))
            .route("/bookings/{id}/audit", web::get().to(admin_audit))
            .route("/cluster", web::get().to(admin_cluster))
            .route("/metrics", web::get().to(admin_metrics)),
    )
    .service(
        web::resource("/api/v1/listings")
            .app_data(query())
            .wrap(cors())
            .route(web::get().to(public_listings)),
    );
}

/// Page sizes (§8a).
const MIN_LIMIT: u32 = 1;
const MAX_LIMIT: u32 = 200;
const DEFAULT_LIMIT: u32 = 50;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MyBookingsQuery {
    #[serde(rename = "as")]
    side: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/me/bookings?as=buyer|seller&status=`: the caller's
/// bookings, the most recently active first.
pub async fn my_bookings(
    UserCaller(who): UserCaller,
    app: web::Data<AppState>,
    query: web::Query<MyBookingsQuery>,
) -> Result<HttpResponse, Failure> {
    let query = query.into_inner();
    let sides = match query.side.as_deref() {
        None | Some("") => Sides {
            buyer: true,
            seller: true,
        },
        Some("buyer") => Sides {
            buyer: true,
            seller: false,
        },
        Some("seller") => Sides {
            buyer: false,
            seller: true,
        },
        Some(_) => return Err(bad_field("as must be buyer or seller")),
    };
    let status = booking_status(query.status.as_deref())?;
    let limit = limit(query.limit)?;
    let after = time_cursor(query.cursor.as_deref())?;
    let user = who.user_id;
    let mut lines = app
        .db
        .run(move |conn| reads::my_bookings(conn, &user, sides, status, after, limit + 1))
        .await?;
    let next = next_cursor(&mut lines, limit, |last| {
        cursor(&[micros(last.active_at), last.booking.id.clone()])
    });
    let bookings: Vec<Value> = lines.iter().map(booking_item).collect();
    Ok(HttpResponse::Ok().json(json!({ "bookings": bookings, "nextCursor": next })))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListingsQuery {
    availability: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/me/listings?availability=`: the caller's listings as
/// seller, private ones too, with live auction state and the reserve price.
pub async fn my_listings(
    UserCaller(who): UserCaller,
    app: web::Data<AppState>,
    query: web::Query<ListingsQuery>,
) -> Result<HttpResponse, Failure> {
    let of = ListingsOf::Seller(who.user_id);
    listings_page(&app, of, query.into_inner(), true).await
}

/// `GET /api/v1/listings?availability=`: public listings, newest first,
/// reserve prices hidden, for any signed-in user.
pub async fn public_listings(
    UserCaller(_): UserCaller,
    app: web::Data<AppState>,
    query: web::Query<ListingsQuery>,
) -> Result<HttpResponse, Failure> {
    listings_page(&app, ListingsOf::Public, query.into_inner(), false).await
}

async fn listings_page(
    app: &AppState,
    of: ListingsOf,
    query: ListingsQuery,
    with_reserve: bool,
) -> Result<HttpResponse, Failure> {
    let availability = match query.availability.as_deref() {
        None | Some("") => None,
        Some(text) => Some(text.parse::<Availability>().map_err(|_| {
            bad_field("availability must be available, reserved, sold or withdrawn")
        })?),
    };
    let limit = limit(query.limit)?;
    let after = time_cursor(query.cursor.as_deref())?;
    let mut rows = app
        .db
        .run(move |conn| {
            let rows = reads::listings_page(conn, &of, availability, after, limit + 1)?;
            // An acked bid is in the bid log (and a moved end in the
            // row): this is the live state every watcher was shown.
            listings::with_progress(conn, rows)
        })
        .await?;
    let next = next_cursor(&mut rows, limit, |(last, _)| {
        cursor(&[micros(last.created_at), last.id.clone()])
    });
    let now = Utc::now();
    let listings: Vec<Listing> = rows
        .iter()
        .map(|(row, progress)| {
            let listing = row.to_listing(progress, now);
            if with_reserve {
                listing
            } else {
                listing.without_reserve()
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "listings": listings, "nextCursor": next })))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminBookingsQuery {
    status: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/admin/bookings?status=`: admins only; bookings in `status`
/// (every booking when absent, disputes first), the oldest change first.
pub async fn admin_bookings(
    caller: UserCaller,
    app: web::Data<AppState>,
    query: web::Query<AdminBookingsQuery>,
) -> Result<HttpResponse, Failure> {
    admin_only(&caller)?;
    let query = query.into_inner();
    let status = booking_status(query.status.as_deref())?;
    let limit = limit(query.limit)?;
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => {
            let parts = cursor_parts(text, 3)?;
            let disputed = match parts[0].as_str() {
                "0" => true,
                "1" => false,
                _ => return Err(bad_cursor()),
            };
            let (updated_at, id) = time_and_id(&parts[1..])?;
            Some(AdminKey {
                disputed,
                updated_at,
                id,
            })
        }
    };
    let mut rows = app
        .db
        .run(move |conn| reads::all_bookings(conn, status, after, limit + 1))
        .await?;
    let next = next_cursor(&mut rows, limit, |last| {
        let group = if last.status() == BookingStatus::Disputed {
            "0"
        } else {
            "1"
        };
        cursor(&[group.to_owned(), micros(last.updated_at), last.id.clone()])
    });
    // Bookings only, as the contract's shape: the console opens one for more.
    let bookings: Vec<_> = rows.iter().map(BookingRow::to_booking).collect();
    Ok(HttpResponse::Ok().json(json!({ "bookings": bookings, "nextCursor": next })))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /api/v1/admin/bookings/{id}/audit`: admins only; the booking's
/// audit entries, oldest first.
pub async fn admin_audit(
    caller: UserCaller,
    app: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, Failure> {
    admin_only(&caller)?;
    let id: BookingId = path_id(&path, "booking id")?;
    let limit = limit(query.limit)?;
    let after = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            cursor_parts(text, 1)?[0]
                .parse::<i64>()
                .map_err(|_| bad_cursor())?,
        ),
    };
    let mut entries = app
        .db
        .run(move |conn| {
            bookings::get(conn, &id)?;
            reads::audit_page(conn, &format!("booking:{id}"), after, limit + 1)
        })
        .await?;
    let next = next_cursor(&mut entries, limit, |last| cursor(&[last.id.to_string()]));
    let entries: Vec<Value> = entries
        .iter()
        .map(|entry| {
            json!({
                "at": rfc3339(entry.at),
                "actorId": entry.actor_id,
                "action": entry.action,
                "detail": entry.details,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "entries": entries, "nextCursor": next })))
}

/// `GET /api/v1/admin/cluster`: admins only; as `GET /api/v1/cluster`.
pub async fn admin_cluster(
    caller: UserCaller,
    app: web::Data<AppState>,
) -> Result<HttpResponse, Failure> {
    admin_only(&caller)?;
    super::rooms::cluster_view(&app).await
}

/// `GET /api/v1/admin/metrics`: admins only; this node's `/metrics`, for
/// the ops page, which a browser reaches where `/metrics` is fenced off
/// to the backend's network (deploy/nginx.conf).
pub async fn admin_metrics(
    caller: UserCaller,
    app: web::Data<AppState>,
) -> Result<HttpResponse, Failure> {
    admin_only(&caller)?;
    super::health::metrics(app).await
}

fn admin_only(caller: &UserCaller) -> Result<(), Failure> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(Failure::new(Code::Forbidden, "admins only"))
    }
}

/// One line of the caller's bookings.
fn booking_item(line: &BookingLine) -> Value {
    let booking = line.booking.to_booking();
    let last_message = match (
        line.last_id,
        &line.last_sender_id,
        &line.last_body,
        &line.last_client_msg_id,
        line.last_created_at,
    ) {
        (Some(id), Some(sender), Some(body), Some(client_msg_id), Some(at)) => json!({
            "id": id.to_string(),
            "bookingId": booking.id,
            "senderId": sender,
            "body": body,
            "clientMsgId": client_msg_id,
            "createdAt": rfc3339(at),
        }),
        _ => Value::Null,
    };
    json!({
        "booking": booking,
        "listing": {
            "id": line.booking.listing_id,
            "title": line.title,
            "price": line.price,
            "currency": line.currency,
        },
        "unread": line.unread,
        "lastMessage": last_message,
    })
}

fn booking_status(text: Option<&str>) -> Result<Option<BookingStatus>, Failure> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => text
            .parse::<BookingStatus>()
            .map(Some)
            .map_err(|_| bad_field("status must be a booking status (§7)")),
    }
}

fn limit(limit: Option<u32>) -> Result<i64, Failure> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if (MIN_LIMIT..=MAX_LIMIT).contains(&limit) {
        Ok(i64::from(limit))
    } else {
        Err(bad_field("limit must be 1 to 200"))
    }
}

/// Keeps the first `limit` of the `limit + 1` rows read; the cursor of
/// the last kept one when there were more.
fn next_cursor<T>(rows: &mut Vec<T>, limit: i64, key: impl Fn(&T) -> String) -> Option<String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    if rows.len() <= limit {
        return None;
    }
    rows.truncate(limit);
    rows.last().map(key)
}

/// A cursor: its parts joined by `.` (ids never hold one), in hex, so
/// that clients treat it as opaque.
fn cursor(parts: &[String]) -> String {
    parts
        .join(".")
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A cursor's `n` parts, or 422.
fn cursor_parts(text: &str, n: usize) -> Result<Vec<String>, Failure> {
    if !text.len().is_multiple_of(2) || text.len() > 512 {
        return Err(bad_cursor());
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2).unwrap_or("zz"), 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad_cursor())?;
    let decoded = String::from_utf8(bytes).map_err(|_| bad_cursor())?;
    let parts: Vec<String> = decoded.split('.').map(str::to_owned).collect();
    if parts.len() == n {
        Ok(parts)
    } else {
        Err(bad_cursor())
    }
}

/// A `(time, id)` cursor, if any.
fn time_cursor(text: Option<&str>) -> Result<Option<(DateTime<Utc>, String)>, Failure> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => time_and_id(&cursor_parts(text, 2)?).map(Some),
    }
}

/// `[micros, id]` of a cursor.
fn time_and_id(parts: &[String]) -> Result<(DateTime<Utc>, String), Failure> {
    let [at, id] = parts else {
        return Err(bad_cursor());
    };
    let at = at
        .parse::<i64>()
        .ok()
        .and_then(DateTime::<Utc>::from_timestamp_micros)
        .ok_or_else(bad_cursor)?;
    if id.is_empty() {
        return Err(bad_cursor());
    }
    Ok((at, id.clone()))
}

fn micros(at: DateTime<Utc>) -> String {
    at.timestamp_micros().to_string()
}

fn bad_cursor() -> Failure {
    bad_field("cursor must be a nextCursor this node gave")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_junk() {
        let made = cursor(&["1700000000123456".into(), "bk_1-a".into()]);
        let parts = cursor_parts(&made, 2).unwrap_or_default();
        assert_eq!(parts, ["1700000000123456", "bk_1-a"]);
        assert!(time_and_id(&parts).is_ok());
        for junk in ["x", "zz", "abc", &cursor(&["1".into()])] {
            assert!(cursor_parts(junk, 2).is_err(), "{junk}");
        }
        assert!(time_and_id(&["soon".into(), "b".into()]).is_err());
    }

    #[test]
    fn next_cursor_only_when_rows_remain() {
        let mut rows = vec![1, 2, 3];
        assert_eq!(next_cursor(&mut rows, 3, |r| r.to_string()), None);
        assert_eq!(
            next_cursor(&mut rows, 2, |r| r.to_string()),
            Some("2".into())
        );
        assert_eq!(rows, [1, 2]);
    }
}
