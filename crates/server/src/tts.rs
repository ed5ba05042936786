//! Text-to-speech through the configured engine (`[tts]`, espeak-ng), rendered once into a
//! clip like any audio file.

use imss_media::{Clip, decode_bytes, resample_to_8k};
use std::process::{Command, Stdio};

/// Why text could not be spoken; each maps to an MRCP completion cause.
#[derive(Debug, thiserror::Error)]
pub enum TtsError {
    /// The engine is not installed or not configured (`004 error`).
    #[error("text-to-speech engine {engine:?} cannot run: {detail}")]
    Unavailable {
        /// Engine name from `[tts]`.
        engine: String,
        /// What went wrong.
        detail: String,
    },
    /// The engine refused the voice or language (`005 language-unsupported`).
    #[error("voice {voice:?} is not available: {detail}")]
    Voice {
        /// The voice asked for.
        voice: String,
        /// The engine's message.
        detail: String,
    },
    /// The engine's output could not be decoded (`004 error`).
    #[error("text-to-speech output unreadable: {0}")]
    Output(String),
}

/// Longest text rendered at once, in bytes: more is a client error, not a reason to block.
const MAX_TEXT: usize = 64 * 1024;

/// How the engine speaks: espeak-ng's `-s` (words per minute), and when set `-a` (amplitude,
/// 0–200, default 100) and `-p` (pitch, 0–99, default 50).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeechStyle {
    /// Speaking rate in words per minute (80 to 450 are used).
    pub rate_wpm: u32,
    /// Amplitude; `None` for the engine's default.
    pub amplitude: Option<u32>,
    /// Base pitch; `None` for the engine's default.
    pub pitch: Option<u32>,
}

impl SpeechStyle {
    /// `[tts]`'s rate with an MRCP prosody applied: its percentages scale the rate and
    /// espeak-ng's default amplitude and pitch.
    pub fn with_prosody(rate_wpm: u32, prosody: &imss_mrcp::Prosody) -> SpeechStyle {
        let scale = |base: u32, percent: u16| base.saturating_mul(u32::from(percent)) / 100;
        SpeechStyle {
            rate_wpm: prosody.rate.map_or(rate_wpm, |p| scale(rate_wpm, p)),
            amplitude: prosody.volume.map(|p| scale(100, p).min(200)),
            pitch: prosody.pitch.map(|p| scale(50, p).min(99)),
        }
    }
}

/// Renders `text` with `voice` (an espeak-ng voice such as `en-us`) in `style`. Blocking:
/// call it from the blocking pool.
pub fn speak(engine: &str, text: &str, voice: &str, style: &SpeechStyle) -> Result<Clip, TtsError> {
    if engine != "espeak-ng" && engine != "espeak" {
        return Err(TtsError::Unavailable {
            engine: engine.into(),
            detail: "only espeak-ng is supported".into(),
        });
    }
    let text = &text[..floor_char_boundary(text, MAX_TEXT)];
    let voice_arg = voice.to_ascii_lowercase();
    let mut command = Command::new(engine);
    command.args([
        "-v",
        &voice_arg,
        "-s",
        &style.rate_wpm.clamp(80, 450).to_string(),
        "--stdout",
    ]);
    if let Some(amplitude) = style.amplitude {
        command.args(["-a", &amplitude.min(200).to_string()]);
    }
    if let Some(pitch) = style.pitch {
        command.args(["-p", &pitch.min(99).to_string()]);
    }
    let out = command
        .arg("--")
        .arg(text)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| TtsError::Unavailable {
            engine: engine.into(),
            detail: format!("{e} (Debian package espeak-ng)"),
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() || out.stdout.len() <= 44 {
        if stderr.to_ascii_lowercase().contains("voice") {
            return Err(TtsError::Voice {
                voice: voice.into(),
                detail: stderr,
            });
        }
        return Err(TtsError::Unavailable {
            engine: engine.into(),
            detail: if stderr.is_empty() {
                format!("exit status {}", out.status)
            } else {
                stderr
            },
        });
    }
    let pcm = decode_bytes(out.stdout, Some("wav")).map_err(|e| TtsError::Output(e.to_string()))?;
    let samples = resample_to_8k(&pcm).map_err(|e| TtsError::Output(e.to_string()))?;
    Ok(Clip::from_samples_8k(&samples))
}

fn floor_char_boundary(s: &str, max: usize) -> usize {
    if s.len() <= max {
        return s.len();
    }
    (0..=max)
        .rev()
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn style(rate_wpm: u32) -> SpeechStyle {
        SpeechStyle {
            rate_wpm,
            amplitude: None,
            pitch: None,
        }
    }

    #[test]
    fn prosody_scales_rate_amplitude_and_pitch() {
        let prosody = imss_mrcp::Prosody {
            rate: Some(200),
            volume: Some(0),
            pitch: Some(150),
        };
        assert_eq!(
            SpeechStyle::with_prosody(175, &prosody),
            SpeechStyle {
                rate_wpm: 350,
                amplitude: Some(0),
                pitch: Some(75)
            }
        );
        assert_eq!(
            SpeechStyle::with_prosody(175, &imss_mrcp::Prosody::default()),
            style(175)
        );
    }

    #[test]
    fn rate_and_volume_change_the_speech() {
        require_espeak();
        let text = "One two three four five six.";
        let normal = speak("espeak-ng", text, "en-us", &style(175)).expect("tts");
        let fast = speak("espeak-ng", text, "en-us", &style(350)).expect("tts");
        let ratio = fast.duration().as_secs_f64() / normal.duration().as_secs_f64();
        assert!((0.35..0.75).contains(&ratio), "twice as fast: {ratio:.2}");
        let silent = SpeechStyle {
            amplitude: Some(0),
            ..style(175)
        };
        let silent = speak("espeak-ng", text, "en-us", &silent).expect("tts");
        assert!(
            silent
                .bytes(imss_media::Law::Pcmu)
                .iter()
                .all(|b| imss_media::Law::Pcmu.decode(*b).unsigned_abs() < 64),
            "amplitude 0 is silence"
        );
    }

    fn require_espeak() {
        assert!(
            std::path::Path::new("/usr/bin/espeak-ng").exists(),
            "espeak-ng is required: install the Debian package espeak-ng (scripts/test does)"
        );
    }

    #[test]
    fn speaks_text_as_audible_8k_audio() {
        require_espeak();
        let clip = speak(
            "espeak-ng",
            "Welcome to the music on hold.",
            "en-us",
            &style(175),
        )
        .expect("tts");
        let seconds = clip.duration().as_secs_f64();
        assert!((0.8..6.0).contains(&seconds), "{seconds} s of speech");
        // Speech, not silence: a good share of the μ-law bytes are away from the zero codes.
        let loud = clip
            .bytes(imss_media::Law::Pcmu)
            .iter()
            .filter(|b| imss_media::Law::Pcmu.decode(**b).unsigned_abs() > 1000)
            .count();
        assert!(
            loud > clip.samples() / 10,
            "{loud} loud samples of {}",
            clip.samples()
        );
    }

    #[test]
    fn unknown_voice_and_engine_are_specific_errors() {
        require_espeak();
        assert!(matches!(
            speak("espeak-ng", "hello", "xx-nosuchvoice", &style(175)),
            Err(TtsError::Voice { .. })
        ));
        assert!(matches!(
            speak("festival", "hello", "en", &style(175)),
            Err(TtsError::Unavailable { .. })
        ));
    }
}
