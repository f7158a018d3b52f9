//! PLACEHOLDER (being built): every call fails as unavailable.

use std::time::Duration;

use actix::Recipient;
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{
    Arrival, Auctions, BidRequest, Claim, CloseCheck, Events, History, LiveState, LogLimits, Nodes,
    Placed, Presence, PresenceState, Publication, RateLimit, Records, Remembered, Save, Saved,
    Subscription, Throttle, Throttles,
};
use crate::ids::RoomKey;
use crate::ids::{ListingId, UserId};
use crate::store::StoreError;

#[derive(Clone, Default)]
pub struct MemoryBroker;

fn not_yet() -> StoreError {
    StoreError::unavailable("MemoryBroker is not built yet")
}

impl MemoryBroker {
    pub async fn ping(&self) -> Result<(), StoreError> {
        Err(not_yet())
    }
}

impl Events for MemoryBroker {
    async fn publish(&self, b: &[Publication], _: LogLimits) -> Vec<Result<u64, StoreError>> {
        b.iter().map(|_| Err(not_yet())).collect()
    }
    async fn since(&self, _: &RoomKey, _: u64) -> Result<History, StoreError> {
        Err(not_yet())
    }
    fn subscribe(&self, _: Recipient<Arrival>) -> Subscription {
        let (commands, _) = tokio::sync::mpsc::unbounded_channel();
        Subscription::new(commands)
    }
}

impl Presence for MemoryBroker {
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

impl Throttles for MemoryBroker {
    async fn once(&self, _: &Throttle, _: Duration) -> Result<bool, StoreError> {
        Err(not_yet())
    }
    async fn reset(&self, _: &Throttle) -> Result<(), StoreError> {
        Err(not_yet())
    }
}

impl Records for MemoryBroker {
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

impl Auctions for MemoryBroker {
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

impl Nodes for MemoryBroker {
    async fn beat(&self, _: &str, _: &Value, _: Duration) -> Result<(), StoreError> {
        Err(not_yet())
    }
    async fn leave(&self, _: &str) -> Result<(), StoreError> {
        Err(not_yet())
    }
    async fn live(&self) -> Result<Vec<Value>, StoreError> {
        Err(not_yet())
    }
}
