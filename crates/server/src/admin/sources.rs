//! Live sources (`[[external_audio]]`) as the API shows and changes them: their settings
//! and state, adding, replacing and removing one (saved, then applied at once: the source
//! starts, changes or stops while calls go on), listening to one in the browser, and
//! testing its upstream.
//!
//! A listen stream is what callers hear: the source's ring read at the present, 20 ms at a
//! time, as a pacing thread reads it for a call, with a listener token held while the
//! browser is connected (so a lazy source runs and counts it). It is paced by the clock, not
//! by a busy loop, and ends when its time is up, the browser goes away or the server stops;
//! nothing of it outlives the response body.

use super::{Admin, ApiError, Saved, etag, if_match};
use crate::config::ExternalAudio;
use crate::metrics::SourceInfo;
use crate::upstream::probe::{self, Step};
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use imss_media::{Law, LiveListener};
use imss_web::auth::{Principal, RequireAdmin};
use serde::Serialize;
use serde_json::{Map, Value};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        list_sources,
        get_source,
        add_source,
        replace_source,
        delete_source,
        listen,
        test_source
    ),
    components(schemas(SourceList, SourceView, SourceEntry, TestReport, Step))
)]
pub(crate) struct Doc;

/// This module's routes.
pub(crate) fn routes(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/api/v1/sources", get(list_sources).post(add_source))
        .route(
            "/api/v1/sources/{name}",
            get(get_source).put(replace_source).delete(delete_source),
        )
        .route("/api/v1/sources/{name}/listen", get(listen))
        .route("/api/v1/sources/{name}/test", post(test_source))
        .with_state(admin)
}

/// A listen stream's length when the request gives none, in seconds.
const DEFAULT_LISTEN_S: u64 = 300;
/// The longest listen stream, in seconds.
const MAX_LISTEN_S: u64 = 3600;
/// Samples in one frame of a listen stream: 20 ms at 8 kHz, a call's packet.
const FRAME_SAMPLES: u64 = 160;
/// Most frames sent at once when a listen stream catches up after its reader stalled.
const MAX_BURST_FRAMES: u64 = 50;
/// The time a test of a source has (each step has its own, shorter, timeout).
const TEST_TIME: Duration = Duration::from_secs(8);

/// Every source of the configuration file, with its state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourceList {
    /// The configuration file's version (also the `ETag` header); `null` when the server
    /// runs without a file.
    pub version: Option<String>,
    /// The sources, in the file's order.
    pub sources: Vec<SourceEntry>,
}

/// One source: its settings and its state.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourceEntry {
    /// The `[[external_audio]]` entry's keys as JSON (keys left out of the file are left
    /// out here; see docs/SOURCES.md).
    #[schema(value_type = Object)]
    pub config: Value,
    /// What the source does now, the same object as `GET /api/v1/status`'s `sources[]`:
    /// `name`, `kind`, `state` (`idle`, `connecting`, `playing`, `fallback`, `failed`),
    /// `listeners`, `now_playing`, `codec`, `bitrate_kbps`, `last_error`, `reconnects` and
    /// `level_dbfs` (RMS of the last 100 ms; `null` while idle).
    #[schema(value_type = Object)]
    pub status: SourceInfo,
}

/// One source, with the configuration file's version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SourceView {
    /// The configuration file's version (also the `ETag` header).
    pub version: Option<String>,
    /// The `[[external_audio]]` entry's keys as JSON.
    #[schema(value_type = Object)]
    pub config: Value,
    /// What the source does now (see [`SourceEntry::status`]).
    #[schema(value_type = Object)]
    pub status: SourceInfo,
}

