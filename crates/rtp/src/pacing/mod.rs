//! The pacing engine: the media plane's threads, which send every stream's RTP packets on
//! time and their RTCP reports.
//!
//! # Threading model
//! [`Pacer::start`] spawns `threads` dedicated std threads (not tokio tasks: a tokio timer has
//! millisecond granularity and shares its worker with everything else). Each thread owns its
//! streams outright — a slab of per-stream state, no sharing, no locks — and a wheel of 1 ms
//! slots. A stream of ptime P is due at ticks ≡ phase (mod P) of its thread's clock; a new
//! stream gets the phase whose ticks carry the fewest packets, so 20 ms streams spread evenly
//! over 20 slots and mixed ptimes interleave. Deadlines are computed, never accumulated:
//! tick *n* is `start + n ms` exactly, and the thread sleeps to it with
//! `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` (timer slack lowered to 1 µs).
//!
//! The thread wakes only for slots that hold a stream, and at least every 20 ms; on each
//! wake-up it drains its command queue (a lock-free `SegQueue`: add, remove, pause, resume,
//! replace playout or its upcoming items, seek, restart, limit, end at a mark, update
//! remote), then for every stream due fills the payload straight into a preallocated buffer
//! ([`Playout::fill`]), writes the RTP header in front ([`Packetizer::write_header`]) and
//! sends it. The per-packet path does not allocate, lock or log; send errors (ECONNREFUSED
//! after an ICMP port unreachable, EAGAIN) are counted in [`PacerStats`] and never stop a
//! stream. A stream's RTCP timer is checked when the stream
//! is due (at most once per slot): SR + SDES on the odd port at the RFC 3550 interval, and
//! receiver reports waiting on that socket are read then, without blocking. Events
//! ([`StreamEvent`]) are rare and go straight to the callback, from the pacing thread: the
//! callback must be quick and must not block (e.g. a non-blocking channel send).
//!
//! [`PacerConfig`] can put the threads in the SCHED_FIFO real-time class and pin them to
//! CPUs; on a machine shared with other work that is what keeps deadlines (see
//! `examples/pacer_load.rs`).
//!
//! Each stream has its own socket pair — the RTP port advertised in SDP is its source port
//! (symmetric RTP) — `connect()`ed to the remote, so sending is `send()` with no address.
//!
//! # Late wake-ups: catch up, in one `sendmmsg`
//! When the thread wakes late (a descheduled core, a long slot), it processes every missed
//! tick in order. A stream that owes more than one packet sends all it owes, each with the
//! timestamp of its own deadline, in a single `sendmmsg` on its socket: RTP receivers handle a
//! short burst with their jitter buffer far better than a gap, which they would play as loss
//! and count in their RTCP reports. The catch-up is bounded at 8 packets (80–160 ms for 10–20
//! ms ptime); older packets would arrive after any jitter buffer had played out their time, so
//! they are skipped: the timestamp advances over them while the sequence number does not (the
//! receiver sees a silent gap, not loss) and the playout is not advanced (a prompt loses no
//! words; a live source is read by time anyway). Skips are counted in [`PacerStats`].
//! Lateness beyond 2 ms is counted per wake-up, and the maximum kept.
//!
//! Every RTP packet sent also lands in a lateness histogram ([`Lateness`]): how long after
//! its own deadline the thread woke to send it (a caught-up packet counts its whole delay).
//! The wake-up time is read once per wake-up, as before, and each packet adds one to a
//! thread-local bucket (a search over [`LATENESS_BOUNDS_NS`]); the buckets are published
//! with the other counters once per wake-up, so the per-packet path gains no clock read,
//! atomic operation, lock or allocation.
//!
//! Pause keeps the stream on its schedule without sending: its timestamp advances at each
//! deadline, so after resume it equals wall-clock media time, and the first packet after
//! resume carries the marker bit, as does the first packet of the stream.

mod sys;
mod wheel;
mod worker;

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_queue::SegQueue;
use imss_media::{Law, PlayItem, Playout};

