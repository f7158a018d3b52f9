//! `/socket.io/`: checks the Engine.IO query and hands the request to its
//! transport: a new WebSocket session, a WebSocket upgrading a polling
//! session, or a long-polling GET or POST.

use std::collections::HashMap;

use actix::Actor;
use actix_web::{web, HttpRequest, HttpResponse};

use super::guard::{self, HandshakeSlot};
use super::{polling, reason, websocket, Directory, End, Session};
use crate::error::{Code, Failure};
use crate::state::AppState;

/// The Engine.IO protocol version souk speaks.
const EIO_VERSION: &str = "4";

/// What the query asks for.
enum Transport {
    WebSocket,
    Polling,
}

/// Checks `EIO` and `transport`; answers them with the `sid`, if any.
fn read_query(req: &HttpRequest) -> Result<(Transport, Option<String>), Failure> {
    let mut query = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|_| Failure::new(Code::BadRequest, "malformed query string"))?
        .into_inner();
    if query.get("EIO").map(String::as_str) != Some(EIO_VERSION) {
        return Err(Failure::new(
            Code::BadRequest,
            "unsupported Engine.IO protocol version: souk speaks EIO=4",
        ));
    }
    let transport = match query.get("transport").map(String::as_str) {
        Some("websocket") => Transport::WebSocket,
        Some("polling") if query.contains_key("j") => {
            return Err(Failure::new(
                Code::Unsupported,
                "JSONP polling is not served",
            ))
        }
        Some("polling") => Transport::Polling,
        _ => return Err(Failure::new(Code::BadRequest, "unknown transport")),
    };
    Ok((transport, query.remove("sid")))
}

/// The token of an `Authorization: Bearer` header, for a CONNECT without one.
fn header_token(req: &HttpRequest) -> Option<String> {
    crate::auth::bearer_token(req).map(str::to_owned)
}

/// Admits a new session, or refuses it: when its address opened too many
/// lately, while the node holds its maximum of connections, or while it
/// holds its maximum of sessions that have not CONNECTed yet (so that
/// unauthenticated opens cannot fill the connection cap). The slot holds
/// the session's place among those until it CONNECTs.
fn admit(
    app: &AppState,
    directory: &Directory,
    req: &HttpRequest,
) -> Result<HandshakeSlot, Failure> {
    let guard = &app.settings.guard;
    if let Some(addr) = guard::client_addr(req, &guard.trusted_proxies) {
        if let Err(wait) = directory.opens.take(addr, guard.opens_per_addr) {
            trip(app, "opens_per_addr");
            return Err(guard::rate_limited(
                "this address opened too many connections: try again later",
                wait,
            ));
        }
    }
    let max = app.settings.max_connections;
    let open = usize::try_from(app.metrics.connections.get()).unwrap_or(0);
    if open >= max {
        app.metrics.refused_connections.inc();
        return Err(Failure::new(
            Code::ServiceUnavailable,
            format!("this node holds its limit of {max} connections: try again later"),
        ));
    }
    let cap = guard.handshake_cap(max);
    directory.handshakes.enter(cap).ok_or_else(|| {
        trip(app, "handshakes");
        Failure::new(
            Code::ServiceUnavailable,
            format!(
                "this node holds its limit of {cap} connections yet to CONNECT: try again later"
            ),
        )
    })
}

/// Counts a tripped bound.
fn trip(app: &AppState, limit: &str) {
    app.metrics.limits_tripped.with_label_values(&[limit]).inc();
}

/// The session a request names.
fn find(directory: &Directory, sid: &str) -> Result<actix::Addr<Session>, Failure> {
    directory
        .get(sid)
        .ok_or_else(|| Failure::new(Code::BadRequest, "unknown sid: no such session here"))
}

/// `GET /socket.io/`: opens a session, upgrades one, or polls one.
pub async fn socket_io(
    req: HttpRequest,
    stream: web::Payload,
    app: web::Data<AppState>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, Failure> {
    let (transport, sid) = read_query(&req)?;
    let max_payload = app.settings.max_payload;
    match (transport, sid) {
        (Transport::WebSocket, None) => {
            let slot = admit(&app, &directory, &req)?;
            let session = Session::new(
                app.into_inner(),
                directory.into_inner(),
                header_token(&req),
                false,
                slot,
            )
            .start();
            let response = websocket::start(session.clone(), false, max_payload, &req, stream);
            if response.is_err() {
                session.do_send(End(reason::TRANSPORT_ERROR));
            }
            response
        }
        (Transport::WebSocket, Some(sid)) => {
            let session = find(&directory, &sid)?;
            websocket::start(session, true, max_payload, &req, stream)
        }
        (Transport::Polling, None) => {
            let slot = admit(&app, &directory, &req)?;
            let session = Session::new(
                app.into_inner(),
                directory.into_inner(),
                header_token(&req),
                true,
                slot,
            )
            .start();
            polling::get(session).await
        }
        (Transport::Polling, Some(sid)) => polling::get(find(&directory, &sid)?).await,
    }
}

/// `POST /socket.io/`: packets from a long-polling client.
pub async fn socket_io_post(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<AppState>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, Failure> {
    let (transport, sid) = read_query(&req)?;
    let Transport::Polling = transport else {
        return Err(Failure::new(
            Code::BadRequest,
            "POST is for transport=polling only",
        ));
    };
    let sid = sid.ok_or_else(|| Failure::new(Code::BadRequest, "a POST must name its sid"))?;
    polling::post(find(&directory, &sid)?, body, app.settings.max_payload).await
}
