//! CORS for `/socket.io/` and the user reads (§8a): a page on another
//! origin can long-poll and read only when the node names that origin
//! (`SOUK_CORS_ORIGINS`). WebSockets need no CORS; the rest of the HTTP API
//! is for backends, not browsers.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, Error, HttpResponse};

use crate::settings::Settings;
use crate::state::AppState;

/// How long a browser may cache a preflight answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// Answers preflights and marks answers to allowed origins.
pub async fn socket_io(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let allowed = req
        .app_data::<web::Data<AppState>>()
        .and_then(|app| allowed_origin(req.headers(), &app.settings));
    let mut res = if req.method() == Method::OPTIONS {
        let mut preflight = HttpResponse::NoContent().finish();
        if allowed.is_some() {
            let headers = preflight.headers_mut();
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, POST"),
            );
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static("authorization, content-type"),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(PREFLIGHT_MAX_AGE),
            );
        }
        req.into_response(preflight)
    } else {
        next.call(req).await?.map_into_boxed_body()
    };
    if let Some(origin) = allowed {
        mark(res.headers_mut(), origin);
    }
    Ok(res)
}

/// The request's `Origin`, from its `headers`, when the node allows it.
pub fn allowed_origin(headers: &HeaderMap, settings: &Settings) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    settings
        .cors_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed == text)
        .then(|| origin.clone())
}

/// Marks an answer's `headers` as readable by the page of `origin`.
pub fn mark(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}
