//! The live-sources API over real HTTP against the real binary: sources added, changed and
//! removed with the configuration file following, listened to as a paced WAV stream whose
//! tone is checked by its frequency, their level, tests of their upstreams (a local HTTP
//! stream, a closed port, an unresolvable host, programs and playlists), and who may do what.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};
use support::raw::{ADMIN_TOKEN, VIEWER_TOKEN, server_with_tokens};
use support::{Server, require};

/// One HTTP answer.
struct Answer {
    status: u16,
    etag: Option<String>,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// A blocking API client with a bearer token (or none).
struct Api {
    agent: ureq::Agent,
    base: String,
    token: Option<&'static str>,
}

impl Api {
    fn new(server: &Server, token: Option<&'static str>) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .into();
        Api {
            agent,
            base: format!("http://{}", server.http),
            token,
        }
    }

    /// `method path` with an optional `If-Match` and JSON body.
    fn call(
        &self,
        method: &str,
        path: &str,
        if_match: Option<&str>,
        body: Option<&serde_json::Value>,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut headers: Vec<(&str, String)> = Vec::new();
        if let Some(t) = self.token {
            headers.push(("Authorization", format!("Bearer {t}")));
        }
        if let Some(v) = if_match {
            headers.push(("If-Match", format!("\"{v}\"")));
        }
        let result = match method {
            "GET" | "DELETE" => {
                let mut r = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                for (k, v) in &headers {
                    r = r.header(*k, v.as_str());
                }
                r.call()
            }
            "POST" | "PUT" => {
                let mut r = if method == "POST" {
                    self.agent.post(&url)
                } else {
                    self.agent.put(&url)
                };
                for (k, v) in &headers {
                    r = r.header(*k, v.as_str());
                }
                match body {
                    Some(b) => r
                        .header("Content-Type", "application/json")
                        .send(b.to_string().as_bytes()),
                    None => r.send_empty(),
                }
            }
            other => panic!("method {other}"),
        };
        let mut response = result.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_string());
        let body = response.body_mut().read_to_string().unwrap_or_default();
        Answer { status, etag, body }
    }

    fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, None)
    }
}

/// The configuration file's text.
fn config_file(server: &Server) -> String {
    std::fs::read_to_string(server.dir.path().join("imss.toml")).expect("read imss.toml")
}

/// The `[[external_audio]]` block of `name` in the configuration file, if any.
fn source_block(server: &Server, name: &str) -> Option<String> {
    let file = config_file(server);
    file.split("[[external_audio]]")
        .skip(1)
        .map(|b| {
            // The block ends where the next table starts.
            b.split("\n[").next().unwrap_or(b).to_string()
        })
        .find(|b| b.contains(&format!("name = \"{name}\"")))
}

/// A listen stream as received: its samples and when each byte count arrived.
struct Heard {
    rate: u32,
    samples: Vec<i16>,
    /// Seconds from the request until the whole body was read.
    took: f64,
    /// Seconds from the request until the first second of audio had arrived.
    first_second_at: f64,
}

