//! Listings and their auction settings as the contract shows them (§6).

use std::str::FromStr;

use serde::Serialize;

use crate::ids::{ListingId, UserId};

/// Who may watch a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Visibility {
    Public,
    Private,
}

/// Whether a listing can be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    Available,
    Reserved,
    Sold,
    Withdrawn,
}

/// Where an auction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuctionStatus {
    Scheduled,
    Open,
    Closed,
}

macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }
        impl FromStr for $name {
            type Err = ();
            fn from_str(text: &str) -> Result<Self, ()> {
                match text { $($text => Ok($name::$variant),)+ _ => Err(()) }
            }
        }
    };
}

text_enum!(Visibility { Public => "public", Private => "private" });
text_enum!(Availability {
    Available => "available",
    Reserved => "reserved",
    Sold => "sold",
    Withdrawn => "withdrawn",
});

/// A listing as the contract shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listing {
    pub id: ListingId,
    pub seller_id: UserId,
    pub title: String,
    pub price: i64,
    pub currency: String,
    pub visibility: Visibility,
    pub availability: Availability,
    pub auction: Option<Auction>,
    pub version: i64,
    pub updated_at: String,
}

/// An auction's settings and live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Auction {
    pub starts_at: String,
    pub ends_at: String,
    pub start_price: i64,
    pub min_increment: i64,
    /// Shown only to the seller and admins.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reserve_price: Option<i64>,
    pub extend_window_secs: i32,
    pub status: AuctionStatus,
    pub current_amount: Option<i64>,
    pub leader_id: Option<UserId>,
    pub bid_count: i64,
    pub version: i64,
}

impl Listing {
    /// The listing as `viewer` may see it: the reserve price only for the
    /// seller and those who see everything (admins, the backend).
    pub fn for_viewer(&self, viewer: &UserId, sees_everything: bool) -> Listing {
        if sees_everything || viewer == &self.seller_id {
            self.clone()
        } else {
            self.without_reserve()
        }
    }

    /// The listing as anyone may see it: no reserve price.
    pub fn without_reserve(&self) -> Listing {
        let mut shown = self.clone();
        if let Some(auction) = shown.auction.as_mut() {
            auction.reserve_price = None;
        }
        shown
    }
}
