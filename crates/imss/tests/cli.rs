//! The binary's own commands: check-config, and serve on the embedded defaults.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

fn imss() -> Command {
    Command::new(env!("CARGO_BIN_EXE_imss"))
}

#[test]
fn check_config_accepts_the_contract_and_names_key_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[general]\nname = \"a\"\n[sip]\nport = 6060\n[[external_audio]]\nname = \"moh\"\nkind = \"tone\"\nfrequency_hz = 440\n",
    )
    .expect("write");
    let out = imss().arg("check-config").arg(&good).output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[sip]\nport = 6060\n\n[rtp]\nptime_mss = 20\n").expect("write");
    let out = imss().arg("check-config").arg(&bad).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ptime_mss") && err.contains("line 5"), "{err}");

    let range = dir.path().join("range.toml");
    std::fs::write(&range, "[rtp]\nport_min = 40000\nport_max = 30000\n").expect("write");
    let out = imss()
        .arg("check-config")
        .arg(&range)
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("rtp.port_max"));

    let out = imss()
        .arg("check-config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn healthz_answers_once_listening() {
    let server = start_server("", |_| {});
    let r = http_get(server.http, "/healthz");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

#[test]
fn embedded_defaults_serve_music_on_hold_on_a_fresh_start() {
    // The embedded defaults listen on the standard ports; this is the only test that uses them.
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut child = imss()
        .args(["serve", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start");
    let mut stdout = child.stdout.take().expect("stdout");
    let start = Instant::now();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while start.elapsed() < Duration::from_secs(20)
        && stdout.read(&mut b).map(|n| n == 1).unwrap_or(false)
    {
        if b[0] == b'\n' {
            break;
        }
        line.push(b[0]);
    }
    let line = String::from_utf8_lossy(&line).to_string();
    let ok = line.contains("\"sip_udp\":\"0.0.0.0:6060\"") && line.contains("8190");
    let demo = data.join("audio/moh/imss-demo.wav").exists();
    // The defaults are written to a file of their own, where the web interface saves changes.
    let file = std::fs::read_to_string(data.join("imss.toml")).unwrap_or_default();
    let report = if ok {
        let (status, out, err) = run_with_timeout(
            imss().args(["call", "sip:moh@127.0.0.1:6060", "--seconds", "2", "--json"]),
            Duration::from_secs(20),
        );
        Some((status.success(), out, err))
    } else {
        None
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(ok, "ready line with default ports: {line}");
    assert!(demo, "demo music written on first start");
    assert!(
        file.contains("name = \"moh\"") && file.contains("port = 6060"),
        "the embedded defaults in DATA_DIR/imss.toml: {file}"
    );
    let (success, out, err) = report.expect("call placed");
    assert!(success, "call to the default moh failed: {out}\n{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json report");
    let packets = v["packets"].as_u64().unwrap_or(0);
    assert!(
        packets >= 90,
        "2 s of music on hold is ~100 packets, got {packets}: {out}"
    );
}
