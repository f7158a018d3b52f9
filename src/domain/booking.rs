//! Bookings and their state machine (contract §7).

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::domain::Availability;
use crate::ids::{BookingId, ListingId, UserId};

/// Where a booking stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BookingStatus {
    Requested,
    Confirmed,
    Declined,
    Cancelled,
    Completed,
    Disputed,
    Resolved,
}

impl BookingStatus {
    pub const ALL: [BookingStatus; 7] = [
        BookingStatus::Requested,
        BookingStatus::Confirmed,
        BookingStatus::Declined,
        BookingStatus::Cancelled,
        BookingStatus::Completed,
        BookingStatus::Disputed,
        BookingStatus::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Requested => "requested",
            BookingStatus::Confirmed => "confirmed",
            BookingStatus::Declined => "declined",
            BookingStatus::Cancelled => "cancelled",
            BookingStatus::Completed => "completed",
            BookingStatus::Disputed => "disputed",
            BookingStatus::Resolved => "resolved",
        }
    }

    /// What the listing becomes when a booking moves here, if anything.
    pub fn listing_availability(self) -> Option<Availability> {
        match self {
            BookingStatus::Declined | BookingStatus::Cancelled => Some(Availability::Available),
            BookingStatus::Completed => Some(Availability::Sold),
            _ => None,
        }
    }
}

impl fmt::Display for BookingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BookingStatus {
    type Err = ();
    fn from_str(text: &str) -> Result<Self, ()> {
        BookingStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
            .ok_or(())
    }
}

/// Who asks to move a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mover {
    Buyer,
    Seller,
    Admin,
    /// The marketplace backend through the server API: any listed move.
    Service,
}

impl Mover {
    /// The role an audit entry names.
    pub fn as_str(self) -> &'static str {
        match self {
            Mover::Buyer => "buyer",
            Mover::Seller => "seller",
            Mover::Admin => "admin",
            Mover::Service => "service",
        }
    }
}

/// Why a move was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoveError {
    /// The contract has no such move (`invalid_transition`).
    NotAMove,
    /// The move exists but not for this mover (`forbidden`).
    NotYours,
}

/// Checks a move against §7: the seller confirms or declines; the buyer
/// cancels a request; either party cancels a confirmed booking or opens a
/// dispute; an admin resolves; the server API may make any listed move.
pub fn check_move(from: BookingStatus, to: BookingStatus, mover: Mover) -> Result<(), MoveError> {
    use BookingStatus::*;
    use Mover::*;
    let allowed: &[Mover] = match (from, to) {
        (Requested, Confirmed) | (Requested, Declined) => &[Seller],
        (Requested, Cancelled) => &[Buyer],
        (Confirmed, Cancelled) | (Confirmed, Disputed) | (Completed, Disputed) => &[Buyer, Seller],
        (Confirmed, Completed) => &[],
        (Disputed, Resolved) => &[Admin],
        _ => return Err(MoveError::NotAMove),
    };
    if mover == Service || allowed.contains(&mover) {
        Ok(())
    } else {
        Err(MoveError::NotYours)
    }
}

/// A booking as the contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Booking {
    pub id: BookingId,
    pub listing_id: ListingId,
    pub buyer_id: UserId,
    pub seller_id: UserId,
    pub status: BookingStatus,
    pub created_at: String,
    pub updated_at: String,
}

impl Booking {
    /// The mover `user` is on this booking, if a participant.
    pub fn mover(&self, user: &UserId) -> Option<Mover> {
        if &self.buyer_id == user {
            Some(Mover::Buyer)
        } else if &self.seller_id == user {
            Some(Mover::Seller)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BookingStatus::*;

    #[test]
    fn every_listed_move_and_who_may_make_it() {
        let table = [
            (Requested, Confirmed, vec![Mover::Seller]),
            (Requested, Declined, vec![Mover::Seller]),
            (Requested, Cancelled, vec![Mover::Buyer]),
            (Confirmed, Completed, vec![]),
            (Confirmed, Cancelled, vec![Mover::Buyer, Mover::Seller]),
            (Confirmed, Disputed, vec![Mover::Buyer, Mover::Seller]),
            (Completed, Disputed, vec![Mover::Buyer, Mover::Seller]),
            (Disputed, Resolved, vec![Mover::Admin]),
        ];
        for (from, to, movers) in table {
            for mover in [Mover::Buyer, Mover::Seller, Mover::Admin, Mover::Service] {
                let expected = if mover == Mover::Service || movers.contains(&mover) {
                    Ok(())
                } else {
                    Err(MoveError::NotYours)
                };
                assert_eq!(
                    check_move(from, to, mover),
                    expected,
                    "{from}->{to} by {mover:?}"
                );
            }
        }
    }

    #[test]
    fn unlisted_moves_are_invalid_for_everyone() {
        let listed = [
            (Requested, Confirmed),
            (Requested, Declined),
            (Requested, Cancelled),
            (Confirmed, Completed),
            (Confirmed, Cancelled),
            (Confirmed, Disputed),
            (Completed, Disputed),
            (Disputed, Resolved),
        ];
        for from in BookingStatus::ALL {
            for to in BookingStatus::ALL {
                if listed.contains(&(from, to)) {
                    continue;
                }
                assert_eq!(
                    check_move(from, to, Mover::Service),
                    Err(MoveError::NotAMove),
                    "{from}->{to}"
                );
            }
        }
    }

    #[test]
    fn statuses_round_trip_and_drive_availability() {
        for status in BookingStatus::ALL {
            assert_eq!(status.as_str().parse::<BookingStatus>(), Ok(status));
        }
        assert_eq!("nope".parse::<BookingStatus>(), Err(()));
        assert_eq!(
            Declined.listing_availability(),
            Some(Availability::Available)
        );
        assert_eq!(
            Cancelled.listing_availability(),
            Some(Availability::Available)
        );
        assert_eq!(Completed.listing_availability(), Some(Availability::Sold));
        assert_eq!(Confirmed.listing_availability(), None);
    }
}
