//! Live sources: one producer thread per source encodes its audio once into a broadcast
//! ring that any number of pacing threads read at the current position.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use crate::{BLOCK_SAMPLES, Clip, ClipCache, Law, MediaError, SAMPLE_RATE, duration_of, g711};

/// Blocks in a ring: 512 × 10 ms = 5.12 s (a power of two, so a slot is a mask away).
const RING_BLOCKS: usize = 512;
const WORDS_PER_BLOCK: usize = BLOCK_SAMPLES / 8;
/// How far ahead of real time the producer keeps the ring written.
pub const LEAD: Duration = Duration::from_millis(200);
/// How much the producer writes per wake-up.
const BATCH: Duration = Duration::from_millis(20);
/// Silence played before retrying a playlist none of whose files could be decoded.
const PLAYLIST_RETRY: Duration = Duration::from_secs(10);
/// How often an idle producer looks for listeners, should a wake-up be missed.
const IDLE_CHECK: Duration = Duration::from_secs(1);
/// How long `spawn` waits for the producer's first write.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Broadcast ring of one live source: written once by its producer, read lock-free by any
/// number of pacing threads. Position is time: sample index since the ring's epoch
/// (`Instant`). The producer keeps the ring filled ahead of "now" by a lead (~200 ms).
pub struct LiveRing {
    name: String,
    epoch: Instant,
    /// Per slot: `block + 1` once block `block` is completely written there, 0 while a
    /// write is in progress (a seqlock whose sequence is the block index itself).
    seq: Box<[AtomicU64]>,
    ulaw: Box<[AtomicU64]>,
    alaw: Box<[AtomicU64]>,
    /// Samples written from the epoch on (the producer's head).
    head: AtomicU64,
    /// Listeners holding a [`LiveListener`] of this ring.
    listeners: AtomicUsize,
    /// The producer writes (it is not idle for want of listeners).
    active: AtomicBool,
    /// The producer thread, woken when the first listener arrives.
    producer: OnceLock<Thread>,
}

impl LiveRing {
    pub(crate) fn new(name: &str) -> LiveRing {
        let words = || {
            (0..RING_BLOCKS * WORDS_PER_BLOCK)
                .map(|_| AtomicU64::new(0))
                .collect()
        };
        LiveRing {
            name: name.to_string(),
            epoch: Instant::now(),
            seq: (0..RING_BLOCKS).map(|_| AtomicU64::new(0)).collect(),
            ulaw: words(),
            alaw: words(),
            head: AtomicU64::new(0),
            listeners: AtomicUsize::new(0),
            active: AtomicBool::new(true),
            producer: OnceLock::new(),
        }
    }

    /// A listener of this ring: while any exists the source runs (a lazily started source
    /// is woken by the first).
    pub fn listen(self: &Arc<Self>) -> LiveListener {
        if self.listeners.fetch_add(1, Ordering::AcqRel) == 0
            && let Some(producer) = self.producer.get()
        {
            producer.unpark();
        }
        LiveListener(Arc::clone(self))
    }

    /// How many listeners the ring has now.
    pub fn listeners(&self) -> usize {
        self.listeners.load(Ordering::Acquire)
    }

    /// False while the source is stopped for want of listeners.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The live source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The instant of sample 0.
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// The sample every listener hears at `t`.
    pub fn position_at(&self, t: Instant) -> u64 {
        let nanos = t.saturating_duration_since(self.epoch).as_nanos();
        u64::try_from(nanos * u128::from(SAMPLE_RATE) / 1_000_000_000).unwrap_or(u64::MAX)
    }

    /// The position up to which the producer has written.
    pub fn written_until(&self) -> u64 {
        self.head.load(Ordering::Acquire)
    }

    /// How many samples the ring holds: the furthest back a read can reach from the head.
    pub fn capacity_samples(&self) -> u64 {
        (RING_BLOCKS * BLOCK_SAMPLES) as u64
    }

    /// Copies `out.len()` samples at `pos` in `law`; false if not available (stale
    /// producer / overwritten) — the caller then sends silence.
    ///
    /// On false, `out` holds silence. Never locks, allocates or blocks.
    pub fn read(&self, law: Law, pos: u64, out: &mut [u8]) -> bool {
        let words = match law {
            Law::Pcmu => &self.ulaw,
            Law::Pcma => &self.alaw,
        };
        let mut pos = pos;
        let mut done = 0;
        while done < out.len() {
            let block = pos / BLOCK_SAMPLES as u64;
            let offset = (pos % BLOCK_SAMPLES as u64) as usize;
            let n = (BLOCK_SAMPLES - offset).min(out.len() - done);
            let slot = (block as usize) & (RING_BLOCKS - 1);
            let want = block + 1;
            if self.seq[slot].load(Ordering::Acquire) != want {
                out.fill(law.silence());
                return false;
            }
            let mut bytes = [0u8; BLOCK_SAMPLES];
            let first = offset / 8;
            let last = (offset + n - 1) / 8;
            let base = slot * WORDS_PER_BLOCK;
            for w in first..=last {
                let word = words[base + w].load(Ordering::Relaxed);
                bytes[w * 8..w * 8 + 8].copy_from_slice(&word.to_le_bytes());
            }
            // Pairs with the producer's release fence: if any word above came from a
            // newer write, the sequence check below sees that write's marker.
            fence(Ordering::Acquire);
            if self.seq[slot].load(Ordering::Relaxed) != want {
                out.fill(law.silence());
                return false;
            }
            out[done..done + n].copy_from_slice(&bytes[offset..offset + n]);
            done += n;
            pos += n as u64;
        }
        true
    }

    /// Stores one block (encoding it if needed). Only the ring's single producer calls this.
    pub(crate) fn write(&self, block: u64, audio: &mut LiveBlock) {
        audio.encode();
        let slot = (block as usize) & (RING_BLOCKS - 1);
        self.seq[slot].store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        let base = slot * WORDS_PER_BLOCK;
        for (w, (u, a)) in audio
            .ulaw
            .chunks_exact(8)
            .zip(audio.alaw.chunks_exact(8))
            .enumerate()
        {
            let mut uw = [0u8; 8];
            uw.copy_from_slice(u);
            let mut aw = [0u8; 8];
            aw.copy_from_slice(a);
            self.ulaw[base + w].store(u64::from_le_bytes(uw), Ordering::Relaxed);
            self.alaw[base + w].store(u64::from_le_bytes(aw), Ordering::Relaxed);
        }
        self.seq[slot].store(block + 1, Ordering::Release);
    }
}

impl std::fmt::Debug for LiveRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveRing")
            .field("name", &self.name)
            .field("written_until", &self.written_until())
            .finish()
    }
}

