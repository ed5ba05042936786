//! Upstream feeds: live sources whose audio arrives from outside the process (an internet
//! radio stream, a program's output) at its own pace, and may stall or fail at any moment.
//!
//! A worker thread — the server's, as it owns the socket or the pipe — decodes the upstream
//! (see [`decode_stream`](crate::decode_stream)) and pushes 8 kHz mono through the
//! [`UpstreamWriter`] into a bounded queue of 10 ms blocks. What happens when the queue is
//! full is the upstream's [`Overflow`]: a live stream is never held back (its end must be
//! seen at once, not after seconds of data left waiting in a socket buffer), so its oldest
//! audio is dropped; a program writing to a pipe is made to wait. The
//! [`UpstreamFeed`] plays that queue on the source's producer thread and covers every block
//! it cannot — before the pre-buffer has filled, after an underrun, a stall or a failure —
//! with the configured [`Fallback`]. Switching happens between two blocks, so the ring, and
//! so every listener's packets, never miss one; the feed never waits for the worker.
//!
//! [`Upstream`] holds what both sides share: the queue, the connection generation (audio of
//! an ended connection is never played), the stall watch ([`WatchedRead`]) and the health
//! figures the server reports ([`UpstreamStatus`]).

use std::cmp::Ordering as CmpOrdering;
use std::io::{ErrorKind, Read};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::{BLOCK_SAMPLES, LEAD, Law, LiveBlock, LiveFeed, LiveListener, LiveRing, StreamInfo};

/// Audio buffered before an upstream is played (again), unless configured otherwise.
pub const DEFAULT_PREBUFFER: Duration = Duration::from_secs(1);
/// How long an upstream may deliver nothing before it counts as stalled, unless configured
/// otherwise.
pub const DEFAULT_STALL: Duration = Duration::from_secs(2);
/// Room in the queue above the pre-buffer, at the least.
const MIN_HEADROOM: Duration = Duration::from_millis(500);
/// How long the worker sleeps before retrying a push into a full queue.
const PUSH_RETRY: Duration = Duration::from_millis(10);
/// How long a source started for a listener plays silence, not its fallback, while its
/// upstream connects and pre-buffers.
const QUIET_START: Duration = Duration::from_millis(1500);
/// A fallback source's ring is followed from this far behind its present at most.
const MAX_FOLLOW_LAG: u64 = 8000;

/// Timing of an upstream feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Audio queued before the upstream is played, at the start and after every
    /// interruption, so that a recovering upstream does not stutter.
    pub prebuffer: Duration,
    /// An upstream that delivers nothing for this long counts as stalled: listeners get
    /// the fallback, and the worker gives the connection up.
    pub stall: Duration,
    /// What a push into a full queue does.
    pub overflow: Overflow,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        UpstreamSettings {
            prebuffer: DEFAULT_PREBUFFER,
            stall: DEFAULT_STALL,
            overflow: Overflow::DropOldest,
        }
    }
}

/// What pushing into a full queue does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// The worker waits for room: for an upstream its listeners pace, such as a program
    /// writing to a pipe, which then waits in turn.
    Wait,
    /// The oldest audio is dropped, down to the pre-buffer plus half the headroom: for an
    /// upstream that sends at its own pace (a live stream, which starts with a burst of
    /// several seconds), so that the worker reads on and sees the upstream's end at once.
    /// In steady state the queue's level moves only with the two clocks' drift.
    DropOldest,
}

impl UpstreamSettings {
    /// Blocks the queue holds: twice the pre-buffer, and at least half a second more.
    fn capacity_blocks(&self) -> usize {
        let capacity = (self.prebuffer * 2).max(self.prebuffer + MIN_HEADROOM);
        blocks_in(capacity).max(1)
    }

    /// What [`Overflow::DropOldest`] trims a full queue to.
    fn trim_blocks(&self) -> usize {
        let prebuffer = blocks_in(self.prebuffer);
        prebuffer + (self.capacity_blocks() - prebuffer) / 2
    }

    /// How long a stall lasts before the feed switches: the producer writes `LEAD` ahead of
    /// real time, so switching that much early puts the fallback in listeners' ears when
    /// the stall reaches `stall`.
    fn stall_switch(&self) -> Duration {
        self.stall.saturating_sub(LEAD).max(self.stall / 2)
    }
}

fn blocks_in(d: Duration) -> usize {
    usize::try_from(d.as_millis() / 10).unwrap_or(usize::MAX)
}

/// What listeners hear while the upstream cannot be played.
pub enum Fallback {
    /// A feed of its own (a tone, silence), played only while needed.
    Feed(Box<dyn LiveFeed>),
    /// Another live source, heard at its current position.
    Source(Arc<LiveRing>),
}

