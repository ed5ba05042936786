//! RTP receiver threads: a few std threads, each with an epoll set over non-blocking sockets.
//!
//! Streams live in preallocated slots (slot `i` belongs to thread `i % threads`). The control
//! plane adds and closes streams through a channel that each thread drains between
//! `epoll_wait`s; the per-packet path (recvmmsg, header parse, statistics) allocates nothing,
//! locks nothing and logs nothing. Spacing errors go to one histogram per thread, merged
//! when the pool stops.

use crate::capture::AudioCapture;
use crate::net::RecvBatch;
use crate::stats::{
    Arrival, SpacingHistogram, SplitSpacing, SteadyWindow, StreamStats, StreamSummary, Verdict,
};
use imss_media::Law;
use imss_rtp::RtpHeader;
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Datagrams per recvmmsg call.
const BATCH: usize = 16;
/// Batches read from one ready socket before serving the others.
const MAX_BATCHES_PER_WAKE: usize = 4;
/// Ready sockets handled per epoll_wait.
const EVENTS: usize = 256;
/// How often a thread looks at its command channel when no packet arrives.
const IDLE_WAIT_MS: i32 = 5;

/// One stream to receive: its socket and what to measure it against.
#[derive(Debug)]
pub struct StreamSpec {
    /// Slot index, below the pool's `slots`.
    pub slot: usize,
    /// The bound, non-blocking RTP socket (see [`crate::net::bind_rtp_pair`]).
    pub socket: UdpSocket,
    /// The RTCP socket, held open (and not read) so the peer's RTCP is not answered with
    /// ICMP port unreachable.
    pub rtcp: Option<UdpSocket>,
    /// Negotiated packet time: the expected arrival spacing.
    pub ptime: Duration,
    /// Where to place decoded audio, if the caller wants it.
    pub capture: Option<AudioCapture>,
}

/// What a pool learned about one stream.
#[derive(Debug)]
pub struct StreamResult {
    /// Receiver figures.
    pub summary: StreamSummary,
    /// The decoded audio, when a capture was given.
    pub capture: Option<AudioCapture>,
    /// recvmmsg failures other than "nothing to read".
    pub recv_errors: u64,
    /// Kernel arrival time (CLOCK_REALTIME ns) of the first G.711 packet carrying sound
    /// (a sample above [`SOUND_THRESHOLD`]): where a SPEAK's audio began on a stream that
    /// carried only silence before it.
    pub first_sound_ns: Option<i64>,
}

/// A decoded G.711 sample whose magnitude exceeds this (about −42 dBFS) is sound, not the
/// comfort silence a server sends between requests.
pub const SOUND_THRESHOLD: i16 = 256;

/// Everything the pool measured, by slot.
#[derive(Debug)]
pub struct PoolOutput {
    /// Results by slot index; `None` for slots never added.
    pub streams: Vec<Option<StreamResult>>,
    /// Spacing errors of all streams, merged across threads.
    pub spacing: SpacingHistogram,
    /// The same, for packets that arrived inside the steady window only.
    pub steady_spacing: SpacingHistogram,
}

enum Command {
    Add(Box<StreamSpec>),
    Close(usize),
}

struct Worker {
    commands: mpsc::Sender<Command>,
    join: JoinHandle<io::Result<WorkerOutput>>,
}

struct WorkerOutput {
    slots: Vec<Option<StreamResult>>,
    spacing: SplitSpacing,
}

/// A set of receiver threads sharing the streams of a call or a bench run.
pub struct ReceiverPool {
    workers: Vec<Worker>,
    slots: usize,
}

impl ReceiverPool {
    /// Starts `threads` receiver threads for up to `slots` streams; the first `skip_spacing`
    /// of each stream is left out of the spacing figures.
    ///
    /// With a non-zero `poll_interval` a thread reads its sockets at most once per interval:
    /// arrival times come from the kernel, so reading late costs no accuracy, and a socket
    /// read every 100 ms yields five 20 ms packets per system call instead of one.
    pub fn start(
        threads: usize,
        slots: usize,
        skip_spacing: Duration,
        poll_interval: Duration,
        window: Arc<SteadyWindow>,
    ) -> io::Result<ReceiverPool> {
        let threads = threads.clamp(1, slots.max(1));
        let per_thread = slots.div_ceil(threads);
        let skip_ns = u64::try_from(skip_spacing.as_nanos()).unwrap_or(u64::MAX);
        let mut workers = Vec::with_capacity(threads);
        for t in 0..threads {
            let (tx, rx) = mpsc::channel();
            // SAFETY: epoll_create1 has no memory arguments.
            let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
            if raw < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh fd that nothing else owns.
            let epfd = unsafe { OwnedFd::from_raw_fd(raw) };
            let window = window.clone();
            let join = std::thread::Builder::new()
                .name(format!("rtp-rx-{t}"))
                .spawn(move || {
                    worker_loop(
                        epfd.as_raw_fd(),
                        threads,
                        per_thread,
                        skip_ns,
                        poll_interval,
                        window,
                        rx,
                    )
                })?;
            workers.push(Worker { commands: tx, join });
        }
        Ok(ReceiverPool { workers, slots })
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.slots
    }

