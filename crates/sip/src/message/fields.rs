//! Typed views of the header fields the endpoint relies on (RFC 3261 §20, §25.1).

use super::{Method, ParseError};
use std::fmt;

/// Generic `;name[=value]` parameters, in order. Names compare case-insensitively.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(pub Vec<(String, Option<String>)>);

impl Params {
    /// Parses `;a=b;c` (leading semicolon optional). Quoted values keep their quotes.
    pub fn parse(s: &str) -> Result<Params, ParseError> {
        let mut out = Vec::new();
        for part in split_outside_quotes(s, ';') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().to_string())),
                None => (part, None),
            };
            if name.is_empty() || !name.bytes().all(is_token_byte) {
                return Err(ParseError::MalformedParameter);
            }
            out.push((name.to_string(), value));
        }
        Ok(Params(out))
    }

    /// `Some(value)` if the parameter is present (`Some(None)` when it has no value).
    pub fn get(&self, name: &str) -> Option<Option<&str>> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Sets a parameter, replacing an existing one of that name in place.
    pub fn set(&mut self, name: &str, value: Option<String>) {
        match self
            .0
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    /// Removes a parameter.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }
}

impl fmt::Display for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, v) in &self.0 {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

/// RFC 3261 `token` characters.
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Splits on `sep` outside double-quoted strings (backslash escapes honoured).
pub(crate) fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut in_quote, mut escaped, mut start) = (false, false, 0);
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' if in_quote => escaped = true,
            '"' => in_quote = !in_quote,
            c if c == sep && !in_quote => {
                parts.push(&s[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// Splits `host[:port]`, with `[v6]` literals; the port must be a valid u16.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let (h, rest) = s.split_at(end + 1);
        match rest {
            "" => (h, None),
            r => (h, Some(r.strip_prefix(':')?)),
        }
    } else {
        match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let valid_host = !host.is_empty()
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_'));
    if !valid_host {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => None,
    };
    Some((host, port))
}

/// One Via header value: `SIP/2.0/UDP host:port;branch=…;received=…;rport=…`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Transport token as written (`UDP`, `TCP`, `TLS`, …).
    pub transport: String,
    /// sent-by host (IPv6 literals keep their brackets).
    pub host: String,
    /// sent-by port, if written.
    pub port: Option<u16>,
    /// via-params in order.
    pub params: Params,
}

impl Via {
    /// Parses one Via value (not a comma-separated list).
    pub fn parse(s: &str) -> Result<Via, ParseError> {
        let s = s.trim();
        let (head, params) = match s.find(';') {
            Some(i) => (&s[..i], &s[i..]),
            None => (s, ""),
        };
        let mut parts = head.splitn(3, '/');
        let proto = parts.next().map(str::trim).unwrap_or("");
        let version = parts.next().map(str::trim).unwrap_or("");
        let rest = parts.next().map(str::trim).unwrap_or("");
        if !proto.eq_ignore_ascii_case("SIP") || version != "2.0" {
            return Err(ParseError::MalformedVia);
        }
        let mut words = rest.split_whitespace();
        let (Some(transport), Some(sent_by), None) = (words.next(), words.next(), words.next())
        else {
            return Err(ParseError::MalformedVia);
        };
        if !transport.bytes().all(is_token_byte) {
            return Err(ParseError::MalformedVia);
        }
        let (host, port) = split_host_port(sent_by).ok_or(ParseError::MalformedVia)?;
        let params = Params::parse(params).map_err(|_| ParseError::MalformedVia)?;
        Ok(Via {
            transport: transport.to_ascii_uppercase(),
            host: host.to_string(),
            port,
            params,
        })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&str> {
        self.params.get("branch").flatten()
    }

    /// The received parameter (RFC 3261 §18.2.1).
    pub fn received(&self) -> Option<&str> {
        self.params.get("received").flatten()
    }

    /// The rport parameter (RFC 3581): `Some(None)` when requested without a value.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.params
            .get("rport")
            .map(|v| v.and_then(|p| p.parse().ok()))
    }

    /// The maddr parameter.
    pub fn maddr(&self) -> Option<&str> {
        self.params.get("maddr").flatten()
    }

    /// sent-by as `host[:port]`.
    pub fn sent_by(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p}", self.host),
            None => self.host.clone(),
        }
    }

    /// True if the branch carries the RFC 3261 magic cookie.
    pub fn is_rfc3261(&self) -> bool {
        self.branch().is_some_and(|b| b.starts_with("z9hG4bK"))
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SIP/2.0/{} {}{}",
            self.transport,
            self.sent_by(),
            self.params
        )
    }
}

/// A name-addr or addr-spec with header parameters: From, To, Contact, Route, Record-Route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, unquoted.
    pub display_name: Option<String>,
    /// The URI, as written between the angle brackets.
    pub uri: String,
    /// Header parameters (`tag`, `expires`, `lr` on Route URIs stays inside `uri`).
    pub params: Params,
}