/// One listener of a live source (a caller's play plan, another source playing it as its
/// fallback): reads the ring like an `Arc<LiveRing>`, and counts as a listener until
/// dropped. A source with `idle_stop` runs only while it has listeners.
pub struct LiveListener(Arc<LiveRing>);

impl LiveListener {
    /// The ring listened to.
    pub fn ring(&self) -> &Arc<LiveRing> {
        &self.0
    }
}

impl std::ops::Deref for LiveListener {
    type Target = LiveRing;

    fn deref(&self) -> &LiveRing {
        &self.0
    }
}

impl Clone for LiveListener {
    fn clone(&self) -> Self {
        self.0.listen()
    }
}

impl Drop for LiveListener {
    fn drop(&mut self) {
        self.0.listeners.fetch_sub(1, Ordering::AcqRel);
    }
}

impl std::fmt::Debug for LiveListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("LiveListener").field(&self.0.name).finish()
    }
}

/// 10 ms of live audio: the linear samples a [`LiveFeed`] writes, and their G.711 codes in
/// both laws, which the producer makes once per block for every listener.
///
/// Feeds write linear samples ([`set_pcm`](LiveBlock::set_pcm),
/// [`pcm_mut`](LiveBlock::pcm_mut)), so that processing wrapped around a feed (gain,
/// loudness, filters, see [`ProcessedFeed`](crate::ProcessedFeed)) sees them; a feed that
/// has G.711 codes already (a decoded clip) copies them with
/// [`copy_g711`](LiveBlock::copy_g711), which keeps the codes as they are unless something
/// changes the samples afterwards.
#[derive(Clone, Debug)]
pub struct LiveBlock {
    /// Linear samples, full scale ±1.0.
    pcm: [f32; BLOCK_SAMPLES],
    /// μ-law codes of `pcm`, once `encoded`.
    ulaw: [u8; BLOCK_SAMPLES],
    /// A-law codes of `pcm`, once `encoded`.
    alaw: [u8; BLOCK_SAMPLES],
    /// `ulaw` and `alaw` are the codes of `pcm`.
    encoded: bool,
}

impl LiveBlock {
    /// A block of silence.
    pub fn silence() -> LiveBlock {
        LiveBlock {
            pcm: [0.0; BLOCK_SAMPLES],
            ulaw: [Law::Pcmu.silence(); BLOCK_SAMPLES],
            alaw: [Law::Pcma.silence(); BLOCK_SAMPLES],
            encoded: true,
        }
    }

    /// Makes the whole block silence.
    pub fn set_silence(&mut self) {
        self.fill_silence(0);
    }

    /// Makes samples `from..` silence, leaving the ones before as they are.
    pub fn fill_silence(&mut self, from: usize) {
        self.pcm[from..].fill(0.0);
        self.ulaw[from..].fill(Law::Pcmu.silence());
        self.alaw[from..].fill(Law::Pcma.silence());
    }

    /// Sets the block's 80 linear samples (full scale ±1.0); they are encoded later, once.
    pub fn set_pcm(&mut self, samples: &[f32; BLOCK_SAMPLES]) {
        self.pcm = *samples;
        self.encoded = false;
    }

    /// The block's linear samples.
    pub fn pcm(&self) -> &[f32; BLOCK_SAMPLES] {
        &self.pcm
    }

    /// The block's linear samples, to change in place (the block is encoded again).
    pub fn pcm_mut(&mut self) -> &mut [f32; BLOCK_SAMPLES] {
        self.encoded = false;
        &mut self.pcm
    }

    /// Copies G.711 codes (of the same audio in both laws, e.g. a [`Clip`]'s) to samples
    /// `at..at + ulaw.len()`; the linear samples there become the μ-law codes' values.
    pub fn copy_g711(&mut self, at: usize, ulaw: &[u8], alaw: &[u8]) {
        let end = at + ulaw.len();
        self.ulaw[at..end].copy_from_slice(ulaw);
        self.alaw[at..end].copy_from_slice(alaw);
        for (x, &code) in self.pcm[at..end].iter_mut().zip(ulaw) {
            *x = f32::from(g711::ulaw_decode(code)) / 32768.0;
        }
    }

    /// Encodes the linear samples in both laws unless the codes are current.
    pub fn encode(&mut self) {
        if !self.encoded {
            g711::encode_f32(Law::Pcmu, &self.pcm, &mut self.ulaw);
            g711::encode_f32(Law::Pcma, &self.pcm, &mut self.alaw);
            self.encoded = true;
        }
    }

    /// The block's codes in `law` (encoding first if the samples changed).
    pub fn g711(&mut self, law: Law) -> &[u8; BLOCK_SAMPLES] {
        self.encode();
        match law {
            Law::Pcmu => &self.ulaw,
            Law::Pcma => &self.alaw,
        }
    }
}

/// File name extensions a live playlist folder is read for.
pub const PLAYLIST_EXTENSIONS: [&str; 7] = ["wav", "mp3", "flac", "ogg", "oga", "ul", "al"];

/// The audio files of `folder` (by extension, [`PLAYLIST_EXTENSIONS`]), sorted by name.
pub fn list_audio_files(folder: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(folder)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| PLAYLIST_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// The audio of a live source, 10 ms at a time, produced ahead of real time.
pub trait LiveFeed: Send + 'static {
    /// Overwrites `block` with the next 10 ms. Runs on the producer thread and must not
    /// block for long: slow work (decoding, network) belongs on another thread.
    fn next_block(&mut self, block: &mut LiveBlock);

    /// The source stops (`false`: its last listener left `idle_stop` ago) or starts again
    /// (`true`: a listener arrived). A feed fed from outside lets its upstream go while
    /// nobody listens; a wrapper passes this on to what it wraps.
    fn set_listened(&mut self, listened: bool) {
        let _ = listened;
    }
}

/// What a live source plays.
#[derive(Clone, Debug, PartialEq)]
pub enum LiveSpec {
    /// A continuous sine.
    Tone {
        /// Frequency, 0 < f < 4000 Hz.
        frequency_hz: f64,
        /// Peak level relative to full scale, ≤ 0 dBFS.
        level_dbfs: f64,
    },
    /// Files in order, looping; reshuffled before every round when `shuffle`.
    Playlist {
        /// The files, and `http(s)://` URIs held as their text ([`is_http_entry`]), played
        /// through the fetcher given to [`LiveSpec::into_feed_fetching`]; entries that
        /// cannot be had or decoded are logged and skipped.
        files: Vec<PathBuf>,
        /// Play each round in a new random order.
        shuffle: bool,
        /// The folder the files were listed from, if any: listed again ([`list_audio_files`])
        /// at the end of every round, and every 10 s while it holds no file, so that files
        /// added or removed there are picked up without a restart.
        folder: Option<PathBuf>,
    },
    /// Digital silence.
    Silence,
}

