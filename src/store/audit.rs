//! The audit log: who did what to which subject.

use diesel::prelude::*;
use serde_json::Value;

use super::schema::audit_log;
use super::StoreError;

/// One audit entry.
pub struct Entry<'a> {
    pub actor_id: &'a str,
    pub actor_role: &'a str,
    pub action: &'a str,
    /// What it was done to, e.g. `booking:b1`.
    pub subject: &'a str,
    pub details: Value,
}

/// Appends an entry.
pub fn record(conn: &mut PgConnection, entry: &Entry<'_>) -> Result<(), StoreError> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::actor_id.eq(entry.actor_id),
            audit_log::actor_role.eq(entry.actor_role),
            audit_log::action.eq(entry.action),
            audit_log::subject.eq(entry.subject),
            audit_log::details.eq(&entry.details),
        ))
        .execute(conn)?;
    Ok(())
}

/// Records that an admin who is not a party acted on a booking (§4: every
/// such access is audited, not only joins).
pub fn admin_access(
    conn: &mut PgConnection,
    admin: &str,
    action: &str,
    booking: &str,
    details: Value,
) -> Result<(), StoreError> {
    record(
        conn,
        &Entry {
            actor_id: admin,
            actor_role: "admin",
            action,
            subject: &format!("booking:{booking}"),
            details,
        },
    )
}
