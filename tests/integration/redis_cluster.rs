//! What only a Redis Cluster can do to souk: move the slot that orders room
//! events to another node while events flow. scripts/test runs this module
//! in its Redis Cluster pass only; on a standalone Redis it fails at once.

use std::time::Duration;

use serde_json::json;

use crate::cluster::watchers_on_two_nodes;
use crate::helpers::*;

/// A cluster's primaries: (node id, `host:port`).
fn primaries(conn: &mut redis::Connection) -> Vec<(String, String)> {
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query(conn).unwrap();
    nodes
        .lines()
        .filter(|line| line.contains("master"))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let address = fields[1].split('@').next().unwrap().to_owned();
            (fields[0].to_owned(), address)
        })
        .collect()
}

fn connect(address: &str) -> redis::Connection {
    redis::Client::open(format!("redis://{address}"))
        .and_then(|c| c.get_connection())
        .unwrap()
}

/// Moves `slot` from the primary serving it to another one, key by key, as
/// `redis-cli --cluster reshard` does. Never to `avoid`.
fn migrate_slot(slot: u16, avoid: &str) -> (String, String) {
    let mut seed = redis::Client::open(redis_url())
        .and_then(|c| c.get_connection())
        .unwrap();
    let primaries = primaries(&mut seed);
    let shards: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query(&mut seed).unwrap();
    let owner_port = owner_port(&shards, slot);
    let (source_id, source) = primaries
        .iter()
        .find(|(_, address)| address.ends_with(&format!(":{owner_port}")))
        .cloned()
        .unwrap();
    let (target_id, target) = primaries
        .iter()
        .find(|(_, address)| *address != source && !address.ends_with(avoid))
        .cloned()
        .unwrap();
    let (mut from, mut to) = (connect(&source), connect(&target));
    let setslot = |conn: &mut redis::Connection, state: &str, node: &str| {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg(state)
            .arg(node)
            .query(conn)
            .unwrap();
    };
    setslot(&mut to, "IMPORTING", &source_id);
    setslot(&mut from, "MIGRATING", &target_id);
    let (host, port) = target.split_once(':').unwrap();
    loop {
        let keys: Vec<String> = redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(10)
            .query(&mut from)
            .unwrap();
        if keys.is_empty() {
            break;
        }
        let _: redis::Value = redis::cmd("MIGRATE")
            .arg(host)
            .arg(port)
            .arg("")
            .arg(0)
            .arg(5000)
            .arg("KEYS")
            .arg(&keys)
            .query(&mut from)
            .unwrap();
        // Slowly, so that events are published while keys are on both sides.
        std::thread::sleep(Duration::from_millis(20));
    }
    for (_, address) in &primaries {
        setslot(&mut connect(address), "NODE", &target_id);
    }
    (source, target)
}

/// The port of the primary serving `slot`, from CLUSTER SLOTS.
fn owner_port(slots: &redis::Value, slot: u16) -> i64 {
    let redis::Value::Array(ranges) = slots else {
        panic!("CLUSTER SLOTS: {slots:?}")
    };
    for range in ranges {
        let redis::Value::Array(parts) = range else {
            continue;
        };
        let (redis::Value::Int(first), redis::Value::Int(last)) = (&parts[0], &parts[1]) else {
            continue;
        };
        if (*first..=*last).contains(&i64::from(slot)) {
            if let redis::Value::Array(primary) = &parts[2] {
                if let redis::Value::Int(port) = primary[1] {
                    return port;
                }
            }
        }
    }
    panic!("slot {slot} has no primary")
}

#[actix_web::test]
async fn moving_the_events_slot_under_traffic_loses_no_event() {
    assert!(
        redis_is_cluster(),
        "needs a Redis Cluster: SOUK_TEST_REDIS_URL=redis://127.0.0.1:7101 (scripts/test starts one)"
    );
    let (nodes, mut on_a, mut on_b) = watchers_on_two_nodes().await;
    let mut seed = redis::Client::open(redis_url())
        .and_then(|c| c.get_connection())
        .unwrap();
    let slot: u16 = redis::cmd("CLUSTER")
        .arg("KEYSLOT")
        .arg("{events}")
        .query(&mut seed)
        .unwrap();
    let seed_port = redis_url().rsplit(':').next().unwrap().to_owned();

    // Publishers on both nodes while the slot moves on another thread.
    let mover = std::thread::spawn(move || migrate_slot(slot, &format!(":{seed_port}")));
    let total = 60;
    for n in 0..total {
        let (status, body) = nodes[n % 2]
            .room_event("listing:l1", "tick", json!(n))
            .await;
        assert_eq!(status, 202, "tick {n}: {body}");
        actix_web::rt::time::sleep(Duration::from_millis(10)).await;
    }
    let (from, to) = mover.join().unwrap();
    eprintln!("moved slot {slot} from {from} to {to}");

    let mut seen = Vec::new();
    for client in [&mut on_a, &mut on_b] {
        let mut got = Vec::new();
        for _ in 0..total {
            got.push(client.wait_event("tick").await[0].as_u64().unwrap());
        }
        client
            .assert_no_event("tick", Duration::from_millis(300))
            .await;
        seen.push(got);
    }
    assert_eq!(seen[0], seen[1], "one order on both nodes");
    let mut once = seen[0].clone();
    once.sort_unstable();
    assert_eq!(
        once,
        (0..total as u64).collect::<Vec<_>>(),
        "each tick once"
    );
    // And the room goes on, on the slot's new node.
    let (status, _) = nodes[0]
        .room_event("listing:l1", "tick", json!("after"))
        .await;
    assert_eq!(status, 202);
    assert_eq!(on_a.wait_event("tick").await[0], "after");
    assert_eq!(on_b.wait_event("tick").await[0], "after");
}
