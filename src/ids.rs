//! Typed ids, so that a booking id can never stand where a listing id belongs.
//! Every id is 1–64 characters of `[A-Za-z0-9_-]` (contract §2).

use std::fmt;

use crate::protocol::events::is_valid_id;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Checks `text` against the contract's id format.
            pub fn parse(text: &str) -> Option<Self> {
                is_valid_id(text).then(|| Self(text.to_owned()))
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
    };
}

id_type!(
    /// A user: the `sub` of their token.
    UserId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_contract_ids() {
        assert_eq!(
            UserId::parse("u-1").map(|u| u.to_string()),
            Some("u-1".into())
        );
        assert_eq!(UserId::parse(""), None);
        assert_eq!(UserId::parse("a/b"), None);
    }
}
