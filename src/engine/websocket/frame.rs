//! RFC 6455 frames: pure parsing and encoding, no I/O.
//!
//! A [`Decoder`] takes the bytes a connection reads, in whatever pieces they
//! arrive, and answers whole messages: continuations reassembled (bounded by
//! maxPayload), text checked for UTF-8, control frames checked. It keeps only
//! what it must between reads: the bytes of an unfinished frame and of an
//! unfinished fragmented message, `None` when there are none. Server frames
//! are encoded with [`header`] (their payloads are written as they are,
//! beside it), whole with [`control`], or once for many connections as a
//! [`SharedText`].

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

/// The longest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest header: 2 bytes, 8 of extended length, 4 of mask.
pub const MAX_HEADER: usize = 14;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Close codes souk sends (RFC 6455 §7.4.1).
pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const INVALID: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const SIZE: u16 = 1009;
    pub const RESTART: u16 = 1012;
    pub const AGAIN: u16 = 1013;
}

/// What a client sent that ends its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// Not a frame RFC 6455 allows: unmasked, reserved bits or opcodes, a
    /// control frame fragmented or over 125 bytes, a stray continuation.
    Protocol,
    /// A message over maxPayload.
    TooLarge,
    /// Text that is not UTF-8.
    NotUtf8,
}

impl Violation {
    /// The close code that answers it.
    pub fn code(self) -> u16 {
        match self {
            Violation::Protocol => code::PROTOCOL,
            Violation::TooLarge => code::SIZE,
            Violation::NotUtf8 => code::INVALID,
        }
    }
}

/// A whole message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(ByteString),
    /// Binary data (souk has no use for its bytes).
    Binary,
    Ping(Bytes),
    Pong,
    /// The client closes, with its close code if it gave one.
    Close(Option<u16>),
}

/// One frame, unmasked.
struct Frame {
    fin: bool,
    opcode: u8,
    payload: BytesMut,
}

/// Parses the frame at the start of `buf`: `None` while it is incomplete,
/// with the bytes it took once whole. A header that breaks the rules is
/// refused as soon as it is read, before its payload arrives.
fn parse(buf: &[u8], max_payload: usize) -> Result<Option<(Frame, usize)>, Violation> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0F;
    if first & 0x70 != 0 || second & 0x80 == 0 {
        return Err(Violation::Protocol); // reserved bits, or unmasked
    }
    let control = opcode & 0x08 != 0;
    match opcode {
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG => {}
        _ => return Err(Violation::Protocol),
    }
    let (len, at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(bytes) => (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4),
            None => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(bytes) => (u64::from_be_bytes(bytes), 10),
            None => return Ok(None),
        },
        len => (u64::from(len), 2),
    };
    if control && (!fin || len > MAX_CONTROL_PAYLOAD as u64) {
        return Err(Violation::Protocol);
    }
    if len >> 63 != 0 {
        return Err(Violation::Protocol);
    }
    let len = match usize::try_from(len) {
        Ok(len) if len <= max_payload || control => len,
        _ => return Err(Violation::TooLarge),
    };
    let Some(mask) = buf
        .get(at..at + 4)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
    else {
        return Ok(None);
    };
    let start = at + 4;
    let Some(masked) = buf.get(start..start + len) else {
        return Ok(None);
    };
    let mut payload = BytesMut::from(masked);
    apply_mask(&mut payload, mask);
    Ok(Some((
        Frame {
            fin,
            opcode,
            payload,
        },
        start + len,
    )))
}

fn apply_mask(bytes: &mut [u8], mask: [u8; 4]) {
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte ^= mask[index % 4];
    }
}

/// A message arriving in continuation frames.
struct Fragmented {
    text: bool,
    data: BytesMut,
}

/// Turns the bytes a client sends into messages; keeps between reads only
/// what belongs to an unfinished frame or message.
#[derive(Default)]
pub struct Decoder {
    /// Bytes read that do not make a whole frame yet.
    partial: Option<BytesMut>,
    fragmented: Option<Fragmented>,
}

impl Decoder {
    /// The next whole message from what was kept and from `fresh`, which is
    /// consumed as far as that message goes (the bytes of an unfinished
    /// frame are kept). Call again with an empty `fresh` while it answers
    /// messages: more may be kept.
    pub fn next(
        &mut self,
        fresh: &mut &[u8],
        max_payload: usize,
    ) -> Result<Option<Message>, Violation> {
        loop {
            let frame = match &mut self.partial {
                Some(partial) => {
                    if !fresh.is_empty() {
                        partial.extend_from_slice(fresh);
                        *fresh = &[];
                    }
                    let Some((frame, used)) = parse(partial, max_payload)? else {
                        return Ok(None);
                    };
                    partial.advance(used);
                    if partial.is_empty() {
                        self.partial = None;
                    }
                    frame
                }
                None => {
                    let Some((frame, used)) = parse(fresh, max_payload)? else {
                        self.keep(fresh);
                        *fresh = &[];
                        return Ok(None);
                    };
                    *fresh = &fresh[used..];
                    frame
                }
            };
            if let Some(message) = self.assemble(frame, max_payload)? {
                return Ok(Some(message));
            }
        }
    }

