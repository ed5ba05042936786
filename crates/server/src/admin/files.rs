//! The audio files under the audio root, as `play=` URIs, SPEAK URIs and playlists name
//! them: `GET /api/v1/files` (size, format, length), `GET /api/v1/files/{path}` (the bytes,
//! or `?as=wav` decoded for any browser), `PUT` (upload) and `DELETE`.
//!
//! The listing reads each file's header with symphonia's probe (container, codec, rate,
//! channels and frame count) instead of decoding it, so it stays fast over thousands of
//! files. An upload is decoded whole — and resampled to 8 kHz, as a call would play it —
//! before anything is written: a file that would fail in a call is refused with the
//! decoder's reason. It is written to a hidden temporary file next to its target, synced
//! and then moved into place, so that a call never plays half a file.

use super::{Admin, ApiError};
use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt as _;
use imss_web::auth::{Principal, RequireAdmin};
use serde::{Deserialize, Serialize};
use std::io::{ErrorKind, Read as _, Write as _};
use std::path::{Component, PathBuf};
use std::sync::Arc;
use symphonia::core::codecs::{self, CODEC_TYPE_NULL, CodecParameters, DecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Most files a listing shows; beyond it the listing says `truncated`.
const MAX_LISTED: usize = 10_000;
/// Most folders a listing walks.
const MAX_FOLDERS: usize = 10_000;
/// Largest upload, bytes.
const MAX_UPLOAD: usize = 64 * 1024 * 1024;
/// Longest path, bytes.
const MAX_PATH: usize = 512;
/// Longest file or folder name, bytes.
const MAX_NAME: usize = 255;
/// Most folders a path may go down.
const MAX_DEPTH: usize = 16;
/// Most mono samples `?as=wav` decodes at the file's own rate (about 7.5 minutes at
/// 44.1 kHz); a longer file is previewed at 8 kHz, as calls hear it.
const MAX_PREVIEW_NATIVE: u64 = 20_000_000;
/// Most 8 kHz samples `?as=wav` sends (about 41 minutes).
const MAX_PREVIEW_8K: u64 = 20_000_000;
/// Largest file `?as=wav` reads whole when symphonia cannot decode it (μ-law, GSM, Sun
/// audio: the voicemail formats).
const MAX_FALLBACK_READ: u64 = 64 * 1024 * 1024;

/// Extensions of the files an upload may create: those calls play (symphonia's WAV, MP3,
/// FLAC, Ogg Vorbis and ADTS AAC readers).
const UPLOAD_EXTENSIONS: [&str; 6] = ["wav", "mp3", "flac", "ogg", "oga", "aac"];

/// This module's part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(list_files, get_file, put_file, delete_file),
    components(schemas(FileList, FileInfo, Uploaded))
)]
pub(crate) struct Doc;

/// This module's routes.
pub(crate) fn routes(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/api/v1/files", get(list_files))
        .route(
            "/api/v1/files/{*path}",
            get(get_file).put(put_file).delete(delete_file),
        )
        .with_state(admin)
}

/// The audio files under the audio root.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FileList {
    /// The audio root, an absolute path on the server.
    pub root: String,
    /// Every file below it (hidden names left out), sorted by path.
    pub files: Vec<FileInfo>,
    /// Whether there were more files than a listing shows (10,000).
    pub truncated: bool,
}

/// One audio file.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FileInfo {
    /// Path relative to the audio root, `/`-separated: what `play=` names.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Last modification (RFC 3339, UTC).
    pub modified: Option<String>,
    /// Container, codec, rate and channels, e.g. `WAV, PCM 16-bit, 8000 Hz, mono`.
    pub format: Option<String>,
    /// Playing time in seconds.
    pub seconds: Option<f64>,
    /// Why calls cannot play the file; `null` when they can.
    pub error: Option<String>,
}

/// A file accepted by an upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// Path relative to the audio root.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Container, codec, rate and channels.
    pub format: String,
    /// Playing time in seconds.
    pub seconds: f64,
}

/// `?as=wav` of `GET /api/v1/files/{path}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct GetQuery {
    /// `wav`: the audio decoded to 16-bit PCM WAV (mono), playable by any browser.
    #[serde(rename = "as")]
    #[param(rename = "as")]
    as_format: Option<String>,
}

/// `?overwrite=true` of `PUT /api/v1/files/{path}`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PutQuery {
    /// Replace a file of that name (default false: 409 `exists`).
    overwrite: Option<bool>,
}

// ---------------------------------------------------------------------------------------
// Paths

/// The audio root as configured at start (folders change with a restart only).
fn audio_root(admin: &Admin) -> PathBuf {
    admin.shared.config.audio_root()
}

