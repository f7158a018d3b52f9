//! Bounds on what one connection may cost the node before and while it
//! speaks Socket.IO: handshakes, opens per address, polling packets, token
//! checks, dead peers (issue 12).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use super::{number, Rate, SettingsError};

/// Transport bounds.
#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// `SOUK_MAX_HANDSHAKES`: sessions a node holds that have not CONNECTed
    /// yet; 0 (the default) means a quarter of the connection cap.
    pub max_handshakes: usize,
    /// `SOUK_OPENS_PER_ADDR_BURST` / `SOUK_OPENS_PER_ADDR_PER_SEC`: new
    /// Engine.IO sessions one client address may open.
    pub opens_per_addr: Rate,
    /// `SOUK_TRUSTED_PROXIES`: comma-separated IPs whose `X-Forwarded-For`
    /// names the client; empty: the peer address is the client.
    pub trusted_proxies: Vec<IpAddr>,
    /// `SOUK_MAX_POST_PACKETS`: packets one long-polling POST may carry.
    pub max_post_packets: usize,
    /// `SOUK_TOKEN_CHECKS_BURST` / `SOUK_TOKEN_CHECKS_PER_SEC`: CONNECT
    /// attempts and `auth:refresh` calls one socket may make.
    pub token_checks: Rate,
    /// `SOUK_TCP_USER_TIMEOUT_MS`: how long data written to a client may
    /// stay unacknowledged (a client that stopped reading) before the kernel
    /// drops the connection; 0 leaves the system default (none).
    pub tcp_user_timeout: Option<Duration>,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            max_handshakes: 0,
            opens_per_addr: Rate {
                per_second: 10.0,
                burst: 100.0,
            },
            trusted_proxies: Vec::new(),
            max_post_packets: 1_000,
            token_checks: Rate {
                per_second: 1.0,
                burst: 5.0,
            },
            tcp_user_timeout: Some(Duration::from_millis(30_000)),
        }
    }
}

impl GuardSettings {
    pub(super) fn from_values(values: &HashMap<String, String>) -> Result<Self, SettingsError> {
        let default = GuardSettings::default();
        // Whole numbers, as documented; a burst of 0 turns the limit off.
        let rate = |burst, per_sec, default: Rate| -> Result<Rate, SettingsError> {
            let burst: u32 = number(values, burst, default.burst as u32)?;
            let per_sec: u32 = number(values, per_sec, default.per_second as u32)?;
            Ok(Rate {
                per_second: f64::from(per_sec),
                burst: f64::from(burst),
            })
        };
        let tcp_user_timeout: u64 = number(values, "SOUK_TCP_USER_TIMEOUT_MS", 30_000)?;
        Ok(GuardSettings {
            max_handshakes: number(values, "SOUK_MAX_HANDSHAKES", default.max_handshakes)?,
            opens_per_addr: rate(
                "SOUK_OPENS_PER_ADDR_BURST",
                "SOUK_OPENS_PER_ADDR_PER_SEC",
                default.opens_per_addr,
            )?,
            trusted_proxies: trusted_proxies(values)?,
            max_post_packets: number(values, "SOUK_MAX_POST_PACKETS", default.max_post_packets)?,
            token_checks: rate(
                "SOUK_TOKEN_CHECKS_BURST",
                "SOUK_TOKEN_CHECKS_PER_SEC",
                default.token_checks,
            )?,
            tcp_user_timeout: (tcp_user_timeout > 0)
                .then(|| Duration::from_millis(tcp_user_timeout)),
        })
    }

    /// The handshake cap for a node that holds at most `max_connections`.
    pub fn handshake_cap(&self, max_connections: usize) -> usize {
        match self.max_handshakes {
            0 => (max_connections / 4).max(1),
            n => n,
        }
    }
}

fn trusted_proxies(values: &HashMap<String, String>) -> Result<Vec<IpAddr>, SettingsError> {
    let Some(list) = values.get("SOUK_TRUSTED_PROXIES") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .filter(|ip| !ip.is_empty())
        .map(|ip| {
            ip.parse().map_err(|_| SettingsError::Invalid {
                name: "SOUK_TRUSTED_PROXIES",
                value: list.clone(),
                reason: "expected comma-separated IP addresses",
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let owned = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        owned.collect()
    }

    #[test]
    fn defaults_bound_every_client() -> Result<(), SettingsError> {
        let guard = GuardSettings::from_values(&HashMap::new())?;
        assert_eq!(guard.handshake_cap(1000), 250);
        assert_eq!(guard.handshake_cap(2), 1);
        assert_eq!(
            guard.opens_per_addr,
            Rate {
                per_second: 10.0,
                burst: 100.0
            }
        );
        assert!(guard.trusted_proxies.is_empty());
        assert_eq!(guard.max_post_packets, 1000);
        assert_eq!(
            guard.token_checks,
            Rate {
                per_second: 1.0,
                burst: 5.0
            }
        );
        assert_eq!(guard.tcp_user_timeout, Some(Duration::from_secs(30)));
        Ok(())
    }

    #[test]
    fn settings_are_read_and_zero_turns_limits_off() -> Result<(), SettingsError> {
        let guard = GuardSettings::from_values(&values(&[
            ("SOUK_MAX_HANDSHAKES", "7"),
            ("SOUK_OPENS_PER_ADDR_BURST", "0"),
            ("SOUK_TRUSTED_PROXIES", "127.0.0.1, ::1"),
            ("SOUK_TOKEN_CHECKS_BURST", "2"),
            ("SOUK_TOKEN_CHECKS_PER_SEC", "3"),
            ("SOUK_TCP_USER_TIMEOUT_MS", "0"),
        ]))?;
        assert_eq!(guard.handshake_cap(1000), 7);
        assert!(!guard.opens_per_addr.is_on());
        assert_eq!(
            guard.trusted_proxies,
            [
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
            ]
        );
        assert_eq!(
            guard.token_checks,
            Rate {
                per_second: 3.0,
                burst: 2.0
            }
        );
        assert_eq!(guard.tcp_user_timeout, None);
        Ok(())
    }

    #[test]
    fn bad_values_are_refused() {
        for (name, value) in [
            ("SOUK_TRUSTED_PROXIES", "10.0.0.1,nginx"),
            ("SOUK_MAX_POST_PACKETS", "many"),
            ("SOUK_TOKEN_CHECKS_BURST", "-1"),
        ] {
            assert!(
                matches!(
                    GuardSettings::from_values(&values(&[(name, value)])),
                    Err(SettingsError::Invalid { .. })
                ),
                "{name}={value}"
            );
        }
    }
}
