//! Audio fetched over HTTP(S) for requests, end to end: a real HTTP server in the test (std
//! threads on a loopback port, real WAV files, real caching headers, counting requests)
//! serves the audio; MRCPv2 SPEAKs and RFC 4240 `play=` announcements name it, and what the
//! caller receives is checked by content (tone frequency, SNR).

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::session::*;
use support::*;

// ---------------------------------------------------------------------------------------
// The HTTP server
// ---------------------------------------------------------------------------------------

/// What a path answers with.
#[derive(Clone)]
enum Body {
    /// These bytes, with their Content-Length.
    Bytes(Vec<u8>),
    /// `len` zero bytes, with a Content-Length (`announce`) or chunked; counted in `sent`.
    Zeros { len: u64, announce: bool },
}

#[derive(Clone)]
struct Route {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
    /// Answer `304` to an `If-None-Match` with this tag.
    etag: Option<String>,
    /// Wait this long before answering at all (a stalled server).
    delay: Duration,
}

impl Route {
    fn audio(wav: &[u8], headers: &[(&str, &str)]) -> Route {
        let mut h: Vec<(String, String)> = vec![("Content-Type".into(), "audio/wav".into())];
        h.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let etag = h
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("etag"))
            .map(|(_, v)| v.clone());
        Route {
            status: 200,
            headers: h,
            body: Body::Bytes(wav.to_vec()),
            etag,
            delay: Duration::ZERO,
        }
    }
}

/// One request the server received, and the status it answered.
#[derive(Clone, Debug)]
struct Hit {
    path: String,
    /// Header fields, names in lower case.
    headers: HashMap<String, String>,
    status: u16,
}

