//! `/socket.io/`: checks the Engine.IO query and hands the request to its
//! transport: a new WebSocket session, a WebSocket upgrading a polling
//! session, or a long-polling GET or POST. Long-polling requests on a
//! connection that started with one arrive through the engine's front door
//! ([`SocketIo`]), WebSocket upgrades through the HTTP server's upgrade
//! hook (which hands them to [`SocketIo`] too), and the rest (polling on a
//! connection that started otherwise, chunked bodies, HTTP/1.0) through
//! the App: all answered by the same code.

use std::collections::HashMap;
use std::future::Future;

use actix::{Actor, Addr};
use actix_http::ws;
use actix_web::dev::RequestHead;
use actix_web::http::header::HeaderValue;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::oneshot;

use super::guard::{self, HandshakeSlot};
use super::{polling, reason, websocket, Directory, End, Session};
use crate::cors;
use crate::engine::eio::longpoll::NOT_POLLING;
use crate::engine::eio::LongPoll;
use crate::engine::front;
use crate::error::{Code, Failure};
use crate::state::AppState;

/// Where Socket.IO is served.
const PATH: &str = "/socket.io/";

/// The Engine.IO protocol version souk speaks.
const EIO_VERSION: &str = "4";

/// What the query asks for.
enum Transport {
    WebSocket,
    Polling,
}