impl LiveSpec {
    /// The feed that plays this spec, for [`LiveSource::spawn_feed`] — possibly wrapped
    /// first (e.g. in a [`ProcessedFeed`](crate::ProcessedFeed)). `name` names the source in
    /// errors and logs.
    pub fn into_feed(
        self,
        name: &str,
        cache: Arc<ClipCache>,
    ) -> Result<Box<dyn LiveFeed>, MediaError> {
        self.into_feed_fetching(name, cache, None)
    }

    /// As [`into_feed`](LiveSpec::into_feed), for a playlist whose entries may be
    /// `http(s)://` URIs ([`is_http_entry`]), played through `fetcher`; without one they
    /// are skipped as unsupported.
    pub fn into_feed_fetching(
        self,
        name: &str,
        cache: Arc<ClipCache>,
        fetcher: Option<ClipFetcher>,
    ) -> Result<Box<dyn LiveFeed>, MediaError> {
        let invalid = |detail: String| MediaError::InvalidSource {
            name: name.to_string(),
            detail,
        };
        Ok(match self {
            LiveSpec::Tone {
                frequency_hz,
                level_dbfs,
            } => {
                if !(frequency_hz > 0.0 && frequency_hz < f64::from(SAMPLE_RATE) / 2.0) {
                    return Err(invalid(format!(
                        "tone frequency {frequency_hz} Hz is outside 0-4000 Hz"
                    )));
                }
                if !(level_dbfs.is_finite() && level_dbfs <= 0.0) {
                    return Err(invalid(format!(
                        "tone level {level_dbfs} dBFS must be at most 0 dBFS"
                    )));
                }
                Box::new(ToneFeed::new(frequency_hz, level_dbfs))
            }
            LiveSpec::Silence => Box::new(SilenceFeed),
            LiveSpec::Playlist {
                files,
                shuffle,
                folder,
            } => {
                if files.is_empty() {
                    tracing::warn!(source = name, "live playlist has no files; playing silence");
                }
                Box::new(PlaylistFeed::start(
                    name, files, shuffle, folder, cache, fetcher,
                )?)
            }
        })
    }
}

/// Fetches the audio of an `http://` or `https://` URI as a clip (the server's HTTP audio
/// fetcher, with its caches and host allowlist); the error says why it could not.
pub type ClipFetcher = Arc<dyn Fn(&str) -> Result<Arc<Clip>, String> + Send + Sync>;

/// Whether a playlist entry is an `http://` or `https://` URI rather than a file.
pub fn is_http_entry(entry: &std::path::Path) -> bool {
    entry.to_str().is_some_and(|e| {
        let lower = e.get(..8).unwrap_or(e).to_ascii_lowercase();
        lower.starts_with("http://") || lower.starts_with("https://")
    })
}

/// A feed handed to a running producer, which plays it from its next block on.
type FeedSlot = Arc<Mutex<Option<Box<dyn LiveFeed>>>>;

/// A running live source: a std thread decoding/encoding once into its ring. Stops on drop.
pub struct LiveSource {
    ring: Arc<LiveRing>,
    stop: Arc<AtomicBool>,
    next_feed: FeedSlot,
    /// `idle_stop` in milliseconds; `KEEP_WARM` for none.
    idle_stop_ms: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl LiveSource {
    /// Starts the producer of `spec`. Returns once the ring is readable at the current
    /// position (a playlist plays silence until its first file is decoded).
    pub fn spawn(
        name: &str,
        spec: LiveSpec,
        cache: Arc<ClipCache>,
    ) -> Result<LiveSource, MediaError> {
        LiveSource::spawn_feed(name, spec.into_feed(name, cache)?)
    }

    /// Starts a producer for any feed (for sources this crate does not decode itself). It
    /// runs whether anybody listens or not.
    pub fn spawn_feed(name: &str, feed: Box<dyn LiveFeed>) -> Result<LiveSource, MediaError> {
        LiveSource::spawn_lazy(name, feed, None)
    }

    /// Starts a producer that runs only while the source has listeners
    /// ([`LiveRing::listen`]) when `idle_stop` is set: it starts stopped, starts when the
    /// first listener arrives, and stops again once the last has been gone for
    /// `idle_stop`. With `None` it runs from now on, listeners or not.
    pub fn spawn_lazy(
        name: &str,
        feed: Box<dyn LiveFeed>,
        idle_stop: Option<Duration>,
    ) -> Result<LiveSource, MediaError> {
        let ring = Arc::new(LiveRing::new(name));
        let stop = Arc::new(AtomicBool::new(false));
        let next_feed: FeedSlot = Arc::new(Mutex::new(None));
        let idle_stop_ms = Arc::new(AtomicU64::new(idle_stop_to_ms(idle_stop)));
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("live-{name}"))
            .spawn({
                let ring = Arc::clone(&ring);
                let stop = Arc::clone(&stop);
                let next_feed = Arc::clone(&next_feed);
                let idle_stop_ms = Arc::clone(&idle_stop_ms);
                move || {
                    let producer = Producer {
                        ring: &ring,
                        stop: &stop,
                        next_feed: &next_feed,
                        idle_stop_ms: &idle_stop_ms,
                    };
                    producer.run(feed, ready_tx);
                }
            })
            .map_err(|source| MediaError::Spawn {
                name: name.to_string(),
                source,
            })?;
        if ready_rx.recv_timeout(READY_TIMEOUT).is_err() {
            tracing::warn!(source = name, "live source producer is slow to start");
        }
        tracing::info!(source = name, "live source started");
        Ok(LiveSource {
            ring,
            stop,
            next_feed,
            idle_stop_ms,
            thread: Some(thread),
        })
    }

    /// The ring listeners read.
    pub fn ring(&self) -> Arc<LiveRing> {
        Arc::clone(&self.ring)
    }

    /// Plays `feed` from the next block on instead of the current one, which is dropped on
    /// the producer thread: listeners stay on the same ring and do not miss a packet (a
    /// source reconfigured at run time, or removed while callers still listen).
    pub fn replace_feed(&self, feed: Box<dyn LiveFeed>) {
        let old = self
            .next_feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(feed);
        drop(old);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }

    /// Changes how long the source runs without listeners (`None`: it runs from now on,
    /// listeners or not).
    pub fn set_idle_stop(&self, idle_stop: Option<Duration>) {
        self.idle_stop_ms
            .store(idle_stop_to_ms(idle_stop), Ordering::Release);
        if let Some(thread) = &self.thread {
            thread.thread().unpark();
        }
    }
}

