//! The bounded parser. Every size is checked against the limits in the parent module before
//! anything proportional to it is allocated; no input makes it panic.

use super::fields::{CSeq, NameAddr, Via, is_token_byte};
use super::{
    Headers, MAX_BODY_BYTES, MAX_HEADER_LINE_BYTES, MAX_HEADERS, MAX_MESSAGE_BYTES, Message,
    Method, Request, Response,
};
use std::fmt;

/// Why a message could not be parsed. `Display` is suitable as a SIP reason phrase.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The message exceeds the 64 KiB limit.
    #[error("Message too large")]
    MessageTooLarge,
    /// The body exceeds the 64 KiB limit.
    #[error("Body too large")]
    BodyTooLarge,
    /// More than 256 header fields.
    #[error("Too many headers")]
    TooManyHeaders,
    /// A line longer than 8 KiB.
    #[error("Header line too long")]
    LineTooLong,
    /// The header section is not UTF-8.
    #[error("Invalid header encoding")]
    InvalidEncoding,
    /// The header section does not end (datagram) or the first line is not SIP.
    #[error("Truncated message")]
    Truncated,
    /// The request line is not `Method SP Request-URI SP SIP/2.0`.
    #[error("Malformed Request-Line")]
    MalformedRequestLine,
    /// The status line is not `SIP/2.0 SP Status-Code SP Reason`.
    #[error("Malformed Status-Line")]
    MalformedStatusLine,
    /// A SIP version other than 2.0.
    #[error("Version Not Supported")]
    UnsupportedVersion,
    /// A header line without a valid `name:`.
    #[error("Malformed header")]
    MalformedHeader,
    /// Content-Length unparsable, repeated with different values, or disagreeing with the body.
    #[error("Bad Content-Length")]
    BadContentLength,
    /// No Content-Length on a stream transport (RFC 3261 §18.3).
    #[error("Missing Content-Length")]
    MissingContentLength,
    /// A mandatory header is missing (the name is given).
    #[error("Missing {0}")]
    MissingHeader(&'static str),
    /// The Via header is malformed.
    #[error("Malformed Via")]
    MalformedVia,
    /// The From header is malformed.
    #[error("Malformed From")]
    MalformedFrom,
    /// The To header is malformed.
    #[error("Malformed To")]
    MalformedTo,
    /// The CSeq header is malformed.
    #[error("Malformed CSeq")]
    MalformedCSeq,
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match")]
    CSeqMethodMismatch,
    /// The Max-Forwards header is not a number.
    #[error("Bad Max-Forwards")]
    BadMaxForwards,
    /// A name-addr (Contact, Route …) is malformed.
    #[error("Malformed address")]
    MalformedAddress,
    /// A SIP URI is malformed.
    #[error("Malformed URI")]
    MalformedUri,
    /// A header parameter is malformed.
    #[error("Malformed parameter")]
    MalformedParameter,
}

impl ParseError {
    /// The status code a server answers this error with (400, 413 or 505).
    pub fn status_code(&self) -> u16 {
        match self {
            ParseError::MessageTooLarge | ParseError::BodyTooLarge => 413,
            ParseError::UnsupportedVersion => 505,
            _ => 400,
        }
    }
}

/// A parse failure with what could be salvaged from the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Malformed {
    /// What was wrong.
    pub error: ParseError,
    /// The request (header fields, no body) when it is readable enough to be answered:
    /// a request line, a parsable top Via, From, To and CSeq. `None` for responses and ACK,
    /// which are never answered, and for anything less readable, which must be dropped.
    pub answerable: Option<Box<Request>>,
    /// Stream transports: bytes to discard to reach the next message, when framing survived
    /// the error. `None` means the connection cannot be resynchronised and should be closed.
    pub consumed: Option<usize>,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for Malformed {}

impl Malformed {
    fn bare(error: ParseError) -> Malformed {
        Malformed {
            error,
            answerable: None,
            consumed: None,
        }
    }
}

/// Parses one datagram (UDP). A Content-Length that disagrees with the datagram is an error;
/// without Content-Length the body runs to the end of the datagram (RFC 3261 §18.3).
pub fn parse_datagram(buf: &[u8]) -> Result<Message, ParseError> {
    parse_datagram_detailed(buf).map_err(|m| m.error)
}