#[cfg(doc)]
use crate::Packetizer;
use crate::ports::PortPair;

pub use wheel::MAX_PTIME_MS;

/// A stream to start sending.
pub struct NewStream {
    /// Caller's identifier, unique among live streams.
    pub id: u64,
    /// The local RTP/RTCP sockets (the RTP port is the one advertised in SDP).
    pub ports: PortPair,
    /// Where RTP goes.
    pub remote_rtp: SocketAddr,
    /// Where RTCP goes.
    pub remote_rtcp: SocketAddr,
    /// RTP payload type (0 for PCMU, 8 for PCMA, or as negotiated).
    pub payload_type: u8,
    /// The G.711 law of the payload.
    pub law: Law,
    /// Packet time: whole milliseconds from 1 to [`MAX_PTIME_MS`].
    pub ptime: Duration,
    /// What to play.
    pub playout: Playout,
    /// RTCP SDES CNAME (at most 255 octets).
    pub cname: String,
}

/// What the pacing threads report back (rarely: once per playout end or removal).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The playout returned `Fill::Ended`; the stream no longer sends (until its playout is
    /// replaced) but keeps its ports until removed.
    Ended {
        /// Stream id.
        id: u64,
        /// Which playout ended: 0 for the one the stream was added with, n after the n-th
        /// `replace_playout`. Lets the control plane tell a stale end from the current one.
        playout: u64,
    },
    /// The playout reached a mark (`PlayItem::Mark`) in the packet built now.
    Mark {
        /// Stream id.
        id: u64,
        /// Which playout (as in `Ended`).
        playout: u64,
        /// The mark's number.
        mark: u32,
    },
    /// The stream sent its RTCP BYE and released its ports.
    Removed {
        /// Stream id.
        id: u64,
        /// RTP packets sent over the stream's life.
        packets: u64,
        /// RTP payload octets sent over the stream's life.
        octets: u64,
    },
}

/// Why a stream was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum PacingError {
    /// A live stream already has this id.
    #[error("stream {id} already exists")]
    DuplicateId {
        /// The id.
        id: u64,
    },
    /// The packet time is not a whole number of milliseconds in range.
    #[error("ptime {ptime:?} unsupported: whole milliseconds from 1 to {MAX_PTIME_MS} are")]
    Ptime {
        /// The ptime asked for.
        ptime: Duration,
    },
    /// The CNAME does not fit an SDES item.
    #[error("RTCP CNAME is {len} octets long, the limit is 255")]
    Cname {
        /// CNAME length.
        len: usize,
    },
    /// Preparing a socket failed (non-blocking mode or connect to the remote).
    #[error("cannot {action} for stream {id}: {source}")]
    Socket {
        /// Stream id.
        id: u64,
        /// What was attempted, naming the address.
        action: String,
        /// The OS error.
        source: io::Error,
    },
    /// The pacer is shutting down.
    #[error("the pacer is shutting down")]
    ShuttingDown,
}

/// Upper bounds, in nanoseconds, of the lateness histogram's buckets (each bucket holds the
/// packets at most this late and later than the bound before); one more bucket holds the
/// rest.
pub const LATENESS_BOUNDS_NS: [u64; 11] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_000_000,
    5_000_000,
    10_000_000,
    20_000_000,
    50_000_000,
    100_000_000,
];

/// Buckets of the lateness histogram: one per bound, and one above the last.
pub const LATENESS_BUCKETS: usize = LATENESS_BOUNDS_NS.len() + 1;

/// How late RTP packets left against their deadlines: packets per bucket (not cumulative;
/// bucket *i* is bounded by `LATENESS_BOUNDS_NS[i]`, the last one is unbounded) and the sum
/// of their lateness.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lateness {
    /// Packets per bucket.
    pub buckets: [u64; LATENESS_BUCKETS],
    /// Sum of every counted packet's lateness, in nanoseconds.
    pub sum_ns: u64,
}

impl Lateness {
    /// The bucket a packet `ns` late falls in.
    pub fn bucket_of(ns: u64) -> usize {
        LATENESS_BOUNDS_NS.partition_point(|&bound| bound < ns)
    }