impl std::fmt::Debug for Fallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fallback::Feed(_) => f.write_str("Fallback::Feed"),
            Fallback::Source(ring) => write!(f, "Fallback::Source({})", ring.name()),
        }
    }
}

/// The state of an upstream-fed live source, as the server reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SourceState {
    /// Not started, or stopped.
    #[default]
    Idle,
    /// Connecting to the upstream (starting the program); listeners hear the fallback.
    Connecting,
    /// Listeners hear the upstream.
    Playing,
    /// Connected, but listeners hear the fallback: pre-buffering, stalled or underrun.
    Fallback,
    /// The last attempt failed; listeners hear the fallback until a retry succeeds.
    Failed,
}

impl SourceState {
    /// Lower-case name: `idle`, `connecting`, `playing`, `fallback`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceState::Idle => "idle",
            SourceState::Connecting => "connecting",
            SourceState::Playing => "playing",
            SourceState::Fallback => "fallback",
            SourceState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for SourceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A snapshot of an upstream's health.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct UpstreamStatus {
    /// What listeners hear, and why.
    pub state: SourceState,
    /// The stream URL or command line of the current (or last) attempt.
    pub upstream: Option<String>,
    /// The upstream's codec, e.g. `mp3`, `aac`, `vorbis`, `opus`, `pcm_s16le`.
    pub codec: Option<String>,
    /// Bit rate: announced by the upstream (`icy-br`), else measured on the connection.
    pub bitrate_kbps: Option<u32>,
    /// The upstream's sample rate, Hz.
    pub sample_rate: Option<u32>,
    /// The upstream's channels.
    pub channels: Option<u32>,
    /// The current title (ICY `StreamTitle`), when the upstream sends one.
    pub now_playing: Option<String>,
    /// Why the last connection or attempt failed.
    pub last_error: Option<String>,
    /// Connection attempts after the first.
    pub reconnects: u64,
}

const PHASE_IDLE: u8 = 0;
const PHASE_CONNECTING: u8 = 1;
const PHASE_CONNECTED: u8 = 2;
const PHASE_FAILED: u8 = 3;

#[derive(Default)]
struct Details {
    upstream: Option<String>,
    codec: Option<String>,
    sample_rate: Option<u32>,
    channels: Option<u32>,
    announced_kbps: Option<u32>,
    now_playing: Option<String>,
    last_error: Option<String>,
}

#[derive(Clone, Copy)]
struct Chunk {
    generation: u64,
    pcm: [f32; BLOCK_SAMPLES],
}

/// What an upstream's worker and its feed share.
pub struct Upstream {
    name: String,
    settings: UpstreamSettings,
    queue: ArrayQueue<Chunk>,
    /// Bumped when a connection ends: queued audio of older generations is stale.
    generation: AtomicU64,
    epoch: Instant,
    /// When the worker began waiting for upstream bytes (ns since `epoch`, plus one);
    /// 0 while it is not waiting.
    waiting_since: AtomicU64,
    stop: AtomicBool,
    /// Somebody listens (or the source is kept warm): the worker keeps the upstream.
    wanted: AtomicBool,
    phase: AtomicU8,
    /// The feed plays the upstream (not the fallback).
    on_upstream: AtomicBool,
    attempts: AtomicU64,
    /// Bytes read on the current connection, and when it was made (ns since `epoch`).
    bytes: AtomicU64,
    connected_at: AtomicU64,
    details: Mutex<Details>,
}

impl Upstream {
    /// A new upstream for the source `name`, and the writer its worker pushes audio with.
    pub fn new(name: &str, settings: UpstreamSettings) -> (Arc<Upstream>, UpstreamWriter) {
        let up = Arc::new(Upstream {
            name: name.to_string(),
            settings,
            queue: ArrayQueue::new(settings.capacity_blocks()),
            generation: AtomicU64::new(0),
            epoch: Instant::now(),
            waiting_since: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            wanted: AtomicBool::new(true),
            phase: AtomicU8::new(PHASE_IDLE),
            on_upstream: AtomicBool::new(false),
            attempts: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            connected_at: AtomicU64::new(0),
            details: Mutex::new(Details::default()),
        });
        let writer = UpstreamWriter {
            up: Arc::clone(&up),
            pending: [0.0; BLOCK_SAMPLES],
            filled: 0,
            dropped_blocks: 0,
        };
        (up, writer)
    }

    /// The live source's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The timing this upstream was made with.
    pub fn settings(&self) -> UpstreamSettings {
        self.settings
    }

    /// Asks the worker to stop: its pushes and watched reads fail from now on.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// True once [`stop`](Upstream::stop) was called.
    pub fn is_stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether the upstream is wanted: false while its source is idle for want of
    /// listeners, when the worker lets the connection (or the program) go until it is
    /// wanted again. Upstreams are wanted from the start unless told otherwise.
    pub fn set_wanted(&self, wanted: bool) {
        self.wanted.store(wanted, Ordering::Release);
    }