/// What a test of a source found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestReport {
    /// Every step passed: the source's upstream can be played.
    pub ok: bool,
    /// The step that failed, or `done`.
    pub step: Step,
    /// What was found, for people.
    pub message: String,
    /// How long the test took, in milliseconds.
    pub elapsed_ms: u64,
    /// The upstream's codec, sample rate, channels and bit rate, as far as they are known.
    pub format: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/sources",
    tag = "sources",
    responses(
        (status = 200, description = "Every source's settings and state; `ETag` is the configuration's version", body = SourceList),
        (status = 401, description = "Not logged in", body = ApiError)
    )
)]
async fn list_sources(State(admin): State<Arc<Admin>>, _who: Principal) -> Response {
    let loaded = admin.blocking(configured).await;
    match loaded {
        Ok((sources, version)) => {
            let sources = sources.iter().map(|e| entry(&admin, e)).collect();
            with_version(
                Json(SourceList {
                    version: version.clone(),
                    sources,
                })
                .into_response(),
                version.as_deref(),
            )
        }
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/sources/{name}",
    tag = "sources",
    params(("name" = String, Path, description = "The source's name (case-insensitive)")),
    responses(
        (status = 200, description = "The source's settings and state; `ETag` is the configuration's version", body = SourceView),
        (status = 404, description = "No such source", body = ApiError)
    )
)]
async fn get_source(
    State(admin): State<Arc<Admin>>,
    _who: Principal,
    Path(name): Path<String>,
) -> Response {
    let loaded = admin.blocking(configured).await;
    let (sources, version) = match loaded {
        Ok(loaded) => loaded,
        Err(e) => return e.into_response(),
    };
    let Some(ext) = sources.iter().find(|e| e.name.eq_ignore_ascii_case(&name)) else {
        return no_source(&name).into_response();
    };
    let SourceEntry { config, status } = entry(&admin, ext);
    with_version(
        Json(SourceView {
            version: version.clone(),
            config,
            status,
        })
        .into_response(),
        version.as_deref(),
    )
}