/// Listens to `name` for `seconds` as `token`, over a plain socket so that arrival times are
/// the client's.
fn listen(server: &Server, name: &str, seconds: u32) -> Heard {
    let started = Instant::now();
    let mut s = TcpStream::connect(server.http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /api/v1/sources/{name}/listen?seconds={seconds} HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut first_second_at = None;
    loop {
        let n = s.read(&mut buf).expect("read the listen stream");
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        // Headers, chunk framing and the WAV header are well under 1,000 bytes.
        if first_second_at.is_none() && raw.len() > 16_000 + 1_000 {
            first_second_at = Some(started.elapsed().as_secs_f64());
        }
    }
    let took = started.elapsed().as_secs_f64();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: audio/wav"),
        "{head}"
    );
    let body = dechunk(&raw[split + 4..], &head);
    assert_eq!(&body[0..4], b"RIFF");
    assert_eq!(&body[8..16], b"WAVEfmt ");
    let channels = u16::from_le_bytes([body[22], body[23]]);
    let rate = u32::from_le_bytes([body[24], body[25], body[26], body[27]]);
    let bits = u16::from_le_bytes([body[34], body[35]]);
    assert_eq!((channels, bits), (1, 16));
    assert_eq!(&body[36..40], b"data");
    let declared = u32::from_le_bytes([body[40], body[41], body[42], body[43]]);
    assert!(
        declared > 0xFFFF_0000,
        "a stream announces the largest size: {declared:#x}"
    );
    let samples = body[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    Heard {
        rate,
        samples,
        took,
        first_second_at: first_second_at.unwrap_or(f64::INFINITY),
    }
}

/// The body of a response, undoing chunked transfer encoding when the headers say so.
fn dechunk(data: &[u8], head: &str) -> Vec<u8> {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return data.to_vec();
    }
    let mut out = Vec::new();
    let mut rest = data;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk size line");
        let size = usize::from_str_radix(
            std::str::from_utf8(&rest[..line_end])
                .expect("chunk size")
                .split(';')
                .next()
                .unwrap_or("")
                .trim(),
            16,
        )
        .expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The frequency (5 Hz steps, 50–3,950 Hz) with the most energy in `samples` at `rate`.
fn dominant_hz(samples: &[i16], rate: u32) -> f64 {
    let mut best = (0.0, 0.0);
    let mut hz = 50.0;
    while hz < 3950.0 {
        let w = 2.0 * (std::f64::consts::TAU * hz / f64::from(rate)).cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &x in samples {
            let s0 = f64::from(x) + w * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        let power = s1 * s1 + s2 * s2 - w * s1 * s2;
        if power > best.1 {
            best = (hz, power);
        }
        hz += 5.0;
    }
    best.0
}

/// The source `name` in `GET /api/v1/sources`.
fn listed(api: &Api, name: &str) -> serde_json::Value {
    let a = api.get("/api/v1/sources");
    assert_eq!(a.status, 200, "{}", a.body);
    a.json()["sources"]
        .as_array()
        .expect("sources")
        .iter()
        .find(|s| s["config"]["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed: {}", a.body))
}

/// Waits until the source's status satisfies `cond`.
fn wait_status(
    api: &Api,
    name: &str,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(8);
    loop {
        let s = listed(api, name)["status"].clone();
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < until, "{what}: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sources_are_added_heard_changed_and_removed_with_the_file_following() {
    let server = server_with_tokens("", |_| {});
    let api = Api::new(&server, Some(ADMIN_TOKEN));
    let viewer = Api::new(&server, Some(VIEWER_TOKEN));
    let nobody = Api::new(&server, None);

    let doc = api.get("/api/openapi.json");
    assert_eq!(doc.status, 200);
    let paths = &doc.json()["paths"];
    for path in [
        "/api/v1/sources",
        "/api/v1/sources/{name}",
        "/api/v1/sources/{name}/listen",
        "/api/v1/sources/{name}/test",
    ] {
        assert!(
            paths.get(path).is_some(),
            "{path} not in the OpenAPI document"
        );
    }

    let a = api.get("/api/v1/sources");
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["sources"], serde_json::json!([]));
    let version = a.etag.clone().expect("ETag");
    assert_eq!(a.json()["version"], version.as_str());

    // Add a tone: it is saved, runs (lazily: idle until someone listens) and is listed.
    let moh =
        serde_json::json!({"name": "moh", "kind": "tone", "frequency_hz": 440, "idle_stop_s": 1});
    let a = api.call("POST", "/api/v1/sources", Some(&version), Some(&moh));
    assert_eq!(a.status, 201, "{}", a.body);
    let version = a.json()["version"].as_str().expect("version").to_string();
    assert_eq!(a.etag.as_deref(), Some(version.as_str()));
    assert!(
        a.json()["applied"]
            .as_array()
            .is_some_and(|s| s.iter().any(|s| s == "external_audio")),
        "{}",
        a.body
    );
    let block = source_block(&server, "moh").expect("moh in the file");
    assert!(block.contains("kind = \"tone\""), "{block}");
    assert!(block.contains("frequency_hz = 440"), "{block}");
    let one = api.get("/api/v1/sources/MOH");
    assert_eq!(one.status, 200, "{}", one.body);
    let one = one.json();
    assert_eq!(one["version"], version.as_str());
    assert_eq!(one["config"]["kind"], "tone");
    assert_eq!(one["config"]["frequency_hz"], 440.0);
    assert!(
        one["config"].get("url").is_none(),
        "keys left out stay out: {one}"
    );
    assert_eq!(one["status"]["name"], "moh");
    assert_eq!(one["status"]["state"], "idle");
    assert_eq!(one["status"]["listeners"], 0);
    assert!(one["status"]["level_dbfs"].is_null(), "{one}");

    // Listen for 2 s: the tone, in real time, with the browser counted as a listener.
    let watcher = {
        let api = Api::new(&server, Some(ADMIN_TOKEN));
        std::thread::spawn(move || {
            wait_status(&api, "moh", "moh heard by the listen stream", |s| {
                s["listeners"] == 1
                    && s["state"] == "playing"
                    && s["level_dbfs"].as_f64().is_some_and(|l| l > -16.0)
            })
        })
    };
    let heard = listen(&server, "moh", 2);
    let during = watcher.join().expect("status while listening");
    // A tone at −12 dBFS peak is −15 dBFS RMS.
    let level = during["level_dbfs"].as_f64().expect("level");
    assert!((-16.0..=-14.0).contains(&level), "{during}");
    assert_eq!(heard.rate, 8000);
    assert_eq!(heard.samples.len(), 16_000, "exactly 2 s of 8 kHz audio");
    assert!(
        (1.8..3.0).contains(&heard.took),
        "2 s of audio took {:.2} s",
        heard.took
    );
    assert!(
        heard.first_second_at > 0.8,
        "paced: the first second of audio arrived after {:.2} s",
        heard.first_second_at
    );
    let hz = dominant_hz(&heard.samples[8000..], 8000);
    assert!((hz - 440.0).abs() <= 5.0, "heard {hz} Hz");
    // The token went with the stream.
    wait_status(&api, "moh", "no listener once the stream ended", |s| {
        s["listeners"] == 0
    });
    // The dashboard's status carries the level too (null once the source is idle again).
    let status = api.get("/api/v1/status").json();
    let entry = status["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "moh"))
        .cloned()
        .unwrap_or_else(|| panic!("moh in /api/v1/status: {status}"));
    assert!(entry.get("level_dbfs").is_some(), "{entry}");

    // A browser that goes away mid-stream leaves no listener behind.
    let mut s = TcpStream::connect(server.http).expect("connect");
    write!(
        s,
        "GET /api/v1/sources/moh/listen?seconds=60 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
    )
    .expect("send");
    let mut buf = [0u8; 8000];
    s.read_exact(&mut buf).expect("some audio");
    wait_status(&api, "moh", "the browser listening", |s| {
        s["listeners"] == 1
    });
    drop(s);
    wait_status(&api, "moh", "no listener once the browser left", |s| {
        s["listeners"] == 0
    });

    // A new frequency, saved from the current version, is heard on a new listen.
    let before = config_file(&server);
    let change = serde_json::json!({"kind": "tone", "frequency_hz": 1000, "idle_stop_s": 1});
    let a = api.call("PUT", "/api/v1/sources/moh", Some(&version), Some(&change));
    assert_eq!(a.status, 200, "{}", a.body);
    let newer = a.json()["version"].as_str().expect("version").to_string();
    assert_ne!(newer, version);
    let block = source_block(&server, "moh").expect("moh in the file");
    assert!(block.contains("frequency_hz = 1000"), "{block}");
    let heard = listen(&server, "moh", 1);
    assert_eq!(heard.samples.len(), 8000);
    let hz = dominant_hz(&heard.samples[2000..], 8000);
    assert!((hz - 1000.0).abs() <= 5.0, "heard {hz} Hz after the change");

    // A change made from the old version is refused and writes nothing.
    let stale = serde_json::json!({"kind": "tone", "frequency_hz": 700});
    let after = config_file(&server);
    assert_ne!(before, after);
    let a = api.call("PUT", "/api/v1/sources/moh", Some(&version), Some(&stale));
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.json()["error"], "conflict");
    assert_eq!(a.json()["current_version"], newer.as_str());
    assert_eq!(
        config_file(&server),
        after,
        "a refused change writes nothing"
    );

    // Values that cannot be used are refused, naming the key; nothing is written.
    for (body, field) in [
        (
            serde_json::json!({"name": "bad", "kind": "tone", "gain_db": -100}),
            "external_audio[1].gain_db",
        ),
        (
            serde_json::json!({"name": "bad", "kind": "tone", "frequency_hz": 100000}),
            "external_audio[1].frequency_hz",
        ),
        (
            serde_json::json!({"name": "bad", "kind": "radio"}),
            "external_audio[1].kind",
        ),
        (
            serde_json::json!({"name": "bad", "kind": "tone", "gain_db": "loud"}),
            "external_audio[1].gain_db",
        ),
        (
            serde_json::json!({"name": "bad", "kind": "tone", "volume": 3}),
            "external_audio[1].volume",
        ),
        (
            serde_json::json!({"name": "bad", "kind": "http"}),
            "external_audio[1].url",
        ),
        (
            serde_json::json!({"name": "b d", "kind": "tone"}),
            "external_audio[1].name",
        ),
        (serde_json::json!({"name": "bad"}), "kind"),
        (serde_json::json!({"kind": "tone"}), "name"),
    ] {
        let a = api.call("POST", "/api/v1/sources", None, Some(&body));
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert_eq!(a.json()["error"], "invalid", "{}", a.body);
        assert_eq!(a.json()["field"], field, "{body}: {}", a.body);
        assert_eq!(config_file(&server), after, "{body} wrote to the file");
    }
    let a = api.call("POST", "/api/v1/sources", None, Some(&moh));
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.json()["error"], "exists");
    assert_eq!(a.json()["field"], "name");
    let renamed = serde_json::json!({"name": "other", "kind": "tone"});
    let a = api.call("PUT", "/api/v1/sources/moh", None, Some(&renamed));
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["field"], "name");
    let a = api.call("PUT", "/api/v1/sources/nope", None, Some(&stale));
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(config_file(&server), after);

    // Who may do what: a viewer may look, not change, listen or test; nobody gets nothing.
    assert_eq!(viewer.get("/api/v1/sources").status, 200);
    assert_eq!(viewer.get("/api/v1/sources/moh").status, 200);
    let extra = serde_json::json!({"name": "v", "kind": "silence"});
    for (method, path, body) in [
        ("POST", "/api/v1/sources", Some(&extra)),
        ("PUT", "/api/v1/sources/moh", Some(&stale)),
        ("DELETE", "/api/v1/sources/moh", None),
        ("GET", "/api/v1/sources/moh/listen?seconds=1", None),
        ("POST", "/api/v1/sources/moh/test", None),
    ] {
        let a = viewer.call(method, path, None, body);
        assert_eq!(a.status, 403, "viewer {method} {path}: {}", a.body);
        let a = nobody.call(method, path, None, body);
        assert_eq!(a.status, 401, "anonymous {method} {path}: {}", a.body);
    }
    assert_eq!(nobody.get("/api/v1/sources").status, 401);
    assert_eq!(config_file(&server), after);

    // Listening to what is not there, or for too long.
    assert_eq!(api.get("/api/v1/sources/nope/listen").status, 404);
    let a = api.get("/api/v1/sources/moh/listen?seconds=3601");
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["field"], "seconds");

    // Removed: gone from the file, the list and the running server.
    let a = api.call("DELETE", "/api/v1/sources/moh", Some(&newer), None);
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        source_block(&server, "moh").is_none(),
        "{}",
        config_file(&server)
    );
    assert_eq!(api.get("/api/v1/sources/moh").status, 404);
    assert_eq!(api.get("/api/v1/sources/moh/listen?seconds=1").status, 404);
    assert_eq!(
        api.call("DELETE", "/api/v1/sources/moh", None, None).status,
        404
    );
    let a = api.get("/api/v1/sources");
    assert_eq!(a.json()["sources"], serde_json::json!([]));

    // A listen stream does not hold the server up when it stops.
    let a = api.call("POST", "/api/v1/sources", None, Some(&moh));
    assert_eq!(a.status, 201, "{}", a.body);
    let mut s = TcpStream::connect(server.http).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET /api/v1/sources/moh/listen?seconds=3600 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {ADMIN_TOKEN}\r\n\r\n"
    )
    .expect("send");
    s.read_exact(&mut buf).expect("some audio");
    let mut server = server;
    let stopping = Instant::now();
    // SAFETY: kill only sends a signal to the child this test started.
    let rc = unsafe { libc::kill(server.pid() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "SIGTERM to imss");
    while server.alive() {
        assert!(
            stopping.elapsed() < Duration::from_secs(8),
            "imss still runs {:?} after SIGTERM with a listen stream open",
            stopping.elapsed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The stream ended with the server.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}

/// Serves `file` as an Icecast-like MP3 stream to every request, until the test ends.
fn serve_stream(file: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let file = file.clone();
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                // A bare connection (the test's TCP step) sends nothing and closes.
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = "HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\nicy-br: 128\r\n\
                            icy-name: test radio\r\n\r\n";
                let _ = conn.write_all(head.as_bytes());
                let _ = conn.write_all(&file);
            });
        }
    });
    addr
}

