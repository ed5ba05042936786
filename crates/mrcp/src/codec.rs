//! MRCPv2 framing and parsing (RFC 6787 §5).
//!
//! A stream shell calls [`check`] on its receive buffer: [`Check::Incomplete`] means read more,
//! [`Check::Complete`] gives the length of the first message, and an error means the stream
//! has lost its framing and must be closed. [`parse`] then turns exactly those bytes into a
//! [`Message`]; its errors concern one message only, so the shell answers (see
//! [`ParseError::response`]) and carries on with the next message.

use crate::headers::{Headers, names};
use crate::message::{
    EventName, Message, Method, RequestId, RequestState, StartLine, StatusCode, Version,
};

/// Bounds on what the codec accepts from a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message, start line and body included, in bytes (default 64 KiB).
    pub max_message_size: usize,
    /// Most header fields in one message (default 64).
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 64 * 1024,
            max_headers: 64,
        }
    }
}

/// What [`check`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// More bytes are needed to know where the first message ends.
    Incomplete,
    /// The first message is this many bytes long and all of them are in the buffer.
    Complete(usize),
}

/// The stream cannot be framed any more; the connection should be closed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The bytes do not start with `MRCP/<version> `.
    #[error("the stream does not start with an MRCP version (MRCP/2.0)")]
    NotMrcp,
    /// The message-length field is not 1 to 19 digits.
    #[error("the message-length field is not a number of 1 to 19 digits")]
    BadLength,
    /// The message-length is too short to hold the start line and the empty line.
    #[error("message-length {length} is too short to hold the start line")]
    LengthTooShort {
        /// The declared length.
        length: u64,
    },
    /// The message-length exceeds [`Limits::max_message_size`].
    #[error("message-length {length} exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The declared length.
        length: u64,
        /// The configured limit.
        limit: usize,
        /// The request-id, if the start line was readable (for a 504 answer).
        request_id: Option<RequestId>,
    },
}

impl FrameError {
    /// The response to send before closing, where one can be addressed (504 for a large
    /// request whose request-id is known).
    pub fn response(&self) -> Option<Message> {
        match self {
            FrameError::TooLarge {
                request_id: Some(id),
                ..
            } => Some(Message::response(
                *id,
                StatusCode::MESSAGE_TOO_LARGE,
                RequestState::Complete,
            )),
            _ => None,
        }
    }
}

/// Finds the end of the first message in `buf` without copying or allocating.
pub fn check(buf: &[u8], limits: &Limits) -> Result<Check, FrameError> {
    const PREFIX: &[u8] = b"MRCP/";
    let head = &buf[..buf.len().min(PREFIX.len())];
    if head != &PREFIX[..head.len()] {
        return Err(FrameError::NotMrcp);
    }
    if buf.len() < PREFIX.len() {
        return Ok(Check::Incomplete);
    }
    // Version: 1*2DIGIT "." 1*2DIGIT, then SP.
    let mut pos = PREFIX.len();
    loop {
        match buf.get(pos) {
            None => return Ok(Check::Incomplete),
            Some(b' ') => break,
            Some(b) if b.is_ascii_digit() || *b == b'.' => {
                if pos - PREFIX.len() >= 5 {
                    return Err(FrameError::NotMrcp);
                }
                pos += 1;
            }
            Some(_) => return Err(FrameError::NotMrcp),
        }
    }
    if pos == PREFIX.len() {
        return Err(FrameError::NotMrcp);
    }
    pos += 1;
    // Message-length: 1*19DIGIT, then SP.
    let digits_start = pos;
    let mut length: u64 = 0;
    loop {
        match buf.get(pos) {
            None => return Ok(Check::Incomplete),
            Some(b' ') if pos > digits_start => break,
            Some(b) if b.is_ascii_digit() && pos - digits_start < 19 => {
                length = length * 10 + u64::from(b - b'0');
                pos += 1;
            }
            Some(_) => return Err(FrameError::BadLength),
        }
    }
    if length > limits.max_message_size as u64 {
        return Err(FrameError::TooLarge {
            length,
            limit: limits.max_message_size,
            request_id: request_id_hint(&buf[pos + 1..]),
        });
    }
    // The length is bounded by the limit now, so it fits a usize.
    let length = length as usize;
    // The start line's CRLF and the empty line must fit inside the declared length.
    let window = &buf[..buf.len().min(length)];
    match find_crlf(window, pos) {
        Some(eol) if eol + 4 <= length => {}
        Some(_) => {
            return Err(FrameError::LengthTooShort {
                length: length as u64,
            });
        }
        None if buf.len() >= length => {
            return Err(FrameError::LengthTooShort {
                length: length as u64,
            });
        }
        None => return Ok(Check::Incomplete),
    }
    if buf.len() < length {
        Ok(Check::Incomplete)
    } else {
        Ok(Check::Complete(length))
    }
}

