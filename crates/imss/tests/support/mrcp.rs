//! MRCPv2 over a raw control connection, for the end-to-end tests: requests with a correct
//! message-length, framing of what the server sends, and the server's descriptor and thread
//! counts for leak checks.

use std::io::{ErrorKind, Read};
use std::time::{Duration, Instant};

/// `MRCP/2.0 <length><rest>` with the right message-length (which counts the whole
/// message, its own digits included).
pub fn with_message_length(rest: &str) -> Vec<u8> {
    let mut len = "MRCP/2.0 ".len() + rest.len();
    loop {
        let total = "MRCP/2.0 ".len() + len.to_string().len() + rest.len();
        if total == len {
            break;
        }
        len = total;
    }
    format!("MRCP/2.0 {len}{rest}").into_bytes()
}

/// An MRCPv2 request on `channel`: `extra` header lines (each ending in CRLF), then `body`.
pub fn mrcp_request(
    channel: &str,
    method: &str,
    request_id: u32,
    extra: &str,
    body: &str,
) -> Vec<u8> {
    with_message_length(&format!(
        " {method} {request_id}\r\nChannel-Identifier: {channel}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

/// Reads MRCP messages from `stream` (which must have a read timeout, or be a TLS stream
/// over a socket that has one) until one whose start line contains `want`, and returns it
/// whole; messages before it are dropped.
pub fn read_until(
    stream: &mut impl Read,
    buf: &mut Vec<u8>,
    want: &str,
    limit: Duration,
) -> String {
    let end = Instant::now() + limit;
    loop {
        while let Some(msg) = take_message(buf) {
            if msg.lines().next().unwrap_or_default().contains(want) {
                return msg;
            }
        }
        assert!(
            Instant::now() < end,
            "no MRCP message with {want:?}; have {:?}",
            String::from_utf8_lossy(buf)
        );
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => panic!("MRCP connection closed while waiting for {want:?}"),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

/// The first whole message in `buf`, framed by its message-length, removed from `buf`.
pub fn take_message(buf: &mut Vec<u8>) -> Option<String> {
    let text = String::from_utf8_lossy(buf).to_string();
    let len: usize = text.split(' ').nth(1)?.parse().ok()?;
    if buf.len() < len {
        return None;
    }
    let msg = String::from_utf8_lossy(&buf[..len]).to_string();
    buf.drain(..len);
    Some(msg)
}

/// Open descriptors and threads of a process.
pub fn fds_and_threads(pid: u32) -> (usize, usize) {
    let count = |dir: String| std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
    (
        count(format!("/proc/{pid}/fd")),
        count(format!("/proc/{pid}/task")),
    )
}