/// A TLS server whose certificate no client trusts (self-signed), answering nothing.
fn serve_untrusted_tls() -> SocketAddr {
    use tokio_rustls::rustls;
    let pair = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).expect("rcgen");
    let key = rustls_pki_types::PrivatePkcs8KeyDer::from(pair.key_pair.serialize_der());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![pair.cert.der().clone()], key.into())
            .expect("certificate"),
    );
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let config = std::sync::Arc::clone(&config);
            std::thread::spawn(move || {
                let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(tls) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut stream = rustls::StreamOwned::new(tls, conn);
                let mut buf = [0u8; 1024];
                // The client gives up during the handshake.
                let _ = stream.read(&mut buf);
            });
        }
    });
    addr
}

/// A 5 s, 440 Hz, stereo, 44.1 kHz, 128 kbit/s MP3 made by ffmpeg.
fn mp3(dir: &Path) -> Vec<u8> {
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let out = dir.join("stream.mp3");
    let status = std::process::Command::new(ffmpeg)
        .args([
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=5",
            "-ac",
            "2",
            "-b:a",
            "128k",
        ])
        .arg(&out)
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg failed");
    std::fs::read(&out).expect("read the mp3")
}

#[test]
fn a_test_names_the_step_that_fails() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let radio = serve_stream(mp3(scratch.path()));
    let untrusted = serve_untrusted_tls();
    let garbage = serve_stream(b"<html>this is a web page, not a radio stream</html>".repeat(200));
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let sources = format!(
        "[[external_audio]]\nname = \"radio\"\nkind = \"http\"\nurl = \"http://{radio}/live.mp3\"\n\
         [[external_audio]]\nname = \"untrusted\"\nkind = \"http\"\nurl = \"https://{untrusted}/live.mp3\"\n\
         [[external_audio]]\nname = \"garbage\"\nkind = \"http\"\nurl = \"http://{garbage}/live.mp3\"\n\
         [[external_audio]]\nname = \"closed\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{closed}/live.mp3\"\n\
         [[external_audio]]\nname = \"nowhere\"\nkind = \"http\"\nurl = \"http://imss-test.invalid/live.mp3\"\n\
         [[external_audio]]\nname = \"line\"\nkind = \"command\"\ncommand = \"sh -c 'exec cat /dev/zero'\"\n\
         [[external_audio]]\nname = \"broken\"\nkind = \"command\"\ncommand = \"/nonexistent/program --play\"\n\
         [[external_audio]]\nname = \"quiet\"\nkind = \"command\"\ncommand = \"sleep 30\"\n\
         [[external_audio]]\nname = \"music\"\nkind = \"playlist\"\nfiles = [\"one.wav\"]\n\
         [[external_audio]]\nname = \"lost\"\nkind = \"playlist\"\nfiles = [\"one.wav\", \"gone.mp3\"]\n\
         [[external_audio]]\nname = \"beep\"\nkind = \"tone\"\nfrequency_hz = 600\n",
    );
    let server = server_with_tokens(&sources, |audio| {
        support::write_wav(&audio.join("one.wav"), 16000, &support::tone(16000, 2.0));
    });
    let api = Api::new(&server, Some(ADMIN_TOKEN));
    let test = |name: &str| -> serde_json::Value {
        let started = Instant::now();
        let a = api.call("POST", &format!("/api/v1/sources/{name}/test"), None, None);
        assert_eq!(a.status, 200, "{name}: {}", a.body);
        let took = started.elapsed();
        assert!(took < Duration::from_secs(11), "{name} took {took:?}");
        let v = a.json();
        assert!(
            v["elapsed_ms"].as_u64().is_some_and(|ms| ms < 10_500),
            "{v}"
        );
        v
    };

    let v = test("radio");
    assert_eq!(
        (v["ok"].as_bool(), v["step"].as_str()),
        (Some(true), Some("done")),
        "{v}"
    );
    let format = v["format"].as_str().unwrap_or_default();
    for part in ["mp3", "44100 Hz", "2 channels", "128 kbit/s"] {
        assert!(format.contains(part), "{part} in {v}");
    }

    let v = test("untrusted");
    assert_eq!(
        (v["ok"].as_bool(), v["step"].as_str()),
        (Some(false), Some("tls")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.to_ascii_lowercase().contains("certificate")),
        "{v}"
    );

    let v = test("garbage");
    assert_eq!(
        (v["ok"].as_bool(), v["step"].as_str()),
        (Some(false), Some("decode")),
        "{v}"
    );

    let v = test("closed");
    assert_eq!(
        (v["ok"].as_bool(), v["step"].as_str()),
        (Some(false), Some("tcp")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains(&closed.to_string())),
        "{v}"
    );

    let v = test("nowhere");
    assert_eq!(
        (v["ok"].as_bool(), v["step"].as_str()),
        (Some(false), Some("dns")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("imss-test.invalid")),
        "{v}"
    );

    let v = test("line");
    assert_eq!(
        (v["ok"].as_bool(), v["step"].as_str()),
        (Some(true), Some("done")),
        "{v}"
    );
    assert!(
        v["format"]
            .as_str()
            .is_some_and(|f| f.contains("pcm_s16le") && f.contains("8000 Hz")),
        "{v}"
    );

    let v = test("broken");
    assert_eq!(
        (v["ok"].as_bool(), v["step"].as_str()),
        (Some(false), Some("program")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("/nonexistent/program")),
        "{v}"
    );

    let v = test("quiet");
    assert_eq!(
        (v["ok"].as_bool(), v["step"].as_str()),
        (Some(false), Some("program")),
        "{v}"
    );

    let v = test("music");
    assert_eq!(
        (v["ok"].as_bool(), v["step"].as_str()),
        (Some(true), Some("done")),
        "{v}"
    );
    assert!(
        v["format"].as_str().is_some_and(|f| f.contains("16000 Hz")),
        "{v}"
    );

    let v = test("lost");
    assert_eq!(
        (v["ok"].as_bool(), v["step"].as_str()),
        (Some(false), Some("files")),
        "{v}"
    );
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("gone.mp3")),
        "{v}"
    );

    let v = test("beep");
    assert_eq!(v["ok"], true, "{v}");
    assert!(
        v["format"].as_str().is_some_and(|f| f.contains("600 Hz")),
        "{v}"
    );

    assert_eq!(
        api.call("POST", "/api/v1/sources/nope/test", None, None)
            .status,
        404
    );
    // Testing started nothing: the lazy sources still have no listeners.
    let a = api.get("/api/v1/sources");
    for s in a.json()["sources"].as_array().expect("sources") {
        assert_eq!(s["status"]["listeners"], 0, "{s}");
    }
}
