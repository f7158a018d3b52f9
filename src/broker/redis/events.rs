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

impl Events for RedisBroker {
    async fn publish(&self, _: &[Publication], _: LogLimits) -> Result<Vec<u64>, StoreError> {
        Err(not_yet())
    }
    async fn since(&self, _: &RoomKey, _: u64) -> Result<History, StoreError> {
        Err(not_yet())
    }
    fn subscribe(&self, _: Recipient<Arrival>) -> Subscription {
        let (commands, _) = tokio::sync::mpsc::unbounded_channel();
        Subscription::new(commands)
    }
}
