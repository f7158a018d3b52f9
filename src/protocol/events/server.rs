//! Typed server events (contract §6, `room:left` in docs/DECISIONS.md): the
//! one place that names what souk sends, and the shape of each payload.
//! Rooms, handlers and the session build a [`ServerEvent`]; the fanout and
//! the session encode it. Fields serialize in the order written here, which
//! is the order the contract lists them.

use serde::Serialize;
use serde_json::Value;

use crate::domain::{Availability, Booking, BookingStatus, Listing, Message};
use crate::ids::{BookingId, ListingId, MessageId, UserId};
use crate::protocol::socket;

/// Declares the server events once: each row gives the constant that names
/// the event, its contract name, its variant and its payload's fields.
/// [`ServerEvent`], [`ServerEvent::name`], the name constants and
/// [`SERVER_EVENTS`] come from it.
macro_rules! server_events {
    ($(
        $(#[$doc:meta])*
        $konst:ident = $name:literal => $variant:ident { $($field:ident : $ty:ty),* $(,)? }
    ),* $(,)?) => {
        $(
            #[doc = concat!("`", $name, "`")]
            pub const $konst: &str = $name;
        )*

        /// Every event name souk itself sends (the server API's own
        /// [`CustomEvent`]s aside).
        pub const SERVER_EVENTS: &[&str] = &[$($name),*];

        /// An event souk sends to a room or to one socket.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged, rename_all_fields = "camelCase")]
        pub enum ServerEvent {
            $( $(#[$doc])* $variant { $($field: $ty),* }, )*
            /// An event the marketplace backend emits to a room through the
            /// server API (§8), under a name it chose.
            Custom(CustomEvent),
        }

        impl ServerEvent {
            /// The event's name on the wire.
            pub fn name(&self) -> &str {
                match self {
                    $( ServerEvent::$variant { .. } => $konst, )*
                    ServerEvent::Custom(custom) => &custom.name,
                }
            }
        }
    };
}

server_events! {
    /// The listing as it now is (reserve price left out).
    LISTING_UPDATED = "listing:updated" => ListingUpdated { listing: Listing },
    PRICE_CHANGED = "listing:priceChanged" => PriceChanged {
        listing_id: ListingId,
        price: i64,
        previous_price: i64,
        currency: String,
        version: i64,
    },
    AVAILABILITY_CHANGED = "listing:availabilityChanged" => AvailabilityChanged {
        listing_id: ListingId,
        availability: Availability,
    },
    /// An accepted bid; `bid_id` is the auction version it made.
    BID_NEW = "bid:new" => BidNew {
        listing_id: ListingId,
        bid_id: String,
        amount: i64,
        bidder_id: UserId,
        version: i64,
        ends_at: String,
    },
    /// To the user room of the bidder who lost the lead.
    BID_OUTBID = "bid:outbid" => BidOutbid {
        listing_id: ListingId,
        amount: i64,
        your_amount: i64,
    },
    AUCTION_EXTENDED = "auction:extended" => AuctionExtended {
        listing_id: ListingId,
        ends_at: String,
    },
    /// `winner_id` is null when no bid met the reserve.
    AUCTION_CLOSED = "auction:closed" => AuctionClosed {
        listing_id: ListingId,
        winner_id: Option<UserId>,
        amount: Option<i64>,
        reserve_met: bool,
    },
    BOOKING_CREATED = "booking:created" => BookingCreated { booking: Booking },
    /// `by` is the user (or the backend's `by`) who moved it.
    BOOKING_STATUS_CHANGED = "booking:statusChanged" => BookingStatusChanged {
        booking_id: BookingId,
        status: BookingStatus,
        previous_status: BookingStatus,
        by: String,
    },
    MESSAGE_NEW = "message:new" => MessageNew { message: Message },
    BOOKING_ACTIVITY = "booking:activity" => BookingActivity {
        booking_id: BookingId,
        message_id: MessageId,
        sender_id: UserId,
    },
    /// To the booking room, but the typist.
    TYPING = "typing" => Typing {
        booking_id: BookingId,
        user_id: UserId,
        typing: bool,
    },
    READ_UPDATED = "read:updated" => ReadUpdated {
        booking_id: BookingId,
        user_id: UserId,
        message_id: MessageId,
        read_at: String,
    },
    /// `last_seen` is null for a user never seen.
    PRESENCE_CHANGED = "presence:changed" => PresenceChanged {
        user_id: UserId,
        online: bool,
        last_seen: Option<String>,
    },
    /// From the server API, to one user's room.
    NOTIFICATION = "notification" => Notification { kind: String, data: Value },
    /// A booking moved into or out of `disputed`, to the admins' room.
    DISPUTE_CHANGED = "dispute:changed" => DisputeChanged {
        booking: Booking,
        previous_status: BookingStatus,
        by: String,
    },
    /// To the one socket whose event failed without an ack id, or whose
    /// token expired; `event` is the failed event's name as sent.
    SERVER_ERROR = "server:error" => ServerError {
        code: &'static str,
        message: String,
        event: Option<String>,
    },
    /// To the one socket taken out of a room, and why.
    ROOM_LEFT = "room:left" => RoomLeft { room: String, reason: &'static str },
}

impl ServerEvent {
    /// The payload as JSON.
    pub fn payload(&self) -> Value {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// `42["name",payload`: a room event, for the room log to close with
    /// its offset.
    /// Serialized straight from the event, with no [`Value`] in between.
    pub fn head(&self) -> String {
        socket::encode_serialized(self.name(), self, false)
    }

    /// `42["name",payload]`: an event to one socket, outside any room log.
    pub fn frame(&self) -> String {
        socket::encode_serialized(self.name(), self, true)
    }
}

/// The rule a notification's kind breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("kind must be 1 to 64 characters")]
pub struct BadNotificationKind;

impl ServerEvent {
    /// `notification {kind, data}` for a user's room, from the backend
    /// (the server API, §8, or its queue, §8b): a kind of 1–64 characters.
    pub fn notification(kind: String, data: Value) -> Result<ServerEvent, BadNotificationKind> {
        if (1..=64).contains(&kind.chars().count()) {
            Ok(ServerEvent::Notification { kind, data })
        } else {
            Err(BadNotificationKind)
        }
    }
}

/// An event under a name the backend chose, with its payload as given.
#[derive(Debug, Clone, PartialEq)]
pub struct CustomEvent {
    name: String,
    payload: Value,
}

/// The rule a custom event's name breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event must be 1 to 64 characters without control characters, and not {SERVER_ERROR}")]
pub struct BadEventName;

impl CustomEvent {
    /// The longest custom event name, in characters.
    const MAX_NAME_CHARS: usize = 64;

    /// Checks `name`: 1–64 characters, no control characters, and not
    /// `server:error`, which only souk sends (a client must be able to trust
    /// it). A name souk also uses is allowed: the backend may speak for it.
    pub fn new(name: String, payload: Value) -> Result<Self, BadEventName> {
        let valid = (1..=Self::MAX_NAME_CHARS).contains(&name.chars().count())
            && !name.chars().any(char::is_control)
            && name != SERVER_ERROR;
        if valid {
            Ok(CustomEvent { name, payload })
        } else {
            Err(BadEventName)
        }
    }
}

impl Serialize for CustomEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.payload.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lid() -> ListingId {
        ListingId::parse("l1").unwrap_or_else(|| panic!("test id"))
    }

    fn bid() -> BookingId {
        BookingId::parse("b1").unwrap_or_else(|| panic!("test id"))
    }

    fn uid() -> UserId {
        UserId::parse("u1").unwrap_or_else(|| panic!("test id"))
    }

    fn booking() -> Booking {
        Booking {
            id: bid(),
            listing_id: lid(),
            buyer_id: uid(),
            seller_id: uid(),
            status: BookingStatus::Disputed,
            created_at: "t0".into(),
            updated_at: "t1".into(),
        }
    }

    fn listing() -> Listing {
        Listing {
            id: lid(),
            seller_id: uid(),
            title: "bike".into(),
            price: 100,
            currency: "EUR".into(),
            visibility: crate::domain::Visibility::Public,
            availability: Availability::Available,
            auction: None,
            version: 3,
            updated_at: "t".into(),
        }
    }

    /// One event of every kind, with the payload the contract shows for it.
    fn samples() -> Vec<(ServerEvent, Value)> {
        use ServerEvent::*;
        let message = Message {
            id: MessageId(7),
            booking_id: bid(),
            sender_id: uid(),
            body: "hi".into(),
            client_msg_id: "c".into(),
            created_at: "t".into(),
        };
        vec![
            (
                ListingUpdated { listing: listing() },
                json!({"listing": {"id": "l1", "sellerId": "u1", "title": "bike", "price": 100,
                    "currency": "EUR", "visibility": "public", "availability": "available",
                    "auction": null, "version": 3, "updatedAt": "t"}}),
            ),
            (
                PriceChanged {
                    listing_id: lid(),
                    price: 90,
                    previous_price: 100,
                    currency: "EUR".into(),
                    version: 4,
                },
                json!({"listingId": "l1", "price": 90, "previousPrice": 100, "currency": "EUR", "version": 4}),
            ),
            (
                AvailabilityChanged {
                    listing_id: lid(),
                    availability: Availability::Reserved,
                },
                json!({"listingId": "l1", "availability": "reserved"}),
            ),
            (
                BidNew {
                    listing_id: lid(),
                    bid_id: "5".into(),
                    amount: 10,
                    bidder_id: uid(),
                    version: 5,
                    ends_at: "e".into(),
                },
                json!({"listingId": "l1", "bidId": "5", "amount": 10, "bidderId": "u1", "version": 5, "endsAt": "e"}),
            ),
            (
                BidOutbid {
                    listing_id: lid(),
                    amount: 10,
                    your_amount: 9,
                },
                json!({"listingId": "l1", "amount": 10, "yourAmount": 9}),
            ),
            (
                AuctionExtended {
                    listing_id: lid(),
                    ends_at: "e".into(),
                },
                json!({"listingId": "l1", "endsAt": "e"}),
            ),
            (
                AuctionClosed {
                    listing_id: lid(),
                    winner_id: None,
                    amount: None,
                    reserve_met: false,
                },
                json!({"listingId": "l1", "winnerId": null, "amount": null, "reserveMet": false}),
            ),
            (
                BookingCreated { booking: booking() },
                json!({"booking": {"id": "b1", "listingId": "l1", "buyerId": "u1", "sellerId": "u1",
                    "status": "disputed", "createdAt": "t0", "updatedAt": "t1"}}),
            ),
            (
                BookingStatusChanged {
                    booking_id: bid(),
                    status: BookingStatus::Confirmed,
                    previous_status: BookingStatus::Requested,
                    by: "u1".into(),
                },
                json!({"bookingId": "b1", "status": "confirmed", "previousStatus": "requested", "by": "u1"}),
            ),
            (
                MessageNew { message },
                json!({"message": {"id": "7", "bookingId": "b1", "senderId": "u1", "body": "hi",
                    "clientMsgId": "c", "createdAt": "t"}}),
            ),
            (
                BookingActivity {
                    booking_id: bid(),
                    message_id: MessageId(7),
                    sender_id: uid(),
                },
                json!({"bookingId": "b1", "messageId": "7", "senderId": "u1"}),
            ),
            (
                Typing {
                    booking_id: bid(),
                    user_id: uid(),
                    typing: true,
                },
                json!({"bookingId": "b1", "userId": "u1", "typing": true}),
            ),
            (
                ReadUpdated {
                    booking_id: bid(),
                    user_id: uid(),
                    message_id: MessageId(7),
                    read_at: "r".into(),
                },
                json!({"bookingId": "b1", "userId": "u1", "messageId": "7", "readAt": "r"}),
            ),
            (
                PresenceChanged {
                    user_id: uid(),
                    online: false,
                    last_seen: None,
                },
                json!({"userId": "u1", "online": false, "lastSeen": null}),
            ),
            (
                Notification {
                    kind: "k".into(),
                    data: json!({"x": 1}),
                },
                json!({"kind": "k", "data": {"x": 1}}),
            ),
            (
                DisputeChanged {
                    booking: booking(),
                    previous_status: BookingStatus::Confirmed,
                    by: "u1".into(),
                },
                json!({"booking": {"id": "b1", "listingId": "l1", "buyerId": "u1", "sellerId": "u1",
                    "status": "disputed", "createdAt": "t0", "updatedAt": "t1"},
                    "previousStatus": "confirmed", "by": "u1"}),
            ),
            (
                ServerError {
                    code: "bad_request",
                    message: "m".into(),
                    event: None,
                },
                json!({"code": "bad_request", "message": "m", "event": null}),
            ),
            (
                RoomLeft {
                    room: "listing:l1".into(),
                    reason: "reauthorized",
                },
                json!({"room": "listing:l1", "reason": "reauthorized"}),
            ),
        ]
    }

    #[test]
    fn names_are_the_contracts() {
        // §6's table, in its order, then `room:left` (docs/DECISIONS.md).
        let contract = [
            "listing:updated",
            "listing:priceChanged",
            "listing:availabilityChanged",
            "bid:new",
            "bid:outbid",
            "auction:extended",
            "auction:closed",
            "booking:created",
            "booking:statusChanged",
            "message:new",
            "booking:activity",
            "typing",
            "read:updated",
            "presence:changed",
            "notification",
            "dispute:changed",
            "server:error",
            "room:left",
        ];
        assert_eq!(SERVER_EVENTS, contract);
        let named: Vec<String> = samples()
            .iter()
            .map(|(event, _)| event.name().to_owned())
            .collect();
        assert_eq!(named, contract);
    }

    #[test]
    fn payloads_serialize_as_the_contract_shows_them_in_its_field_order() {
        for (event, expected) in samples() {
            // The frame's text, not only its value: field order is the wire's.
            let frame = event.frame();
            let name = event.name();
            assert_eq!(frame, format!("42[\"{name}\",{expected}]"), "{name}");
            assert_eq!(event.head(), format!("42[\"{name}\",{expected}"), "{name}");
        }
    }

    #[test]
    fn frames_serialized_straight_match_those_made_through_a_value() {
        // `head` and `frame` no longer build a `Value`; the bytes must not
        // change, escapes and non-ASCII text included.
        let mut events: Vec<ServerEvent> = samples().into_iter().map(|(e, _)| e).collect();
        events.push(ServerEvent::MessageNew {
            message: Message {
                id: MessageId(i64::MAX),
                booking_id: bid(),
                sender_id: uid(),
                body: "quote \" slash \\ newline \n tab \t nul \u{0} é 😀 </script>".into(),
                client_msg_id: "c\u{1f}".into(),
                created_at: "t".into(),
            },
        });
        let custom = CustomEvent::new("a\"b".into(), json!({"z": 1, "a": [1.5, null]}));
        events.push(ServerEvent::Custom(
            custom.unwrap_or_else(|err| panic!("{err}")),
        ));
        for event in events {
            let (name, payload) = (event.name(), event.payload());
            assert_eq!(event.head(), socket::encode_event_head(name, &payload));
            assert_eq!(event.frame(), socket::encode_event(name, &payload, None));
        }
    }

    #[test]
    fn custom_events_carry_their_name_and_payload_as_given() {
        let custom = CustomEvent::new("deal:of:the:day".into(), json!([1, {"b": 2, "a": 1}]));
        let event = ServerEvent::Custom(custom.unwrap_or_else(|err| panic!("{err}")));
        assert_eq!(event.name(), "deal:of:the:day");
        assert_eq!(event.frame(), r#"42["deal:of:the:day",[1,{"b":2,"a":1}]]"#);
        // Souk's own names are the backend's to use too.
        assert!(CustomEvent::new("listing:updated".into(), json!({})).is_ok());
        assert!(CustomEvent::new("é".repeat(64), json!(null)).is_ok());
    }

    #[test]
    fn custom_event_names_are_bounded_and_never_server_error() {
        for name in [
            String::new(),
            "x".repeat(65),
            "a\nb".into(),
            "a\u{0}".into(),
            "server:error".into(),
        ] {
            assert_eq!(
                CustomEvent::new(name.clone(), json!({})),
                Err(BadEventName),
                "{name:?}"
            );
        }
        assert_eq!(
            BadEventName.to_string(),
            "event must be 1 to 64 characters without control characters, and not server:error"
        );
    }
}
