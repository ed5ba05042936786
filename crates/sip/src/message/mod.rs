//! The SIP message codec: a bounded, never-panicking parser and a serialiser (RFC 3261 §7,
//! §18.3, §20, §25), plus parsers for the header fields the endpoint needs (Via, From/To,
//! CSeq, Contact and Route name-addrs) and SIP URIs.

mod fields;
mod parse;
mod uri;

pub use fields::{CSeq, NameAddr, Params, Via};
pub use parse::{
    Malformed, ParseError, parse_datagram, parse_datagram_detailed, parse_stream,
    parse_stream_detailed,
};
pub use uri::{SipUri, percent_decode, percent_decode_bytes};

use std::fmt;

/// Largest message accepted, over UDP or TCP (bytes, start line to end of body).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest body accepted (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Most header fields accepted in one message (folded lines count once).
pub const MAX_HEADERS: usize = 256;
/// Longest header field accepted, after unfolding (bytes).
pub const MAX_HEADER_LINE_BYTES: usize = 8 * 1024;

/// A SIP request method (RFC 3261 §7.1; names are case-sensitive).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE: set up a session.
    Invite,
    /// ACK: confirm a final response to INVITE.
    Ack,
    /// BYE: end a session.
    Bye,
    /// CANCEL: cancel a pending request.
    Cancel,
    /// OPTIONS: query capabilities.
    Options,
    /// REGISTER: bind an address of record.
    Register,
    /// INFO (RFC 6086).
    Info,
    /// UPDATE (RFC 3311).
    Update,
    /// PRACK (RFC 3262).
    Prack,
    /// SUBSCRIBE (RFC 6665).
    Subscribe,
    /// NOTIFY (RFC 6665).
    Notify,
    /// REFER (RFC 3515).
    Refer,
    /// MESSAGE (RFC 3428).
    Message,
    /// PUBLISH (RFC 3903).
    Publish,
    /// Any other extension method, as written.
    Other(String),
}

impl Method {
    /// The method for a token as written on the wire.
    pub fn from_token(s: &str) -> Method {
        match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "OPTIONS" => Method::Options,
            "REGISTER" => Method::Register,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            "PUBLISH" => Method::Publish,
            other => Method::Other(other.to_string()),
        }
    }

    /// The method's token as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Options => "OPTIONS",
            Method::Register => "REGISTER",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Publish => "PUBLISH",
            Method::Other(s) => s,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The full name of a header given its compact form (RFC 3261 §7.3.3 and later RFCs).
fn expand_compact(name: &str) -> &str {
    if name.len() != 1 {
        return name;
    }
    match name.as_bytes()[0].to_ascii_lowercase() {
        b'v' => "Via",
        b'f' => "From",
        b't' => "To",
        b'i' => "Call-ID",
        b'm' => "Contact",
        b'l' => "Content-Length",
        b'c' => "Content-Type",
        b'k' => "Supported",
        b's' => "Subject",
        b'e' => "Content-Encoding",
        b'o' => "Event",
        b'r' => "Refer-To",
        b'b' => "Referred-By",
        b'u' => "Allow-Events",
        b'x' => "Session-Expires",
        b'a' => "Accept-Contact",
        b'j' => "Reject-Contact",
        b'd' => "Request-Disposition",
        b'y' => "Identity",
        _ => name,
    }
}

/// True when two header names denote the same header (case-insensitive, compact forms).
pub fn same_header(a: &str, b: &str) -> bool {
    expand_compact(a).eq_ignore_ascii_case(expand_compact(b))
}

/// Header fields in wire order, as (name, value) pairs. Lookups are case-insensitive and
/// understand compact forms (`v`, `f`, `t`, `i`, `m`, `l`, `c`, `k`, `s`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

