//! HTTP routes: the server API for the marketplace backend (§8), health and
//! metrics, dev tokens, and the Socket.IO endpoint.

mod dev;
mod health;
mod service_auth;
mod users;

use actix_web::{web, HttpRequest};

use crate::error::{Code, Failure};

pub use service_auth::ServiceCaller;

/// The largest JSON body the server API reads.
const MAX_JSON_BODY: usize = 256 * 1024;

/// Mounts every route.
pub fn configure(cfg: &mut web::ServiceConfig, dev: bool) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(MAX_JSON_BODY)
            .error_handler(json_error),
    )
    .app_data(
        web::PathConfig::default().error_handler(|err, _| {
            Failure::new(Code::BadRequest, format!("bad path: {err}")).into()
        }),
    )
    .route("/healthz", web::get().to(health::healthz))
    .route("/readyz", web::get().to(health::readyz))
    .route("/metrics", web::get().to(health::metrics))
    .route("/socket.io/", web::get().to(crate::session::socket_io))
    .service(
        web::scope("/api/v1").route("/users/{id}/notifications", web::post().to(users::notify)),
    );
    if dev {
        cfg.route("/dev/token", web::post().to(dev::token));
    }
}

/// Maps body errors to the contract's JSON errors: too large is 413,
/// unparseable is 400, well-formed but wrongly shaped is 422.
fn json_error(err: actix_web::error::JsonPayloadError, _: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    let failure = match &err {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            Failure::new(Code::PayloadTooLarge, "body too large")
        }
        JsonPayloadError::ContentType => {
            Failure::new(Code::BadRequest, "content type must be application/json")
        }
        JsonPayloadError::Deserialize(inner) if inner.is_data() => {
            Failure::new(Code::Unprocessable, format!("invalid body: {inner}"))
        }
        other => Failure::new(Code::BadRequest, format!("invalid JSON body: {other}")),
    };
    failure.into()
}