/// The request-id of a request start line, from what follows the length field.
fn request_id_hint(rest: &[u8]) -> Option<RequestId> {
    let line_end = rest.iter().take(64).position(|&b| b == b'\r')?;
    let line = std::str::from_utf8(&rest[..line_end]).ok()?;
    let mut tokens = line.split(' ');
    let first = tokens.next()?;
    let second = tokens.next()?;
    if tokens.next().is_some() || first.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_request_id(second)
}

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| i + from)
}

/// What is wrong with one message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The start line does not match any of the three forms.
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    /// The message-length field does not equal the message's size.
    #[error("message-length {declared} does not match the message size {actual}")]
    LengthMismatch {
        /// The declared length.
        declared: u64,
        /// The bytes given.
        actual: usize,
    },
    /// The start line or header section is not UTF-8.
    #[error("the start line or a header field is not UTF-8")]
    NotUtf8,
    /// No empty line ends the header section.
    #[error("the header section does not end with an empty line")]
    NoHeaderEnd,
    /// A header line without a colon, or with an empty or illegal name.
    #[error("malformed header field line {0:?}")]
    HeaderLine(String),
    /// More header fields than [`Limits::max_headers`].
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// Content-Length is not a number.
    #[error("Content-Length {0:?} is not a number")]
    BadContentLength(String),
    /// Content-Length disagrees with the body the message-length leaves.
    #[error("Content-Length {declared} does not match the {actual}-byte body")]
    BodyLengthMismatch {
        /// Content-Length (0 when absent).
        declared: usize,
        /// Bytes after the header section.
        actual: usize,
    },
}

/// One message could not be parsed; the stream itself is still in step.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}")]
pub struct ParseError {
    /// What is wrong.
    pub kind: ParseErrorKind,
    /// The request-id, if the start line was a readable request (so it can be answered).
    pub request_id: Option<RequestId>,
    /// The Channel-Identifier, if it was readable.
    pub channel_identifier: Option<String>,
}

impl ParseError {
    /// The status code for the answer (§5.4: 404 covers syntax violations).
    pub fn status_code(&self) -> StatusCode {
        StatusCode::ILLEGAL_HEADER_VALUE
    }

    /// The response to send, if the message was a request whose request-id was readable.
    pub fn response(&self) -> Option<Message> {
        let id = self.request_id?;
        let mut msg = Message::response(id, self.status_code(), RequestState::Complete);
        if let Some(ch) = &self.channel_identifier {
            msg.headers.push(names::CHANNEL_IDENTIFIER, ch.clone());
        }
        Some(msg)
    }
}

