//! The memory broker's one rule outside the process: it serves one node.
//! Two nodes on one database, each with its own memory broker, would split
//! every room in two without a word (a message sent on one never reaches
//! the other's members). So a node on the memory broker takes a Postgres
//! advisory lock on a connection of its own, kept for its whole life, and a
//! second one finds it taken and refuses to start. Postgres drops the lock
//! with the connection, so a node that dies leaves nothing to clean up.

use diesel::prelude::*;
use diesel::sql_types::Bool;

use crate::store::StoreError;

/// Why a node on the memory broker may not start.
#[derive(Debug, thiserror::Error)]
pub enum OnlyNodeError {
    #[error(
        "another souk node on the memory broker uses this database; \
         several nodes need Redis (SOUK_REDIS_URL=redis://…)"
    )]
    Taken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Held while this node is the one node on the memory broker; dropping it
/// (the node stops) closes the connection, and with it the lock.
pub struct OnlyNode {
    _conn: PgConnection,
}

impl std::fmt::Debug for OnlyNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnlyNode")
    }
}

#[derive(QueryableByName)]
struct Taken {
    #[diesel(sql_type = Bool)]
    taken: bool,
}

/// The lock's key: one per database (advisory locks are), the same for
/// every souk version.
const LOCK: &str =
    "SELECT pg_try_advisory_lock(hashtextextended('souk: the memory broker''s node', 0)) AS taken";

impl OnlyNode {
    /// Takes the lock on `database_url`, or says another node holds it.
    pub fn take(database_url: &str) -> Result<OnlyNode, OnlyNodeError> {
        let mut conn = PgConnection::establish(database_url)
            .map_err(|err| StoreError::unavailable_by("postgres", err))?;
        let lock: Taken = diesel::sql_query(LOCK)
            .get_result(&mut conn)
            .map_err(StoreError::from)?;
        if !lock.taken {
            return Err(OnlyNodeError::Taken);
        }
        Ok(OnlyNode { _conn: conn })
    }
}
