//! The SIP URI a call is placed to: where the INVITE goes and what its Request-URI says.

use crate::ClientError;
use imss_sip::message::SipUri;
use std::net::{IpAddr, SocketAddr};

/// The port of a `sip:` URI without one (RFC 3261 §19.1.2).
pub const DEFAULT_SIP_PORT: u16 = 5060;

/// A parsed `sip:` target: the Request-URI to send and the host and port to send it to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipTarget {
    /// The Request-URI exactly as given (user, host, port and URI parameters such as `play=`).
    pub request_uri: String,
    /// The user part (`annc`, `moh`), if any.
    pub user: Option<String>,
    /// Host name or address literal, without IPv6 brackets.
    pub host: String,
    /// Port, [`DEFAULT_SIP_PORT`] when the URI has none.
    pub port: u16,
}

impl SipTarget {
    /// Parses `sip:[user@]host[:port][;params][?headers]` with imss-sip's URI parser;
    /// angle brackets are accepted, `sips:` and non-UDP transports are refused.
    pub fn parse(uri: &str) -> Result<SipTarget, ClientError> {
        let bad = |detail: &str| ClientError::InvalidUri {
            uri: uri.to_string(),
            detail: detail.to_string(),
        };
        let trimmed = uri.trim();
        let trimmed = trimmed
            .strip_prefix('<')
            .and_then(|s| s.strip_suffix('>'))
            .unwrap_or(trimmed);
        let parsed =
            SipUri::parse(trimmed).map_err(|_| bad("expected sip:[user@]host[:port][;params]"))?;
        if parsed.scheme != "sip" {
            return Err(bad("only sip: is supported (no TLS)"));
        }
        if parsed
            .transport()
            .is_some_and(|t| !t.eq_ignore_ascii_case("udp"))
        {
            return Err(bad("only transport=udp is supported by this client"));
        }
        let host = parsed
            .host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(&parsed.host);
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match parsed.port {
            Some(0) => return Err(bad("port 0")),
            Some(p) => p,
            None => DEFAULT_SIP_PORT,
        };
        Ok(SipTarget {
            request_uri: trimmed.to_string(),
            user: parsed.user,
            host: host.to_string(),
            port,
        })
    }

    /// Resolves the host (address literals need no lookup) to the address the INVITE goes to.
    pub async fn resolve(&self, prefer_v4: bool) -> Result<SocketAddr, ClientError> {
        if let Ok(ip) = self.host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        let err = |detail: String| ClientError::Resolve {
            host: self.host.clone(),
            detail,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await
            .map_err(|e| err(e.to_string()))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4() == prefer_v4)
            .or_else(|| addrs.first())
            .copied()
            .ok_or_else(|| err("no address".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_uri_keeps_parameters_in_the_request_uri() {
        let t = SipTarget::parse("sip:annc@127.0.0.1:6060;play=x.wav").expect("valid");
        assert_eq!(t.request_uri, "sip:annc@127.0.0.1:6060;play=x.wav");
        assert_eq!(t.user.as_deref(), Some("annc"));
        assert_eq!(t.host, "127.0.0.1");
        assert_eq!(t.port, 6060);
    }

    #[test]
    fn default_port_is_5060() {
        let t = SipTarget::parse("sip:moh@192.0.2.7").expect("valid");
        assert_eq!(t.port, 5060);
        assert_eq!(t.host, "192.0.2.7");
        let t = SipTarget::parse("sip:annc@example.net;play=http://h/a.wav?x=1").expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("example.net", 5060));
        assert_eq!(
            t.request_uri,
            "sip:annc@example.net;play=http://h/a.wav?x=1"
        );
    }

    #[test]
    fn ipv6_without_user_and_angle_brackets() {
        let t = SipTarget::parse("<sip:[::1]:6061;play=a.wav>").expect("valid");
        assert_eq!(t.host, "::1");
        assert_eq!(t.port, 6061);
        assert_eq!(t.user, None);
        assert_eq!(t.request_uri, "sip:[::1]:6061;play=a.wav");
        let t = SipTarget::parse("sip:moh@[2001:db8::1]").expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("2001:db8::1", 5060));
    }

    #[test]
    fn user_with_password_and_at_in_parameter() {
        let t = SipTarget::parse("sip:annc:secret@h.example:7000;play=mail@x").expect("valid");
        assert_eq!(t.user.as_deref(), Some("annc"));
        assert_eq!((t.host.as_str(), t.port), ("h.example", 7000));
    }

    #[test]
    fn rejects_what_cannot_be_called() {
        for bad in [
            "annc@127.0.0.1",
            "http://127.0.0.1/",
            "sips:annc@127.0.0.1",
            "sip:",
            "sip:annc@",
            "sip:@127.0.0.1",
            "sip:annc@127.0.0.1:0",
            "sip:annc@127.0.0.1:70000",
            "sip:annc@127.0.0.1:x",
            "sip:annc@[::1",
            "sip:annc@127.0.0.1;transport=tcp",
            "sip:an nc@127.0.0.1",
        ] {
            assert!(SipTarget::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[tokio::test]
    async fn literal_addresses_resolve_without_lookup() {
        let t = SipTarget::parse("sip:moh@127.0.0.1:6060").expect("valid");
        let a = t.resolve(true).await.expect("literal");
        assert_eq!(a, "127.0.0.1:6060".parse::<SocketAddr>().expect("addr"));
    }
}