    /// See [`set_wanted`](Upstream::set_wanted).
    pub fn is_wanted(&self) -> bool {
        self.wanted.load(Ordering::Acquire)
    }

    /// The worker's current connection must end: the source stopped, or nobody listens.
    pub fn should_let_go(&self) -> bool {
        self.is_stopped() || !self.is_wanted()
    }

    /// Wraps the upstream's byte stream, so that the feed sees a stall while it lasts and
    /// reads fail once the source stops.
    pub fn watch<R: Read>(self: &Arc<Self>, inner: R) -> WatchedRead<R> {
        WatchedRead {
            inner,
            up: Arc::clone(self),
        }
    }

    /// Health: an attempt to reach `upstream` (a URL, a command line) begins.
    pub fn connecting(&self, upstream: &str) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        self.phase.store(PHASE_CONNECTING, Ordering::Release);
        self.details().upstream = Some(upstream.to_string());
    }

    /// Health: the upstream answered; its audio follows.
    pub fn connected(&self) {
        self.bytes.store(0, Ordering::Relaxed);
        self.connected_at
            .store(self.nanos(Instant::now()), Ordering::Relaxed);
        let mut d = self.details();
        d.now_playing = None;
        d.announced_kbps = None;
        drop(d);
        self.phase.store(PHASE_CONNECTED, Ordering::Release);
    }

    /// Health: the attempt or connection failed with `error`.
    pub fn failed(&self, error: &str) {
        self.details().last_error = Some(error.to_string());
        self.phase.store(PHASE_FAILED, Ordering::Release);
    }

    /// Health: the worker stopped.
    pub fn stopped(&self) {
        self.phase.store(PHASE_IDLE, Ordering::Release);
    }

    /// Health: what the upstream carries.
    pub fn set_format(&self, info: &StreamInfo) {
        let mut d = self.details();
        d.codec = Some(info.codec.clone());
        d.sample_rate = Some(info.sample_rate);
        d.channels = Some(info.channels);
    }

    /// Health: the bit rate the upstream announces (e.g. `icy-br`), in kbit/s.
    pub fn set_announced_bitrate(&self, kbps: Option<u32>) {
        self.details().announced_kbps = kbps;
    }

    /// Health: the title now playing (ICY `StreamTitle`).
    pub fn set_now_playing(&self, title: Option<String>) {
        self.details().now_playing = title;
    }

    /// A snapshot of the upstream's health.
    pub fn status(&self) -> UpstreamStatus {
        self.status_at(Instant::now())
    }

    fn status_at(&self, now: Instant) -> UpstreamStatus {
        let phase = self.phase.load(Ordering::Acquire);
        let state = if self.on_upstream.load(Ordering::Acquire) {
            SourceState::Playing
        } else {
            match phase {
                PHASE_CONNECTING => SourceState::Connecting,
                PHASE_CONNECTED => SourceState::Fallback,
                PHASE_FAILED => SourceState::Failed,
                _ => SourceState::Idle,
            }
        };
        let measured = (phase == PHASE_CONNECTED)
            .then(|| {
                let since = self.connected_at.load(Ordering::Relaxed);
                let secs = self
                    .nanos(now)
                    .saturating_sub(since)
                    .checked_div(1_000_000)? as f64
                    / 1000.0;
                (secs >= 1.0).then(|| {
                    (self.bytes.load(Ordering::Relaxed) as f64 * 8.0 / secs / 1000.0).round() as u32
                })
            })
            .flatten();
        let d = self.details();
        UpstreamStatus {
            state,
            upstream: d.upstream.clone(),
            codec: d.codec.clone(),
            bitrate_kbps: d.announced_kbps.or(measured),
            sample_rate: d.sample_rate,
            channels: d.channels,
            now_playing: d.now_playing.clone(),
            last_error: d.last_error.clone(),
            reconnects: self.attempts.load(Ordering::Relaxed).saturating_sub(1),
        }
    }

    fn details(&self) -> MutexGuard<'_, Details> {
        // The guarded data is plain values: a panic elsewhere leaves them usable.
        self.details
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn nanos(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// How long the worker has been waiting for upstream bytes at `now`.
    fn waiting_for(&self, now: Instant) -> Duration {
        match self.waiting_since.load(Ordering::Acquire) {
            0 => Duration::ZERO,
            since => Duration::from_nanos(self.nanos(now).saturating_sub(since - 1)),
        }
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("queued_blocks", &self.queue.len())
            .finish()
    }
}

/// The worker's end of an upstream: pushes decoded audio into the queue.
pub struct UpstreamWriter {
    up: Arc<Upstream>,
    pending: [f32; BLOCK_SAMPLES],
    filled: usize,
    /// Blocks dropped by [`Overflow::DropOldest`] on the current connection.
    dropped_blocks: u64,
}