#[utoipa::path(
    post,
    path = "/api/v1/sources",
    tag = "sources",
    params(("If-Match" = Option<String>, Header, description = "The version the change was made from")),
    request_body(content = Object, description = "The new source's keys, as in `[[external_audio]]` (docs/SOURCES.md); `name` and `kind` are required"),
    responses(
        (status = 201, description = "Saved and started", body = Saved),
        (status = 400, description = "A value that cannot be used, naming the key (`external_audio[3].frequency_hz`)", body = ApiError),
        (status = 403, description = "Not an admin, or no CSRF token", body = ApiError),
        (status = 409, description = "`exists`: a source of that name exists; `conflict`: changed by someone else since `If-Match`", body = ApiError)
    )
)]
async fn add_source(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = if_match(&headers);
    let saved = admin
        .blocking(move |admin| {
            admin.change(&who, expected.as_deref(), |config| {
                let index = config.external_audio.len();
                let ext = source_from_body(&body, index, None)?;
                if let Some(other) = config
                    .external_audio
                    .iter()
                    .find(|e| e.name.eq_ignore_ascii_case(&ext.name))
                {
                    let mut e = ApiError::new(
                        StatusCode::CONFLICT,
                        "exists",
                        format!("a source called {:?} exists", other.name),
                    );
                    e.field = Some("name".into());
                    return Err(e);
                }
                config.external_audio.push(ext);
                Ok(())
            })
        })
        .await;
    match saved {
        Ok(saved) => {
            let mut response = saved.into_response_with_etag();
            *response.status_mut() = StatusCode::CREATED;
            response
        }
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    put,
    path = "/api/v1/sources/{name}",
    tag = "sources",
    params(
        ("name" = String, Path, description = "The source's name (case-insensitive)"),
        ("If-Match" = Option<String>, Header, description = "The version the change was made from")
    ),
    request_body(content = Object, description = "The source's new keys, replacing all of its settings; `kind` is required, `name` may be left out and must otherwise be the path's"),
    responses(
        (status = 200, description = "Saved and applied: listeners stay and hear the new settings", body = Saved),
        (status = 400, description = "A value that cannot be used, naming the key", body = ApiError),
        (status = 403, description = "Not an admin, or no CSRF token", body = ApiError),
        (status = 404, description = "No such source", body = ApiError),
        (status = 409, description = "Changed by someone else since `If-Match`", body = ApiError)
    )
)]
async fn replace_source(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = if_match(&headers);
    let saved = admin
        .blocking(move |admin| {
            admin.change(&who, expected.as_deref(), |config| {
                let index = config
                    .external_audio
                    .iter()
                    .position(|e| e.name.eq_ignore_ascii_case(&name))
                    .ok_or_else(|| no_source(&name))?;
                let ext = source_from_body(&body, index, Some(&config.external_audio[index].name))?;
                config.external_audio[index] = ext;
                Ok(())
            })
        })
        .await;
    match saved {
        Ok(saved) => saved.into_response_with_etag(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    delete,
    path = "/api/v1/sources/{name}",
    tag = "sources",
    params(
        ("name" = String, Path, description = "The source's name (case-insensitive)"),
        ("If-Match" = Option<String>, Header, description = "The version the change was made from")
    ),
    responses(
        (status = 200, description = "Saved and stopped: callers still on it hear its fallback until they leave", body = Saved),
        (status = 400, description = "Another source falls back to it (the key naming that is given)", body = ApiError),
        (status = 403, description = "Not an admin, or no CSRF token", body = ApiError),
        (status = 404, description = "No such source", body = ApiError),
        (status = 409, description = "Changed by someone else since `If-Match`", body = ApiError)
    )
)]
async fn delete_source(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let expected = if_match(&headers);
    let saved = admin
        .blocking(move |admin| {
            admin.change(&who, expected.as_deref(), |config| {
                let before = config.external_audio.len();
                config
                    .external_audio
                    .retain(|e| !e.name.eq_ignore_ascii_case(&name));
                if config.external_audio.len() == before {
                    return Err(no_source(&name));
                }
                Ok(())
            })
        })
        .await;
    match saved {
        Ok(saved) => saved.into_response_with_etag(),
        Err(e) => e.into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/sources/{name}/listen",
    tag = "sources",
    params(
        ("name" = String, Path, description = "The source's name (case-insensitive)"),
        ("seconds" = Option<u64>, Query, description = "How long to listen, 1…3600 seconds; default 300")
    ),
    responses(
        (status = 200, description = "The source as callers hear it now, streamed in real time: a WAV header with the largest sizes, then 16-bit little-endian PCM, 8 kHz, mono, until `seconds` have passed", content_type = "audio/wav"),
        (status = 400, description = "`seconds` out of range", body = ApiError),
        (status = 403, description = "Not an admin", body = ApiError),
        (status = 404, description = "No such source", body = ApiError)
    )
)]
async fn listen(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let seconds = match listen_seconds(query.as_deref()) {
        Ok(seconds) => seconds,
        Err(e) => return e.into_response(),
    };
    let Some(ring) = admin.shared.sources.ring(&name) else {
        return no_source(&name).into_response();
    };
    tracing::info!(source = ring.name(), who = %who.name, seconds, "listening to a live source");
    let listener = ring.listen();
    let first = listener.position_at(Instant::now());
    let stream = ListenStream {
        listener,
        first,
        sent: 0,
        total: seconds * 1000 / 20,
        header: Some(Bytes::from(wav_header())),
        stopping: admin.stopping.clone(),
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, ListenStream::next));
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("audio/wav"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[utoipa::path(
    post,
    path = "/api/v1/sources/{name}/test",
    tag = "sources",
    params(("name" = String, Path, description = "The source's name (case-insensitive)")),
    responses(
        (status = 200, description = "What the test found (`ok` false names the step that failed); a test takes 10 s at most", body = TestReport),
        (status = 403, description = "Not an admin, or no CSRF token", body = ApiError),
        (status = 404, description = "No such source", body = ApiError)
    )
)]
async fn test_source(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    Path(name): Path<String>,
) -> Response {
    let applied = admin.shared.applied();
    let Some(ext) = applied
        .external_audio
        .iter()
        .find(|e| e.name.eq_ignore_ascii_case(&name))
        .cloned()
    else {
        return no_source(&name).into_response();
    };
    let root = admin.shared.config.audio_root();
    let started = Instant::now();
    let deadline = started + TEST_TIME;
    let probe = admin
        .blocking(move |_| Ok(probe::test(&ext, &root, deadline)))
        .await;
    let probe = match probe {
        Ok(probe) => probe,
        Err(e) => return e.into_response(),
    };
    let elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    tracing::info!(source = %name, who = %who.name, ok = probe.ok, step = ?probe.step, elapsed_ms, message = %probe.message, "live source tested");
    Json(TestReport {
        ok: probe.ok,
        step: probe.step,
        message: probe.message,
        elapsed_ms,
        format: probe.format,
    })
    .into_response()
}

/// The sources of the configuration file and its version; without a file, the applied
/// configuration's sources and no version.
fn configured(admin: &Admin) -> Result<(Vec<ExternalAudio>, Option<String>), ApiError> {
    match admin.file {
        Some(_) => {
            let (config, version) = admin.current()?;
            Ok((config.external_audio, Some(version)))
        }
        None => Ok((admin.shared.applied().external_audio.clone(), None)),
    }
}

/// A source's settings as JSON and its state now.
fn entry(admin: &Admin, ext: &ExternalAudio) -> SourceEntry {
    SourceEntry {
        config: config_json(ext),
        status: status_of(admin, ext),
    }
}

/// The entry's keys as JSON: what the file leaves out (`None`) is left out.
fn config_json(ext: &ExternalAudio) -> Value {
    match serde_json::to_value(ext) {
        Ok(Value::Object(mut map)) => {
            map.retain(|_, v| !v.is_null());
            Value::Object(map)
        }
        Ok(other) => other,
        Err(_) => Value::Object(Map::new()),
    }
}

/// The state of `ext` as `GET /api/v1/status` shows it; idle when it does not run (it
/// could not start, or the file was changed without a reload).
fn status_of(admin: &Admin, ext: &ExternalAudio) -> SourceInfo {
    let sources = &admin.shared.sources;
    match sources.status(&ext.name) {
        Some(s) => {
            let u = s.upstream.unwrap_or_default();
            SourceInfo {
                level_dbfs: sources.level_dbfs(&s.name),
                name: s.name,
                kind: s.kind,
                state: s.state.as_str(),
                listeners: s.listeners,
                now_playing: u.now_playing,
                codec: u.codec,
                bitrate_kbps: u.bitrate_kbps,
                last_error: u.last_error,
                reconnects: u.reconnects,
            }
        }
        None => SourceInfo {
            name: ext.name.clone(),
            kind: ext.kind,
            state: imss_media::SourceState::Idle.as_str(),
            listeners: 0,
            now_playing: None,
            codec: None,
            bitrate_kbps: None,
            last_error: None,
            reconnects: 0,
            level_dbfs: None,
        },
    }
}

/// `response` with the configuration's version as `ETag`, and not to be cached.
fn with_version(mut response: Response, version: Option<&str>) -> Response {
    let headers = response.headers_mut();
    if let Some(v) = version {
        headers.insert(header::ETAG, etag(v));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn no_source(name: &str) -> ApiError {
    ApiError::not_found(format!("there is no source called {name:?}"))
}

/// The source a request's body describes, to be entry `index` of the list: keys that cannot
/// be read are named as the configuration names them (`external_audio[3].gain_db`).
/// `path_name` is the name in a `PUT`'s path, which the body may leave out.
fn source_from_body(
    body: &[u8],
    index: usize,
    path_name: Option<&str>,
) -> Result<ExternalAudio, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid("body", format!("the body is not JSON: {e}")))?;
    let Value::Object(mut map) = value else {
        return Err(ApiError::invalid(
            "body",
            "the body must be a JSON object of the source's keys",
        ));
    };
    // A key set to null is a key left out: TOML has no null.
    map.retain(|_, v| !v.is_null());
    match (path_name, map.get("name")) {
        (Some(path), Some(Value::String(given))) if !given.eq_ignore_ascii_case(path) => {
            return Err(ApiError::invalid(
                "name",
                format!(
                    "the body names {given:?} but the path {path:?}: a source keeps its name \
                     (add it under the new name, then delete the old one)"
                ),
            ));
        }
        (Some(path), None) => {
            map.insert("name".into(), Value::String(path.to_string()));
        }
        (None, None) => return Err(ApiError::invalid("name", "a source needs a name")),
        _ => {}
    }
    if !map.contains_key("kind") {
        return Err(ApiError::invalid(
            "kind",
            "a source needs a kind: http, playlist, command, tone or silence",
        ));
    }
    let prefix = format!("external_audio[{index}]");
    serde_path_to_error::deserialize::<_, ExternalAudio>(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        let key = if path == "." {
            // An unknown key is reported at the entry; name it.
            message
                .strip_prefix("unknown field `")
                .and_then(|rest| rest.split_once('`'))
                .map(|(key, _)| key.to_string())
        } else {
            Some(path)
        };
        match key {
            Some(key) => ApiError::invalid(format!("{prefix}.{key}"), message),
            None => ApiError::invalid(prefix, message),
        }
    })
}

/// The `seconds` of a listen request: 1…[`MAX_LISTEN_S`], default [`DEFAULT_LISTEN_S`].
fn listen_seconds(query: Option<&str>) -> Result<u64, ApiError> {
    let Some(value) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("seconds="))
    else {
        return Ok(DEFAULT_LISTEN_S);
    };
    match value.parse::<u64>() {
        Ok(s) if (1..=MAX_LISTEN_S).contains(&s) => Ok(s),
        _ => Err(ApiError::invalid(
            "seconds",
            format!("{value:?} is not a number of seconds from 1 to {MAX_LISTEN_S}"),
        )),
    }
}

