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

use crate::domain::BookingStatus;

/// A store failure in the store's own terms; the error module maps it, once,
/// to the contract's codes and messages.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A store cannot be reached; nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("not found")]
    NotFound,
    /// The data says no; nothing was written.
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("internal store error: {0}")]
    Internal(String),
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
                StoreError::Refused(Refusal::Duplicate)
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}