impl NameAddr {
    /// Parses `"Name" <uri>;p=v`, `Name <uri>`, `<uri>` or `uri;p=v` (RFC 3261 §20.10:
    /// without angle brackets, every parameter belongs to the header).
    pub fn parse(s: &str) -> Result<NameAddr, ParseError> {
        let s = s.trim();
        let bad = ParseError::MalformedAddress;
        let (display_name, rest) = if let Some(q) = s.strip_prefix('"') {
            let mut end = None;
            let mut escaped = false;
            for (i, c) in q.char_indices() {
                if escaped {
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = Some(i);
                    break;
                }
            }
            let end = end.ok_or(bad.clone())?;
            let name = unescape_quoted(&q[..end]);
            let rest = q[end + 1..].trim_start();
            if !rest.starts_with('<') {
                return Err(bad);
            }
            (Some(name), rest)
        } else if let Some(lt) = s.find('<') {
            let name = s[..lt].trim();
            ((!name.is_empty()).then(|| name.to_string()), &s[lt..])
        } else {
            (None, s)
        };
        let (uri, params) = if let Some(inner) = rest.strip_prefix('<') {
            let gt = inner.find('>').ok_or(bad.clone())?;
            let after = inner[gt + 1..].trim();
            if !after.is_empty() && !after.starts_with(';') {
                return Err(bad);
            }
            (inner[..gt].trim(), after)
        } else {
            match rest.find(';') {
                Some(i) => (rest[..i].trim(), &rest[i..]),
                None => (rest, ""),
            }
        };
        if uri.is_empty() || uri.contains(char::is_whitespace) || !uri.contains(':') {
            return Err(bad);
        }
        let params = Params::parse(params).map_err(|_| bad)?;
        Ok(NameAddr {
            display_name,
            uri: uri.to_string(),
            params,
        })
    }

    /// The tag parameter.
    pub fn tag(&self) -> Option<&str> {
        self.params.get("tag").flatten()
    }
}

fn unescape_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if escaped {
            out.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else {
            out.push(c);
        }
    }
    out
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.display_name {
            f.write_str("\"")?;
            for c in name.chars() {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
            f.write_str("\" ")?;
        }
        write!(f, "<{}>{}", self.uri, self.params)
    }
}

/// The CSeq header: sequence number and method.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number.
    pub seq: u32,
    /// Method.
    pub method: Method,
}

impl CSeq {
    /// Parses `1234 INVITE`.
    pub fn parse(s: &str) -> Result<CSeq, ParseError> {
        let mut words = s.split_whitespace();
        let (Some(n), Some(m), None) = (words.next(), words.next(), words.next()) else {
            return Err(ParseError::MalformedCSeq);
        };
        let seq = n
            .parse::<u32>()
            .ok()
            .filter(|_| n.bytes().all(|b| b.is_ascii_digit()))
            .ok_or(ParseError::MalformedCSeq)?;
        if !m.bytes().all(is_token_byte) {
            return Err(ParseError::MalformedCSeq);
        }
        Ok(CSeq {
            seq,
            method: Method::from_token(m),
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn via_with_rport_and_branch() {
        let v = Via::parse("SIP/2.0/UDP 127.0.0.1:8062;rport;branch=z9hG4bK81c6p1XZ97QgN").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "127.0.0.1");
        assert_eq!(v.port, Some(8062));
        assert_eq!(v.branch(), Some("z9hG4bK81c6p1XZ97QgN"));
        assert_eq!(v.rport(), Some(None));
        assert!(v.is_rfc3261());
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP 127.0.0.1:8062;rport;branch=z9hG4bK81c6p1XZ97QgN"
        );
    }

    #[test]
    fn via_with_spaces_ipv6_and_received() {
        let v = Via::parse("SIP / 2.0 / tcp [2001:db8::1]:5070 ; received=192.0.2.1 ;rport=5071")
            .unwrap();
        assert_eq!(v.transport, "TCP");
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.port, Some(5070));
        assert_eq!(v.received(), Some("192.0.2.1"));
        assert_eq!(v.rport(), Some(Some(5071)));
        assert!(!v.is_rfc3261());
    }

    #[test]
    fn via_rejects_garbage() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/3.0/UDP host",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host extra",
            "HTTP/2.0/UDP host",
            "SIP/2.0/UDP ho st",
            "SIP/2.0/UDP host;=x",
        ] {
            assert!(Via::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse("<sip:127.0.0.1:8062>;tag=7m4HHZcgQDBFH").unwrap();
        assert_eq!(a.uri, "sip:127.0.0.1:8062");
        assert_eq!(a.tag(), Some("7m4HHZcgQDBFH"));
        assert_eq!(a.display_name, None);

        let b = NameAddr::parse(r#""Doe, \"J\"" <sip:j@x.org;transport=tcp>;tag=a1;x"#).unwrap();
        assert_eq!(b.display_name.as_deref(), Some(r#"Doe, "J""#));
        assert_eq!(b.uri, "sip:j@x.org;transport=tcp");
        assert_eq!(b.params.get("x"), Some(None));
        assert_eq!(
            NameAddr::parse(&b.to_string()).unwrap(),
            b,
            "display round-trip"
        );

        let c = NameAddr::parse("Bob <sips:bob@b.com>").unwrap();
        assert_eq!(c.display_name.as_deref(), Some("Bob"));

        let d = NameAddr::parse("sip:alice@a.com;tag=88").unwrap();
        assert_eq!(d.uri, "sip:alice@a.com");
        assert_eq!(d.tag(), Some("88"));

        for bad in ["", "<sip:a", "\"x <sip:a>", "<sip:a> junk", "<>", "nocolon"] {
            assert!(NameAddr::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cseq() {
        let c = CSeq::parse("1001112730 INVITE").unwrap();
        assert_eq!(c.seq, 1001112730);
        assert_eq!(c.method, Method::Invite);
        assert_eq!(c.to_string(), "1001112730 INVITE");
        for bad in [
            "",
            "1",
            "x INVITE",
            "-1 BYE",
            "1 BYE extra",
            "99999999999 BYE",
            "+1 BYE",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
