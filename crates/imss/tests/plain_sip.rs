//! Plain-SIP playback end to end: sipp places the call, ffmpeg receives and decodes the RTP,
//! and the decoded audio is compared with the source by content and duration.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

fn sipp(
    server: &Server,
    scenario: &str,
    service: &str,
    keys: &[(&str, &str)],
    extra: &[&str],
) -> (bool, String) {
    let sipp = require("sipp", "sip-tester");
    let scenario = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/sipp")
        .join(scenario);
    let mut cmd = Command::new(sipp);
    cmd.current_dir(server.dir.path())
        .arg("-sf")
        .arg(&scenario)
        .args(["-m", "1", "-l", "1", "-i", "127.0.0.1", "-nostdin"])
        .args(["-p", &free_udp_port().to_string()])
        .args(["-mp", &free_rtp_port().to_string()])
        .args(["-s", service])
        .args(["-timeout", "40s", "-timeout_error", "-trace_err"]);
    for (k, v) in keys {
        cmd.args(["-key", k, v]);
    }
    cmd.args(extra);
    cmd.arg(server.sip.to_string());
    let (status, out, err) = run_with_timeout(&mut cmd, Duration::from_secs(60));
    let errors = std::fs::read_dir(server.dir.path())
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect::<String>();
    (status.success(), format!("{out}\n{err}\n{errors}"))
}

