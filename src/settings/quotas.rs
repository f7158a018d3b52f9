//! What one user or socket may ask of the node once connected: rooms,
//! replay, rates of client writes and reads, Postgres time (issue 12).

use std::collections::HashMap;
use std::time::Duration;

use super::{millis, number, SettingsError};

/// A token bucket's shape, for every bucket of souk's (`limits::TokenBucket`):
/// `per_second` tokens come back each second, up to `burst` held at once.
/// A burst of 0 turns the limit off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// Whether the limit applies at all.
    pub fn is_on(&self) -> bool {
        self.burst > 0.0
    }
}

/// Per-user rates of client events, one bucket per kind (`SOUK_RATE_<KIND>`
/// and `SOUK_RATE_<KIND>_BURST`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// `message:send`.
    pub messages: Rate,
    /// `typing:start`, `typing:stop`.
    pub typing: Rate,
    /// Joins: `listing:watch`, `booking:join`, `presence:watch` (each id),
    /// and their leaves.
    pub rooms: Rate,
    /// `listing:reserve`.
    pub reservations: Rate,
    /// `booking:transition`.
    pub transitions: Rate,
    /// `read:mark`.
    pub reads: Rate,
    /// `message:history`.
    pub history: Rate,
    /// `bid:place`, on an auction or not (accepted bids are also held to
    /// the contract's 5 a second by the bid script).
    pub bids: Rate,
    /// The user reads over HTTP (§8a): every request with a user token.
    pub pages: Rate,
}

/// Per-user and per-socket quotas.
#[derive(Debug, Clone)]
pub struct QuotaSettings {
    /// `SOUK_MAX_ROOMS_PER_SOCKET`: rooms one socket may be in.
    pub max_rooms_per_socket: usize,
    /// `SOUK_MAX_REPLAY_BYTES`: the most bytes a recovery replays; past it
    /// the socket starts fresh. Unset: see [`QuotaSettings::max_replay_bytes`].
    pub replay_bytes: Option<usize>,
    /// Per-user event rates.
    pub rates: Rates,
    /// `SOUK_DB_STATEMENT_TIMEOUT_MS`: Postgres's `statement_timeout` on
    /// every pooled connection.
    pub db_statement_timeout: Duration,
    /// `SOUK_DB_WRITER_POOL_SIZE`: connections of each writer's own pool
    /// (messages, bids), which reads cannot take.
    pub db_writer_pool_size: u32,
}

const fn rate(per_second: f64, burst: f64) -> Rate {
    Rate { per_second, burst }
}

const DEFAULT_RATES: Rates = Rates {
    messages: rate(10.0, 50.0),
    typing: rate(20.0, 40.0),
    rooms: rate(20.0, 200.0),
    reservations: rate(5.0, 20.0),
    transitions: rate(5.0, 20.0),
    reads: rate(20.0, 50.0),
    history: rate(10.0, 30.0),
    bids: rate(20.0, 40.0),
    pages: rate(20.0, 60.0),
};

impl QuotaSettings {
    /// The replay bound with an outbound bound of `max_outbound`: as set,
    /// else half of it (replayed packets count against it, and live events
    /// arrive behind them).
    pub fn max_replay_bytes(&self, max_outbound: usize) -> usize {
        self.replay_bytes.unwrap_or(max_outbound / 2)
    }

