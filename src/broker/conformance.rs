//! The brokers' conformance suite: each test checks one rule written on the
//! traits, and every test runs on the memory broker and on Redis (the test
//! Redis: `SOUK_TEST_REDIS_URL`, else redis://127.0.0.1:6379, under a
//! prefix of its own), so the two cannot drift apart.
//!
//! Times are real and short (a few hundred ms): Redis keeps its own clock,
//! so a rule about expiry is only checked by letting time pass.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::Utc;
use serde_json::json;
use tokio::sync::mpsc;

use super::memory::MemoryBroker;
use super::redis::{Redis, RedisBroker};
use super::*;
use crate::ids::RoomKey;
use crate::ids::{BookingId, ListingId, UserId};

/// Everything a broker is.
pub trait Conformant: Events + Presence + Throttles + Records + Auctions + Nodes {}
impl<B: Events + Presence + Throttles + Records + Auctions + Nodes> Conformant for B {}

fn memory() -> Broker {
    Broker::Memory(MemoryBroker::new())
}

pub(crate) fn redis() -> Broker {
    let url = std::env::var("SOUK_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let prefix = format!("souk-conformance-{:016x}:", rand::random::<u64>());
    let metrics = crate::metrics::Metrics::new().unwrap_or_else(|err| panic!("metrics: {err}"));
    let redis = Redis::new(&url, &prefix, 8, metrics)
        .unwrap_or_else(|err| panic!("a Redis handle on {url}: {err}"));
    let broker = RedisBroker::new(redis, &url, "conformance")
        .unwrap_or_else(|err| panic!("a Redis broker on {url}: {err}"));
    Broker::Redis(Arc::new(broker))
}

/// Declares each test once per broker: `memory::name` and `redis::name`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name(&super::memory()).await;
                }
            )*
        }
        mod redis {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name(&super::redis()).await;
                }
            )*
        }
    };
}

on_both!(
    offsets_increase_over_every_room_in_publish_order,
    a_follower_gets_its_rooms_events_in_order_until_it_unfollows,
    a_follower_cut_off_gets_what_it_missed_then_live_events,
    since_answers_the_events_after_an_offset,
    since_past_a_trimmed_log_answers_trimmed,
    a_log_past_its_ttl_is_gone_whole,
    presence_comes_online_once_and_one_sweep_reports_its_expiry,
    a_burst_of_users_comes_online_once_each_in_the_order_given,
    a_sweep_before_the_ttl_reports_nobody,
    a_throttle_answers_true_once_per_window,
    one_of_concurrent_throttle_calls_wins,
    a_record_is_saved_claimed_and_released_by_the_rules,
    a_record_is_gone_after_its_window,
    a_claim_holds_for_ten_seconds_at_most,
    of_concurrent_bids_at_one_amount_one_wins,
    bids_are_decided_as_the_bid_script_decides,
    the_rate_window_counts_bids_before_anything_else,
    a_key_answers_its_first_outcome_again,
    a_private_auction_tells_strangers_nothing,
    a_closing_auction_takes_no_bid,
    load_keeps_a_state_already_there_and_forget_drops_it,
    a_batch_is_decided_in_order_each_bid_on_the_state_before_it,
    a_batch_counts_each_bid_against_its_bidders_rate_window,
    a_key_repeated_inside_a_batch_answers_its_first_outcome,
    nodes_are_live_until_they_leave_or_expire,
);

fn room(name: &str) -> RoomKey {
    RoomKey::parse(name).unwrap_or_else(|| panic!("room {name}"))
}

fn user(name: &str) -> UserId {
    UserId::parse(name).unwrap_or_else(|| panic!("user {name}"))
}

fn listing(name: &str) -> ListingId {
    ListingId::parse(name).unwrap_or_else(|| panic!("listing {name}"))
}

