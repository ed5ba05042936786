//! SIP and SIPS URIs (RFC 3261 §19.1) and percent-decoding.

use super::ParseError;
use super::fields::{Params, split_host_port};
use std::fmt;

/// A parsed `sip:` or `sips:` URI. Parts are kept as written (still %-escaped); use
/// [`SipUri::param_decoded`] or [`percent_decode`] for the values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipUri {
    /// `sip` or `sips`, lowercase.
    pub scheme: String,
    /// The user part, as written.
    pub user: Option<String>,
    /// The password part, as written.
    pub password: Option<String>,
    /// Host name or address (IPv6 literals keep their brackets).
    pub host: String,
    /// Port, if written.
    pub port: Option<u16>,
    /// URI parameters in order (`;transport=tcp;lr;play=…`), values as written.
    pub params: Params,
    /// URI headers (`?subject=x&priority=urgent`), as written.
    pub headers: Vec<(String, String)>,
}

impl SipUri {
    /// Parses a SIP or SIPS URI.
    pub fn parse(s: &str) -> Result<SipUri, ParseError> {
        let bad = || ParseError::MalformedUri;
        let s = s.trim();
        if s.is_empty()
            || s.bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(bad());
        }
        let (scheme, rest) = s.split_once(':').ok_or_else(bad)?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "sip" && scheme != "sips" {
            return Err(bad());
        }
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h)),
            None => (rest, None),
        };
        // The userinfo ends at the first '@', unless that '@' sits inside a parameter value
        // (for example an unescaped URL in `play=`).
        let (userinfo, rest) = match rest.find('@') {
            Some(i) if !rest[..i].contains(['=', '/']) => (Some(&rest[..i]), &rest[i + 1..]),
            _ => (None, rest),
        };
        let (user, password) = match userinfo {
            Some(u) => {
                let (user, pw) = match u.split_once(':') {
                    Some((u, p)) => (u, Some(p.to_string())),
                    None => (u, None),
                };
                if user.is_empty() {
                    return Err(bad());
                }
                (Some(user.to_string()), pw)
            }
            None => (None, None),
        };
        let (hostport, params) = match rest.find(';') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let (host, port) = split_host_port(hostport).ok_or_else(bad)?;
        let mut list = Vec::new();
        for p in params.split(';') {
            if p.is_empty() {
                continue;
            }
            let (n, v) = match p.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (p, None),
            };
            if n.is_empty() {
                return Err(bad());
            }
            list.push((n.to_string(), v));
        }
        let mut hdrs = Vec::new();
        if let Some(h) = headers {
            for kv in h.split('&').filter(|kv| !kv.is_empty()) {
                let (k, v) = kv.split_once('=').ok_or_else(bad)?;
                hdrs.push((k.to_string(), v.to_string()));
            }
        }
        Ok(SipUri {
            scheme,
            user,
            password,
            host: host.to_string(),
            port,
            params: Params(list),
            headers: hdrs,
        })
    }

    /// A URI parameter: `Some(None)` when present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params.get(name)
    }

    /// A URI parameter's value, percent-decoded (None if absent, valueless or badly escaped).
    pub fn param_decoded(&self, name: &str) -> Option<String> {
        self.param(name).flatten().and_then(percent_decode)
    }

    /// The user part, percent-decoded.
    pub fn user_decoded(&self) -> Option<String> {
        self.user.as_deref().and_then(percent_decode)
    }

    /// The `transport` parameter, lowercase.
    pub fn transport(&self) -> Option<String> {
        self.param("transport")
            .flatten()
            .map(|t| t.to_ascii_lowercase())
    }

    /// True for a loose-routing URI (`;lr`, RFC 3261 §16.12).
    pub fn is_loose_route(&self) -> bool {
        self.param("lr").is_some()
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(u) = &self.user {
            f.write_str(u)?;
            if let Some(p) = &self.password {
                write!(f, ":{p}")?;
            }
            f.write_str("@")?;
        }
        f.write_str(&self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        write!(f, "{}", self.params)?;
        for (i, (k, v)) in self.headers.iter().enumerate() {
            write!(f, "{}{k}={v}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

/// Decodes `%XX` escapes into bytes; `None` if an escape is malformed.
pub fn percent_decode_bytes(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Decodes `%XX` escapes; `None` if an escape is malformed or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    percent_decode_bytes(s).and_then(|b| String::from_utf8(b).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4240_announcement_uri() {
        let u = SipUri::parse(
            "sip:annc@ms.example.net:5070;play=file%3A%2F%2F%2Fvar%2Fhello%20world.wav;repeat=3;delay=500",
        )
        .unwrap();
        assert_eq!(u.scheme, "sip");
        assert_eq!(u.user.as_deref(), Some("annc"));
        assert_eq!(u.host, "ms.example.net");
        assert_eq!(u.port, Some(5070));
        assert_eq!(
            u.param_decoded("play").as_deref(),
            Some("file:///var/hello world.wav")
        );
        assert_eq!(u.param("repeat"), Some(Some("3")));
        assert_eq!(u.param("REPEAT"), Some(Some("3")));
        assert_eq!(u.param("missing"), None);
    }

    #[test]
    fn unescaped_url_in_param_is_not_userinfo() {
        let u = SipUri::parse("sip:10.0.0.1;play=http://user@media.example/a.wav").unwrap();
        assert_eq!(u.user, None);
        assert_eq!(u.host, "10.0.0.1");
        assert_eq!(
            u.param("play"),
            Some(Some("http://user@media.example/a.wav"))
        );
    }

    #[test]
    fn full_uri_round_trips() {
        let s = "sips:alice:pw@[2001:db8::2]:5061;transport=tcp;lr?subject=hi&x=1";
        let u = SipUri::parse(s).unwrap();
        assert_eq!(u.password.as_deref(), Some("pw"));
        assert_eq!(u.host, "[2001:db8::2]");
        assert!(u.is_loose_route());
        assert_eq!(u.transport().as_deref(), Some("tcp"));
        assert_eq!(u.headers.len(), 2);
        assert_eq!(u.to_string(), s);
    }

    #[test]
    fn rejects_bad_uris() {
        for bad in [
            "",
            "tel:+123",
            "sip:",
            "sip:@host",
            "sip:host:0",
            "sip:host:70000",
            "sip:ho st",
            "sip:host;=x",
            "http://x",
        ] {
            assert!(SipUri::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%20b%2Fc").as_deref(), Some("a b/c"));
        assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
        assert_eq!(percent_decode("100%"), None);
        assert_eq!(percent_decode("%G1"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode_bytes("%ff"), Some(vec![0xff]));
    }
}
