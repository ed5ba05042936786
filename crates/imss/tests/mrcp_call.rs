//! `imss call --mrcp` against the real server: SIP set-up with a control channel, SPEAK,
//! PAUSE/RESUME/STOP, SPEAK-COMPLETE, the audio written as WAV and checked by content.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::*;

/// Seconds of the tone the server plays.
const TONE_SECONDS: f64 = 2.0;

/// Runs `imss call --mrcp` with `args`; returns whether it succeeded, its stdout and stderr.
fn call(server: &Server, args: &[&str]) -> (bool, String, String) {
    let uri = format!("sip:imss@{}", server.sip);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imss"));
    cmd.args(["call", "--mrcp", &uri, "--seconds", "20"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env("RUST_BACKTRACE", "0");
    let (status, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(40));
    (status.success(), out, err)
}

fn report(server: &Server, args: &[&str]) -> serde_json::Value {
    let (ok, out, err) = call(server, args);
    assert!(
        ok,
        "imss call {args:?} failed\nstdout:\n{out}\nstderr:\n{err}\nserver log:\n{}",
        server.log()
    );
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("report is not JSON ({e}):\n{out}"))
}

/// The MRCP messages of a report but its SPEECH-MARKER events (the server sends one as each
/// spoken item starts; `markers` has them).
fn messages(r: &serde_json::Value) -> Vec<String> {
    all_messages(r)
        .into_iter()
        .filter(|m| !is_speech_marker(m))
        .collect()
}

/// The SPEECH-MARKER events of a report.
fn markers(r: &serde_json::Value) -> Vec<String> {
    all_messages(r)
        .into_iter()
        .filter(|m| is_speech_marker(m))
        .collect()
}

fn is_speech_marker(m: &str) -> bool {
    m.lines()
        .next()
        .is_some_and(|l| l.contains(" SPEECH-MARKER "))
}

fn all_messages(r: &serde_json::Value) -> Vec<String> {
    r["mrcp_messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The `+<ms>` a message block starts with.
fn at_ms(block: &str) -> f64 {
    block
        .strip_prefix('+')
        .and_then(|b| b.split(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no time in {block:?}"))
}

/// Amplitude of the component at `hz` (least squares over whole periods of 8 kHz audio).
fn amplitude_at(samples: &[f32], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let (mut c, mut s) = (0.0, 0.0);
    for (i, x) in samples.iter().enumerate() {
        c += f64::from(*x) * (w * i as f64).cos();
        s += f64::from(*x) * (w * i as f64).sin();
    }
    2.0 * (c * c + s * s).sqrt() / samples.len() as f64
}

fn rms(samples: &[f32]) -> f64 {
    let sum: f64 = samples.iter().map(|x| f64::from(*x).powi(2)).sum();
    (sum / samples.len().max(1) as f64).sqrt()
}

/// The part of a recording that is not silence (first to last sample above −40 dBFS).
fn sounding(samples: &[f32]) -> &[f32] {
    let loud = |x: &f32| x.abs() > 0.01;
    let first = samples.iter().position(loud).unwrap_or(0);
    let last = samples.iter().rposition(loud).map_or(first, |l| l + 1);
    &samples[first..last]
}

#[test]
fn speak_a_file_then_pause_resume_and_stop() {
    let server = start_server("", |audio| {
        write_wav(&audio.join("tone.wav"), 8000, &tone(8000, TONE_SECONDS))
    });
    let dir = server.dir.path().to_path_buf();
    let got = dir.join("got.wav");

    // The whole exchange: SPEAK, IN-PROGRESS, audio, SPEAK-COMPLETE 000 normal.
    let r = report(
        &server,
        &["--speak", "tone.wav", "--out", path(&got), "--json"],
    );
    assert_eq!(r["completion_cause"], "000 normal", "{r:#}");
    assert_eq!(r["speak_content_type"], "text/uri-list");
    let channel = r["mrcp_channel"].as_str().unwrap_or_default();
    assert!(channel.ends_with("@speechsynth"), "{r:#}");
    assert_eq!(
        r["mrcp_control"].as_str(),
        Some(server.mrcp.to_string().as_str())
    );
    let msgs = messages(&r);
    assert_eq!(msgs.len(), 2, "IN-PROGRESS and SPEAK-COMPLETE: {msgs:#?}");
    // The file's first packet: a SPEECH-MARKER without a mark name.
    let marks = markers(&r);
    assert_eq!(marks.len(), 1, "{marks:#?}");
    assert!(
        marks[0].contains("SPEECH-MARKER 1 IN-PROGRESS") && !marks[0].contains(';'),
        "{}",
        marks[0]
    );
    assert!(msgs[0].contains(" 1 200 IN-PROGRESS"), "{}", msgs[0]);
    assert!(
        msgs[1].contains("SPEAK-COMPLETE 1 COMPLETE")
            && msgs[1].contains("Completion-Cause: 000 normal")
            && msgs[1].contains(&format!("Channel-Identifier: {channel}")),
        "{}",
        msgs[1]
    );
    let in_progress = r["speak_to_in_progress_ms"].as_f64().expect("latency");
    let first_rtp = r["speak_to_first_rtp_ms"].as_f64().expect("first RTP");
    assert!((0.0..500.0).contains(&in_progress), "{in_progress} ms");
    assert!((0.0..500.0).contains(&first_rtp), "{first_rtp} ms");
    // SPEAK-COMPLETE follows the last packet: not before the tone's length.
    let complete = at_ms(&msgs[1]);
    assert!(
        (TONE_SECONDS * 1000.0 - 60.0..TONE_SECONDS * 1000.0 + 1000.0).contains(&complete),
        "SPEAK-COMPLETE at {complete} ms"
    );
    assert!(
        r["rtp_gaps"].as_array().is_some_and(|g| g.is_empty()),
        "no gap without PAUSE: {}",
        r["rtp_gaps"]
    );
    let (rate, samples) = read_wav(&got);
    assert_eq!(rate, 8000);
    let tone_part = sounding(&samples);
    let seconds = tone_part.len() as f64 / 8000.0;
    assert!(
        (seconds - TONE_SECONDS).abs() < 0.05,
        "{seconds:.3} s of tone, expected {TONE_SECONDS} s"
    );
    let inner = &tone_part[80..tone_part.len() - 80];
    let level = rms(inner);
    assert!(
        (0.33..0.38).contains(&level),
        "RMS {level:.3}, expected 0.354"
    );
    let at_1k = amplitude_at(inner, 1000.0);
    assert!((0.46..0.54).contains(&at_1k), "1 kHz amplitude {at_1k:.3}");
    for hz in [500.0, 900.0, 1100.0, 2000.0] {
        let a = amplitude_at(inner, hz);
        assert!(a < 0.02, "{hz} Hz amplitude {a:.3}: not a clean 1 kHz tone");
    }

    // PAUSE 300 ms after IN-PROGRESS, RESUME 500 ms later: a 500 ms hole in the RTP, and
    // the whole tone still plays and completes.
    let r = report(
        &server,
        &[
            "--speak",
            "tone.wav",
            "--pause-after",
            "300",
            "--resume-after",
            "800",
            "--json",
        ],
    );
    assert_eq!(r["completion_cause"], "000 normal", "{r:#}");
    let msgs = messages(&r);
    let starts: Vec<&str> = msgs
        .iter()
        .map(|m| m.lines().next().unwrap_or_default())
        .collect();
    assert_eq!(starts.len(), 4, "{msgs:#?}");
    assert!(starts[1].ends_with(" 2 200 COMPLETE"), "PAUSE: {msgs:#?}");
    assert!(starts[2].ends_with(" 3 200 COMPLETE"), "RESUME: {msgs:#?}");
    assert!(starts[3].contains("SPEAK-COMPLETE 1 COMPLETE"), "{msgs:#?}");
    let (pause_at, resume_at) = (at_ms(&msgs[1]), at_ms(&msgs[2]));
    assert!(
        (290.0..450.0).contains(&pause_at),
        "PAUSE answered at {pause_at} ms"
    );
    assert!(
        (resume_at - pause_at - 500.0).abs() < 60.0,
        "RESUME {resume_at} ms"
    );
    let gaps = r["rtp_gaps"].as_array().cloned().unwrap_or_default();
    assert_eq!(gaps.len(), 1, "one pause in the RTP: {gaps:?}");
    let gap = gaps[0]["length_ms"].as_f64().unwrap_or(0.0);
    let gap_at = gaps[0]["at_ms"].as_f64().unwrap_or(0.0);
    assert!(
        (440.0..600.0).contains(&gap),
        "the RTP stops for about 500 ms: {gap} ms"
    );
    assert!(
        (280.0..460.0).contains(&gap_at),
        "the RTP stops at the PAUSE: {gap_at} ms"
    );
    let complete = at_ms(&msgs[3]);
    assert!(
        complete > TONE_SECONDS * 1000.0 + 440.0,
        "the pause delays SPEAK-COMPLETE: {complete} ms"
    );

    // STOP 300 ms in: answered 200 COMPLETE naming the SPEAK; no SPEAK-COMPLETE follows.
    let r = report(
        &server,
        &["--speak", "tone.wav", "--stop-after", "300", "--json"],
    );
    assert_eq!(r["stopped"], true, "{r:#}");
    assert!(r.get("completion_cause").is_none(), "{r:#}");
    let msgs = messages(&r);
    assert_eq!(msgs.len(), 2, "{msgs:#?}");
    assert!(
        msgs[1].contains(" 2 200 COMPLETE") && msgs[1].contains("Active-Request-Id-List: 1"),
        "{}",
        msgs[1]
    );
}

#[test]
fn a_missing_file_fails_with_uri_failure() {
    let server = start_server("", |_| {});
    let (ok, out, err) = call(&server, &["--speak", "missing.wav"]);
    assert!(!ok, "a failed SPEAK must exit non-zero\nstdout:\n{out}");
    assert!(
        err.contains("SPEAK-COMPLETE 003 uri-failure") && err.contains("missing.wav"),
        "the cause and the reason: {err}"
    );
    assert!(
        err.contains("Completion-Reason:") && err.contains("MRCP/2.0"),
        "the messages received: {err}"
    );

    // The plain-text report of a good call shows the exchange too.
    write_wav(&server.audio().join("beep.wav"), 8000, &tone(8000, 0.3));
    let (ok, out, err) = call(&server, &["--speak", "beep.wav"]);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("completion  000 normal") && out.contains("SPEAK-COMPLETE 1 COMPLETE"),
        "{out}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("temp paths are UTF-8")
}
