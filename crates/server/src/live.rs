//! The named live sources of `[[external_audio]]`, started once and shared by every listener.

use crate::config::{Config, ExternalAudio, SourceKind};
use crate::upstream::UpstreamWorker;
use imss_media::{
    ChimeFeed, Clip, ClipCache, DEFAULT_CEILING_DBFS, DEFAULT_TARGET_LUFS, Fallback, LiveFeed,
    LiveRing, LiveSource, LiveSpec, MediaError, PlayItem, ProcessedFeed, Processing,
    UpstreamStatus,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Level of tones when the configuration gives none.
const DEFAULT_TONE_DBFS: f64 = -12.0;
/// Frequency of the fallback tone.
const FALLBACK_TONE_HZ: f64 = 440.0;

/// Running live sources by lower-cased name.
pub(crate) struct LiveSources {
    by_name: HashMap<String, LiveSource>,
    /// What each new listener of a source hears before joining it, by lower-cased name.
    announcements: HashMap<String, Arc<Clip>>,
    /// The upstream workers of `http` and `command` sources, by lower-cased name; dropped
    /// after the sources' producers.
    upstreams: HashMap<String, UpstreamWorker>,
}

impl LiveSources {
    /// Starts every configured source. A source that cannot start plays its fallback, so a
    /// caller never meets a missing source because of a bad file or an unreachable stream.
    pub fn start(config: &Config, clips: &Arc<ClipCache>) -> LiveSources {
        let root = config.audio_root();
        let mut by_name = HashMap::new();
        let mut announcements = HashMap::new();
        let mut fed_from_outside = Vec::new();
        for ext in &config.external_audio {
            let recordings = Recordings::load(ext, &root, clips);
            if let Some(clip) = &recordings.announcement {
                announcements.insert(ext.name.to_ascii_lowercase(), Arc::clone(clip));
            }
            if matches!(ext.kind, SourceKind::Http | SourceKind::Command) {
                // Started below, once the sources they may fall back to are running.
                fed_from_outside.push((ext, recordings));
                continue;
            }
            let spec = match spec_for(ext, &root) {
                Ok(spec) => spec,
                Err(why) => {
                    tracing::warn!(source = %ext.name, %why, "live source plays its fallback");
                    fallback_spec(ext)
                }
            };
            match spawn(ext, spec, clips, &recordings) {
                Ok(source) => {
                    tracing::info!(source = %ext.name, kind = ?ext.kind, "live source started");
                    by_name.insert(ext.name.to_ascii_lowercase(), source);
                }
                Err(e) => {
                    tracing::error!(source = %ext.name, error = %e, "live source failed to start");
                    if let Ok(source) = spawn(ext, fallback_spec(ext), clips, &recordings) {
                        by_name.insert(ext.name.to_ascii_lowercase(), source);
                    }
                }
            }
        }
        let upstreams = start_upstreams(fed_from_outside, &mut by_name, clips);
        LiveSources {
            by_name,
            announcements,
            upstreams,
        }
    }

    /// The health of the `http` or `command` source called `name` (case-insensitive):
    /// state, upstream format, now playing, last error, reconnections. `None` for other
    /// kinds, which have no upstream to fail.
    #[allow(dead_code)] // Read by the web UI, metrics and the Notifier (later issues) and tests.
    pub fn health(&self, name: &str) -> Option<UpstreamStatus> {
        self.upstreams
            .get(&name.to_ascii_lowercase())
            .map(|w| w.upstream().status())
    }

    /// The ring of the source called `name` (case-insensitive).
    pub fn ring(&self, name: &str) -> Option<Arc<LiveRing>> {
        self.by_name
            .get(&name.to_ascii_lowercase())
            .map(LiveSource::ring)
    }

    /// The announcement of the source called `name`, if it has one.
    pub fn announcement(&self, name: &str) -> Option<Arc<Clip>> {
        self.announcements.get(&name.to_ascii_lowercase()).cloned()
    }

    /// What a new listener of `name` plays: the source's announcement, if any, then the
    /// source itself. `None` when there is no such source.
    pub fn listen(&self, name: &str) -> Option<Vec<PlayItem>> {
        let ring = self.ring(name)?;
        let mut items: Vec<PlayItem> = self
            .announcement(name)
            .map(PlayItem::Clip)
            .into_iter()
            .collect();
        items.push(PlayItem::Live(ring));
        Some(items)
    }
}

/// Starts the `http` and `command` sources, each after the source it falls back to (the
/// configuration has no fallback loops). Their listeners hear the fallback until the
/// upstream delivers; one whose worker cannot start plays its fallback for good.
fn start_upstreams(
    mut pending: Vec<(&ExternalAudio, Recordings)>,
    by_name: &mut HashMap<String, LiveSource>,
    clips: &Arc<ClipCache>,
) -> HashMap<String, UpstreamWorker> {
    let mut workers = HashMap::new();
    while !pending.is_empty() {
        let waits_for_pending = |ext: &ExternalAudio, pending: &[(&ExternalAudio, Recordings)]| {
            ext.fallback.as_deref().is_some_and(|f| {
                pending.iter().any(|(p, _)| {
                    p.name.eq_ignore_ascii_case(f) && !p.name.eq_ignore_ascii_case(&ext.name)
                })
            })
        };
        // The first whose fallback is running (or none, should a loop slip through).
        let next = (0..pending.len())
            .find(|&i| !waits_for_pending(pending[i].0, &pending))
            .unwrap_or(0);
        let (ext, recordings) = pending.remove(next);
        let key = ext.name.to_ascii_lowercase();
        let fallback = upstream_fallback(ext, by_name, clips);
        let started = crate::upstream::start(ext, fallback).and_then(|(feed, worker)| {
            LiveSource::spawn_feed(&ext.name, process(ext, feed, &recordings))
                .map(|source| (source, worker))
                .map_err(|e| e.to_string())
        });
        match started {
            Ok((source, worker)) => {
                tracing::info!(source = %ext.name, kind = ?ext.kind, "live source started");
                by_name.insert(key.clone(), source);
                workers.insert(key, worker);
            }
            Err(e) => {
                tracing::error!(source = %ext.name, error = %e, "live source failed to start; it plays its fallback");
                if let Ok(source) = spawn(ext, fallback_spec(ext), clips, &recordings) {
                    by_name.insert(key, source);
                }
            }
        }
    }
    workers
}

/// What listeners of an upstream-fed source hear while it cannot be played: another
/// source's ring, or a tone or silence of its own.
fn upstream_fallback(
    ext: &ExternalAudio,
    by_name: &HashMap<String, LiveSource>,
    clips: &Arc<ClipCache>,
) -> Fallback {
    if let Some(name) = ext.fallback.as_deref()
        && name != "tone"
        && name != "silence"
    {
        match by_name.get(&name.to_ascii_lowercase()) {
            Some(source) => return Fallback::Source(source.ring()),
            None => {
                tracing::warn!(source = %ext.name, fallback = name, "the fallback source is not running; a tone stands in");
            }
        }
    }
    let spec = match ext.fallback.as_deref() {
        Some("silence") => LiveSpec::Silence,
        _ => LiveSpec::Tone {
            frequency_hz: FALLBACK_TONE_HZ,
            level_dbfs: DEFAULT_TONE_DBFS,
        },
    };
    Fallback::Feed(
        spec.into_feed(&ext.name, Arc::clone(clips))
            .expect("a 440 Hz tone at -12 dBFS and silence are valid feeds"),
    )
}

/// Starts the producer of `spec` with the source's processing around its feed.
fn spawn(
    ext: &ExternalAudio,
    spec: LiveSpec,
    clips: &Arc<ClipCache>,
    recordings: &Recordings,
) -> Result<LiveSource, MediaError> {
    let feed = spec.into_feed(&ext.name, Arc::clone(clips))?;
    LiveSource::spawn_feed(&ext.name, process(ext, feed, recordings))
}

/// Wraps a source's feed in what its configuration asks for: loudness processing (gain,
/// band-pass, normalisation, limiter), then the chime, which is processed on its own
/// beforehand so the normaliser never hears it. Every kind of source goes through here.
fn process(
    ext: &ExternalAudio,
    feed: Box<dyn LiveFeed>,
    recordings: &Recordings,
) -> Box<dyn LiveFeed> {
    let processing = processing(ext);
    let mut feed = feed;
    if !processing.is_identity() {
        feed = Box::new(ProcessedFeed::new(feed, &processing));
    }
    if let Some(chime) = &recordings.chime {
        let every = ext
            .chime_every_s
            .unwrap_or(ExternalAudio::DEFAULT_CHIME_EVERY_S);
        feed = Box::new(ChimeFeed::new(
            feed,
            Arc::clone(chime),
            Duration::from_secs(u64::from(every)),
        ));
    }
    feed
}

/// The processing `ext` asks for. The limiter is on whenever anything else is, so that no
/// gain can clip.
fn processing(ext: &ExternalAudio) -> Processing {
    let mut p = Processing {
        gain_db: ext.gain_db.unwrap_or(0.0),
        target_lufs: ext
            .normalize
            .then(|| ext.target_lufs.unwrap_or(DEFAULT_TARGET_LUFS)),
        band_pass: ext.band_pass,
        ceiling_dbfs: ext.limiter_ceiling_dbfs,
    };
    if !p.is_identity() && p.ceiling_dbfs.is_none() {
        p.ceiling_dbfs = Some(DEFAULT_CEILING_DBFS);
    }
    p
}

/// A source's announcement and chime, decoded through the clip cache and processed like
/// the source, once at start.
struct Recordings {
    announcement: Option<Arc<Clip>>,
    chime: Option<Arc<[f32]>>,
}

impl Recordings {
    /// Loads what `ext` names; a file that is missing or cannot be decoded is a warning, and
    /// the source runs without it.
    fn load(ext: &ExternalAudio, root: &Path, clips: &ClipCache) -> Recordings {
        let load = |key: &str, file: &Option<String>| -> Option<Arc<Clip>> {
            let file = file.as_deref()?;
            let clip = crate::audio_root::resolve(root, file)
                .map_err(|e| e.to_string())
                .and_then(|path| clips.get(&path).map_err(|e| e.to_string()));
            match clip {
                Ok(clip) if clip.content_samples() > 0 => Some(clip),
                Ok(_) => {
                    tracing::warn!(source = %ext.name, key, file, "the file holds no audio; the source plays without it");
                    None
                }
                Err(error) => {
                    tracing::warn!(source = %ext.name, key, file, %error, "cannot load the file; the source plays without it");
                    None
                }
            }
        };
        let processing = processing(ext);
        let announcement = load("announcement", &ext.announcement).map(|clip| {
            if processing.is_identity() {
                clip
            } else {
                Arc::new(processing.apply_to_clip(&clip))
            }
        });
        let chime = load("chime", &ext.chime).map(|clip| {
            let every = ext
                .chime_every_s
                .unwrap_or(ExternalAudio::DEFAULT_CHIME_EVERY_S);
            if clip.duration() > Duration::from_secs(u64::from(every)) {
                tracing::warn!(source = %ext.name, chime_every_s = every, "the chime is longer than chime_every_s; the chimes due while one plays are left out");
            }
            let mut samples = clip.to_pcm();
            processing.apply_to_samples(&mut samples);
            Arc::<[f32]>::from(samples)
        });
        Recordings {
            announcement,
            chime,
        }
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
            // A folder may fill later: it is listed again while it is empty. A file list
            // never changes.
            let folder = ext
                .files
                .is_none()
                .then(|| ext.path.as_deref().map(|f| under_root(root, f)))
                .flatten();
            if files.is_empty() && folder.is_none() {
                return Err("the playlist has no audio files".into());
            }
            if files.is_empty() {
                tracing::warn!(source = %ext.name, "the playlist folder holds no audio file yet; silence until it does");
            }
            Ok(LiveSpec::Playlist {
                files,
                shuffle: ext.shuffle,
                folder,
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

fn playlist_files(ext: &ExternalAudio, root: &Path) -> Result<Vec<PathBuf>, String> {
    if let Some(files) = &ext.files {
        return Ok(files.iter().map(|f| under_root(root, f)).collect());
    }
    let Some(folder) = &ext.path else {
        return Ok(Vec::new());
    };
    let folder = under_root(root, folder);
    imss_media::list_audio_files(&folder)
        .map_err(|e| format!("cannot read playlist folder {}: {e}", folder.display()))
}

/// A configured path: absolute as given, else under the audio root.
fn under_root(root: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        root.join(p)
    }
}