impl UpstreamWriter {
    /// The upstream this writer feeds.
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.up
    }

    /// Queues 8 kHz mono samples; a full queue is handled as the settings'
    /// [`Overflow`] says. Breaks once the source stopped.
    pub fn push(&mut self, samples: &[f32]) -> ControlFlow<()> {
        let mut rest = samples;
        while !rest.is_empty() {
            let n = (BLOCK_SAMPLES - self.filled).min(rest.len());
            self.pending[self.filled..self.filled + n].copy_from_slice(&rest[..n]);
            self.filled += n;
            rest = &rest[n..];
            if self.filled == BLOCK_SAMPLES {
                self.filled = 0;
                let mut chunk = Chunk {
                    generation: self.up.generation.load(Ordering::Relaxed),
                    pcm: self.pending,
                };
                loop {
                    match self.up.queue.push(chunk) {
                        Ok(()) => break,
                        Err(back) => {
                            if self.up.should_let_go() {
                                return ControlFlow::Break(());
                            }
                            chunk = back;
                            match self.up.settings.overflow {
                                Overflow::Wait => std::thread::sleep(PUSH_RETRY),
                                Overflow::DropOldest => self.trim(),
                            }
                        }
                    }
                }
            }
        }
        if self.up.should_let_go() {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    /// Drops the oldest queued audio down to the trim level. The feed pops concurrently,
    /// which only makes room sooner.
    fn trim(&mut self) {
        let keep = self.up.settings.trim_blocks();
        let mut dropped = 0u64;
        while self.up.queue.len() > keep && self.up.queue.pop().is_some() {
            dropped += 1;
        }
        if self.dropped_blocks == 0 || dropped > 0 {
            tracing::debug!(
                source = %self.up.name,
                dropped_ms = dropped * 10,
                "upstream ahead of real time; its oldest audio dropped"
            );
        }
        self.dropped_blocks += dropped;
    }

    /// The current connection failed: its queued audio will not be played, listeners get
    /// the fallback at once.
    pub fn end_connection(&mut self) {
        self.filled = 0;
        self.dropped_blocks = 0;
        self.up.generation.fetch_add(1, Ordering::Release);
    }

    /// The upstream's output ended as it should (a program that finished): what is queued
    /// still plays, and the next connection's audio follows it.
    pub fn end_output(&mut self) {
        self.filled = 0;
        self.dropped_blocks = 0;
    }
}

/// An upstream's byte stream, watched: the feed knows how long a read has been waiting,
/// and reads fail once the source stopped.
pub struct WatchedRead<R> {
    inner: R,
    up: Arc<Upstream>,
}

impl<R: Read> Read for WatchedRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.up.should_let_go() {
            return Err(std::io::Error::new(
                ErrorKind::ConnectionAborted,
                if self.up.is_stopped() {
                    "the live source stopped"
                } else {
                    "the live source has no listeners"
                },
            ));
        }
        let up = &self.up;
        up.waiting_since
            .store(up.nanos(Instant::now()) + 1, Ordering::Release);
        let result = self.inner.read(buf);
        up.waiting_since.store(0, Ordering::Release);
        if let Ok(n) = result {
            up.bytes.fetch_add(n as u64, Ordering::Relaxed);
        }
        result
    }
}

/// Plays an upstream's queue with a pre-buffer, and the fallback whenever it cannot.
pub struct UpstreamFeed {
    up: Arc<Upstream>,
    fallback: FallbackPlayer,
    /// The connection generation whose audio is played.
    generation: u64,
    /// A chunk taken from the queue ahead of its turn (of a newer generation).
    held: Option<Chunk>,
    /// Playing the upstream, not the fallback.
    playing: bool,
    prebuffer_blocks: usize,
    stall_switch: Duration,
    /// When listeners last started hearing the fallback.
    fallback_since: Instant,
    /// Started for a listener: silence, not the fallback, until then (see
    /// [`LiveFeed::set_listened`]).
    quiet_until: Option<Instant>,
}

impl UpstreamFeed {
    /// A feed of `up` that plays `fallback` whenever the upstream cannot be played.
    pub fn new(up: Arc<Upstream>, fallback: Fallback) -> UpstreamFeed {
        let settings = up.settings();
        UpstreamFeed {
            generation: up.generation.load(Ordering::Acquire),
            up,
            fallback: FallbackPlayer {
                kind: fallback,
                cursor: None,
                listener: None,
            },
            held: None,
            playing: false,
            prebuffer_blocks: blocks_in(settings.prebuffer).max(1),
            stall_switch: settings.stall_switch(),
            fallback_since: Instant::now(),
            quiet_until: None,
        }
    }

    fn switch_to_fallback(&mut self, why: &str) {
        if self.playing {
            self.playing = false;
            self.up.on_upstream.store(false, Ordering::Release);
            self.fallback_since = Instant::now();
            tracing::info!(source = %self.up.name, why, "listeners hear the fallback");
        }
    }