impl Headers {
    /// An empty header list.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Appends a header field.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.fields.push((name.into(), value.into()));
    }

    /// The value of the first field with this name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| same_header(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every field with this name, in order (one per header line).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| same_header(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// The elements of a comma-separated list header (Via, Route, Record-Route, Contact,
    /// Allow, Supported, Require …) across all its lines, split outside quotes and `<…>`.
    pub fn list(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(n, _)| same_header(n, name))
            .flat_map(|(_, v)| split_list(v))
            .collect()
    }

    /// True if a field with this name is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Removes every field with this name.
    pub fn remove(&mut self, name: &str) {
        self.fields.retain(|(n, _)| !same_header(n, name));
    }

    /// Replaces every field with this name by one field (appended if absent, else in place
    /// of the first).
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.fields.iter().position(|(n, _)| same_header(n, &name)) {
            Some(i) => {
                self.fields[i] = (name.clone(), value);
                let mut j = 0;
                self.fields.retain(|(n, _)| {
                    let keep = j <= i || !same_header(n, &name);
                    j += 1;
                    keep
                });
            }
            None => self.fields.push((name, value)),
        }
    }

    /// All fields in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True if there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Copies every field with this name from `other`, in order.
    pub fn copy_from(&mut self, other: &Headers, name: &str) {
        for (n, v) in other.fields.iter().filter(|(n, _)| same_header(n, name)) {
            self.fields.push((n.clone(), v.clone()));
        }
    }

    fn write_to(&self, out: &mut Vec<u8>, body_len: usize) {
        for (n, v) in &self.fields {
            if same_header(n, "Content-Length") {
                continue;
            }
            out.extend_from_slice(n.as_bytes());
            if v.is_empty() {
                out.extend_from_slice(b":\r\n");
            } else {
                out.extend_from_slice(b": ");
                out.extend_from_slice(v.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        out.extend_from_slice(format!("Content-Length: {body_len}\r\n\r\n").as_bytes());
    }
}

/// Splits a header value on commas that are outside quoted strings and angle brackets.
pub fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut in_quote, mut in_angle, mut escaped) = (false, false, false);
    let mut start = 0;
    for (i, c) in value.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            ',' if !in_quote && !in_angle => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter().map(str::trim).filter(|p| !p.is_empty())
}

/// A SIP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI, as written.
    pub uri: String,
    /// Header fields in order.
    pub headers: Headers,
    /// The body (Content-Length bytes).
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code, 100–699.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Header fields in order.
    pub headers: Headers,
    /// The body (Content-Length bytes).
    pub body: Vec<u8>,
}

/// A SIP request or response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

impl Request {
    /// A request with no header fields and no body.
    pub fn new(method: Method, uri: impl Into<String>) -> Request {
        Request {
            method,
            uri: uri.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// The wire form; Content-Length is always written, from the body's length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(self.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(self.uri.as_bytes());
        out.extend_from_slice(b" SIP/2.0\r\n");
        self.headers.write_to(&mut out, self.body.len());
        out.extend_from_slice(&self.body);
        out
    }

    /// The Call-ID header value.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.get("Call-ID")
    }

    /// The parsed CSeq header.
    pub fn cseq(&self) -> Option<CSeq> {
        self.headers.get("CSeq").and_then(|v| CSeq::parse(v).ok())
    }

    /// The parsed topmost Via.
    pub fn top_via(&self) -> Option<Via> {
        self.headers
            .list("Via")
            .first()
            .and_then(|v| Via::parse(v).ok())
    }

    /// The parsed From header.
    pub fn from(&self) -> Option<NameAddr> {
        self.headers
            .get("From")
            .and_then(|v| NameAddr::parse(v).ok())
    }

    /// The parsed To header.
    pub fn to(&self) -> Option<NameAddr> {
        self.headers.get("To").and_then(|v| NameAddr::parse(v).ok())
    }
}

impl Response {
    /// A response with no header fields and no body.
    pub fn new(status: u16, reason: impl Into<String>) -> Response {
        Response {
            status,
            reason: reason.into(),
            headers: Headers::new(),
            body: Vec::new(),
        }
    }

