//! `presence:watch`, `presence:unwatch`.

use serde_json::{json, Value};

use super::{enter_room, Caller};
use crate::error::Failure;
use crate::ids::UserId;
use crate::rooms::presence::states;
use crate::rooms::registry::{Join, Leave};
use crate::rooms::RoomKey;
use crate::state::AppState;

/// Joins each `presence:{id}`; answers their current states.
pub async fn watch(app: &AppState, caller: &Caller, users: Vec<UserId>) -> Result<Value, Failure> {
    let presence = states(&app.redis, &users).await?;
    for user in users {
        enter_room(
            app,
            Join {
                session: caller.session,
                user: caller.user().clone(),
                admin: caller.is_admin(),
                room: RoomKey::Presence(user),
            },
        )
        .await?;
    }
    Ok(json!({ "presence": presence }))
}

/// Leaves each `presence:{id}`.
pub fn unwatch(app: &AppState, caller: &Caller, users: Vec<UserId>) -> Result<Value, Failure> {
    for user in users {
        app.registry.do_send(Leave {
            session: caller.session,
            room: RoomKey::Presence(user),
        });
    }
    Ok(json!({}))
}