    /// Keeps bytes read but not decoded yet (a connection that stops
    /// decoding to wait keeps the rest of its read here).
    pub fn keep(&mut self, rest: &[u8]) {
        if rest.is_empty() {
            return;
        }
        match &mut self.partial {
            Some(partial) => partial.extend_from_slice(rest),
            None => self.partial = Some(BytesMut::from(rest)),
        }
    }

    /// Whether bytes wait to be decoded.
    pub fn holds_bytes(&self) -> bool {
        self.partial.is_some()
    }

    fn assemble(&mut self, frame: Frame, max_payload: usize) -> Result<Option<Message>, Violation> {
        let Frame {
            fin,
            opcode,
            payload,
        } = frame;
        match opcode {
            OP_TEXT | OP_BINARY => {
                if self.fragmented.is_some() {
                    return Err(Violation::Protocol); // a new message inside one
                }
                let text = opcode == OP_TEXT;
                if fin {
                    return whole(text, payload).map(Some);
                }
                self.fragmented = Some(Fragmented {
                    text,
                    data: payload,
                });
                Ok(None)
            }
            OP_CONTINUATION => {
                let Some(fragmented) = self.fragmented.as_mut() else {
                    return Err(Violation::Protocol);
                };
                if fragmented.data.len() + payload.len() > max_payload {
                    return Err(Violation::TooLarge);
                }
                fragmented.data.extend_from_slice(&payload);
                if !fin {
                    return Ok(None);
                }
                match self.fragmented.take() {
                    Some(Fragmented { text, data }) => whole(text, data).map(Some),
                    None => Ok(None),
                }
            }
            OP_PING => Ok(Some(Message::Ping(payload.freeze()))),
            OP_PONG => Ok(Some(Message::Pong)),
            _ => match *payload {
                [] => Ok(Some(Message::Close(None))),
                [high, low, ref reason @ ..] => {
                    if std::str::from_utf8(reason).is_err() {
                        return Err(Violation::NotUtf8);
                    }
                    Ok(Some(Message::Close(Some(u16::from_be_bytes([high, low])))))
                }
                [_] => Err(Violation::Protocol),
            },
        }
    }
}

fn whole(text: bool, data: BytesMut) -> Result<Message, Violation> {
    if !text {
        return Ok(Message::Binary);
    }
    ByteString::try_from(data.freeze())
        .map(Message::Text)
        .map_err(|_| Violation::NotUtf8)
}