/// The header of a listen stream: RIFF WAVE, PCM, 1 channel, 8,000 Hz, 16 bits, with the
/// largest sizes a stream of unknown length can announce (the data size even, RIFF's
/// consistent with it).
fn wav_header() -> Vec<u8> {
    const DATA: u32 = 0xFFFF_FFDA;
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(DATA + 36).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // PCM
    h.extend_from_slice(&1u16.to_le_bytes()); // mono
    h.extend_from_slice(&8000u32.to_le_bytes());
    h.extend_from_slice(&16_000u32.to_le_bytes()); // bytes per second
    h.extend_from_slice(&2u16.to_le_bytes()); // bytes per frame
    h.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    h.extend_from_slice(b"data");
    h.extend_from_slice(&DATA.to_le_bytes());
    h
}

/// A listen stream's state: the listener token it holds (dropped with the stream, whether
/// it ran out or the browser went away), and how far it is.
struct ListenStream {
    listener: LiveListener,
    /// The ring position of the stream's first sample.
    first: u64,
    /// Frames sent.
    sent: u64,
    /// Frames to send.
    total: u64,
    /// The WAV header, until sent.
    header: Option<Bytes>,
    /// Turns true when the server stops.
    stopping: tokio::sync::watch::Receiver<bool>,
}

