//! The outbox that carries notices a commit promised (issue 12): how often
//! each node's relay looks for notices to publish, and how long a relay that
//! took some has them to itself before another node may take them over.

use std::collections::HashMap;
use std::time::Duration;

use super::{millis, SettingsError};

/// Outbox relay settings.
#[derive(Debug, Clone)]
pub struct OutboxSettings {
    /// `SOUK_OUTBOX_POLL_MS`: how often a node's relay looks for notices
    /// not published yet (a closing node publishes its own at once).
    pub poll: Duration,
    /// `SOUK_OUTBOX_LEASE_MS`: how long notices a relay took are its own;
    /// past that (the node died), another node's relay publishes them.
    pub lease: Duration,
}

const POLL_MS: u64 = 1_000;
const LEASE_MS: u64 = 10_000;

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            poll: Duration::from_millis(POLL_MS),
            lease: Duration::from_millis(LEASE_MS),
        }
    }
}

impl OutboxSettings {
    pub(super) fn from_values(values: &HashMap<String, String>) -> Result<Self, SettingsError> {
        Ok(OutboxSettings {
            poll: millis(values, "SOUK_OUTBOX_POLL_MS", POLL_MS)?,
            lease: millis(values, "SOUK_OUTBOX_LEASE_MS", LEASE_MS)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values<const N: usize>(pairs: [(&str, &str); N]) -> HashMap<String, String> {
        HashMap::from(pairs.map(|(k, v)| (k.to_owned(), v.to_owned())))
    }

    #[test]
    fn defaults_poll_every_second_and_lease_for_ten() -> Result<(), SettingsError> {
        let outbox = OutboxSettings::from_values(&values([]))?;
        assert_eq!(outbox.poll, Duration::from_secs(1));
        assert_eq!(outbox.lease, Duration::from_secs(10));
        let default = OutboxSettings::default();
        assert_eq!((default.poll, default.lease), (outbox.poll, outbox.lease));
        Ok(())
    }

    #[test]
    fn both_can_be_set_and_neither_may_be_zero() -> Result<(), SettingsError> {
        let outbox = OutboxSettings::from_values(&values([
            ("SOUK_OUTBOX_POLL_MS", "200"),
            ("SOUK_OUTBOX_LEASE_MS", "1500"),
        ]))?;
        assert_eq!(outbox.poll, Duration::from_millis(200));
        assert_eq!(outbox.lease, Duration::from_millis(1500));
        for name in ["SOUK_OUTBOX_POLL_MS", "SOUK_OUTBOX_LEASE_MS"] {
            assert!(OutboxSettings::from_values(&values([(name, "0")])).is_err());
            assert!(OutboxSettings::from_values(&values([(name, "soon")])).is_err());
        }
        Ok(())
    }
}
