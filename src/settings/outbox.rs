//! The outbox that carries notices a commit promised (issue 12).

use std::collections::HashMap;

use super::SettingsError;

/// Outbox relay settings.
#[derive(Debug, Clone, Default)]
pub struct OutboxSettings {}

impl OutboxSettings {
    pub(super) fn from_values(_values: &HashMap<String, String>) -> Result<Self, SettingsError> {
        Ok(OutboxSettings {})
    }
}
