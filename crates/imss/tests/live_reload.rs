//! Live sources reconfigured while callers listen: the real server re-reads its file on
//! SIGHUP. Callers of an unchanged source are not touched, callers of a changed source hear
//! the new settings without a gap, callers of a removed source hear its fallback, and a
//! file that does not validate changes nothing.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

/// Samples in one 20 ms frame at 8 kHz.
const FRAME: usize = 160;

/// The share of `samples`' energy at `hz` (1.0 for a pure tone at `hz`).
fn tone_share(samples: &[f32], hz: f64) -> f64 {
    let (mut s, mut c, mut p) = (0.0, 0.0, 0.0);
    for (i, &x) in samples.iter().enumerate() {
        let x = f64::from(x);
        let w = std::f64::consts::TAU * hz * i as f64 / 8000.0;
        s += x * w.sin();
        c += x * w.cos();
        p += x * x;
    }
    let n = samples.len() as f64;
    let amp = 2.0 * s.hypot(c) / n;
    (amp * amp / 2.0) / (p / n).max(1e-12)
}

/// Per 20 ms frame, which of `tones` it is (its index), or `None` for anything else.
fn frames(samples: &[f32], tones: &[f64]) -> Vec<Option<usize>> {
    samples
        .chunks_exact(FRAME)
        .map(|f| tones.iter().position(|&hz| tone_share(f, hz) > 0.8))
        .collect()
}

/// Runs `imss call` to `sip:NAME@server` for `seconds`, on its own thread; the report and
/// the audio.
fn caller(
    server: &Server,
    name: &str,
    seconds: f64,
) -> std::thread::JoinHandle<(serde_json::Value, Vec<f32>)> {
    let uri = format!("sip:{name}@{}", server.sip);
    let out = server.dir.path().join(format!("{name}.wav"));
    std::thread::spawn(move || {
        let (status, stdout, stderr) = run_with_timeout(
            Command::new(env!("CARGO_BIN_EXE_imss"))
                .args([
                    "call",
                    &uri,
                    "--seconds",
                    &seconds.to_string(),
                    "--json",
                    "--out",
                ])
                .arg(&out)
                .env("RUST_LOG", "warn"),
            Duration::from_secs_f64(seconds + 30.0),
        );
        assert!(status.success(), "imss call {uri}: {stdout}\n{stderr}");
        let report: serde_json::Value = serde_json::from_str(&stdout).expect("report");
        let (rate, audio) = read_wav(&out);
        assert_eq!(rate, 8000);
        (report, audio)
    })
}

fn source(name: &str, hz: u32, extra: &str) -> String {
    format!("[[external_audio]]\nname = \"{name}\"\nkind = \"tone\"\nfrequency_hz = {hz}\n{extra}")
}

/// Rewrites the server's file with `sources` in place of the ones it started with, and
/// sends SIGHUP.
fn reload(server: &Server, first_sources: &str, sources: &str) {
    let path = server.dir.path().join("imss.toml");
    let text = std::fs::read_to_string(&path).expect("read config");
    assert!(text.contains(first_sources), "{text}");
    std::fs::write(&path, text.replace(first_sources, sources)).expect("write config");
    let rc = unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    assert_eq!(rc, 0, "SIGHUP");
}

