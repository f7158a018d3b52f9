//! The stores: Postgres through diesel (run on the blocking pool, never on the
//! async threads) and Redis through deadpool-redis.

pub mod db;
pub mod redis;
pub mod schema;

pub use db::Db;
pub use redis::Redis;

/// A store failure, mapped once to the contract's codes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A store cannot be reached; nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// The contract's error code (§3).
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Unavailable(_) => "service_unavailable",
            StoreError::NotFound => "not_found",
            StoreError::Internal(_) => "internal",
        }
    }
}

impl From<diesel::result::Error> for StoreError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match err {
            Error::NotFound => StoreError::NotFound,
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => StoreError::Unavailable(info.message().to_owned()),
            other => StoreError::Internal(other.to_string()),
        }
    }
}
