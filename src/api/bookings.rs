//! `GET /api/v1/bookings/{id}`, `POST /api/v1/bookings/{id}/transitions`,
//! `GET /api/v1/bookings/{id}/messages`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::json;

use super::{bad_field, path_id, ServiceCaller};
use crate::domain::{BookingStatus, Mover};
use crate::error::Failure;
use crate::handlers::booking::announce_move;
use crate::ids::{BookingId, MessageId, UserId, ID_RULE};
use crate::state::AppState;
use crate::store::{bookings, messages};

pub async fn get(
    _caller: ServiceCaller,
    app: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, Failure> {
    let id: BookingId = path_id(&path, "booking id")?;
    let row = app.db.run(move |conn| bookings::get(conn, &id)).await?;
    Ok(HttpResponse::Ok().json(json!({ "booking": row.to_booking() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransitionBody {
    to: String,
    by: Option<String>,
}

/// Any listed move; `by` names who it is made for (default: the caller).
pub async fn transition(
    caller: ServiceCaller,
    app: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<TransitionBody>,
) -> Result<HttpResponse, Failure> {
    let id: BookingId = path_id(&path, "booking id")?;
    let TransitionBody { to, by } = body.into_inner();
    let to: BookingStatus = to.parse().map_err(|_| {
        bad_field("to must be one of requested, confirmed, declined, cancelled, completed, disputed, resolved")
    })?;
    let by = match by {
        Some(by) => UserId::parse(&by).ok_or_else(|| bad_field(format!("by must be {ID_RULE}")))?,
        None => caller.0.user_id,
    };
    let actor = by.clone();
    let moved = app
        .db
        .run(move |conn| {
            bookings::transition(conn, &id, to, actor.as_str(), |_, _| {
                Ok(Some(Mover::Service))
            })
        })
        .await?;
    announce_move(&app, &moved, by.as_str());
    // Answer once the events this request caused are published.
    app.fanout.published().await;
    Ok(HttpResponse::Ok().json(json!({ "booking": moved.booking.to_booking() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HistoryQuery {
    before_id: Option<String>,
    limit: Option<u32>,
}

/// A page of the thread, oldest first.
pub async fn messages(
    _caller: ServiceCaller,
    app: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<HttpResponse, Failure> {
    let id: BookingId = path_id(&path, "booking id")?;
    let before = match query.before_id.as_deref() {
        None | Some("") => None,
        Some(text) => Some(
            MessageId::parse(text)
                .ok_or_else(|| bad_field("beforeId must be a positive decimal number"))?,
        ),
    };
    let limit = query.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(bad_field("limit must be 1 to 200"));
    }
    let (rows, has_more) = app
        .db
        .run(move |conn| {
            bookings::get(conn, &id)?;
            messages::history(conn, &id, before, limit)
        })
        .await?;
    let messages: Vec<_> = rows.iter().map(|row| row.to_message()).collect();
    Ok(HttpResponse::Ok().json(json!({ "messages": messages, "hasMore": has_more })))
}
