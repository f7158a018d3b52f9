//! `POST /api/v1/rooms/{room}/events`, `GET /api/v1/presence`.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{bad_field, ServiceCaller};
use crate::broker::Nodes;
use crate::error::{Code, Failure};
use crate::ids::UserId;
use crate::protocol::events::{CustomEvent, ServerEvent};
use crate::rooms::presence::states;
use crate::rooms::RoomKey;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmitBody {
    event: String,
    #[serde(default)]
    data: Value,
}

/// Emits `{event, data}` to a room (202).
pub async fn emit(
    _caller: ServiceCaller,
    app: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<EmitBody>,
) -> Result<HttpResponse, Failure> {
    // The admins' dispute room carries souk's own `dispute:changed` only.
    let room = RoomKey::parse(&path)
        .filter(|room| *room != RoomKey::AdminDisputes)
        .ok_or_else(|| {
            Failure::new(
                Code::BadRequest,
                "room must be listing:{id}, booking:{id}, user:{id} or presence:{id}",
            )
        })?;
    let EmitBody { event, data } = body.into_inner();
    let event = CustomEvent::new(event, data).map_err(|err| bad_field(err.to_string()))?;
    // Answered once the event is published; an event that could not be is
    // not acknowledged (503), so that the caller sends it again.
    app.fanout
        .emit_published(room.clone(), ServerEvent::Custom(event))
        .await?;
    Ok(HttpResponse::Accepted().json(json!({ "room": room.to_string() })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PresenceQuery {
    user_ids: String,
}

/// `?userIds=a,b`: each user's `{online, lastSeen}`.
pub async fn presence(
    _caller: ServiceCaller,
    app: web::Data<AppState>,
    query: web::Query<PresenceQuery>,
) -> Result<HttpResponse, Failure> {
    let mut users = Vec::new();
    for text in query.user_ids.split(',') {
        let user = UserId::parse(text)
            .ok_or_else(|| bad_field(format!("userIds: {text:?} is not a user id")))?;
        if !users.contains(&user) {
            users.push(user);
        }
    }
    if !(1..=100).contains(&users.len()) {
        return Err(bad_field("userIds must name 1 to 100 users"));
    }
    let presence = states(&app.broker, &users).await?;
    Ok(HttpResponse::Ok().json(json!({ "presence": presence })))
}

/// Every live node with its connection and room counts.
pub async fn cluster(
    _caller: ServiceCaller,
    app: web::Data<AppState>,
) -> Result<HttpResponse, Failure> {
    cluster_view(&app).await
}

/// The cluster's answer, for the backend and for admins (§8a).
pub(super) async fn cluster_view(app: &AppState) -> Result<HttpResponse, Failure> {
    let nodes = app.broker.live().await?;
    Ok(HttpResponse::Ok().json(json!({ "nodes": nodes })))
}