/// A request path checked to stay inside the audio root: relative, no `.`/`..`, no hidden
/// names, no control characters. `strict` (uploads) also limits names to characters a
/// `play=` URI carries unescaped and the extension to the formats calls play.
fn checked_path(raw: &str, strict: bool) -> Result<PathBuf, ApiError> {
    let bad = |message: String| ApiError::invalid("path", message);
    if raw.is_empty() {
        return Err(bad("the path is empty".into()));
    }
    if raw.len() > MAX_PATH {
        return Err(bad(format!(
            "the path is {} bytes long; at most {MAX_PATH}",
            raw.len()
        )));
    }
    if raw.starts_with('/') {
        return Err(bad(format!(
            "{raw:?} is absolute: give a path relative to the audio root"
        )));
    }
    if let Some(c) = raw.chars().find(|c| c.is_control()) {
        return Err(bad(format!(
            "the path contains the control character {:?}",
            c
        )));
    }
    if raw.contains('\\') {
        return Err(bad(format!(
            "{raw:?} contains a backslash: separate folders with /"
        )));
    }
    let segments: Vec<&str> = raw.split('/').collect();
    if segments.len() > MAX_DEPTH {
        return Err(bad(format!(
            "{raw:?} goes {} folders deep; at most {MAX_DEPTH}",
            segments.len() - 1
        )));
    }
    for segment in &segments {
        match *segment {
            "" => return Err(bad(format!("{raw:?} has an empty folder name (//)"))),
            "." | ".." => {
                return Err(bad(format!(
                    "{raw:?} uses {segment:?}: paths stay inside the audio root"
                )));
            }
            s if s.starts_with('.') => {
                return Err(bad(format!(
                    "{s:?} is a hidden name (starting with a dot): not allowed"
                )));
            }
            s if s.len() > MAX_NAME => {
                return Err(bad(format!(
                    "a name is {} bytes long; at most {MAX_NAME}",
                    s.len()
                )));
            }
            s if strict => {
                if let Some(c) = s
                    .chars()
                    .find(|c| !(c.is_alphanumeric() || "-_.+~@,()".contains(*c)))
                {
                    return Err(bad(format!(
                        "{c:?} cannot be used in a file name: use letters, digits and - _ . + ~ @ , ( )"
                    )));
                }
            }
            _ => {}
        }
    }
    let path = PathBuf::from(raw);
    // What the checks above leave can only be plain names; this holds on every platform.
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(bad(format!("{raw:?} is not a plain relative path")));
    }
    if strict {
        let ext = extension(&path);
        if !UPLOAD_EXTENSIONS.contains(&ext.as_str()) {
            return Err(bad(format!(
                "{:?}: the file name must end in one of .{} (the formats calls play)",
                raw,
                UPLOAD_EXTENSIONS.join(", .")
            )));
        }
    }
    Ok(path)
}

/// The extension, lower case ("" without one).
fn extension(path: &std::path::Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// The path of a wildcard route, or 400 naming `path`.
fn path_param(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(p)| p)
        .map_err(|e| ApiError::invalid("path", e.body_text()))
}

/// The canonical audio root; `create` makes it when missing.
fn canonical_root(root: &std::path::Path, create: bool) -> Result<PathBuf, ApiError> {
    if create {
        std::fs::create_dir_all(root).map_err(|e| {
            ApiError::failed(format!(
                "cannot create the audio root {}: {e}",
                root.display()
            ))
        })?;
    }
    root.canonicalize().map_err(|e| {
        if e.kind() == ErrorKind::NotFound {
            ApiError::not_found(format!("the audio root {} does not exist", root.display()))
        } else {
            ApiError::failed(format!("audio root {}: {e}", root.display()))
        }
    })
}

/// Checks that `folder` (which exists) is a folder under `root` once links are followed.
fn inside(root: &std::path::Path, folder: &std::path::Path, raw: &str) -> Result<(), ApiError> {
    let real = folder
        .canonicalize()
        .map_err(|e| ApiError::failed(format!("{}: {e}", folder.display())))?;
    if !real.starts_with(root) {
        Err(ApiError::invalid(
            "path",
            format!("{raw:?} leads outside the audio root (through a link)"),
        ))
    } else if !real.is_dir() {
        Err(ApiError::invalid(
            "path",
            format!("{raw:?} goes through a file as if it were a folder"),
        ))
    } else {
        Ok(())
    }
}

/// Syncs a folder, so that a rename or removal in it survives a crash.
fn sync_folder(folder: &std::path::Path) {
    if let Err(e) = std::fs::File::open(folder).and_then(|f| f.sync_all()) {
        tracing::warn!(folder = %folder.display(), error = %e, "cannot sync the folder");
    }
}

// ---------------------------------------------------------------------------------------
// Probing

/// What a file's header says.
#[derive(Debug, Clone, PartialEq)]
struct Probe {
    /// Container, codec, rate and channels.
    format: String,
    /// Playing time, seconds (rounded to milliseconds).
    seconds: Option<f64>,
    /// Sample rate, Hz.
    rate: Option<u32>,
    /// Why no decoder can play it, if none can.
    error: Option<String>,
}