/// TCP framing: `Ok(None)` = incomplete, `Ok(Some((msg, consumed)))`, `Err` = invalid.
/// Content-Length is required. Leading CRLFs (keep-alives) are skipped and counted in
/// `consumed`.
pub fn parse_stream(buf: &[u8]) -> Result<Option<(Message, usize)>, ParseError> {
    parse_stream_detailed(buf).map_err(|m| m.error)
}

/// [`parse_datagram`], telling on failure whether the request can still be answered.
pub fn parse_datagram_detailed(buf: &[u8]) -> Result<Message, Malformed> {
    let lead = leading_crlf(buf);
    let data = &buf[lead..];
    let window = &data[..data.len().min(MAX_MESSAGE_BYTES)];
    let (head_len, body_start) = match find_blank_line(window) {
        Some(x) => x,
        None if data.len() > MAX_MESSAGE_BYTES => {
            return Err(Malformed::bare(ParseError::MessageTooLarge));
        }
        // A datagram whose last header line ends the packet has an empty body.
        None if data.ends_with(b"\n") => (data.len(), data.len()),
        None => {
            check_first_line(data)?;
            return Err(Malformed::bare(ParseError::Truncated));
        }
    };
    let head = parse_head(&data[..head_len])?;
    let remaining = &data[body_start..];
    let salvage = |error: ParseError| Malformed {
        answerable: head.answerable(),
        error,
        consumed: None,
    };
    let content_length = head.content_length().map_err(salvage)?;
    let body = match content_length {
        Some(cl) => {
            if cl > MAX_BODY_BYTES {
                return Err(salvage(ParseError::BodyTooLarge));
            }
            if cl > remaining.len() {
                return Err(salvage(ParseError::BadContentLength));
            }
            // Trailing CR/LF padding after the body is tolerated (RFC 3261 §18.3 says extra
            // bytes are discarded); anything else means the length is wrong.
            if !remaining[cl..].iter().all(|b| *b == b'\r' || *b == b'\n') {
                return Err(salvage(ParseError::BadContentLength));
            }
            &remaining[..cl]
        }
        None => {
            if remaining.len() > MAX_BODY_BYTES {
                return Err(salvage(ParseError::BodyTooLarge));
            }
            remaining
        }
    };
    if body_start + body.len() > MAX_MESSAGE_BYTES {
        return Err(salvage(ParseError::MessageTooLarge));
    }
    head.validate().map_err(salvage)?;
    Ok(head.into_message(body.to_vec()))
}

/// [`parse_stream`], telling on failure whether the request can still be answered and
/// whether the stream can continue after it.
pub fn parse_stream_detailed(buf: &[u8]) -> Result<Option<(Message, usize)>, Malformed> {
    let lead = leading_crlf(buf);
    let data = &buf[lead..];
    let window = &data[..data.len().min(MAX_MESSAGE_BYTES)];
    let Some((head_len, body_start)) = find_blank_line(window) else {
        if data.len() >= MAX_MESSAGE_BYTES {
            return Err(Malformed::bare(ParseError::MessageTooLarge));
        }
        check_first_line(data)?;
        return Ok(None);
    };
    let head = parse_head(&data[..head_len])?;
    let framing_error = |error: ParseError| Malformed {
        answerable: head.answerable(),
        error,
        consumed: None,
    };
    let cl = head
        .content_length()
        .map_err(framing_error)?
        .ok_or_else(|| framing_error(ParseError::MissingContentLength))?;
    if cl > MAX_BODY_BYTES {
        return Err(framing_error(ParseError::BodyTooLarge));
    }
    if body_start + cl > MAX_MESSAGE_BYTES {
        return Err(framing_error(ParseError::MessageTooLarge));
    }
    let end = body_start + cl;
    if data.len() < end {
        return Ok(None);
    }
    let consumed = lead + end;
    if let Err(error) = head.validate() {
        return Err(Malformed {
            answerable: head.answerable(),
            error,
            consumed: Some(consumed),
        });
    }
    let body = data[body_start..end].to_vec();
    Ok(Some((head.into_message(body), consumed)))
}

fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count()
}

