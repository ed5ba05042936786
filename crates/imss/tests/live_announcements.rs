//! A live source's announcement, chime and loudness end to end: callers of the real server
//! over plain SIP and MRCP, their received audio told apart by frequency (the announcement
//! and chime files are 1 kHz tones, the sources 440 Hz tones) and measured for level.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

const ANNOUNCEMENT_HZ: f64 = 1000.0;
const SOURCE_HZ: f64 = 440.0;
/// Analysis window: 25 ms, whole periods of both frequencies.
const WINDOW: usize = 200;

/// Amplitude of the component at `hz` (whole periods of 8 kHz audio).
fn amplitude_at(samples: &[f32], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 8000.0;
    let (mut c, mut s) = (0.0, 0.0);
    for (i, x) in samples.iter().enumerate() {
        c += f64::from(*x) * (w * i as f64).cos();
        s += f64::from(*x) * (w * i as f64).sin();
    }
    2.0 * (c * c + s * s).sqrt() / samples.len() as f64
}

fn rms_dbfs(samples: &[f32]) -> f64 {
    let sum: f64 = samples.iter().map(|x| f64::from(*x).powi(2)).sum();
    10.0 * (sum / samples.len().max(1) as f64).log10()
}

/// What each window holds: 'A' (announcement or chime, 1 kHz), 'S' (the source, 440 Hz)
/// or '.' (quiet), as a string, so a failure shows the whole call at a glance.
fn timeline(samples: &[f32]) -> String {
    samples
        .chunks_exact(WINDOW)
        .map(|w| {
            let a = amplitude_at(w, ANNOUNCEMENT_HZ);
            let s = amplitude_at(w, SOURCE_HZ);
            if a.max(s) < 0.005 {
                '.'
            } else if a > s {
                'A'
            } else {
                'S'
            }
        })
        .collect()
}

/// Runs of equal labels: (label, first window, windows).
fn runs(timeline: &str) -> Vec<(char, usize, usize)> {
    let mut runs: Vec<(char, usize, usize)> = Vec::new();
    for (i, c) in timeline.chars().enumerate() {
        match runs.last_mut() {
            Some((label, _, n)) if *label == c => *n += 1,
            _ => runs.push((c, i, 1)),
        }
    }
    runs
}

