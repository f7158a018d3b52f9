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

impl Throttles for RedisBroker {
    async fn once(&self, _: &Throttle, _: Duration) -> Result<bool, StoreError> {
        Err(not_yet())
    }
    async fn reset(&self, _: &Throttle) -> Result<(), StoreError> {
        Err(not_yet())
    }
}
