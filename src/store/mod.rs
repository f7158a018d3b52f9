//! The stores: Postgres through diesel (run on the blocking pool, never on the
//! async threads) and Redis through deadpool-redis.

pub mod audit;
pub mod bids;
pub mod bookings;
pub mod browse;
pub mod db;
pub mod demo;
pub mod listings;
pub mod messages;
pub mod outbox;
pub mod reads;
pub mod receipts;
pub mod redis;
pub mod schema;
pub mod writer;

pub use db::Db;
pub use redis::Redis;

use crate::error::Code;

/// A store failure, mapped once to the contract's codes.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A store cannot be reached; nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    /// The data says no: a refusal with the contract's code, nothing written.
    #[error("{message}")]
    Rejected { code: Code, message: String },
    #[error("internal store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// A refusal carrying the contract's code.
    pub fn rejected(code: Code, message: impl Into<String>) -> Self {
        StoreError::Rejected {
            code,
            message: message.into(),
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
            // Too slow: the store cannot serve it now.
            Error::DatabaseError(_, info) if info.message().contains(db::TIMED_OUT) => {
                StoreError::Unavailable(info.message().to_owned())
            }
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                StoreError::rejected(Code::Conflict, "already exists")
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}
