//! Tools of the configuration pages: `POST /api/v1/mail/test` tries the IMAP settings (saved
//! ones, or the ones on the page before they are saved) step by step, and
//! `POST /api/v1/tts/speak` speaks a text with the configured engine, as WAV.
//!
//! Both cost the server something (a connection to the mail server, an engine process) and
//! are for admins only. The IMAP password is never part of an answer or a log line.

use super::{Admin, ApiError};
use crate::config::{Config, Mail, Tts};
use crate::tts::{SpeechStyle, TextToSpeech, TtsError, Utterance};
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use imss_mail::ConnectionStep;
use imss_web::auth::{Principal, RequireAdmin};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest wait on one step of a connection test, whatever `[mail]` allows a fetch.
const TEST_STEP_LIMIT: Duration = Duration::from_secs(10);
/// Longest a whole connection test may take.
const TEST_LIMIT: Duration = Duration::from_secs(90);
/// Longest text `POST /api/v1/tts/speak` speaks, in characters.
const MAX_SPEAK_CHARS: usize = 2_000;
/// Longest voice name.
const MAX_VOICE: usize = 100;

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(mail_test, speak),
    components(schemas(MailTest, MailTestStep, SpeakRequest))
)]
pub(crate) struct Doc;

/// This module's routes.
pub(crate) fn routes(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/api/v1/mail/test", post(mail_test))
        .route("/api/v1/tts/speak", post(speak))
        .with_state(admin)
}

/// A body that could not be read: over axum's limit (2 MB) or broken off.
fn body_error(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.body_text())
    } else {
        ApiError::invalid("body", e.body_text())
    }
}

// ---------------------------------------------------------------------------------------
// Mail connection test

/// What a connection test found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MailTest {
    /// Whether every step succeeded.
    pub ok: bool,
    /// The step that failed (`dns`, `tcp`, `tls`, `login`, `mailbox`), or `done`.
    pub step: String,
    /// What failed, exactly; or, when all went well, what was found.
    pub message: String,
    /// How long the test took, milliseconds.
    pub elapsed_ms: u64,
    /// Each step tried, in order.
    pub steps: Vec<MailTestStep>,
}

/// One step of a connection test.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MailTestStep {
    /// `dns`, `tcp`, `tls`, `login` or `mailbox`.
    pub step: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took, milliseconds.
    pub elapsed_ms: u64,
    /// What it found, or why it failed.
    pub detail: String,
}

/// The `[mail]` keys of a test's body (a JSON object; empty or blank: none), without the
/// masks the configuration view shows instead of secrets and without an empty or `null`
/// `imap_password` (which keeps the saved one).
fn overrides(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    let mut overrides = match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(ApiError::invalid(
                "body",
                "expected a JSON object of [mail] keys",
            ));
        }
        Err(e) => return Err(ApiError::invalid("body", format!("not JSON: {e}"))),
    };
    overrides.remove("imap_password_set");
    overrides.remove("imap_users_set");
    if overrides
        .get("imap_password")
        .is_some_and(|v| v.is_null() || v.as_str() == Some(""))
    {
        overrides.remove("imap_password");
    }
    Ok(overrides)
}

/// `base` with `overrides` over it: a key given replaces, `null` removes. The result is
/// checked as a saved `[mail]` section would be.
fn mail_with(base: &Mail, overrides: Map<String, Value>) -> Result<Mail, ApiError> {
    let mut merged = match serde_json::to_value(base) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    for (key, value) in overrides {
        if value.is_null() {
            merged.remove(&key);
        } else {
            merged.insert(key, value);
        }
    }
    let mail: Mail = serde_path_to_error::deserialize(Value::Object(merged)).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            "mail".to_string()
        } else {
            format!("mail.{path}")
        };
        ApiError::invalid(field, e.into_inner().to_string())
    })?;
    // The section's own checks, on an otherwise default configuration.
    let check = Config {
        mail: mail.clone(),
        ..Config::default()
    };
    if let Err(e) = check.validate() {
        return Err(match e {
            crate::ConfigError::Invalid { key, message } => ApiError::invalid(key, message),
            other => ApiError::invalid("mail", other.to_string()),
        });
    }
    Ok(mail)
}

fn step_name(step: ConnectionStep) -> String {
    step.to_string()
}

