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

impl Presence for RedisBroker {
    async fn refresh(
        &self,
        _: &[UserId],
        _: Duration,
        _: DateTime<Utc>,
    ) -> Result<Vec<UserId>, StoreError> {
        Err(not_yet())
    }
    async fn sweep(&self, _: DateTime<Utc>) -> Result<Vec<(UserId, Option<String>)>, StoreError> {
        Err(not_yet())
    }
    async fn states(&self, _: &[UserId]) -> Result<Vec<PresenceState>, StoreError> {
        Err(not_yet())
    }
}
