//! The Engine.IO long-polling transport: a GET waits for the packets the
//! session has for the client; a POST brings the client's packets.

use actix::{Addr, WeakAddr};
use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::{reason, End, PostEnded, PostStarted, Posted, Session, Stepped};
use crate::engine::eio::{LongPoll, PollAnswer, Step};
use crate::error::{Code, Failure};

/// Answers a GET once the session has something to send. The GET takes
/// its answer straight from the session's long-polling queue and awaits
/// it on its own (packets pushed there wake it): no message to the
/// session, whose mailbox a poller would otherwise cross once a delivery.
/// The queue enforces the GET's rules under its lock (one GET at a time,
/// a noop during an upgrade probe, the close packet alone and last, none
/// once upgraded); `tell` hands the session the rare step that asks
/// something of it (stop after the close packet, close on an overlap),
/// and is called for nothing else.
pub async fn get(
    queue: LongPoll,
    tell: impl FnOnce(Step<'static>),
) -> Result<HttpResponse, Failure> {
    let (answer, step) = queue.get();
    drop(queue);
    if step != Step::Done {
        tell(step);
    }
    match answer.await {
        PollAnswer::Payload(payload) => Ok(HttpResponse::Ok()
            .content_type(ContentType::plaintext())
            .body(payload)),
        PollAnswer::Refused(why) => Err(Failure::new(Code::BadRequest, why)),
        PollAnswer::Gone => Err(session_ended()),
    }
}

/// Tells `session` a GET's step, if it is still there (a session that
/// has gone has nothing left to do).
pub fn tell(session: WeakAddr<Session>) -> impl FnOnce(Step<'static>) {
    move |step| {
        if let Some(session) = session.upgrade() {
            session.do_send(Stepped(step));
        }
    }
}

/// Hands a POST body to the session, packet by packet.
pub async fn post<S, E>(
    session: Addr<Session>,
    mut body: S,
    max_payload: usize,
) -> Result<HttpResponse, Failure>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    match session.send(PostStarted).await {
        Ok(Ok(())) => {}
        Ok(Err(failure)) => return Err(failure),
        Err(_) => return Err(session_ended()),
    }
    let _posting = Posting(session.clone());
    let mut data = web::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| Failure::new(Code::BadRequest, format!("body: {err}")))?;
        if data.len() + chunk.len() > max_payload {
            session.do_send(End(reason::PARSE_ERROR));
            return Err(Failure::new(
                Code::PayloadTooLarge,
                "body larger than maxPayload",
            ));
        }
        data.extend_from_slice(&chunk);
    }
    let text = String::from_utf8(Vec::from(data))
        .map_err(|_| Failure::new(Code::BadRequest, "body is not UTF-8"))?;
    match session.send(Posted(text)).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok()
            .content_type(ContentType::plaintext())
            .body("ok")),
        Ok(Err(failure)) => Err(failure),
        Err(_) => Err(session_ended()),
    }
}

/// Tells the session its POST has ended when dropped: after the body was
/// handed over, or when the request went away halfway.
struct Posting(Addr<Session>);

impl Drop for Posting {
    fn drop(&mut self) {
        self.0.do_send(PostEnded);
    }
}

fn session_ended() -> Failure {
    Failure::new(Code::BadRequest, "unknown sid: the session has ended")
}

/// The GET's path on its own: a connection's engine, its long-polling
/// queue, and what the session is told (here, collected).
#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::pin::pin;

    use actix_web::body::to_bytes;
    use futures_util::poll;

    use super::*;
    use crate::engine::eio::longpoll::{NOT_POLLING, OVERLAPPING_POLL};
    use crate::engine::eio::{Closed, Ending, Engine};
    use crate::engine::websocket::Transport;
    use crate::timers::Timers;

    /// A polling connection with nothing waiting, and its queue.
    fn poller() -> (Engine, LongPoll) {
        let engine = Engine::new("sid", true, 10_000);
        let Some(queue) = engine.long_poll() else {
            panic!("a polling connection has a long-polling queue");
        };
        (engine, queue)
    }

    /// A GET on `queue`: its body (or why it failed), and the steps the
    /// session was told.
    async fn get_on(queue: &LongPoll) -> (Result<String, String>, Vec<Step<'static>>) {
        let told = RefCell::new(Vec::new());
        let answer = get(queue.clone(), |step| told.borrow_mut().push(step)).await;
        let answer = match answer {
            Ok(response) => match to_bytes(response.into_body()).await {
                Ok(body) => Ok(String::from_utf8_lossy(&body).into_owned()),
                Err(err) => panic!("body: {err:?}"),
            },
            Err(failure) => Err(failure.message),
        };
        (answer, told.into_inner())
    }

    #[actix_web::test]
    async fn a_get_takes_what_waits_and_tells_the_session_nothing() {
        let (mut engine, queue) = poller();
        assert_eq!(engine.send("40".into()), Step::Done);
        assert_eq!(get_on(&queue).await, (Ok("40".to_owned()), vec![]));
    }

    #[actix_web::test]
    async fn an_overlapping_get_is_refused_and_the_session_told_to_close() {
        let (mut engine, queue) = poller();
        let mut first = pin!(get(queue.clone(), |step| panic!("told {step:?}")));
        assert!(poll!(first.as_mut()).is_pending(), "the first GET waits");
        let (answer, told) = get_on(&queue).await;
        assert_eq!(answer, Err(OVERLAPPING_POLL.to_owned()));
        let close = Step::Close(reason::TRANSPORT_ERROR, Ending::Protocol);
        assert_eq!(told, vec![close]);
        // The session closes: the first GET takes the close packet.
        let closed = engine.close(
            Ending::Protocol,
            reason::TRANSPORT_ERROR,
            &Timers::detached(),
        );
        assert_eq!(closed, Some(Closed::Now));
        let Ok(first) = first.await else {
            panic!("the first GET failed");
        };
        let body = to_bytes(first.into_body()).await.ok();
        assert_eq!(body.as_deref(), Some(&b"1"[..]));
    }

    #[actix_web::test]
    async fn a_closed_poller_s_last_get_takes_the_close_packet_and_tells_the_session_to_stop() {
        let (mut engine, queue) = poller();
        assert_eq!(engine.send("41".into()), Step::Done);
        let closed = engine.close(Ending::Policy, reason::TOKEN_EXPIRED, &Timers::detached());
        assert_eq!(closed, Some(Closed::Lingering));
        assert_eq!(get_on(&queue).await, (Ok("41".to_owned()), vec![]));
        assert_eq!(get_on(&queue).await, (Ok("1".to_owned()), vec![Step::Stop]));
        let (answer, told) = get_on(&queue).await;
        assert_eq!(
            answer,
            Err(session_ended().message),
            "the connection is over"
        );
        assert_eq!(told, vec![]);
    }

    #[actix_web::test]
    async fn a_get_during_an_upgrade_probe_is_let_go_with_a_noop() {
        let (mut engine, queue) = poller();
        assert_eq!(engine.send("40".into()), Step::Done);
        engine.probe(Transport::new(10_000));
        assert_eq!(get_on(&queue).await, (Ok("6".to_owned()), vec![]));
    }

    #[actix_web::test]
    async fn a_get_on_an_upgraded_session_is_refused() {
        let (mut engine, queue) = poller();
        let websocket = Transport::new(10_000);
        engine.probe(websocket.clone());
        assert_eq!(engine.attach(websocket), Step::Done);
        let (answer, told) = get_on(&queue).await;
        assert_eq!(answer, Err(NOT_POLLING.to_owned()));
        assert_eq!(told, vec![]);
    }
}
