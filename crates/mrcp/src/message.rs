//! MRCPv2 message model (RFC 6787 §5) and its serialiser.

use std::fmt;

use crate::headers::{Headers, names};

/// A request-id: `1*10DIGIT`, 0 to 2^32-1 (RFC 6787 §5.1).
pub type RequestId = u32;

/// The protocol version of a message, `MRCP/<major>.<minor>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    /// Major version (2 for MRCPv2).
    pub major: u8,
    /// Minor version (0 for MRCPv2).
    pub minor: u8,
}

impl Version {
    /// `MRCP/2.0`, the only version this crate speaks.
    pub const MRCP_2_0: Version = Version { major: 2, minor: 0 };
}

impl Default for Version {
    fn default() -> Self {
        Version::MRCP_2_0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MRCP/{}.{}", self.major, self.minor)
    }
}

/// A request method: the generic ones (§6) and the synthesizer's (§8).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// `SET-PARAMS` (§6.1).
    SetParams,
    /// `GET-PARAMS` (§6.2).
    GetParams,
    /// `SPEAK` (§8.5).
    Speak,
    /// `STOP` (§8.6).
    Stop,
    /// `PAUSE` (§8.8).
    Pause,
    /// `RESUME` (§8.9).
    Resume,
    /// `BARGE-IN-OCCURRED` (§8.10).
    BargeInOccurred,
    /// `CONTROL` (§8.11).
    Control,
    /// `DEFINE-LEXICON` (§8.14).
    DefineLexicon,
    /// Any other method token (another resource's, or an extension).
    Other(String),
}

impl Method {
    /// The method token as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::SetParams => "SET-PARAMS",
            Method::GetParams => "GET-PARAMS",
            Method::Speak => "SPEAK",
            Method::Stop => "STOP",
            Method::Pause => "PAUSE",
            Method::Resume => "RESUME",
            Method::BargeInOccurred => "BARGE-IN-OCCURRED",
            Method::Control => "CONTROL",
            Method::DefineLexicon => "DEFINE-LEXICON",
            Method::Other(s) => s,
        }
    }

    /// Reads a method token; ABNF literals are case-insensitive.
    pub fn from_token(token: &str) -> Method {
        const KNOWN: [Method; 9] = [
            Method::SetParams,
            Method::GetParams,
            Method::Speak,
            Method::Stop,
            Method::Pause,
            Method::Resume,
            Method::BargeInOccurred,
            Method::Control,
            Method::DefineLexicon,
        ];
        KNOWN
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(token))
            .unwrap_or_else(|| Method::Other(token.to_string()))
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event name (§8.2 for the synthesizer's).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum EventName {
    /// `SPEAK-COMPLETE`.
    SpeakComplete,
    /// `SPEECH-MARKER`.
    SpeechMarker,
    /// Any other event token.
    Other(String),
}

