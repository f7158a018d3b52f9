//! What one user or socket may ask of the node once connected: rooms,
//! replay, rates of client writes and reads, Postgres time (issue 12).

use std::collections::HashMap;

use super::SettingsError;

/// Per-user and per-socket quotas.
#[derive(Debug, Clone, Default)]
pub struct QuotaSettings {}

impl QuotaSettings {
    pub(super) fn from_values(_values: &HashMap<String, String>) -> Result<Self, SettingsError> {
        Ok(QuotaSettings {})
    }
}