    /// Starts receiving a stream in its slot (replacing what was there).
    pub fn add(&self, spec: StreamSpec) -> io::Result<()> {
        if spec.slot >= self.slots {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("slot {} out of range (pool has {})", spec.slot, self.slots),
            ));
        }
        let w = &self.workers[spec.slot % self.workers.len()];
        w.commands
            .send(Command::Add(Box::new(spec)))
            .map_err(|_| io::Error::other("receiver thread has stopped"))
    }

    /// Stops receiving a stream; its figures are kept for [`ReceiverPool::finish`].
    pub fn close(&self, slot: usize) {
        if let Some(w) = self.workers.get(slot % self.workers.len().max(1)) {
            let _ = w.commands.send(Command::Close(slot));
        }
    }

    /// Stops the threads and collects every stream's figures.
    pub fn finish(self) -> io::Result<PoolOutput> {
        let threads = self.workers.len();
        let mut streams: Vec<Option<StreamResult>> = (0..self.slots).map(|_| None).collect();
        let mut spacing = SpacingHistogram::new();
        let mut steady_spacing = SpacingHistogram::new();
        let mut first_err = None;
        for (t, w) in self.workers.into_iter().enumerate() {
            drop(w.commands);
            match w.join.join() {
                Ok(Ok(out)) => {
                    spacing.merge(&out.spacing.all);
                    steady_spacing.merge(&out.spacing.steady);
                    for (local, r) in out.slots.into_iter().enumerate() {
                        let slot = local * threads + t;
                        if slot < streams.len() {
                            streams[slot] = r;
                        }
                    }
                }
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(_) => {
                    first_err = first_err.or(Some(io::Error::other("receiver thread panicked")))
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(PoolOutput {
                streams,
                spacing,
                steady_spacing,
            }),
        }
    }
}

struct Slot {
    socket: Option<UdpSocket>,
    /// Held open, never read.
    rtcp: Option<UdpSocket>,
    stats: StreamStats,
    capture: Option<AudioCapture>,
    recv_errors: u64,
    first_sound_ns: Option<i64>,
}

impl Slot {
    fn result(self) -> StreamResult {
        StreamResult {
            summary: self.stats.summary(),
            capture: self.capture,
            recv_errors: self.recv_errors,
            first_sound_ns: self.first_sound_ns,
        }
    }
}

fn worker_loop(
    epfd: i32,
    threads: usize,
    per_thread: usize,
    skip_ns: u64,
    poll_interval: Duration,
    window: Arc<SteadyWindow>,
    commands: mpsc::Receiver<Command>,
) -> io::Result<WorkerOutput> {
    let mut slots: Vec<Option<Slot>> = (0..per_thread).map(|_| None).collect();
    let mut spacing = SplitSpacing::new(window);
    let paced = !poll_interval.is_zero();
    let mut batch = RecvBatch::new(BATCH);
    // SAFETY: epoll_event is plain old data.
    let mut events: Vec<libc::epoll_event> = vec![unsafe { std::mem::zeroed() }; EVENTS];
    loop {
        // Control path: apply what the control plane asked for.
        loop {
            match commands.try_recv() {
                Ok(Command::Add(spec)) => {
                    let local = spec.slot / threads;
                    let Some(place) = slots.get_mut(local) else {
                        continue;
                    };
                    if let Some(old) = place.as_mut() {
                        unregister(epfd, old);
                    }
                    let StreamSpec {
                        socket,
                        rtcp,
                        ptime,
                        capture,
                        ..
                    } = *spec;
                    // Paced threads visit every socket each round and need no readiness
                    // events; leaving their sockets out of epoll also spares the sender the
                    // epoll wake-up work that loopback delivery charges to it per packet.
                    if !paced {
                        let mut ev = libc::epoll_event {
                            events: libc::EPOLLIN as u32,
                            u64: local as u64,
                        };
                        // SAFETY: the fd is open (owned by `socket`, stored in the slot below).
                        let rc = unsafe {
                            libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, socket.as_raw_fd(), &mut ev)
                        };
                        if rc != 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    let ptime_ns = u64::try_from(ptime.as_nanos()).unwrap_or(u64::MAX);
                    *place = Some(Slot {
                        socket: Some(socket),
                        rtcp,
                        stats: StreamStats::new(ptime_ns, skip_ns),
                        capture,
                        recv_errors: 0,
                        first_sound_ns: None,
                    });
                }
                Ok(Command::Close(slot)) => {
                    if let Some(Some(s)) = slots.get_mut(slot / threads) {
                        // Read what already arrived before closing.
                        drain(s, &mut batch, &mut spacing);
                        unregister(epfd, s);
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    for s in slots.iter_mut().flatten() {
                        drain(s, &mut batch, &mut spacing);
                        unregister(epfd, s);
                    }
                    return Ok(WorkerOutput {
                        slots: slots.into_iter().map(|s| s.map(Slot::result)).collect(),
                        spacing,
                    });
                }
            }
        }
        // Packet path. Paced: read every socket, then sleep out the interval. Otherwise:
        // every ready socket, as epoll reports them.
        let round = Instant::now();
        if paced {
            for s in slots.iter_mut().flatten() {
                drain(s, &mut batch, &mut spacing);
            }
            if let Some(rest) = poll_interval.checked_sub(round.elapsed())
                && !rest.is_zero()
            {
                std::thread::sleep(rest);
            }
            continue;
        }
        let mut timeout = IDLE_WAIT_MS;
        loop {
            // SAFETY: `events` has EVENTS entries.
            let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), EVENTS as i32, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    break;
                }
                return Err(e);
            }
            for ev in &events[..n as usize] {
                let local = ev.u64 as usize;
                if let Some(Some(s)) = slots.get_mut(local) {
                    drain(s, &mut batch, &mut spacing);
                }
            }
            if (n as usize) < EVENTS {
                break;
            }
            timeout = 0;
        }
    }
}