impl EventName {
    /// The event token as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            EventName::SpeakComplete => "SPEAK-COMPLETE",
            EventName::SpeechMarker => "SPEECH-MARKER",
            EventName::Other(s) => s,
        }
    }

    /// Reads an event token, case-insensitively.
    pub fn from_token(token: &str) -> EventName {
        if token.eq_ignore_ascii_case("SPEAK-COMPLETE") {
            EventName::SpeakComplete
        } else if token.eq_ignore_ascii_case("SPEECH-MARKER") {
            EventName::SpeechMarker
        } else {
            EventName::Other(token.to_string())
        }
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The request-state of a response or event (§5.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestState {
    /// `COMPLETE`: the request is finished; nothing more will follow.
    Complete,
    /// `IN-PROGRESS`: the request is running; events will follow.
    InProgress,
    /// `PENDING`: the request is queued behind another.
    Pending,
}

impl RequestState {
    /// The token as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Complete => "COMPLETE",
            RequestState::InProgress => "IN-PROGRESS",
            RequestState::Pending => "PENDING",
        }
    }

    /// Reads a request-state token, case-insensitively.
    pub fn from_token(token: &str) -> Option<RequestState> {
        [
            RequestState::Complete,
            RequestState::InProgress,
            RequestState::Pending,
        ]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(token))
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A three-digit status code (§5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusCode(u16);

impl StatusCode {
    /// 200 Success.
    pub const SUCCESS: StatusCode = StatusCode(200);
    /// 201 Success with some optional header fields ignored.
    pub const SUCCESS_WITH_IGNORED_FIELDS: StatusCode = StatusCode(201);
    /// 401 Method not allowed.
    pub const METHOD_NOT_ALLOWED: StatusCode = StatusCode(401);
    /// 402 Method not valid in this state.
    pub const METHOD_NOT_VALID_IN_STATE: StatusCode = StatusCode(402);
    /// 403 Unsupported header field.
    pub const UNSUPPORTED_HEADER: StatusCode = StatusCode(403);
    /// 404 Illegal value for header field (also any syntax violation).
    pub const ILLEGAL_HEADER_VALUE: StatusCode = StatusCode(404);
    /// 405 Resource not allocated for this session or does not exist.
    pub const RESOURCE_NOT_ALLOCATED: StatusCode = StatusCode(405);
    /// 406 Mandatory header field missing.
    pub const MANDATORY_HEADER_MISSING: StatusCode = StatusCode(406);
    /// 407 Method or operation failed.
    pub const METHOD_FAILED: StatusCode = StatusCode(407);
    /// 408 Unrecognized or unsupported message entity.
    pub const UNSUPPORTED_ENTITY: StatusCode = StatusCode(408);
    /// 409 Unsupported header field value (legal, but beyond what we can do).
    pub const UNSUPPORTED_HEADER_VALUE: StatusCode = StatusCode(409);
    /// 410 Non-monotonic or out-of-order request-id.
    pub const NON_MONOTONIC_REQUEST_ID: StatusCode = StatusCode(410);
    /// 501 Server internal error.
    pub const SERVER_INTERNAL_ERROR: StatusCode = StatusCode(501);
    /// 502 Protocol version not supported.
    pub const VERSION_NOT_SUPPORTED: StatusCode = StatusCode(502);
    /// 504 Message too large.
    pub const MESSAGE_TOO_LARGE: StatusCode = StatusCode(504);

    /// A status code from its number; `None` unless it has exactly three digits.
    pub fn new(code: u16) -> Option<StatusCode> {
        (100..=999).contains(&code).then_some(StatusCode(code))
    }

    /// The number.
    pub fn as_u16(self) -> u16 {
        self.0
    }

    /// 2xx.
    pub fn is_success(self) -> bool {
        (200..300).contains(&self.0)
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}

/// The start line: what distinguishes a request, a response and an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// `MRCP/2.0 <length> <method> <request-id>`.
    Request {
        /// The method.
        method: Method,
        /// The request-id.
        request_id: RequestId,
    },
    /// `MRCP/2.0 <length> <request-id> <status-code> <request-state>`.
    Response {
        /// The request-id being answered.
        request_id: RequestId,
        /// The status code.
        status: StatusCode,
        /// The request-state.
        state: RequestState,
    },
    /// `MRCP/2.0 <length> <event-name> <request-id> <request-state>`.
    Event {
        /// The event name.
        event: EventName,
        /// The request-id the event belongs to.
        request_id: RequestId,
        /// The request-state.
        state: RequestState,
    },
}

/// One MRCPv2 message: start line, header fields, body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// The protocol version from the start line.
    pub version: Version,
    /// The start line without version and length.
    pub start: StartLine,
    /// The header fields, in order.
    pub headers: Headers,
    /// The message body (its length is the Content-Length).
    pub body: Vec<u8>,
}

impl Message {
    /// A new request with no header fields.
    pub fn request(method: Method, request_id: RequestId) -> Message {
        Message::with_start(StartLine::Request { method, request_id })
    }

    /// A new response with no header fields.
    pub fn response(request_id: RequestId, status: StatusCode, state: RequestState) -> Message {
        Message::with_start(StartLine::Response {
            request_id,
            status,
            state,
        })
    }

    /// A new event with no header fields.
    pub fn event(event: EventName, request_id: RequestId, state: RequestState) -> Message {
        Message::with_start(StartLine::Event {
            event,
            request_id,
            state,
        })
    }

    fn with_start(start: StartLine) -> Message {
        Message {
            version: Version::MRCP_2_0,
            start,
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// Appends a header field (builder style).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Message {
        self.headers.push(name, value);
        self
    }

    /// Sets the body with its Content-Type and Content-Length (builder style).
    pub fn with_body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Message {
        self.body = body.into();
        self.headers.set(names::CONTENT_TYPE, content_type);
        self.headers
            .set(names::CONTENT_LENGTH, self.body.len().to_string());
        self
    }

    /// The request-id of the start line.
    pub fn request_id(&self) -> RequestId {
        match &self.start {
            StartLine::Request { request_id, .. }
            | StartLine::Response { request_id, .. }
            | StartLine::Event { request_id, .. } => *request_id,
        }
    }

    /// The method, if this is a request.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            _ => None,
        }
    }

    /// Serialises the message, computing the message-length (which counts its own digits).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Serialises the message onto the end of `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // Everything after "MRCP/x.y " and the length digits.
        let mut rest = Vec::with_capacity(128 + self.body.len());
        rest.push(b' ');
        match &self.start {
            StartLine::Request { method, request_id } => {
                rest.extend_from_slice(format!("{method} {request_id}\r\n").as_bytes());
            }
            StartLine::Response {
                request_id,
                status,
                state,
            } => {
                rest.extend_from_slice(format!("{request_id} {status} {state}\r\n").as_bytes());
            }
            StartLine::Event {
                event,
                request_id,
                state,
            } => {
                rest.extend_from_slice(format!("{event} {request_id} {state}\r\n").as_bytes());
            }
        }
        let mut wrote_length = false;
        for (name, value) in self.headers.iter() {
            if name.eq_ignore_ascii_case(names::CONTENT_LENGTH) {
                if wrote_length {
                    continue;
                }
                wrote_length = true;
                rest.extend_from_slice(format!("{name}: {}\r\n", self.body.len()).as_bytes());
            } else {
                rest.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
        }
        if !wrote_length && !self.body.is_empty() {
            rest.extend_from_slice(
                format!("{}: {}\r\n", names::CONTENT_LENGTH, self.body.len()).as_bytes(),
            );
        }
        rest.extend_from_slice(b"\r\n");
        rest.extend_from_slice(&self.body);

        let version = format!("{} ", self.version);
        let length = message_length(version.len() + rest.len());
        out.extend_from_slice(version.as_bytes());
        out.extend_from_slice(length.to_string().as_bytes());
        out.extend_from_slice(&rest);
    }
}