/// Plays `file` as an announcement to sipp, receives it with ffmpeg, returns the decoded audio.
fn announce_and_receive(server: &Server, ruri_params: &str, codecs: &str) -> Vec<f32> {
    let rtp_port = free_rtp_port();
    let first_pt: u8 = codecs
        .split(' ')
        .next()
        .and_then(|c| c.parse().ok())
        .expect("codec");
    let rx = FfmpegReceiver::start(server.dir.path(), rtp_port, first_pt);
    // Let ffmpeg open its socket before the first packet.
    std::thread::sleep(Duration::from_millis(700));
    let port = rtp_port.to_string();
    let (ok, log) = sipp(
        server,
        "uac_until_bye.xml",
        "annc",
        &[
            ("ruri_params", ruri_params),
            ("rtp_port", &port),
            ("codecs", codecs),
        ],
        &[],
    );
    assert!(
        ok,
        "sipp call did not complete (server BYE expected):\n{log}\nserver log:\n{}",
        server.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    let out: PathBuf = rx.finish();
    let (rate, samples) = read_wav(&out);
    assert_eq!(rate, 8000);
    samples
}

#[test]
fn tone_announcement_is_faithful_in_content_and_time() {
    let server = start_server("", |audio| {
        write_wav(&audio.join("tone.wav"), 44_100, &tone(44_100, 3.0))
    });
    let got = announce_and_receive(&server, ";play=tone.wav", "0 8");
    let reference = tone(8000, 3.0);
    let seconds = got.len() as f64 / 8000.0;
    assert!(
        (seconds - 3.0).abs() <= 0.03,
        "received {seconds:.3} s of a 3.000 s file"
    );
    let (lag, snr) = snr_db(&reference, &got, 400, 400);
    assert!(snr >= 30.0, "1 kHz tone SNR {snr:.1} dB (lag {lag})");
}

#[test]
fn speech_like_announcement_over_pcma_from_44k1() {
    let server = start_server("", |audio| {
        write_wav(&audio.join("speech.wav"), 44_100, &speech_like(44_100, 3.0));
    });
    let got = announce_and_receive(&server, ";play=file:///speech.wav", "8 0");
    let reference = speech_like(8000, 3.0);
    let seconds = got.len() as f64 / 8000.0;
    assert!(
        (seconds - 3.0).abs() <= 0.03,
        "received {seconds:.3} s of a 3.000 s file"
    );
    let (lag, snr) = snr_db(&reference, &got, 400, 400);
    assert!(
        snr >= 30.0,
        "speech-like SNR {snr:.1} dB over A-law (lag {lag})"
    );
}

#[test]
fn repeat_delay_and_duration_shape_the_announcement() {
    let server = start_server("", |audio| {
        write_wav(&audio.join("tone.wav"), 16_000, &tone(16_000, 1.0))
    });
    // Two plays of 1 s with 500 ms of silence between: 2.5 s.
    let got = announce_and_receive(&server, ";play=tone.wav;repeat=2;delay=500", "0");
    let seconds = got.len() as f64 / 8000.0;
    assert!(
        (seconds - 2.5).abs() <= 0.025,
        "repeat=2;delay=500 lasted {seconds:.3} s"
    );
    // The gap is silent, the plays are not.
    let rms =
        |s: &[f32]| (s.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / s.len() as f64).sqrt();
    assert!(rms(&got[1000..7000]) > 0.2, "first play is audible");
    assert!(rms(&got[8400..11600]) < 0.01, "the delay is silent");
    assert!(rms(&got[13000..19000]) > 0.2, "second play is audible");

    // Forever, cut by duration=1200 ms.
    let got = announce_and_receive(&server, ";play=tone.wav;repeat=forever;duration=1200", "0");
    let seconds = got.len() as f64 / 8000.0;
    assert!(
        (seconds - 1.2).abs() <= 0.02,
        "duration=1200 lasted {seconds:.3} s"
    );
}

#[test]
fn two_music_on_hold_callers_hear_the_same_moment() {
    // Music on hold from a playlist of a non-repeating signal, so the correlation peak is unique.
    let server = start_server(
        "[[external_audio]]\nname = \"moh\"\nkind = \"playlist\"\npath = \"moh\"\n",
        |audio| {
            std::fs::create_dir_all(audio.join("moh")).expect("mkdir");
            write_wav(
                &audio.join("moh/speech.wav"),
                16_000,
                &speech_like(16_000, 30.0),
            );
        },
    );
    // Two callers joining 700 ms apart, 3 s each; `imss call` stamps arrivals in the kernel.
    let uri = format!("sip:moh@{}", server.sip);
    let callers: Vec<_> = (0..2)
        .map(|i| {
            let uri = uri.clone();
            let out = server.dir.path().join(format!("moh-{i}.wav"));
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(700 * i));
                let (status, stdout, stderr) = run_with_timeout(
                    Command::new(env!("CARGO_BIN_EXE_imss"))
                        .args(["call", &uri, "--seconds", "3", "--json", "--out"])
                        .arg(&out),
                    Duration::from_secs(30),
                );
                assert!(status.success(), "caller {i}: {stdout}\n{stderr}");
                let report: serde_json::Value = serde_json::from_str(&stdout).expect("json");
                let first = report["first_packet_unix_ms"]
                    .as_f64()
                    .expect("first packet time");
                assert_eq!(
                    report["lost"].as_u64(),
                    Some(0),
                    "caller {i} lost packets: {stdout}"
                );
                (first, read_wav(&out).1)
            })
        })
        .collect();
    let mut got: Vec<(f64, Vec<f32>)> = callers
        .into_iter()
        .map(|h| h.join().expect("caller"))
        .collect();
    let (b_first, b) = got.pop().expect("b");
    let (a_first, a) = got.pop().expect("a");
    assert!(
        a.len() >= 8000 * 2 && b.len() >= 8000 * 2,
        "both callers got audio"
    );
    // If both hear the same moment, b's sample k is a's sample k + (b_first - a_first) * 8.
    let expected = ((b_first - a_first) * 8.0).round() as isize;
    let window = &b[800..8800];
    let mut best = (0isize, f64::MIN);
    for off in 0..(a.len() - window.len()) {
        let dot: f64 = window
            .iter()
            .zip(&a[off..])
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum();
        if dot > best.1 {
            best = (off as isize - 800, dot);
        }
    }
    let norm = |s: &[f32]| s.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let off = (best.0 + 800) as usize;
    let corr = best.1 / (norm(window) * norm(&a[off..off + window.len()]));
    assert!(
        corr > 0.95,
        "callers hear the same audio (correlation {corr:.3})"
    );
    let lag = best.0 - expected;
    eprintln!(
        "moh alignment: expected offset {expected}, measured {}, correlation {corr:.3}",
        best.0
    );
    assert!(
        lag.abs() <= 160,
        "b is {lag} samples off a at the same wall-clock moment (more than one 20 ms frame); \
         expected offset {expected}, measured {}",
        best.0
    );
}

#[test]
fn announcement_over_tcp_ends_with_server_bye_on_the_same_connection() {
    let server = start_server("", |audio| {
        write_wav(&audio.join("short.wav"), 8000, &tone(8000, 1.0))
    });
    let port = free_rtp_port().to_string();
    let (ok, log) = sipp(
        &server,
        "uac_until_bye.xml",
        "annc",
        &[
            ("ruri_params", ";play=short.wav"),
            ("rtp_port", &port),
            ("codecs", "0"),
        ],
        &["-t", "t1"],
    );
    assert!(
        ok,
        "sipp over TCP did not complete:\n{log}\nserver log:\n{}",
        server.log()
    );
}
