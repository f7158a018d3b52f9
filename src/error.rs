//! The contract's failures (§3), mapped once to ack payloads and HTTP statuses.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{json, Map, Value};

use crate::protocol::events::EventError;
use crate::store::{Refusal, StoreError};

/// The contract's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    RateLimited,
    Unavailable,
    AuctionClosed,
    BidTooLow,
    InvalidTransition,
    Unsupported,
    ServiceUnavailable,
    PayloadTooLarge,
    /// A well-formed request whose fields break the contract (HTTP 422).
    Unprocessable,
    Internal,
}

impl Code {
    /// The code as the wire shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::BadRequest | Code::PayloadTooLarge | Code::Unprocessable => "bad_request",
            Code::Unauthorized => "unauthorized",
            Code::Forbidden => "forbidden",
            Code::NotFound => "not_found",
            Code::Conflict => "conflict",
            Code::RateLimited => "rate_limited",
            Code::Unavailable => "unavailable",
            Code::AuctionClosed => "auction_closed",
            Code::BidTooLow => "bid_too_low",
            Code::InvalidTransition => "invalid_transition",
            Code::Unsupported => "unsupported",
            Code::ServiceUnavailable => "service_unavailable",
            Code::Internal => "internal",
        }
    }

    /// The HTTP status the server API answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Code::BadRequest | Code::Unsupported => StatusCode::BAD_REQUEST,
            Code::Unauthorized => StatusCode::UNAUTHORIZED,
            Code::Forbidden => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Conflict | Code::InvalidTransition | Code::Unavailable => StatusCode::CONFLICT,
            Code::AuctionClosed | Code::BidTooLow | Code::Unprocessable => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Code::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Code::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A refused event or request: a code, a short message for the client, and
/// any extra fields the code carries (`retryAfterMs`, `minAmount`).
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub code: Code,
    pub message: String,
    pub extra: Map<String, Value>,
}

impl Failure {
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
            extra: Map::new(),
        }
    }

    /// `{"code","message",…extra}`.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("code".into(), json!(self.code.as_str()));
        body.insert("message".into(), json!(self.message));
        body.extend(self.extra.clone());
        Value::Object(body)
    }

    /// The ack payload `{"ok":false,"error":{…}}`, serialized as it is
    /// written into the frame (no `Value` built for it: half the answers
    /// to bids in a busy auction are refusals).
    pub fn ack(&self) -> FailureAck<'_> {
        FailureAck(self)
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl ResponseError for Failure {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(json!({ "error": self.body() }))
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        match &err {
            StoreError::NotFound => Failure::new(Code::NotFound, "not found"),
            StoreError::Refused(refusal) => Failure::from(*refusal),
            StoreError::Unavailable { .. } | StoreError::TimedOut(_) => {
                log::warn!("{err}");
                Failure::new(
                    Code::ServiceUnavailable,
                    "a store is unavailable; nothing was written",
                )
            }
            StoreError::Internal { .. } => {
                log::error!("{err}");
                Failure::new(Code::Internal, "internal error")
            }
        }
    }
}

/// Each domain refusal's code and the message the client sees.
impl From<Refusal> for Failure {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::NotAParty => Failure::new(
                Code::Forbidden,
                "only this booking's buyer and seller (and admins) may do that",
            ),
            Refusal::NotAParticipant => Failure::new(Code::Forbidden, "not a participant"),
            Refusal::InvalidTransition { from, to } => Failure::new(
                Code::InvalidTransition,
                format!("a booking cannot move from {from} to {to}"),
            ),
            Refusal::NotYourMove { from, to } => Failure::new(
                Code::Forbidden,
                format!("you may not move this booking from {from} to {to}"),
            ),
            Refusal::SellerOwnListing => {
                Failure::new(Code::Forbidden, "sellers cannot reserve their own listing")
            }
            Refusal::ListingPrivate => Failure::new(Code::Forbidden, "this listing is private"),
            Refusal::AuctionNotReservable => {
                Failure::new(Code::Unavailable, "auction listings are won by bidding")
            }
            Refusal::NotAnAuction => Failure::new(Code::Unavailable, "not an auction"),
            Refusal::KeyReused => Failure::new(
                Code::Conflict,
                "idempotencyKey was used for another listing",
            ),
            Refusal::SellerChanged => Failure::new(
                Code::Conflict,
                "sellerId of an existing listing cannot change",
            ),
            Refusal::Duplicate => Failure::new(Code::Conflict, "already exists"),
            Refusal::MessageNotInBooking => {
                Failure::new(Code::NotFound, "no such message in this booking")
            }
        }
    }
}

impl From<EventError> for Failure {
    fn from(err: EventError) -> Self {
        match err {
            EventError::Unsupported(name) => {
                Failure::new(Code::Unsupported, format!("unknown event {name:?}"))
            }
            EventError::BadRequest(message) => Failure::new(Code::BadRequest, message),
        }
    }
}

/// The ack payload `{"ok":false,"error":{"code","message",…extra}}`.
pub struct FailureAck<'a>(&'a Failure);

impl Serialize for FailureAck<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut ack = serializer.serialize_map(Some(2))?;
        ack.serialize_entry("ok", &false)?;
        ack.serialize_entry("error", &FailureBody(self.0))?;
        ack.end()
    }
}

/// `{"code","message",…extra}`, as [`Failure::body`] builds it.
struct FailureBody<'a>(&'a Failure);

impl Serialize for FailureBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let failure = self.0;
        let mut body = serializer.serialize_map(Some(2 + failure.extra.len()))?;
        body.serialize_entry("code", failure.code.as_str())?;
        body.serialize_entry("message", &failure.message)?;
        for (key, value) in &failure.extra {
            body.serialize_entry(key, value)?;
        }
        body.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_s_ack_is_written_into_the_frame_in_order() {
        use crate::protocol::socket::encode_ack;
        let mut failure = Failure::new(Code::BidTooLow, "the lowest acceptable bid is 130");
        failure.extra.insert("minAmount".into(), json!(130));
        assert_eq!(
            encode_ack(13, &failure.ack()),
            r#"4313[{"ok":false,"error":{"code":"bid_too_low","message":"the lowest acceptable bid is 130","minAmount":130}}]"#
        );
    }

    #[test]
    fn acks_follow_the_contract() {
        let mut failure = Failure::new(Code::RateLimited, "slow down");
        failure.extra.insert("retryAfterMs".into(), json!(200));
        assert_eq!(
            json!(failure.ack()),
            json!({"ok":false,"error":{"code":"rate_limited","message":"slow down","retryAfterMs":200}})
        );
    }

    #[test]
    fn store_errors_map_to_contract_codes() {
        let down = Failure::from(StoreError::unavailable("x"));
        assert_eq!(down.code.as_str(), "service_unavailable");
        assert_eq!(down.code.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(Failure::from(StoreError::NotFound).code, Code::NotFound);
    }

    #[test]
    fn refusals_keep_their_wire_code_and_message() {
        use crate::domain::BookingStatus;
        let moved = Failure::from(StoreError::from(Refusal::InvalidTransition {
            from: BookingStatus::Completed,
            to: BookingStatus::Requested,
        }));
        assert_eq!(moved.code, Code::InvalidTransition);
        assert_eq!(
            moved.message,
            "a booking cannot move from completed to requested"
        );
        let bid = Failure::from(StoreError::from(Refusal::NotAnAuction));
        assert_eq!(
            (bid.code, bid.message.as_str()),
            (Code::Unavailable, "not an auction")
        );
    }
}