/// The container by its first bytes.
fn container(head: &[u8]) -> Option<&'static str> {
    if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        Some("WAV")
    } else if head.starts_with(b"fLaC") {
        Some("FLAC")
    } else if head.starts_with(b"OggS") {
        Some("Ogg")
    } else if head.starts_with(b"ID3") {
        Some("MP3")
    } else if head.len() >= 2 && head[0] == 0xFF && head[1] & 0xF6 == 0xF0 {
        Some("AAC (ADTS)")
    } else if head.len() >= 2 && head[0] == 0xFF && head[1] & 0xE0 == 0xE0 {
        Some("MP3")
    } else {
        None
    }
}

/// The container an extension promises.
fn container_of_extension(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "wav" => "WAV",
        "flac" => "FLAC",
        "ogg" | "oga" => "Ogg",
        "mp3" => "MP3",
        "aac" => "AAC (ADTS)",
        _ => return None,
    })
}

/// The codec for people: "PCM 16-bit", "G.711 μ-law", "Vorbis".
fn codec_name(params: &CodecParameters) -> String {
    use codecs::*;
    let c = params.codec;
    let bits = params
        .bits_per_sample
        .map(|b| format!(" {b}-bit"))
        .unwrap_or_default();
    let float = [
        CODEC_TYPE_PCM_F32LE,
        CODEC_TYPE_PCM_F32LE_PLANAR,
        CODEC_TYPE_PCM_F32BE,
        CODEC_TYPE_PCM_F32BE_PLANAR,
        CODEC_TYPE_PCM_F64LE,
        CODEC_TYPE_PCM_F64LE_PLANAR,
        CODEC_TYPE_PCM_F64BE,
        CODEC_TYPE_PCM_F64BE_PLANAR,
    ];
    if c == CODEC_TYPE_PCM_MULAW {
        "G.711 μ-law".into()
    } else if c == CODEC_TYPE_PCM_ALAW {
        "G.711 A-law".into()
    } else if float.contains(&c) {
        format!("PCM float{bits}")
    } else if c == CODEC_TYPE_MP3 {
        "MPEG Layer III".into()
    } else if c == CODEC_TYPE_MP2 {
        "MPEG Layer II".into()
    } else if c == CODEC_TYPE_MP1 {
        "MPEG Layer I".into()
    } else if c == CODEC_TYPE_FLAC {
        format!("FLAC{bits}")
    } else if c == CODEC_TYPE_VORBIS {
        "Vorbis".into()
    } else if c == CODEC_TYPE_OPUS {
        "Opus".into()
    } else if c == CODEC_TYPE_AAC {
        "AAC".into()
    } else if c == CODEC_TYPE_ADPCM_IMA_WAV {
        "IMA ADPCM".into()
    } else if c == CODEC_TYPE_ADPCM_MS {
        "Microsoft ADPCM".into()
    } else {
        match symphonia::default::get_codecs().get_codec(c) {
            Some(d) if d.long_name.starts_with("PCM") => format!("PCM{bits}"),
            Some(d) => d.long_name.to_string(),
            None => format!("codec {c}"),
        }
    }
}

/// "WAV, PCM 16-bit, 8000 Hz, mono" (the codec left out where the container says it).
fn describe(container: Option<&str>, params: &CodecParameters) -> String {
    let codec = codec_name(params);
    let mut parts: Vec<String> = Vec::new();
    match container {
        Some(c) => {
            parts.push(c.to_string());
            let same =
                (c == "MP3" && codec == "MPEG Layer III") || (c == "AAC (ADTS)" && codec == "AAC");
            if !same {
                parts.push(codec);
            }
        }
        None => parts.push(codec),
    }
    if let Some(rate) = params.sample_rate {
        parts.push(format!("{rate} Hz"));
    }
    if let Some(channels) = params.channels {
        parts.push(match channels.count() {
            1 => "mono".to_string(),
            2 => "stereo".to_string(),
            n => format!("{n} channels"),
        });
    }
    parts.join(", ")
}

