//! Property tests of the codec: whatever a client sends, decoding never
//! panics; what the server encodes decodes back to the same packet; the
//! limits (ack id digits, namespace length, JSON nesting, the contract's
//! field bounds) hold for every input, not only the examples in the unit
//! tests. They run with `cargo test --lib` (so in `scripts/test`).

use proptest::prelude::*;
use serde_json::{json, Map, Number, Value};

use super::engine::{self, ClientPacket};
use super::events::{self, ClientEvent, EventError};
use super::socket::{self, PacketType};
use super::DecodeError;

/// Any JSON value: every scalar kind (floats included), nested arrays and
/// objects a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter_map("finite", Number::from_f64)
            .prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((any::<String>(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON object (CONNECT payloads, CONNECT_ERROR bodies).
fn json_object() -> impl Strategy<Value = Value> {
    prop::collection::vec((any::<String>(), json_value()), 0..5)
        .prop_map(|fields| Value::Object(fields.into_iter().collect()))
}

/// A namespace as a client writes it: `/` and up to 256 characters with
/// no comma.
fn namespace() -> impl Strategy<Value = String> {
    prop_oneof!["/[^,]{0,60}", "/[a-z0-9_.-]{0,255}"]
}

/// A contract id: 1–64 characters of `[A-Za-z0-9_-]`.
fn contract_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

/// Text made mostly of the characters the codec looks at, so random input
/// reaches deep into the decoder rather than failing on the first byte.
fn protocol_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            prop::sample::select(vec![
                "0", "1", "2", "3", "4", "5", "6", "9", "/", ",", "-", "[", "]", "{", "}", "\"",
                ":", "\u{1e}", "\\", " ", "e", "1e400", "null", "true", "é", "\u{0}",
            ])
            .prop_map(str::to_owned),
            any::<String>(),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

/// How socket.io-parser encodes a client packet: type, namespace unless
/// `/`, ack id, JSON.
fn client_frame(kind: char, ns: &str, ack: Option<u64>, data: Option<&Value>) -> String {
    let mut frame = kind.to_string();
    if ns != "/" {
        frame.push_str(ns);
        frame.push(',');
    }
    if let Some(id) = ack {
        frame.push_str(&id.to_string());
    }
    if let Some(data) = data {
        frame.push_str(&data.to_string());
    }
    frame
}

/// JSON nested `depth` arrays deep: `[[[…]]]`.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Why `frame` did not decode, if it did not.
fn refusal(frame: &str) -> Option<DecodeError> {
    socket::decode(frame).err()
}

fn decoded(frame: &str) -> Result<socket::Packet<'_>, TestCaseError> {
    socket::decode(frame).map_err(|e| TestCaseError::fail(format!("{frame:?}: {e:?}")))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    // ---- Engine.IO ----------------------------------------------------

    #[test]
    fn engine_decode_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = engine::decode(&text);
        for packet in engine::split_payload(&text) {
            let _ = engine::decode(packet);
        }
    }

    #[test]
    fn engine_packets_carry_their_data_unchanged(data in any::<String>()) {
        let (message, ping, pong) = (format!("4{data}"), format!("2{data}"), format!("3{data}"));
        prop_assert_eq!(engine::decode(&message), Ok(ClientPacket::Message(&data)));
        prop_assert_eq!(engine::decode(&ping), Ok(ClientPacket::Ping(&data)));
        prop_assert_eq!(engine::decode(&pong), Ok(ClientPacket::Pong(&data)));
    }

    #[test]
    fn engine_refuses_every_other_first_character(first in any::<char>(), rest in any::<String>()) {
        prop_assume!(!('1'..='6').contains(&first));
        let frame = format!("{first}{rest}");
        let decoded = engine::decode(&frame);
        prop_assert!(decoded.is_err(), "{first:?} decoded as {decoded:?}");
    }

    #[test]
    fn polling_payload_splits_back_into_its_packets(
        packets in prop::collection::vec("[^\u{1e}]{0,40}", 1..12),
    ) {
        let body = packets.join(&engine::SEPARATOR.to_string());
        let split: Vec<&str> = engine::split_payload(&body).collect();
        prop_assert_eq!(split, packets.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn pong_echoes_the_ping_data(data in any::<String>()) {
        let pong = engine::encode_pong(&data);
        prop_assert_eq!(pong.strip_prefix('3'), Some(data.as_str()));
    }

    #[test]
    fn open_packet_is_the_json_of_its_fields(
        sid in contract_id(),
        interval in any::<u64>(),
        timeout in any::<u64>(),
        max_payload in any::<usize>(),
        websocket in any::<bool>(),
    ) {
        let upgrades: &[&str] = if websocket { &["websocket"] } else { &[] };
        let open = engine::Open {
            sid: &sid,
            upgrades,
            ping_interval: interval,
            ping_timeout: timeout,
            max_payload,
        };
        let text = engine::encode_open(&open);
        let body: Value = serde_json::from_str(text.strip_prefix('0').unwrap_or_default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(body, json!({
            "sid": sid, "upgrades": upgrades, "pingInterval": interval,
            "pingTimeout": timeout, "maxPayload": max_payload,
        }));
    }

    // ---- Socket.IO: nothing panics ------------------------------------

    #[test]
    fn socket_decode_never_panics_on_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = socket::decode(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn socket_decode_never_panics_on_protocol_looking_text(text in protocol_text()) {
        if let Ok(packet) = socket::decode(&text) {
            // Whatever decodes obeys the limits.
            prop_assert!(packet.namespace.len() <= 256);
            prop_assert!(packet.ack_id.is_none_or(|id| id < 10u64.pow(15)));
        }
    }

    #[test]
    fn whole_frames_never_panic(text in protocol_text()) {
        for frame in engine::split_payload(&text) {
            if let Ok(ClientPacket::Message(data)) = engine::decode(frame) {
                if let Ok(socket::Packet { kind: PacketType::Event, data: Some(Value::Array(args)), .. }) = socket::decode(data) {
                    let _ = events::parse(&args);
                }
            }
        }
    }

    // ---- Socket.IO: what the server encodes decodes back -------------

    #[test]
    fn events_round_trip(name in any::<String>(), payload in json_value(), offset in proptest::option::of("[0-9]{1,20}-[0-9]{1,5}")) {
        let frame = socket::encode_event(&name, &payload, offset.as_deref());
        let engine_data = match engine::decode(&frame) {
            Ok(ClientPacket::Message(data)) => data,
            other => return Err(TestCaseError::fail(format!("{frame:?}: {other:?}"))),
        };
        let packet = decoded(engine_data)?;
        prop_assert_eq!(packet.kind, PacketType::Event);
        prop_assert_eq!(packet.namespace, "/");
        prop_assert_eq!(packet.ack_id, None);
        let mut expected = vec![Value::String(name), payload];
        if let Some(offset) = offset {
            expected.push(Value::String(offset));
        }
        prop_assert_eq!(packet.data, Some(Value::Array(expected)));
    }

    #[test]
    fn event_head_and_offset_make_the_event(name in any::<String>(), payload in json_value(), offset in "[0-9]{1,20}-[0-9]{1,5}") {
        let head = socket::encode_event_head(&name, &payload);
        let tail = Value::String(offset.clone());
        prop_assert_eq!(format!("{head},{tail}]"), socket::encode_event(&name, &payload, Some(&offset)));
    }

    #[test]
    fn acks_round_trip(id in 0u64..10u64.pow(15), reply in json_value()) {
        let frame = socket::encode_ack(id, &reply);
        let packet = decoded(&frame[1..])?;
        prop_assert_eq!(packet.kind, PacketType::Ack);
        prop_assert_eq!(packet.ack_id, Some(id));
        prop_assert_eq!(packet.data, Some(Value::Array(vec![reply])));
    }

    #[test]
    fn connect_ok_round_trips(sid in any::<String>(), pid in any::<String>()) {
        let frame = socket::encode_connect_ok(&sid, &pid);
        let packet = decoded(&frame[1..])?;
        prop_assert_eq!(packet.kind, PacketType::Connect);
        prop_assert_eq!(packet.data, Some(json!({ "sid": sid, "pid": pid })));
    }

    #[test]
    fn connect_error_round_trips(ns in namespace(), body in json_object()) {
        let frame = socket::encode_connect_error(&ns, &body);
        let packet = decoded(&frame[1..])?;
        prop_assert_eq!(packet.kind, PacketType::ConnectError);
        prop_assert_eq!(packet.namespace, ns.as_str());
        prop_assert_eq!(packet.data, Some(body));
    }

    // ---- Socket.IO: what a client encodes decodes as it meant ---------

    #[test]
    fn client_events_decode_as_sent(
        ns in prop_oneof![Just("/".to_owned()), namespace()],
        ack in proptest::option::of(0u64..10u64.pow(15)),
        name in any::<String>(),
        args in prop::collection::vec(json_value(), 0..4),
    ) {
        let mut array = vec![Value::String(name)];
        array.extend(args);
        let data = Value::Array(array);
        let frame = client_frame('2', &ns, ack, Some(&data));
        let packet = decoded(&frame)?;
        prop_assert_eq!(packet.kind, PacketType::Event);
        prop_assert_eq!(packet.namespace, ns.as_str());
        prop_assert_eq!(packet.ack_id, ack);
        prop_assert_eq!(packet.data, Some(data));
    }

    #[test]
    fn client_connect_and_disconnect_decode_as_sent(
        ns in prop_oneof![Just("/".to_owned()), namespace()],
        auth in proptest::option::of(json_object()),
    ) {
        let connect = client_frame('0', &ns, None, auth.as_ref());
        let packet = decoded(&connect)?;
        prop_assert_eq!(packet.kind, PacketType::Connect);
        prop_assert_eq!(packet.namespace, ns.as_str());
        prop_assert_eq!(packet.data, auth);
        let disconnect = client_frame('1', &ns, None, None);
        let packet = decoded(&disconnect)?;
        prop_assert_eq!(packet.kind, PacketType::Disconnect);
        prop_assert_eq!(packet.namespace, ns.as_str());
    }

    #[test]
    fn binary_packets_keep_their_ack_id(
        attachments in 1u32..100,
        ns in prop_oneof![Just("/".to_owned()), namespace()],
        ack in proptest::option::of(0u64..10u64.pow(15)),
        kind in prop::sample::select(vec!['5', '6']),
        data in json_value(),
    ) {
        let frame = client_frame(kind, &ns, ack, Some(&data));
        let frame = format!("{kind}{attachments}-{}", &frame[1..]);
        let packet = decoded(&frame)?;
        let expected = if kind == '5' { PacketType::BinaryEvent } else { PacketType::BinaryAck };
        prop_assert_eq!(packet.kind, expected);
        // The attachments are never read: binary packets are refused whole.
        prop_assert_eq!(packet.data, None);
        // A JSON text that starts with digits would lengthen the ack id.
        if !matches!(data, Value::Number(_)) {
            prop_assert_eq!(packet.ack_id, ack);
        }
    }

    // ---- Socket.IO: the limits hold ----------------------------------

    #[test]
    fn ack_ids_longer_than_15_digits_are_refused(digits in "[1-9][0-9]{15,40}") {
        prop_assert_eq!(refusal(&format!("2{digits}[\"e\"]")), Some(DecodeError::BadAckId));
        prop_assert_eq!(refusal(&format!("3{digits}[]")), Some(DecodeError::BadAckId));
    }

    #[test]
    fn namespaces_longer_than_256_bytes_are_refused(ns in "/[a-z]{256,600}") {
        prop_assert_eq!(refusal(&format!("0{ns},{{}}")), Some(DecodeError::NamespaceTooLong));
        prop_assert_eq!(refusal(&format!("2{ns},[\"e\"]")), Some(DecodeError::NamespaceTooLong));
    }

    #[test]
    fn payloads_that_do_not_fit_the_type_are_refused(data in json_value()) {
        // CONNECT takes an object or nothing; DISCONNECT takes nothing.
        if !data.is_object() && !data.is_number() {
            prop_assert_eq!(refusal(&format!("0{data}")), Some(DecodeError::BadPayload));
        }
        let disconnect = format!("1{data}");
        prop_assert!(refusal(&disconnect).is_some(), "{} decoded", disconnect);
        // An EVENT needs an array whose first item is a string.
        let is_event = matches!(&data, Value::Array(items) if matches!(items.first(), Some(Value::String(_))));
        if !is_event && !matches!(data, Value::Number(_)) {
            prop_assert_eq!(refusal(&format!("2{data}")), Some(DecodeError::BadPayload));
        }
    }

    #[test]
    fn trailing_bytes_after_the_json_are_refused(data in json_value(), junk in "[a-z\\]}]{1,8}") {
        let frame = format!("2[\"e\",{data}]{junk}");
        prop_assert_eq!(refusal(&frame), Some(DecodeError::BadJson));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack(depth in 129usize..20_000) {
        let frame = format!("2[\"e\",{}]", nested(depth));
        prop_assert_eq!(refusal(&frame), Some(DecodeError::BadJson));
    }

    // ---- Client events: the contract's bounds ------------------------

    #[test]
    fn event_parse_never_panics(name in prop::sample::select(events::KNOWN_EVENTS.to_vec()), payload in json_value(), fields in json_object()) {
        let _ = events::parse(&[json!(name), payload]);
        let _ = events::parse(&[json!(name), fields]);
    }

    #[test]
    fn ids_are_accepted_exactly_when_they_fit_the_format(text in any::<String>(), good in contract_id()) {
        let valid = (1..=64).contains(&text.len())
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        prop_assert_eq!(crate::ids::is_valid_id(&text), valid);
        let watched = events::parse(&[json!("listing:watch"), json!({ "listingId": text })]);
        prop_assert_eq!(watched.is_ok(), valid);
        match events::parse(&[json!("listing:watch"), json!({ "listingId": good })]) {
            Ok(ClientEvent::ListingWatch { listing_id }) => prop_assert_eq!(listing_id.as_str(), good.as_str()),
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    #[test]
    fn bid_amounts_are_integers_from_0_to_10_to_the_12(amount in prop_oneof![any::<i64>(), -10i64..10, 999_999_999_990i64..1_000_000_000_010], fraction in 0.01f64..0.99) {
        let bid = events::parse(&[json!("bid:place"), json!({ "listingId": "l", "amount": amount })]);
        if (0..=1_000_000_000_000).contains(&amount) {
            prop_assert_eq!(bid, Ok(ClientEvent::BidPlace {
                listing_id: crate::ids::ListingId::parse("l").ok_or_else(|| TestCaseError::fail("id"))?,
                amount,
                idempotency_key: None,
            }));
        } else {
            prop_assert!(matches!(bid, Err(EventError::BadRequest(_))));
        }
        let float = events::parse(&[json!("bid:place"), json!({ "listingId": "l", "amount": amount as f64 + fraction })]);
        prop_assert!(matches!(float, Err(EventError::BadRequest(_))));
    }

    #[test]
    fn message_bodies_are_1_to_4000_characters_and_not_blank(body in ".{0,4100}", blank in "[ \t\n]{1,50}") {
        let len = body.chars().count();
        let sent = events::parse(&[json!("message:send"), json!({ "bookingId": "b", "body": body, "clientMsgId": "c" })]);
        let fits = (1..=4000).contains(&len) && !body.chars().all(char::is_whitespace);
        match sent {
            Ok(ClientEvent::MessageSend { body: kept, .. }) => {
                prop_assert!(fits);
                prop_assert_eq!(kept, body);
            }
            Err(EventError::BadRequest(_)) => prop_assert!(!fits),
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
        let blank = events::parse(&[json!("message:send"), json!({ "bookingId": "b", "body": blank, "clientMsgId": "c" })]);
        prop_assert!(blank.is_err());
    }

    #[test]
    fn presence_lists_hold_1_to_100_ids_deduplicated_in_order(ids in prop::collection::vec("[a-d]{1,2}", 0..130)) {
        let watched = events::parse(&[json!("presence:watch"), json!({ "userIds": ids })]);
        if (1..=100).contains(&ids.len()) {
            let mut expected: Vec<&str> = Vec::new();
            for id in &ids {
                if !expected.contains(&id.as_str()) {
                    expected.push(id);
                }
            }
            match watched {
                Ok(ClientEvent::PresenceWatch { user_ids }) => {
                    let got: Vec<&str> = user_ids.iter().map(|u| u.as_str()).collect();
                    prop_assert_eq!(got, expected);
                }
                other => return Err(TestCaseError::fail(format!("{other:?}"))),
            }
        } else {
            prop_assert!(matches!(watched, Err(EventError::BadRequest(_))));
        }
    }

    #[test]
    fn history_limits_are_1_to_200(limit in prop_oneof![any::<i64>(), -5i64..260]) {
        let asked = events::parse(&[json!("message:history"), json!({ "bookingId": "b", "limit": limit })]);
        match asked {
            Ok(ClientEvent::MessageHistory { limit: got, .. }) => {
                prop_assert!((1..=200).contains(&limit));
                prop_assert_eq!(i64::from(got), limit);
            }
            Err(EventError::BadRequest(_)) => prop_assert!(!(1..=200).contains(&limit)),
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }

    #[test]
    fn unknown_event_names_are_echoed_at_most_64_characters(name in any::<String>()) {
        prop_assume!(!events::KNOWN_EVENTS.contains(&name.as_str()));
        match events::parse(&[json!(name), json!({})]) {
            Err(EventError::Unsupported(echoed)) => {
                prop_assert!(echoed.chars().count() <= 64);
                prop_assert!(name.starts_with(&echoed));
            }
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        }
    }
}