#[utoipa::path(
    post,
    path = "/api/v1/mail/test",
    tag = "tools",
    request_body(content = Object, description = "Optional `[mail]` keys that replace the saved ones for this test only (`imap_host`, `imap_port`, `imap_tls`, `imap_tls_verify`, `imap_ca_file`, `imap_auth`, `imap_user`, `imap_password`, `connect_timeout_ms`, `read_timeout_ms`, …); `imap_password` left out keeps the saved password"),
    responses(
        (status = 200, description = "The test ran: `ok`, the step that failed (or `done`) and what it found", body = MailTest),
        (status = 400, description = "A value that cannot be used, naming the key (`mail.imap_port`), or no `imap_host`", body = ApiError),
        (status = 403, description = "Not an admin, or no CSRF token", body = ApiError)
    )
)]
async fn mail_test(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(e).into_response(),
    };
    match run_mail_test(&admin, &who, &body).await {
        Ok(report) => {
            let mut response = Json(report).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn run_mail_test(admin: &Admin, who: &Principal, body: &[u8]) -> Result<MailTest, ApiError> {
    let overrides = overrides(body)?;
    // Without overrides, exactly what fetches use now.
    let settings = if overrides.is_empty() {
        admin.shared.voicemail.imap_settings()
    } else {
        crate::voicemail::imap_settings(&mail_with(&admin.shared.applied().mail, overrides)?)
    };
    let Some(mut settings) = settings else {
        return Err(ApiError::invalid(
            "mail.imap_host",
            "no IMAP server is configured: set imap_host",
        ));
    };
    settings.connect_timeout = settings.connect_timeout.min(TEST_STEP_LIMIT);
    settings.read_timeout = settings.read_timeout.min(TEST_STEP_LIMIT);
    let host = settings.host.clone();
    let port = settings.port;
    let started = Instant::now();
    // On the mail runtime, where every connection to the mail server runs.
    let task = admin.shared.voicemail.runtime().spawn(async move {
        tokio::time::timeout(TEST_LIMIT, imss_mail::test_connection(&settings)).await
    });
    let outcome = task
        .await
        .map_err(|e| ApiError::failed(format!("the connection test failed: {e}")))?;
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let report = match outcome {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => return Err(ApiError::invalid("mail", e.to_string())),
        Err(_) => {
            return Ok(MailTest {
                ok: false,
                step: "dns".into(),
                message: format!("the test did not finish within {} s", TEST_LIMIT.as_secs()),
                elapsed_ms,
                steps: Vec::new(),
            });
        }
    };
    let steps: Vec<MailTestStep> = report
        .steps
        .iter()
        .map(|s| MailTestStep {
            step: step_name(s.step),
            ok: s.ok,
            elapsed_ms: s.elapsed.as_millis() as u64,
            detail: s.detail.clone(),
        })
        .collect();
    let result = match report.failed {
        Some(step) => {
            let message = report
                .steps
                .iter()
                .rev()
                .find(|s| !s.ok)
                .map(|s| s.detail.clone())
                .unwrap_or_else(|| "failed".into());
            MailTest {
                ok: false,
                step: step_name(step),
                message,
                elapsed_ms,
                steps,
            }
        }
        None => MailTest {
            ok: true,
            step: "done".into(),
            message: report
                .steps
                .iter()
                .map(|s| format!("{}: {}", s.step, s.detail))
                .collect::<Vec<_>>()
                .join("; "),
            elapsed_ms,
            steps,
        },
    };
    tracing::info!(
        who = %who.name,
        host = %host,
        port,
        ok = result.ok,
        step = %result.step,
        elapsed_ms,
        "IMAP connection tested"
    );
    Ok(result)
}

// ---------------------------------------------------------------------------------------
// Speak

/// A text to speak.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeakRequest {
    /// Plain text, 1 to 2,000 characters.
    pub text: String,
    /// An engine voice (`en-us`, `gmw/en-GB`, `English_(America)`) or a BCP 47 language tag
    /// (`de`, `en-GB`); default `[tts] voice`.
    pub voice: Option<String>,
    /// Speaking rate, words per minute (80–450); default `[tts] rate_wpm`.
    pub rate: Option<u32>,
}

/// The request checked: the text, the voice asked for, the style.
fn checked_speak(
    body: &[u8],
    tts: &Tts,
) -> Result<(String, Option<String>, SpeechStyle), ApiError> {
    let request: SpeakRequest = serde_path_to_error::deserialize(
        &mut serde_json::Deserializer::from_slice(body),
    )
    .map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let field = if path == "." || path.is_empty() {
            if inner.to_string().contains("missing field `text`") {
                "text".to_string()
            } else {
                "body".to_string()
            }
        } else {
            path
        };
        ApiError::invalid(field, inner.to_string())
    })?;
    let text = request.text.trim();
    if text.is_empty() {
        return Err(ApiError::invalid("text", "the text is empty"));
    }
    let chars = text.chars().count();
    if chars > MAX_SPEAK_CHARS {
        return Err(ApiError::invalid(
            "text",
            format!("the text has {chars} characters; at most {MAX_SPEAK_CHARS}"),
        ));
    }
    let voice = match request.voice.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(v) if v.len() > MAX_VOICE => {
            return Err(ApiError::invalid(
                "voice",
                format!(
                    "the voice name is {} bytes long; at most {MAX_VOICE}",
                    v.len()
                ),
            ));
        }
        Some(v) if v.starts_with('-') || v.chars().any(char::is_control) => {
            return Err(ApiError::invalid(
                "voice",
                format!("{v:?} is not a voice name"),
            ));
        }
        Some(v) => Some(v.to_string()),
    };
    let mut style = SpeechStyle::from_config(tts);
    if let Some(rate) = request.rate {
        if !(80..=450).contains(&rate) {
            return Err(ApiError::invalid(
                "rate",
                format!("{rate} words per minute is outside 80–450"),
            ));
        }
        style.rate_wpm = rate;
    }
    Ok((text.to_string(), voice, style))
}

