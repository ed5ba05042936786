//! `/metrics` and `/api/v1/status` of the real server while real calls (`imss call`, plain
//! SIP and MRCPv2) run against it.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{run_with_timeout, start_server, tone, write_wav};

/// A status-reading API token and the SHA-256 the configuration holds for it.
const TOKEN: &str = "imss-metrics-test-status-token-42";
const TOKEN_SHA256: &str = "0f5304b66b73d691294b46459ca98fb6639ba10978145b20c26670ffbbe839e7";

/// `GET path` with extra header lines; the status code and the body.
fn get(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
    s.write_all(req.as_bytes())
        .unwrap_or_else(|e| panic!("send: {e}"));
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {out}"));
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (code, body.to_string())
}

/// The value of the sample `name` (with its labels, as written) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn scrape(addr: SocketAddr) -> String {
    let (code, body) = get(addr, "/metrics", "");
    assert_eq!(code, 200, "{body}");
    body
}

/// Scrapes until `cond` holds (the figures follow events within milliseconds).
fn scrape_until(addr: SocketAddr, what: &str, cond: impl Fn(&str) -> bool) -> String {
    let until = Instant::now() + Duration::from_secs(8);
    loop {
        let text = scrape(addr);
        if cond(&text) {
            return text;
        }
        assert!(Instant::now() < until, "{what}:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(addr: SocketAddr) -> serde_json::Value {
    let (code, body) = get(
        addr,
        "/api/v1/status",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("status JSON ({e}): {body}"))
}

/// Runs `imss call` with `args`; its JSON report.
fn call(args: &[String]) -> serde_json::Value {
    let (ok, out, err) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_imss"))
            .arg("call")
            .args(args)
            .arg("--json")
            .env("RUST_LOG", "warn"),
        Duration::from_secs(40),
    );
    assert!(ok.success(), "imss call {args:?}: {out}\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("report ({e}): {out}"))
}

#[test]
fn figures_follow_real_calls() {
    let server = start_server(
        &format!(
            "http.api_tokens = [{{ name = \"dashboard\", hash = \"{TOKEN_SHA256}\", created = \"2026-01-01T00:00:00Z\" }}]\n\
             [[external_audio]]\nname = \"beep\"\nkind = \"tone\"\nfrequency_hz = 440\n"
        ),
        |audio| write_wav(&audio.join("prompt.wav"), 8000, &tone(8000, 1.0)),
    );
    let http = server.http;
    let before = scrape(http);
    let packets_before = sample(&before, "imss_rtp_packets_sent_total").unwrap_or(0.0);
    assert_eq!(
        sample(&before, "imss_sessions{kind=\"sip_source\"}"),
        Some(0.0),
        "{before}"
    );

    // /api/v1/status is behind the web interface's login.
    assert_eq!(get(http, "/api/v1/status", "").0, 401);

    // A plain-SIP caller of the live source for 4 s.
    let uri = format!("sip:beep@{}", server.sip);
    let caller = std::thread::spawn(move || {
        call(&[
            uri,
            "--seconds".into(),
            "4".into(),
            "--out".into(),
            "/dev/null".into(),
        ])
    });
    let during = scrape_until(http, "one caller of the live source", |t| {
        sample(t, "imss_sessions{kind=\"sip_source\"}") == Some(1.0)
            && sample(t, "imss_source_listeners{source=\"beep\"}") == Some(1.0)
    });
    assert_eq!(sample(&during, "imss_streams"), Some(1.0), "{during}");
    assert_eq!(
        sample(
            &during,
            "imss_source_state{source=\"beep\",state=\"playing\"}"
        ),
        Some(1.0),
        "{during}"
    );
    // The sampler renews the snapshot every second.
    let until = Instant::now() + Duration::from_secs(5);
    let snapshot = loop {
        let s = status(http);
        if s["sessions"]["total"] == 1 || Instant::now() > until {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(snapshot["sessions"]["plain_sip"], 1, "{snapshot}");
    assert_eq!(snapshot["sessions"]["total"], 1, "{snapshot}");
    assert_eq!(snapshot["server"]["name"], "test", "{snapshot}");
    let beep = snapshot["sources"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "beep"))
        .unwrap_or_else(|| panic!("no source beep: {snapshot}"));
    assert_eq!(beep["state"], "playing", "{snapshot}");
    assert_eq!(beep["listeners"], 1, "{snapshot}");
    // The charts' history: a sample a second, the call's stream among them.
    let (code, body) = get(
        http,
        "/api/v1/status/history",
        &format!("Authorization: Bearer {TOKEN}\r\n"),
    );
    assert_eq!(code, 200, "{body}");
    let history: serde_json::Value = serde_json::from_str(&body).expect("history JSON");
    let t = history["t"].as_array().expect("t");
    assert!(!t.is_empty(), "{body}");
    for column in [
        "streams",
        "packets_per_s",
        "lateness_p50_ms",
        "lateness_p99_ms",
        "cpu_percent",
    ] {
        assert_eq!(
            history[column].as_array().map(Vec::len),
            Some(t.len()),
            "{column}: {body}"
        );
    }
    assert!(
        t.windows(2).all(|w| w[0].as_u64() < w[1].as_u64()),
        "{body}"
    );
    assert_eq!(
        history["streams"].as_array().unwrap().last(),
        Some(&serde_json::json!(1)),
        "{body}"
    );
    let (code, _) = get(http, "/api/v1/status/history", "");
    assert_eq!(code, 401);
    assert!(
        snapshot["capacity"]["free"].as_u64().is_some(),
        "{snapshot}"
    );

    // An MRCPv2 session that speaks a one-second prompt, beside the plain call.
    let mrcp_uri = format!("sip:imss@{}", server.sip);
    let mrcp = std::thread::spawn(move || {
        call(&[
            "--mrcp".into(),
            mrcp_uri,
            "--speak".into(),
            "prompt.wav".into(),
            "--seconds".into(),
            "20".into(),
            "--out".into(),
            "/dev/null".into(),
        ])
    });
    scrape_until(http, "an MRCPv2 session", |t| {
        sample(t, "imss_sessions{kind=\"mrcp\"}") == Some(1.0)
    });
    let plain = caller.join().unwrap_or_else(|_| panic!("caller panicked"));
    let speak = mrcp
        .join()
        .unwrap_or_else(|_| panic!("MRCP caller panicked"));
    assert_eq!(speak["completion_cause"], "000 normal", "{speak}");

    let after = scrape_until(http, "every session gone", |t| {
        ["mrcp", "sip_source", "sip_announcement"]
            .iter()
            .all(|k| sample(t, &format!("imss_sessions{{kind=\"{k}\"}}")) == Some(0.0))
            && sample(t, "imss_streams") == Some(0.0)
    });
    assert_eq!(
        sample(&after, "imss_source_listeners{source=\"beep\"}"),
        Some(0.0)
    );

    // Packets: what the callers received, give or take the last few in flight at hang-up.
    let received =
        plain["packets"].as_f64().unwrap_or(0.0) + speak["packets"].as_f64().unwrap_or(0.0);
    let sent = sample(&after, "imss_rtp_packets_sent_total").unwrap_or(0.0) - packets_before;
    assert!(received >= 180.0, "plain caller got {plain}");
    assert!(
        sent >= received && sent <= received * 1.1 + 10.0,
        "sent {sent}, received {received}\n{after}"
    );
    let lateness = sample(&after, "imss_rtp_lateness_seconds_count").unwrap_or(0.0);
    assert!(
        lateness >= sent,
        "every packet has its lateness: {lateness} < {sent}\n{after}"
    );
    assert_eq!(
        sample(&after, "imss_rtp_lateness_seconds_bucket{le=\"+Inf\"}"),
        Some(lateness),
        "{after}"
    );

    assert!(
        sample(&after, "imss_sip_responses_total{code=\"200\"}").unwrap_or(0.0) >= 4.0,
        "two INVITEs and two BYEs answered 200:\n{after}"
    );
    assert!(
        sample(&after, "imss_mrcp_responses_total{code=\"200\"}").unwrap_or(0.0) >= 1.0,
        "{after}"
    );
    assert_eq!(
        sample(
            &after,
            "imss_mrcp_speak_complete_total{code=\"000\",cause=\"normal\"}"
        ),
        Some(1.0),
        "{after}"
    );
    // The prompt came from the audio root through its decoded-audio cache.
    let plays = sample(&after, "imss_audio_cache_misses_total").unwrap_or(0.0)
        + sample(&after, "imss_audio_cache_hits_total").unwrap_or(0.0);
    assert!(plays >= 1.0, "{after}");
    assert!(
        sample(&after, "imss_audio_cache_bytes").is_some_and(|b| b > 0.0),
        "{after}"
    );
    for help in [
        "# TYPE imss_sessions gauge",
        "# TYPE imss_sessions_speaking_text gauge",
        "# TYPE imss_rtp_packets_sent counter",
        "# TYPE imss_rtp_lateness_seconds histogram",
        "# TYPE imss_imap_fetch_seconds histogram",
        "# TYPE imss_tts_synthesis_seconds histogram",
        "# TYPE imss_http_audio_cache_hits counter",
    ] {
        assert!(after.contains(help), "{help}:\n{after}");
    }
    assert!(after.ends_with("# EOF\n"));
}

#[test]
fn metrics_token_is_required_when_configured() {
    let token = "scrape-me-0123456789abcdef";
    let server = start_server(
        &format!("http.metrics = \"token\"\nhttp.metrics_token = \"{token}\"\n"),
        |_| {},
    );
    let (code, _) = get(server.http, "/metrics", "");
    assert_eq!(code, 401, "no token");
    let (code, _) = get(
        server.http,
        "/metrics",
        "Authorization: Bearer scrape-me-0123456789abcdeX\r\n",
    );
    assert_eq!(code, 401, "wrong token");
    let (code, body) = get(
        server.http,
        "/metrics",
        &format!("Authorization: Bearer {token}\r\n"),
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("# TYPE imss_sessions gauge"), "{body}");
}
