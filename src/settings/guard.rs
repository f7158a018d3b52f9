//! Bounds on what one connection may cost the node before and while it
//! speaks Socket.IO: handshakes, opens per address, polling packets, token
//! checks, dead peers (issue 12).

use std::collections::HashMap;

use super::SettingsError;

/// Transport bounds.
#[derive(Debug, Clone, Default)]
pub struct GuardSettings {}

impl GuardSettings {
    pub(super) fn from_values(_values: &HashMap<String, String>) -> Result<Self, SettingsError> {
        Ok(GuardSettings {})
    }
}