/// Speaks `text` in `voice` (or the configured one): the engine's clip as 8 kHz samples.
fn synthesize(
    tts: &Tts,
    text: String,
    voice: Option<String>,
    style: SpeechStyle,
) -> Result<Vec<f32>, ApiError> {
    let engine_failed =
        |e: TtsError| ApiError::new(StatusCode::BAD_GATEWAY, "unavailable", e.to_string());
    let utterance = Utterance::new(text, style);
    let clip = match voice {
        // The configured voice: the shared engine and its cache.
        None => crate::tts::service(tts)
            .map_err(engine_failed)?
            .speak(&utterance)
            .map_err(|e| match e {
                TtsError::Voice { .. } | TtsError::Language { .. } => ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "unavailable",
                    format!("{e} (check [tts] voice)"),
                ),
                other => engine_failed(other),
            })?,
        // Another voice: an engine of its own that speaks it by default, so that a name
        // it does not know is an error instead of a silent fallback. Nothing is cached.
        Some(voice) => {
            let settings = Tts {
                voice: voice.clone(),
                cache_mib: 0,
                ..tts.clone()
            };
            TextToSpeech::from_config(&settings)
                .map_err(engine_failed)?
                .speak(&utterance)
                .map_err(|e| match e {
                    TtsError::Voice { .. } | TtsError::Language { .. } => ApiError::invalid(
                        "voice",
                        format!("the engine has no voice {voice:?} and none that speaks it"),
                    ),
                    other => engine_failed(other),
                })?
        }
    };
    Ok(clip.to_pcm())
}