/// A small HTTP/1.1 server on a loopback port: one thread per connection, one request per
/// connection (`Connection: close`).
struct HttpServer {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Body bytes written for `Body::Zeros` answers.
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl HttpServer {
    fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind HTTP");
        let addr = listener.local_addr().expect("addr");
        let server = HttpServer {
            addr,
            routes: Arc::default(),
            hits: Arc::default(),
            sent: Arc::default(),
            stop: Arc::default(),
        };
        let (routes, hits, sent, stop) = (
            server.routes.clone(),
            server.hits.clone(),
            server.sent.clone(),
            server.stop.clone(),
        );
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (routes, hits, sent, stop) =
                    (routes.clone(), hits.clone(), sent.clone(), stop.clone());
                std::thread::spawn(move || serve(conn, &routes, &hits, &sent, &stop));
            }
        });
        server
    }

    fn route(&self, path: &str, route: Route) {
        self.routes
            .lock()
            .expect("routes")
            .insert(path.to_string(), route);
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .expect("hits")
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    mut conn: TcpStream,
    routes: &Mutex<HashMap<String, Route>>,
    hits: &Mutex<Vec<Hit>>,
    sent: &AtomicU64,
    stop: &AtomicBool,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) if head.len() < 16 * 1024 => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or("/")
        .to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let route = routes.lock().expect("routes").get(&path).cloned();
    let route = route.unwrap_or(Route {
        status: 404,
        headers: vec![("Content-Type".into(), "text/plain".into())],
        body: Body::Bytes(b"not found".to_vec()),
        etag: None,
        delay: Duration::ZERO,
    });
    let not_modified = route.etag.is_some() && headers.get("if-none-match") == route.etag.as_ref();
    let status = if not_modified { 304 } else { route.status };
    hits.lock().expect("hits").push(Hit {
        path,
        headers,
        status,
    });
    let end = Instant::now() + route.delay;
    while Instant::now() < end && !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let reason = match status {
        200 => "OK",
        302 => "Found",
        304 => "Not Modified",
        404 => "Not Found",
        _ => "Whatever",
    };
    let mut out = format!("HTTP/1.1 {status} {reason}\r\nConnection: close\r\n");
    for (k, v) in &route.headers {
        if !(not_modified && k.to_ascii_lowercase().starts_with("content-")) {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if not_modified {
        out.push_str("\r\n");
        let _ = conn.write_all(out.as_bytes());
        return;
    }
    match route.body {
        Body::Bytes(b) => {
            out.push_str(&format!("Content-Length: {}\r\n\r\n", b.len()));
            let _ = conn.write_all(out.as_bytes());
            let _ = conn.write_all(&b);
        }
        Body::Zeros { len, announce } => {
            if announce {
                out.push_str(&format!("Content-Length: {len}\r\n\r\n"));
            } else {
                out.push_str("Transfer-Encoding: chunked\r\n\r\n");
            }
            if conn.write_all(out.as_bytes()).is_err() {
                return;
            }
            let chunk = vec![0u8; 64 * 1024];
            let mut left = len;
            while left > 0 && !stop.load(Ordering::SeqCst) {
                let n = left.min(chunk.len() as u64) as usize;
                let ok = if announce {
                    conn.write_all(&chunk[..n])
                } else {
                    conn.write_all(format!("{n:x}\r\n").as_bytes())
                        .and_then(|()| conn.write_all(&chunk[..n]))
                        .and_then(|()| conn.write_all(b"\r\n"))
                };
                if ok.is_err() {
                    return; // the client went away
                }
                sent.fetch_add(n as u64, Ordering::SeqCst);
                left -= n as u64;
            }
            if !announce {
                let _ = conn.write_all(b"0\r\n\r\n");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Audio
// ---------------------------------------------------------------------------------------

/// A WAV file (16-bit mono at `rate`) of a sine at `freq` Hz, −6 dBFS, as bytes.
fn sine_wav(dir: &Path, name: &str, rate: u32, freq: f64, seconds: f64) -> Vec<u8> {
    let path = dir.join(name);
    write_wav(&path, rate, &sine(rate, freq, seconds));
    std::fs::read(&path).expect("read wav")
}

fn sine(rate: u32, freq: f64, seconds: f64) -> Vec<f32> {
    let n = (seconds * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as f32
        })
        .collect()
}

/// Asserts a SPEAK-COMPLETE with `003 uri-failure` for `uri` and the given cause.
fn assert_uri_failure(done: &str, uri: &str, cause: &str) {
    assert!(done.contains("Completion-Cause: 003 uri-failure"), "{done}");
    assert!(done.contains(&format!("Failed-URI: {uri}\r\n")), "{done}");
    assert!(
        done.contains(&format!("Failed-URI-Cause: {cause}\r\n")),
        "{done}"
    );
    assert!(done.contains("Completion-Reason:"), "{done}");
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
fn speak_of_an_http_uri_plays_it_then_serves_it_from_the_cache_and_revalidates() {
    let web = HttpServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = sine_wav(dir.path(), "a.wav", 16_000, 600.0, 1.2);
    web.route(
        "/a.wav",
        Route::audio(&wav, &[("Cache-Control", "max-age=3"), ("ETag", "\"v1\"")]),
    );
    let server = start_server("", |_| {});
    let mut s = open_session(&server);
    let uri = web.url("/a.wav");

    // First SPEAK: fetched once, played.
    let fetched_at = Instant::now();
    s.speak_uri(1, "", &uri);
    let (loud, f) = s.plays(1, Duration::from_millis(600));
    assert!(loud >= 20, "{loud} loud packets; log:\n{}", server.log());
    assert!(
        (570.0..630.0).contains(&f),
        "plays the 600 Hz file ({f:.0} Hz)"
    );
    let done = s.complete(Duration::from_secs(5));
    assert!(done.contains("000 normal"), "{done}");
    assert_eq!(web.hits("/a.wav").len(), 1);

    // Second SPEAK (SSML <audio>): from the cache, no request.
    let ssml = format!(
        r#"<?xml version="1.0"?><speak version="1.0" xml:lang="en-US" xmlns="http://www.w3.org/2001/10/synthesis"><audio src="{uri}"/></speak>"#
    );
    s.speak(2, "", "application/ssml+xml", &ssml);
    let (loud, f) = s.plays(2, Duration::from_millis(600));
    assert!(
        loud >= 20 && (570.0..630.0).contains(&f),
        "{loud} {f:.0} Hz"
    );
    assert!(s.complete(Duration::from_secs(5)).contains("000 normal"));
    assert_eq!(
        web.hits("/a.wav").len(),
        1,
        "a fresh copy is not fetched again"
    );

    // After max-age: revalidated with If-None-Match, 304, the cached clip plays.
    let wait = Duration::from_millis(3300).saturating_sub(fetched_at.elapsed());
    std::thread::sleep(wait);
    s.speak_uri(3, "", &uri);
    let (loud, f) = s.plays(3, Duration::from_millis(600));
    assert!(
        loud >= 20 && (570.0..630.0).contains(&f),
        "{loud} {f:.0} Hz"
    );
    assert!(s.complete(Duration::from_secs(5)).contains("000 normal"));
    let hits = web.hits("/a.wav");
    assert_eq!(hits.len(), 2, "{hits:?}");
    assert_eq!(
        hits[1].headers.get("if-none-match").map(String::as_str),
        Some("\"v1\""),
        "{hits:?}"
    );
    assert_eq!(hits[1].status, 304);
    assert!(
        server.log().contains("revalidated (304)"),
        "{}",
        server.log()
    );

    // An MRCP Cache-Control: max-age=0 asks for a revalidation even of a fresh copy.
    s.speak_uri(4, "Cache-Control: max-age=0\r\n", &uri);
    let (loud, _) = s.plays(4, Duration::from_millis(300));
    assert!(loud >= 10);
    assert!(s.complete(Duration::from_secs(5)).contains("000 normal"));
    assert_eq!(web.hits("/a.wav").len(), 3);

    // The body is on disk under the data directory's cache folder.
    let cache = server.dir.path().join("cache/http");
    let files: Vec<String> = std::fs::read_dir(&cache)
        .expect("cache folder")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    assert!(
        files.iter().any(|f| f.ends_with(".wav")) && files.iter().any(|f| f.ends_with(".json")),
        "{files:?}"
    );
}

#[test]
fn failures_complete_with_uri_failure_and_name_the_uri_and_cause() {
    let web = HttpServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = sine_wav(dir.path(), "a.wav", 8000, 600.0, 0.5);
    web.route("/a.wav", Route::audio(&wav, &[]));
    web.route(
        "/stall.wav",
        Route {
            delay: Duration::from_secs(20),
            ..Route::audio(&wav, &[])
        },
    );
    web.route(
        "/page.wav",
        Route {
            headers: vec![("Content-Type".into(), "text/html".into())],
            ..Route::audio(b"<html>sorry</html>", &[])
        },
    );
    let hundred_mb = 100 * 1024 * 1024;
    web.route(
        "/huge.wav",
        Route {
            body: Body::Zeros {
                len: hundred_mb,
                announce: true,
            },
            ..Route::audio(&[], &[])
        },
    );
    web.route(
        "/huge-chunked.wav",
        Route {
            body: Body::Zeros {
                len: hundred_mb,
                announce: false,
            },
            ..Route::audio(&[], &[])
        },
    );
    let redirect_to_refused = format!("http://localhost:{}/a.wav", web.addr.port());
    web.route(
        "/redirect.wav",
        Route {
            status: 302,
            headers: vec![("Location".into(), redirect_to_refused.clone())],
            ..Route::audio(&[], &[])
        },
    );
    // Only 127.0.0.1: `localhost` is another host name and is refused.
    let server = start_server("[http_audio]\nallow_hosts = [\"127.0.0.1\"]\n", |_| {});
    let mut s = open_session(&server);

    // Fetch-Timeout: a server that never answers fails the SPEAK after that long.
    let uri = web.url("/stall.wav");
    let t = Instant::now();
    s.speak_uri(1, "Fetch-Timeout: 1000\r\n", &uri);
    let done = s.complete(Duration::from_secs(10));
    let took = t.elapsed();
    assert_uri_failure(&done, &uri, "timeout");
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(3000),
        "Fetch-Timeout 1000 ms, failed after {took:?}"
    );

    // 404.
    let uri = web.url("/missing.wav");
    s.speak_uri(2, "", &uri);
    assert_uri_failure(&s.complete(Duration::from_secs(10)), &uri, "404");

    // Not audio.
    let uri = web.url("/page.wav");
    s.speak_uri(3, "", &uri);
    let done = s.complete(Duration::from_secs(10));
    assert_uri_failure(&done, &uri, "unsupported-content-type");
    assert!(done.contains("text/html"), "{done}");

    // 100 MB announced in Content-Length: refused on the header, the body is not read.
    let uri = web.url("/huge.wav");
    let t = Instant::now();
    s.speak_uri(4, "", &uri);
    assert_uri_failure(&s.complete(Duration::from_secs(10)), &uri, "too-large");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    let sent = web.sent.load(Ordering::SeqCst);
    assert!(
        sent < 16 * 1024 * 1024,
        "{sent} bytes of the body were sent"
    );

    // 100 MB chunked: refused once the bytes read pass the 50 MiB limit.
    let before = web.sent.load(Ordering::SeqCst);
    let uri = web.url("/huge-chunked.wav");
    let t = Instant::now();
    s.speak_uri(5, "", &uri);
    assert_uri_failure(&s.complete(Duration::from_secs(20)), &uri, "too-large");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    let sent = web.sent.load(Ordering::SeqCst) - before;
    assert!(
        (50 * 1024 * 1024..70 * 1024 * 1024).contains(&sent),
        "{sent} bytes sent of a 100 MB body"
    );

    // A host outside the allow-list is refused without a request.
    let uri = format!("http://localhost:{}/a.wav", web.addr.port());
    s.speak_uri(6, "", &uri);
    let done = s.complete(Duration::from_secs(10));
    assert_uri_failure(&done, &uri, "host-not-allowed");
    assert!(done.contains("allow_hosts"), "{done}");
    assert!(web.hits("/a.wav").is_empty());

    // So is a redirect to one.
    let uri = web.url("/redirect.wav");
    s.speak_uri(7, "", &uri);
    assert_uri_failure(
        &s.complete(Duration::from_secs(10)),
        &uri,
        "host-not-allowed",
    );
    assert_eq!(web.hits("/redirect.wav").len(), 1);
    assert!(web.hits("/a.wav").is_empty());

    // The allowed host itself plays.
    s.speak_uri(8, "", &web.url("/a.wav"));
    let (loud, f) = s.plays(8, Duration::from_millis(300));
    assert!(
        loud >= 10 && (570.0..630.0).contains(&f),
        "{loud} {f:.0} Hz"
    );
    assert!(s.complete(Duration::from_secs(5)).contains("000 normal"));
}

#[test]
fn concurrent_speaks_of_one_uri_share_one_fetch_and_no_store_is_fetched_each_time() {
    let web = HttpServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = sine_wav(dir.path(), "slow.wav", 8000, 900.0, 1.0);
    web.route(
        "/slow.wav",
        Route {
            delay: Duration::from_millis(800),
            ..Route::audio(&wav, &[("Cache-Control", "max-age=600")])
        },
    );
    web.route(
        "/volatile.wav",
        Route::audio(&wav, &[("Cache-Control", "no-store")]),
    );
    let server = start_server("", |_| {});
    let mut a = open_session(&server);
    let mut b = open_session(&server);
    let uri = web.url("/slow.wav");
    a.speak_uri(1, "", &uri);
    b.speak_uri(1, "", &uri);
    let (loud_a, fa) = a.plays(1, Duration::from_millis(400));
    let (loud_b, fb) = b.plays(1, Duration::from_millis(400));
    assert!(
        loud_a >= 10 && (850.0..950.0).contains(&fa),
        "{loud_a} {fa:.0} Hz"
    );
    assert!(
        loud_b >= 10 && (850.0..950.0).contains(&fb),
        "{loud_b} {fb:.0} Hz"
    );
    assert!(a.complete(Duration::from_secs(5)).contains("000 normal"));
    assert!(b.complete(Duration::from_secs(5)).contains("000 normal"));
    assert_eq!(web.hits("/slow.wav").len(), 1, "one fetch for both SPEAKs");

    let uri = web.url("/volatile.wav");
    for id in 2..4 {
        a.speak_uri(id, "", &uri);
        let (loud, _) = a.plays(id, Duration::from_millis(300));
        assert!(loud >= 10);
        assert!(a.complete(Duration::from_secs(5)).contains("000 normal"));
    }
    assert_eq!(web.hits("/volatile.wav").len(), 2, "no-store is not kept");
}

#[test]
fn a_stale_copy_plays_while_its_server_fails_unless_the_response_forbade_it() {
    let web = HttpServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = sine_wav(dir.path(), "a.wav", 8000, 600.0, 0.6);
    web.route(
        "/lenient.wav",
        Route::audio(&wav, &[("Cache-Control", "max-age=1")]),
    );
    web.route(
        "/strict.wav",
        Route::audio(&wav, &[("Cache-Control", "max-age=1, must-revalidate")]),
    );
    let server = start_server("", |_| {});
    let mut s = open_session(&server);
    for (id, path) in [(1, "/lenient.wav"), (2, "/strict.wav")] {
        s.speak_uri(id, "", &web.url(path));
        assert!(s.plays(id, Duration::from_millis(200)).0 >= 5, "{path}");
        assert!(s.complete(Duration::from_secs(5)).contains("000 normal"));
    }
    // The server breaks; both copies go stale.
    for path in ["/lenient.wav", "/strict.wav"] {
        web.route(
            path,
            Route {
                status: 503,
                headers: vec![("Content-Type".into(), "text/plain".into())],
                ..Route::audio(b"down", &[])
            },
        );
    }
    std::thread::sleep(Duration::from_millis(1300));
    let uri = web.url("/lenient.wav");
    s.speak_uri(3, "", &uri);
    let (loud, f) = s.plays(3, Duration::from_millis(300));
    assert!(
        loud >= 10 && (570.0..630.0).contains(&f),
        "{loud} {f:.0} Hz"
    );
    assert!(s.complete(Duration::from_secs(5)).contains("000 normal"));
    let hits = web.hits("/lenient.wav");
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[1].status, 503);

    let uri = web.url("/strict.wav");
    s.speak_uri(4, "", &uri);
    assert_uri_failure(&s.complete(Duration::from_secs(5)), &uri, "503");
}

#[test]
fn the_disk_cache_outlives_a_restart() {
    let web = HttpServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = sine_wav(dir.path(), "a.wav", 8000, 600.0, 0.6);
    web.route(
        "/a.wav",
        Route::audio(&wav, &[("Cache-Control", "max-age=3600")]),
    );
    let cache = dir.path().join("cache");
    let extra = format!("[http_audio]\ncache_dir = \"{}\"\n", cache.display());
    let uri = web.url("/a.wav");
    for round in 1..=2 {
        let server = start_server(&extra, |_| {});
        let mut s = open_session(&server);
        s.speak_uri(1, "", &uri);
        let (loud, f) = s.plays(1, Duration::from_millis(400));
        assert!(
            loud >= 10 && (570.0..630.0).contains(&f),
            "round {round}: {loud} {f:.0} Hz"
        );
        assert!(s.complete(Duration::from_secs(5)).contains("000 normal"));
        assert_eq!(web.hits("/a.wav").len(), 1, "round {round}");
    }
}

#[test]
fn https_certificates_are_verified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = sine_wav(dir.path(), "a.wav", 8000, 600.0, 0.6);
    let tls = TlsServer::start(&wav);
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.cert_pem).expect("write CA");
    let uri = format!("https://localhost:{}/a.wav", tls.addr.port());

    // Trusting the server's certificate: plays.
    let trusting = start_server(
        &format!("[http_audio]\nca_file = \"{}\"\n", ca.display()),
        |_| {},
    );
    let mut s = open_session(&trusting);
    s.speak_uri(1, "", &uri);
    let (loud, f) = s.plays(1, Duration::from_millis(400));
    assert!(
        loud >= 10 && (570.0..630.0).contains(&f),
        "{loud} {f:.0} Hz"
    );
    assert!(s.complete(Duration::from_secs(5)).contains("000 normal"));

    // With the built-in roots the self-signed certificate is refused.
    let default = start_server("", |_| {});
    let mut s = open_session(&default);
    s.speak_uri(1, "", &uri);
    assert_uri_failure(&s.complete(Duration::from_secs(10)), &uri, "tls-failed");
}

/// An HTTPS server with a self-signed certificate for `localhost` answering every request
/// with `wav`.
struct TlsServer {
    addr: SocketAddr,
    cert_pem: String,
}

impl TlsServer {
    fn start(wav: &[u8]) -> TlsServer {
        use tokio_rustls::rustls;
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
        let cert_pem = pair.cert.pem();
        let cert = pair.cert.der().clone();
        let key = rustls_pki_types::PrivateKeyDer::Pkcs8(
            rustls_pki_types::PrivatePkcs8KeyDer::from(pair.key_pair.serialize_der()),
        );
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server config");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let wav = wav.to_vec();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let config = config.clone();
                let wav = wav.clone();
                std::thread::spawn(move || {
                    let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = rustls::StreamOwned::new(conn, tcp);
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match tls.read(&mut byte) {
                            Ok(1) if head.len() < 16 * 1024 => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let _ = tls.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                            wav.len()
                        )
                        .as_bytes(),
                    );
                    let _ = tls.write_all(&wav);
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                });
            }
        });
        TlsServer { addr, cert_pem }
    }
}