fn imss_call(server: &Server, name: &str, args: &[&str]) -> Vec<f32> {
    let out = server.dir.path().join(format!("{name}.wav"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_imss"));
    cmd.arg("call")
        .args(args)
        .arg("--json")
        .arg("--out")
        .arg(&out)
        .env("RUST_LOG", "warn");
    let (status, stdout, stderr) = run_with_timeout(&mut cmd, Duration::from_secs(40));
    assert!(
        status.success(),
        "imss call {args:?} failed\nstdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{}",
        server.log()
    );
    let (rate, samples) = read_wav(&out);
    assert_eq!(rate, 8000);
    samples
}

/// The received audio from its first sound on.
fn from_first_sound(samples: &[f32]) -> &[f32] {
    let first = samples.iter().position(|x| x.abs() > 0.005).unwrap_or(0);
    &samples[first..]
}

/// Checks that `samples` hold the 1.5 s announcement, then the source to the end; returns
/// the two parts.
fn announcement_then_source<'a>(what: &str, samples: &'a [f32]) -> (&'a [f32], &'a [f32]) {
    let audio = from_first_sound(samples);
    let line = timeline(audio);
    let runs = runs(line.trim_end_matches('.'));
    eprintln!("{what}: {line}");
    assert!(runs.len() >= 2, "{what}: {line}");
    let (first, _, windows) = runs[0];
    assert_eq!(first, 'A', "{what} starts with the announcement: {line}");
    // 1.5 s = 60 windows, give or take the window the cut falls in.
    assert!(
        (59..=61).contains(&windows),
        "{what}: the announcement lasted {windows} windows of 25 ms: {line}"
    );
    let rest = &runs[1..];
    let source_windows: usize = rest.iter().filter(|r| r.0 == 'S').map(|r| r.2).sum();
    let other: usize = rest.iter().filter(|r| r.0 != 'S').map(|r| r.2).sum();
    assert!(
        source_windows >= 40 && other <= 1,
        "{what}: then only the source: {line}"
    );
    let cut = windows * WINDOW;
    (
        &audio[WINDOW..cut - WINDOW],
        &audio[cut + WINDOW..(cut + 40 * WINDOW).min(audio.len())],
    )
}

#[test]
fn callers_hear_the_announcement_then_the_source_at_the_same_loudness() {
    // A quiet source and a loud announcement, both normalised to −21 LUFS (a 1 kHz tone's
    // loudness is its RMS level; a 440 Hz tone's reads about 0.3 dB above it).
    let server = start_server(
        "[[external_audio]]\nname = \"hold\"\nkind = \"tone\"\nfrequency_hz = 440\n\
         level_dbfs = -30\nnormalize = true\nannouncement = \"welcome.wav\"\n",
        |audio| write_wav(&audio.join("welcome.wav"), 8000, &tone(8000, 1.5)),
    );
    let uri = format!("sip:hold@{}", server.sip);
    let plain = imss_call(&server, "plain", &[&uri, "--seconds", "3.5"]);
    let (announcement, source) = announcement_then_source("plain SIP", &plain);
    let (a, s) = (rms_dbfs(announcement), rms_dbfs(source));
    eprintln!("announcement {a:.2} dBFS rms, source {s:.2} dBFS rms");
    assert!((a + 21.0).abs() < 1.0, "announcement at {a:.2} dBFS rms");
    assert!((s + 21.0).abs() < 1.5, "source at {s:.2} dBFS rms");
    // Unprocessed, the source would arrive at −33 dBFS rms and the announcement at −9.

    // MRCP: SPEAK source:hold, stopped after 3.5 s.
    let mrcp_uri = format!("sip:imss@{}", server.sip);
    let mrcp = imss_call(
        &server,
        "mrcp",
        &[
            "--mrcp",
            &mrcp_uri,
            "--speak",
            "source:hold",
            "--stop-after",
            "3500",
            "--seconds",
            "20",
        ],
    );
    announcement_then_source("MRCP source:hold", &mrcp);
}

#[test]
fn the_chime_is_heard_every_period() {
    // A second source names a file that is not there: a warning, not a failure.
    let mut server = start_server(
        "[[external_audio]]\nname = \"chimed\"\nkind = \"tone\"\nfrequency_hz = 440\n\
         chime = \"chime.wav\"\nchime_every_s = 1\n\
         [[external_audio]]\nname = \"other\"\nkind = \"tone\"\nannouncement = \"gone.wav\"\n",
        |audio| write_wav(&audio.join("chime.wav"), 8000, &tone(8000, 0.3)),
    );
    let uri = format!("sip:chimed@{}", server.sip);
    let audio = imss_call(&server, "chimed", &[&uri, "--seconds", "4.5"]);
    assert!(server.alive());
    let log = server.log();
    assert!(
        log.contains("gone.wav") && log.contains("announcement") && log.contains("WARN"),
        "a warning names the missing file:\n{log}"
    );
    let line = timeline(from_first_sound(&audio));
    eprintln!("chime: {line}");
    let runs = runs(&line);
    let chimes: Vec<(usize, usize)> = runs
        .iter()
        .filter(|r| r.0 == 'A')
        .map(|r| (r.1, r.2))
        .collect();
    // The first and last may be cut by the call's edges.
    let whole: Vec<(usize, usize)> = chimes
        .iter()
        .copied()
        .filter(|&(start, n)| start > 0 && start + n < line.len())
        .collect();
    assert!(whole.len() >= 3, "at least three chimes in 4.5 s: {line}");
    for &(_, n) in &whole {
        // 0.3 s = 12 windows.
        assert!((11..=13).contains(&n), "a chime lasted {n} windows: {line}");
    }
    for pair in whole.windows(2) {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            (39..=41).contains(&gap),
            "chimes {gap} windows of 25 ms apart, not 40: {line}"
        );
    }
    // Between the chimes, the source and nothing else.
    assert!(!line.contains('.'), "no silence around the chimes: {line}");
}

#[test]
fn check_config_names_loudness_keys_and_warns_of_missing_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |toml: &str| {
        let path = dir.path().join("imss.toml");
        std::fs::write(&path, toml).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_imss"))
            .arg("check-config")
            .arg(&path)
            .output()
            .expect("run");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let source = "[[external_audio]]\nname = \"hold\"\nkind = \"tone\"\n";
    let (ok, err) = run(&format!("{source}target_lufs = -20\n"));
    assert!(!ok);
    assert!(
        err.contains("external_audio[0].target_lufs") && err.contains("line 4"),
        "{err}"
    );
    let (ok, err) = run(&format!(
        "[audio]\nroot = \"{}\"\n{source}announcement = \"missing.wav\"\nnormalize = true\n",
        dir.path().display()
    ));
    assert!(ok, "a missing announcement is no error: {err}");
    assert!(
        err.contains("warning: external_audio[0].announcement") && err.contains("missing.wav"),
        "{err}"
    );
}