#[utoipa::path(
    post,
    path = "/api/v1/tts/speak",
    tag = "tools",
    request_body = SpeakRequest,
    responses(
        (status = 200, description = "The speech as WAV: 16-bit PCM, 8000 Hz, mono", content_type = "audio/wav", body = Vec<u8>),
        (status = 400, description = "Empty or too long `text`, a `voice` the engine does not have, a `rate` out of range", body = ApiError),
        (status = 403, description = "Not an admin, or no CSRF token", body = ApiError),
        (status = 502, description = "The engine failed or is not installed", body = ApiError)
    )
)]
async fn speak(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return body_error(e).into_response(),
    };
    let tts = admin.shared.applied().tts.clone();
    let (text, voice, style) = match checked_speak(&body, &tts) {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let chars = text.chars().count();
    let shown_voice = voice.clone().unwrap_or_else(|| tts.voice.clone());
    let result = admin
        .blocking(move |_| {
            let samples = synthesize(&tts, text, voice, style)?;
            wav_8k(&samples)
        })
        .await;
    match result {
        Ok(wav) => {
            tracing::info!(who = %who.name, chars, voice = %shown_voice, "text spoken for the API");
            (
                [
                    (header::CONTENT_TYPE, HeaderValue::from_static("audio/wav")),
                    (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                ],
                wav,
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// 8 kHz mono samples as a 16-bit PCM WAV file.
fn wav_8k(samples: &[f32]) -> Result<Vec<u8>, ApiError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let failed = |e: hound::Error| ApiError::failed(format!("cannot write WAV: {e}"));
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).map_err(failed)?;
    for s in samples {
        writer
            .write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)
            .map_err(failed)?;
    }
    writer.finalize().map_err(failed)?;
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved() -> Mail {
        Mail {
            imap_host: Some("mail.example".into()),
            imap_user: Some("vm".into()),
            imap_password: Some("saved-secret".into()),
            ..Mail::default()
        }
    }

    fn with(body: &[u8]) -> Result<Mail, ApiError> {
        mail_with(&saved(), overrides(body)?)
    }

    #[test]
    fn overrides_replace_keys_and_keep_the_saved_password() {
        let m = with(br#"{"imap_port": 1143, "imap_tls": "starttls"}"#).expect("valid");
        assert_eq!(m.imap_port, Some(1143));
        assert_eq!(m.imap_tls.as_deref(), Some("starttls"));
        assert_eq!(m.imap_password.as_deref(), Some("saved-secret"));
        let m = with(br#"{"imap_password": "", "imap_password_set": true}"#).expect("valid");
        assert_eq!(m.imap_password.as_deref(), Some("saved-secret"));
        let m = with(br#"{"imap_password": "new"}"#).expect("valid");
        assert_eq!(m.imap_password.as_deref(), Some("new"));
        assert!(overrides(b" ").expect("blank").is_empty());
        assert_eq!(with(b"{}").expect("empty"), saved());
    }

    #[test]
    fn bad_values_name_their_key() {
        let field = |body: &[u8]| with(body).expect_err("invalid").field;
        assert_eq!(
            field(br#"{"imap_port": 70000}"#).as_deref(),
            Some("mail.imap_port")
        );
        assert_eq!(
            field(br#"{"imap_port": 0}"#).as_deref(),
            Some("mail.imap_port")
        );
        assert_eq!(
            field(br#"{"imap_tls": "ssl"}"#).as_deref(),
            Some("mail.imap_tls")
        );
        assert_eq!(
            field(br#"{"connect_timeout_ms": 5}"#).as_deref(),
            Some("mail.connect_timeout_ms")
        );
        assert_eq!(
            field(br#"{"nonsense": 1}"#).as_deref(),
            Some("mail.nonsense")
        );
        assert_eq!(field(b"[1]").as_deref(), Some("body"));
        assert_eq!(field(b"{").as_deref(), Some("body"));
    }

    #[test]
    fn the_routes_are_documented() {
        let doc = serde_json::to_value(crate::admin::openapi()).expect("JSON");
        assert!(doc["paths"]["/api/v1/mail/test"]["post"].is_object());
        assert!(doc["paths"]["/api/v1/tts/speak"]["post"].is_object());
        assert!(doc["components"]["schemas"]["MailTest"].is_object());
    }

    #[test]
    fn speak_requests_are_checked() {
        let tts = Tts::default();
        let field = |body: &str| {
            checked_speak(body.as_bytes(), &tts)
                .expect_err("invalid")
                .field
        };
        assert_eq!(field(r#"{"text": "  "}"#).as_deref(), Some("text"));
        assert_eq!(field(r#"{}"#).as_deref(), Some("text"));
        let long = format!(r#"{{"text": "{}"}}"#, "a".repeat(2001));
        assert_eq!(field(&long).as_deref(), Some("text"));
        assert_eq!(
            field(r#"{"text": "hi", "rate": 10}"#).as_deref(),
            Some("rate")
        );
        assert_eq!(
            field(r#"{"text": "hi", "voice": "-x"}"#).as_deref(),
            Some("voice")
        );
        assert_eq!(field(r#"{"text": 5}"#).as_deref(), Some("text"));
        let (text, voice, style) = checked_speak(
            br#"{"text": " Hello ", "voice": "en-gb", "rate": 200}"#,
            &tts,
        )
        .expect("valid");
        assert_eq!(text, "Hello");
        assert_eq!(voice.as_deref(), Some("en-gb"));
        assert_eq!(style.rate_wpm, 200);
    }
}