    fn switch_to_upstream(&mut self) {
        self.playing = true;
        self.quiet_until = None;
        // A fallback source is listened to only while it is heard.
        self.fallback.release();
        self.up.on_upstream.store(true, Ordering::Release);
        // The fallback picks up at its present next time.
        self.fallback.cursor = None;
        tracing::info!(
            source = %self.up.name,
            after_ms = self.fallback_since.elapsed().as_millis() as u64,
            "listeners hear the upstream"
        );
    }

    /// A connection ended: its audio is dropped, listeners get the fallback.
    fn new_generation(&mut self, generation: u64) {
        self.generation = generation;
        self.switch_to_fallback("the upstream connection ended");
        if self.held.is_some_and(|c| c.generation < generation) {
            self.held = None;
        }
        while self.held.is_none() {
            match self.up.queue.pop() {
                Some(c) if c.generation < generation => {}
                Some(c) => self.held = Some(c),
                None => break,
            }
        }
    }

    /// The next block of the current connection, if one is queued.
    fn next_chunk(&mut self) -> Option<Chunk> {
        loop {
            let chunk = self.held.take().or_else(|| self.up.queue.pop())?;
            match chunk.generation.cmp(&self.generation) {
                CmpOrdering::Less => {}
                CmpOrdering::Equal => return Some(chunk),
                CmpOrdering::Greater => {
                    self.held = Some(chunk);
                    self.new_generation(chunk.generation);
                    return None;
                }
            }
        }
    }

    fn buffered_blocks(&self) -> usize {
        self.up.queue.len() + usize::from(self.held.is_some())
    }
}

impl LiveFeed for UpstreamFeed {
    fn next_block(&mut self, block: &mut LiveBlock) {
        self.next_block_at(block, Instant::now());
    }

    fn set_listened(&mut self, listened: bool) {
        self.up.set_wanted(listened);
        if listened {
            // The worker connects now; until its audio is buffered, or the attempt fails,
            // or `QUIET_START` (at most a stall's time) has passed, listeners hear silence
            // rather than the fallback: a caller put on hold expects music after a moment,
            // not a tone.
            self.quiet_until = Some(Instant::now() + self.up.settings.stall.min(QUIET_START));
        } else {
            self.playing = false;
            self.up.on_upstream.store(false, Ordering::Release);
            self.fallback.release();
            self.held = None;
            while self.up.queue.pop().is_some() {}
        }
    }
}

impl UpstreamFeed {
    fn next_block_at(&mut self, block: &mut LiveBlock, now: Instant) {
        let generation = self.up.generation.load(Ordering::Acquire);
        if generation > self.generation {
            self.new_generation(generation);
        }
        let stalled = self.up.waiting_for(now) >= self.stall_switch;
        if self.playing && stalled {
            self.switch_to_fallback("the upstream stalled");
        }
        if !self.playing && !stalled && self.buffered_blocks() >= self.prebuffer_blocks {
            self.switch_to_upstream();
        }
        if self.playing {
            if let Some(chunk) = self.next_chunk() {
                block.set_pcm(&chunk.pcm);
                return;
            }
            self.switch_to_fallback("the upstream ran dry");
        }
        if let Some(until) = self.quiet_until {
            if now < until && self.up.phase.load(Ordering::Acquire) != PHASE_FAILED {
                block.set_silence();
                return;
            }
            self.quiet_until = None;
        }
        self.fallback.fill(block);
    }
}

impl Drop for UpstreamFeed {
    /// The source stopped: so does its worker.
    fn drop(&mut self) {
        self.up.on_upstream.store(false, Ordering::Release);
        self.up.stop();
    }
}

/// Plays a [`Fallback`] as a feed of its own: what a source that is gone plays to the
/// listeners it still has.
pub struct FallbackFeed(FallbackPlayer);

impl FallbackFeed {
    /// A feed of `fallback`.
    pub fn new(fallback: Fallback) -> FallbackFeed {
        FallbackFeed(FallbackPlayer {
            kind: fallback,
            cursor: None,
            listener: None,
        })
    }
}

impl LiveFeed for FallbackFeed {
    fn next_block(&mut self, block: &mut LiveBlock) {
        self.0.fill(block);
    }

    fn set_listened(&mut self, listened: bool) {
        if !listened {
            self.0.release();
        }
    }
}

struct FallbackPlayer {
    kind: Fallback,
    /// Next position to read in a fallback source's ring.
    cursor: Option<u64>,
    /// This source listens to its fallback source while playing it, so that a lazily
    /// started fallback source runs then.
    listener: Option<LiveListener>,
}

impl FallbackPlayer {
    /// Not heard any more: a fallback source may stop for want of listeners.
    fn release(&mut self) {
        self.listener = None;
        self.cursor = None;
    }

