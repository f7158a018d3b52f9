//! `POST /api/v1/users/{id}/notifications`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ServiceCaller;
use crate::error::{Code, Failure};
use crate::ids::{UserId, ID_RULE};
use crate::protocol::events::ServerEvent;
use crate::rooms::RoomKey;
use crate::state::AppState;

/// The body of a notification.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notification {
    kind: String,
    #[serde(default)]
    data: Value,
}

/// Emits `notification {kind, data}` to `user:{id}`.
pub async fn notify(
    _caller: ServiceCaller,
    app: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<Notification>,
) -> Result<HttpResponse, Failure> {
    let user = UserId::parse(&path)
        .ok_or_else(|| Failure::new(Code::BadRequest, format!("user id must be {ID_RULE}")))?;
    let Notification { kind, data } = body.into_inner();
    let notification = ServerEvent::notification(kind, data)
        .map_err(|err| Failure::new(Code::Unprocessable, err.to_string()))?;
    let room = RoomKey::User(user);
    // Answered once the event is published; an event that could not be is
    // not acknowledged (503), so that the caller sends it again.
    app.fanout
        .emit_published(room.clone(), notification)
        .await?;
    Ok(HttpResponse::Accepted().json(json!({ "room": room.to_string() })))
}
