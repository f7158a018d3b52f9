//! HTTP/1.1 on the wire, the little the front door needs: a request head
//! parsed into actix's own type, and a response with a whole body encoded.

use actix_http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_http::{Method, RequestHead, StatusCode, Uri, Version};
use actix_web::body::MessageBody;
use actix_web::HttpResponse;
use bytes::Bytes;

/// Headers a request may have.
const MAX_HEADERS: usize = 64;

/// What the bytes read so far hold.
#[derive(Debug)]
pub enum Parsed {
    /// A whole request head of this many bytes.
    Head(RequestHead, usize),
    /// Not all of it yet.
    Partial,
    /// Not for the front door: not HTTP/1 (or more headers than we
    /// take), or a request to upgrade, which the HTTP server hands back.
    Elsewhere,
}

/// Parses the request head at the start of `bytes`, keeping the headers
/// named in `keep` (the rest are skipped: no copy of a cookie or a user
/// agent for a request that reads neither).
pub fn parse(bytes: &[u8], keep: &[&str]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Elsewhere,
    };
    // Told before anything is copied: an upgrade's head is the HTTP
    // server's to read (copied here, its headers' allocations sat between
    // the session's long-lived ones and cost every WebSocket RSS).
    if request
        .headers
        .iter()
        .any(|header| header.name.eq_ignore_ascii_case("upgrade"))
    {
        return Parsed::Elsewhere;
    }
    let (Some(method), Some(path), Some(version)) = (request.method, request.path, request.version)
    else {
        return Parsed::Elsewhere;
    };
    let (Ok(method), Ok(uri)) = (Method::from_bytes(method.as_bytes()), path.parse::<Uri>()) else {
        return Parsed::Elsewhere;
    };
    let mut head = RequestHead::default();
    head.method = method;
    head.uri = uri;
    head.version = if version == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let kept = |name: &str| keep.iter().any(|kept| name.eq_ignore_ascii_case(kept));
    // One allocation of the right size: a map grown header by header
    // leaves its smaller tables behind as holes in the heap, between the
    // session's long-lived allocations made next.
    let count = request
        .headers
        .iter()
        .filter(|header| kept(header.name))
        .count();
    let mut map = HeaderMap::with_capacity(count);
    for header in request.headers.iter().filter(|header| kept(header.name)) {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(header.name.as_bytes()),
            HeaderValue::from_bytes(header.value),
        ) else {
            return Parsed::Elsewhere;
        };
        map.append(name, value);
    }
    head.headers = map;
    Parsed::Head(head, len)
}

/// A request's declared body length: `None` when it has none, `Err` when
/// it says something other than one plain length.
pub fn content_length(head: &RequestHead) -> Result<Option<usize>, ()> {
    let mut values = head.headers.get_all(actix_http::header::CONTENT_LENGTH);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    let text = value.to_str().map_err(|_| ())?;
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    text.parse().map(Some).map_err(|_| ())
}

/// Whether the client asks to close the connection after this request.
pub fn wants_close(head: &RequestHead) -> bool {
    head.headers
        .get_all(actix_http::header::CONNECTION)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|option| option.trim().eq_ignore_ascii_case("close"))
}

/// A response's bytes on the wire: its head and its body. `close` adds
/// `connection: close`. A body that is not whole (a stream) answers 500.
pub fn encode(response: HttpResponse, close: bool) -> (Vec<u8>, Bytes) {
    let (response, body) = response.into_parts();
    let (status, body) = match body.try_into_bytes() {
        Ok(body) => (response.status(), body),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, Bytes::new()),
    };
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        if name == actix_http::header::CONTENT_LENGTH || name == actix_http::header::CONNECTION {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        head.extend_from_slice(b"connection: upgrade\r\n");
    } else {
        if status != StatusCode::NO_CONTENT {
            head.extend_from_slice(b"content-length: ");
            head.extend_from_slice(body.len().to_string().as_bytes());
            head.extend_from_slice(b"\r\n");
        }
        if close {
            head.extend_from_slice(b"connection: close\r\n");
        }
    }
    head.extend_from_slice(b"\r\n");
    (head, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> (RequestHead, usize) {
        match parse(bytes, &["content-length", "connection"]) {
            Parsed::Head(head, len) => (head, len),
            other => panic!("not a head: {other:?}"),
        }
    }

    #[test]
    fn a_head_is_parsed_into_actix_s_request_head() {
        let bytes = b"POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: keep-alive, close\r\n\r\n40{";
        let (head, len) = head(bytes);
        assert_eq!(len, bytes.len() - 3);
        assert_eq!(head.method, Method::POST);
        assert_eq!(head.uri.path(), "/socket.io/");
        assert_eq!(head.uri.query(), Some("EIO=4&transport=polling"));
        assert_eq!(head.version, Version::HTTP_11);
        assert_eq!(content_length(&head), Ok(Some(3)));
        assert!(wants_close(&head));
        assert!(
            !head.headers.contains_key("host"),
            "only the headers asked for"
        );
    }

    #[test]
    fn a_partial_head_waits_and_garbage_is_invalid() {
        assert!(matches!(
            parse(b"GET /socket.io/ HTTP/1.1\r\nHo", &[]),
            Parsed::Partial
        ));
        assert!(matches!(
            parse(b"\x16\x03\x01 tls hello", &[]),
            Parsed::Elsewhere
        ));
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(matches!(parse(many.as_bytes(), &[]), Parsed::Elsewhere));
    }

    #[test]
    fn an_upgrade_is_left_to_the_http_server_unread() {
        let upgrade =
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nUpgrade: websocket\r\n\r\n";
        assert!(matches!(parse(upgrade, &["upgrade"]), Parsed::Elsewhere));
    }

    #[test]
    fn only_one_plain_content_length_is_taken() {
        for (bytes, wanted) in [
            (&b"GET / HTTP/1.1\r\n\r\n"[..], Ok(None)),
            (b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n", Err(())),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
                Err(()),
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n",
                Err(()),
            ),
        ] {
            assert_eq!(content_length(&head(bytes).0), wanted);
        }
    }

    #[test]
    fn a_response_is_encoded_with_its_length() {
        let response = HttpResponse::Ok()
            .insert_header(("content-type", "text/plain"))
            .body("ok");
        let (head, body) = encode(response, true);
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("content-type: text/plain\r\n"), "{head}");
        assert!(head.contains("content-length: 2\r\n"), "{head}");
        assert!(head.ends_with("connection: close\r\n\r\n"), "{head}");
        assert_eq!(&body[..], b"ok");
    }
}