// ---------------------------------------------------------------------------------------
// RFC 4240
// ---------------------------------------------------------------------------------------

/// sipp places an `annc` call with `ruri_params`; returns whether it completed (the server
/// ends it with BYE) and its output.
fn sipp_announcement(server: &Server, ruri_params: &str, rtp_port: u16) -> (bool, String) {
    let sipp = require("sipp", "sip-tester");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/uac_until_bye.xml");
    let mut cmd = Command::new(sipp);
    cmd.current_dir(server.dir.path())
        .arg("-sf")
        .arg(&scenario)
        .args(["-m", "1", "-l", "1", "-i", "127.0.0.1", "-nostdin"])
        .args(["-p", &free_udp_port().to_string()])
        .args(["-mp", &free_rtp_port().to_string()])
        .args(["-s", "annc"])
        .args(["-timeout", "40s", "-timeout_error", "-trace_err"])
        .args(["-key", "ruri_params", ruri_params])
        .args(["-key", "rtp_port", &rtp_port.to_string()])
        .args(["-key", "codecs", "0"])
        .arg(server.sip.to_string());
    let (status, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(60));
    (status.success(), format!("{out}\n{err}"))
}

/// Sends an `annc` INVITE for `play` over UDP and returns the final response's status line.
fn announcement_status(server: &Server, play: &str) -> String {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let local = sock.local_addr().expect("addr");
    let uri = format!("sip:annc@{};play={play}", server.sip);
    let tag = new_call_id();
    let invite = request(
        "INVITE",
        &uri,
        local,
        "Content-Type: application/sdp\r\n",
        &offer(free_rtp_port(), "0"),
        &tag,
    );
    sock.send_to(invite.as_bytes(), server.sip).expect("send");
    let mut buf = vec![0u8; 65536];
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < end, "no final answer to play={play}");
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            let t = String::from_utf8_lossy(&buf[..n]).to_string();
            if t.starts_with("SIP/2.0 1") {
                continue;
            }
            return t.lines().next().unwrap_or_default().to_string();
        }
    }
}