/// `idle_stop_ms` of a source kept warm.
const KEEP_WARM: u64 = u64::MAX;

fn idle_stop_to_ms(idle_stop: Option<Duration>) -> u64 {
    idle_stop.map_or(KEEP_WARM, |d| {
        u64::try_from(d.as_millis()).unwrap_or(KEEP_WARM - 1)
    })
}

impl Drop for LiveSource {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            if thread.join().is_err() {
                tracing::error!(source = self.ring.name(), "live source producer panicked");
            }
        }
        tracing::info!(source = self.ring.name(), "live source stopped");
    }
}

impl std::fmt::Debug for LiveSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSource")
            .field("ring", &self.ring)
            .finish()
    }
}

/// A source's producer thread.
struct Producer<'a> {
    ring: &'a LiveRing,
    stop: &'a AtomicBool,
    next_feed: &'a FeedSlot,
    idle_stop_ms: &'a AtomicU64,
}

impl Producer<'_> {
    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn idle_stop(&self) -> Option<Duration> {
        match self.idle_stop_ms.load(Ordering::Acquire) {
            KEEP_WARM => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// Keeps blocks `[now, now + LEAD]` written, waking every `BATCH`; stops for want of
    /// listeners when the source has an `idle_stop`.
    fn run(&self, mut feed: Box<dyn LiveFeed>, ready: Sender<()>) {
        let ring = self.ring;
        let _ = ring.producer.set(std::thread::current());
        let block_samples = BLOCK_SAMPLES as u64;
        let lead = crate::samples_in(LEAD);
        let batch = crate::samples_in(BATCH);
        let mut block = LiveBlock::silence();
        let mut next: u64 = 0;
        let mut ready = Some(ready);
        // When the last listener left; a lazy source starts stopped.
        let mut unheard_since: Option<Instant> = None;
        let mut not_yet_heard = self.idle_stop().is_some();
        while !self.stopping() {
            if let Some(replacement) = self.take_next_feed() {
                feed = replacement;
            }
            if let Some(idle_stop) = self.idle_stop() {
                if ring.listeners() > 0 {
                    unheard_since = None;
                    not_yet_heard = false;
                } else if not_yet_heard
                    || unheard_since.get_or_insert_with(Instant::now).elapsed() >= idle_stop
                {
                    not_yet_heard = false;
                    if let Some(tx) = ready.take() {
                        let _ = tx.send(());
                    }
                    feed = self.idle(feed);
                    unheard_since = None;
                    // Listeners start at the present; the blocks of the pause are gone.
                    next = ring.position_at(Instant::now()) / block_samples;
                    continue;
                }
            }
            let now = ring.position_at(Instant::now());
            let now_block = now / block_samples;
            if next < now_block {
                // Fell behind (the machine stalled): resume at the present, radio-style.
                tracing::warn!(
                    source = ring.name(),
                    behind_ms = (now_block - next) * 10,
                    "live source producer fell behind real time"
                );
                next = now_block;
            }
            let target = (now + lead).div_ceil(block_samples);
            while next < target {
                feed.next_block(&mut block);
                ring.write(next, &mut block);
                next += 1;
                ring.head.store(next * block_samples, Ordering::Release);
            }
            if let Some(tx) = ready.take() {
                let _ = tx.send(());
            }
            // Sleep until the lead has shrunk by one batch.
            let wake =
                ring.epoch + duration_of((next * block_samples + batch).saturating_sub(lead));
            loop {
                let now = Instant::now();
                if now >= wake || self.stopping() {
                    break;
                }
                std::thread::park_timeout(wake - now);
            }
        }
    }

    fn take_next_feed(&self) -> Option<Box<dyn LiveFeed>> {
        self.next_feed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }

    /// Stopped for want of listeners: the feed lets its upstream go, and the thread sleeps
    /// until a listener arrives (or the source stops). Returns the feed to play then.
    fn idle(&self, mut feed: Box<dyn LiveFeed>) -> Box<dyn LiveFeed> {
        let ring = self.ring;
        feed.set_listened(false);
        ring.active.store(false, Ordering::Release);
        tracing::info!(source = ring.name(), "live source idle: no listeners");
        while !self.stopping() && ring.listeners() == 0 && self.idle_stop().is_some() {
            if let Some(replacement) = self.take_next_feed() {
                feed = replacement;
                feed.set_listened(false);
            }
            std::thread::park_timeout(IDLE_CHECK);
        }
        if self.stopping() {
            return feed;
        }
        if let Some(replacement) = self.take_next_feed() {
            feed = replacement;
        }
        ring.active.store(true, Ordering::Release);
        feed.set_listened(true);
        tracing::info!(source = ring.name(), "live source starts again");
        feed
    }
}

struct SilenceFeed;

impl LiveFeed for SilenceFeed {
    fn next_block(&mut self, block: &mut LiveBlock) {
        block.set_silence();
    }
}

struct ToneFeed {
    amplitude: f64,
    /// Phase in cycles, kept in [0, 1) so precision never degrades.
    phase: f64,
    step: f64,
}

impl ToneFeed {
    fn new(frequency_hz: f64, level_dbfs: f64) -> ToneFeed {
        ToneFeed {
            amplitude: 10f64.powf(level_dbfs / 20.0),
            phase: 0.0,
            step: frequency_hz / f64::from(SAMPLE_RATE),
        }
    }
}

impl LiveFeed for ToneFeed {
    fn next_block(&mut self, block: &mut LiveBlock) {
        let mut pcm = [0f32; BLOCK_SAMPLES];
        for s in &mut pcm {
            *s = (self.amplitude * (std::f64::consts::TAU * self.phase).sin()) as f32;
            self.phase = (self.phase + self.step).fract();
        }
        block.set_pcm(&pcm);
    }
}

/// Plays files in order, decoding the next one on a loader thread while the current plays.
struct PlaylistFeed {
    name: String,
    files: Vec<PathBuf>,
    /// Listed again at the end of every round (see [`LiveSpec::Playlist`]).
    folder: Option<PathBuf>,
    /// Blocks until an empty folder is listed again.
    rescan_blocks: u64,
    shuffle: bool,
    order: Vec<usize>,
    /// Position in `order` of the file the loader was last asked for.
    requested: usize,
    playing: Option<(Arc<Clip>, usize)>,
    load_tx: Sender<PathBuf>,
    loaded_rx: Receiver<(PathBuf, Result<Arc<Clip>, MediaError>)>,
    /// A load is outstanding.
    loading: bool,
    /// Files that played in the current round.
    played_in_round: usize,
    /// Blocks of silence left before retrying a playlist that had nothing playable.
    backoff_blocks: u64,
    rng: u64,
}

impl PlaylistFeed {
    fn start(
        name: &str,
        files: Vec<PathBuf>,
        shuffle: bool,
        folder: Option<PathBuf>,
        cache: Arc<ClipCache>,
        fetcher: Option<ClipFetcher>,
    ) -> Result<PlaylistFeed, MediaError> {
        let (load_tx, load_rx) = mpsc::channel::<PathBuf>();
        let (loaded_tx, loaded_rx) = mpsc::channel();
        // The loader exits when the feed drops its sender; a decode in progress then
        // finishes first, so the thread is left to end on its own rather than joined.
        std::thread::Builder::new()
            .name(format!("live-{name}-loader"))
            .spawn(move || {
                for path in load_rx {
                    let result = if is_http_entry(&path) {
                        match &fetcher {
                            Some(fetch) => fetch(&path.to_string_lossy()).map_err(|detail| {
                                MediaError::Decode {
                                    path: path.clone(),
                                    detail,
                                }
                            }),
                            None => Err(MediaError::Unsupported {
                                path: path.clone(),
                                detail: "no HTTP(S) fetcher for this playlist".into(),
                            }),
                        }
                    } else {
                        cache.get(&path)
                    };
                    if loaded_tx.send((path, result)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| MediaError::Spawn {
                name: name.to_string(),
                source,
            })?;
        let mut feed = PlaylistFeed {
            name: name.to_string(),
            order: (0..files.len()).collect(),
            files,
            folder,
            rescan_blocks: 0,
            shuffle,
            requested: 0,
            playing: None,
            load_tx,
            loaded_rx,
            loading: false,
            played_in_round: 0,
            backoff_blocks: 0,
            rng: RandomState::new().hash_one(name) | 1,
        };
        if feed.shuffle {
            feed.reshuffle();
        }
        if !feed.files.is_empty() {
            feed.request(0);
        }
        Ok(feed)
    }

    fn request(&mut self, index: usize) {
        self.requested = index;
        let path = self.files[self.order[index]].clone();
        self.loading = self.load_tx.send(path).is_ok();
    }

    /// Asks for the file after the last requested one, starting a new round at the end.
    fn request_following(&mut self) {
        let mut index = self.requested + 1;
        if index >= self.order.len() {
            index = 0;
            if self.played_in_round == 0 {
                tracing::warn!(
                    source = %self.name,
                    retry_s = PLAYLIST_RETRY.as_secs(),
                    "no file of the live playlist could be played; playing silence"
                );
                self.backoff_blocks = crate::samples_in(PLAYLIST_RETRY) / BLOCK_SAMPLES as u64;
            }
            self.played_in_round = 0;
            let last = self.files[self.order[self.requested]].clone();
            self.rescan();
            if self.files.is_empty() {
                self.loading = false;
                return;
            }
            if self.shuffle {
                self.reshuffle();
                // Never the same file twice in a row across rounds.
                if self.order.len() > 1 && self.files[self.order[0]] == last {
                    let end = self.order.len() - 1;
                    self.order.swap(0, end);
                }
            }
        }
        self.request(index);
    }

    /// Lists the folder again; a changed list replaces the files (a new round starts with
    /// it). Keeps the old list when the folder cannot be read.
    fn rescan(&mut self) {
        let Some(folder) = &self.folder else {
            return;
        };
        match list_audio_files(folder) {
            Ok(files) if files != self.files => {
                let added = files.iter().filter(|f| !self.files.contains(f)).count();
                let removed = self.files.iter().filter(|f| !files.contains(f)).count();
                tracing::info!(source = %self.name, added, removed, files = files.len(), "live playlist folder changed");
                self.order = (0..files.len()).collect();
                self.files = files;
                self.requested = 0;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(source = %self.name, folder = %folder.display(), error = %e, "cannot list the live playlist folder; keeping its files");
            }
        }
    }

    fn reshuffle(&mut self) {
        for i in (1..self.order.len()).rev() {
            let j = (self.random() % (i as u64 + 1)) as usize;
            self.order.swap(i, j);
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: plenty for choosing a play order.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next clip if the loader has one ready.
    fn poll_loaded(&mut self) -> Option<Arc<Clip>> {
        if !self.loading || self.backoff_blocks > 0 {
            return None;
        }
        match self.loaded_rx.try_recv() {
            Ok((path, Ok(clip))) => {
                self.loading = false;
                if clip.content_samples() == 0 {
                    tracing::warn!(source = %self.name, path = %path.display(), "live playlist file holds no audio; skipped");
                    self.request_following();
                    return None;
                }
                self.played_in_round += 1;
                Some(clip)
            }
            Ok((path, Err(e))) => {
                self.loading = false;
                tracing::warn!(source = %self.name, path = %path.display(), error = %e, "live playlist file skipped");
                self.request_following();
                None
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.loading = false;
                None
            }
        }
    }
}

impl LiveFeed for PlaylistFeed {
    fn next_block(&mut self, block: &mut LiveBlock) {
        if self.files.is_empty() && self.folder.is_some() {
            // An empty folder: look again now and then.
            if self.rescan_blocks == 0 {
                self.rescan_blocks = crate::samples_in(PLAYLIST_RETRY) / BLOCK_SAMPLES as u64;
                self.rescan();
                if !self.files.is_empty() {
                    if self.shuffle {
                        self.reshuffle();
                    }
                    self.request(0);
                }
            }
            self.rescan_blocks -= 1;
        }
        if self.backoff_blocks > 0 {
            self.backoff_blocks -= 1;
            block.set_silence();
            return;
        }
        let mut filled = 0;
        while filled < BLOCK_SAMPLES {
            if let Some((clip, pos)) = &mut self.playing {
                let n = (clip.content_samples() - *pos).min(BLOCK_SAMPLES - filled);
                if n > 0 {
                    let end = *pos + n;
                    block.copy_g711(
                        filled,
                        &clip.bytes(Law::Pcmu)[*pos..end],
                        &clip.bytes(Law::Pcma)[*pos..end],
                    );
                    *pos = end;
                    filled += n;
                    continue;
                }
                self.playing = None;
            }
            match self.poll_loaded() {
                Some(clip) => {
                    self.playing = Some((clip, 0));
                    // Decode the next file while this one plays.
                    self.request_following();
                }
                None => {
                    block.fill_silence(filled);
                    filled = BLOCK_SAMPLES;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A block whose bytes identify their absolute position: byte `i` of block `b` is
    /// `(b * 80 + i) mod 251` in μ-law and its complement in A-law.
    fn marked(block: u64) -> LiveBlock {
        let mut b = LiveBlock::silence();
        for i in 0..BLOCK_SAMPLES {
            let v = ((block * BLOCK_SAMPLES as u64 + i as u64) % 251) as u8;
            b.ulaw[i] = v;
            b.alaw[i] = !v;
        }
        b
    }

    fn expected(law: Law, pos: u64) -> u8 {
        let v = (pos % 251) as u8;
        if law == Law::Pcmu { v } else { !v }
    }

    #[test]
    fn reads_across_blocks_at_any_offset() {
        let ring = LiveRing::new("test");
        for b in 0..10 {
            ring.write(b, &mut marked(b));
        }
        for law in [Law::Pcmu, Law::Pcma] {
            for (pos, len) in [(0, 80), (37, 160), (79, 2), (1, 480), (320, 1), (5, 0)] {
                let mut out = vec![0u8; len];
                assert!(ring.read(law, pos, &mut out), "{pos}+{len}");
                for (i, &b) in out.iter().enumerate() {
                    assert_eq!(
                        b,
                        expected(law, pos + i as u64),
                        "{law:?} at {}",
                        pos + i as u64
                    );
                }
            }
        }
        // Beyond what was written: not available, and the caller gets silence.
        let mut out = vec![0u8; 160];
        assert!(!ring.read(Law::Pcmu, 720, &mut out));
        assert!(out.iter().all(|&b| b == 0xFF));
        assert!(!ring.read(Law::Pcma, 799, &mut out[..2]));
        assert!(out[..2].iter().all(|&b| b == 0xD5));
        // Overwritten: block 512 shares block 0's slot.
        ring.write(RING_BLOCKS as u64, &mut marked(RING_BLOCKS as u64));
        assert!(!ring.read(Law::Pcmu, 0, &mut out));
        assert!(ring.read(Law::Pcmu, RING_BLOCKS as u64 * 80, &mut out[..80]));
    }

    #[test]
    fn position_is_time_since_epoch() {
        let ring = LiveRing::new("clock");
        assert_eq!(ring.position_at(ring.epoch()), 0);
        assert_eq!(
            ring.position_at(ring.epoch() + Duration::from_secs(1)),
            8000
        );
        assert_eq!(
            ring.position_at(ring.epoch() + Duration::from_micros(20_125)),
            161
        );
        assert_eq!(ring.position_at(ring.epoch() - Duration::from_secs(1)), 0);
    }

    #[test]
    fn concurrent_readers_never_see_torn_blocks() {
        let ring = Arc::new(LiveRing::new("race"));
        let stop = Arc::new(AtomicBool::new(false));
        let head = Arc::new(AtomicU64::new(0));
        let writer = {
            let (ring, stop, head) = (Arc::clone(&ring), Arc::clone(&stop), Arc::clone(&head));
            std::thread::spawn(move || {
                let mut b = 0;
                while !stop.load(Ordering::Relaxed) {
                    ring.write(b, &mut marked(b));
                    b += 1;
                    head.store(b, Ordering::Release);
                }
            })
        };
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (ring, head) = (Arc::clone(&ring), Arc::clone(&head));
                std::thread::spawn(move || {
                    let (mut ok, mut missed) = (0u64, 0u64);
                    let mut out = [0u8; 240];
                    let start = Instant::now();
                    let mut k = r as u64;
                    while start.elapsed() < Duration::from_millis(300) {
                        let h = head.load(Ordering::Acquire);
                        // Around the oldest slots, which the writer is overwriting.
                        let back = (RING_BLOCKS as u64 - 1) * 80 - (k * 7) % 200;
                        let pos = (h * 80).saturating_sub(back);
                        k += 1;
                        let law = if k.is_multiple_of(2) {
                            Law::Pcmu
                        } else {
                            Law::Pcma
                        };
                        if ring.read(law, pos, &mut out) {
                            ok += 1;
                            for (i, &b) in out.iter().enumerate() {
                                assert_eq!(
                                    b,
                                    expected(law, pos + i as u64),
                                    "torn read at {}",
                                    pos + i as u64
                                );
                            }
                        } else {
                            missed += 1;
                        }
                    }
                    (ok, missed)
                })
            })
            .collect();
        let mut total_ok = 0;
        for r in readers {
            total_ok += r.join().unwrap().0;
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert!(total_ok > 1000, "only {total_ok} successful reads");
    }

    fn tone_power(bytes: &[u8], law: Law, freq: f64, start: u64) -> (f64, f64) {
        // Correlation with a sine and a cosine at `freq`: amplitude and rms of the rest.
        let (mut s, mut c, mut p) = (0.0, 0.0, 0.0);
        for (i, &b) in bytes.iter().enumerate() {
            let x = f64::from(law.decode(b)) / 32768.0;
            let w = std::f64::consts::TAU * freq * (start + i as u64) as f64 / 8000.0;
            s += x * w.sin();
            c += x * w.cos();
            p += x * x;
        }
        let n = bytes.len() as f64;
        let amp = 2.0 * s.hypot(c) / n;
        let residual = (p / n - amp * amp / 2.0).max(0.0).sqrt();
        (amp, residual)
    }

    #[test]
    fn tone_source_is_readable_at_once_and_stays_ahead() {
        let cache = Arc::new(ClipCache::new(1 << 20));
        let spec = LiveSpec::Tone {
            frequency_hz: 1000.0,
            level_dbfs: -6.0,
        };
        let source = LiveSource::spawn("tone", spec, cache).unwrap();
        let ring = source.ring();
        assert_eq!(ring.name(), "tone");
        let mut out = [0u8; 800];
        let deadline = Instant::now() + Duration::from_millis(400);
        let mut checks = 0;
        while Instant::now() < deadline {
            let now = Instant::now();
            let pos = ring.position_at(now);
            assert!(
                ring.read(Law::Pcmu, pos, &mut out[..160]),
                "not readable at {pos}"
            );
            let lead = ring.written_until().saturating_sub(pos);
            // About LEAD (1600 samples) minus what one BATCH consumed; generous for loaded hosts.
            assert!((160..=2400).contains(&lead), "lead {lead} samples");
            checks += 1;
            std::thread::sleep(Duration::from_millis(15));
        }
        assert!(checks >= 10);
        let pos = ring.position_at(Instant::now());
        for law in [Law::Pcmu, Law::Pcma] {
            assert!(ring.read(law, pos, &mut out));
            let (amp, residual) = tone_power(&out, law, 1000.0, pos);
            assert!((amp - 0.501).abs() < 0.01, "{law:?} amplitude {amp}");
            assert!(residual < 0.01, "{law:?} residual {residual}");
        }
        drop(source);
        let head = ring.written_until();
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            ring.written_until(),
            head,
            "producer still running after drop"
        );
    }

    #[test]
    fn invalid_tones_are_refused() {
        let cache = Arc::new(ClipCache::new(1 << 20));
        for (f, l) in [(0.0, -6.0), (4000.0, -6.0), (f64::NAN, -6.0), (440.0, 3.0)] {
            let spec = LiveSpec::Tone {
                frequency_hz: f,
                level_dbfs: l,
            };
            let err = LiveSource::spawn("bad", spec, Arc::clone(&cache)).unwrap_err();
            assert!(matches!(err, MediaError::InvalidSource { .. }), "{err}");
            assert!(err.to_string().contains("bad"), "{err}");
        }
    }

    #[test]
    fn silence_source_plays_silence() {
        let source =
            LiveSource::spawn("quiet", LiveSpec::Silence, Arc::new(ClipCache::new(0))).unwrap();
        let ring = source.ring();
        let mut out = [0u8; 160];
        assert!(ring.read(Law::Pcma, ring.position_at(Instant::now()), &mut out));
        assert!(out.iter().all(|&b| b == 0xD5));
    }

    fn write_level(path: &Path, level: f32, samples: usize) {
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for _ in 0..samples {
            w.write_sample((level * 32768.0) as i16).unwrap();
        }
        w.finalize().unwrap();
    }

    /// Runs of equal non-silent μ-law codes in what the feed plays, as (code, length).
    fn runs(feed: &mut PlaylistFeed, blocks: usize) -> Vec<(u8, usize)> {
        let mut block = LiveBlock::silence();
        let mut runs: Vec<(u8, usize)> = Vec::new();
        for _ in 0..blocks {
            feed.next_block(&mut block);
            for &b in block.g711(Law::Pcmu) {
                if b == 0xFF {
                    continue;
                }
                match runs.last_mut() {
                    Some((code, n)) if *code == b => *n += 1,
                    _ => runs.push((b, 1)),
                }
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        runs
    }

    #[test]
    fn playlist_plays_in_order_skips_broken_files_and_loops() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.wav");
        let b = dir.path().join("b.wav");
        let broken = dir.path().join("broken.mp3");
        write_level(&a, 0.25, 800);
        write_level(&b, -0.5, 440);
        std::fs::write(&broken, b"no audio here").unwrap();
        let files = vec![a, broken, dir.path().join("missing.wav"), b];
        let cache = Arc::new(ClipCache::new(1 << 20));
        let mut feed = PlaylistFeed::start("moh", files, false, None, cache, None).unwrap();
        let got = runs(&mut feed, 200);
        let ua = g711::ulaw_encode(8192);
        let ub = g711::ulaw_encode(-16384);
        assert!(got.len() >= 4, "{got:?}");
        for (i, run) in got.iter().take(got.len() - 1).enumerate() {
            let want = if i % 2 == 0 { (ua, 800) } else { (ub, 440) };
            assert_eq!(*run, want, "run {i} of {got:?}");
        }
    }

    #[test]
    fn playlist_entries_may_be_http_uris_played_through_the_fetcher() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.wav");
        write_level(&a, 0.25, 800);
        let asked = Arc::new(Mutex::new(Vec::<String>::new()));
        let fetcher: ClipFetcher = {
            let asked = Arc::clone(&asked);
            Arc::new(move |uri: &str| {
                asked.lock().unwrap().push(uri.to_string());
                if uri.ends_with("/b.wav") {
                    Ok(Arc::new(Clip::from_samples_8k(&[-0.5; 440])))
                } else {
                    Err("404 Not Found".into())
                }
            })
        };
        let files = vec![
            a,
            PathBuf::from("https://music.example/b.wav"),
            PathBuf::from("http://music.example/gone.wav"),
        ];
        let cache = Arc::new(ClipCache::new(1 << 20));
        let mut feed =
            PlaylistFeed::start("web", files, false, None, cache, Some(fetcher)).unwrap();
        let got = runs(&mut feed, 200);
        let (ua, ub) = (g711::ulaw_encode(8192), g711::ulaw_encode(-16384));
        assert!(got.len() >= 3, "{got:?}");
        for (i, run) in got.iter().take(got.len() - 1).enumerate() {
            let want = if i % 2 == 0 { (ua, 800) } else { (ub, 440) };
            assert_eq!(*run, want, "run {i} of {got:?}");
        }
        let asked = asked.lock().unwrap();
        assert!(asked.contains(&"https://music.example/b.wav".to_string()));
        assert!(asked.contains(&"http://music.example/gone.wav".to_string()));
        assert!(is_http_entry(Path::new("HTTPS://x/y.mp3")));
        assert!(!is_http_entry(Path::new("music/http.mp3")));
    }

    #[test]
    fn a_playlist_folder_picks_up_added_and_removed_files() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().to_path_buf();
        let (ua, ub, uc) = (
            g711::ulaw_encode(8192),
            g711::ulaw_encode(-16384),
            g711::ulaw_encode(4096),
        );
        let codes = |got: &[(u8, usize)]| -> Vec<u8> { got.iter().map(|r| r.0).collect() };
        // An empty folder plays silence, and is listed again while it is empty.
        let cache = Arc::new(ClipCache::new(1 << 20));
        let mut feed = PlaylistFeed::start(
            "folder",
            list_audio_files(&folder).unwrap(),
            false,
            Some(folder.clone()),
            cache,
            None,
        )
        .unwrap();
        assert!(runs(&mut feed, 20).is_empty());
        write_level(&folder.join("a.wav"), 0.25, 160);
        std::fs::write(folder.join("notes.txt"), b"not audio").unwrap();
        feed.rescan_blocks = 1; // instead of waiting out the 10 s retry
        let got = codes(&runs(&mut feed, 60));
        assert!(got.contains(&ua) && !got.contains(&ub), "{got:?}");
        // Added: heard from the next round on, in name order.
        write_level(&folder.join("b.wav"), -0.5, 160);
        let got = codes(&runs(&mut feed, 120));
        assert!(got.contains(&ub), "b.wav never played: {got:?}");
        let first_b = got.iter().position(|&c| c == ub).unwrap();
        assert_eq!(got[first_b - 1], ua, "{got:?}");
        // Removed: gone after the round in progress; a new file takes its place.
        std::fs::remove_file(folder.join("a.wav")).unwrap();
        write_level(&folder.join("c.wav"), 0.125, 160);
        let _ = runs(&mut feed, 60);
        let got = codes(&runs(&mut feed, 120));
        assert!(!got.contains(&ua), "a.wav still played: {got:?}");
        assert!(got.contains(&ub) && got.contains(&uc), "{got:?}");
    }

    #[test]
    fn shuffled_playlist_plays_every_file_once_per_round() {
        let dir = tempfile::tempdir().unwrap();
        let levels = [0.1f32, 0.2, 0.3, 0.4, 0.5];
        let files: Vec<PathBuf> = levels
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let p = dir.path().join(format!("{i}.wav"));
                write_level(&p, l, 160);
                p
            })
            .collect();
        let cache = Arc::new(ClipCache::new(1 << 20));
        let mut feed = PlaylistFeed::start("shuffle", files, true, None, cache, None).unwrap();
        let got = runs(&mut feed, 400);
        let mut all: Vec<u8> = levels
            .iter()
            .map(|&l| g711::ulaw_encode((l * 32768.0) as i16))
            .collect();
        all.sort_unstable();
        let mut orders = Vec::new();
        for round in got.chunks_exact(levels.len()).take(4) {
            assert!(round.iter().all(|&(_, n)| n == 160), "{round:?}");
            let order: Vec<u8> = round.iter().map(|&(c, _)| c).collect();
            let mut sorted = order.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, all, "a round must hold every file once: {got:?}");
            orders.push(order);
        }
        assert_eq!(orders.len(), 4, "{got:?}");
        assert!(
            orders.windows(2).any(|w| w[0] != w[1]),
            "never reshuffled: {orders:?}"
        );
        assert!(
            orders.windows(2).all(|w| w[0].last() != w[1].first()),
            "a file repeated across rounds: {orders:?}"
        );
    }

    #[test]
    fn playlist_of_broken_files_keeps_running_silent() {
        let dir = tempfile::tempdir().unwrap();
        let broken = dir.path().join("broken.wav");
        std::fs::write(&broken, b"RIFF....WAVEjunk").unwrap();
        let spec = LiveSpec::Playlist {
            files: vec![broken, dir.path().join("missing.flac")],
            shuffle: false,
            folder: None,
        };
        let source = LiveSource::spawn("dead", spec, Arc::new(ClipCache::new(1 << 20))).unwrap();
        let ring = source.ring();
        std::thread::sleep(Duration::from_millis(100));
        let mut out = [0u8; 160];
        assert!(ring.read(Law::Pcmu, ring.position_at(Instant::now()), &mut out));
        assert!(out.iter().all(|&b| b == 0xFF));
        let empty = LiveSource::spawn(
            "empty",
            LiveSpec::Playlist {
                files: vec![],
                shuffle: true,
                folder: None,
            },
            Arc::new(ClipCache::new(0)),
        )
        .unwrap();
        let ring = empty.ring();
        assert!(ring.read(Law::Pcmu, ring.position_at(Instant::now()), &mut out));
    }

    /// A feed of one constant μ-law code that records what it was told.
    struct Constant {
        code: u8,
        told: Arc<Mutex<Vec<bool>>>,
    }

    impl LiveFeed for Constant {
        fn next_block(&mut self, block: &mut LiveBlock) {
            let pcm = f32::from(g711::ulaw_decode(self.code)) / 32768.0;
            block.set_pcm(&[pcm; BLOCK_SAMPLES]);
        }

        fn set_listened(&mut self, listened: bool) {
            self.told.lock().unwrap().push(listened);
        }
    }

    fn now_code(ring: &LiveRing) -> Option<u8> {
        let mut out = [0u8; 80];
        ring.read(Law::Pcmu, ring.position_at(Instant::now()), &mut out)
            .then_some(out[40])
    }

    fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(3);
        while !f() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_lazy_source_runs_only_while_listened_to() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let feed = Constant {
            code: 0x20,
            told: Arc::clone(&told),
        };
        let source =
            LiveSource::spawn_lazy("lazy", Box::new(feed), Some(Duration::from_millis(200)))
                .unwrap();
        let ring = source.ring();
        std::thread::sleep(Duration::from_millis(100));
        assert!(!ring.is_active(), "nobody listens yet");
        assert_eq!(now_code(&ring), None, "nothing is written while idle");
        assert_eq!(*told.lock().unwrap(), [false]);

        let listener = ring.listen();
        assert_eq!(ring.listeners(), 1);
        let woke = Instant::now();
        wait_for("the first listener starts the source", || {
            now_code(&ring) == Some(0x20)
        });
        assert!(
            woke.elapsed() < Duration::from_millis(100),
            "{:?}",
            woke.elapsed()
        );
        assert!(ring.is_active());
        let second = listener.clone();
        assert_eq!(ring.listeners(), 2);
        drop(listener);
        std::thread::sleep(Duration::from_millis(400));
        assert!(ring.is_active(), "one listener is left");
        drop(second);
        assert_eq!(ring.listeners(), 0);
        let left = Instant::now();
        wait_for("the source stops after idle_stop", || !ring.is_active());
        assert!(
            left.elapsed() >= Duration::from_millis(180),
            "{:?}",
            left.elapsed()
        );
        assert_eq!(*told.lock().unwrap(), [false, true, false]);

        // Kept warm from now on: it runs without listeners.
        source.set_idle_stop(None);
        wait_for("a source kept warm runs", || ring.is_active());
        wait_for("and writes", || now_code(&ring) == Some(0x20));
    }

    #[test]
    fn a_replaced_feed_plays_on_the_same_ring_without_a_gap() {
        let told = Arc::new(Mutex::new(Vec::new()));
        let source = LiveSource::spawn_feed(
            "swap",
            Box::new(Constant {
                code: 0x20,
                told: Arc::clone(&told),
            }),
        )
        .unwrap();
        let ring = source.ring();
        let listener = ring.listen();
        wait_for("the first feed plays", || now_code(&ring) == Some(0x20));
        source.replace_feed(Box::new(Constant {
            code: 0x40,
            told: Arc::clone(&told),
        }));
        // Every block from now to well after the swap is written, by one feed or the other.
        let from = ring.position_at(Instant::now());
        wait_for("the new feed plays", || now_code(&ring) == Some(0x40));
        std::thread::sleep(Duration::from_millis(50));
        let to = ring.position_at(Instant::now());
        let mut out = vec![0u8; usize::try_from(to - from).unwrap()];
        assert!(
            listener.read(Law::Pcmu, from, &mut out),
            "no block was missed"
        );
        assert!(out.iter().all(|&c| c == 0x20 || c == 0x40));
        assert!(
            told.lock().unwrap().is_empty(),
            "a source kept warm is never idle"
        );
    }
}
