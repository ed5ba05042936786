//! The named live sources of `[[external_audio]]`, started once and shared by every listener.

use crate::config::{Config, ExternalAudio, SourceKind};
use imss_media::{ClipCache, LiveRing, LiveSource, LiveSpec};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Level of tones when the configuration gives none.
const DEFAULT_TONE_DBFS: f64 = -12.0;
/// Frequency of the fallback tone.
const FALLBACK_TONE_HZ: f64 = 440.0;

/// Running live sources by lower-cased name.
pub(crate) struct LiveSources {
    by_name: HashMap<String, LiveSource>,
}

impl LiveSources {
    /// Starts every configured source. A source that cannot start plays its fallback, so a
    /// caller never meets a missing source because of a bad file or an unreachable stream.
    pub fn start(config: &Config, clips: &Arc<ClipCache>) -> LiveSources {
        let root = config.audio_root();
        let mut by_name = HashMap::new();
        for ext in &config.external_audio {
            let spec = match spec_for(ext, &root) {
                Ok(spec) => spec,
                Err(why) => {
                    tracing::warn!(source = %ext.name, %why, "live source plays its fallback");
                    fallback_spec(ext)
                }
            };
            match LiveSource::spawn(&ext.name, spec, clips.clone()) {
                Ok(source) => {
                    tracing::info!(source = %ext.name, kind = ?ext.kind, "live source started");
                    by_name.insert(ext.name.to_ascii_lowercase(), source);
                }
                Err(e) => {
                    tracing::error!(source = %ext.name, error = %e, "live source failed to start");
                    if let Ok(source) =
                        LiveSource::spawn(&ext.name, fallback_spec(ext), clips.clone())
                    {
                        by_name.insert(ext.name.to_ascii_lowercase(), source);
                    }
                }
            }
        }
        LiveSources { by_name }
    }

    /// The ring of the source called `name` (case-insensitive).
    pub fn ring(&self, name: &str) -> Option<Arc<LiveRing>> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .map(LiveSource::ring)
    }
}

fn spec_for(ext: &ExternalAudio, root: &Path) -> Result<LiveSpec, String> {
    match ext.kind {
        SourceKind::Tone => Ok(LiveSpec::Tone {
            frequency_hz: ext.frequency_hz.unwrap_or(FALLBACK_TONE_HZ),
            level_dbfs: ext.level_dbfs.unwrap_or(DEFAULT_TONE_DBFS),
        }),
        SourceKind::Silence => Ok(LiveSpec::Silence),
        SourceKind::Playlist => {
            let files = playlist_files(ext, root)?;
            if files.is_empty() {
                return Err("the playlist has no audio files".into());
            }
            Ok(LiveSpec::Playlist {
                files,
                shuffle: ext.shuffle,
            })
        }
        SourceKind::Http | SourceKind::Command => Err(format!(
            "kind = {:?} sources are not available in this build",
            ext.kind
        )),
    }
}

fn fallback_spec(ext: &ExternalAudio) -> LiveSpec {
    match ext.fallback.as_deref() {
        Some("silence") => LiveSpec::Silence,
        _ => LiveSpec::Tone {
            frequency_hz: FALLBACK_TONE_HZ,
            level_dbfs: DEFAULT_TONE_DBFS,
        },
    }
}

const AUDIO_EXTENSIONS: [&str; 7] = ["wav", "mp3", "flac", "ogg", "oga", "ul", "al"];

fn playlist_files(ext: &ExternalAudio, root: &Path) -> Result<Vec<PathBuf>, String> {
    let under_root = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root.join(p)
        }
    };
    if let Some(files) = &ext.files {
        return Ok(files.iter().map(|f| under_root(f)).collect());
    }
    let Some(folder) = &ext.path else {
        return Ok(Vec::new());
    };
    let folder = under_root(folder);
    let entries = std::fs::read_dir(&folder)
        .map_err(|e| format!("cannot read playlist folder {}: {e}", folder.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}
