//! Auctions' live state in Redis: one hash per listing, decided on by
//! scripts so that every bid sees and moves one consistent state (the core
//! rebuilds it from Postgres whenever Redis has lost it).
//!
//! Keyspace (prefix `souk:` by default); `{<listing>}` is a Redis Cluster
//! hash tag, so an auction, its idempotency keys and its rate counters
//! live in one slot and each script touches one slot:
//! - `souk:auction:{<listing>}`: the live state, a hash (`starts`, `ends`,
//!   `startPrice`, `minIncrement`, `extendMs`, `seller`, `current`,
//!   `leader`, `bidCount`, `version`, `status`, `visibility`,
//!   `availability`).
//! - `souk:auction:{<listing>}:rate:<bidder>`: the bidder's bids in the
//!   current rate window (`PX` the window). Per auction, not per bidder
//!   across auctions, so that the bid script touches one slot
//!   (docs/DECISIONS.md).
//! - `souk:auction:{<listing>}:idem:<bidder>:<key>`: the outcome of the
//!   bidder's bid with that idempotency key, JSON, kept 24 h.

use std::sync::LazyLock;

use deadpool_redis::redis::Script;

use super::{Redis, RedisBroker};
use crate::broker::{
    Auctions, BidRequest, CloseCheck, LiveState, Outcome, Placed, RateLimit, Remembered,
    BID_KEY_KEPT,
};
use crate::ids::{ListingId, UserId};
use crate::store::StoreError;

/// The hash of a listing's auction.
fn auction_key(redis: &Redis, listing: &str) -> String {
    in_auction_slot(redis, listing, &[])
}

/// Counts a bidder's bids in one auction's rate window.
fn rate_key(redis: &Redis, listing: &str, bidder: &str) -> String {
    in_auction_slot(redis, listing, &["rate", bidder])
}

/// The remembered outcome of `bidder`'s bid with `key`.
fn idempotency_key(redis: &Redis, listing: &str, bidder: &str, key: &str) -> String {
    in_auction_slot(redis, listing, &["idem", bidder, key])
}

/// `souk:auction:{listing}` followed by `rest`.
fn in_auction_slot(redis: &Redis, listing: &str, rest: &[&str]) -> String {
    let tag = format!("{{{listing}}}");
    let mut parts = vec!["auction", tag.as_str()];
    parts.extend_from_slice(rest);
    redis.key(&parts)
}