    /// Counts one packet `ns` late.
    pub fn record(&mut self, ns: u64) {
        self.buckets[Self::bucket_of(ns)] += 1;
        self.sum_ns = self.sum_ns.wrapping_add(ns);
    }

    /// Packets counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// What was counted after `earlier` (a previous reading of the same counters).
    pub fn since(&self, earlier: &Lateness) -> Lateness {
        let mut d = Lateness {
            sum_ns: self.sum_ns.wrapping_sub(earlier.sum_ns),
            ..Lateness::default()
        };
        for (i, b) in d.buckets.iter_mut().enumerate() {
            *b = self.buckets[i].saturating_sub(earlier.buckets[i]);
        }
        d
    }

    /// The `q` quantile (0–1), interpolated linearly within its bucket; the open last
    /// bucket answers its lower bound. `None` when nothing was counted.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut below = 0u64;
        for (i, &n) in self.buckets.iter().enumerate() {
            if n > 0 && (below + n) as f64 >= rank {
                let low = if i == 0 { 0 } else { LATENESS_BOUNDS_NS[i - 1] };
                let Some(&high) = LATENESS_BOUNDS_NS.get(i) else {
                    return Some(Duration::from_nanos(low));
                };
                let within = (rank - below as f64) / n as f64;
                return Some(Duration::from_nanos(
                    low + ((high - low) as f64 * within) as u64,
                ));
            }
            below += n;
        }
        Some(Duration::from_nanos(
            LATENESS_BOUNDS_NS[LATENESS_BOUNDS_NS.len() - 1],
        ))
    }
}

/// Counters over all pacing threads since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacerStats {
    /// RTP packets handed to the kernel.
    pub packets_sent: u64,
    /// RTP octets (headers included) handed to the kernel.
    pub octets_sent: u64,
    /// RTP and RTCP sends that failed (ECONNREFUSED, EAGAIN, …).
    pub send_errors: u64,
    /// Packets skipped because a thread woke too late to send them usefully.
    pub skipped_packets: u64,
    /// Wake-ups more than 2 ms after their deadline.
    pub late_wakeups: u64,
    /// The latest any wake-up has been.
    pub max_lateness: Duration,
    /// RTCP compound packets sent (SR/RR, BYE).
    pub rtcp_sent: u64,
    /// RTCP receiver reports about our streams received.
    pub receiver_reports: u64,
    /// Sum over streams of the cumulative loss their receivers last reported.
    pub reported_lost: i64,
    /// Streams owned by the pacing threads (added and not yet `Removed`).
    pub streams: usize,
    /// Pacing threads.
    pub threads: usize,
    /// How late each RTP packet sent left against its deadline.
    pub lateness: Lateness,
}

/// How the pacing threads run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PacerConfig {
    /// Pacing threads; 0 means one per available core.
    pub threads: usize,
    /// Run the pacing threads in the SCHED_FIFO real-time class at this priority (1–99), so
    /// compilers, backups or the control plane cannot delay a deadline. Needs CAP_SYS_NICE or
    /// an RLIMIT_RTPRIO allowance; when refused, the threads keep normal scheduling and one
    /// warning is logged. The kernel's RT throttling (sched_rt_runtime_us) still leaves other
    /// threads 5% of each core should the pacer ever be overloaded. `None`: normal scheduling.
    pub realtime_priority: Option<u8>,
    /// Pin pacing thread *i* to CPU *i* mod the CPUs available, so it keeps its cache warm.
    pub pin_cpus: bool,
}

pub(crate) struct RemoteUpdate {
    pub(crate) rtp: SocketAddr,
    pub(crate) rtcp: SocketAddr,
    pub(crate) ptime_ms: Option<u32>,
    pub(crate) law: Law,
    pub(crate) payload_type: u8,
}