/// Reads `source`'s header (not its audio): the format, the length from the frame count
/// (or, when the container does not give it, from the packets' durations, still without
/// decoding) and whether a decoder exists for the codec. `Err` says why it is not audio
/// this server reads.
fn probe(source: Box<dyn MediaSource>, head: &[u8], ext: &str) -> Result<Probe, String> {
    let mut hint = Hint::new();
    if !ext.is_empty() {
        hint.with_extension(ext);
    }
    let stream = MediaSourceStream::new(source, Default::default());
    let options = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, stream, &options, &MetadataOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(what) if !what.contains("no suitable format reader") => {
                format!("unsupported codec or format variant ({what})")
            }
            SymphoniaError::IoError(e) if e.kind() != ErrorKind::UnexpectedEof => {
                format!("cannot read: {e}")
            }
            _ => "not a recognised audio format (expected WAV, MP3, FLAC, Ogg Vorbis or AAC)"
                .to_string(),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| "contains no audio track".to_string())?;
    let params = track.codec_params.clone();
    let track_id = track.id;
    let description = describe(container(head), &params);
    let error = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .err()
        .map(|_| format!("no decoder for {}", codec_name(&params)));
    let rate = params.sample_rate.filter(|r| *r > 0);
    let frames = match params.n_frames {
        Some(n) => Some(n),
        None => {
            // Packet durations, up to the longest audio the server plays.
            let limit = rate.map_or(u64::MAX, |r| {
                imss_media::MAX_DURATION.as_secs() * u64::from(r)
            });
            let mut total = 0u64;
            loop {
                match format.next_packet() {
                    Ok(p) if p.track_id() == track_id => {
                        total = total.saturating_add(p.dur);
                        if total > limit {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            (total > 0).then_some(total)
        }
    };
    let seconds = match (frames, rate) {
        (Some(n), Some(r)) => Some((n as f64 / f64::from(r) * 1000.0).round() / 1000.0),
        _ => None,
    };
    Ok(Probe {
        format: description,
        seconds,
        rate,
        error,
    })
}

/// The first bytes of a file, to name its container.
fn head_of(file: &mut std::fs::File) -> Vec<u8> {
    let mut head = vec![0u8; 12];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    head.truncate(filled);
    head
}

/// Probes the file at `path`.
fn probe_file(path: &std::path::Path) -> Result<Probe, String> {
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let head = head_of(&mut file);
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    probe(Box::new(file), &head, &extension(path))
}

// ---------------------------------------------------------------------------------------
// Listing

#[utoipa::path(
    get,
    path = "/api/v1/files",
    tag = "files",
    responses(
        (status = 200, description = "The audio files under the audio root: size, format, length, and why one cannot be played", body = FileList),
        (status = 401, description = "Not logged in", body = ApiError)
    )
)]
async fn list_files(State(admin): State<Arc<Admin>>, _who: Principal) -> Response {
    match admin.blocking(|admin| list(&audio_root(admin))).await {
        Ok(list) => {
            let mut response = Json(list).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => e.into_response(),
    }
}

/// Walks `root` (links to folders not followed, hidden names left out) and probes each
/// file.
fn list(root: &std::path::Path) -> Result<FileList, ApiError> {
    let real_root = match root.canonicalize() {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            return Ok(FileList {
                root: root.display().to_string(),
                files: Vec::new(),
                truncated: false,
            });
        }
        Err(e) => {
            return Err(ApiError::failed(format!(
                "audio root {}: {e}",
                root.display()
            )));
        }
    };
    let mut files = Vec::new();
    let mut truncated = false;
    let mut folders = vec![PathBuf::new()];
    let mut walked = 0usize;
    'walk: while let Some(relative) = folders.pop() {
        walked += 1;
        if walked > MAX_FOLDERS {
            truncated = true;
            break;
        }
        let Ok(entries) = std::fs::read_dir(real_root.join(&relative)) else {
            continue;
        };
        let mut entries: Vec<_> = entries.filter_map(Result::ok).collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.file_name()));
        for entry in entries {
            let name = entry.file_name();
            let Some(name_str) = name.to_str() else {
                continue;
            };
            if name_str.starts_with('.') {
                continue;
            }
            let rel = relative.join(&name);
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                folders.push(rel);
                continue;
            }
            if files.len() >= MAX_LISTED {
                truncated = true;
                break 'walk;
            }
            let full = real_root.join(&rel);
            let meta = match std::fs::metadata(&full) {
                Ok(m) if m.is_file() => m,
                // Links to folders, dangling links, sockets.
                _ => continue,
            };
            let path = rel.to_string_lossy().replace('\\', "/");
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| crate::config_file::rfc3339(d.as_secs()));
            let mut info = FileInfo {
                path,
                bytes: meta.len(),
                modified,
                format: None,
                seconds: None,
                error: None,
            };
            let outside = kind.is_symlink()
                && !full
                    .canonicalize()
                    .is_ok_and(|real| real.starts_with(&real_root));
            let ext = extension(&rel);
            if outside {
                info.error = Some("a link to a file outside the audio root".into());
            } else if !imss_media::PLAYLIST_EXTENSIONS.contains(&ext.as_str())
                && !UPLOAD_EXTENSIONS.contains(&ext.as_str())
            {
                info.error = Some(format!(
                    "not an audio file name (.{}): expected .{}",
                    ext,
                    UPLOAD_EXTENSIONS.join(", .")
                ));
            } else {
                match probe_file(&full) {
                    Ok(p) => {
                        info.format = Some(p.format);
                        info.seconds = p.seconds;
                        info.error = p.error;
                    }
                    Err(why) => info.error = Some(why),
                }
            }
            files.push(info);
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(FileList {
        root: real_root.display().to_string(),
        files,
        truncated,
    })
}

// ---------------------------------------------------------------------------------------
// Reading