fn unregister(epfd: i32, s: &mut Slot) {
    if let Some(sock) = s.socket.take() {
        // SAFETY: removing an fd we added; the event pointer may be null for DEL.
        unsafe {
            libc::epoll_ctl(
                epfd,
                libc::EPOLL_CTL_DEL,
                sock.as_raw_fd(),
                std::ptr::null_mut(),
            )
        };
    }
    s.rtcp = None;
}

/// Reads what is waiting on the slot's socket (bounded, so one busy socket cannot starve
/// the others) and accounts for every packet.
fn drain(s: &mut Slot, batch: &mut RecvBatch, spacing: &mut SplitSpacing) {
    let Some(sock) = s.socket.as_ref() else {
        return;
    };
    let fd = sock.as_raw_fd();
    for _ in 0..MAX_BATCHES_PER_WAKE {
        let n = match batch.recv(fd) {
            Ok(n) => n,
            Err(_) => {
                s.recv_errors += 1;
                return;
            }
        };
        for i in 0..n {
            if let Some((data, at)) = batch.get(i) {
                account(s, data, at, spacing);
            }
        }
        if n < BATCH {
            return;
        }
    }
}

fn account(s: &mut Slot, data: &[u8], arrival_ns: i64, spacing: &mut SplitSpacing) {
    let Ok(h) = RtpHeader::parse(data) else {
        return;
    };
    // RFC 5761: payload types 64-95 on an RTP port are RTCP (SR=200, RR=201, ... with the
    // marker bit), e.g. a sender's RTCP aimed at a neighbouring port.
    if (64..=95).contains(&h.payload_type) {
        return;
    }
    let law = match h.payload_type {
        0 => Some(Law::Pcmu),
        8 => Some(Law::Pcma),
        _ => None,
    };
    let arrival = Arrival {
        ssrc: h.ssrc,
        seq: h.sequence,
        ts: h.timestamp,
        arrival_ns,
        audio: law.is_some(),
        payload_len: h.payload_len,
    };
    let verdict = s.stats.on_packet(arrival, spacing);
    let payload = data.get(h.payload_offset..h.payload_offset + h.payload_len);
    if let (Some(law), Some(payload)) = (law, payload) {
        if s.first_sound_ns.is_none() && has_sound(law, payload) {
            s.first_sound_ns = Some(arrival_ns);
        }
        if verdict == Verdict::Audio
            && let Some(cap) = s.capture.as_mut()
        {
            cap.place(h.ssrc, h.timestamp, arrival_ns, law, payload);
        }
    }
}

/// True when a G.711 payload holds a sample louder than [`SOUND_THRESHOLD`].
pub fn has_sound(law: Law, payload: &[u8]) -> bool {
    let decode = match law {
        Law::Pcmu => imss_media::g711::ulaw_decode,
        Law::Pcma => imss_media::g711::alaw_decode,
    };
    payload
        .iter()
        .any(|&b| decode(b).unsigned_abs() > SOUND_THRESHOLD as u16)
}
