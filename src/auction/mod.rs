//! Auctions: bids are decided by one Redis script against the live state,
//! appended to Postgres (group commit) before their ack, and every auction is
//! closed exactly once, by whichever node gets there first.

pub mod closer;
pub mod live;
pub mod place;
