//! `sip.trusted_networks`: the source addresses whose SIP requests and MRCPv2 control
//! connections are served. The list is read from the configuration applied now, so a reload
//! (SIGHUP or a change through the API) takes effect with the next request.
//!
//! Requests from elsewhere get a stateless `403 Forbidden`, sent back to the address they
//! came from only (never to a Via of their choosing, so the refusal cannot be aimed at a
//! third party); ACKs and responses from elsewhere are dropped.

use super::Shell;
use crate::{Config, Shared};
use imss_sip::endpoint::{Transmit, Transport};
use imss_sip::message::{self, Message, Method, Request, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The trusted networks of the configuration applied now; the configuration is held so
/// that each check costs one uncontended read lock and a pointer comparison.
pub(super) struct TrustedNetworks {
    config: Arc<Config>,
}

impl TrustedNetworks {
    pub fn new(shared: &Shared) -> TrustedNetworks {
        TrustedNetworks {
            config: shared.applied(),
        }
    }

    /// Whether requests from `ip` are served (always, while the list is empty).
    pub fn allows(&mut self, shared: &Shared, ip: IpAddr) -> bool {
        {
            let applied = shared
                .applied
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !Arc::ptr_eq(&applied, &self.config) {
                self.config = Arc::clone(&applied);
            }
        }
        contains(&self.config.sip.trusted_networks, ip)
    }
}

/// Whether `nets` serves `ip`: an empty list serves everyone. An IPv4 client reaching a
/// dual-stack socket (`::ffff:a.b.c.d`) counts as its IPv4 address.
fn contains(nets: &[ipnet::IpNet], ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    nets.is_empty() || nets.iter().any(|n| n.contains(&ip))
}

/// The `403 Forbidden` answering `req` from `from`: its Via, From, To (with a tag of ours),
/// Call-ID and CSeq, and a Warning that names the address. `None` when the request lacks
/// the headers a response needs.
fn forbidden(req: &Request, from: IpAddr, agent_host: &str) -> Option<Response> {
    let mut r = Response::new(403, "Forbidden");
    let vias = req.headers.get_all("Via").collect::<Vec<_>>();
    if vias.is_empty() {
        return None;
    }
    for via in vias {
        r.headers.push("Via", via);
    }
    r.headers.push("From", req.headers.get("From")?);
    let to = req.to()?;
    let to_value = req.headers.get("To")?;
    if to.tag().is_some() {
        r.headers.push("To", to_value);
    } else {
        r.headers.push(
            "To",
            format!("{to_value};tag={:08x}", rand::random::<u32>()),
        );
    }
    r.headers.push("Call-ID", req.call_id()?);
    r.headers.push("CSeq", req.headers.get("CSeq")?);
    r.headers.push(
        "Warning",
        format!("399 {agent_host} \"source address {from} is not in sip.trusted_networks\""),
    );
    Some(r)
}

impl Shell {
    /// A datagram from outside the trusted networks: a request (not ACK) is refused with
    /// 403, anything else is dropped.
    pub(super) fn refuse_untrusted_datagram(&mut self, from: SocketAddr, bytes: &[u8]) {
        if let Ok(message) = message::parse_datagram(bytes) {
            self.refuse_untrusted(from, Transport::Udp, None, &message);
        }
    }

    /// A message from outside the trusted networks over `transport` (TCP: on connection
    /// `conn`): a request (not ACK) is refused with 403, anything else is dropped.
    pub(super) fn refuse_untrusted(
        &mut self,
        from: SocketAddr,
        transport: Transport,
        conn: Option<u64>,
        message: &Message,
    ) {
        let Message::Request(req) = message else {
            return;
        };
        if req.method == Method::Ack {
            return;
        }
        let host = self.shared.config.sip_advertise().to_string();
        let Some(response) = forbidden(req, from.ip(), &host) else {
            return;
        };
        tracing::debug!(peer = %from, method = req.method.as_str(), "SIP request from outside sip.trusted_networks refused");
        if transport == Transport::Tcp && conn.is_none() {
            return;
        }
        self.send(Transmit {
            transport,
            conn,
            to: from,
            bytes: response.to_bytes(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
        list.iter()
            .map(|n| n.parse().expect("test network"))
            .collect()
    }

    #[test]
    fn empty_list_serves_everyone_and_others_are_matched_by_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("test address");
        assert!(contains(&[], ip("203.0.113.9")));
        let list = nets(&["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
        assert!(contains(&list, ip("10.200.1.2")));
        assert!(contains(&list, ip("192.0.2.7")));
        assert!(!contains(&list, ip("192.0.2.8")));
        assert!(contains(&list, ip("2001:db8::1")));
        assert!(!contains(&list, ip("2001:db9::1")));
        // An IPv4 client on a dual-stack socket.
        assert!(contains(&list, ip("::ffff:10.1.2.3")));
        assert!(!contains(&list, ip("::ffff:11.1.2.3")));
    }

    #[test]
    fn forbidden_mirrors_the_transaction_and_names_the_address() {
        let raw = "OPTIONS sip:imss@192.0.2.1 SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 198.51.100.4:5070;branch=z9hG4bK-1;rport\r\n\
                   Via: SIP/2.0/UDP 198.51.100.9;branch=z9hG4bK-0\r\n\
                   From: <sip:a@198.51.100.4>;tag=abc\r\n\
                   To: <sip:imss@192.0.2.1>\r\n\
                   Call-ID: c1@198.51.100.4\r\n\
                   CSeq: 7 OPTIONS\r\n\
                   Content-Length: 0\r\n\r\n";
        let Ok(Message::Request(req)) = message::parse_datagram(raw.as_bytes()) else {
            panic!("test request does not parse");
        };
        let r =
            forbidden(&req, "198.51.100.4".parse().expect("ip"), "192.0.2.1").expect("a response");
        let text = String::from_utf8(r.to_bytes()).expect("UTF-8");
        assert!(text.starts_with("SIP/2.0 403 Forbidden\r\n"), "{text}");
        assert_eq!(r.headers.get_all("Via").count(), 2, "{text}");
        assert_eq!(r.call_id(), Some("c1@198.51.100.4"));
        assert_eq!(r.headers.get("CSeq"), Some("7 OPTIONS"));
        assert!(r.to().and_then(|t| t.tag().map(str::to_string)).is_some());
        assert!(
            text.contains("198.51.100.4 is not in sip.trusted_networks"),
            "{text}"
        );
        // Without a Call-ID there is nothing to answer.
        let mut bare = req.clone();
        bare.headers.remove("Call-ID");
        assert!(forbidden(&bare, "198.51.100.4".parse().expect("ip"), "h").is_none());
    }
}
