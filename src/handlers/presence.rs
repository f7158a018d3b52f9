//! `presence:watch`, `presence:unwatch`.

use serde_json::{json, Value};

use super::{enter_rooms, Caller};
use crate::error::Failure;
use crate::ids::UserId;
use crate::rooms::presence::states;
use crate::rooms::registry::{JoinRooms, LeaveRoom};
use crate::rooms::RoomKey;
use crate::state::AppState;

/// Joins each `presence:{id}`; answers their current states.
pub async fn watch(app: &AppState, caller: &Caller, users: Vec<UserId>) -> Result<Value, Failure> {
    let presence = states(&app.broker, &users).await?;
    let join = JoinRooms {
        session: caller.session,
        user: caller.user().clone(),
        admin: caller.is_admin(),
        rooms: users.into_iter().map(RoomKey::Presence).collect(),
    };
    enter_rooms(app, join).await?;
    Ok(json!({ "presence": presence }))
}

/// Leaves each `presence:{id}`.
pub fn unwatch(app: &AppState, caller: &Caller, users: Vec<UserId>) -> Result<Value, Failure> {
    for user in users {
        app.registry.do_send(LeaveRoom {
            session: caller.session,
            room: RoomKey::Presence(user),
        });
    }
    Ok(json!({}))
}