impl ListenStream {
    /// The next piece of the body: the header at once, then every frame once callers have
    /// heard it (sleeping until the next is due).
    async fn next(mut self) -> Option<(Result<Bytes, Infallible>, ListenStream)> {
        if let Some(header) = self.header.take() {
            return Some((Ok(header), self));
        }
        if self.sent >= self.total {
            return None;
        }
        let ring = self.listener.ring();
        let due_at = |frames: u64| {
            ring.epoch() + imss_media::duration_of(self.first + frames * FRAME_SAMPLES)
        };
        // Frame `sent` is complete once the present has passed its end; the stream ends
        // early when the server stops.
        let due = tokio::time::Instant::from_std(due_at(self.sent + 1));
        tokio::select! {
            _ = tokio::time::sleep_until(due) => {}
            _ = self.stopping.wait_for(|stopping| *stopping) => return None,
        }
        let now = ring.position_at(Instant::now());
        let due = (now.saturating_sub(self.first) / FRAME_SAMPLES)
            .min(self.total)
            .min(self.sent + MAX_BURST_FRAMES)
            .max(self.sent + 1);
        let frames = due - self.sent;
        let mut pcm = Vec::with_capacity((frames * FRAME_SAMPLES * 2) as usize);
        let mut codes = [0u8; FRAME_SAMPLES as usize];
        for frame in self.sent..due {
            // A frame the ring no longer (or not yet) holds is silence, as for a call.
            let _ = ring.read(Law::Pcmu, self.first + frame * FRAME_SAMPLES, &mut codes);
            for &code in &codes {
                pcm.extend_from_slice(&Law::Pcmu.decode(code).to_le_bytes());
            }
        }
        self.sent = due;
        Some((Ok(Bytes::from(pcm)), self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wav_header_announces_8_khz_16_bit_mono_of_unknown_length() {
        let h = wav_header();
        assert_eq!(h.len(), 44);
        assert_eq!(&h[0..4], b"RIFF");
        assert_eq!(&h[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes([h[24], h[25], h[26], h[27]]), 8000);
        assert_eq!(u16::from_le_bytes([h[34], h[35]]), 16);
        let riff = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let data = u32::from_le_bytes([h[40], h[41], h[42], h[43]]);
        assert_eq!(riff, data + 36);
        assert_eq!(data % 2, 0);
        assert!(riff >= 0xFFFF_FF00);
    }

    #[test]
    fn listen_seconds_default_and_bounds() {
        assert_eq!(listen_seconds(None).unwrap(), DEFAULT_LISTEN_S);
        assert_eq!(listen_seconds(Some("x=1&seconds=7")).unwrap(), 7);
        for bad in ["seconds=0", "seconds=3601", "seconds=-1", "seconds=ten"] {
            let e = listen_seconds(Some(bad)).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("seconds"), "{bad}");
        }
    }

    #[test]
    fn a_body_names_the_key_it_cannot_use() {
        let e = source_from_body(br#"{"name":"a","kind":"tone","gain_db":"loud"}"#, 3, None)
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("external_audio[3].gain_db"));
        let e = source_from_body(br#"{"name":"a","kind":"radio"}"#, 0, None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("external_audio[0].kind"));
        let e = source_from_body(br#"{"name":"a","kind":"tone","volume":3}"#, 1, None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("external_audio[1].volume"));
        let e = source_from_body(br#"{"kind":"tone"}"#, 0, None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = source_from_body(br#"{"name":"b","kind":"tone"}"#, 0, Some("a")).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("name"));
        let e = source_from_body(b"[1]", 0, None).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("body"));
        let ok = source_from_body(
            br#"{"kind":"tone","frequency_hz":500,"url":null}"#,
            0,
            Some("a"),
        )
        .unwrap();
        assert_eq!(ok.name, "a");
        assert_eq!(ok.frequency_hz, Some(500.0));
    }
}