/// Finds the empty line ending the header section: (length of the header section including
/// its last line terminator, offset of the body).
fn find_blank_line(buf: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1) {
                Some(b'\n') => return Some((i + 1, i + 2)),
                Some(b'\r') if buf.get(i + 2) == Some(&b'\n') => return Some((i + 1, i + 3)),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

/// Rejects early a buffer whose first complete line cannot start a SIP message, so that a
/// stream of junk is not buffered up to the size limit.
fn check_first_line(data: &[u8]) -> Result<(), Malformed> {
    let Some(nl) = data.iter().position(|b| *b == b'\n') else {
        if data.len() > MAX_HEADER_LINE_BYTES {
            return Err(Malformed::bare(ParseError::LineTooLong));
        }
        return Ok(());
    };
    let line = std::str::from_utf8(&data[..nl])
        .map_err(|_| Malformed::bare(ParseError::InvalidEncoding))?;
    parse_start_line(line.trim_end_matches('\r'))
        .map(|_| ())
        .map_err(Malformed::bare)
}

enum StartLine {
    Request(Method, String),
    Response(u16, String),
}

struct Head {
    start: StartLine,
    headers: Headers,
}

fn parse_start_line(line: &str) -> Result<StartLine, ParseError> {
    if line.len() > MAX_HEADER_LINE_BYTES {
        return Err(ParseError::LineTooLong);
    }
    if let Some(rest) = strip_prefix_ci(line, "SIP/") {
        let (version, rest) = rest
            .split_once(' ')
            .ok_or(ParseError::MalformedStatusLine)?;
        if version != "2.0" {
            return Err(ParseError::UnsupportedVersion);
        }
        let rest = rest.trim_start_matches(' ');
        let (code, reason) = match rest.split_once(' ') {
            Some((c, r)) => (c, r),
            None => (rest, ""),
        };
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseError::MalformedStatusLine);
        }
        let status: u16 = code.parse().map_err(|_| ParseError::MalformedStatusLine)?;
        if !(100..=699).contains(&status) || reason.chars().any(|c| c.is_control() && c != '\t') {
            return Err(ParseError::MalformedStatusLine);
        }
        return Ok(StartLine::Response(status, reason.to_string()));
    }
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (words.next(), words.next(), words.next(), words.next())
    else {
        return Err(ParseError::MalformedRequestLine);
    };
    if !method.bytes().all(is_token_byte)
        || !uri.contains(':')
        || uri.bytes().any(|b| b.is_ascii_control())
    {
        return Err(ParseError::MalformedRequestLine);
    }
    match strip_prefix_ci(version, "SIP/") {
        Some("2.0") => {}
        Some(_) => return Err(ParseError::UnsupportedVersion),
        None => return Err(ParseError::MalformedRequestLine),
    }
    Ok(StartLine::Request(
        Method::from_token(method),
        uri.to_string(),
    ))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Parses the start line and header fields. A failure after the start line still carries
/// the header fields read so far, so that the request may be answered.
fn parse_head(section: &[u8]) -> Result<Head, Malformed> {
    let text =
        std::str::from_utf8(section).map_err(|_| Malformed::bare(ParseError::InvalidEncoding))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().unwrap_or("");
    let start = parse_start_line(first).map_err(Malformed::bare)?;
    let mut head = Head {
        start,
        headers: Headers::new(),
    };
    let mut fail = None;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_HEADER_LINE_BYTES {
            fail = Some(ParseError::LineTooLong);
            break;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation (LWS): joined to the previous field with one space.
            let Some(last) = head.headers.fields.last_mut() else {
                fail = Some(ParseError::MalformedHeader);
                break;
            };
            let piece = line.trim();
            if last.1.len() + 1 + piece.len() > MAX_HEADER_LINE_BYTES {
                fail = Some(ParseError::LineTooLong);
                break;
            }
            if !piece.is_empty() {
                if !last.1.is_empty() {
                    last.1.push(' ');
                }
                last.1.push_str(piece);
            }
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            fail = Some(ParseError::MalformedHeader);
            break;
        };
        let name = name.trim_end_matches([' ', '\t']);
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            fail = Some(ParseError::MalformedHeader);
            break;
        }
        if head.headers.len() == MAX_HEADERS {
            fail = Some(ParseError::TooManyHeaders);
            break;
        }
        head.headers.push(name, value.trim());
    }
    match fail {
        None => Ok(head),
        Some(error) => Err(Malformed {
            answerable: head.answerable(),
            error,
            consumed: None,
        }),
    }
}