/// Parses exactly one whole message (as delimited by [`check`]).
pub fn parse(buf: &[u8], limits: &Limits) -> Result<Message, ParseError> {
    let mut err = ParseError {
        kind: ParseErrorKind::NoHeaderEnd,
        request_id: None,
        channel_identifier: None,
    };
    let fail = |mut err: ParseError, kind| {
        err.kind = kind;
        err
    };
    let Some(eol) = find_crlf(buf, 0) else {
        return Err(fail(err, ParseErrorKind::StartLine("no CRLF")));
    };
    let Ok(line) = std::str::from_utf8(&buf[..eol]) else {
        return Err(fail(err, ParseErrorKind::NotUtf8));
    };
    let tokens: Vec<&str> = line.split(' ').take(6).collect();
    let (version, length) = match tokens.as_slice() {
        [v, l, ..] => (*v, *l),
        _ => return Err(fail(err, ParseErrorKind::StartLine("too few fields"))),
    };
    let Some(version) = parse_version(version) else {
        return Err(fail(err, ParseErrorKind::StartLine("bad MRCP version")));
    };
    let declared = (length.len() <= 19 && length.bytes().all(|b| b.is_ascii_digit()))
        .then(|| length.parse::<u64>().ok())
        .flatten();
    let Some(declared) = declared else {
        return Err(fail(err, ParseErrorKind::StartLine("bad message-length")));
    };
    if declared != buf.len() as u64 {
        return Err(fail(
            err,
            ParseErrorKind::LengthMismatch {
                declared,
                actual: buf.len(),
            },
        ));
    }
    let start = match tokens.as_slice() {
        [_, _, method, id] => {
            let Some(request_id) = parse_request_id(id) else {
                return Err(fail(err, ParseErrorKind::StartLine("bad request-id")));
            };
            if !is_token(method) {
                return Err(fail(err, ParseErrorKind::StartLine("bad method name")));
            }
            err.request_id = Some(request_id);
            StartLine::Request {
                method: Method::from_token(method),
                request_id,
            }
        }
        [_, _, third, fourth, state] => {
            let Some(state) = RequestState::from_token(state) else {
                return Err(fail(err, ParseErrorKind::StartLine("bad request-state")));
            };
            if third.bytes().all(|b| b.is_ascii_digit()) {
                let Some(request_id) = parse_request_id(third) else {
                    return Err(fail(err, ParseErrorKind::StartLine("bad request-id")));
                };
                let status = (fourth.len() == 3 && fourth.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| fourth.parse().ok().and_then(StatusCode::new))
                    .flatten();
                let Some(status) = status else {
                    return Err(fail(err, ParseErrorKind::StartLine("bad status-code")));
                };
                StartLine::Response {
                    request_id,
                    status,
                    state,
                }
            } else {
                let Some(request_id) = parse_request_id(fourth) else {
                    return Err(fail(err, ParseErrorKind::StartLine("bad request-id")));
                };
                if !is_token(third) {
                    return Err(fail(err, ParseErrorKind::StartLine("bad event name")));
                }
                StartLine::Event {
                    event: EventName::from_token(third),
                    request_id,
                    state,
                }
            }
        }
        _ => {
            return Err(fail(
                err,
                ParseErrorKind::StartLine("expected 4 or 5 space-separated fields"),
            ));
        }
    };

    // Header section: lines up to the first empty line.
    let mut headers = Headers::new();
    let mut pending: Option<(String, String)> = None;
    let mut pos = eol + 2;
    let body_start = loop {
        let Some(end) = find_crlf(buf, pos) else {
            err.channel_identifier = headers.channel_identifier().map(str::to_string);
            return Err(fail(err, ParseErrorKind::NoHeaderEnd));
        };
        let raw = &buf[pos..end];
        pos = end + 2;
        if raw.is_empty() {
            if let Some((n, v)) = pending.take() {
                headers.push(&n, v.trim());
            }
            break pos;
        }
        let Ok(text) = std::str::from_utf8(raw) else {
            return Err(fail(err, ParseErrorKind::NotUtf8));
        };
        if text.starts_with([' ', '\t']) {
            // Obsolete line folding: the line continues the previous field's value.
            match pending.as_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(text.trim());
                    continue;
                }
                None => return Err(fail(err, ParseErrorKind::HeaderLine(text.to_string()))),
            }
        }
        if let Some((n, v)) = pending.take() {
            headers.push(&n, v.trim());
        }
        if headers.len() >= limits.max_headers {
            return Err(fail(
                err,
                ParseErrorKind::TooManyHeaders {
                    limit: limits.max_headers,
                },
            ));
        }
        let Some((name, value)) = text.split_once(':') else {
            return Err(fail(err, ParseErrorKind::HeaderLine(text.to_string())));
        };
        if !is_token(name) {
            return Err(fail(err, ParseErrorKind::HeaderLine(text.to_string())));
        }
        if name.eq_ignore_ascii_case(names::CHANNEL_IDENTIFIER) {
            err.channel_identifier = Some(value.trim().to_string());
        }
        pending = Some((name.to_string(), value.to_string()));
    };

    let body = &buf[body_start..];
    let declared_body = match headers.get(names::CONTENT_LENGTH) {
        None => 0,
        Some(v) => match headers.content_length() {
            Ok(Some(n)) => n,
            _ => {
                return Err(fail(err, ParseErrorKind::BadContentLength(v.to_string())));
            }
        },
    };
    if declared_body != body.len() {
        return Err(fail(
            err,
            ParseErrorKind::BodyLengthMismatch {
                declared: declared_body,
                actual: body.len(),
            },
        ));
    }
    Ok(Message {
        version,
        start,
        headers,
        body: body.to_vec(),
    })
}

