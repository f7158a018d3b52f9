//! PLACEHOLDER (being built): every call fails as unavailable.
#![allow(unused_imports)]

use std::time::Duration;

use actix::Recipient;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{not_yet, RedisBroker};
use crate::broker::{
    Arrival, Auctions, BidRequest, Claim, CloseCheck, Events, History, LiveState, LogLimits, Nodes,
    Placed, Presence, PresenceState, Publication, RateLimit, Records, Remembered, Save, Saved,
    Subscription, Throttle, Throttles,
};
use crate::ids::RoomKey;
use crate::ids::{ListingId, UserId};
use crate::store::StoreError;

impl Auctions for RedisBroker {
    async fn place(&self, _: BidRequest<'_>, _: RateLimit) -> Result<Placed, StoreError> {
        Err(not_yet())
    }
    async fn load(&self, _: &ListingId, _: &LiveState, _: &[Remembered]) -> Result<(), StoreError> {
        Err(not_yet())
    }
    async fn forget(&self, _: &ListingId, _: &[(UserId, String)]) -> Result<(), StoreError> {
        Err(not_yet())
    }
    async fn begin_close(&self, _: &ListingId, _: i64) -> Result<CloseCheck, StoreError> {
        Err(not_yet())
    }
    async fn mark_closed(&self, _: &ListingId) -> Result<(), StoreError> {
        Err(not_yet())
    }
}