/// The Content-Type of an audio file by its extension.
fn content_type(ext: &str) -> &'static str {
    match ext {
        "wav" | "wave" => "audio/wav",
        "mp3" => "audio/mpeg",
        "flac" => "audio/flac",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "aac" => "audio/aac",
        "au" | "snd" | "ul" => "audio/basic",
        "gsm" => "audio/gsm",
        _ => "application/octet-stream",
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/files/{path}",
    tag = "files",
    params(
        ("path" = String, Path, description = "The file, relative to the audio root (`moh/jazz.wav`)"),
        GetQuery
    ),
    responses(
        (status = 200, description = "The file's bytes (Content-Type by extension), or with `?as=wav` its audio as 16-bit PCM WAV", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 400, description = "A path that leaves the audio root, or a file that cannot be decoded (`?as=wav`)", body = ApiError),
        (status = 404, description = "No such file", body = ApiError),
        (status = 413, description = "Too long to decode for `?as=wav`", body = ApiError)
    )
)]
async fn get_file(
    State(admin): State<Arc<Admin>>,
    _who: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<GetQuery>, QueryRejection>,
) -> Response {
    match read_file(admin, path, query).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn read_file(
    admin: Arc<Admin>,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<GetQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let raw = path_param(path)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("as", e.body_text()))?;
    let as_wav = match query.as_format.as_deref() {
        None => false,
        Some("wav") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "as",
                format!("{other:?}: the only conversion is as=wav"),
            ));
        }
    };
    let relative = checked_path(&raw, false)?;
    let root = audio_root(&admin);
    let real = {
        let relative = relative.clone();
        admin
            .blocking(move |_| {
                crate::audio_root::resolve(&root, &relative.to_string_lossy()).map_err(
                    |e| match e {
                        crate::audio_root::AudioPathError::Forbidden(_) => ApiError::invalid(
                            "path",
                            format!("{raw:?} leads outside the audio root (through a link)"),
                        ),
                        _ => ApiError::not_found(format!("no file {raw:?} in the audio root")),
                    },
                )
            })
            .await?
    };
    if as_wav {
        let wav = admin.blocking(move |_| preview_wav(&real)).await?;
        let mut response = (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static("audio/wav")),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            ],
            wav,
        )
            .into_response();
        *response.status_mut() = StatusCode::OK;
        return Ok(response);
    }
    let file = tokio::fs::File::open(&real)
        .await
        .map_err(|e| ApiError::failed(format!("cannot open {}: {e}", real.display())))?;
    let len = file
        .metadata()
        .await
        .map_err(|e| ApiError::failed(format!("{}: {e}", real.display())))?
        .len();
    let body = Body::from_stream(futures_util::stream::unfold(Some(file), |file| async {
        use tokio::io::AsyncReadExt as _;
        let mut file = file?;
        let mut buf = vec![0u8; 64 * 1024];
        match file.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(Bytes::from(buf)), Some(file)))
            }
            Err(e) => Some((Err(e), None)),
        }
    }));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&extension(&relative))),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok((headers, body).into_response())
}

/// Mono 16-bit PCM as a WAV file.
fn wav_bytes(rate: u32, samples: impl Iterator<Item = f32>) -> Result<Vec<u8>, ApiError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let failed = |e: hound::Error| ApiError::failed(format!("cannot write WAV: {e}"));
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).map_err(failed)?;
    for s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        writer.write_sample(v).map_err(failed)?;
    }
    writer.finalize().map_err(failed)?;
    Ok(out.into_inner())
}

/// The decoder's reason, without the in-memory label every message starts with.
fn reason(e: &imss_media::MediaError) -> String {
    match e {
        imss_media::MediaError::Unsupported { detail, .. } => detail.clone(),
        imss_media::MediaError::Decode { detail, .. } => format!("cannot decode audio: {detail}"),
        other => other.to_string(),
    }
}

/// The file's audio as a mono 16-bit WAV: at its own rate when short enough, else at
/// 8 kHz; formats symphonia does not read (μ-law and GSM WAV, Sun audio, raw G.711) are
/// decoded as voicemail attachments are.
fn preview_wav(path: &std::path::Path) -> Result<Vec<u8>, ApiError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let undecodable =
        |why: String| ApiError::invalid("path", format!("{name} cannot be decoded: {why}"));
    let probed = probe_file(path);
    if let Ok(Probe {
        seconds: Some(seconds),
        rate: Some(rate),
        error: None,
        ..
    }) = &probed
    {
        let (seconds, rate) = (*seconds, f64::from(*rate));
        if seconds * rate <= MAX_PREVIEW_NATIVE as f64 {
            let pcm = imss_media::decode_file(path).map_err(|e| undecodable(reason(&e)))?;
            return wav_bytes(pcm.rate, pcm.samples.into_iter());
        }
        if seconds * 8000.0 > MAX_PREVIEW_8K as f64 {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "{name} plays {seconds:.0} s: longer than the {} s a preview decodes",
                    MAX_PREVIEW_8K / 8000
                ),
            ));
        }
        let clip = imss_media::Clip::from_file(path).map_err(|e| undecodable(reason(&e)))?;
        return wav_bytes(8000, clip.to_pcm().into_iter());
    }
    // Not for symphonia: try the voicemail decoders, which read what mail systems send.
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let first_reason = match probed {
        Ok(p) => p.error.unwrap_or_else(|| "unknown length".into()),
        Err(why) => why,
    };
    if len > MAX_FALLBACK_READ {
        return Err(undecodable(first_reason));
    }
    let bytes = std::fs::read(path)
        .map_err(|e| ApiError::failed(format!("cannot read {}: {e}", path.display())))?;
    match imss_media::decode_attachment(&bytes, None, Some(&name)) {
        Ok(clip) => wav_bytes(8000, clip.to_pcm().into_iter()),
        Err(_) => Err(undecodable(first_reason)),
    }
}

