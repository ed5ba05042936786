//! HTTP/1.1 written by hand, so that paths and bodies reach the server exactly as written
//! (`..`, `%2e`, oversized or cut bodies), and a server with fixed API tokens.

use super::{Server, start_server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

/// An admin token of [`server_with_tokens`].
pub const ADMIN_TOKEN: &str = "admin-token-files-0123456789abcdef";
const ADMIN_SHA256: &str = "5466d5c8f099eee253a16580d12acbe106542ee273cf69f381779b1a818b46fd";
/// A viewer token of [`server_with_tokens`].
pub const VIEWER_TOKEN: &str = "viewer-token-files-0123456789abcdef";
const VIEWER_SHA256: &str = "8054d5024bfab3c4ac07f0f68b3820d513bf1603674fdca903157846d9b07858";

/// The server with [`ADMIN_TOKEN`] and [`VIEWER_TOKEN`], `extra` configuration after them;
/// `prepare` fills the audio root.
pub fn server_with_tokens(extra: &str, prepare: impl FnOnce(&Path)) -> Server {
    start_server(
        &format!(
            "http.api_tokens = [{{ name = \"adm\", hash = \"{ADMIN_SHA256}\", role = \"admin\", created = \"2026-01-01T00:00:00Z\" }}, {{ name = \"ro\", hash = \"{VIEWER_SHA256}\", role = \"viewer\", created = \"2026-01-01T00:00:00Z\" }}]\n{extra}"
        ),
        prepare,
    )
}

/// One HTTP answer.
pub struct Answer {
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    pub content_type: String,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "not JSON ({e}), status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the body came in chunks.
    pub fn chunked(&self) -> bool {
        self.head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
    }
}

/// `method path` with a bearer `token` and a body of `content_type`; waits up to `timeout`.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Answer {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(timeout)).expect("timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: imss\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            b.len()
        ));
    } else if method != "GET" {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).expect("send head");
    if let Some(b) = body {
        // The server may answer (413) before reading everything.
        let _ = s.write_all(b);
    }
    read_answer(&mut s)
}

/// Reads a whole answer from `s` (the server closes the connection).
pub fn read_answer(s: &mut TcpStream) -> Answer {
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head}"));
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    if header("transfer-encoding").eq_ignore_ascii_case("chunked") {
        body = dechunk(&body);
    }
    Answer {
        status,
        content_type: header("content-type"),
        head,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&raw[..eol])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}