pub(crate) enum Command {
    Add(Box<NewStream>),
    Remove(u64),
    Pause(u64),
    Resume(u64),
    Replace(u64, Box<Playout>),
    Seek(u64, i64),
    Restart(u64),
    /// Samples the playout may still play from its current point.
    Limit(u64, u64),
    EndAtMark(u64, Option<u32>),
    ReplaceUpcoming(u64, Vec<PlayItem>),
    UpdateRemote(u64, Box<RemoteUpdate>),
}

#[derive(Default)]
pub(crate) struct ThreadStats {
    pub(crate) packets: AtomicU64,
    pub(crate) octets: AtomicU64,
    pub(crate) send_errors: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) late_wakeups: AtomicU64,
    pub(crate) max_lateness_ns: AtomicU64,
    pub(crate) rtcp_sent: AtomicU64,
    pub(crate) receiver_reports: AtomicU64,
    pub(crate) reported_lost: AtomicI64,
    /// Packets per lateness bucket (see [`Lateness`]).
    pub(crate) lateness: [AtomicU64; LATENESS_BUCKETS],
    pub(crate) lateness_sum_ns: AtomicU64,
}

pub(crate) struct ThreadShared {
    pub(crate) commands: SegQueue<Command>,
    /// Streams routed to this thread and not yet removed by it.
    pub(crate) assigned: AtomicUsize,
    pub(crate) stats: ThreadStats,
}

pub(crate) type EventCallback = Arc<dyn Fn(StreamEvent) + Send + Sync>;

pub(crate) struct Shared {
    pub(crate) threads: Vec<ThreadShared>,
    /// Stream id → thread index; control plane only.
    routes: Mutex<HashMap<u64, usize>>,
    /// Stream id → RTP packets it has sent so far, published by its thread after each send;
    /// control plane reads ([`Pacer::packets_sent`]).
    sent: Mutex<HashMap<u64, Arc<AtomicU64>>>,
    pub(crate) active: AtomicUsize,
    pub(crate) stop: AtomicBool,
    pub(crate) on_event: EventCallback,
}

impl Shared {
    fn routes(&self) -> MutexGuard<'_, HashMap<u64, usize>> {
        // A map of plain values: consistent even if a holder panicked.
        self.routes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sent(&self) -> MutexGuard<'_, HashMap<u64, Arc<AtomicU64>>> {
        // A map of plain values: consistent even if a holder panicked.
        self.sent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The packet counter of stream `id` that [`Pacer::packets_sent`] reads (a detached one
    /// for a stream added without [`Pacer::add`]).
    pub(crate) fn sent_counter(&self, id: u64) -> Arc<AtomicU64> {
        self.sent().get(&id).cloned().unwrap_or_default()
    }
}

/// The pacing engine: dedicated threads sending every stream's packets on time. `Send + Sync`;
/// share it with `Arc`.
pub struct Pacer {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("threads", &self.shared.threads.len())
            .field("active_streams", &self.active_streams())
            .finish()
    }
}

fn ptime_ms(ptime: Duration) -> Option<u32> {
    let ms = ptime.as_millis();
    let whole = Duration::from_millis(u64::try_from(ms).ok()?) == ptime;
    (whole && (1..=u128::from(MAX_PTIME_MS)).contains(&ms)).then_some(ms as u32)
}

impl Pacer {
    /// Starts `threads` pacing threads (0: one per available core) with normal scheduling.
    /// `on_event` is called from the pacing threads and must not block.
    pub fn start(
        threads: usize,
        on_event: Arc<dyn Fn(StreamEvent) + Send + Sync>,
    ) -> io::Result<Pacer> {
        Self::start_with(
            PacerConfig {
                threads,
                ..PacerConfig::default()
            },
            on_event,
        )
    }

