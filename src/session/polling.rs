//! The Engine.IO long-polling transport: a GET waits for the packets the
//! session has for the client; a POST brings the client's packets.

use actix::Addr;
use actix_web::http::header::ContentType;
use actix_web::{web, HttpResponse};
use futures_util::StreamExt;

use super::{reason, End, PostEnded, PostStarted, Posted, Session};
use crate::engine::eio::PollAnswer;
use crate::error::{Code, Failure};

/// Answers a GET once the session has something to send: the session
/// hands over the GET's answer, which this request then awaits on its own
/// (packets pushed for it wake it, with no message to the session).
pub async fn get(session: Addr<Session>) -> Result<HttpResponse, Failure> {
    let Ok(super::Polled(answer)) = session.send(super::Poll).await else {
        return Err(session_ended());
    };
    match answer.await {
        PollAnswer::Payload(payload) => Ok(HttpResponse::Ok()
            .content_type(ContentType::plaintext())
            .body(payload)),
        PollAnswer::Refused(why) => Err(Failure::new(Code::BadRequest, why)),
        PollAnswer::Gone => Err(session_ended()),
    }
}

/// Hands a POST body to the session, packet by packet.
pub async fn post(
    session: Addr<Session>,
    mut body: web::Payload,
    max_payload: usize,
) -> Result<HttpResponse, Failure> {
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
    let text = String::from_utf8(data.to_vec())
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