// ---------------------------------------------------------------------------------------
// Uploading and deleting

#[utoipa::path(
    put,
    path = "/api/v1/files/{path}",
    tag = "files",
    params(
        ("path" = String, Path, description = "Where to store the file, relative to the audio root (`moh/jazz.wav`); folders are made as needed. Names: letters, digits and `-_.+~@,()`; extensions .wav, .mp3, .flac, .ogg, .oga, .aac"),
        PutQuery
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The file's bytes (at most 64 MiB); decoded whole before it is accepted"),
    responses(
        (status = 201, description = "Stored", body = Uploaded),
        (status = 400, description = "An unusable path (`field: path`) or content that does not decode (`field: body`, with the decoder's reason); nothing is written", body = ApiError),
        (status = 403, description = "Not an admin, or no CSRF token", body = ApiError),
        (status = 409, description = "`exists`: a file of that name exists and `overwrite` is not true", body = ApiError),
        (status = 413, description = "`too_large`: the body is over 64 MiB", body = ApiError)
    )
)]
async fn put_file(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PutQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match upload(admin, who, path, query, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the file is larger than {} MiB", MAX_UPLOAD >> 20),
    )
}

async fn upload(
    admin: Arc<Admin>,
    who: Principal,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<PutQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let raw = path_param(path)?;
    let Query(query) = query.map_err(|e| ApiError::invalid("overwrite", e.body_text()))?;
    let overwrite = query.overwrite.unwrap_or(false);
    let relative = checked_path(&raw, true)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_UPLOAD as u64) {
        return Err(too_large());
    }
    let mut received = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::invalid("body", format!("the upload broke off: {e}")))?;
        if received.len() + chunk.len() > MAX_UPLOAD {
            return Err(too_large());
        }
        received.extend_from_slice(&chunk);
    }
    if received.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "the body is empty: send the file's bytes",
        ));
    }
    let bytes = Bytes::from(received);
    let stored = admin
        .blocking(move |admin| store(&audio_root(admin), &relative, &raw, bytes, overwrite))
        .await?;
    tracing::info!(
        who = %who.name,
        path = %stored.path,
        bytes = stored.bytes,
        "audio file uploaded"
    );
    let location = format!("/api/v1/files/{}", stored.path);
    let mut response = (StatusCode::CREATED, Json(stored)).into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// Decodes `bytes` (as a call would play them) and writes them to `relative` under `root`.
