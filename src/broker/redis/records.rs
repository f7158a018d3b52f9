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
use crate::ids::{ListingId, UserId};
use crate::rooms::RoomKey;
use crate::store::StoreError;

impl Records for RedisBroker {
    async fn save(&self, _: &[Save], _: Duration) -> Result<Saved, StoreError> {
        Err(not_yet())
    }
    async fn claim(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<Claim, StoreError> {
        Err(not_yet())
    }
    async fn release(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Err(not_yet())
    }
}
