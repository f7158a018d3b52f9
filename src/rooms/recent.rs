//! The emission ids a connection delivered last, to drop the other copies
//! of an event sent to several rooms it is in (kept in its [`Mailslot`]).
//!
//! [`Mailslot`]: super::mailslot::Mailslot

use std::collections::VecDeque;

/// How many recent emissions a connection remembers.
pub(super) const RECENT_EMISSIONS: usize = 32;

/// The latest emissions delivered, oldest first. Allocates nothing until
/// the first delivery: an idle connection keeps none (issue 13).
#[derive(Default)]
pub(super) struct Recent {
    ids: VecDeque<u64>,
}

impl Recent {
    /// Notes a delivered emission, forgetting the oldest past the bound.
    pub(super) fn remember(&mut self, emission: u64) {
        if self.ids.len() == RECENT_EMISSIONS {
            self.ids.pop_front();
        }
        self.ids.push_back(emission);
    }

    pub(super) fn contains(&self, emission: u64) -> bool {
        self.ids.contains(&emission)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_connection_keeps_no_history() {
        assert_eq!(Recent::default().ids.capacity(), 0);
    }

    #[test]
    fn remembers_the_latest_emissions_only() {
        let mut recent = Recent::default();
        for emission in 0..RECENT_EMISSIONS as u64 + 2 {
            recent.remember(emission);
        }
        assert!(!recent.contains(0));
        assert!(!recent.contains(1));
        assert!(recent.contains(2));
        assert!(recent.contains(RECENT_EMISSIONS as u64 + 1));
        assert_eq!(recent.ids.len(), RECENT_EMISSIONS);
    }
}