    fn fill(&mut self, block: &mut LiveBlock) {
        match &mut self.kind {
            Fallback::Feed(feed) => feed.next_block(block),
            Fallback::Source(ring) => {
                if self.listener.is_none() {
                    self.listener = Some(ring.listen());
                }
                // The ring's present was written a lead ago; following it block by block
                // from there stays within what is written, one lead behind its own
                // listeners, which nobody can hear.
                let now = ring.position_at(Instant::now());
                let head = ring.written_until();
                let pos = match self.cursor {
                    Some(c) if c + BLOCK_SAMPLES as u64 <= head && c + MAX_FOLLOW_LAG >= now => c,
                    _ => now,
                };
                let mut ulaw = [0u8; BLOCK_SAMPLES];
                let mut alaw = [0u8; BLOCK_SAMPLES];
                if ring.read(Law::Pcmu, pos, &mut ulaw) && ring.read(Law::Pcma, pos, &mut alaw) {
                    block.copy_g711(0, &ulaw, &alaw);
                    self.cursor = Some(pos + BLOCK_SAMPLES as u64);
                } else {
                    block.set_silence();
                    self.cursor = None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ClipCache, LiveSource, LiveSpec};

    /// A fallback feed whose every sample is `level`.
    struct Level(f32);

    impl LiveFeed for Level {
        fn next_block(&mut self, block: &mut LiveBlock) {
            block.set_pcm(&[self.0; BLOCK_SAMPLES]);
        }
    }

    const FALLBACK: f32 = -0.25;

    fn settings(prebuffer_ms: u64, stall_ms: u64) -> UpstreamSettings {
        UpstreamSettings {
            prebuffer: Duration::from_millis(prebuffer_ms),
            stall: Duration::from_millis(stall_ms),
            overflow: Overflow::Wait,
        }
    }

    fn feed(s: UpstreamSettings) -> (Arc<Upstream>, UpstreamWriter, UpstreamFeed) {
        let (up, writer) = Upstream::new("test", s);
        let feed = UpstreamFeed::new(Arc::clone(&up), Fallback::Feed(Box::new(Level(FALLBACK))));
        (up, writer, feed)
    }

    /// Block `k` of a test upstream: every sample is `k / 1000`.
    fn push_blocks(writer: &mut UpstreamWriter, from: usize, n: usize) {
        for k in from..from + n {
            let v = k as f32 / 1000.0;
            assert!(writer.push(&[v; BLOCK_SAMPLES]).is_continue());
        }
    }

    /// What the next block holds: `Some(k)` for upstream block k, `None` for the fallback.
    fn play(feed: &mut UpstreamFeed) -> Option<usize> {
        play_at(feed, Instant::now())
    }

    fn play_at(feed: &mut UpstreamFeed, now: Instant) -> Option<usize> {
        let mut block = LiveBlock::silence();
        feed.next_block_at(&mut block, now);
        let first = block.pcm()[0];
        assert!(
            block.pcm().iter().all(|&s| s == first),
            "a block mixes upstream and fallback"
        );
        if first == FALLBACK {
            None
        } else {
            Some((first * 1000.0).round() as usize)
        }
    }

    #[test]
    fn plays_after_the_prebuffer_and_falls_back_at_once_on_underrun() {
        let (up, mut writer, mut feed) = feed(settings(100, 2000));
        assert_eq!(up.status().state, SourceState::Idle);
        up.connecting("test://upstream");
        assert_eq!(up.status().state, SourceState::Connecting);
        up.connected();
        assert_eq!(up.status().state, SourceState::Fallback);
        push_blocks(&mut writer, 1, 9);
        assert_eq!(play(&mut feed), None, "9 of 10 pre-buffer blocks");
        push_blocks(&mut writer, 10, 5);
        for k in 1..=14 {
            assert_eq!(play(&mut feed), Some(k));
            assert_eq!(up.status().state, SourceState::Playing);
        }
        // Ran dry: the fallback in the very next block, until the pre-buffer is back.
        assert_eq!(play(&mut feed), None);
        assert_eq!(up.status().state, SourceState::Fallback);
        push_blocks(&mut writer, 15, 9);
        assert_eq!(play(&mut feed), None);
        push_blocks(&mut writer, 24, 1);
        assert_eq!(play(&mut feed), Some(15));
        // A sample count that is not a whole block waits for the rest.
        assert!(writer.push(&[0.5; 50]).is_continue());
        assert_eq!(up.queue.len(), 9);
        assert!(writer.push(&[0.5; 30]).is_continue());
        assert_eq!(up.queue.len(), 10);
    }

    #[test]
    fn audio_of_an_ended_connection_is_never_played() {
        let (up, mut writer, mut feed) = feed(settings(50, 2000));
        up.connecting("test://upstream");
        up.connected();
        push_blocks(&mut writer, 1, 10);
        assert_eq!(play(&mut feed), Some(1));
        assert_eq!(play(&mut feed), Some(2));
        writer.end_connection();
        up.failed("connection reset");
        assert_eq!(play(&mut feed), None, "the connection ended");
        let status = up.status();
        assert_eq!(status.state, SourceState::Failed);
        assert_eq!(status.last_error.as_deref(), Some("connection reset"));
        // Reconnected: the old blocks 3-10 are gone; the new ones play after the pre-buffer.
        up.connecting("test://upstream");
        up.connected();
        push_blocks(&mut writer, 101, 4);
        assert_eq!(play(&mut feed), None);
        push_blocks(&mut writer, 105, 1);
        for k in 101..=105 {
            assert_eq!(play(&mut feed), Some(k));
        }
        assert_eq!(up.status().reconnects, 1);
    }

    #[test]
    fn audio_of_an_output_that_ended_cleanly_plays_out() {
        let (_up, mut writer, mut feed) = feed(settings(30, 2000));
        push_blocks(&mut writer, 1, 4);
        assert_eq!(play(&mut feed), Some(1));
        writer.end_output();
        assert_eq!(play(&mut feed), Some(2));
        push_blocks(&mut writer, 301, 1);
        for k in [3, 4, 301] {
            assert_eq!(play(&mut feed), Some(k));
        }
        assert_eq!(play(&mut feed), None);
    }

    #[test]
    fn a_connection_that_ends_between_two_blocks_is_caught_by_its_audio() {
        // The writer ends a connection and queues the next one's audio before the feed
        // looks at the generation: the newer block itself tells.
        let (_up, mut writer, mut feed) = feed(settings(20, 2000));
        push_blocks(&mut writer, 1, 2);
        assert_eq!(play(&mut feed), Some(1));
        assert_eq!(play(&mut feed), Some(2));
        writer.end_connection();
        push_blocks(&mut writer, 201, 1);
        // The race: the feed pops before it has looked at the generation.
        assert!(feed.next_chunk().is_none());
        assert_eq!(feed.generation, 1);
        assert!(!feed.playing);
        push_blocks(&mut writer, 202, 1);
        assert_eq!(play(&mut feed), Some(201));
        assert_eq!(play(&mut feed), Some(202));
    }

    #[test]
    fn a_stall_switches_early_enough_to_be_heard_at_the_stall_time() {
        let s = settings(50, 1000);
        assert_eq!(s.stall_switch(), Duration::from_millis(800));
        assert_eq!(settings(50, 300).stall_switch(), Duration::from_millis(150));
        let (up, mut writer, mut feed) = feed(s);
        push_blocks(&mut writer, 1, 20);
        assert_eq!(play(&mut feed), Some(1));
        // The worker begins waiting in a read.
        let start = Instant::now();
        up.waiting_since
            .store(up.nanos(start) + 1, Ordering::Release);
        let later = |ms: u64| start + Duration::from_millis(ms);
        assert_eq!(play_at(&mut feed, later(700)), Some(2), "not yet a stall");
        assert_eq!(play_at(&mut feed, later(810)), None, "stalled");
        assert_eq!(
            play_at(&mut feed, later(820)),
            None,
            "stays on the fallback"
        );
        // Data flows again: back to the queue, which still holds the pre-buffer.
        up.waiting_since.store(0, Ordering::Release);
        assert_eq!(play_at(&mut feed, later(830)), Some(3));
    }

    #[test]
    fn a_watched_read_marks_the_wait_and_fails_once_stopped() {
        let (up, _writer, feed) = feed(settings(50, 1000));
        struct Slow(Arc<Upstream>);
        impl Read for Slow {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                assert!(self.0.waiting_for(Instant::now()) < Duration::from_millis(50));
                std::thread::sleep(Duration::from_millis(30));
                assert!(self.0.waiting_for(Instant::now()) >= Duration::from_millis(30));
                buf[0] = 1;
                Ok(1)
            }
        }
        let mut r = up.watch(Slow(Arc::clone(&up)));
        let mut buf = [0u8; 4];
        assert_eq!(r.read(&mut buf).expect("read"), 1);
        assert_eq!(up.waiting_for(Instant::now()), Duration::ZERO);
        assert_eq!(up.bytes.load(Ordering::Relaxed), 1);
        drop(feed);
        assert!(up.is_stopped(), "dropping the feed stops the worker");
        let err = r.read(&mut buf).expect_err("stopped");
        assert_eq!(err.kind(), ErrorKind::ConnectionAborted);
    }

    #[test]
    fn a_full_queue_holds_the_writer_until_played_or_stopped() {
        let (up, mut writer, mut feed) = feed(settings(50, 1000));
        let capacity = up.queue.capacity();
        assert_eq!(capacity, 55, "pre-buffer + 500 ms");
        push_blocks(&mut writer, 1, capacity);
        let pusher = std::thread::spawn(move || {
            let r = writer.push(&[0.9; BLOCK_SAMPLES]);
            (r, writer)
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!pusher.is_finished(), "waits while the queue is full");
        assert_eq!(play(&mut feed), Some(1));
        let (r, mut writer) = pusher.join().expect("pusher");
        assert!(r.is_continue());
        assert_eq!(up.queue.len(), capacity);
        let pusher = std::thread::spawn(move || writer.push(&[0.9; BLOCK_SAMPLES]));
        std::thread::sleep(Duration::from_millis(30));
        up.stop();
        assert!(pusher.join().expect("pusher").is_break());
    }

    #[test]
    fn a_live_stream_ahead_of_real_time_loses_its_oldest_audio_not_its_newest() {
        let s = UpstreamSettings {
            overflow: Overflow::DropOldest,
            ..settings(100, 1000)
        };
        assert_eq!((s.capacity_blocks(), s.trim_blocks()), (60, 35));
        let (up, mut writer, mut feed) = feed(s);
        // A burst of 2 s: never waits, and the newest audio is what stays.
        push_blocks(&mut writer, 1, 200);
        assert!(up.queue.len() <= 60, "{}", up.queue.len());
        let first = play(&mut feed).expect("plays");
        assert!(first > 140, "block {first} is old audio");
        let second = play(&mut feed).expect("plays");
        assert_eq!(second, first + 1, "continuous once trimmed");
    }

    #[test]
    fn another_source_as_fallback_is_heard_at_its_current_position() {
        let cache = Arc::new(ClipCache::new(0));
        let other = LiveSource::spawn(
            "other",
            LiveSpec::Tone {
                frequency_hz: 697.0,
                level_dbfs: -6.0,
            },
            cache,
        )
        .expect("tone source");
        let ring = other.ring();
        let (up, mut writer) = Upstream::new("test", settings(20, 1000));
        let mut feed = UpstreamFeed::new(Arc::clone(&up), Fallback::Source(Arc::clone(&ring)));
        let mut block = LiveBlock::silence();
        let mut last = None;
        for _ in 0..30 {
            feed.next_block(&mut block);
            let pos = feed.fallback.cursor.expect("following the ring") - BLOCK_SAMPLES as u64;
            if let Some(prev) = last {
                assert_eq!(pos, prev + BLOCK_SAMPLES as u64, "continuous");
            }
            last = Some(pos);
            let now = ring.position_at(Instant::now());
            assert!(pos.abs_diff(now) < 800, "{pos} vs present {now}");
            for law in [Law::Pcmu, Law::Pcma] {
                let mut want = [0u8; BLOCK_SAMPLES];
                assert!(ring.read(law, pos, &mut want));
                assert_eq!(block.g711(law), &want, "{law:?} at {pos}");
            }
            // Real time, as the producer calls it.
            std::thread::sleep(Duration::from_millis(10));
        }
        // The upstream takes over, and the fallback picks up at the present next time.
        push_blocks(&mut writer, 1, 2);
        assert_eq!(play(&mut feed), Some(1));
        assert_eq!(feed.fallback.cursor, None);
    }

    #[test]
    fn health_reports_format_title_and_bitrate() {
        let (up, _writer, _feed) = feed(settings(50, 1000));
        up.connecting("http://radio.example/stream");
        up.connected();
        up.set_format(&StreamInfo {
            codec: "mp3".into(),
            sample_rate: 44_100,
            channels: 2,
        });
        up.set_now_playing(Some("Artist - Title".into()));
        up.set_announced_bitrate(Some(128));
        let s = up.status();
        assert_eq!(s.upstream.as_deref(), Some("http://radio.example/stream"));
        assert_eq!(s.codec.as_deref(), Some("mp3"));
        assert_eq!((s.sample_rate, s.channels), (Some(44_100), Some(2)));
        assert_eq!(s.now_playing.as_deref(), Some("Artist - Title"));
        assert_eq!(s.bitrate_kbps, Some(128));
        // Without an announced rate, the measured one (after a second of data).
        up.connected();
        assert_eq!(
            up.status().now_playing,
            None,
            "a new connection, no title yet"
        );
        let connected = up.connected_at.load(Ordering::Relaxed);
        let at = |ms: u64| up.epoch + Duration::from_nanos(connected) + Duration::from_millis(ms);
        up.bytes.store(16_000, Ordering::Relaxed);
        assert_eq!(
            up.status_at(at(900)).bitrate_kbps,
            None,
            "too early to tell"
        );
        assert_eq!(up.status_at(at(2000)).bitrate_kbps, Some(64));
        assert_eq!(SourceState::Fallback.to_string(), "fallback");
    }
}
