//! Auctions: bids are decided in one step against the live state (the
//! broker's `Auctions`), appended to Postgres (group commit) before their
//! ack, and every auction is closed exactly once, by whichever node gets
//! there first.

pub mod closer;
pub mod place;
