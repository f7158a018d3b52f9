//! HTTP routes: the server API for the marketplace backend (§8), health and
//! metrics, dev tokens, and the Socket.IO endpoint.

mod bookings;
mod demo;
mod dev;
mod health;
mod listings;
mod reads;
mod rooms;
mod service_auth;
mod users;

use actix_web::{web, HttpRequest};

use crate::error::{Code, Failure};
use crate::ids::ID_RULE;
use crate::settings::Settings;

pub use service_auth::ServiceCaller;

/// The largest JSON body the server API reads.
const MAX_JSON_BODY: usize = 256 * 1024;

/// Mounts every route, and the web front last so it never hides one.
pub fn configure(cfg: &mut web::ServiceConfig, settings: &Settings) {
    // Before `/api/v1`, whose scope would answer 404 for paths it does not know.
    reads::mount(cfg);
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
    .service(
        web::resource("/socket.io/")
            .wrap(actix_web::middleware::from_fn(crate::cors::socket_io))
            .route(web::get().to(crate::session::socket_io))
            .route(web::post().to(crate::session::socket_io_post)),
    )
    .service(
        web::scope("/api/v1")
            .route("/listings/{id}", web::put().to(listings::put))
            .route("/listings/{id}", web::get().to(listings::get))
            .route("/bookings/{id}", web::get().to(bookings::get))
            .route(
                "/bookings/{id}/transitions",
                web::post().to(bookings::transition),
            )
            .route("/bookings/{id}/messages", web::get().to(bookings::messages))
            .route("/rooms/{room}/events", web::post().to(rooms::emit))
            .route("/users/{id}/notifications", web::post().to(users::notify))
            .route("/presence", web::get().to(rooms::presence))
            .route("/cluster", web::get().to(rooms::cluster)),
    );
    if settings.dev {
        cfg.route("/dev/", web::get().to(dev::info))
            .route("/dev/token", web::post().to(dev::token))
            .route("/dev/listings", web::get().to(demo::listings))
            .route("/dev/bookings", web::get().to(demo::bookings))
            .route("/dev/bookings/{id}", web::get().to(demo::booking));
    }
    if let Some(dir) = &settings.static_dir {
        // GET and HEAD only: any other method falls through to 404, as it
        // did before the front was served.
        let read = actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head());
        cfg.service(
            web::scope("").wrap(page_headers()).service(
                actix_files::Files::new("/", dir)
                    .index_file("index.html")
                    .guard(read),
            ),
        );
    }
}

/// The policy of the web front's pages: scripts, styles, images and
/// connections (Socket.IO, fetch) from this origin only, no inline script,
/// no plugins, and no framing by another site (clickjacking).
pub const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// Security headers on every file of the web front.
fn page_headers() -> actix_web::middleware::DefaultHeaders {
    actix_web::middleware::DefaultHeaders::new()
        .add(("Content-Security-Policy", PAGE_CSP))
        .add(("X-Frame-Options", "DENY"))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "same-origin"))
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

/// A well-formed body or query whose fields break the contract (422).
fn bad_field(message: impl Into<String>) -> Failure {
    Failure::new(Code::Unprocessable, message)
}

/// A typed id from a path segment, or 400 naming what it should be.
fn path_id<T: PathId>(text: &str, what: &str) -> Result<T, Failure> {
    T::parse_id(text)
        .ok_or_else(|| Failure::new(Code::BadRequest, format!("{what} must be {ID_RULE}")))
}

/// Ids that come in URL paths.
trait PathId: Sized {
    fn parse_id(text: &str) -> Option<Self>;
}

impl PathId for crate::ids::ListingId {
    fn parse_id(text: &str) -> Option<Self> {
        Self::parse(text)
    }
}

impl PathId for crate::ids::BookingId {
    fn parse_id(text: &str) -> Option<Self> {
        Self::parse(text)
    }
}
