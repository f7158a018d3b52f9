//! The marketplace's rules and the shapes the contract shows (§6, §7):
//! pure code, shared by the stores, the rooms and the server API.

pub mod booking;
pub mod listing;
pub mod message;

pub use booking::{Booking, BookingStatus, Mover};
pub use listing::{Auction, AuctionStatus, Availability, Listing, Visibility};
pub use message::Message;