/// The header of a final, unmasked server frame of `len` payload bytes,
/// and how many of its bytes are used.
pub fn header(opcode: u8, len: usize) -> ([u8; 10], usize) {
    let mut head = [0u8; 10];
    head[0] = 0x80 | opcode;
    let used = match len {
        0..=125 => {
            head[1] = len as u8;
            2
        }
        126..=0xFFFF => {
            head[1] = 126;
            head[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            4
        }
        _ => {
            head[1] = 127;
            head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        }
    };
    (head, used)
}

/// A whole control frame from the server (its payload cut to 125 bytes).
pub fn control(opcode: u8, payload: &[u8]) -> Bytes {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    let (head, used) = header(opcode, payload.len());
    let mut frame = BytesMut::with_capacity(used + payload.len());
    frame.extend_from_slice(&head[..used]);
    frame.extend_from_slice(payload);
    frame.freeze()
}

/// A close frame: `code`, then as much of `reason` as fits whole characters.
pub fn close(code: u16, reason: &str) -> Bytes {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    control(OP_CLOSE, &payload)
}

/// A text message encoded once as a whole server frame, for every
/// connection it goes to: header and payload in one shared buffer, written
/// as it is (each connection holds a reference count, nothing is copied or
/// encoded per connection), and the message's text as a view of the same
/// bytes, for the layers that queue packets rather than frames (polling).
#[derive(Clone, Debug)]
pub struct SharedText {
    wire: Bytes,
    text: ByteString,
}

impl SharedText {
    pub fn new(text: &str) -> Self {
        let (head, used) = header(OP_TEXT, text.len());
        let mut wire = BytesMut::with_capacity(used + text.len());
        wire.extend_from_slice(&head[..used]);
        wire.extend_from_slice(text.as_bytes());
        let wire = wire.freeze();
        // The view is `text`'s own bytes, so it is UTF-8: the copy below is
        // never made.
        let text = ByteString::try_from(wire.slice(used..))
            .unwrap_or_else(|_| ByteString::from(text.to_owned()));
        SharedText { wire, text }
    }

    /// The whole frame, header included.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// The message's text.
    pub fn text(&self) -> &ByteString {
        &self.text
    }

    /// The text's length in bytes (what the outbound bound counts).
    pub fn text_len(&self) -> usize {
        self.text.len()
    }
}

impl From<&str> for SharedText {
    fn from(text: &str) -> Self {
        SharedText::new(text)
    }
}

impl From<String> for SharedText {
    fn from(text: String) -> Self {
        SharedText::new(&text)
    }
}

impl From<SharedText> for ByteString {
    fn from(frame: SharedText) -> Self {
        frame.text
    }
}

/// A client's frame: masked with `mask` (tests and tools speak as clients).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let (head, used) = header(opcode, payload.len());
    let mut frame = Vec::with_capacity(used + 4 + payload.len());
    frame.extend_from_slice(&head[..used]);
    if !fin {
        frame[0] &= 0x7F;
    }
    frame[1] |= 0x80;
    frame.extend_from_slice(&mask);
    let start = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[start..], mask);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = 1000;

    /// Every message in `bytes`, fed in pieces cut at `cuts`, until the end
    /// or the first violation.
    fn decode_in_pieces(bytes: &[u8], cuts: &[usize]) -> (Vec<Message>, Option<Violation>) {
        let mut decoder = Decoder::default();
        let mut messages = Vec::new();
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        bounds.push(0);
        bounds.push(bytes.len());
        bounds.sort_unstable();
        for piece in bounds.windows(2) {
            let mut fresh = &bytes[piece[0]..piece[1]];
            loop {
                match decoder.next(&mut fresh, MAX) {
                    Ok(Some(message)) => messages.push(message),
                    Ok(None) => break,
                    Err(violation) => return (messages, Some(violation)),
                }
            }
            assert!(fresh.is_empty());
        }
        (messages, None)
    }

    fn text(s: &str) -> Message {
        Message::Text(ByteString::from(s.to_owned()))
    }

    #[test]
    fn lengths_of_7_16_and_64_bits_parse() {
        for len in [0, 125, 126, 65_535, 65_536] {
            let payload = "x".repeat(len);
            let frame = client_frame(true, OP_TEXT, payload.as_bytes(), [1, 2, 3, 4]);
            let mut fresh = &frame[..];
            let message = Decoder::default().next(&mut fresh, 100_000);
            assert_eq!(message, Ok(Some(text(&payload))), "length {len}");
        }
    }

    #[test]
    fn broken_rules_are_refused_with_their_close_codes() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        assert_eq!(
            decode_in_pieces(&unmasked, &[]).1,
            Some(Violation::Protocol)
        );
        let long_ping = client_frame(true, OP_PING, &[0; 126], [0; 4]);
        assert_eq!(
            decode_in_pieces(&long_ping, &[]).1,
            Some(Violation::Protocol)
        );
        let split_ping = client_frame(false, OP_PING, b"a", [0; 4]);
        assert_eq!(
            decode_in_pieces(&split_ping, &[]).1,
            Some(Violation::Protocol)
        );
        let stray = client_frame(true, OP_CONTINUATION, b"a", [0; 4]);
        assert_eq!(decode_in_pieces(&stray, &[]).1, Some(Violation::Protocol));
        let reserved = client_frame(true, 0x3, b"a", [0; 4]);
        assert_eq!(
            decode_in_pieces(&reserved, &[]).1,
            Some(Violation::Protocol)
        );
        let latin1 = client_frame(true, OP_TEXT, &[0xE9], [7; 4]);
        assert_eq!(decode_in_pieces(&latin1, &[]).1, Some(Violation::NotUtf8));
        // Over maxPayload: refused from the header alone.
        let big = client_frame(true, OP_TEXT, &[b'a'; MAX + 1], [0; 4]);
        assert_eq!(
            decode_in_pieces(&big[..8], &[]).1,
            Some(Violation::TooLarge)
        );
        let mut split = client_frame(false, OP_TEXT, &[b'a'; MAX], [0; 4]);
        split.extend(client_frame(true, OP_CONTINUATION, b"a", [0; 4]));
        assert_eq!(decode_in_pieces(&split, &[]).1, Some(Violation::TooLarge));
    }

    #[test]
    fn fragments_are_reassembled_around_control_frames() {
        let mut bytes = client_frame(false, OP_TEXT, b"hel", [9; 4]);
        bytes.extend(client_frame(true, OP_PING, b"p", [1; 4]));
        bytes.extend(client_frame(false, OP_CONTINUATION, b"lo ", [2; 4]));
        bytes.extend(client_frame(
            true,
            OP_CONTINUATION,
            "wörld".as_bytes(),
            [3; 4],
        ));
        bytes.extend(client_frame(true, OP_BINARY, b"\0", [3; 4]));
        bytes.extend(client_frame(true, OP_CLOSE, &[0x03, 0xE8], [3; 4]));
        let (messages, violation) = decode_in_pieces(&bytes, &[]);
        assert_eq!(violation, None);
        assert_eq!(
            messages,
            vec![
                Message::Ping(Bytes::from_static(b"p")),
                text("hello wörld"),
                Message::Binary,
                Message::Close(Some(1000)),
            ]
        );
    }

    #[test]
    fn server_frames_carry_their_length() {
        assert_eq!(&header(OP_TEXT, 5).0[..2], &[0x81, 5]);
        assert_eq!(&header(OP_TEXT, 300).0[..4], &[0x81, 126, 1, 44]);
        assert_eq!(header(OP_TEXT, 70_000).1, 10);
        let frame = close(1009, "parse error");
        assert_eq!(&frame[..4], &[0x88, 13, 0x03, 0xF1]);
        assert!(close(1000, &"é".repeat(100)).len() <= 2 + MAX_CONTROL_PAYLOAD);
    }

    /// A message as a client may send it: text in 1–3 fragments, binary,
    /// ping, or pong.
    fn message() -> impl Strategy<Value = (Message, Vec<u8>)> {
        let fragments = (any::<String>(), 1usize..4, any::<[u8; 4]>());
        prop_oneof![
            fragments.prop_map(|(s, parts, mask)| {
                let s: String = s.chars().take(200).collect();
                let bytes = s.as_bytes();
                let step = bytes.len() / parts + 1;
                let chunks: Vec<&[u8]> = bytes.chunks(step).collect();
                let mut wire = Vec::new();
                if chunks.len() <= 1 {
                    wire = client_frame(true, OP_TEXT, bytes, mask);
                } else {
                    for (index, chunk) in chunks.iter().enumerate() {
                        let op = if index == 0 { OP_TEXT } else { OP_CONTINUATION };
                        wire.extend(client_frame(index + 1 == chunks.len(), op, chunk, mask));
                    }
                }
                (Message::Text(ByteString::from(s.clone())), wire)
            }),
            (
                proptest::collection::vec(any::<u8>(), 0..300),
                any::<[u8; 4]>()
            )
                .prop_map(|(b, mask)| (Message::Binary, client_frame(true, OP_BINARY, &b, mask))),
            (
                proptest::collection::vec(any::<u8>(), 0..=125),
                any::<[u8; 4]>()
            )
                .prop_map(|(b, mask)| (
                    Message::Ping(Bytes::from(b.clone())),
                    client_frame(true, OP_PING, &b, mask)
                )),
            any::<[u8; 4]>()
                .prop_map(|mask| (Message::Pong, client_frame(true, OP_PONG, b"", mask))),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn messages_split_anywhere_parse_as_whole_and_round_trip(
            messages in proptest::collection::vec(message(), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let wire: Vec<u8> = messages.iter().flat_map(|(_, w)| w.clone()).collect();
            let expected: Vec<Message> = messages.into_iter().map(|(m, _)| m).collect();
            let whole = decode_in_pieces(&wire, &[]);
            prop_assert_eq!(&whole, &(expected, None));
            prop_assert_eq!(decode_in_pieces(&wire, &cuts), whole);
        }

        #[test]
        fn random_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let whole = decode_in_pieces(&bytes, &[]);
            prop_assert_eq!(decode_in_pieces(&bytes, &cuts), whole);
        }
    }

    #[test]
    fn a_shared_text_frame_is_the_header_and_the_text_in_one_buffer() {
        for len in [0, 125, 126, 0xFFFF, 0x10000] {
            let text = "é".repeat(len / 2) + &"x".repeat(len % 2);
            let shared = SharedText::new(&text);
            let (head, used) = header(OP_TEXT, text.len());
            assert_eq!(&shared.wire()[..used], &head[..used]);
            assert_eq!(&shared.wire()[used..], text.as_bytes());
            assert_eq!(&**shared.text(), text.as_str());
            assert_eq!(shared.text_len(), text.len());
            // The text is a view of the frame's bytes, not a copy.
            assert_eq!(
                shared.text().as_bytes().as_ptr(),
                shared.wire()[used..].as_ptr()
            );
        }
    }
}
