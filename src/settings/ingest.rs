//! The backend's queue (§8b, issue 16): whether this node reads it, how
//! many entries at a time, and how a reader that died is replaced.

use std::collections::HashMap;
use std::time::Duration;

use super::{millis, number, parse_bool, SettingsError};

/// Queue reader settings.
#[derive(Debug, Clone)]
pub struct IngestSettings {
    /// `SOUK_INGEST`: whether this node takes part in reading the queue
    /// (on by default; one node at a time reads, under a lease).
    pub enabled: bool,
    /// `SOUK_INGEST_BATCH`: entries read and published at a time.
    pub batch: usize,
    /// `SOUK_INGEST_POLL_MS`: how long the reader waits before looking
    /// again when the queue was empty.
    pub poll: Duration,
    /// `SOUK_INGEST_LEASE_MS`: how long the reading node's lease lasts
    /// without renewal; past that (the node died), another node reads.
    pub lease: Duration,
    /// `SOUK_INGEST_CLAIM_IDLE_MS`: how long entries a reader took and did
    /// not acknowledge stay its own; past that, the next reader takes
    /// them over (`XAUTOCLAIM`) before reading anything newer.
    pub claim_idle: Duration,
}

const BATCH: usize = 100;
const POLL_MS: u64 = 50;
const LEASE_MS: u64 = 5_000;
const CLAIM_IDLE_MS: u64 = 10_000;

impl Default for IngestSettings {
    fn default() -> Self {
        IngestSettings {
            enabled: true,
            batch: BATCH,
            poll: Duration::from_millis(POLL_MS),
            lease: Duration::from_millis(LEASE_MS),
            claim_idle: Duration::from_millis(CLAIM_IDLE_MS),
        }
    }
}

impl IngestSettings {
    pub(super) fn from_values(values: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let enabled = match values.get("SOUK_INGEST").filter(|v| !v.is_empty()) {
            Some(value) => parse_bool("SOUK_INGEST", value)?,
            None => true,
        };
        let batch: usize = number(values, "SOUK_INGEST_BATCH", BATCH)?;
        if !(1..=10_000).contains(&batch) {
            return Err(SettingsError::Invalid {
                name: "SOUK_INGEST_BATCH",
                value: batch.to_string(),
                reason: "must be 1 to 10000",
            });
        }
        Ok(IngestSettings {
            enabled,
            batch,
            poll: millis(values, "SOUK_INGEST_POLL_MS", POLL_MS)?,
            lease: millis(values, "SOUK_INGEST_LEASE_MS", LEASE_MS)?,
            claim_idle: millis(values, "SOUK_INGEST_CLAIM_IDLE_MS", CLAIM_IDLE_MS)?,
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
    fn defaults_read_a_hundred_under_a_five_second_lease() -> Result<(), SettingsError> {
        let ingest = IngestSettings::from_values(&values([]))?;
        assert!(ingest.enabled);
        assert_eq!(ingest.batch, 100);
        assert_eq!(ingest.poll, Duration::from_millis(50));
        assert_eq!(ingest.lease, Duration::from_secs(5));
        assert_eq!(ingest.claim_idle, Duration::from_secs(10));
        Ok(())
    }

    #[test]
    fn every_setting_can_be_set_and_bad_values_are_refused() -> Result<(), SettingsError> {
        let ingest = IngestSettings::from_values(&values([
            ("SOUK_INGEST", "off"),
            ("SOUK_INGEST_BATCH", "7"),
            ("SOUK_INGEST_POLL_MS", "10"),
            ("SOUK_INGEST_LEASE_MS", "900"),
            ("SOUK_INGEST_CLAIM_IDLE_MS", "800"),
        ]))?;
        assert!(!ingest.enabled);
        assert_eq!(ingest.batch, 7);
        assert_eq!(ingest.poll, Duration::from_millis(10));
        assert_eq!(ingest.lease, Duration::from_millis(900));
        assert_eq!(ingest.claim_idle, Duration::from_millis(800));
        for (name, bad) in [
            ("SOUK_INGEST", "maybe"),
            ("SOUK_INGEST_BATCH", "0"),
            ("SOUK_INGEST_BATCH", "lots"),
            ("SOUK_INGEST_LEASE_MS", "0"),
            ("SOUK_INGEST_CLAIM_IDLE_MS", "soon"),
        ] {
            assert!(IngestSettings::from_values(&values([(name, bad)])).is_err());
        }
        Ok(())
    }
}