fn store(
    root: &std::path::Path,
    relative: &std::path::Path,
    raw: &str,
    bytes: Bytes,
    overwrite: bool,
) -> Result<Uploaded, ApiError> {
    let ext = extension(relative);
    // Cheap refusals first: nothing to decode when the name is taken.
    let real_root = canonical_root(root, true)?;
    let target = real_root.join(relative);
    let exists = |target: &std::path::Path| -> Result<bool, ApiError> {
        match std::fs::symlink_metadata(target) {
            Ok(m) if m.is_dir() => Err(ApiError::invalid("path", format!("{raw:?} is a folder"))),
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ApiError::failed(format!("{}: {e}", target.display()))),
        }
    };
    let conflict = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("{raw:?} exists: send ?overwrite=true to replace it"),
        )
    };
    if exists(&target)? && !overwrite {
        return Err(conflict());
    }

    // The content: its container must be the one the name promises, and it must decode
    // and resample to 8 kHz as it will in a call.
    let detected = container(&bytes[..bytes.len().min(12)]);
    let promised = container_of_extension(&ext);
    if let (Some(d), Some(p)) = (detected, promised)
        && d != p
    {
        return Err(ApiError::invalid(
            "body",
            format!("the content is {d} audio, not {p}: name the file accordingly"),
        ));
    }
    let pcm = imss_media::decode_bytes(bytes.to_vec(), Some(&ext))
        .map_err(|e| ApiError::invalid("body", reason(&e)))?;
    imss_media::resample_to_8k(&pcm).map_err(|e| ApiError::invalid("body", reason(&e)))?;
    let probed = probe(Box::new(std::io::Cursor::new(bytes.clone())), &bytes, &ext)
        .map_err(|why| ApiError::invalid("body", why))?;
    let seconds = if pcm.rate > 0 {
        (pcm.samples.len() as f64 / f64::from(pcm.rate) * 1000.0).round() / 1000.0
    } else {
        0.0
    };
    drop(pcm);

    // The folders, made one at a time, each checked not to lead out of the root through a
    // link before anything is made inside it.
    let folder = target
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| real_root.clone());
    let mut at = real_root.clone();
    for part in relative.parent().into_iter().flat_map(|p| p.components()) {
        at.push(part);
        match std::fs::symlink_metadata(&at) {
            Ok(m) if m.is_dir() || m.file_type().is_symlink() => inside(&real_root, &at, raw)?,
            Ok(_) => {
                return Err(ApiError::invalid(
                    "path",
                    format!(
                        "{raw:?}: {} is a file, not a folder",
                        part.as_os_str().display()
                    ),
                ));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => match std::fs::create_dir(&at) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::AlreadyExists => inside(&real_root, &at, raw)?,
                Err(e) => {
                    return Err(ApiError::failed(format!(
                        "cannot create {}: {e}",
                        at.display()
                    )));
                }
            },
            Err(e) => return Err(ApiError::failed(format!("{}: {e}", at.display()))),
        }
    }
    inside(&real_root, &folder, raw)?;

    // A hidden temporary file next to the target, synced, then moved into place.
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = folder.join(format!(
        ".{file_name}.{:016x}.upload",
        rand::random::<u64>()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(ApiError::failed(format!(
            "cannot write {}: {e}",
            temp.display()
        )));
    }
    let placed = if overwrite {
        std::fs::rename(&temp, &target).map_err(|e| {
            ApiError::failed(format!(
                "cannot move the upload to {}: {e}",
                target.display()
            ))
        })
    } else {
        // A link fails if the name was taken meanwhile, where a rename would replace it.
        match std::fs::hard_link(&temp, &target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(conflict()),
            Err(_) if !exists(&target)? => std::fs::rename(&temp, &target).map_err(|e| {
                ApiError::failed(format!(
                    "cannot move the upload to {}: {e}",
                    target.display()
                ))
            }),
            Err(_) => Err(conflict()),
        }
    };
    let _ = std::fs::remove_file(&temp);
    placed?;
    sync_folder(&folder);
    Ok(Uploaded {
        path: relative.to_string_lossy().replace('\\', "/"),
        bytes: bytes.len() as u64,
        format: probed.format,
        seconds,
    })
}