    /// Starts the pacing threads as `config` says. `on_event` is called from the pacing
    /// threads and must not block.
    pub fn start_with(
        config: PacerConfig,
        on_event: Arc<dyn Fn(StreamEvent) + Send + Sync>,
    ) -> io::Result<Pacer> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = if config.threads == 0 {
            cores
        } else {
            config.threads
        };
        let cpus = allowed_cpus();
        let shared = Arc::new(Shared {
            threads: (0..threads)
                .map(|_| ThreadShared {
                    commands: SegQueue::new(),
                    assigned: AtomicUsize::new(0),
                    stats: ThreadStats::default(),
                })
                .collect(),
            routes: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            on_event,
        });
        let mut pacer = Pacer {
            shared: Arc::clone(&shared),
            handles: Vec::with_capacity(threads),
        };
        for index in 0..threads {
            let shared = Arc::clone(&shared);
            let cpu = (config.pin_cpus && !cpus.is_empty()).then(|| cpus[index % cpus.len()]);
            let priority = config.realtime_priority;
            let handle = std::thread::Builder::new()
                .name(format!("imss-pacer-{index}"))
                .spawn(move || {
                    prepare_thread(index, cpu, priority);
                    worker::Worker::new(shared, index).run()
                })?;
            pacer.handles.push(handle);
        }
        tracing::info!(
            threads,
            realtime_priority = ?config.realtime_priority,
            pin_cpus = config.pin_cpus,
            "pacing threads started"
        );
        Ok(pacer)
    }

    /// Starts sending a stream: its sockets are made non-blocking and connected to the remote
    /// here, on the caller's thread, so that failures are reported to the caller.
    pub fn add(&self, s: NewStream) -> Result<(), PacingError> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(PacingError::ShuttingDown);
        }
        let Some(_) = ptime_ms(s.ptime) else {
            return Err(PacingError::Ptime { ptime: s.ptime });
        };
        if s.cname.len() > 255 {
            return Err(PacingError::Cname { len: s.cname.len() });
        }
        let id = s.id;
        let socket_err = |action: String| move |source| PacingError::Socket { id, action, source };
        s.ports
            .rtp
            .set_nonblocking(true)
            .map_err(socket_err("make the RTP socket non-blocking".into()))?;
        s.ports
            .rtcp
            .set_nonblocking(true)
            .map_err(socket_err("make the RTCP socket non-blocking".into()))?;
        s.ports
            .rtp
            .connect(s.remote_rtp)
            .map_err(socket_err(format!("connect RTP to {}", s.remote_rtp)))?;
        s.ports
            .rtcp
            .connect(s.remote_rtcp)
            .map_err(socket_err(format!("connect RTCP to {}", s.remote_rtcp)))?;

        let mut routes = self.shared.routes();
        if routes.contains_key(&id) {
            return Err(PacingError::DuplicateId { id });
        }
        let thread = self
            .shared
            .threads
            .iter()
            .enumerate()
            .min_by_key(|(_, t)| t.assigned.load(Ordering::Relaxed))
            .map_or(0, |(i, _)| i);
        routes.insert(id, thread);
        self.shared.sent().insert(id, Arc::default());
        let target = &self.shared.threads[thread];
        target.assigned.fetch_add(1, Ordering::Relaxed);
        self.shared.active.fetch_add(1, Ordering::AcqRel);
        target.commands.push(Command::Add(Box::new(s)));
        Ok(())
    }

    fn send_to(&self, id: u64, command: Command) {
        let thread = self.shared.routes().get(&id).copied();
        match thread {
            Some(t) => self.shared.threads[t].commands.push(command),
            None => tracing::debug!(stream = id, "command for unknown stream ignored"),
        }
    }

    /// Sends RTCP BYE, then releases the stream's sockets and port; emits `Removed`.
    pub fn remove(&self, id: u64) {
        let thread = self.shared.routes().remove(&id);
        self.shared.sent().remove(&id);
        match thread {
            Some(t) => self.shared.threads[t].commands.push(Command::Remove(id)),
            None => tracing::debug!(stream = id, "remove of unknown stream ignored"),
        }
    }

    /// Stops sending; the stream's timestamp keeps pace with time.
    pub fn pause(&self, id: u64) {
        self.send_to(id, Command::Pause(id));
    }

    /// Resumes sending; the first packet carries the marker bit.
    pub fn resume(&self, id: u64) {
        self.send_to(id, Command::Resume(id));
    }

    /// Moves the playout's cursor `delta_samples` within its current item (negative: back).
    pub fn seek(&self, id: u64, delta_samples: i64) {
        self.send_to(id, Command::Seek(id, delta_samples));
    }

    /// Starts the playout again from its beginning (an ended stream sends again).
    pub fn restart(&self, id: u64) {
        self.send_to(id, Command::Restart(id));
    }

    /// Lets the playout play at most `remaining` more from its current point, replacing any
    /// earlier limit (MRCP CONTROL `Speak-Length`); it then ends as at its own end (`Ended`).
    pub fn limit_remaining(&self, id: u64, remaining: Duration) {
        self.send_to(id, Command::Limit(id, imss_media::samples_in(remaining)));
    }

    /// Ends the playout when it next reaches mark `mark` (after reporting it); `None` lets it
    /// play to its end again (MRCP `Speak-Length: <mark> Tag`).
    pub fn end_at_mark(&self, id: u64, mark: Option<u32>) {
        self.send_to(id, Command::EndAtMark(id, mark));
    }

    /// Gives the playout new renderings of its items, except the one playing now
    /// ([`Playout::replace_upcoming`]; MRCP CONTROL `Prosody-*`). Ignored when `items` does
    /// not have the playout's length.
    pub fn replace_upcoming(&self, id: u64, items: Vec<PlayItem>) {
        self.send_to(id, Command::ReplaceUpcoming(id, items));
    }

    /// Replaces what the stream plays; an `Ended` stream starts sending again.
    pub fn replace_playout(&self, id: u64, p: Playout) {
        self.send_to(id, Command::Replace(id, Box::new(p)));
    }

    /// Applies a renegotiation (re-INVITE): new remote addresses, ptime, law and payload type.
    /// SSRC, sequence and timestamp continue. An unsupported ptime keeps the old one.
    pub fn update_remote(
        &self,
        id: u64,
        remote_rtp: SocketAddr,
        remote_rtcp: SocketAddr,
        ptime: Duration,
        law: Law,
        payload_type: u8,
    ) {
        let ptime_ms = ptime_ms(ptime);
        if ptime_ms.is_none() {
            tracing::warn!(stream = id, ?ptime, "unsupported ptime in update ignored");
        }
        let update = RemoteUpdate {
            rtp: remote_rtp,
            rtcp: remote_rtcp,
            ptime_ms,
            law,
            payload_type,
        };
        self.send_to(id, Command::UpdateRemote(id, Box::new(update)));
    }

    /// RTP packets stream `id` has sent so far (as its RTCP sender reports count them);
    /// `None` for a stream that was never added or is removed.
    pub fn packets_sent(&self, id: u64) -> Option<u64> {
        self.shared
            .sent()
            .get(&id)
            .map(|n| n.load(Ordering::Relaxed))
    }

    /// Streams owned by the pacing threads (added and not yet `Removed`).
    pub fn active_streams(&self) -> usize {
        self.shared.active.load(Ordering::Acquire)
    }

    /// Counters over all threads.
    pub fn stats(&self) -> PacerStats {
        let mut s = PacerStats {
            streams: self.active_streams(),
            threads: self.shared.threads.len(),
            ..PacerStats::default()
        };
        let mut max_ns = 0;
        for t in &self.shared.threads {
            let st = &t.stats;
            s.packets_sent += st.packets.load(Ordering::Relaxed);
            s.octets_sent += st.octets.load(Ordering::Relaxed);
            s.send_errors += st.send_errors.load(Ordering::Relaxed);
            s.skipped_packets += st.skipped.load(Ordering::Relaxed);
            s.late_wakeups += st.late_wakeups.load(Ordering::Relaxed);
            s.rtcp_sent += st.rtcp_sent.load(Ordering::Relaxed);
            s.receiver_reports += st.receiver_reports.load(Ordering::Relaxed);
            s.reported_lost += st.reported_lost.load(Ordering::Relaxed);
            max_ns = max_ns.max(st.max_lateness_ns.load(Ordering::Relaxed));
            for (total, bucket) in s.lateness.buckets.iter_mut().zip(&st.lateness) {
                *total += bucket.load(Ordering::Relaxed);
            }
            s.lateness.sum_ns = s
                .lateness
                .sum_ns
                .wrapping_add(st.lateness_sum_ns.load(Ordering::Relaxed));
        }
        s.max_lateness = Duration::from_nanos(max_ns);
        s
    }

    /// Stops every stream (RTCP BYE, `Removed`) and joins the threads.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if self.handles.is_empty() {
            return;
        }
        self.shared.stop.store(true, Ordering::Release);
        for handle in self.handles.drain(..) {
            if handle.join().is_err() {
                tracing::error!("a pacing thread panicked");
            }
        }
        tracing::info!("pacing threads stopped");
    }
}

