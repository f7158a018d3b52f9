//! `GET /socket.io/`: checks the Engine.IO query and upgrades to a session.

use std::collections::HashMap;

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use super::Session;
use crate::error::{Code, Failure};
use crate::state::AppState;

/// The Engine.IO protocol version souk speaks.
const EIO_VERSION: &str = "4";

/// Upgrades an Engine.IO v4 WebSocket request into a [`Session`].
pub async fn socket_io(
    req: HttpRequest,
    stream: web::Payload,
    app: web::Data<AppState>,
) -> Result<HttpResponse, Failure> {
    let query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|_| Failure::new(Code::BadRequest, "malformed query string"))?;
    if query.get("EIO").map(String::as_str) != Some(EIO_VERSION) {
        return Err(Failure::new(
            Code::BadRequest,
            "unsupported Engine.IO protocol version: souk speaks EIO=4",
        ));
    }
    match query.get("transport").map(String::as_str) {
        Some("websocket") => {}
        Some("polling") => {
            return Err(Failure::new(
                Code::Unsupported,
                "transport polling is not served yet: use transports: [\"websocket\"]",
            ))
        }
        _ => return Err(Failure::new(Code::BadRequest, "unknown transport")),
    }
    if query.contains_key("sid") {
        return Err(Failure::new(
            Code::BadRequest,
            "unknown sid: no polling session to upgrade",
        ));
    }
    let header_token = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_owned());
    let max_payload = app.settings.max_payload;
    let session = Session::new(app.into_inner(), header_token);
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(max_payload)
        .start()
        .map_err(|err| Failure::new(Code::BadRequest, format!("not a WebSocket upgrade: {err}")))
}