/// Checks `EIO` and `transport`; answers them with the `sid`, if any.
fn read_query(query: &str) -> Result<(Transport, Option<String>), Failure> {
    let mut query = web::Query::<HashMap<String, String>>::from_query(query)
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
fn header_token(head: &RequestHead) -> Option<String> {
    crate::auth::bearer_token(head.headers()).map(str::to_owned)
}

/// Admits a new session, or refuses it: when its address opened too many
/// lately, while the node holds its maximum of connections, or while it
/// holds its maximum of sessions that have not CONNECTed yet (so that
/// unauthenticated opens cannot fill the connection cap). The slot holds
/// the session's place among those until it CONNECTs.
fn admit(
    app: &AppState,
    directory: &Directory,
    head: &RequestHead,
) -> Result<HandshakeSlot, Failure> {
    let guard = &app.settings.guard;
    if let Some(addr) = guard::client_addr(head, &guard.trusted_proxies) {
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

/// Admits and starts a new session, opened by long-polling (`polling`) or
/// on a WebSocket: its address, and its long-polling queue when it polls
/// (where the handshake GET takes the open packet).
fn open_session(
    app: &web::Data<AppState>,
    directory: &web::Data<Directory>,
    head: &RequestHead,
    polling: bool,
) -> Result<(Addr<Session>, Option<LongPoll>), Failure> {
    let slot = admit(app, directory, head)?;
    let (app, directory, token) = (
        app.clone().into_inner(),
        directory.clone().into_inner(),
        header_token(head),
    );
    let mut queue = None;
    let session = Session::create(|ctx| {
        let session = Session::new(app, directory, token, polling, slot, ctx);
        queue = session.engine.long_poll();
        session
    });
    Ok((session, queue))
}

/// A long-polling GET: opens a polling session (no sid) or polls one.
/// Checks and starts it here; what is returned waits for the answer and
/// keeps nothing of the request.
fn poll(
    app: &web::Data<AppState>,
    directory: &web::Data<Directory>,
    head: &RequestHead,
    sid: Option<String>,
) -> Result<impl Future<Output = Result<HttpResponse, Failure>>, Failure> {
    let (queue, session) = match sid {
        None => {
            let (session, queue) = open_session(app, directory, head, true)?;
            (queue, session.downgrade())
        }
        Some(sid) => directory.poller(&sid).ok_or_else(unknown_sid)?,
    };
    let queue = queue.ok_or_else(|| Failure::new(Code::BadRequest, NOT_POLLING))?;
    Ok(polling::get(queue, polling::tell(session)))
}

/// The session a request names.
fn find(directory: &Directory, sid: &str) -> Result<Addr<Session>, Failure> {
    directory.get(sid).ok_or_else(unknown_sid)
}

fn unknown_sid() -> Failure {
    Failure::new(Code::BadRequest, "unknown sid: no such session here")
}

/// `GET /socket.io/` without an upgrade, through the App: opens a polling
/// session or polls one (a WebSocket comes through the upgrade hook).
pub async fn socket_io(
    req: HttpRequest,
    app: web::Data<AppState>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, Failure> {
    get(&app, &directory, req.head())?.await
}

/// A GET: a long-poll, or a WebSocket request without its upgrade. What
/// is returned waits for the answer and keeps nothing of the request.
fn get(
    app: &web::Data<AppState>,
    directory: &web::Data<Directory>,
    head: &RequestHead,
) -> Result<impl Future<Output = Result<HttpResponse, Failure>>, Failure> {
    match read_query(head.uri.query().unwrap_or_default())? {
        (Transport::WebSocket, _) => Err(not_websocket(ws::handshake(head).err())),
        (Transport::Polling, sid) => poll(app, directory, head, sid),
    }
}

fn not_websocket(err: Option<ws::HandshakeError>) -> Failure {
    let why = err.map_or_else(|| "no Upgrade header".to_owned(), |err| err.to_string());
    Failure::new(Code::BadRequest, format!("not a WebSocket upgrade: {why}"))
}

/// The requests of `/socket.io/` that reach the engine rather than the App:
/// long-polling GETs and POSTs at the front door (so that a poller keeps
/// none of the HTTP server's buffers) and WebSocket upgrades from the HTTP
/// server's hook; answered as the App answers them (the same handlers,
/// the same errors, CORS).
#[derive(Clone)]
pub struct SocketIo {
    app: web::Data<AppState>,
    directory: web::Data<Directory>,
}

impl SocketIo {
    pub fn new(app: web::Data<AppState>, directory: web::Data<Directory>) -> Self {
        SocketIo { app, directory }
    }

    /// The request's origin, where CORS allows it.
    fn origin(&self, head: &RequestHead) -> Option<HeaderValue> {
        cors::allowed_origin(&head.headers, &self.app.settings)
    }
}

/// An answer, marked for `origin` where CORS allows it.
fn respond(origin: Option<HeaderValue>, answer: Result<HttpResponse, Failure>) -> HttpResponse {
    let mut response = answer.unwrap_or_else(|failure| failure.error_response());
    if let Some(origin) = origin {
        cors::mark(response.headers_mut(), origin);
    }
    response
}

impl front::Door for SocketIo {
    const HEADERS: &'static [&'static str] = &[
        "authorization",
        "origin",
        "sec-websocket-key",
        "sec-websocket-version",
        guard::FORWARDED_FOR,
    ];

    const PATH: &'static str = PATH;

    fn max_body(&self) -> usize {
        self.app.settings.max_payload
    }

    fn get(&self, head: RequestHead) -> front::Answer {
        // A poller's GET waits long: it keeps only what it waits for (the
        // request head, its headers' copies, is dropped here).
        let origin = self.origin(&head);
        let waiting = get(&self.app, &self.directory, &head);
        drop(head);
        Box::pin(async move {
            let answer = match waiting {
                Ok(waiting) => waiting.await,
                Err(failure) => Err(failure),
            };
            respond(origin, answer)
        })
    }

    fn post(&self, head: RequestHead, body: oneshot::Receiver<Bytes>) -> front::Answer {
        let door = self.clone();
        Box::pin(async move {
            let body = futures_util::stream::once(body);
            let answer = post(&door.app, &door.directory, &head, body).await;
            respond(door.origin(&head), answer)
        })
    }

    fn upgrade(&self, head: &RequestHead) -> front::Upgrade {
        let (session, upgrading) = match websocket_for(head, &self.app, &self.directory) {
            Ok(found) => found,
            Err(failure) => return front::Upgrade::Refuse(failure.error_response()),
        };
        let response = ws::handshake_response(head).finish().map_into_boxed_body();
        let settings = &self.app.settings;
        let (max_payload, max_outbound) = (settings.max_payload, settings.max_outbound);
        let serve: front::Serve = Box::new(move |connection| match connection {
            Some(connection) => {
                websocket::open(session, upgrading, connection, max_payload, max_outbound)
            }
            // The handshake's answer was not written: a new session ends
            // here (an upgrading one keeps polling).
            None if !upgrading => session.do_send(End(reason::TRANSPORT_ERROR)),
            None => {}
        });
        front::Upgrade::Accept(HttpResponse::from(response), serve)
    }
}

/// The session an upgrade is for, and whether it upgrades a polling one.
fn websocket_for(
    head: &RequestHead,
    app: &web::Data<AppState>,
    directory: &web::Data<Directory>,
) -> Result<(Addr<Session>, bool), Failure> {
    if head.uri.path() != PATH {
        return Err(Failure::new(
            Code::NotFound,
            "no WebSocket here: Socket.IO is served at /socket.io/",
        ));
    }
    let (Transport::WebSocket, sid) = read_query(head.uri.query().unwrap_or_default())? else {
        return Err(Failure::new(
            Code::BadRequest,
            "only transport=websocket upgrades",
        ));
    };
    ws::handshake(head).map_err(|err| not_websocket(Some(err)))?;
    match sid {
        None => Ok((open_session(app, directory, head, false)?.0, false)),
        Some(sid) => Ok((find(directory, &sid)?, true)),
    }
}

/// `POST /socket.io/` through the App: packets from a long-polling client.
pub async fn socket_io_post(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<AppState>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, Failure> {
    post(&app, &directory, req.head(), body).await
}

/// A POST and its body, as it arrives.
async fn post<S, E>(
    app: &web::Data<AppState>,
    directory: &web::Data<Directory>,
    head: &RequestHead,
    body: S,
) -> Result<HttpResponse, Failure>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (transport, sid) = read_query(head.uri.query().unwrap_or_default())?;
    let Transport::Polling = transport else {
        return Err(Failure::new(
            Code::BadRequest,
            "POST is for transport=polling only",
        ));
    };
    let sid = sid.ok_or_else(|| Failure::new(Code::BadRequest, "a POST must name its sid"))?;
    polling::post(find(directory, &sid)?, body, app.settings.max_payload).await
}
