//! The named live sources of `[[external_audio]]`, shared by every listener.
//!
//! A source runs while it has listeners (callers' play plans, or another source playing it
//! as its fallback) and for `idle_stop_s` after the last has gone, unless `keep_warm`:
//! see [`LiveSource::spawn_lazy`]. The set of sources can change at run time
//! ([`LiveSources::reload`]): a changed source keeps its ring, so its listeners go on
//! hearing it without a gap, and a removed source that still has listeners plays its
//! fallback to them until they leave.

use crate::config::{Config, ExternalAudio, SourceKind};
use crate::upstream::UpstreamWorker;
use imss_media::{
    ChimeFeed, Clip, ClipCache, ClipFetcher, DEFAULT_CEILING_DBFS, DEFAULT_TARGET_LUFS, Fallback,
    FallbackFeed, LiveFeed, LiveRing, LiveSource, LiveSpec, PlayItem, ProcessedFeed, Processing,
    SourceState, UpstreamStatus,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// Level of tones when the configuration gives none.
pub(crate) const DEFAULT_TONE_DBFS: f64 = -12.0;
/// Frequency of the fallback tone.
pub(crate) const FALLBACK_TONE_HZ: f64 = 440.0;
/// How much of a source's audio its level is measured over: 100 ms at 8 kHz.
const LEVEL_SAMPLES: usize = 800;

/// The configured live sources.
pub(crate) struct LiveSources {
    clips: Arc<ClipCache>,
    /// Plays the `http(s)://` entries of playlists.
    fetcher: Option<ClipFetcher>,
    root: PathBuf,
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Running sources by lower-cased name.
    by_name: HashMap<String, Entry>,
    /// Removed sources that still had listeners: they play their fallback until the last
    /// leaves.
    retired: Vec<Entry>,
}

/// One running source.
struct Entry {
    ext: ExternalAudio,
    /// What each new listener hears before joining the source.
    announcement: Option<Arc<Clip>>,
    /// Dropped before `upstream`: the producer stops before its worker.
    source: LiveSource,
    /// The worker of an `http` or `command` source.
    upstream: Option<UpstreamWorker>,
}

/// A source's state for the web interface, metrics and the Notifier.
#[derive(Clone, Debug, PartialEq)]
#[allow(dead_code)] // Read by the web UI, metrics and the Notifier (later issues) and tests.
pub(crate) struct SourceStatus {
    /// The configured name.
    pub name: String,
    /// `tone`, `silence`, `playlist`, `http` or `command`.
    pub kind: SourceKind,
    /// What listeners hear: `idle` while stopped for want of listeners.
    pub state: SourceState,
    /// Callers (and sources playing this one as their fallback) listening now.
    pub listeners: usize,
    /// Upstream health of an `http` or `command` source.
    pub upstream: Option<UpstreamStatus>,
}

/// What a reload changed, by source name.
#[derive(Debug, Default, PartialEq)]
pub struct SourcesReload {
    /// Sources started.
    pub added: Vec<String>,
    /// Sources whose settings changed: listeners stay and hear the new settings.
    pub changed: Vec<String>,
    /// Sources removed; listeners still on them hear their fallback.
    pub removed: Vec<String>,
}

impl LiveSources {
    /// Starts every configured source (a lazy one stopped until its first listener). A
    /// source that cannot start plays its fallback, so a caller never meets a missing
    /// source because of a bad file or an unreachable stream.
    pub fn start(
        config: &Config,
        clips: &Arc<ClipCache>,
        fetcher: Option<ClipFetcher>,
    ) -> LiveSources {
        let sources = LiveSources {
            clips: Arc::clone(clips),
            fetcher,
            root: config.audio_root(),
            inner: RwLock::new(Inner::default()),
        };
        let mut inner = sources.write();
        for ext in in_fallback_order(&config.external_audio) {
            if let Some(entry) = sources.start_one(ext, &inner.by_name) {
                inner.by_name.insert(key(&ext.name), entry);
            }
        }
        drop(inner);
        sources
    }

    /// Applies a new `[[external_audio]]` list: starts added sources, gives changed ones
    /// their new settings on the same ring, and retires removed ones (their listeners hear
    /// the fallback). Sources whose settings did not change are not touched.
    pub fn reload(&self, config: &Config) -> SourcesReload {
        let mut report = SourcesReload::default();
        // Stopped once the lock is released, on a thread of their own.
        let mut finished: Vec<Entry> = Vec::new();
        let mut old_workers: Vec<UpstreamWorker> = Vec::new();
        let mut inner = self.write();
        for ext in in_fallback_order(&config.external_audio) {
            let k = key(&ext.name);
            match inner.by_name.get(&k) {
                Some(entry) if entry.ext == *ext => {}
                Some(_) => {
                    let (feed, worker, announcement) = self.feed_for(ext, &inner.by_name);
                    let entry = inner.by_name.get_mut(&k).expect("looked up above");
                    entry.source.replace_feed(feed);
                    entry.source.set_idle_stop(ext.idle_stop());
                    old_workers.extend(std::mem::replace(&mut entry.upstream, worker));
                    entry.announcement = announcement;
                    entry.ext = ext.clone();
                    tracing::info!(source = %ext.name, kind = ?ext.kind, listeners = entry.source.ring().listeners(), "live source changed");
                    report.changed.push(ext.name.clone());
                }
                None => {
                    if let Some(entry) = self.start_one(ext, &inner.by_name) {
                        inner.by_name.insert(k, entry);
                        report.added.push(ext.name.clone());
                    }
                }
            }
        }
        let gone: Vec<String> = inner
            .by_name
            .keys()
            .filter(|k| !config.external_audio.iter().any(|e| key(&e.name) == **k))
            .cloned()
            .collect();
        for k in gone {
            let Some(mut entry) = inner.by_name.remove(&k) else {
                continue;
            };
            let listeners = entry.source.ring().listeners();
            report.removed.push(entry.ext.name.clone());
            tracing::info!(source = %entry.ext.name, listeners, "live source removed");
            if listeners > 0 {
                let fallback = fallback_of(&entry.ext, &inner.by_name, &self.clips);
                entry
                    .source
                    .replace_feed(Box::new(FallbackFeed::new(fallback)));
                entry.source.set_idle_stop(Some(Duration::ZERO));
                old_workers.extend(entry.upstream.take());
                inner.retired.push(entry);
            } else {
                finished.push(entry);
            }
        }
        let (heard, done): (Vec<Entry>, Vec<Entry>) = std::mem::take(&mut inner.retired)
            .into_iter()
            .partition(|e| e.source.ring().listeners() > 0);
        inner.retired = heard;
        finished.extend(done);
        drop(inner);
        // Stopping a producer joins its thread and an upstream worker waits up to a second
        // for its read: not on the caller's thread, which is the control plane's.
        if !old_workers.is_empty() || !finished.is_empty() {
            let stopping = std::thread::Builder::new()
                .name("live-stop".into())
                .spawn(move || {
                    drop(old_workers);
                    drop(finished);
                });
            if let Err(e) = stopping {
                tracing::warn!(error = %e, "cannot start a thread to stop the old live sources");
            }
        }
        report
    }

    /// The state of the source called `name` (case-insensitive).
    #[allow(dead_code)] // Read by the web UI, metrics and the Notifier (later issues) and tests.
    pub fn status(&self, name: &str) -> Option<SourceStatus> {
        let inner = self.read();
        let entry = inner.by_name.get(&key(name))?;
        let ring = entry.source.ring();
        let upstream = entry.upstream.as_ref().map(|w| w.upstream().status());
        let state = if !ring.is_active() {
            SourceState::Idle
        } else {
            upstream.as_ref().map_or(SourceState::Playing, |u| u.state)
        };
        Some(SourceStatus {
            name: entry.ext.name.clone(),
            kind: entry.ext.kind,
            state,
            listeners: ring.listeners(),
            upstream,
        })
    }

    /// The state of every source, in no particular order.
    #[allow(dead_code)] // Read by the web UI, metrics and the Notifier (later issues) and tests.
    pub fn statuses(&self) -> Vec<SourceStatus> {
        let names: Vec<String> = self
            .read()
            .by_name
            .values()
            .map(|e| e.ext.name.clone())
            .collect();
        names.iter().filter_map(|n| self.status(n)).collect()
    }

    /// The health of the `http` or `command` source called `name` (case-insensitive):
    /// state, upstream format, now playing, last error, reconnections. `None` for other
    /// kinds, which have no upstream to fail.
    #[allow(dead_code)] // Read by the web UI, metrics and the Notifier (later issues) and tests.
    pub fn health(&self, name: &str) -> Option<UpstreamStatus> {
        self.status(name)?.upstream
    }

    /// The level of what listeners of `name` (case-insensitive) hear now: the RMS of the
    /// last 100 ms ([`LEVEL_SAMPLES`]), in dBFS (at least −100 for digital silence). `None` while the
    /// source is idle, and for an unknown source. Reads the ring like one more listener's
    /// packet (a few hundred bytes, no lock), without counting as a listener.
    pub(crate) fn level_dbfs(&self, name: &str) -> Option<f64> {
        let ring = self.ring(name)?;
        if !ring.is_active() {
            return None;
        }
        let mut codes = [0u8; LEVEL_SAMPLES];
        let end = ring.position_at(std::time::Instant::now());
        let start = end.checked_sub(LEVEL_SAMPLES as u64)?;
        if !ring.read(imss_media::Law::Pcmu, start, &mut codes) {
            return None;
        }
        let energy: f64 = codes
            .iter()
            .map(|&c| {
                let x = f64::from(imss_media::Law::Pcmu.decode(c)) / 32768.0;
                x * x
            })
            .sum();
        let rms = (energy / LEVEL_SAMPLES as f64).sqrt();
        let dbfs = if rms > 0.0 {
            20.0 * rms.log10()
        } else {
            -100.0
        };
        Some((dbfs.max(-100.0) * 10.0).round() / 10.0)
    }

    /// The ring of the source called `name` (case-insensitive).
    pub fn ring(&self, name: &str) -> Option<Arc<LiveRing>> {
        self.read().by_name.get(&key(name)).map(|e| e.source.ring())
    }

    /// The announcement of the source called `name`, if it has one.
    pub fn announcement(&self, name: &str) -> Option<Arc<Clip>> {
        self.read()
            .by_name
            .get(&key(name))
            .and_then(|e| e.announcement.clone())
    }

    /// What a new listener of `name` plays: the source's announcement, if any, then the
    /// source itself (which starts now if it was idle). `None` when there is no such
    /// source.
    pub fn listen(&self, name: &str) -> Option<Vec<PlayItem>> {
        let inner = self.read();
        let entry = inner.by_name.get(&key(name))?;
        let mut items: Vec<PlayItem> = entry
            .announcement
            .clone()
            .map(PlayItem::Clip)
            .into_iter()
            .collect();
        items.push(PlayItem::Live(entry.source.ring().listen()));
        Some(items)
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // The map holds whole entries, replaced in one step: a panic elsewhere leaves it
        // usable.
        self.inner
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts the source `ext`; its fallback source, if any, is in `running` already.
    fn start_one(&self, ext: &ExternalAudio, running: &HashMap<String, Entry>) -> Option<Entry> {
        let (feed, upstream, announcement) = self.feed_for(ext, running);
        match LiveSource::spawn_lazy(&ext.name, feed, ext.idle_stop()) {
            Ok(source) => {
                tracing::info!(source = %ext.name, kind = ?ext.kind, keep_warm = ext.keep_warm, "live source started");
                Some(Entry {
                    ext: ext.clone(),
                    announcement,
                    source,
                    upstream,
                })
            }
            Err(e) => {
                tracing::error!(source = %ext.name, error = %e, "live source failed to start");
                None
            }
        }
    }

    /// The feed of `ext`, processed as configured, with the worker of an upstream-fed
    /// source and the announcement. What cannot be set up (a bad file, an unusable URL)
    /// is logged, and the feed is then the source's fallback.
    fn feed_for(
        &self,
        ext: &ExternalAudio,
        running: &HashMap<String, Entry>,
    ) -> (Box<dyn LiveFeed>, Option<UpstreamWorker>, Option<Arc<Clip>>) {
        let recordings = Recordings::load(ext, &self.root, &self.clips);
        let announcement = recordings.announcement.clone();
        if matches!(ext.kind, SourceKind::Http | SourceKind::Command) {
            let fallback = fallback_of(ext, running, &self.clips);
            match crate::upstream::start(ext, fallback) {
                Ok((feed, worker)) => {
                    return (process(ext, feed, &recordings), Some(worker), announcement);
                }
                Err(why) => {
                    tracing::error!(source = %ext.name, %why, "live source cannot reach its upstream; it plays its fallback");
                }
            }
        } else {
            match spec_for(ext, &self.root).and_then(|spec| {
                spec.into_feed_fetching(&ext.name, Arc::clone(&self.clips), self.fetcher.clone())
                    .map_err(|e| e.to_string())
            }) {
                Ok(feed) => return (process(ext, feed, &recordings), None, announcement),
                Err(why) => {
                    tracing::warn!(source = %ext.name, %why, "live source plays its fallback");
                }
            }
        }
        let feed = fallback_spec(ext)
            .into_feed(&ext.name, Arc::clone(&self.clips))
            .expect("a 440 Hz tone at -12 dBFS and silence are valid feeds");
        (process(ext, feed, &recordings), None, announcement)
    }
}

fn key(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// The sources in an order that starts each after the source it falls back to (the
/// configuration has no fallback loops; should one slip through, it is broken anywhere).
fn in_fallback_order(all: &[ExternalAudio]) -> Vec<&ExternalAudio> {
    let mut pending: Vec<&ExternalAudio> = all.iter().collect();
    let mut ordered = Vec::with_capacity(all.len());
    while !pending.is_empty() {
        let waits = |ext: &ExternalAudio, pending: &[&ExternalAudio]| {
            ext.fallback.as_deref().is_some_and(|f| {
                pending.iter().any(|p| {
                    p.name.eq_ignore_ascii_case(f) && !p.name.eq_ignore_ascii_case(&ext.name)
                })
            })
        };
        let next = (0..pending.len())
            .find(|&i| !waits(pending[i], &pending))
            .unwrap_or(0);
        ordered.push(pending.remove(next));
    }
    ordered
}

/// What listeners of `ext` hear while it cannot be played: another source's ring, or a
/// tone or silence of its own.
fn fallback_of(
    ext: &ExternalAudio,
    running: &HashMap<String, Entry>,
    clips: &Arc<ClipCache>,
) -> Fallback {
    if let Some(name) = ext.fallback.as_deref()
        && name != "tone"
        && name != "silence"
    {
        match running.get(&key(name)) {
            Some(entry) => return Fallback::Source(entry.source.ring()),
            None => {
                tracing::warn!(source = %ext.name, fallback = name, "the fallback source is not running; a tone stands in");
            }
        }
    }
    Fallback::Feed(
        fallback_spec(ext)
            .into_feed(&ext.name, Arc::clone(clips))
            .expect("a 440 Hz tone at -12 dBFS and silence are valid feeds"),
    )
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

/// The entries of a playlist source: its `files`, or the audio files of its folder now
/// (relative paths under `root`; `http(s)://` entries as they are).
pub(crate) fn playlist_files(ext: &ExternalAudio, root: &Path) -> Result<Vec<PathBuf>, String> {
    if let Some(files) = &ext.files {
        return Ok(files
            .iter()
            .map(|f| {
                if imss_media::is_http_entry(f) {
                    f.clone()
                } else {
                    under_root(root, f)
                }
            })
            .collect());
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

#[cfg(test)]
mod tests {
    use super::*;
    use imss_media::{Law, LiveListener};
    use std::time::Instant;

    /// The share of the energy of 8 kHz μ-law `codes` at `hz`.
    fn tone_share(codes: &[u8], hz: f64) -> f64 {
        let (mut s, mut c, mut p) = (0.0, 0.0, 0.0);
        for (i, &b) in codes.iter().enumerate() {
            let x = f64::from(Law::Pcmu.decode(b));
            let w = std::f64::consts::TAU * hz * i as f64 / 8000.0;
            s += x * w.sin();
            c += x * w.cos();
            p += x * x;
        }
        let n = codes.len() as f64;
        let amp = 2.0 * s.hypot(c) / n;
        (amp * amp / 2.0) / (p / n).max(1e-9)
    }

    /// Waits until what `listener` hears now is a tone of `hz`.
    fn hears(listener: &LiveListener, hz: f64) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let mut codes = [0u8; 800];
            let pos = listener.position_at(Instant::now());
            let share = if listener.read(Law::Pcmu, pos, &mut codes) {
                tone_share(&codes, hz)
            } else {
                0.0
            };
            if share > 0.9 {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} is not heard at {hz} Hz ({share:.3})",
                    listener.name()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn config(dir: &Path, sources: &str) -> Config {
        let text = format!("[general]\ndata_dir = \"{}\"\n{sources}", dir.display());
        Config::from_toml(&text, Path::new("test.toml")).expect("config")
    }

    fn tone(name: &str, hz: u32, extra: &str) -> String {
        format!(
            "[[external_audio]]\nname = \"{name}\"\nkind = \"tone\"\nfrequency_hz = {hz}\n{extra}"
        )
    }

    #[test]
    fn a_reload_changes_adds_and_removes_sources_without_moving_other_listeners() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clips = Arc::new(ClipCache::new(0));
        let first = config(
            dir.path(),
            &[
                tone("steady", 500, ""),
                tone("changing", 700, ""),
                tone("leaving", 900, "fallback = \"steady\"\n"),
            ]
            .concat(),
        );
        let sources = LiveSources::start(&first, &clips, None);
        let steady = sources.ring("steady").expect("steady").listen();
        let changing = sources.ring("changing").expect("changing").listen();
        let leaving = sources.ring("leaving").expect("leaving").listen();
        hears(&steady, 500.0).unwrap();
        hears(&changing, 700.0).unwrap();
        hears(&leaving, 900.0).unwrap();

        let second = config(
            dir.path(),
            &[
                tone("steady", 500, ""),
                tone("changing", 1100, "keep_warm = true\n"),
                tone("arriving", 1300, ""),
            ]
            .concat(),
        );
        let report = sources.reload(&second);
        assert_eq!(
            report,
            SourcesReload {
                added: vec!["arriving".into()],
                changed: vec!["changing".into()],
                removed: vec!["leaving".into()],
            }
        );
        // The same rings: listeners stay where they are and hear the new settings.
        assert!(Arc::ptr_eq(steady.ring(), &sources.ring("steady").unwrap()));
        assert!(Arc::ptr_eq(
            changing.ring(),
            &sources.ring("changing").unwrap()
        ));
        hears(&steady, 500.0).unwrap();
        hears(&changing, 1100.0).unwrap();
        // A removed source's listener hears its fallback, the steady source.
        hears(&leaving, 500.0).unwrap();
        assert!(
            sources.ring("leaving").is_none(),
            "removed sources take no new listeners"
        );
        assert_eq!(
            sources.status("steady").expect("steady").listeners,
            2,
            "the caller, and the removed source playing it"
        );
        let arriving = sources.listen("ARRIVING").expect("added");
        let Some(PlayItem::Live(arriving)) = arriving.last() else {
            panic!("a live item");
        };
        hears(arriving, 1300.0).unwrap();

        // Once its last listener has gone, the removed source is dropped at the next reload.
        drop(leaving);
        sources.reload(&second);
        assert!(sources.read().retired.is_empty());
        // A reload without changes touches nothing.
        assert_eq!(sources.reload(&second), SourcesReload::default());
        hears(&changing, 1100.0).unwrap();
    }
}
