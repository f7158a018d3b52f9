//! `/socket.io/`: checks the Engine.IO query and hands the request to its
//! transport: a new WebSocket session, a WebSocket upgrading a polling
//! session, or a long-polling GET or POST. WebSockets arrive through the
//! HTTP server's upgrade hook ([`upgrade`]), which hands over the raw
//! connection; the rest through the App.

use std::collections::HashMap;

use actix::{Actor, Addr};
use actix_codec::Framed;
use actix_http::body::{BodySize, MessageBody};
use actix_http::{h1, ws, ConnectionType, Request};
use actix_web::dev::RequestHead;
use actix_web::rt::net::TcpStream;
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use futures_util::SinkExt;

use super::guard::{self, HandshakeSlot};
use super::{polling, reason, websocket, Directory, End, Session};
use crate::engine::eio::longpoll::NOT_POLLING;
use crate::engine::eio::LongPoll;
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
async fn poll(
    app: &web::Data<AppState>,
    directory: &web::Data<Directory>,
    head: &RequestHead,
    sid: Option<String>,
) -> Result<HttpResponse, Failure> {
    let (queue, session) = match sid {
        None => {
            let (session, queue) = open_session(app, directory, head, true)?;
            (queue, session.downgrade())
        }
        Some(sid) => directory.poller(&sid).ok_or_else(unknown_sid)?,
    };
    let queue = queue.ok_or_else(|| Failure::new(Code::BadRequest, NOT_POLLING))?;
    polling::get(queue, polling::tell(session)).await
}

/// The session a request names.
fn find(directory: &Directory, sid: &str) -> Result<Addr<Session>, Failure> {
    directory.get(sid).ok_or_else(unknown_sid)
}

fn unknown_sid() -> Failure {
    Failure::new(Code::BadRequest, "unknown sid: no such session here")
}

/// `GET /socket.io/` without an upgrade: opens a polling session or polls
/// one (a WebSocket comes through [`upgrade`]).
pub async fn socket_io(
    req: HttpRequest,
    app: web::Data<AppState>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, Failure> {
    match read_query(req.query_string())? {
        (Transport::WebSocket, _) => Err(not_websocket(ws::handshake(req.head()).err())),
        (Transport::Polling, sid) => poll(&app, &directory, req.head(), sid).await,
    }
}

fn not_websocket(err: Option<ws::HandshakeError>) -> Failure {
    let why = err.map_or_else(|| "no Upgrade header".to_owned(), |err| err.to_string());
    Failure::new(Code::BadRequest, format!("not a WebSocket upgrade: {why}"))
}

/// Any request asking to upgrade to a WebSocket, on any path (the HTTP
/// server hands it over with its connection): a WebSocket session, or one
/// upgrading a polling session, for `/socket.io/`; an HTTP error otherwise.
/// Once the handshake is answered the HTTP layer's buffers are dropped: the
/// engine's connection task keeps the socket and what was read past the
/// request.
pub async fn upgrade(
    (req, mut framed): (Request, Framed<TcpStream, h1::Codec>),
    app: web::Data<AppState>,
    directory: web::Data<Directory>,
) -> Result<(), actix_web::Error> {
    let (session, upgrading) = match websocket_for(req.head(), &app, &directory) {
        Ok(found) => found,
        Err(failure) => {
            refuse(framed, &failure).await;
            return Ok(());
        }
    };
    let response = ws::handshake_response(req.head()).finish().drop_body();
    if framed
        .send(h1::Message::Item((response, BodySize::None)))
        .await
        .is_err()
    {
        if !upgrading {
            session.do_send(End(reason::TRANSPORT_ERROR));
        }
        return Ok(());
    }
    let parts = framed.into_parts();
    let settings = &app.settings;
    websocket::open(
        session,
        upgrading,
        (parts.io, parts.read_buf),
        settings.max_payload,
        settings.max_outbound,
    );
    Ok(())
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

/// Answers an upgrade that is refused as the App answers the same failure
/// (status, headers, JSON body), then closes the connection.
async fn refuse(mut framed: Framed<TcpStream, h1::Codec>, failure: &Failure) {
    let response: actix_http::Response<_> = failure.error_response().into();
    let (mut response, body) = response.into_parts();
    let Ok(body) = body.try_into_bytes() else {
        return;
    };
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    let size = BodySize::Sized(body.len() as u64);
    let sent = async {
        framed.feed(h1::Message::Item((response, size))).await?;
        framed.feed(h1::Message::Chunk(Some(body))).await?;
        // `close` alone does not write what was fed.
        framed.send(h1::Message::Chunk(None)).await?;
        framed.close().await
    };
    if let Err(err) = sent.await {
        log::debug!("refusing an upgrade: {err}");
    }
}

/// `POST /socket.io/`: packets from a long-polling client.
pub async fn socket_io_post(
    req: HttpRequest,
    body: web::Payload,
    app: web::Data<AppState>,
    directory: web::Data<Directory>,
) -> Result<HttpResponse, Failure> {
    let (transport, sid) = read_query(req.query_string())?;
    let Transport::Polling = transport else {
        return Err(Failure::new(
            Code::BadRequest,
            "POST is for transport=polling only",
        ));
    };
    let sid = sid.ok_or_else(|| Failure::new(Code::BadRequest, "a POST must name its sid"))?;
    polling::post(find(&directory, &sid)?, body, app.settings.max_payload).await
}