fn publication(room_name: &str, n: usize) -> Publication {
    Publication {
        room: room(room_name),
        emission: n as u64,
        head: format!(r#"42["ev",{{"n":{n}}}"#),
        except: None,
        version: None,
    }
}

const LIMITS: LogLimits = LogLimits {
    ttl: Duration::from_secs(60),
    max_len: 100,
};

async fn publish<B: Conformant>(broker: &B, batch: &[Publication], limits: LogLimits) -> Vec<u64> {
    broker
        .publish(batch, limits)
        .await
        .into_iter()
        .map(|offset| offset.unwrap_or_else(|err| panic!("publish: {err}")))
        .collect()
}

async fn since<B: Conformant>(broker: &B, room_name: &str, after: u64) -> History {
    broker
        .since(&room(room_name), after)
        .await
        .unwrap_or_else(|err| panic!("since: {err}"))
}

fn events(history: History) -> Vec<RoomEvent> {
    match history {
        History::Events(events) => events,
        History::Trimmed => panic!("the log says trimmed"),
    }
}

fn strictly_increasing(offsets: &[u64]) -> bool {
    offsets.windows(2).all(|pair| pair[0] < pair[1])
}

async fn offsets_increase_over_every_room_in_publish_order<B: Conformant>(broker: &B) {
    let mut first = vec![
        publication("listing:a", 0),
        publication("listing:b", 1),
        publication("listing:a", 2),
    ];
    first[1].except = Some(user("bob"));
    first[2].version = Some(7);
    let mut offsets = publish(broker, &first, LIMITS).await;
    offsets.extend(publish(broker, &[publication("booking:c", 3)], LIMITS).await);
    offsets.extend(publish(broker, &[publication("listing:b", 4)], LIMITS).await);
    assert_eq!(offsets.len(), 5);
    assert!(strictly_increasing(&offsets), "{offsets:?}");

    let a = events(since(broker, "listing:a", 0).await);
    let expected = vec![
        RoomEvent {
            room: room("listing:a"),
            offset: offsets[0],
            emission: 0,
            frame: format!(r#"42["ev",{{"n":0}},"{}-0"]"#, offsets[0]),
            except: None,
            version: None,
        },
        RoomEvent {
            room: room("listing:a"),
            offset: offsets[2],
            emission: 2,
            frame: format!(r#"42["ev",{{"n":2}},"{}-0"]"#, offsets[2]),
            except: None,
            version: Some(7),
        },
    ];
    assert_eq!(a, expected);
    let b = events(since(broker, "listing:b", 0).await);
    assert_eq!(
        b.iter().map(|e| e.offset).collect::<Vec<_>>(),
        [offsets[1], offsets[4]]
    );
    assert_eq!(b[0].except, Some(user("bob")));
}

/// Hands what a subscription delivers to a channel the test reads.
struct Collector(mpsc::UnboundedSender<Arrival>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<Arrival> for Collector {
    type Result = ();
    fn handle(&mut self, arrival: Arrival, _: &mut Context<Self>) {
        let _ = self.0.send(arrival);
    }
}

async fn next_arrival(arrivals: &mut mpsc::UnboundedReceiver<Arrival>) -> Option<Arrival> {
    tokio::time::timeout(Duration::from_secs(3), arrivals.recv())
        .await
        .ok()
        .flatten()
}

async fn follow(subscription: &Subscription, room_name: &str) {
    tokio::time::timeout(Duration::from_secs(5), subscription.follow(room(room_name)))
        .await
        .unwrap_or_else(|_| panic!("following {room_name} took too long"))
        .unwrap_or_else(|_| panic!("the subscription is gone"));
}

async fn a_follower_gets_its_rooms_events_in_order_until_it_unfollows<B: Conformant>(broker: &B) {
    let (sink, mut arrivals) = mpsc::unbounded_channel();
    let subscription = broker.subscribe(Collector(sink).start().recipient());
    follow(&subscription, "listing:a").await;

    let batch: Vec<Publication> = (0..60)
        .map(|n| publication(if n % 3 == 0 { "listing:b" } else { "listing:a" }, n))
        .collect();
    let offsets = publish(broker, &batch, LIMITS).await;
    let expected: Vec<u64> = batch
        .iter()
        .zip(&offsets)
        .filter(|(p, _)| p.room == room("listing:a"))
        .map(|(_, offset)| *offset)
        .collect();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        match next_arrival(&mut arrivals).await {
            Some(Arrival::Event(event)) => {
                assert_eq!(event.room, room("listing:a"), "an unfollowed room's event");
                got.push(event.offset);
            }
            other => panic!("after {got:?}, got {other:?}"),
        }
    }
    assert_eq!(got, expected);

    // Commands apply in order: once b is followed, a is dropped.
    subscription.unfollow(room("listing:a"));
    follow(&subscription, "listing:b").await;
    publish(
        broker,
        &[publication("listing:a", 100), publication("listing:b", 101)],
        LIMITS,
    )
    .await;
    match next_arrival(&mut arrivals).await {
        Some(Arrival::Event(event)) => assert_eq!(event.emission, 101, "{event:?}"),
        other => panic!("expected b's event, got {other:?}"),
    }
    let late = tokio::time::timeout(Duration::from_millis(200), arrivals.recv()).await;
    assert!(late.is_err(), "after unfollowing: {late:?}");
}

/// Cuts the broker's link to its followers, as a network fault does: the
/// Redis subscriber's connection (found by the name it gives itself, on
/// whichever node of a cluster it is) is killed. The memory broker has no
/// link to cut.
async fn cut_link(broker: &Broker) {
    use deadpool_redis::redis::{cmd, Client};

    let Broker::Redis(redis) = broker else {
        return;
    };
    let redis = redis.redis();
    let name = format!("name={}subscriber:", redis.prefix());
    let mut conn = redis
        .connection()
        .await
        .unwrap_or_else(|err| panic!("a Redis connection: {err}"));
    // A standalone Redis refuses CLUSTER NODES: it is the only node.
    let nodes: Vec<String> = match cmd("CLUSTER")
        .arg("NODES")
        .query_async::<String>(&mut *conn)
        .await
    {
        Ok(nodes) => nodes
            .lines()
            .filter_map(|line| line.split(' ').nth(1)?.split('@').next())
            .map(|address| format!("redis://{address}/"))
            .collect(),
        Err(_) => vec![std::env::var("SOUK_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())],
    };
    for node in nodes {
        let mut conn = Client::open(node.as_str())
            .unwrap_or_else(|err| panic!("{node}: {err}"))
            .get_multiplexed_async_connection()
            .await
            .unwrap_or_else(|err| panic!("{node}: {err}"));
        let clients: String = cmd("CLIENT")
            .arg("LIST")
            .query_async(&mut conn)
            .await
            .unwrap_or_else(|err| panic!("CLIENT LIST: {err}"));
        let found = clients
            .lines()
            .find(|line| line.contains(&name))
            .and_then(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")));
        if let Some(id) = found {
            let killed: i64 = cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query_async(&mut conn)
                .await
                .unwrap_or_else(|err| panic!("CLIENT KILL: {err}"));
            assert_eq!(killed, 1);
            return;
        }
    }
    panic!("no connection with {name}*");
}

async fn a_follower_cut_off_gets_what_it_missed_then_live_events(broker: &Broker) {
    let (sink, mut arrivals) = mpsc::unbounded_channel();
    let subscription = broker.subscribe(Collector(sink).start().recipient());
    follow(&subscription, "listing:a").await;
    let first = publish(broker, &[publication("listing:a", 0)], LIMITS).await;
    let mut expected = first.clone();
    cut_link(broker).await;
    // Published while the follower is away (it reconnects after a pause).
    for n in 1..=5 {
        expected.extend(publish(broker, &[publication("listing:a", n)], LIMITS).await);
    }
    let mut got = Vec::new();
    while got.len() < expected.len() {
        match next_arrival(&mut arrivals).await {
            Some(Arrival::Event(event)) => got.push(event.offset),
            other => panic!("after {got:?}, got {other:?}"),
        }
    }
    assert_eq!(got, expected, "each event once, in order");
    // Then live events, after what the log held.
    let live = publish(broker, &[publication("listing:a", 6)], LIMITS).await;
    match next_arrival(&mut arrivals).await {
        Some(Arrival::Event(event)) => assert_eq!(event.offset, live[0]),
        other => panic!("expected the live event, got {other:?}"),
    }
    let late = tokio::time::timeout(Duration::from_millis(200), arrivals.recv()).await;
    assert!(late.is_err(), "an event twice: {late:?}");
}

async fn since_answers_the_events_after_an_offset<B: Conformant>(broker: &B) {
    let batch: Vec<Publication> = (0..5).map(|n| publication("listing:a", n)).collect();
    let offsets = publish(broker, &batch, LIMITS).await;
    let after_second = events(since(broker, "listing:a", offsets[1]).await);
    assert_eq!(
        after_second.iter().map(|e| e.offset).collect::<Vec<_>>(),
        offsets[2..]
    );
    assert_eq!(
        events(since(broker, "listing:a", offsets[4]).await),
        Vec::new()
    );
    assert_eq!(events(since(broker, "listing:never", 0).await), Vec::new());
}

async fn since_past_a_trimmed_log_answers_trimmed<B: Conformant>(broker: &B) {
    let limits = LogLimits {
        ttl: Duration::from_secs(60),
        max_len: 10,
    };
    // Redis trims about MAXLEN (whole nodes of 100 entries): enough events
    // that the oldest go on both.
    let mut offsets = Vec::new();
    for chunk in 0..6 {
        let batch: Vec<Publication> = (0..100)
            .map(|n| publication("listing:a", chunk * 100 + n))
            .collect();
        offsets.extend(publish(broker, &batch, limits).await);
        // Events of another room between them: a room's offsets have gaps.
        publish(broker, &[publication("listing:b", 0)], limits).await;
    }
    assert_eq!(
        since(broker, "listing:a", offsets[0]).await,
        History::Trimmed
    );
    assert_eq!(since(broker, "listing:a", 0).await, History::Trimmed);
    // The last `max_len` are always kept.
    let last = events(since(broker, "listing:a", offsets[589]).await);
    assert_eq!(
        last.iter().map(|e| e.offset).collect::<Vec<_>>(),
        offsets[590..]
    );
    // A log trimmed only before the offset asked after is whole after it.
    assert_eq!(events(since(broker, "listing:b", 0).await).len(), 6);
}

async fn a_log_past_its_ttl_is_gone_whole<B: Conformant>(broker: &B) {
    let limits = LogLimits {
        ttl: Duration::from_millis(200),
        max_len: 10,
    };
    let offsets = publish(broker, &[publication("listing:a", 0)], limits).await;
    assert_eq!(events(since(broker, "listing:a", 0).await).len(), 1);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // Nothing was published in the window: nothing was missed in it.
    assert_eq!(events(since(broker, "listing:a", 0).await), Vec::new());
    let later = publish(broker, &[publication("listing:a", 1)], limits).await;
    assert!(later[0] > offsets[0]);
    let after = events(since(broker, "listing:a", 0).await);
    assert_eq!(after.iter().map(|e| e.offset).collect::<Vec<_>>(), later);
}

const PRESENCE_TTL: Duration = Duration::from_millis(300);

/// A burst of connects: more users than one refresh call takes, over
/// every bucket.
async fn a_burst_of_users_comes_online_once_each_in_the_order_given<B: Conformant>(broker: &B) {
    let users: Vec<UserId> = (0..2_000).map(|n| user(&format!("burst-{n}"))).collect();
    let ttl = Duration::from_secs(30);
    let arrived = broker
        .refresh(&users, ttl, Utc::now())
        .await
        .unwrap_or_else(|err| panic!("refresh: {err}"));
    assert_eq!(arrived, users);
    let again = broker
        .refresh(&users, ttl, Utc::now())
        .await
        .unwrap_or_else(|err| panic!("refresh: {err}"));
    assert_eq!(again, Vec::<UserId>::new());
    let states = broker
        .states(&users)
        .await
        .unwrap_or_else(|err| panic!("states: {err}"));
    assert!(states
        .iter()
        .all(|state| state.online && state.last_seen.is_some()));
}

async fn presence_comes_online_once_and_one_sweep_reports_its_expiry<B: Conformant>(broker: &B) {
    let (ana, bo) = (user("ana"), user("bo"));
    let arrived = broker
        .refresh(&[ana.clone(), bo.clone()], PRESENCE_TTL, Utc::now())
        .await
        .unwrap_or_else(|err| panic!("refresh: {err}"));
    assert_eq!(arrived, [ana.clone(), bo.clone()]);
    let seen = crate::time::rfc3339(Utc::now());
    let again = broker
        .refresh(std::slice::from_ref(&ana), PRESENCE_TTL, Utc::now())
        .await
        .unwrap_or_else(|err| panic!("refresh: {err}"));
    assert_eq!(again, Vec::<UserId>::new());
    let states = broker
        .states(&[ana.clone(), user("nobody")])
        .await
        .unwrap_or_else(|err| panic!("states: {err}"));
    assert!(states[0].online);
    assert!(states[0].last_seen.is_some());
    assert_eq!(
        states[1],
        PresenceState {
            online: false,
            last_seen: None
        }
    );

    tokio::time::sleep(PRESENCE_TTL * 2).await;
    let states = broker
        .states(std::slice::from_ref(&ana))
        .await
        .unwrap_or_else(|err| panic!("states: {err}"));
    assert!(!states[0].online);
    let kept = states[0].last_seen.clone();
    assert!(
        kept.as_deref().is_some_and(|t| t <= seen.as_str()),
        "{kept:?}"
    );

    // Two nodes sweep at once: each user is reported by one of them.
    let (first, second) = futures_util::join!(broker.sweep(Utc::now()), broker.sweep(Utc::now()));
    let mut gone: Vec<(UserId, Option<String>)> = first
        .unwrap_or_else(|err| panic!("sweep: {err}"))
        .into_iter()
        .chain(second.unwrap_or_else(|err| panic!("sweep: {err}")))
        .collect();
    gone.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(gone.len(), 2, "{gone:?}");
    assert_eq!((&gone[0].0, &gone[0].1), (&ana, &kept));
    assert_eq!(gone[1].0, bo);
    let later = broker
        .sweep(Utc::now())
        .await
        .unwrap_or_else(|err| panic!("sweep: {err}"));
    assert_eq!(later, Vec::new());

    let back = broker
        .refresh(std::slice::from_ref(&ana), PRESENCE_TTL, Utc::now())
        .await
        .unwrap_or_else(|err| panic!("refresh: {err}"));
    assert_eq!(back, [ana]);
}

async fn a_sweep_before_the_ttl_reports_nobody<B: Conformant>(broker: &B) {
    let ana = user("ana");
    let ttl = Duration::from_secs(5);
    broker
        .refresh(std::slice::from_ref(&ana), ttl, Utc::now())
        .await
        .unwrap_or_else(|err| panic!("refresh: {err}"));
    let gone = broker
        .sweep(Utc::now())
        .await
        .unwrap_or_else(|err| panic!("sweep: {err}"));
    assert_eq!(gone, Vec::new());
    let states = broker
        .states(&[ana])
        .await
        .unwrap_or_else(|err| panic!("states: {err}"));
    assert!(states[0].online);
}

fn typing(booking: &str, who: &str) -> Throttle {
    Throttle::Typing {
        booking: BookingId::parse(booking).unwrap_or_else(|| panic!("booking {booking}")),
        user: user(who),
    }
}

async fn once<B: Conformant>(broker: &B, key: &Throttle, ttl: Duration) -> bool {
    broker
        .once(key, ttl)
        .await
        .unwrap_or_else(|err| panic!("once: {err}"))
}

async fn a_throttle_answers_true_once_per_window<B: Conformant>(broker: &B) {
    let ttl = Duration::from_millis(300);
    let (key, other) = (typing("b1", "ana"), typing("b1", "bo"));
    assert!(once(broker, &key, ttl).await);
    assert!(!once(broker, &key, ttl).await);
    assert!(once(broker, &other, ttl).await, "keys are independent");
    tokio::time::sleep(ttl * 2).await;
    assert!(once(broker, &key, ttl).await, "a new window");
    broker
        .reset(&key)
        .await
        .unwrap_or_else(|err| panic!("reset: {err}"));
    assert!(once(broker, &key, ttl).await, "reset ends the window");
    assert!(!once(broker, &key, ttl).await);
}

async fn one_of_concurrent_throttle_calls_wins<B: Conformant>(broker: &B) {
    let key = typing("b2", "ana");
    let calls = (0..20).map(|_| once(broker, &key, Duration::from_secs(5)));
    let answers = futures_util::future::join_all(calls).await;
    assert_eq!(answers.iter().filter(|won| **won).count(), 1);
}

fn save(pid: &str, owner: &str, changes: Changes) -> Save {
    Save {
        pid: pid.to_owned(),
        owner: owner.to_owned(),
        changes,
    }
}

fn whole(who: &str, rooms: &[&str]) -> Changes {
    Changes::whole(who.to_owned(), rooms.iter().map(|r| (*r).to_owned()))
}

async fn saved<B: Conformant>(broker: &B, saves: &[Save], window: Duration) -> Saved {
    broker
        .save(saves, window)
        .await
        .unwrap_or_else(|err| panic!("save: {err}"))
}

async fn claim<B: Conformant>(broker: &B, pid: &str, who: &str, claimer: &str) -> Claim {
    broker
        .claim(pid, who, claimer, Utc::now())
        .await
        .unwrap_or_else(|err| panic!("claim: {err}"))
}

const WINDOW: Duration = Duration::from_secs(60);

fn got(rooms: &[&str]) -> Claim {
    Claim::Got(Record {
        user: "ana".to_owned(),
        rooms: rooms.iter().map(|r| (*r).to_owned()).collect(),
    })
}

async fn a_record_is_saved_claimed_and_released_by_the_rules<B: Conformant>(broker: &B) {
    let first = saved(
        broker,
        &[save(
            "p1",
            "n1/s1",
            whole("ana", &["user:ana", "listing:b"]),
        )],
        WINDOW,
    )
    .await;
    assert_eq!(first, Saved::default());
    // Rooms joined and left since.
    let mut changes = Changes::default();
    changes.join("booking:c".to_owned());
    changes.leave("listing:b".to_owned());
    let second = saved(broker, &[save("p1", "n1/s1", changes)], WINDOW).await;
    assert_eq!(second, Saved::default());

    assert_eq!(claim(broker, "p1", "bo", "n2/s9").await, Claim::Missing);
    assert_eq!(claim(broker, "p404", "ana", "n2/s9").await, Claim::Missing);
    assert_eq!(
        claim(broker, "p1", "ana", "n2/s2").await,
        got(&["booking:c", "user:ana"])
    );
    // One claim at a time.
    assert_eq!(claim(broker, "p1", "ana", "n2/s3").await, Claim::Busy);
    // The old owner's saves no longer touch it.
    let mut late = Changes::default();
    late.join("listing:z".to_owned());
    let stale = saved(
        broker,
        &[
            save("p1", "n1/s1", late.clone()),
            save("p-unknown", "n1/s1", late),
        ],
        WINDOW,
    )
    .await;
    assert_eq!(
        stale,
        Saved {
            taken: vec!["p1".to_owned()],
            gone: vec!["p-unknown".to_owned()],
        }
    );
    // Another's release does nothing; the claimer's ends the claim.
    broker
        .release("p1", "n2/s3")
        .await
        .unwrap_or_else(|err| panic!("release: {err}"));
    assert_eq!(claim(broker, "p1", "ana", "n2/s3").await, Claim::Busy);
    broker
        .release("p1", "n2/s2")
        .await
        .unwrap_or_else(|err| panic!("release: {err}"));
    assert_eq!(
        claim(broker, "p1", "ana", "n3/s4").await,
        got(&["booking:c", "user:ana"])
    );
    // The claimer binds: its saves write the record, and the claim ends.
    let bound = saved(
        broker,
        &[save("p1", "n3/s4", whole("ana", &["listing:q"]))],
        WINDOW,
    )
    .await;
    assert_eq!(bound, Saved::default());
    assert_eq!(
        claim(broker, "p1", "ana", "n4/s5").await,
        got(&["booking:c", "listing:q", "user:ana"])
    );
}

async fn a_record_is_gone_after_its_window<B: Conformant>(broker: &B) {
    let window = Duration::from_millis(300);
    saved(
        broker,
        &[save("p2", "n1/s1", whole("ana", &["user:ana"]))],
        window,
    )
    .await;
    // Each save renews it.
    tokio::time::sleep(window / 2).await;
    saved(broker, &[save("p2", "n1/s1", Changes::default())], window).await;
    tokio::time::sleep(window / 2 + window / 4).await;
    assert_eq!(
        claim(broker, "p2", "ana", "n1/s2").await,
        got(&["user:ana"])
    );
    tokio::time::sleep(window * 2).await;
    assert_eq!(claim(broker, "p2", "ana", "n1/s3").await, Claim::Missing);
    let gone = saved(broker, &[save("p2", "n1/s2", Changes::default())], window).await;
    assert_eq!(gone.gone, ["p2".to_owned()]);
}

async fn a_claim_holds_for_ten_seconds_at_most<B: Conformant>(broker: &B) {
    saved(broker, &[save("p3", "n1/s1", whole("ana", &[]))], WINDOW).await;
    let now = Utc::now();
    let at = |seconds: i64| now + chrono::Duration::seconds(seconds);
    let claim_at = |claimer: &'static str, seconds: i64| async move {
        broker
            .claim("p3", "ana", claimer, at(seconds))
            .await
            .unwrap_or_else(|err| panic!("claim: {err}"))
    };
    assert_eq!(claim_at("n1/s2", 0).await, got(&[]));
    assert_eq!(claim_at("n1/s3", 9).await, Claim::Busy);
    assert_eq!(claim_at("n1/s4", 11).await, got(&[]));
}

const HOUR_MS: i64 = 3_600_000;

/// An open auction of `seller`'s from a second ago to an hour from now.
pub(crate) fn open_auction(now_ms: i64) -> LiveState {
    LiveState {
        starts_ms: now_ms - 1000,
        ends_ms: now_ms + HOUR_MS,
        start_price: 100,
        min_increment: 10,
        extend_ms: 0,
        seller: "seller".to_owned(),
        current: None,
        leader: None,
        bid_count: 0,
        version: 3,
        closed: false,
        private: false,
        availability: "available".to_owned(),
    }
}

const GENEROUS: RateLimit = RateLimit {
    per_window: 1000,
    window_ms: 60_000,
};

async fn load<B: Conformant>(broker: &B, id: &str, state: &LiveState) {
    broker
        .load(&listing(id), state, &[])
        .await
        .unwrap_or_else(|err| panic!("load: {err}"))
}

struct Bid<'a> {
    listing: &'a str,
    bidder: &'a str,
    amount: i64,
    key: Option<&'a str>,
    now_ms: i64,
    vouched: bool,
}

impl<'a> Bid<'a> {
    fn new(listing: &'a str, bidder: &'a str, amount: i64, now_ms: i64) -> Self {
        Bid {
            listing,
            bidder,
            amount,
            key: None,
            now_ms,
            vouched: false,
        }
    }
}

async fn place<B: Conformant>(broker: &B, bid: Bid<'_>, limit: RateLimit) -> Placed {
    let mut placed = place_all(broker, vec![bid], limit).await;
    assert_eq!(placed.len(), 1, "{placed:?}");
    placed.remove(0)
}

/// Places `bids` in one batch.
async fn place_all<B: Conformant>(broker: &B, bids: Vec<Bid<'_>>, limit: RateLimit) -> Vec<Placed> {
    let ids: Vec<(ListingId, UserId)> = bids
        .iter()
        .map(|bid| (listing(bid.listing), user(bid.bidder)))
        .collect();
    let requests: Vec<BidRequest<'_>> = bids
        .iter()
        .zip(&ids)
        .map(|(bid, (id, bidder))| BidRequest {
            listing: id,
            bidder,
            amount: bid.amount,
            key: bid.key,
            now_ms: bid.now_ms,
            vouched: bid.vouched,
        })
        .collect();
    broker
        .place_all(&requests, limit)
        .await
        .unwrap_or_else(|err| panic!("place_all: {err}"))
}

fn accepted(placed: &Placed) -> Option<&Accepted> {
    match placed {
        Placed::Decided(Outcome::Accepted(accepted)) => Some(accepted),
        _ => None,
    }
}

async fn of_concurrent_bids_at_one_amount_one_wins<B: Conformant>(broker: &B) {
    let now = Utc::now().timestamp_millis();
    load(broker, "race", &open_auction(now)).await;
    let bidders: Vec<String> = (0..20).map(|n| format!("bidder{n}")).collect();
    let bids = bidders
        .iter()
        .map(|bidder| place(broker, Bid::new("race", bidder, 150, now), GENEROUS));
    let placed = futures_util::future::join_all(bids).await;
    let winners: Vec<&Accepted> = placed.iter().filter_map(accepted).collect();
    assert_eq!(winners.len(), 1, "{placed:?}");
    assert_eq!(
        (winners[0].version, winners[0].bid_count, winners[0].amount),
        (4, 1, 150)
    );
    for other in placed.iter().filter(|p| accepted(p).is_none()) {
        assert_eq!(other, &Placed::Decided(Outcome::TooLow { min: 160 }));
    }
}

async fn bids_are_decided_as_the_bid_script_decides<B: Conformant>(broker: &B) {
    let now = Utc::now().timestamp_millis();
    let decided = |outcome| Placed::Decided(outcome);
    assert_eq!(
        place(broker, Bid::new("l1", "ana", 100, now), GENEROUS).await,
        Placed::Missing
    );
    let mut state = open_auction(now);
    state.extend_ms = 60_000;
    state.ends_ms = now + 600_000;
    load(broker, "l1", &state).await;
    assert_eq!(
        place(broker, Bid::new("l1", "ana", 99, now), GENEROUS).await,
        decided(Outcome::TooLow { min: 100 })
    );
    assert_eq!(
        place(broker, Bid::new("l1", "seller", 500, now), GENEROUS).await,
        decided(Outcome::Seller)
    );
    assert_eq!(
        place(broker, Bid::new("l1", "ana", 100, now - 5000), GENEROUS).await,
        decided(Outcome::NotOpen {
            starts: state.starts_ms
        })
    );
    let first = Accepted {
        version: 4,
        amount: 100,
        ends: state.ends_ms,
        extended: false,
        prev_leader: String::new(),
        prev_amount: -1,
        bid_count: 1,
    };
    assert_eq!(
        place(broker, Bid::new("l1", "ana", 100, now), GENEROUS).await,
        decided(Outcome::Accepted(first))
    );
    assert_eq!(
        place(broker, Bid::new("l1", "bo", 105, now), GENEROUS).await,
        decided(Outcome::TooLow { min: 110 })
    );
    // Within the extension of the end: the end moves.
    let late = state.ends_ms - 10_000;
    let second = Accepted {
        version: 5,
        amount: 200,
        ends: late + 60_000,
        extended: true,
        prev_leader: "ana".to_owned(),
        prev_amount: 100,
        bid_count: 2,
    };
    assert_eq!(
        place(broker, Bid::new("l1", "bo", 200, late), GENEROUS).await,
        decided(Outcome::Accepted(second))
    );
    assert_eq!(
        place(broker, Bid::new("l1", "ana", 500, late + 60_000), GENEROUS).await,
        decided(Outcome::Closed {
            ends: late + 60_000
        })
    );

    let mut sold = open_auction(now);
    sold.availability = "sold".to_owned();
    load(broker, "l2", &sold).await;
    assert_eq!(
        place(broker, Bid::new("l2", "ana", 500, now), GENEROUS).await,
        decided(Outcome::Unavailable)
    );
}

async fn the_rate_window_counts_bids_before_anything_else<B: Conformant>(broker: &B) {
    let now = Utc::now().timestamp_millis();
    let limit = RateLimit {
        per_window: 3,
        window_ms: 400,
    };
    // Not counted while there is no state: the bid after the rebuild is.
    for _ in 0..5 {
        assert_eq!(
            place(broker, Bid::new("l3", "ana", 1, now), limit).await,
            Placed::Missing
        );
    }
    load(broker, "l3", &open_auction(now)).await;
    for _ in 0..3 {
        // Refused bids count as much as accepted ones.
        assert_eq!(
            place(broker, Bid::new("l3", "ana", 1, now), limit).await,
            Placed::Decided(Outcome::TooLow { min: 100 })
        );
    }
    match place(broker, Bid::new("l3", "ana", 1, now), limit).await {
        Placed::RateLimited { retry_after_ms } => {
            assert!((1..=400).contains(&retry_after_ms), "{retry_after_ms}")
        }
        other => panic!("expected rate_limited, got {other:?}"),
    }
    // Per bidder; and a vouched try was counted already.
    assert!(accepted(&place(broker, Bid::new("l3", "bo", 100, now), limit).await).is_some());
    let mut vouched = Bid::new("l3", "ana", 1, now);
    vouched.vouched = true;
    assert_eq!(
        place(broker, vouched, limit).await,
        Placed::Decided(Outcome::TooLow { min: 110 })
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        place(broker, Bid::new("l3", "ana", 1, now), limit).await,
        Placed::Decided(Outcome::TooLow { min: 110 })
    );
}

async fn a_key_answers_its_first_outcome_again<B: Conformant>(broker: &B) {
    let now = Utc::now().timestamp_millis();
    load(broker, "l4", &open_auction(now)).await;
    let keyed = |bidder, amount, key| {
        let mut bid = Bid::new("l4", bidder, amount, now);
        bid.key = Some(key);
        place(broker, bid, GENEROUS)
    };
    let first = keyed("ana", 100, "k1").await;
    let Placed::Decided(outcome) = first.clone() else {
        panic!("expected a decision, got {first:?}");
    };
    assert!(accepted(&first).is_some());
    // The same key, even with another amount: the first outcome.
    assert_eq!(
        keyed("ana", 900, "k1").await,
        Placed::Repeat(outcome.clone())
    );
    // Another bidder's key of the same name is theirs.
    assert_eq!(
        keyed("bo", 100, "k1").await,
        Placed::Decided(Outcome::TooLow { min: 110 })
    );
    // Refusals are remembered too.
    let refused = keyed("bo", 105, "k2").await;
    assert_eq!(refused, Placed::Decided(Outcome::TooLow { min: 110 }));
    assert_eq!(
        keyed("bo", 500, "k2").await,
        Placed::Repeat(Outcome::TooLow { min: 110 })
    );
    // Kept while the live state is rebuilt.
    broker
        .forget(&listing("l4"), &[])
        .await
        .unwrap_or_else(|err| panic!("forget: {err}"));
    assert_eq!(keyed("ana", 900, "k1").await, Placed::Repeat(outcome));
    // Forgetting a key drops it.
    broker
        .forget(&listing("l4"), &[(user("ana"), "k1".to_owned())])
        .await
        .unwrap_or_else(|err| panic!("forget: {err}"));
    assert_eq!(keyed("ana", 900, "k1").await, Placed::Missing);
}

async fn a_private_auction_tells_strangers_nothing<B: Conformant>(broker: &B) {
    let now = Utc::now().timestamp_millis();
    let mut state = open_auction(now);
    state.private = true;
    state.ends_ms = now - 1; // even that it ended
    load(broker, "l5", &state).await;
    assert_eq!(
        place(broker, Bid::new("l5", "ana", 100, now), GENEROUS).await,
        Placed::Private
    );
    let mut vouched = Bid::new("l5", "ana", 100, now);
    vouched.vouched = true;
    assert_eq!(
        place(broker, vouched, GENEROUS).await,
        Placed::Decided(Outcome::Closed { ends: now - 1 })
    );
    // The seller is never a stranger.
    assert_eq!(
        place(broker, Bid::new("l5", "seller", 100, now), GENEROUS).await,
        Placed::Decided(Outcome::Closed { ends: now - 1 })
    );
    // The rate window is counted before privacy.
    let tight = RateLimit {
        per_window: 1,
        window_ms: 60_000,
    };
    assert_eq!(
        place(broker, Bid::new("l5", "cy", 100, now), tight).await,
        Placed::Private
    );
    assert!(matches!(
        place(broker, Bid::new("l5", "cy", 100, now), tight).await,
        Placed::RateLimited { .. }
    ));
}

async fn a_closing_auction_takes_no_bid<B: Conformant>(broker: &B) {
    let now = Utc::now().timestamp_millis();
    let id = listing("l6");
    let begin = |at| async move {
        broker
            .begin_close(&listing("l6"), at)
            .await
            .unwrap_or_else(|err| panic!("begin_close: {err}"))
    };
    assert_eq!(begin(now).await, CloseCheck::Missing);
    load(broker, "l6", &open_auction(now)).await;
    assert_eq!(begin(now).await, CloseCheck::NotYet);
    assert!(accepted(&place(broker, Bid::new("l6", "ana", 100, now), GENEROUS).await).is_some());
    // At its end: from now on every bid is closed.
    assert_eq!(
        begin(now + HOUR_MS).await,
        CloseCheck::Closing { version: 4 }
    );
    assert_eq!(
        place(broker, Bid::new("l6", "bo", 500, now), GENEROUS).await,
        Placed::Decided(Outcome::Closed {
            ends: now + HOUR_MS
        })
    );
    assert_eq!(begin(now).await, CloseCheck::Closing { version: 4 });
    broker
        .mark_closed(&id)
        .await
        .unwrap_or_else(|err| panic!("mark_closed: {err}"));
    assert_eq!(
        place(broker, Bid::new("l6", "bo", 500, now), GENEROUS).await,
        Placed::Decided(Outcome::Closed {
            ends: now + HOUR_MS
        })
    );
}

async fn load_keeps_a_state_already_there_and_forget_drops_it<B: Conformant>(broker: &B) {
    let now = Utc::now().timestamp_millis();
    load(broker, "l7", &open_auction(now)).await;
    assert!(accepted(&place(broker, Bid::new("l7", "ana", 100, now), GENEROUS).await).is_some());
    // Another node's rebuild does not undo the bid.
    let remembered = vec![(
        "bo".to_owned(),
        "k9".to_owned(),
        json!({"outcome": "too_low", "min": 5}).to_string(),
    )];
    broker
        .load(&listing("l7"), &open_auction(now), &remembered)
        .await
        .unwrap_or_else(|err| panic!("load: {err}"));
    assert_eq!(
        place(broker, Bid::new("l7", "bo", 100, now), GENEROUS).await,
        Placed::Decided(Outcome::TooLow { min: 110 })
    );
    let mut keyed = Bid::new("l7", "bo", 100, now);
    keyed.key = Some("k9");
    assert_eq!(
        place(broker, keyed, GENEROUS).await,
        Placed::Decided(Outcome::TooLow { min: 110 }),
        "a load that wrote nothing remembers nothing"
    );
    broker
        .forget(&listing("l7"), &[])
        .await
        .unwrap_or_else(|err| panic!("forget: {err}"));
    assert_eq!(
        place(broker, Bid::new("l7", "bo", 100, now), GENEROUS).await,
        Placed::Missing
    );
    // A rebuild from Postgres, with the outcomes remembered there.
    let mut rebuilt = open_auction(now);
    (
        rebuilt.current,
        rebuilt.leader,
        rebuilt.bid_count,
        rebuilt.version,
    ) = (Some(100), Some("ana".to_owned()), 1, 4);
    let remembered = vec![(
        "cy".to_owned(),
        "k1".to_owned(),
        json!({"outcome": "too_low", "min": 5}).to_string(),
    )];
    broker
        .load(&listing("l7"), &rebuilt, &remembered)
        .await
        .unwrap_or_else(|err| panic!("load: {err}"));
    let mut repeat = Bid::new("l7", "cy", 100, now);
    repeat.key = Some("k1");
    assert_eq!(
        place(broker, repeat, GENEROUS).await,
        Placed::Repeat(Outcome::TooLow { min: 5 })
    );
    let next = place(broker, Bid::new("l7", "bo", 110, now), GENEROUS).await;
    assert_eq!(
        accepted(&next).map(|a| (a.version, a.prev_leader.as_str(), a.bid_count)),
        Some((5, "ana", 2))
    );
}

async fn a_batch_is_decided_in_order_each_bid_on_the_state_before_it<B: Conformant>(broker: &B) {
    let now = Utc::now().timestamp_millis();
    assert!(place_all(broker, Vec::new(), GENEROUS).await.is_empty());
    let mut state = open_auction(now);
    state.extend_ms = 60_000;
    state.ends_ms = now + 600_000;
    load(broker, "b1", &state).await;
    let late = state.ends_ms - 10_000;
    let placed = place_all(
        broker,
        vec![
            Bid::new("b1", "ana", 100, now),
            Bid::new("b1", "bo", 105, now),
            Bid::new("b1", "bo", 110, now),
            Bid::new("b1", "cy", 110, now),
            Bid::new("b1", "ana", 150, late),
            Bid::new("b1", "seller", 500, late),
        ],
        GENEROUS,
    )
    .await;
    let accepted =
        |version, amount, (ends, extended), prev_leader: &str, prev_amount, bid_count| {
            Placed::Decided(Outcome::Accepted(Accepted {
                version,
                amount,
                ends,
                extended,
                prev_leader: prev_leader.to_owned(),
                prev_amount,
                bid_count,
            }))
        };
    assert_eq!(
        placed,
        vec![
            accepted(4, 100, (state.ends_ms, false), "", -1, 1),
            // Lost to the bid before it in the same batch.
            Placed::Decided(Outcome::TooLow { min: 110 }),
            accepted(5, 110, (state.ends_ms, false), "ana", 100, 2),
            Placed::Decided(Outcome::TooLow { min: 120 }),
            // Within the extension: the end moves for the bids after it.
            accepted(6, 150, (late + 60_000, true), "bo", 110, 3),
            Placed::Decided(Outcome::Seller),
        ]
    );
    // The batch's last state is the live state.
    assert_eq!(
        place(broker, Bid::new("b1", "dan", 160, late), GENEROUS).await,
        accepted(7, 160, (late + 60_000, false), "ana", 150, 4)
    );
}

async fn a_batch_counts_each_bid_against_its_bidders_rate_window<B: Conformant>(broker: &B) {
    let now = Utc::now().timestamp_millis();
    let limit = RateLimit {
        per_window: 2,
        window_ms: 60_000,
    };
    // Nothing is counted while there is no state.
    let missing = place_all(
        broker,
        vec![
            Bid::new("b2", "ana", 100, now),
            Bid::new("b2", "ana", 110, now),
        ],
        limit,
    )
    .await;
    assert_eq!(missing, vec![Placed::Missing, Placed::Missing]);
    load(broker, "b2", &open_auction(now)).await;
    let mut vouched = Bid::new("b2", "ana", 130, now);
    vouched.vouched = true;
    let placed = place_all(
        broker,
        vec![
            Bid::new("b2", "ana", 100, now),
            Bid::new("b2", "ana", 110, now),
            Bid::new("b2", "ana", 120, now),
            Bid::new("b2", "bo", 120, now),
            vouched,
        ],
        limit,
    )
    .await;
    let versions: Vec<Option<i64>> = placed
        .iter()
        .map(|placed| accepted(placed).map(|a| a.version))
        .collect();
    assert_eq!(versions, vec![Some(4), Some(5), None, Some(6), Some(7)]);
    assert!(
        matches!(placed[2], Placed::RateLimited { retry_after_ms } if retry_after_ms > 0),
        "{placed:?}"
    );
}

async fn a_key_repeated_inside_a_batch_answers_its_first_outcome<B: Conformant>(broker: &B) {
    let now = Utc::now().timestamp_millis();
    load(broker, "b3", &open_auction(now)).await;
    let keyed = |bidder, amount, key| {
        let mut bid = Bid::new("b3", bidder, amount, now);
        bid.key = Some(key);
        bid
    };
    let placed = place_all(
        broker,
        vec![
            keyed("ana", 100, "k1"),
            keyed("ana", 900, "k1"),
            keyed("bo", 105, "k2"),
            keyed("bo", 500, "k2"),
            Bid::new("b3", "bo", 110, now),
        ],
        GENEROUS,
    )
    .await;
    let Placed::Decided(first) = placed[0].clone() else {
        panic!("expected a decision, got {placed:?}");
    };
    assert!(matches!(first, Outcome::Accepted(_)), "{placed:?}");
    let too_low = Outcome::TooLow { min: 110 };
    assert_eq!(
        placed[1..4],
        [
            Placed::Repeat(first.clone()),
            Placed::Decided(too_low.clone()),
            Placed::Repeat(too_low),
        ][..]
    );
    assert_eq!(accepted(&placed[4]).map(|a| a.version), Some(5));
    // Without a live state, a key still answers; the others wait for the
    // rebuild.
    broker
        .forget(&listing("b3"), &[])
        .await
        .unwrap_or_else(|err| panic!("forget: {err}"));
    assert_eq!(
        place_all(
            broker,
            vec![keyed("ana", 900, "k1"), Bid::new("b3", "cy", 500, now)],
            GENEROUS
        )
        .await,
        vec![Placed::Repeat(first), Placed::Missing]
    );
}

async fn nodes_are_live_until_they_leave_or_expire<B: Conformant>(broker: &B) {
    let entry = |node: &str| json!({ "nodeId": node, "connections": 1 });
    let ttl = Duration::from_millis(300);
    for node in ["n2", "n1"] {
        broker
            .beat(node, &entry(node), ttl)
            .await
            .unwrap_or_else(|err| panic!("beat: {err}"));
    }
    let live = || async {
        broker
            .live()
            .await
            .unwrap_or_else(|err| panic!("live: {err}"))
    };
    assert_eq!(live().await, [entry("n1"), entry("n2")]);
    broker
        .leave("n1")
        .await
        .unwrap_or_else(|err| panic!("leave: {err}"));
    assert_eq!(live().await, [entry("n2")]);
    // n2 goes on beating, with a longer TTL; n3 stops.
    broker
        .beat("n3", &entry("n3"), ttl)
        .await
        .unwrap_or_else(|err| panic!("beat: {err}"));
    broker
        .beat("n2", &entry("n2"), Duration::from_secs(60))
        .await
        .unwrap_or_else(|err| panic!("beat: {err}"));
    tokio::time::sleep(ttl * 2).await;
    assert_eq!(live().await, [entry("n2")]);
}