/// The message-length for a message whose bytes other than the length digits number `base`.
fn message_length(base: usize) -> usize {
    let mut length = base + 1;
    loop {
        let next = base + decimal_digits(length);
        if next == length {
            return length;
        }
        length = next;
    }
}

fn decimal_digits(mut n: usize) -> usize {
    let mut digits = 1;
    while n >= 10 {
        n /= 10;
        digits += 1;
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_counts_its_own_digits_across_boundaries() {
        assert_eq!(message_length(1), 2);
        assert_eq!(message_length(8), 9);
        // 9 + 1 digit = 10, which has two digits: 9 + 2 = 11.
        assert_eq!(message_length(9), 11);
        assert_eq!(message_length(97), 99);
        assert_eq!(message_length(98), 101);
        assert_eq!(message_length(99), 102);
        assert_eq!(message_length(996), 999);
        assert_eq!(message_length(997), 1001);
    }

    #[test]
    fn encoded_length_field_equals_encoded_size_for_many_sizes() {
        for n in 0..1200 {
            let msg = Message::request(Method::Speak, 1)
                .with_header(names::CHANNEL_IDENTIFIER, "a@speechsynth")
                .with_body("text/plain", vec![b'x'; n]);
            let bytes = msg.encode();
            let text = String::from_utf8_lossy(&bytes);
            let declared: usize = text
                .split(' ')
                .nth(1)
                .and_then(|t| t.parse().ok())
                .unwrap_or(0);
            assert_eq!(declared, bytes.len(), "body {n}");
        }
    }

    #[test]
    fn status_code_needs_three_digits() {
        assert_eq!(StatusCode::new(99), None);
        assert_eq!(StatusCode::new(1000), None);
        assert_eq!(StatusCode::new(200), Some(StatusCode::SUCCESS));
    }
}
