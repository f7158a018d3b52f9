//! `admin:watch`, `admin:unwatch`: the admins' live dispute queue.

use serde_json::{json, Value};

use super::{enter_room, Caller};
use crate::error::{Code, Failure};
use crate::rooms::registry::{JoinRoom, LeaveRoom};
use crate::rooms::RoomKey;
use crate::state::AppState;
use crate::store::reads;

/// Joins `admin:disputes` (admins only); answers `{disputes}`, the open
/// disputes oldest first. The room is joined before they are read, so a
/// move made meanwhile is in the answer or arrives as `dispute:changed`.
pub async fn watch(app: &AppState, caller: &Caller) -> Result<Value, Failure> {
    if !caller.is_admin() {
        return Err(Failure::new(
            Code::Forbidden,
            "only admins may watch disputes",
        ));
    }
    enter_room(
        app,
        JoinRoom {
            session: caller.session,
            user: caller.user().clone(),
            admin: true,
            room: RoomKey::AdminDisputes,
        },
    )
    .await?;
    let rows = app.db.run(reads::open_disputes).await?;
    let disputes: Vec<_> = rows.iter().map(|row| row.to_booking()).collect();
    Ok(json!({ "disputes": disputes }))
}

/// Leaves `admin:disputes`; leaving when not in it is fine.
pub fn unwatch(app: &AppState, caller: &Caller) -> Result<Value, Failure> {
    app.registry.do_send(LeaveRoom {
        session: caller.session,
        room: RoomKey::AdminDisputes,
    });
    Ok(json!({}))
}