#[test]
fn rfc4240_play_of_an_http_uri_plays_the_file_and_failures_map_to_sip_statuses() {
    let web = HttpServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // 1 kHz at 44.1 kHz, as in the plain-SIP file tests.
    let wav_path = dir.path().join("tone.wav");
    write_wav(&wav_path, 44_100, &tone(44_100, 2.0));
    let wav = std::fs::read(&wav_path).expect("read");
    web.route(
        "/tone.wav",
        Route::audio(&wav, &[("Cache-Control", "max-age=600")]),
    );
    web.route(
        "/stall.wav",
        Route {
            delay: Duration::from_secs(20),
            ..Route::audio(&wav, &[])
        },
    );
    web.route(
        "/page.wav",
        Route {
            headers: vec![("Content-Type".into(), "text/html".into())],
            ..Route::audio(b"<html/>", &[])
        },
    );
    let server = start_server(
        "[http_audio]\nallow_hosts = [\"127.0.0.1\"]\nfetch_timeout_ms = 1000\n",
        |_| {},
    );

    let rtp_port = free_rtp_port();
    let rx = FfmpegReceiver::start(server.dir.path(), rtp_port, 0);
    std::thread::sleep(Duration::from_millis(700));
    let (ok, log) = sipp_announcement(
        &server,
        &format!(";play={}", web.url("/tone.wav")),
        rtp_port,
    );
    assert!(ok, "sipp: {log}\nserver log:\n{}", server.log());
    std::thread::sleep(Duration::from_millis(300));
    let (rate, got) = read_wav(&rx.finish());
    assert_eq!(rate, 8000);
    let seconds = got.len() as f64 / 8000.0;
    assert!(
        (seconds - 2.0).abs() <= 0.03,
        "received {seconds:.3} s of 2 s"
    );
    let (lag, snr) = snr_db(&tone(8000, 2.0), &got, 400, 400);
    assert!(snr >= 30.0, "1 kHz tone SNR {snr:.1} dB (lag {lag})");
    assert_eq!(web.hits("/tone.wav").len(), 1);

    let status = announcement_status(&server, &web.url("/missing.wav"));
    assert!(status.starts_with("SIP/2.0 404"), "{status}");
    let t = Instant::now();
    let status = announcement_status(&server, &web.url("/stall.wav"));
    assert!(status.starts_with("SIP/2.0 408"), "{status}");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    let status = announcement_status(&server, &web.url("/page.wav"));
    assert!(status.starts_with("SIP/2.0 415"), "{status}");
    let status = announcement_status(
        &server,
        &format!("http://localhost:{}/tone.wav", web.addr.port()),
    );
    assert!(
        status.starts_with("SIP/2.0 403") && status.contains("allow_hosts"),
        "{status}"
    );
}

