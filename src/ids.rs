//! Typed ids, so that a booking id can never stand where a listing id belongs.
//! Every id follows one rule ([`ID_RULE`], contract §2), checked here only.

use std::fmt;
use std::sync::Arc;

/// The longest id the contract allows.
pub const MAX_ID_LEN: usize = 64;

/// The contract's id rule, as error messages state it after a field's name.
pub const ID_RULE: &str = "1-64 characters of [A-Za-z0-9_-]";

/// Whether `text` is a contract id (see [`ID_RULE`]).
pub fn is_valid_id(text: &str) -> bool {
    (1..=MAX_ID_LEN).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// An id's text is shared by its clones: a connection's user id is kept by
/// its session, its rooms, the registry and presence, and each copy of a
/// `String` was a heap block of its own (docs/BENCHMARKS.md, issue 13: an
/// idle connection's memory).
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Checks `text` against the contract's id format.
            pub fn parse(text: &str) -> Option<Self> {
                is_valid_id(text).then(|| Self(Arc::from(text)))
            }

            /// An id read back from Postgres, where it was checked on the way in.
            pub(crate) fn from_db(text: String) -> Self {
                Self(Arc::from(text))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A user: the `sub` of their token.
    UserId
);

id_type!(
    /// A listing, as the marketplace names it.
    ListingId
);

id_type!(
    /// A booking: named by the marketplace, or by souk for reservations.
    BookingId
);

/// A chat message: a Postgres sequence number, shown on the wire as a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub i64);

impl MessageId {
    /// Parses the wire form: a contract id made only of digits, above zero.
    pub fn parse(text: &str) -> Option<Self> {
        if !is_valid_id(text) || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        text.parse::<i64>().ok().filter(|n| *n > 0).map(MessageId)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A room name; built from typed ids on the server, never taken from a client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RoomKey {
    /// `listing:{id}`: a listing page's watchers.
    Listing(ListingId),
    /// `booking:{id}`: a booking's thread.
    Booking(BookingId),
    /// `user:{id}`: every connection of one user.
    User(UserId),
    /// `presence:{id}`: those who watch one user's online state.
    Presence(UserId),
    /// `admin:disputes`: admins who watch bookings move into and out of
    /// `disputed`.
    AdminDisputes,
}

/// The name of the admins' dispute room.
const ADMIN_DISPUTES: &str = "admin:disputes";

impl RoomKey {
    /// The room kind, as the `souk_rooms{kind}` label.
    pub fn kind(&self) -> &'static str {
        match self {
            RoomKey::Listing(_) => "listing",
            RoomKey::Booking(_) => "booking",
            RoomKey::User(_) => "user",
            RoomKey::Presence(_) => "presence",
            RoomKey::AdminDisputes => "admin",
        }
    }

    /// Parses `kind:id` (the server API names rooms this way).
    pub fn parse(text: &str) -> Option<RoomKey> {
        if text == ADMIN_DISPUTES {
            return Some(RoomKey::AdminDisputes);
        }
        let (kind, id) = text.split_once(':')?;
        match kind {
            "listing" => ListingId::parse(id).map(RoomKey::Listing),
            "booking" => BookingId::parse(id).map(RoomKey::Booking),
            "user" => UserId::parse(id).map(RoomKey::User),
            "presence" => UserId::parse(id).map(RoomKey::Presence),
            _ => None,
        }
    }
}

impl fmt::Display for RoomKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RoomKey::Listing(id) => write!(f, "listing:{id}"),
            RoomKey::Booking(id) => write!(f, "booking:{id}"),
            RoomKey::User(id) => write!(f, "user:{id}"),
            RoomKey::Presence(id) => write!(f, "presence:{id}"),
            RoomKey::AdminDisputes => f.write_str(ADMIN_DISPUTES),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_s_clones_share_its_text_and_it_serializes_as_a_string() {
        let Some(user) = UserId::parse("u-1") else {
            panic!("a valid id refused");
        };
        let kept = user.clone();
        assert!(std::ptr::eq(user.as_str(), kept.as_str()));
        assert_eq!(
            serde_json::to_string(&kept).ok().as_deref(),
            Some(r#""u-1""#)
        );
        let booking = BookingId::from_db("b_2".to_owned());
        assert_eq!(
            serde_json::to_string(&booking).ok().as_deref(),
            Some(r#""b_2""#)
        );
    }

    #[test]
    fn the_rule_text_names_the_checked_length() {
        assert!(ID_RULE.starts_with(&format!("1-{MAX_ID_LEN} ")));
        assert!(is_valid_id(&"a".repeat(MAX_ID_LEN)));
        assert!(!is_valid_id(&"a".repeat(MAX_ID_LEN + 1)));
    }

    #[test]
    fn ids_follow_the_contract() {
        assert!(is_valid_id("a"));
        assert!(is_valid_id("user_1-B"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("a:b"));
        assert!(!is_valid_id("é"));
        assert!(!is_valid_id("../x"));
    }

    #[test]
    fn parses_only_contract_ids() {
        assert_eq!(
            UserId::parse("u-1").map(|u| u.to_string()),
            Some("u-1".into())
        );
        assert_eq!(UserId::parse(""), None);
        assert_eq!(UserId::parse("a/b"), None);
    }

    #[test]
    fn message_ids_are_positive_numbers_shown_as_strings() {
        assert_eq!(MessageId::parse("42"), Some(MessageId(42)));
        assert_eq!(MessageId::parse("0"), None);
        assert_eq!(MessageId::parse("-1"), None);
        assert_eq!(MessageId::parse("4x"), None);
        assert_eq!(MessageId::parse("99999999999999999999"), None);
        assert_eq!(
            serde_json::to_string(&MessageId(7)).ok().as_deref(),
            Some("\"7\"")
        );
    }

    #[test]
    fn room_names_round_trip_and_refuse_junk() {
        for name in [
            "listing:l1",
            "booking:b-2",
            "user:u_3",
            "presence:u4",
            "admin:disputes",
        ] {
            assert_eq!(
                RoomKey::parse(name).map(|k| k.to_string()).as_deref(),
                Some(name)
            );
        }
        for bad in [
            "",
            "listing",
            "listing:",
            "auction:x",
            "user:a b",
            "user:a:b",
            "admin:other",
            "admin:",
        ] {
            assert_eq!(RoomKey::parse(bad), None, "{bad}");
        }
    }
}