impl Head {
    fn content_length(&self) -> Result<Option<usize>, ParseError> {
        let mut found: Option<usize> = None;
        for v in self.headers.get_all("Content-Length") {
            let v = v.trim();
            if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::BadContentLength);
            }
            let n: usize = v.parse().map_err(|_| ParseError::BadContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(ParseError::BadContentLength);
            }
            found = Some(n);
        }
        Ok(found)
    }

    /// Checks the mandatory header fields (RFC 3261 §8.1.1) and their syntax.
    fn validate(&self) -> Result<(), ParseError> {
        let h = &self.headers;
        let vias = h.list("Via");
        if vias.is_empty() {
            return Err(ParseError::MissingHeader("Via"));
        }
        for via in &vias {
            Via::parse(via)?;
        }
        let from = h.get("From").ok_or(ParseError::MissingHeader("From"))?;
        NameAddr::parse(from).map_err(|_| ParseError::MalformedFrom)?;
        let to = h.get("To").ok_or(ParseError::MissingHeader("To"))?;
        NameAddr::parse(to).map_err(|_| ParseError::MalformedTo)?;
        let call_id = h
            .get("Call-ID")
            .ok_or(ParseError::MissingHeader("Call-ID"))?;
        if call_id.is_empty() || call_id.contains(char::is_whitespace) {
            return Err(ParseError::MissingHeader("Call-ID"));
        }
        let cseq = CSeq::parse(h.get("CSeq").ok_or(ParseError::MissingHeader("CSeq"))?)?;
        if let Some(mf) = h.get("Max-Forwards")
            && (mf.is_empty() || mf.len() > 3 || !mf.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ParseError::BadMaxForwards);
        }
        if let StartLine::Request(method, _) = &self.start
            && *method != cseq.method
        {
            return Err(ParseError::CSeqMethodMismatch);
        }
        Ok(())
    }

    /// The request, if readable enough to build a response to it (and not an ACK).
    fn answerable(&self) -> Option<Box<Request>> {
        let StartLine::Request(method, uri) = &self.start else {
            return None;
        };
        if *method == Method::Ack {
            return None;
        }
        let h = &self.headers;
        h.list("Via").first().and_then(|v| Via::parse(v).ok())?;
        h.get("From").and_then(|v| NameAddr::parse(v).ok())?;
        h.get("To").and_then(|v| NameAddr::parse(v).ok())?;
        h.get("CSeq").and_then(|v| CSeq::parse(v).ok())?;
        Some(Box::new(Request {
            method: method.clone(),
            uri: uri.clone(),
            headers: self.headers.clone(),
            body: Vec::new(),
        }))
    }

    fn into_message(self, body: Vec<u8>) -> Message {
        match self.start {
            StartLine::Request(method, uri) => Message::Request(Request {
                method,
                uri,
                headers: self.headers,
                body,
            }),
            StartLine::Response(status, reason) => Message::Response(Response {
                status,
                reason,
                headers: self.headers,
                body,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@192.0.2.4 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.1>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    fn req(m: Message) -> Request {
        match m {
            Message::Request(r) => r,
            Message::Response(_) => panic!("expected a request"),
        }
    }

    #[test]
    fn parses_a_request() {
        let r = req(parse_datagram(INVITE.as_bytes()).unwrap());
        assert_eq!(r.method, Method::Invite);
        assert_eq!(r.uri, "sip:bob@192.0.2.4");
        assert_eq!(r.body, b"v=0\n");
        assert_eq!(r.call_id(), Some("a84b4c76e66710"));
        assert_eq!(r.cseq().unwrap().seq, 314159);
        assert_eq!(r.from().unwrap().tag(), Some("1928301774"));
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bKnashds8"));
    }

    #[test]
    fn folding_compact_forms_and_lf_only() {
        let m = "OPTIONS sip:x@y SIP/2.0\n\
v: SIP/2.0/UDP h;branch=z9hG4bK1\n\
f: <sip:a@b>\n ;tag=2\n\
t: <sip:x@y>\n\
i: abc\n\
subject: one\n\
\ttwo\n\
CSeq: 1\n  OPTIONS\n\
l: 0\n\n";
        let r = req(parse_datagram(m.as_bytes()).unwrap());
        assert_eq!(r.headers.get("From"), Some("<sip:a@b> ;tag=2"));
        assert_eq!(r.from().unwrap().tag(), Some("2"));
        assert_eq!(r.headers.get("Subject"), Some("one two"));
        assert_eq!(r.cseq().unwrap().method, Method::Options);
    }

    #[test]
    fn parses_a_response() {
        let m = "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
To: <sip:c@d>;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        match parse_datagram(m.as_bytes()).unwrap() {
            Message::Response(r) => {
                assert_eq!(r.status, 180);
                assert_eq!(r.reason, "Ringing");
            }
            Message::Request(_) => panic!("expected a response"),
        }
    }

    #[test]
    fn content_length_disagreement_is_answerable() {
        let m = INVITE.replace("Content-Length: 4", "Content-Length: 40");
        let e = parse_datagram_detailed(m.as_bytes()).unwrap_err();
        assert_eq!(e.error, ParseError::BadContentLength);
        assert_eq!(e.error.to_string(), "Bad Content-Length");
        assert!(e.answerable.is_some());

        let m = INVITE.replace("Content-Length: 4", "Content-Length: 2");
        assert_eq!(
            parse_datagram(m.as_bytes()).unwrap_err(),
            ParseError::BadContentLength
        );
        let m = INVITE.replace("Content-Length: 4", "Content-Length: 4\r\nl: 5");
        assert_eq!(
            parse_datagram(m.as_bytes()).unwrap_err(),
            ParseError::BadContentLength
        );
        let m = INVITE.replace("Content-Length: 4", "Content-Length: four");
        assert_eq!(
            parse_datagram(m.as_bytes()).unwrap_err(),
            ParseError::BadContentLength
        );
        // Trailing CRLF padding is tolerated.
        let m = format!("{INVITE}\r\n");
        assert!(parse_datagram(m.as_bytes()).is_ok());
        // No Content-Length over UDP: the body runs to the end of the datagram.
        let m = INVITE.replace("Content-Length: 4\r\n", "");
        assert_eq!(req(parse_datagram(m.as_bytes()).unwrap()).body, b"v=0\n");
    }

    #[test]
    fn missing_mandatory_headers() {
        for (name, line) in [
            ("Call-ID", "Call-ID: a84b4c76e66710\r\n"),
            ("CSeq", "CSeq: 314159 INVITE\r\n"),
            (
                "From",
                "From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n",
            ),
            (
                "Via",
                "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8\r\n",
            ),
        ] {
            let m = INVITE.replace(line, "");
            let e = parse_datagram_detailed(m.as_bytes()).unwrap_err();
            assert_eq!(e.error, ParseError::MissingHeader(name));
            assert_eq!(e.error.to_string(), format!("Missing {name}"));
            let answerable = !matches!(name, "Via" | "From" | "CSeq");
            assert_eq!(e.answerable.is_some(), answerable, "{name}");
        }
    }

    #[test]
    fn cseq_method_must_match() {
        let m = INVITE.replace("314159 INVITE", "314159 BYE");
        assert_eq!(
            parse_datagram(m.as_bytes()).unwrap_err(),
            ParseError::CSeqMethodMismatch
        );
    }

    #[test]
    fn start_line_errors() {
        let e = parse_datagram(b"INVITE sip:a@b SIP/3.0\r\n\r\n").unwrap_err();
        assert_eq!(e, ParseError::UnsupportedVersion);
        assert_eq!(e.status_code(), 505);
        for bad in [
            &b"INVITE sip:a@b\r\n\r\n"[..],
            b"INVITE  SIP/2.0\r\n\r\n",
            b"IN VITE sip:a@b SIP/2.0\r\n\r\n",
            b"INVITE nocolon SIP/2.0\r\n\r\n",
            b"INVITE sip:a@b HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                parse_datagram(bad).unwrap_err(),
                ParseError::MalformedRequestLine,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        for bad in [
            &b"SIP/2.0 2000 OK\r\n\r\n"[..],
            b"SIP/2.0 099 Low\r\n\r\n",
            b"SIP/2.0\r\n\r\n",
        ] {
            assert_eq!(
                parse_datagram(bad).unwrap_err(),
                ParseError::MalformedStatusLine
            );
        }
    }

    #[test]
    fn limits() {
        let many: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
        let m = INVITE.replace(
            "Max-Forwards: 70\r\n",
            &format!("Max-Forwards: 70\r\n{many}"),
        );
        // Over 64 KiB in total: rejected before header counting.
        assert_eq!(
            parse_datagram(m.as_bytes()).unwrap_err(),
            ParseError::MessageTooLarge
        );
        let many: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
        let m = INVITE.replace("Content-Type", &format!("{many}Content-Type"));
        let e = parse_datagram_detailed(m.as_bytes()).unwrap_err();
        assert_eq!(e.error, ParseError::TooManyHeaders);
        assert!(e.answerable.is_some(), "essentials came before the flood");

        let long = "a".repeat(MAX_HEADER_LINE_BYTES + 1);
        let m = INVITE.replace("Max-Forwards: 70", &format!("X-Long: {long}"));
        assert_eq!(
            parse_datagram(m.as_bytes()).unwrap_err(),
            ParseError::LineTooLong
        );

        let body = "x".repeat(1 << 20);
        let m = INVITE
            .replace(
                "Content-Length: 4",
                &format!("Content-Length: {}", body.len()),
            )
            .replace("v=0\n", &body);
        let e = parse_datagram_detailed(m.as_bytes()).unwrap_err();
        assert_eq!(e.error, ParseError::BodyTooLarge);
        assert_eq!(e.error.status_code(), 413);
        assert!(e.answerable.is_some());
    }

    #[test]
    fn junk_is_not_answerable() {
        for junk in [
            &b"\x00\x01\x02\xff\xfe"[..],
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"",
            b"\r\n\r\n",
        ] {
            let e = parse_datagram_detailed(junk).unwrap_err();
            assert!(e.answerable.is_none(), "{junk:?}");
        }
    }

    #[test]
    fn stream_framing() {
        let two = format!("\r\n{INVITE}{INVITE}");
        let bytes = two.as_bytes();
        let (m1, used) = parse_stream(bytes).unwrap().unwrap();
        assert_eq!(used, 2 + INVITE.len());
        assert_eq!(req(m1).body, b"v=0\n");
        let (_, used2) = parse_stream(&bytes[used..]).unwrap().unwrap();
        assert_eq!(used2, INVITE.len());
        for cut in [0, 1, 10, INVITE.len() - 1] {
            assert_eq!(
                parse_stream(&INVITE.as_bytes()[..cut]).unwrap(),
                None,
                "cut {cut}"
            );
        }
        let m = INVITE.replace("Content-Length: 4\r\n", "");
        let e = parse_stream_detailed(m.as_bytes()).unwrap_err();
        assert_eq!(e.error, ParseError::MissingContentLength);
        assert_eq!(e.consumed, None);
        assert!(e.answerable.is_some());

        let m = INVITE.replace("Call-ID: a84b4c76e66710\r\n", "");
        let e = parse_stream_detailed(m.as_bytes()).unwrap_err();
        assert_eq!(e.error, ParseError::MissingHeader("Call-ID"));
        assert_eq!(e.consumed, Some(m.len()));

        assert!(parse_stream(b"\x00\x01binary junk\n").is_err());
        let m = INVITE.replace("Content-Length: 4", "Content-Length: 1048576");
        assert_eq!(
            parse_stream(m.as_bytes()).unwrap_err(),
            ParseError::BodyTooLarge
        );
        assert_eq!(
            parse_stream(&vec![b'a'; MAX_MESSAGE_BYTES + 1]).unwrap_err(),
            ParseError::MessageTooLarge
        );
        assert_eq!(
            parse_stream(&vec![b'a'; MAX_HEADER_LINE_BYTES + 1]).unwrap_err(),
            ParseError::LineTooLong
        );
    }

    #[test]
    fn serialise_then_parse_round_trips() {
        let r = req(parse_datagram(INVITE.as_bytes()).unwrap());
        let again = req(parse_datagram(&r.to_bytes()).unwrap());
        assert_eq!(again, r);
    }
}