/// Decides a batch of bids on one auction, in order, each after counting
/// it against its bidder's rate limit, in one round trip: the hash is read
/// once and written once, each bid judged against the state the one before
/// it left. KEYS: the auction hash, then per bid its idempotency key (the
/// hash's own key when it has none) and its bidder's rate window. ARGV: key
/// TTL (ms), bids allowed per window, window (ms), then per bid: bidder,
/// amount, now (ms), has key (0/1), vouched (0/1: the bidder may see the
/// listing, and this try was counted already).
/// Returns one reply per bid: {'missing'} (not counted, so the retry after
/// a rebuild counts once) | {'rate_limited', ms left in the window} |
/// {'private'} (a private listing and a bidder not vouched for: nothing
/// else is looked at, so a stranger learns nothing of the auction) |
/// {'repeat', json} | {outcome, json}; every outcome but those is
/// remembered under the idempotency key.
const PLACE: &str = r#"
local n = (#ARGV - 3) / 5
local replies = {}
local function arg(i, field) return ARGV[3 + (i - 1) * 5 + field] end
local function prior(i)
  if arg(i, 4) == '1' then return redis.call('GET', KEYS[2 * i]) end
  return false
end
local function all_missing(look)
  for i = 1, n do
    local answer = look and prior(i)
    if answer then replies[i] = {'repeat', answer} else replies[i] = {'missing'} end
  end
  return replies
end
if redis.call('EXISTS', KEYS[1]) == 0 then return all_missing(true) end
local a = redis.call('HMGET', KEYS[1], 'starts', 'ends', 'startPrice', 'minIncrement',
  'extendMs', 'seller', 'current', 'leader', 'bidCount', 'version', 'status', 'visibility',
  'availability')
if not a[13] or not a[1] then
  -- Written before visibility and availability were kept, or only a
  -- status left behind: rebuild it from Postgres.
  redis.call('DEL', KEYS[1])
  return all_missing(false)
end
local starts, ends = tonumber(a[1]), tonumber(a[2])
local start_price, increment, extend = tonumber(a[3]), tonumber(a[4]), tonumber(a[5])
local seller, current, leader = a[6], tonumber(a[7]), a[8]
local count, version = tonumber(a[9]), tonumber(a[10])
local open, private, available = a[11] == 'open', a[12] == 'private', a[13] == 'available'
local per_window = tonumber(ARGV[2])
local moved = false
for i = 1, n do
  local bidder, amount, now = arg(i, 1), tonumber(arg(i, 2)), tonumber(arg(i, 3))
  if arg(i, 5) ~= '1' then
    local rate = KEYS[2 * i + 1]
    local counted = redis.call('INCR', rate)
    if counted == 1 then redis.call('PEXPIRE', rate, ARGV[3]) end
    if counted > per_window then
      replies[i] = {'rate_limited', tostring(redis.call('PTTL', rate))}
    elseif private and bidder ~= seller then
      replies[i] = {'private'}
    end
  end
  if not replies[i] then
    local answer = prior(i)
    if answer then
      replies[i] = {'repeat', answer}
    else
      local outcome
      if not open or now >= ends then
        outcome = {outcome = 'closed', ends = ends}
      elseif not available then
        outcome = {outcome = 'unavailable'}
      elseif now < starts then
        outcome = {outcome = 'not_open', starts = starts}
      elseif bidder == seller then
        outcome = {outcome = 'seller'}
      else
        local min = current < 0 and start_price or current + increment
        if amount < min then
          outcome = {outcome = 'too_low', min = min}
        else
          local new_ends = ends
          if extend > 0 and ends - now <= extend then new_ends = now + extend end
          outcome = {outcome = 'accepted', version = version + 1, amount = amount,
            ends = new_ends, extended = new_ends ~= ends, prevLeader = leader,
            prevAmount = current, bidCount = count + 1}
          version, count, current, leader, ends = version + 1, count + 1, amount, bidder, new_ends
          moved = true
        end
      end
      local encoded = cjson.encode(outcome)
      if arg(i, 4) == '1' then redis.call('SET', KEYS[2 * i], encoded, 'PX', ARGV[1]) end
      replies[i] = {outcome.outcome, encoded}
    end
  end
end
if moved then
  redis.call('HSET', KEYS[1], 'current', current, 'leader', leader, 'bidCount', count,
    'version', version, 'ends', ends)
end
return replies
"#;

/// Writes a rebuilt state unless another node already did. KEYS: the hash.
/// ARGV: field, value pairs.
const LOAD: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
";

/// Starts closing: refuses bids from now on and answers the final state.
/// KEYS: the hash. ARGV: now (ms). Returns {'missing'} | {'not_yet', ends}
/// | {'closing', version}.
const BEGIN_CLOSE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing'} end
local a = redis.call('HMGET', KEYS[1], 'ends', 'version', 'status')
if a[3] == 'open' and tonumber(ARGV[1]) < tonumber(a[1]) then return {'not_yet', a[1]} end
redis.call('HSET', KEYS[1], 'status', 'closing')
return {'closing', a[2]}
";

impl Auctions for RedisBroker {
    /// Runs the bid script once for the whole batch: one round trip.
    async fn place_all(
        &self,
        bids: &[BidRequest<'_>],
        limit: RateLimit,
    ) -> Result<Vec<Placed>, StoreError> {
        let redis = &self.redis;
        let Some(listing) = bids.first().map(|bid| bid.listing.as_str()) else {
            return Ok(Vec::new());
        };
        if let Some(other) = bids.iter().find(|bid| bid.listing.as_str() != listing) {
            return Err(StoreError::internal(format!(
                "one bid script call for {listing} and {}",
                other.listing
            )));
        }
        let hash = auction_key(redis, listing);
        let mut script = PLACE_SCRIPT.key(&hash);
        script
            .arg(BID_KEY_KEPT.as_millis() as u64)
            .arg(limit.per_window)
            .arg(limit.window_ms);
        for bid in bids {
            let bidder = bid.bidder.as_str();
            // Without a key, the auction's own key stands in: every key a
            // script is given must be in its slot.
            match bid.key {
                Some(key) => script.key(idempotency_key(redis, listing, bidder, key)),
                None => script.key(&hash),
            };
            script
                .key(rate_key(redis, listing, bidder))
                .arg(bidder)
                .arg(bid.amount)
                .arg(bid.now_ms)
                .arg(if bid.key.is_some() { 1 } else { 0 })
                .arg(if bid.vouched { 1 } else { 0 });
        }
        let mut conn = redis.connection().await?;
        let replies: Vec<Vec<String>> = script.invoke_async(&mut *conn).await?;
        if replies.len() != bids.len() {
            return Err(StoreError::internal(format!(
                "bid script answered {} replies for {} bids",
                replies.len(),
                bids.len()
            )));
        }
        replies.iter().map(|reply| placed(reply)).collect()
    }

    async fn load(
        &self,
        listing: &ListingId,
        state: &LiveState,
        remembered: &[Remembered],
    ) -> Result<(), StoreError> {
        let redis = &self.redis;
        let listing = listing.as_str();
        let mut conn = redis.connection().await?;
        let fields: Vec<(&str, String)> = vec![
            ("starts", state.starts_ms.to_string()),
            ("ends", state.ends_ms.to_string()),
            ("startPrice", state.start_price.to_string()),
            ("minIncrement", state.min_increment.to_string()),
            ("extendMs", state.extend_ms.to_string()),
            ("seller", state.seller.clone()),
            ("current", state.current.unwrap_or(-1).to_string()),
            ("leader", state.leader.clone().unwrap_or_default()),
            ("bidCount", state.bid_count.to_string()),
            ("version", state.version.to_string()),
            (
                "status",
                if state.closed { "closed" } else { "open" }.to_owned(),
            ),
            (
                "visibility",
                if state.private { "private" } else { "public" }.to_owned(),
            ),
            ("availability", state.availability.clone()),
        ];
        let mut script = LOAD_SCRIPT.key(auction_key(redis, listing));
        for (field, value) in &fields {
            script.arg(*field).arg(value);
        }
        let loaded: i64 = script.invoke_async(&mut *conn).await?;
        if loaded == 1 && !remembered.is_empty() {
            let mut pipe = deadpool_redis::redis::pipe();
            for (bidder, key, outcome) in remembered {
                pipe.cmd("SET")
                    .arg(idempotency_key(redis, listing, bidder, key))
                    .arg(outcome)
                    .arg("PX")
                    .arg(BID_KEY_KEPT.as_millis() as u64)
                    .arg("NX")
                    .ignore();
            }
            let () = pipe.query_async(&mut *conn).await?;
        }
        Ok(())
    }

    /// One DEL: the keys share the auction's slot.
    async fn forget(
        &self,
        listing: &ListingId,
        keys: &[(UserId, String)],
    ) -> Result<(), StoreError> {
        let redis = &self.redis;
        let listing = listing.as_str();
        let mut doomed = vec![auction_key(redis, listing)];
        doomed.extend(
            keys.iter()
                .map(|(bidder, key)| idempotency_key(redis, listing, bidder.as_str(), key)),
        );
        let mut conn = redis.connection().await?;
        let _: i64 = deadpool_redis::redis::cmd("DEL")
            .arg(doomed)
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }

    async fn begin_close(
        &self,
        listing: &ListingId,
        now_ms: i64,
    ) -> Result<CloseCheck, StoreError> {
        let redis = &self.redis;
        let mut conn = redis.connection().await?;
        let reply: Vec<String> = BEGIN_CLOSE_SCRIPT
            .key(auction_key(redis, listing.as_str()))
            .arg(now_ms)
            .invoke_async(&mut *conn)
            .await?;
        match reply.as_slice() {
            [missing] if missing == "missing" => Ok(CloseCheck::Missing),
            [kind, _] if kind == "not_yet" => Ok(CloseCheck::NotYet),
            [kind, version] if kind == "closing" => Ok(CloseCheck::Closing {
                version: version.parse().unwrap_or(0),
            }),
            other => Err(StoreError::internal(format!(
                "close script answered {other:?}"
            ))),
        }
    }

    async fn mark_closed(&self, listing: &ListingId) -> Result<(), StoreError> {
        let redis = &self.redis;
        let mut conn = redis.connection().await?;
        let _: i64 = deadpool_redis::redis::cmd("HSET")
            .arg(auction_key(redis, listing.as_str()))
            .arg("status")
            .arg("closed")
            .query_async(&mut *conn)
            .await?;
        Ok(())
    }
}

/// What the bid script answered for one bid.
fn placed(reply: &[String]) -> Result<Placed, StoreError> {
    match reply {
        [missing] if missing == "missing" => Ok(Placed::Missing),
        [private] if private == "private" => Ok(Placed::Private),
        [limited, left] if limited == "rate_limited" => Ok(Placed::RateLimited {
            retry_after_ms: left.parse::<i64>().unwrap_or(1).max(1),
        }),
        [kind, json] => {
            let outcome: Outcome = serde_json::from_str(json)
                .map_err(|err| StoreError::internal_by(format!("bid outcome {json}"), err))?;
            Ok(if kind == "repeat" {
                Placed::Repeat(outcome)
            } else {
                Placed::Decided(outcome)
            })
        }
        other => Err(StoreError::internal(format!(
            "bid script answered {other:?}"
        ))),
    }
}

/// The bid script, hashed once: `Script::new` runs SHA-1 over the text,
/// which done on every bid was 1.5% of souk's CPU (perf, auction scenario).
static PLACE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PLACE));
static LOAD_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LOAD));
static BEGIN_CLOSE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(BEGIN_CLOSE));

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_auctions_keys_share_its_slot() {
        let redis = crate::broker::redis::unreached();
        assert_eq!(auction_key(&redis, "a1"), "souk:auction:{a1}");
        assert_eq!(rate_key(&redis, "a1", "u1"), "souk:auction:{a1}:rate:u1");
        assert_eq!(
            idempotency_key(&redis, "a1", "u1", "k"),
            "souk:auction:{a1}:idem:u1:k"
        );
    }
}
