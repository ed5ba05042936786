//! Text-to-speech end to end: an MRCPv2 session set up with UniMRCP's captured INVITE,
//! SPEAK requests with SSML over the control connection, espeak-ng rendering the text, and
//! the G.711 audio that arrives over RTP checked by content.

mod support;

use std::time::Duration;
use support::session::*;
use support::*;

/// RMS of each 10 ms block.
fn block_rms(samples: &[f32]) -> Vec<f32> {
    samples
        .chunks(80)
        .map(|b| (b.iter().map(|s| s * s).sum::<f32>() / b.len() as f32).sqrt())
        .collect()
}

/// The spans of speech (blocks louder than −40 dBFS) and the longest quiet stretch between
/// the first and the last of them.
fn speech_and_longest_pause(samples: &[f32]) -> (Duration, Duration) {
    let blocks = block_rms(samples);
    let loud: Vec<usize> = (0..blocks.len()).filter(|i| blocks[*i] > 0.01).collect();
    let gap = loud.windows(2).map(|w| w[1] - w[0] - 1).max().unwrap_or(0);
    (
        Duration::from_millis(10 * loud.len() as u64),
        Duration::from_millis(10 * gap as u64),
    )
}

/// Median fundamental frequency of the voiced 40 ms frames, by autocorrelation (70–400 Hz).
fn median_f0(samples: &[f32]) -> f64 {
    let mut f0s: Vec<f64> = samples
        .chunks_exact(320)
        .filter(|f| f.iter().map(|s| s * s).sum::<f32>() / 320.0 > 0.002)
        .map(|f| {
            let corr = |lag: usize| (0..320 - lag).map(|i| f[i] * f[i + lag]).sum::<f32>();
            let lag = (20..115)
                .max_by(|a, b| corr(*a).total_cmp(&corr(*b)))
                .unwrap_or(20);
            8000.0 / lag as f64
        })
        .collect();
    assert!(!f0s.is_empty(), "no voiced audio");
    f0s.sort_by(f64::total_cmp);
    f0s[f0s.len() / 2]
}

#[test]
fn ssml_with_voice_prosody_break_and_date_is_spoken_and_unknown_languages_refused() {
    require("espeak-ng", "espeak-ng");
    let server = start_server("", |_| {});
    let mut s = open_session(&server);

    let ssml = r#"<?xml version="1.0"?>
<speak version="1.0" xml:lang="en-US" xmlns="http://www.w3.org/2001/10/synthesis">
  <voice gender="female"><prosody rate="fast">Your appointment is on
  <say-as interpret-as="date" format="mdy">2026-11-24</say-as>.</prosody>
  <break time="1s"/>Press one to confirm it, or two to choose another day.</voice>
</speak>"#;
    s.speak(1, "", "application/ssml+xml", ssml);
    let (audio, done, _) = s.play_through(1, Duration::from_secs(30));
    assert!(
        done.contains("SPEAK-COMPLETE 1 COMPLETE") && done.contains("Completion-Cause: 000 normal"),
        "{done}"
    );
    let seconds = audio.len() as f64 / 8000.0;
    let (speech, pause) = speech_and_longest_pause(&audio);
    // "Your appointment is on November twenty-fourth, two thousand twenty six" fast, a
    // second's break, then eleven words at the normal rate.
    assert!(
        (4.0..14.0).contains(&seconds),
        "{seconds:.2} s of audio arrived"
    );
    assert!(
        speech > Duration::from_millis(2500),
        "{speech:?} of speech in {seconds:.2} s"
    );
    assert!(
        pause >= Duration::from_millis(950),
        "the 1 s break is silence: longest pause {pause:?}"
    );
    let f0 = median_f0(&audio);
    assert!(f0 > 160.0, "a female voice: median f0 {f0:.0} Hz");

    // A language no voice speaks: refused with 005.
    s.speak(
        2,
        "Speech-Language: xx-YY\r\n",
        "text/plain",
        "Hello there.",
    );
    let done = s.complete(Duration::from_secs(10));
    assert!(
        done.contains("SPEAK-COMPLETE 2 COMPLETE")
            && done.contains("Completion-Cause: 005 language-unsupported"),
        "{done}"
    );
    assert!(
        done.contains("xx-YY"),
        "the reason names the language: {done}"
    );
}

#[test]
fn the_dashboard_counts_sessions_that_speak_text() {
    require("espeak-ng", "espeak-ng");
    let server = start_server("", |_| {});
    let (admin, _) = support::api::tokens(&server);
    let auth = format!("Bearer {admin}");
    let mut api = support::api::Api::new(&server);
    let mut sessions = |mrcp: u64, want: u64| {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let status = api
                .get("/api/v1/status", &[("Authorization", &auth)])
                .json();
            if status["sessions"]["tts"] == want && status["sessions"]["mrcp"] == mrcp {
                return status["sessions"].clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "sessions speaking text never {want}: {}",
                status["sessions"]
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let mut s = open_session(&server);
    sessions(1, 0);
    s.speak(
        1,
        "",
        "text/plain",
        "Thank you for calling. All our agents are busy at the moment. Please stay on the \
         line and your call will be answered in turn. Thank you for your patience.",
    );
    let during = sessions(1, 1);
    assert_eq!(during["voicemail"], 0, "{during}");
    let (audio, done, _) = s.play_through(1, Duration::from_secs(30));
    assert!(done.contains("000 normal"), "{done}");
    assert!(audio.len() > 8000 * 4, "{} samples", audio.len());
    sessions(1, 0);
}
