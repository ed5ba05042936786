//! Building in-dialog requests from a route set and a remote target (RFC 3261 §12.2.1.1),
//! and picking the next hop's address without DNS.

use crate::message::{NameAddr, SipUri};
use std::net::SocketAddr;

/// Where an in-dialog request goes and how it is addressed.
pub(crate) struct Route {
    /// The Request-URI.
    pub(crate) request_uri: String,
    /// Route header values, in order.
    pub(crate) routes: Vec<String>,
    /// The URI whose host and port are the next hop.
    pub(crate) next_hop: String,
}

/// Loose routing when the first route has `;lr` (or there is none), strict routing otherwise.
pub(crate) fn route(remote_target: &str, route_set: &[String]) -> Route {
    let first = route_set.first().and_then(|r| NameAddr::parse(r).ok());
    match first {
        None => Route {
            request_uri: remote_target.to_string(),
            routes: Vec::new(),
            next_hop: remote_target.to_string(),
        },
        Some(first) => {
            let strict = SipUri::parse(&first.uri).is_ok_and(|u| !u.is_loose_route());
            if strict {
                let mut routes = route_set[1..].to_vec();
                routes.push(format!("<{remote_target}>"));
                Route {
                    request_uri: first.uri.clone(),
                    routes,
                    next_hop: first.uri,
                }
            } else {
                Route {
                    request_uri: remote_target.to_string(),
                    routes: route_set.to_vec(),
                    next_hop: first.uri,
                }
            }
        }
    }
}

/// The socket address of a SIP URI whose host is an IP literal (`maddr` honoured); `None` for
/// host names, which the caller replaces by an address it already knows.
pub(crate) fn resolve(uri: &str) -> Option<SocketAddr> {
    let u = SipUri::parse(uri).ok()?;
    let default_port = if u.scheme == "sips" { 5061 } else { 5060 };
    let host = u
        .param("maddr")
        .flatten()
        .map(str::to_string)
        .unwrap_or(u.host.clone());
    crate::util::socket_addr(&host, Some(u.port.unwrap_or(default_port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loose_and_strict_routing() {
        let r = route("sip:a@10.0.0.1:5062", &["<sip:10.0.0.9;lr>".into()]);
        assert_eq!(r.request_uri, "sip:a@10.0.0.1:5062");
        assert_eq!(r.routes, ["<sip:10.0.0.9;lr>"]);
        assert_eq!(resolve(&r.next_hop), Some("10.0.0.9:5060".parse().unwrap()));

        let r = route(
            "sip:a@10.0.0.1:5062",
            &["<sip:10.0.0.9:5070>".into(), "<sip:10.0.0.8;lr>".into()],
        );
        assert_eq!(r.request_uri, "sip:10.0.0.9:5070");
        assert_eq!(r.routes, ["<sip:10.0.0.8;lr>", "<sip:a@10.0.0.1:5062>"]);
        assert_eq!(resolve(&r.next_hop), Some("10.0.0.9:5070".parse().unwrap()));

        let r = route("sips:b@[2001:db8::1]", &[]);
        assert_eq!(
            resolve(&r.next_hop),
            Some("[2001:db8::1]:5061".parse().unwrap())
        );
        assert_eq!(resolve("sip:host.example"), None);
        assert_eq!(
            resolve("sip:host.example;maddr=10.1.1.1"),
            Some("10.1.1.1:5060".parse().unwrap())
        );
    }
}
