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

/// Renders `text` with `voice` (an espeak-ng voice such as `en-us`) at `rate_wpm`. Blocking:
/// call it from the blocking pool.
pub fn speak(engine: &str, text: &str, voice: &str, rate_wpm: u32) -> Result<Clip, TtsError> {
    if engine != "espeak-ng" && engine != "espeak" {
        return Err(TtsError::Unavailable {
            engine: engine.into(),
            detail: "only espeak-ng is supported".into(),
        });
    }
    let text = &text[..floor_char_boundary(text, MAX_TEXT)];
    let voice_arg = voice.to_ascii_lowercase();
    let out = Command::new(engine)
        .args([
            "-v",
            &voice_arg,
            "-s",
            &rate_wpm.clamp(80, 450).to_string(),
            "--stdout",
        ])
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

    fn require_espeak() {
        assert!(
            std::path::Path::new("/usr/bin/espeak-ng").exists(),
            "espeak-ng is required: install the Debian package espeak-ng (scripts/test does)"
        );
    }

    #[test]
    fn speaks_text_as_audible_8k_audio() {
        require_espeak();
        let clip = speak("espeak-ng", "Welcome to the music on hold.", "en-us", 175).expect("tts");
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
            speak("espeak-ng", "hello", "xx-nosuchvoice", 175),
            Err(TtsError::Voice { .. })
        ));
        assert!(matches!(
            speak("festival", "hello", "en", 175),
            Err(TtsError::Unavailable { .. })
        ));
    }
}