    pub(super) fn from_values(values: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let d = DEFAULT_RATES;
        Ok(QuotaSettings {
            max_rooms_per_socket: at_least_one(number(values, "SOUK_MAX_ROOMS_PER_SOCKET", 500)?)?,
            replay_bytes: match values
                .get("SOUK_MAX_REPLAY_BYTES")
                .filter(|v| !v.is_empty())
            {
                None => None,
                Some(_) => Some(number(values, "SOUK_MAX_REPLAY_BYTES", 0)?),
            },
            rates: Rates {
                messages: rate_of(
                    values,
                    "SOUK_RATE_MESSAGES",
                    "SOUK_RATE_MESSAGES_BURST",
                    d.messages,
                )?,
                typing: rate_of(
                    values,
                    "SOUK_RATE_TYPING",
                    "SOUK_RATE_TYPING_BURST",
                    d.typing,
                )?,
                rooms: rate_of(values, "SOUK_RATE_ROOMS", "SOUK_RATE_ROOMS_BURST", d.rooms)?,
                reservations: rate_of(
                    values,
                    "SOUK_RATE_RESERVATIONS",
                    "SOUK_RATE_RESERVATIONS_BURST",
                    d.reservations,
                )?,
                transitions: rate_of(
                    values,
                    "SOUK_RATE_TRANSITIONS",
                    "SOUK_RATE_TRANSITIONS_BURST",
                    d.transitions,
                )?,
                reads: rate_of(values, "SOUK_RATE_READS", "SOUK_RATE_READS_BURST", d.reads)?,
                history: rate_of(
                    values,
                    "SOUK_RATE_HISTORY",
                    "SOUK_RATE_HISTORY_BURST",
                    d.history,
                )?,
                bids: rate_of(values, "SOUK_RATE_BIDS", "SOUK_RATE_BIDS_BURST", d.bids)?,
                pages: rate_of(values, "SOUK_RATE_PAGES", "SOUK_RATE_PAGES_BURST", d.pages)?,
            },
            db_statement_timeout: millis(values, "SOUK_DB_STATEMENT_TIMEOUT_MS", 5_000)?,
            db_writer_pool_size: number(values, "SOUK_DB_WRITER_POOL_SIZE", 1u32)?.max(1),
        })
    }
}

fn at_least_one(n: usize) -> Result<usize, SettingsError> {
    if n == 0 {
        return Err(SettingsError::Invalid {
            name: "SOUK_MAX_ROOMS_PER_SOCKET",
            value: "0".into(),
            reason: "must be at least 1",
        });
    }
    Ok(n)
}

/// A rate from its per-second setting and its burst setting. A burst below
/// one event would refuse everything, so it is at least one.
fn rate_of(
    values: &HashMap<String, String>,
    per_second: &'static str,
    burst: &'static str,
    default: Rate,
) -> Result<Rate, SettingsError> {
    let per: u32 = number(values, per_second, default.per_second as u32)?;
    if per == 0 {
        return Err(SettingsError::Invalid {
            name: per_second,
            value: "0".into(),
            reason: "must be at least 1 a second",
        });
    }
    let burst: u32 = number(values, burst, default.burst as u32)?;
    Ok(Rate {
        per_second: f64::from(per),
        burst: f64::from(burst.max(1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_are_the_documented_ones() -> Result<(), SettingsError> {
        let q = QuotaSettings::from_values(&values(&[]))?;
        assert_eq!(q.max_rooms_per_socket, 500);
        assert_eq!(q.max_replay_bytes(4_000_000), 2_000_000);
        assert_eq!(q.rates.messages, rate(10.0, 50.0));
        assert_eq!(q.rates.rooms, rate(20.0, 200.0));
        assert_eq!(q.rates.bids, rate(20.0, 40.0));
        assert_eq!(q.db_statement_timeout, Duration::from_millis(5_000));
        assert_eq!(q.db_writer_pool_size, 1);
        Ok(())
    }

    #[test]
    fn replay_follows_the_outbound_bound_unless_set() -> Result<(), SettingsError> {
        let q = QuotaSettings::from_values(&values(&[]))?;
        assert_eq!(q.max_replay_bytes(1000), 500);
        let q = QuotaSettings::from_values(&values(&[("SOUK_MAX_REPLAY_BYTES", "10")]))?;
        assert_eq!(q.max_replay_bytes(1000), 10);
        Ok(())
    }

    #[test]
    fn rates_are_read_and_zero_is_refused() -> Result<(), SettingsError> {
        let q = QuotaSettings::from_values(&values(&[
            ("SOUK_RATE_MESSAGES", "1000"),
            ("SOUK_RATE_MESSAGES_BURST", "0"),
        ]))?;
        assert_eq!(q.rates.messages, rate(1000.0, 1.0));
        for bad in [
            ("SOUK_RATE_TYPING", "0"),
            ("SOUK_RATE_ROOMS", "fast"),
            ("SOUK_MAX_ROOMS_PER_SOCKET", "0"),
            ("SOUK_DB_STATEMENT_TIMEOUT_MS", "0"),
        ] {
            assert!(
                matches!(
                    QuotaSettings::from_values(&values(&[bad])),
                    Err(SettingsError::Invalid { .. })
                ),
                "{bad:?}"
            );
        }
        Ok(())
    }
}
