//! Small helpers shared by the endpoint and the client: identifiers and address parsing.

use rand::Rng;
use std::net::{IpAddr, SocketAddr};

/// A random token of `n` lowercase alphanumeric characters (tags, Call-IDs).
pub(crate) fn random_token(n: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())]))
        .collect()
}

/// A new RFC 3261 branch, starting with the magic cookie.
pub(crate) fn new_branch() -> String {
    format!("z9hG4bK{}", random_token(16))
}

/// A random initial CSeq number, below 2**31 as RFC 3261 §8.1.1.5 requires.
pub(crate) fn initial_cseq() -> u32 {
    rand::thread_rng().gen_range(1..0x1000_0000)
}

/// Parses a host that must be a literal IP address (`[v6]` accepted).
pub(crate) fn parse_ip(host: &str) -> Option<IpAddr> {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    h.parse().ok()
}

/// `host:port` for a URI or header, bracketing IPv6 literals.
pub(crate) fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A socket address from a literal host and an optional port (5060 by default).
pub(crate) fn socket_addr(host: &str, port: Option<u16>) -> Option<SocketAddr> {
    parse_ip(host).map(|ip| SocketAddr::new(ip, port.unwrap_or(5060)))
}
