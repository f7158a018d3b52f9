//! What one client may cost before its sessions do anything: token buckets
//! for opens per address and token checks per socket, and the count of
//! sessions that have not CONNECTed yet (issue 12).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::RequestHead;
use actix_web::rt::net::TcpStream;

use crate::error::Failure;
use crate::limits::TokenBucket;
use crate::settings::Rate;

/// Addresses whose open buckets a node remembers at most. Past it, buckets
/// that have refilled are forgotten (they are the same as new ones).
const MAX_TRACKED_ADDRESSES: usize = 65_536;

/// How long to tell a refused client to wait, in whole milliseconds.
pub fn retry_after_ms(wait: Duration) -> u64 {
    u64::try_from(wait.as_millis())
        .unwrap_or(u64::MAX)
        .clamp(1, 3_600_000)
}

/// A `rate_limited` refusal that says how long to wait.
pub fn rate_limited(message: &str, wait: Duration) -> Failure {
    crate::limits::rate_limited(message, retry_after_ms(wait))
}

/// Open buckets by client address, bounded in size.
#[derive(Default)]
pub struct OpenLimiter {
    buckets: Mutex<HashMap<IpAddr, TokenBucket>>,
}

impl OpenLimiter {
    /// Takes an open for `addr`; how long to wait when it has none left.
    pub fn take(&self, addr: IpAddr, rate: Rate) -> Result<(), Duration> {
        if !rate.is_on() {
            return Ok(());
        }
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(()); // a panic elsewhere: do not lock every client out
        };
        if buckets.len() >= MAX_TRACKED_ADDRESSES && !buckets.contains_key(&addr) {
            buckets.retain(|_, bucket| !bucket.is_full(rate, now));
            if buckets.len() >= MAX_TRACKED_ADDRESSES {
                // Every tracked address is busy: forget them all rather
                // than grow, and say so.
                log::warn!(
                    "tracking opens of {MAX_TRACKED_ADDRESSES} busy addresses: forgetting them"
                );
                buckets.clear();
            }
        }
        buckets
            .entry(addr)
            .or_insert_with(|| TokenBucket::full(rate, now))
            .take(rate, 1.0, now)
    }

    /// How many addresses are tracked.
    #[cfg(test)]
    pub fn tracked(&self) -> usize {
        self.buckets.lock().map_or(0, |b| b.len())
    }
}

/// The header a trusted proxy names the client in.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address as the open limit counts it: the peer, or when the
/// peer is a trusted proxy the last address before the trusted ones in
/// `X-Forwarded-For`. IPv6 clients are counted by their /64, which one
/// host usually holds whole.
pub fn client_addr(head: &RequestHead, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = head.peer_addr?.ip();
    let mut client = peer;
    if trusted.contains(&peer) {
        let forwarded = head
            .headers()
            .get_all(FORWARDED_FOR)
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in forwarded.iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !trusted.contains(&ip) {
                break;
            }
        }
    }
    Some(counted(client))
}

fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = !0u128 << 64;
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        },
    }
}

/// Sets `TCP_USER_TIMEOUT` on an accepted connection: data written to a
/// client that stopped reading (a zero window) or that vanished may stay
/// unacknowledged that long before the kernel drops the connection: the
/// WebSocket's task drops a blocked write when its session closes, and the
/// kernel's bound covers a client that vanished with nothing more queued.
pub fn on_accept(stream: &TcpStream, user_timeout: Option<Duration>) {
    let Some(timeout) = user_timeout else {
        return;
    };
    if let Err(err) = socket2::SockRef::from(stream).set_tcp_user_timeout(Some(timeout)) {
        log::warn!("cannot set TCP_USER_TIMEOUT on a new connection: {err}");
    }
}

/// Sessions that have not CONNECTed yet, with their own cap.
#[derive(Default)]
pub struct Handshakes {
    count: Arc<AtomicUsize>,
}

/// A place among the handshakes, given back when dropped.
pub struct HandshakeSlot(Arc<AtomicUsize>);

impl Handshakes {
    /// A place, unless `cap` handshakes are in flight.
    pub fn enter(&self, cap: usize) -> Option<HandshakeSlot> {
        self.count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < cap).then_some(n + 1)
            })
            .ok()
            .map(|_| HandshakeSlot(self.count.clone()))
    }

    /// How many are in flight.
    pub fn in_flight(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_second: 2.0,
        burst: 3.0,
    };

    #[test]
    fn addresses_have_their_own_buckets_and_ipv6_counts_by_slash_64() {
        let limiter = OpenLimiter::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        for _ in 0..3 {
            assert!(limiter.take(a, RATE).is_ok());
        }
        assert!(limiter.take(a, RATE).is_err());
        assert!(limiter.take(b, RATE).is_ok());
        assert_eq!(limiter.tracked(), 2);
        let one: IpAddr = IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, 1));
        let other: IpAddr = IpAddr::from(Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 9, 9, 9, 9));
        assert_eq!(counted(one), counted(other));
        let mapped = IpAddr::from(Ipv6Addr::from([0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001]));
        assert_eq!(counted(mapped), a);
    }

    #[test]
    fn handshake_slots_are_capped_and_given_back() {
        let handshakes = Handshakes::default();
        let first = handshakes.enter(2);
        let second = handshakes.enter(2);
        assert!(first.is_some() && second.is_some());
        assert!(handshakes.enter(2).is_none());
        drop(first);
        assert_eq!(handshakes.in_flight(), 1);
        assert!(handshakes.enter(2).is_some());
        assert_eq!(handshakes.in_flight(), 1);
    }
}