fn parse_version(v: &str) -> Option<Version> {
    let rest = v.strip_prefix("MRCP/")?;
    let (major, minor) = rest.split_once('.')?;
    let small = |s: &str| {
        (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u8>().ok())
            .flatten()
    };
    Some(Version {
        major: small(major)?,
        minor: small(minor)?,
    })
}

fn parse_request_id(v: &str) -> Option<RequestId> {
    if v.is_empty() || v.len() > 10 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse::<u64>()
        .ok()
        .and_then(|n| RequestId::try_from(n).ok())
}

/// RFC 2616-style token: visible ASCII without separators.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'(' | b')'
                        | b'<'
                        | b'>'
                        | b'@'
                        | b','
                        | b';'
                        | b':'
                        | b'\\'
                        | b'"'
                        | b'/'
                        | b'['
                        | b']'
                        | b'?'
                        | b'='
                        | b'{'
                        | b'}'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speak() -> Vec<u8> {
        fix_length(b"MRCP/2.0 0 SPEAK 7\r\nChannel-Identifier: a@speechsynth\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello")
    }

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn sample_is_well_formed() {
        let speak = speak();
        assert!(speak.starts_with(b"MRCP/2.0 109 SPEAK 7\r\n"));
        assert_eq!(check(&speak, &limits()), Ok(Check::Complete(109)));
        let m = parse(&speak, &limits()).unwrap();
        assert_eq!(m.method(), Some(&Method::Speak));
        assert_eq!(m.request_id(), 7);
        assert_eq!(m.body, b"hello");
        assert_eq!(m.encode(), speak);
    }

    #[test]
    fn every_split_point_is_incomplete_until_the_end() {
        let speak = speak();
        for i in 0..speak.len() {
            assert_eq!(
                check(&speak[..i], &limits()),
                Ok(Check::Incomplete),
                "at {i}"
            );
        }
    }

    #[test]
    fn three_messages_in_one_buffer() {
        let a = Message::request(Method::Pause, 8)
            .with_header(names::CHANNEL_IDENTIFIER, "a@speechsynth")
            .encode();
        let b = Message::request(Method::Resume, 9)
            .with_header(names::CHANNEL_IDENTIFIER, "a@speechsynth")
            .encode();
        let mut buf = speak();
        buf.extend_from_slice(&a);
        buf.extend_from_slice(&b);
        let mut rest = &buf[..];
        let mut got = Vec::new();
        while let Ok(Check::Complete(n)) = check(rest, &limits()) {
            got.push(parse(&rest[..n], &limits()).unwrap().request_id());
            rest = &rest[n..];
        }
        assert_eq!(got, vec![7, 8, 9]);
        assert!(rest.is_empty());
    }

    #[test]
    fn framing_errors() {
        let l = limits();
        assert_eq!(check(b"RTSP/1.0 ", &l), Err(FrameError::NotMrcp));
        assert_eq!(check(b"MRCP/2.0 12a", &l), Err(FrameError::BadLength));
        assert_eq!(check(b"MRCP/2.0 -1 ", &l), Err(FrameError::BadLength));
        assert_eq!(check(b"MRCP/2.0  12", &l), Err(FrameError::BadLength));
        assert_eq!(
            check(b"MRCP/2.0 99999999999999999999 ", &l),
            Err(FrameError::BadLength)
        );
        assert_eq!(
            check(b"MRCP/2.0 10485760 SPEAK 3\r\n", &l),
            Err(FrameError::TooLarge {
                length: 10485760,
                limit: 65536,
                request_id: Some(3)
            })
        );
        let resp = check(b"MRCP/2.0 10485760 SPEAK 3\r\n", &l)
            .unwrap_err()
            .response()
            .unwrap();
        assert_eq!(
            resp.start,
            StartLine::Response {
                request_id: 3,
                status: StatusCode::MESSAGE_TOO_LARGE,
                state: RequestState::Complete
            }
        );
        // Declared length ends inside the start line.
        assert_eq!(
            check(b"MRCP/2.0 15 SPEAK 1\r\n\r\n", &l),
            Err(FrameError::LengthTooShort { length: 15 })
        );
        // Declared length leaves no room for the empty line.
        assert_eq!(
            check(b"MRCP/2.0 21 SPEAK 1\r\n\r\n", &l),
            Err(FrameError::LengthTooShort { length: 21 })
        );
    }

    #[test]
    fn wrong_length_is_a_body_mismatch_or_incomplete() {
        // One byte too long a length: waits for the missing byte.
        let mut longer = speak();
        longer[9..12].copy_from_slice(b"110");
        assert_eq!(check(&longer, &limits()), Ok(Check::Incomplete));
        // One byte short: framed, but the body disagrees with Content-Length.
        let mut shorter = speak();
        shorter[9..12].copy_from_slice(b"108");
        assert_eq!(check(&shorter, &limits()), Ok(Check::Complete(108)));
        let e = parse(&shorter[..108], &limits()).unwrap_err();
        assert_eq!(
            e.kind,
            ParseErrorKind::BodyLengthMismatch {
                declared: 5,
                actual: 4
            }
        );
        let resp = e.response().unwrap();
        assert_eq!(resp.request_id(), 7);
        assert_eq!(resp.headers.channel_identifier(), Some("a@speechsynth"));
    }

    #[test]
    fn body_longer_than_content_length_is_rejected() {
        let msg = fix_length(b"MRCP/2.0 0 SPEAK 2\r\nChannel-Identifier: a@speechsynth\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nabc");
        let e = parse(&msg, &limits()).unwrap_err();
        assert_eq!(
            e.kind,
            ParseErrorKind::BodyLengthMismatch {
                declared: 2,
                actual: 3
            }
        );
    }

    #[test]
    fn header_limits_and_folding() {
        let mut m = Message::request(Method::SetParams, 1);
        for i in 0..70 {
            m.headers.push(&format!("X-{i}"), "v");
        }
        let bytes = m.encode();
        let e = parse(&bytes, &limits()).unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::TooManyHeaders { limit: 64 });

        let folded =
            fix_length(b"MRCP/2.0 0 SET-PARAMS 1\r\nVoice-Name: Mary\r\n  Ann\r\nA:\r\n\r\n");
        let m = parse(&folded, &limits()).unwrap();
        assert_eq!(m.headers.voice_name(), Some("Mary Ann"));
        assert_eq!(m.headers.get("a"), Some(""));
    }

    #[test]
    fn start_line_forms() {
        let resp = Message::response(12, StatusCode::SUCCESS, RequestState::InProgress).encode();
        let m = parse(&resp, &limits()).unwrap();
        assert_eq!(
            m.start,
            StartLine::Response {
                request_id: 12,
                status: StatusCode::SUCCESS,
                state: RequestState::InProgress
            }
        );
        let ev = Message::event(EventName::SpeechMarker, 12, RequestState::InProgress).encode();
        let m = parse(&ev, &limits()).unwrap();
        assert!(matches!(
            m.start,
            StartLine::Event {
                event: EventName::SpeechMarker,
                ..
            }
        ));
        for bad in [
            &b"MRCP/2.0 24 SPEAK x\r\n\r\n"[..],
            b"MRCP/2.0 34 SPEAK 99999999999\r\n\r\n",
            b"MRCP/2.0 30 1 20 COMPLETE\r\n\r\n",
            b"MRCP/2.0 29 1 200 FINISHED\r\n\r\n",
            b"MRCP/2.0 20 A B C D E\r\n\r\n",
        ] {
            let fixed = fix_length(bad);
            assert!(
                matches!(
                    parse(&fixed, &limits()),
                    Err(ParseError {
                        kind: ParseErrorKind::StartLine(_),
                        ..
                    })
                ),
                "{}",
                String::from_utf8_lossy(&fixed)
            );
        }
    }

    #[test]
    fn missing_channel_identifier_still_parses() {
        let bytes = Message::request(Method::Stop, 4).encode();
        let m = parse(&bytes, &limits()).unwrap();
        assert_eq!(m.headers.channel_identifier(), None);
    }

    /// Rewrites the length field of a hand-written message to its real size.
    fn fix_length(msg: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(msg);
        let mut parts = text.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let _ = parts.next();
        let rest = parts.next().unwrap_or_default();
        let base = version.len() + 2 + rest.len();
        let mut n = base + 1;
        while base + n.to_string().len() != n {
            n = base + n.to_string().len();
        }
        format!("{version} {n} {rest}").into_bytes()
    }
}
