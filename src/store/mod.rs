//! The store: Postgres through diesel (run on the blocking pool, never on the
//! async threads).

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
pub mod schema;
pub mod writer;

pub use db::Db;

use std::sync::Arc;

use crate::domain::BookingStatus;

/// What made a store fail, kept whole for the logs; shared, so that one
/// failed batch can answer every waiter.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// A store failure in the store's own terms; the error module maps it, once,
/// to the contract's codes and messages.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A store cannot be reached or did not answer; nothing was written.
    #[error("store unavailable: {what}{}", because(.cause))]
    Unavailable {
        what: String,
        #[source]
        cause: Option<Cause>,
    },
    /// Postgres cancelled a statement that ran past `statement_timeout`.
    #[error("a statement ran past statement_timeout")]
    TimedOut(#[source] Cause),
    #[error("not found")]
    NotFound,
    /// The data says no; nothing was written.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A fault in a store or in souk.
    #[error("internal store error: {what}{}", because(.cause))]
    Internal {
        what: String,
        #[source]
        cause: Option<Cause>,
    },
}

impl StoreError {
    /// A store cannot be reached: `what` failed, and nothing more is known.
    pub fn unavailable(what: impl Into<String>) -> Self {
        StoreError::Unavailable {
            what: what.into(),
            cause: None,
        }
    }

    /// A store cannot be reached: `what` failed because of `cause`.
    pub fn unavailable_by(
        what: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Unavailable {
            what: what.into(),
            cause: Some(Arc::from(cause.into())),
        }
    }

    /// A fault: `what` went wrong, and nothing more is known.
    pub fn internal(what: impl Into<String>) -> Self {
        StoreError::Internal {
            what: what.into(),
            cause: None,
        }
    }

    /// A fault: `what` went wrong because of `cause`.
    pub fn internal_by(
        what: impl Into<String>,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StoreError::Internal {
            what: what.into(),
            cause: Some(Arc::from(cause.into())),
        }
    }
}

/// `: cause` when there is one. The message repeats its cause, kept as the
/// source too, because many log lines print only `{err}`.
fn because(cause: &Option<Cause>) -> String {
    cause
        .as_ref()
        .map(|cause| format!(": {cause}"))
        .unwrap_or_default()
}

/// Why the data refuses a read or a write (nothing is written).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The caller is neither the booking's buyer, its seller nor an admin.
    #[error("the caller is not a party to the booking")]
    NotAParty,
    /// No mover could be named for the caller on this booking.
    #[error("the caller takes no part in the booking")]
    NotAParticipant,
    /// §7 has no such move.
    #[error("no move from {from} to {to}")]
    InvalidTransition {
        from: BookingStatus,
        to: BookingStatus,
    },
    /// §7 has the move, but not for this caller.
    #[error("the caller may not move from {from} to {to}")]
    NotYourMove {
        from: BookingStatus,
        to: BookingStatus,
    },
    #[error("a seller reserving their own listing")]
    SellerOwnListing,
    #[error("the listing is private")]
    ListingPrivate,
    /// Auction listings are won by bidding, not reserved.
    #[error("reserving an auction listing")]
    AuctionNotReservable,
    /// A bid on a listing that is not an auction.
    #[error("the listing is not an auction")]
    NotAnAuction,
    /// An idempotency key already used for another listing.
    #[error("an idempotency key reused for another listing")]
    KeyReused,
    #[error("a listing's seller changing")]
    SellerChanged,
    /// A unique row already exists.
    #[error("the row already exists")]
    Duplicate,
    /// A message id that is not in the named booking.
    #[error("the message is not in the booking")]
    MessageNotInBooking,
}

impl From<diesel::result::Error> for StoreError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &err {
            Error::NotFound => StoreError::NotFound,
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => StoreError::unavailable_by("postgres", err),
            // Too slow: the store cannot serve it now.
            Error::DatabaseError(_, info) if info.message().contains(db::TIMED_OUT) => {
                StoreError::TimedOut(Arc::new(err))
            }
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                StoreError::Refused(Refusal::Duplicate)
            }
            _ => StoreError::internal_by("postgres", err),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    fn database(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn postgres_errors_keep_their_cause() {
        let slow = StoreError::from(database(DatabaseErrorKind::Unknown, db::TIMED_OUT));
        assert!(matches!(slow, StoreError::TimedOut(_)));
        let source = std::error::Error::source(&slow).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some(db::TIMED_OUT));

        let gone = StoreError::from(database(DatabaseErrorKind::ClosedConnection, "gone"));
        assert!(matches!(gone, StoreError::Unavailable { .. }));
        assert_eq!(gone.to_string(), "store unavailable: postgres: gone");

        let broken = StoreError::from(database(DatabaseErrorKind::Unknown, "syntax"));
        assert!(std::error::Error::source(&broken).is_some());

        let twice = StoreError::from(database(DatabaseErrorKind::UniqueViolation, "dup"));
        assert!(matches!(twice, StoreError::Refused(Refusal::Duplicate)));
        assert!(matches!(
            StoreError::from(Error::NotFound),
            StoreError::NotFound
        ));
    }
}