/// The dominant frequency of each 100 ms of `audio` that is loud, by zero crossings.
fn loud_windows(audio: &[f32]) -> Vec<f64> {
    audio
        .chunks_exact(800)
        .filter(|w| (w.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / 800.0).sqrt() > 0.1)
        .map(|w| {
            let crossings = w
                .windows(2)
                .filter(|p| (p[0] < 0.0) != (p[1] < 0.0))
                .count();
            crossings as f64 / 2.0 / 0.1
        })
        .collect()
}

#[test]
fn a_live_playlist_plays_its_http_entries_between_its_files() {
    let web = HttpServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = sine_wav(dir.path(), "b.wav", 16000, 600.0, 0.6);
    web.route(
        "/b.wav",
        Route::audio(&wav, &[("Cache-Control", "max-age=3600")]),
    );
    let extra = format!(
        "[[external_audio]]\nname = \"WEB\"\nkind = \"playlist\"\n\
         files = [\"a.wav\", \"{}\", \"{}\"]\nkeep_warm = true\n",
        web.url("/b.wav"),
        web.url("/missing.wav"),
    );
    let server = start_server(&extra, |audio| {
        write_wav(&audio.join("a.wav"), 8000, &sine(8000, 1000.0, 0.6));
    });
    let out = server.dir.path().join("web.wav");
    let (status, stdout, stderr) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_imss"))
            .args(["call", &format!("sip:WEB@{}", server.sip), "--seconds", "3"])
            .arg("--out")
            .arg(&out)
            .env("RUST_LOG", "warn"),
        Duration::from_secs(30),
    );
    assert!(status.success(), "{stdout}\n{stderr}\n{}", server.log());
    let (_, audio) = read_wav(&out);
    let windows = loud_windows(&audio);
    let near = |f: f64, hz: f64| (f - hz).abs() < 40.0;
    let local = windows.iter().filter(|f| near(**f, 1000.0)).count();
    let fetched = windows.iter().filter(|f| near(**f, 600.0)).count();
    assert!(local >= 5 && fetched >= 5, "{windows:?}\n{}", server.log());
    // The file and the fetched entry take turns; the missing one is skipped.
    let turns = windows
        .windows(2)
        .filter(|p| near(p[0], 1000.0) != near(p[1], 1000.0))
        .count();
    assert!(turns >= 3, "{windows:?}");
    // Fresh for an hour: fetched once, however many rounds the playlist plays.
    assert_eq!(web.hits("/b.wav").len(), 1);
    assert!(!web.hits("/missing.wav").is_empty());
}