#[utoipa::path(
    delete,
    path = "/api/v1/files/{path}",
    tag = "files",
    params(("path" = String, Path, description = "The file, relative to the audio root")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "A path that leaves the audio root, or a folder", body = ApiError),
        (status = 403, description = "Not an admin, or no CSRF token", body = ApiError),
        (status = 404, description = "No such file", body = ApiError)
    )
)]
async fn delete_file(
    State(admin): State<Arc<Admin>>,
    RequireAdmin(who): RequireAdmin,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let result = async {
        let raw = path_param(path)?;
        let relative = checked_path(&raw, false)?;
        let shown = raw.clone();
        admin
            .blocking(move |admin| remove(&audio_root(admin), &relative, &raw))
            .await?;
        Ok::<_, ApiError>(shown)
    }
    .await;
    match result {
        Ok(path) => {
            tracing::info!(who = %who.name, path = %path, "audio file deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// Removes the file `relative` under `root` (a link itself, not what it points to).
fn remove(root: &std::path::Path, relative: &std::path::Path, raw: &str) -> Result<(), ApiError> {
    let real_root = canonical_root(root, false)?;
    let target = real_root.join(relative);
    let missing = || ApiError::not_found(format!("no file {raw:?} in the audio root"));
    let meta = match std::fs::symlink_metadata(&target) {
        Ok(m) => m,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Err(missing());
        }
        Err(e) => return Err(ApiError::failed(format!("{}: {e}", target.display()))),
    };
    if meta.is_dir() {
        return Err(ApiError::invalid(
            "path",
            format!("{raw:?} is a folder: only files are deleted"),
        ));
    }
    let folder = target
        .parent()
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| real_root.clone());
    inside(&real_root, &folder, raw)?;
    match std::fs::remove_file(&target) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Err(missing()),
        Err(e) => {
            return Err(ApiError::failed(format!(
                "cannot delete {}: {e}",
                target.display()
            )));
        }
    }
    sync_folder(&folder);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_root() {
        for ok in ["a.wav", "moh/jazz-1.wav", "x/y/z(2).mp3", "été.flac"] {
            assert!(checked_path(ok, true).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/x.wav",
            "../x.wav",
            "a/../../x.wav",
            "./x.wav",
            "a//x.wav",
            ".hidden.wav",
            "a/.git/x.wav",
            "a\\x.wav",
            "a\u{1}.wav",
            "x.txt",
            "x",
            "a;b.wav",
            "a b.wav",
        ] {
            let e = checked_path(bad, true).expect_err(bad);
            assert_eq!(e.field.as_deref(), Some("path"), "{bad}");
        }
        // Reading allows names uploads may not create, not escapes.
        assert!(checked_path("a b.txt", false).is_ok());
        assert!(checked_path("../a.wav", false).is_err());
        let deep = vec!["d"; MAX_DEPTH + 1].join("/") + ".wav";
        assert!(checked_path(&deep, true).is_err());
    }

    #[test]
    fn uploads_do_not_follow_links_out_of_the_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("audio");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, root.join("link")).expect("symlink");
        let wav = Bytes::from(
            wav_bytes(8000, (0..800).map(|i| (i as f32 * 0.3).sin() * 0.5)).expect("wav"),
        );
        for path in ["link/x.wav", "link/deeper/x.wav"] {
            let e = store(&root, std::path::Path::new(path), path, wav.clone(), false)
                .expect_err("outside");
            assert_eq!(e.field.as_deref(), Some("path"), "{path}: {}", e.message);
        }
        assert_eq!(std::fs::read_dir(&outside).expect("read_dir").count(), 0);
    }

    #[test]
    fn the_routes_are_documented() {
        let doc = serde_json::to_value(crate::admin::openapi()).expect("JSON");
        let paths = &doc["paths"];
        for (path, method) in [
            ("/api/v1/files", "get"),
            ("/api/v1/files/{path}", "get"),
            ("/api/v1/files/{path}", "put"),
            ("/api/v1/files/{path}", "delete"),
        ] {
            assert!(paths[path][method].is_object(), "{method} {path}");
        }
        let params = paths["/api/v1/files/{path}"]["get"]["parameters"]
            .as_array()
            .expect("parameters");
        assert!(params.iter().any(|p| p["name"] == "as"), "{params:?}");
    }

    #[test]
    fn containers_by_signature() {
        assert_eq!(container(b"RIFF\0\0\0\0WAVEfmt "), Some("WAV"));
        assert_eq!(container(b"fLaC\0\0\0\0"), Some("FLAC"));
        assert_eq!(container(b"OggS\0"), Some("Ogg"));
        assert_eq!(container(b"ID3\x04"), Some("MP3"));
        assert_eq!(container(&[0xFF, 0xFB, 0x90]), Some("MP3"));
        assert_eq!(container(&[0xFF, 0xF1, 0x50]), Some("AAC (ADTS)"));
        assert_eq!(container(b"hello"), None);
    }

    #[test]
    fn a_probe_describes_without_decoding() {
        let wav = wav_bytes(8000, (0..8000).map(|i| (i as f32 * 0.1).sin() * 0.5)).expect("wav");
        let probed =
            probe(Box::new(std::io::Cursor::new(wav.clone())), &wav, "wav").expect("probe");
        assert_eq!(probed.format, "WAV, PCM 16-bit, 8000 Hz, mono");
        assert_eq!(probed.seconds, Some(1.0));
        assert_eq!(probed.error, None);
        let garbage = b"this is not audio at all, just text".to_vec();
        let why = probe(
            Box::new(std::io::Cursor::new(garbage.clone())),
            &garbage,
            "wav",
        )
        .expect_err("not audio");
        assert!(why.contains("not a recognised audio format"), "{why}");
    }

    #[test]
    fn uploads_are_decoded_and_placed_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("audio");
        let wav = Bytes::from(
            wav_bytes(16_000, (0..16_000).map(|i| (i as f32 * 0.3).sin() * 0.5)).expect("wav"),
        );
        let up = store(
            &root,
            std::path::Path::new("moh/a.wav"),
            "moh/a.wav",
            wav.clone(),
            false,
        )
        .expect("stored");
        assert_eq!(up.seconds, 1.0);
        assert_eq!(up.format, "WAV, PCM 16-bit, 16000 Hz, mono");
        assert_eq!(std::fs::read(root.join("moh/a.wav")).expect("read"), wav);
        let again = store(
            &root,
            std::path::Path::new("moh/a.wav"),
            "moh/a.wav",
            wav.clone(),
            false,
        )
        .expect_err("exists");
        assert_eq!(again.status(), StatusCode::CONFLICT);
        store(
            &root,
            std::path::Path::new("moh/a.wav"),
            "moh/a.wav",
            wav.clone(),
            true,
        )
        .expect("overwritten");
        let junk = store(
            &root,
            std::path::Path::new("b.wav"),
            "b.wav",
            Bytes::from_static(b"RIFF\x10\0\0\0WAVEjunkjunkjunk"),
            false,
        )
        .expect_err("junk");
        assert_eq!(junk.field.as_deref(), Some("body"));
        assert!(!root.join("b.wav").exists());
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(root.join("moh"))
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["a.wav"]);

        let listed = list(&root).expect("list");
        assert_eq!(listed.files.len(), 1);
        assert_eq!(listed.files[0].path, "moh/a.wav");
        assert_eq!(listed.files[0].seconds, Some(1.0));

        remove(&root, std::path::Path::new("moh/a.wav"), "moh/a.wav").expect("deleted");
        let e = remove(&root, std::path::Path::new("moh/a.wav"), "moh/a.wav").expect_err("gone");
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        let e = remove(&root, std::path::Path::new("moh"), "moh").expect_err("folder");
        assert_eq!(e.field.as_deref(), Some("path"));
    }
}