/// The CPUs this process may run on, in order.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Scheduling set-up of a pacing thread, before its loop; failures leave defaults.
fn prepare_thread(index: usize, cpu: Option<usize>, priority: Option<u8>) {
    if let Some(cpu) = cpu
        && let Err(e) = sys::pin_to_cpu(cpu)
    {
        tracing::warn!(thread = index, cpu, error = %e, "cannot pin pacing thread");
    }
    if let Some(priority) = priority
        && let Err(e) = sys::set_realtime(priority)
    {
        // One line per pacer, not per thread.
        if index == 0 {
            tracing::warn!(
                priority,
                error = %e,
                "pacing threads keep normal scheduling: SCHED_FIFO refused (needs CAP_SYS_NICE)"
            );
        }
    }
}

impl Drop for Pacer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ptime_validation() {
        assert_eq!(ptime_ms(Duration::from_millis(20)), Some(20));
        assert_eq!(ptime_ms(Duration::from_millis(120)), Some(120));
        assert_eq!(ptime_ms(Duration::from_millis(121)), None);
        assert_eq!(ptime_ms(Duration::ZERO), None);
        assert_eq!(ptime_ms(Duration::from_micros(20_500)), None);
    }

    #[test]
    fn lateness_buckets_hold_values_up_to_their_bound() {
        assert_eq!(Lateness::bucket_of(0), 0);
        assert_eq!(Lateness::bucket_of(50_000), 0);
        assert_eq!(Lateness::bucket_of(50_001), 1);
        assert_eq!(Lateness::bucket_of(1_000_000), 4);
        assert_eq!(Lateness::bucket_of(1_000_001), 5);
        assert_eq!(Lateness::bucket_of(100_000_000), 10);
        assert_eq!(Lateness::bucket_of(100_000_001), 11);
        assert_eq!(Lateness::bucket_of(u64::MAX), LATENESS_BUCKETS - 1);
    }

    #[test]
    fn lateness_quantiles_and_differences() {
        let mut l = Lateness::default();
        assert_eq!(l.quantile(0.5), None);
        for _ in 0..98 {
            l.record(40_000); // bucket 0: 0–50 µs
        }
        l.record(3_000_000); // bucket 6: 2–5 ms
        l.record(200_000_000); // above the last bound
        assert_eq!(l.count(), 100);
        assert_eq!(l.sum_ns, 98 * 40_000 + 3_000_000 + 200_000_000);
        let p50 = l.quantile(0.5).unwrap_or_default();
        assert!(p50 <= Duration::from_micros(50), "{p50:?}");
        let p99 = l.quantile(0.99).unwrap_or_default();
        assert!(
            p99 > Duration::from_millis(2) && p99 <= Duration::from_millis(5),
            "{p99:?}"
        );
        assert_eq!(l.quantile(1.0), Some(Duration::from_millis(100)));
        let earlier = l;
        l.record(700_000);
        let d = l.since(&earlier);
        assert_eq!(d.count(), 1);
        assert_eq!(d.buckets[4], 1);
        assert_eq!(d.sum_ns, 700_000);
    }

    #[test]
    fn pacer_is_send_sync() {
        fn check<T: Send + Sync>() {}
        check::<Pacer>();
    }
}