/// The server's log without ANSI colours.
fn plain_log(server: &Server) -> String {
    let log = server.log();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn wait_for_log(server: &Server, what: &str, times: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while plain_log(server).matches(what).count() < times {
        assert!(
            std::time::Instant::now() < deadline,
            "no {what:?} (×{times}) in the log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sighup_reloads_sources_without_dropping_their_callers() {
    let first = [
        source("STEADY", 500, ""),
        source("CHANGING", 700, ""),
        source("LEAVING", 900, "fallback = \"tone\"\n"),
    ]
    .concat();
    let mut server = start_server(&first, |_| {});
    let seconds = 4.0;
    let steady = caller(&server, "STEADY", seconds);
    let changing = caller(&server, "CHANGING", seconds);
    let leaving = caller(&server, "LEAVING", seconds);
    std::thread::sleep(Duration::from_millis(1500));

    // A file that does not validate changes nothing.
    reload(
        &server,
        &first,
        &format!("{first}{}", source("BROKEN", 9000, "")),
    );
    wait_for_log(&server, "configuration not reloaded", 1);
    std::thread::sleep(Duration::from_millis(300));
    let second = [
        source("STEADY", 500, ""),
        source("CHANGING", 1100, ""),
        source("ARRIVING", 1300, ""),
    ]
    .concat();
    let broken = format!("{first}{}", source("BROKEN", 9000, ""));
    reload(&server, &broken, &second);
    wait_for_log(&server, "configuration reloaded", 1);
    let log = plain_log(&server);
    let reloaded = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .expect("reload line");
    for part in [
        "sources_added=[\"ARRIVING\"]",
        "sources_changed=[\"CHANGING\"]",
        "sources_removed=[\"LEAVING\"]",
    ] {
        assert!(reloaded.contains(part), "{part} in {reloaded}");
    }
    // The added source takes callers; the removed one does not.
    let arriving = caller(&server, "ARRIVING", 1.0);

    let results: Vec<(&str, (serde_json::Value, Vec<f32>))> = [
        ("STEADY", steady),
        ("CHANGING", changing),
        ("LEAVING", leaving),
        ("ARRIVING", arriving),
    ]
    .into_iter()
    .map(|(n, h)| (n, h.join().expect("caller")))
    .collect();
    for (name, (report, audio)) in &results {
        // Nobody was dropped and nothing was lost: the calls ran their length, paced.
        assert_eq!(report["ended_by_server"], false, "{name}: {report}");
        assert_eq!(report["lost"], 0, "{name}: {report}");
        let max = report["spacing"]["max_ms"].as_f64().expect("spacing");
        assert!(max <= 20.0, "{name}: a gap of {max} ms: {report}");
        assert!(audio.len() >= 7000, "{name}: {} samples", audio.len());
    }
    let heard = |name: &str, tones: &[f64]| {
        let (_, audio) = &results.iter().find(|(n, _)| *n == name).expect("caller").1;
        frames(audio, tones)
    };
    // STEADY: its tone throughout.
    let steady = heard("STEADY", &[500.0]);
    assert!(
        steady[5..steady.len() - 2].iter().all(|f| *f == Some(0)),
        "STEADY: {steady:?}"
    );
    // CHANGING: 700 Hz, then 1,100 Hz, with at most one frame holding the switch.
    for (name, before, after) in [("CHANGING", 700.0, 1100.0), ("LEAVING", 900.0, 440.0)] {
        let f = heard(name, &[before, after]);
        let body = &f[5..f.len() - 2];
        let switch = body
            .iter()
            .position(|x| *x != Some(0))
            .unwrap_or_else(|| panic!("{name} never changed: {f:?}"));
        assert!(switch >= 50, "{name}: changed before the reload: {f:?}");
        assert!(
            body[switch + 1..].iter().all(|x| *x == Some(1)),
            "{name}: after the switch: {f:?}"
        );
    }
    let arriving = heard("ARRIVING", &[1300.0]);
    assert!(
        arriving[5..arriving.len() - 2]
            .iter()
            .all(|f| *f == Some(0)),
        "ARRIVING: {arriving:?}"
    );
    // A caller of the removed source now gets 404.
    let (status, stdout, stderr) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_imss"))
            .args([
                "call",
                &format!("sip:LEAVING@{}", server.sip),
                "--seconds",
                "1",
            ])
            .env("RUST_LOG", "warn"),
        Duration::from_secs(20),
    );
    assert!(!status.success(), "{stdout}");
    assert!(stderr.contains("404"), "{stderr}");
    assert!(server.alive());
}
