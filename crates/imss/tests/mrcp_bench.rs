//! `imss bench --mrcp` against the real server: many MRCPv2 sessions set up, SPEAK, audio,
//! BYE, with the server's descriptors and threads counted before and after.

mod support;

use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use support::mrcp::fds_and_threads;
use support::{run_with_timeout, start_server, tone, write_wav};

/// Runs `imss bench --mrcp --json` against `server` and returns the report.
fn bench(server: &support::Server, calls: usize, rate: f64, seconds: f64, speak: &str) -> Value {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imss"));
    cmd.args(["bench", &format!("sip:imss@{}", server.sip)])
        .args(["--mrcp", "--speak", speak, "--json"])
        .args(["--calls", &calls.to_string()])
        .args(["--rate", &rate.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--server-pid", &server.pid().to_string()]);
    let (status, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(120));
    assert!(
        status.success(),
        "bench failed\nstdout:\n{out}\nstderr:\n{err}"
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{out}"))
}

fn u(v: &Value, path: &[&str]) -> u64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{} missing in {v}", path.join(".")))
}

#[test]
fn a_thousand_mrcp_sessions_play_and_leak_nothing() {
    let server = start_server("", |audio| {
        write_wav(&audio.join("beep.wav"), 8000, &tone(8000, 0.4))
    });
    // Warm up: the clip cache, the blocking pool and the pacing threads exist from now on.
    let warm = bench(&server, 2, 10.0, 1.0, "beep.wav");
    assert_eq!(u(&warm, &["calls_answered"]), 2, "{warm:#}");
    std::thread::sleep(Duration::from_millis(500));
    let before = fds_and_threads(server.pid());

    let r = bench(&server, 1000, 250.0, 1.0, "beep.wav");
    let m = &r["mrcp"];
    assert_eq!(u(&r, &["calls_answered"]), 1000, "{r:#}");
    assert_eq!(u(&r, &["calls_failed"]), 0, "{r:#}");
    assert_eq!(u(m, &["connected"]), 1000, "{m:#}");
    assert_eq!(u(m, &["speaks_sent"]), 1000, "{m:#}");
    // Every session heard its beep, and every SPEAK completed normally before the BYE.
    assert_eq!(u(m, &["speaks_with_audio"]), 1000, "{m:#}");
    let completions = m["completions"].as_array().expect("completions");
    assert_eq!(completions.len(), 1, "{m:#}");
    assert_eq!(completions[0]["cause"], "000 normal", "{m:#}");
    assert_eq!(completions[0]["sessions"], 1000, "{m:#}");
    assert!(
        m["control_failures"].as_array().is_some_and(Vec::is_empty),
        "{m:#}"
    );
    assert_eq!(u(&r, &["packets_lost"]), 0, "{r:#}");
    assert_eq!(u(&r, &["calls_without_rtp"]), 0, "{r:#}");
    // The figures are measured, not placeholders: audio comes after the SPEAK was sent.
    let audio_p50 = m["speak_to_audio"]["p50_ms"].as_f64().expect("p50");
    assert!(audio_p50 > 0.0 && audio_p50 < 1000.0, "{m:#}");

    // Streams are released by the pacing threads within a packet time or two, the control
    // connections close when the bench exits, and the blocking pool's extra threads (the
    // SPEAKs resolved in parallel) leave after their 10 s keep-alive.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let after = loop {
        let now = fds_and_threads(server.pid());
        if (now.0 <= before.0 + 2 && now.1 <= before.1 + 2) || std::time::Instant::now() > deadline
        {
            break now;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert!(
        after.0 <= before.0 + 2,
        "descriptors before {} after 1000 sessions: {}",
        before.0,
        after.0
    );
    assert!(
        after.1 <= before.1 + 2,
        "threads before {} after 1000 sessions: {}",
        before.1,
        after.1
    );
}

#[test]
fn a_bench_names_what_failed() {
    let server = start_server("", |_| {});
    // A SPEAK of a file that is not there: every session completes with 003 uri-failure.
    let r = bench(&server, 3, 20.0, 1.0, "missing.wav");
    let m = &r["mrcp"];
    assert_eq!(u(&r, &["calls_answered"]), 3, "{r:#}");
    let completions = m["completions"].as_array().expect("completions");
    assert_eq!(completions.len(), 1, "{m:#}");
    assert_eq!(completions[0]["cause"], "003 uri-failure", "{m:#}");
    assert_eq!(completions[0]["sessions"], 3, "{m:#}");
    assert_eq!(u(m, &["speaks_with_audio"]), 0, "{m:#}");
    // A resource the server does not offer is declined in the answer.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imss"));
    cmd.args(["bench", &format!("sip:imss@{}", server.sip)])
        .args(["--mrcp", "--speak", "x.wav", "--resource", "speechrecog"])
        .args(["--calls", "2", "--rate", "20", "--seconds", "0.5", "--json"]);
    let (status, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(60));
    assert!(status.success(), "{out}\n{err}");
    let r: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(u(&r, &["calls_failed"]), 2, "{r:#}");
    let cause = r["failures"][0]["cause"].as_str().unwrap_or_default();
    assert!(cause.contains("488") || cause.contains("declined"), "{r:#}");
}