    /// The wire form; Content-Length is always written, from the body's length.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.body.len());
        out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", self.status, self.reason).as_bytes());
        self.headers.write_to(&mut out, self.body.len());
        out.extend_from_slice(&self.body);
        out
    }

    /// The Call-ID header value.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.get("Call-ID")
    }

    /// The parsed CSeq header.
    pub fn cseq(&self) -> Option<CSeq> {
        self.headers.get("CSeq").and_then(|v| CSeq::parse(v).ok())
    }

    /// The parsed topmost Via.
    pub fn top_via(&self) -> Option<Via> {
        self.headers
            .list("Via")
            .first()
            .and_then(|v| Via::parse(v).ok())
    }

    /// The parsed To header.
    pub fn to(&self) -> Option<NameAddr> {
        self.headers.get("To").and_then(|v| NameAddr::parse(v).ok())
    }
}

impl Message {
    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(r) => r.to_bytes(),
            Message::Response(r) => r.to_bytes(),
        }
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The Call-ID header value.
    pub fn call_id(&self) -> Option<&str> {
        self.headers().get("Call-ID")
    }
}

/// The usual reason phrase for a status code (RFC 3261 §21).
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        182 => "Queued",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Moved Temporarily",
        305 => "Use Proxy",
        380 => "Alternative Service",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        410 => "Gone",
        413 => "Request Entity Too Large",
        414 => "Request-URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        484 => "Address Incomplete",
        485 => "Ambiguous",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        491 => "Request Pending",
        493 => "Undecipherable",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        604 => "Does Not Exist Anywhere",
        606 => "Not Acceptable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_case_insensitive_lookup() {
        let mut h = Headers::new();
        h.push("v", "SIP/2.0/UDP a;branch=z9hG4bK1");
        h.push("VIA", "SIP/2.0/UDP b;branch=z9hG4bK2, SIP/2.0/UDP c");
        h.push("i", "abc");
        h.push("l", "0");
        assert_eq!(h.get("Call-ID"), Some("abc"));
        assert_eq!(h.get("call-id"), Some("abc"));
        assert_eq!(h.get("Content-Length"), Some("0"));
        assert_eq!(h.get_all("Via").count(), 2);
        assert_eq!(h.list("via").len(), 3);
        assert_eq!(h.get("Contact"), None);
    }

    #[test]
    fn list_split_respects_quotes_and_brackets() {
        let v: Vec<_> =
            split_list(r#""Doe, John" <sip:a@b;x=1,2>;tag=1 , <sip:c>, "q\"," <sip:d>"#).collect();
        assert_eq!(
            v,
            vec![
                r#""Doe, John" <sip:a@b;x=1,2>;tag=1"#,
                "<sip:c>",
                r#""q\"," <sip:d>"#
            ]
        );
    }

    #[test]
    fn set_replaces_all_occurrences_in_place() {
        let mut h = Headers::new();
        h.push("A", "1");
        h.push("x", "2");
        h.push("a", "3");
        h.set("A", "9");
        assert_eq!(h.iter().collect::<Vec<_>>(), vec![("A", "9"), ("x", "2")]);
    }

    #[test]
    fn serialiser_writes_content_length_from_body() {
        let mut r = Request::new(Method::Options, "sip:a@b");
        r.headers.push("Content-Length", "999");
        r.headers.push("Supported", "");
        r.body = b"hi".to_vec();
        let s = String::from_utf8(r.to_bytes()).unwrap_or_default();
        assert_eq!(
            s,
            "OPTIONS sip:a@b SIP/2.0\r\nSupported:\r\nContent-Length: 2\r\n\r\nhi"
        );
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_eq!(Method::from_token("INVITE"), Method::Invite);
        assert_eq!(
            Method::from_token("invite"),
            Method::Other("invite".to_string())
        );
        assert_eq!(Method::Other("FOO".into()).as_str(), "FOO");
    }
}
