//! One pacing thread: its streams, its wheel, its loop.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_queue::SegQueue;
use imss_media::{Fill, Law, Playout};
use rand::SeedableRng;
use rand::rngs::StdRng;

use super::sys::{self, MAX_BATCH};
use super::wheel::{LoadTable, MAX_PTIME_MS, Wheel, first_due};
use super::{Command, Lateness, NewStream, RemoteUpdate, Shared, StreamEvent};
use crate::packet::{HEADER_LEN, Packetizer};
use crate::ports::PortPair;
use crate::rtcp::{self, NtpTime, RtcpTimer, SenderInfo};

const NS_PER_MS: u64 = 1_000_000;
/// G.711 at 8 kHz: samples (= payload octets) per millisecond.
const SAMPLES_PER_MS: u32 = 8;
const MAX_PACKET: usize = HEADER_LEN + (MAX_PTIME_MS * SAMPLES_PER_MS) as usize;
/// Commands applied per wake-up, so a burst of adds cannot delay a slot.
const MAX_COMMANDS_PER_WAKE: usize = 256;
/// Lateness counted as a late wake-up.
const LATE_NS: u64 = 2 * NS_PER_MS;
/// The longest a thread sleeps (ms) when no stream is due sooner: the bound on how long a
/// command waits. Waking only for occupied slots keeps a lightly loaded thread from paying a
/// timer interrupt every millisecond (costly in virtual machines).
const MAX_SLEEP_TICKS: u64 = 20;
/// RTCP datagrams read per report, at most.
const MAX_RTCP_READS: usize = 4;

/// One stream's state: what the per-slot loop touches, kept small.
struct Stream {
    id: u64,
    /// Playouts replaced so far (see `StreamEvent::Ended::playout`).
    playout_generation: u64,
    next_due: u64,
    ptime_ms: u32,
    phase: u32,
    law: Law,
    paused: bool,
    ended: bool,
    marker: bool,
    sent_this_interval: bool,
    sent_last_interval: bool,
    last_cumulative_lost: i32,
    packetizer: Packetizer,
    /// Where the packet count is published for the control plane.
    sent: Arc<std::sync::atomic::AtomicU64>,
    playout: Playout,
    rtcp: RtcpTimer,
    ports: PortPair,
    cname: Box<str>,
}

/// Slab of streams: indices stay valid while a stream lives and are reused after.
struct Slab {
    entries: Vec<Option<Stream>>,
    free: Vec<u32>,
    len: usize,
}

impl Slab {
    fn insert(&mut self, s: Stream) -> u32 {
        self.len += 1;
        match self.free.pop() {
            Some(i) => {
                self.entries[i as usize] = Some(s);
                i
            }
            None => {
                self.entries.push(Some(s));
                (self.entries.len() - 1) as u32
            }
        }
    }

    fn remove(&mut self, i: u32) -> Option<Stream> {
        let s = self.entries.get_mut(i as usize)?.take()?;
        self.free.push(i);
        self.len -= 1;
        Some(s)
    }

    fn get_mut(&mut self, i: u32) -> Option<&mut Stream> {
        self.entries.get_mut(i as usize)?.as_mut()
    }
}

/// Counters kept locally and published once per wake-up.
#[derive(Default)]
struct LocalStats {
    packets: u64,
    octets: u64,
    send_errors: u64,
    skipped: u64,
    rtcp_sent: u64,
    receiver_reports: u64,
    reported_lost: i64,
    lateness: Lateness,
}

/// Per-thread scratch space, allocated once.
struct Buffers {
    packets: [[u8; MAX_PACKET]; MAX_BATCH],
    lens: [usize; MAX_BATCH],
    rtcp: [u8; rtcp::MAX_COMPOUND_LEN],
    recv: [u8; 1500],
}

pub(crate) struct Worker {
    shared: Arc<Shared>,
    index: usize,
    base: Instant,
    base_ns: u64,
    streams: Slab,
    by_id: HashMap<u64, u32>,
    wheel: Wheel,
    load: LoadTable,
    rng: StdRng,
    bufs: Box<Buffers>,
    local: LocalStats,
    max_lateness_ns: u64,
    /// CLOCK_MONOTONIC at this wake-up: packets' lateness is measured against it.
    wake_ns: u64,
}

impl Worker {
    pub(crate) fn new(shared: Arc<Shared>, index: usize) -> Worker {
        let base = Instant::now();
        let base_ns = sys::monotonic_ns();
        Worker {
            shared,
            index,
            base,
            base_ns,
            streams: Slab {
                entries: Vec::new(),
                free: Vec::new(),
                len: 0,
            },
            by_id: HashMap::new(),
            wheel: Wheel::new(),
            load: LoadTable::new(),
            rng: StdRng::from_entropy(),
            bufs: Box::new(Buffers {
                packets: [[0; MAX_PACKET]; MAX_BATCH],
                lens: [0; MAX_BATCH],
                rtcp: [0; rtcp::MAX_COMPOUND_LEN],
                recv: [0; 1500],
            }),
            local: LocalStats::default(),
            max_lateness_ns: 0,
            wake_ns: 0,
        }
    }

    fn commands(&self) -> &SegQueue<Command> {
        &self.shared.threads[self.index].commands
    }

    fn instant_at_tick(&self, tick: u64) -> Instant {
        self.base + Duration::from_millis(tick)
    }

    fn emit(&self, event: StreamEvent) {
        (self.shared.on_event)(event);
    }

    pub(crate) fn run(mut self) {
        sys::set_timer_slack_1us();
        let mut tick: u64 = 1;
        loop {
            let deadline_ns = self.base_ns + tick * NS_PER_MS;
            sys::sleep_until(deadline_ns);
            let now_ns = sys::monotonic_ns();
            self.wake_ns = now_ns;
            let lateness = now_ns.saturating_sub(deadline_ns);
            let now_tick = tick.max((now_ns - self.base_ns) / NS_PER_MS);
            self.note_lateness(lateness);

            if self.shared.stop.load(Ordering::Acquire) {
                self.drain_commands(now_tick, usize::MAX);
                self.close_all();
                self.publish_stats();
                return;
            }
            self.drain_commands(now_tick, MAX_COMMANDS_PER_WAKE);
            if self.streams.len > 0 {
                let now = self.base + Duration::from_nanos(now_ns - self.base_ns);
                for t in tick..=now_tick {
                    self.process_slot(t, now_tick, now);
                }
            }
            self.publish_stats();
            // With streams to serve, wake every tick so that commands (a new SPEAK, RESUME,
            // a jump) take effect within a millisecond; idle, sleep up to MAX_SLEEP_TICKS.
            tick = if self.commands().is_empty() && self.streams.len == 0 {
                self.wheel
                    .next_occupied(now_tick + 1, now_tick + 1 + MAX_SLEEP_TICKS)
            } else {
                now_tick + 1
            };
        }
    }

    fn note_lateness(&mut self, lateness: u64) {
        let stats = &self.shared.threads[self.index].stats;
        if lateness > LATE_NS {
            stats.late_wakeups.fetch_add(1, Ordering::Relaxed);
        }
        if lateness > self.max_lateness_ns {
            self.max_lateness_ns = lateness;
            stats.max_lateness_ns.fetch_max(lateness, Ordering::Relaxed);
        }
    }

    fn publish_stats(&mut self) {
        let l = std::mem::take(&mut self.local);
        let s = &self.shared.threads[self.index].stats;
        let add = |counter: &std::sync::atomic::AtomicU64, v: u64| {
            if v != 0 {
                counter.fetch_add(v, Ordering::Relaxed);
            }
        };
        add(&s.packets, l.packets);
        add(&s.octets, l.octets);
        add(&s.send_errors, l.send_errors);
        add(&s.skipped, l.skipped);
        add(&s.rtcp_sent, l.rtcp_sent);
        add(&s.receiver_reports, l.receiver_reports);
        if l.reported_lost != 0 {
            s.reported_lost
                .fetch_add(l.reported_lost, Ordering::Relaxed);
        }
        for (counter, &n) in s.lateness.iter().zip(&l.lateness.buckets) {
            add(counter, n);
        }
        add(&s.lateness_sum_ns, l.lateness.sum_ns);
    }

    // ---- commands -------------------------------------------------------------------------

    fn drain_commands(&mut self, now_tick: u64, limit: usize) {
        for _ in 0..limit {
            let Some(command) = self.commands().pop() else {
                return;
            };
            match command {
                Command::Add(s) => self.add(*s, now_tick),
                Command::Remove(id) => {
                    if let Some(&i) = self.by_id.get(&id) {
                        self.close(i);
                    }
                }
                Command::Pause(id) => {
                    if let Some(s) = self.stream_by_id(id) {
                        s.paused = true;
                    }
                }
                Command::Resume(id) => {
                    if let Some(s) = self.stream_by_id(id)
                        && s.paused
                    {
                        s.paused = false;
                        s.marker = true;
                    }
                }
                Command::Replace(id, playout) => self.replace(id, *playout, now_tick),
                Command::Seek(id, delta) => {
                    if let Some(s) = self.stream_by_id(id) {
                        s.playout.seek(delta);
                    }
                }
                Command::Restart(id) => {
                    if let Some(s) = self.stream_by_id(id) {
                        s.playout.restart();
                        if s.ended {
                            s.ended = false;
                            s.marker = true;
                        }
                    }
                }
                Command::Limit(id, samples) => {
                    if let Some(s) = self.stream_by_id(id) {
                        s.playout.limit_remaining(samples);
                    }
                }
                Command::EndAtMark(id, mark) => {
                    if let Some(s) = self.stream_by_id(id) {
                        s.playout.end_at_mark(mark);
                    }
                }
                Command::ReplaceUpcoming(id, items) => {
                    if let Some(s) = self.stream_by_id(id)
                        && !s.playout.replace_upcoming(items)
                    {
                        tracing::debug!(stream = id, "new items do not fit the playout; ignored");
                    }
                }
                Command::UpdateRemote(id, update) => self.update_remote(id, &update, now_tick),
            }
        }
    }

    fn stream_by_id(&mut self, id: u64) -> Option<&mut Stream> {
        let i = *self.by_id.get(&id)?;
        self.streams.get_mut(i)
    }

    fn add(&mut self, s: NewStream, now_tick: u64) {
        let NewStream {
            id,
            ports,
            payload_type,
            law,
            ptime,
            playout,
            cname,
            ..
        } = s;
        // Validated by `Pacer::add`.
        let ptime_ms = (ptime.as_millis() as u32).clamp(1, MAX_PTIME_MS);
        let phase = self.load.choose(ptime_ms);
        self.load.add(phase, ptime_ms);
        let due = first_due(phase, ptime_ms, now_tick);
        let rtcp = RtcpTimer::new(
            self.instant_at_tick(now_tick),
            rtcp::g711_session_bandwidth(ptime),
            &mut self.rng,
        );
        let stream = Stream {
            playout_generation: 0,
            id,
            next_due: due,
            ptime_ms,
            phase,
            law,
            paused: false,
            ended: false,
            marker: true,
            sent_this_interval: false,
            sent_last_interval: false,
            last_cumulative_lost: 0,
            packetizer: Packetizer::new(payload_type),
            sent: self.shared.sent_counter(id),
            playout,
            rtcp,
            ports,
            cname: cname.into_boxed_str(),
        };
        let i = self.streams.insert(stream);
        self.by_id.insert(id, i);
        self.wheel.insert(due, i);
        tracing::debug!(
            stream = id,
            thread = self.index,
            phase,
            ptime_ms,
            "stream added"
        );
    }

    /// Gives stream `id` a new playout whose first packet goes out at the next tick, not at
    /// the stream's next slot: a new SPEAK starts within a millisecond. It is a new talkspurt
    /// (marker bit); the stream keeps the new slot.
    fn replace(&mut self, id: u64, playout: Playout, now_tick: u64) {
        let Some(&i) = self.by_id.get(&id) else {
            return;
        };
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        s.playout = playout;
        s.playout_generation += 1;
        s.ended = false;
        s.marker = true;
        let (old_due, old_phase, ptime) = (s.next_due, s.phase, s.ptime_ms);
        let due = now_tick + 1;
        if s.paused || due >= old_due {
            return;
        }
        let phase = (due % u64::from(ptime)) as u32;
        s.next_due = due;
        s.phase = phase;
        self.wheel.remove(old_due, i);
        self.wheel.insert(due, i);
        self.load.remove(old_phase, ptime);
        self.load.add(phase, ptime);
    }

    fn update_remote(&mut self, id: u64, u: &RemoteUpdate, now_tick: u64) {
        let Some(&i) = self.by_id.get(&id) else {
            return;
        };
        let Some(s) = self.streams.get_mut(i) else {
            return;
        };
        for (socket, addr, what) in [
            (&s.ports.rtp, u.rtp, "RTP"),
            (&s.ports.rtcp, u.rtcp, "RTCP"),
        ] {
            if let Err(e) = socket.connect(addr) {
                tracing::warn!(stream = id, %addr, error = %e, "cannot reconnect {what} socket");
            }
        }
        s.law = u.law;
        s.packetizer.set_payload_type(u.payload_type);
        let Some(new_ptime) = u.ptime_ms else {
            return;
        };
        if new_ptime == s.ptime_ms {
            return;
        }
        let (old_due, old_phase, old_ptime) = (s.next_due, s.phase, s.ptime_ms);
        self.wheel.remove(old_due, i);
        self.load.remove(old_phase, old_ptime);
        let phase = self.load.choose(new_ptime);
        self.load.add(phase, new_ptime);
        let due = first_due(phase, new_ptime, old_due.max(now_tick));
        if let Some(s) = self.streams.get_mut(i) {
            // The next timestamp belongs to `old_due`; keep media time equal to wall time.
            s.packetizer
                .skip(((due - old_due) as u32).wrapping_mul(SAMPLES_PER_MS));
            s.next_due = due;
            s.phase = phase;
            s.ptime_ms = new_ptime;
            s.rtcp
                .set_session_bandwidth(rtcp::g711_session_bandwidth(Duration::from_millis(
                    u64::from(new_ptime),
                )));
        }
        self.wheel.insert(due, i);
    }

    /// Sends the stream's BYE, releases it and emits `Removed`.
    fn close(&mut self, i: u32) {
        let Some(stream) = self.streams.remove(i) else {
            return;
        };
        self.wheel.remove(stream.next_due, i);
        self.load.remove(stream.phase, stream.ptime_ms);
        self.by_id.remove(&stream.id);
        let info = self.sender_info(&stream);
        let we_sent = stream.sent_this_interval || stream.sent_last_interval;
        match rtcp::write_bye(
            &mut self.bufs.rtcp,
            stream.packetizer.ssrc(),
            we_sent.then_some(&info),
            &stream.cname,
            None,
        ) {
            Ok(n) => match stream.ports.rtcp.send(&self.bufs.rtcp[..n]) {
                Ok(_) => self.local.rtcp_sent += 1,
                Err(_) => self.local.send_errors += 1,
            },
            // The CNAME was checked on add; nothing else can fail with this buffer.
            Err(e) => tracing::warn!(stream = stream.id, error = %e, "cannot build RTCP BYE"),
        }
        let (id, packets, octets) = (
            stream.id,
            stream.packetizer.packets(),
            stream.packetizer.octets(),
        );
        self.local.reported_lost -= i64::from(stream.last_cumulative_lost);
        drop(stream); // closes the sockets, returns the port
        self.shared.threads[self.index]
            .assigned
            .fetch_sub(1, Ordering::Relaxed);
        self.shared.active.fetch_sub(1, Ordering::AcqRel);
        tracing::debug!(stream = id, packets, octets, "stream removed");
        self.emit(StreamEvent::Removed {
            id,
            packets,
            octets,
        });
    }

    fn close_all(&mut self) {
        let ids: Vec<u32> = self.by_id.values().copied().collect();
        for i in ids {
            self.close(i);
        }
    }

    // ---- the per-slot path: no allocation, lock or log ------------------------------------

    fn process_slot(&mut self, t: u64, now_tick: u64, now: Instant) {
        let mut list = self.wheel.take(t);
        let slot = Wheel::slot_of(t);
        let mut k = 0;
        while k < list.len() {
            let i = list[k];
            let due = self.streams.get_mut(i).map(|s| s.next_due);
            if due != Some(t) {
                // Filed for a later lap of the wheel (after a long stall) — or stale.
                if due.is_none() {
                    list.swap_remove(k);
                } else {
                    k += 1;
                }
                continue;
            }
            list.swap_remove(k);
            self.run_stream(i, t, now_tick, now);
            let next = self.streams.get_mut(i).map_or(t, |s| s.next_due);
            if Wheel::slot_of(next) == slot {
                list.push(i);
            } else {
                self.wheel.insert(next, i);
            }
        }
        self.wheel.restore(t, list);
    }

    /// Sends what stream `i` owes at tick `t` (it is due at `t`; the clock is at `now_tick`,
    /// `now` being the wake-up time).
    fn run_stream(&mut self, i: u32, t: u64, now_tick: u64, now: Instant) {
        let base = self.base;
        let (base_ns, wake_ns) = (self.base_ns, self.wake_ns);
        let Some(s) = self.streams.entries[i as usize].as_mut() else {
            return;
        };
        let ptime = u64::from(s.ptime_ms);
        let samples = s.ptime_ms * SAMPLES_PER_MS;
        let owed = (now_tick - t) / ptime + 1;
        if s.paused || s.ended {
            s.packetizer.skip((owed as u32).wrapping_mul(samples));
        } else {
            let to_send = owed.min(MAX_BATCH as u64);
            let skipped = owed - to_send;
            if skipped > 0 {
                s.packetizer.skip((skipped as u32).wrapping_mul(samples));
                self.local.skipped += skipped;
            }
            let bufs = &mut *self.bufs;
            let mut built = 0;
            for j in 0..to_send {
                let due = t + (skipped + j) * ptime;
                let at = base + Duration::from_millis(due);
                let buf = &mut bufs.packets[built];
                let payload = &mut buf[HEADER_LEN..HEADER_LEN + samples as usize];
                let fill = s.playout.fill(s.law, at, payload);
                while let Some(mark) = s.playout.take_mark() {
                    (self.shared.on_event)(StreamEvent::Mark {
                        id: s.id,
                        playout: s.playout_generation,
                        mark,
                    });
                }
                match fill {
                    Fill::Audio => {
                        bufs.lens[built] =
                            s.packetizer.write_header(samples as usize, s.marker, buf);
                        s.marker = false;
                        built += 1;
                    }
                    Fill::Ended => {
                        s.ended = true;
                        s.packetizer
                            .skip(((to_send - j) as u32).wrapping_mul(samples));
                        (self.shared.on_event)(StreamEvent::Ended {
                            id: s.id,
                            playout: s.playout_generation,
                        });
                        break;
                    }
                }
            }
            if built > 0 {
                s.sent_this_interval = true;
                let sent = if built == 1 {
                    s.ports
                        .rtp
                        .send(&bufs.packets[0][..bufs.lens[0]])
                        .map(|_| 1)
                } else {
                    let mut slices: [&[u8]; MAX_BATCH] = [&[]; MAX_BATCH];
                    for (j, slice) in slices.iter_mut().enumerate().take(built) {
                        *slice = &bufs.packets[j][..bufs.lens[j]];
                    }
                    sys::send_batch(s.ports.rtp.as_raw_fd(), &slices[..built])
                };
                let ok = sent.unwrap_or(0);
                // Built packet b is the one due at tick t + (skipped + b) · ptime.
                for b in 0..ok as u64 {
                    let due_ns = base_ns + (t + (skipped + b) * ptime) * NS_PER_MS;
                    self.local.lateness.record(wake_ns.saturating_sub(due_ns));
                }
                self.local.packets += ok as u64;
                self.local.octets += bufs.lens[..ok].iter().sum::<usize>() as u64;
                self.local.send_errors += (built - ok) as u64;
                s.sent.store(s.packetizer.packets(), Ordering::Relaxed);
            }
        }
        s.next_due = t + owed * ptime;

        if now >= s.rtcp.poll_timeout() && s.rtcp.handle_timeout(now, &mut self.rng) {
            self.send_report(i, now);
        }
    }

    fn sender_info(&self, s: &Stream) -> SenderInfo {
        let wall = SystemTime::now();
        let mono = sys::monotonic_ns();
        // The next timestamp belongs to the deadline `next_due`; step back to `mono`.
        let next_deadline = self.base_ns + s.next_due * NS_PER_MS;
        let ahead_samples =
            (next_deadline as i64 - mono as i64) * i64::from(SAMPLES_PER_MS) / NS_PER_MS as i64;
        SenderInfo {
            ntp: NtpTime::from_system_time(wall),
            rtp_timestamp: s
                .packetizer
                .next_timestamp()
                .wrapping_sub(ahead_samples as u32),
            packet_count: s.packetizer.packets() as u32,
            octet_count: s.packetizer.octets() as u32,
        }
    }

    /// Reads waiting receiver reports, then sends SR (or RR) + SDES.
    fn send_report(&mut self, i: u32, now: Instant) {
        let Some(s) = self.streams.entries[i as usize].as_mut() else {
            return;
        };
        let ssrc = s.packetizer.ssrc();
        for _ in 0..MAX_RTCP_READS {
            let Ok(n) = s.ports.rtcp.recv(&mut self.bufs.recv) else {
                break;
            };
            if let Some(block) = rtcp::find_report(&self.bufs.recv[..n], ssrc) {
                self.local.receiver_reports += 1;
                self.local.reported_lost +=
                    i64::from(block.cumulative_lost) - i64::from(s.last_cumulative_lost);
                s.last_cumulative_lost = block.cumulative_lost;
            }
        }
        let we_sent = s.sent_this_interval || s.sent_last_interval;
        s.sent_last_interval = s.sent_this_interval;
        s.sent_this_interval = false;
        s.rtcp.set_we_sent(we_sent);

        let Some(s) = self.streams.entries[i as usize].as_ref() else {
            return;
        };
        let info = self.sender_info(s);
        let built = if we_sent {
            rtcp::write_sender_report(&mut self.bufs.rtcp, ssrc, &info, &s.cname)
        } else {
            rtcp::write_receiver_report(&mut self.bufs.rtcp, ssrc, &s.cname)
        };
        let Ok(n) = built else {
            return; // CNAME length was checked on add
        };
        match s.ports.rtcp.send(&self.bufs.rtcp[..n]) {
            Ok(_) => self.local.rtcp_sent += 1,
            Err(_) => self.local.send_errors += 1,
        }
        if let Some(s) = self.streams.entries[i as usize].as_mut() {
            s.rtcp.on_sent(now, n, &mut self.rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::{ThreadShared, ThreadStats};
    use crate::packet::RtpHeader;
    use imss_media::{Clip, PlayItem, Repeat};
    use std::net::UdpSocket;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    fn worker() -> Worker {
        let shared = Arc::new(Shared {
            threads: vec![ThreadShared {
                commands: SegQueue::new(),
                assigned: AtomicUsize::new(1),
                stats: ThreadStats::default(),
            }],
            routes: Mutex::new(HashMap::new()),
            sent: Mutex::new(HashMap::new()),
            active: AtomicUsize::new(1),
            stop: AtomicBool::new(false),
            on_event: Arc::new(|_| {}),
        });
        Worker::new(shared, 0)
    }

    /// A worker with one 20 ms stream due at tick 0, and the socket it sends to.
    fn one_stream(clip: &Arc<Clip>) -> (Worker, UdpSocket, u32) {
        let mut w = worker();
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let _ = rx.set_read_timeout(Some(Duration::from_millis(200)));
        let bind = || UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let ports = PortPair::unmanaged(bind(), bind()).unwrap_or_else(|e| panic!("{e}"));
        let to = rx.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let _ = ports.rtp.connect(to);
        let _ = ports.rtcp.connect(to);
        let playout = Playout::new(
            vec![PlayItem::Clip(Arc::clone(clip))],
            Repeat::Forever,
            Duration::ZERO,
            None,
        );
        w.add(
            NewStream {
                id: 1,
                ports,
                remote_rtp: to,
                remote_rtcp: to,
                payload_type: 0,
                law: Law::Pcmu,
                ptime: Duration::from_millis(20),
                playout,
                cname: "t".into(),
            },
            0,
        );
        let i = w
            .by_id
            .get(&1)
            .copied()
            .unwrap_or_else(|| panic!("not added"));
        (w, rx, i)
    }

    fn recv_all(rx: &UdpSocket, n: usize) -> Vec<(RtpHeader, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = [0u8; 1500];
        for _ in 0..n {
            let len = rx.recv(&mut buf).unwrap_or_else(|e| panic!("{e}"));
            let h = RtpHeader::parse(&buf[..len]).unwrap_or_else(|e| panic!("{e}"));
            out.push((h, buf[h.payload_offset..len].to_vec()));
        }
        out
    }

    fn clip() -> Arc<Clip> {
        let s: Vec<f32> = (0..16_000)
            .map(|i| ((i as f32) * 0.01).sin() * 0.5)
            .collect();
        Arc::new(Clip::from_samples_8k(&s))
    }

    #[test]
    fn late_wake_catches_up_in_one_batch() {
        let clip = clip();
        let (mut w, rx, i) = one_stream(&clip);
        let ts0 = w.streams.get_mut(i).map(|s| s.packetizer.next_timestamp());
        let now = w.base;
        // Woke 50 ms late for tick 0: packets of ticks 0, 20 and 40 are owed.
        w.process_slot(0, 50, now);
        let got = recv_all(&rx, 3);
        for (k, (h, payload)) in got.iter().enumerate() {
            assert_eq!(
                Some(h.timestamp),
                ts0.map(|t| t.wrapping_add(160 * k as u32))
            );
            assert_eq!(h.marker, k == 0);
            assert_eq!(payload, &clip.bytes(Law::Pcmu)[160 * k..160 * (k + 1)]);
        }
        assert_eq!(got[2].0.sequence, got[0].0.sequence.wrapping_add(2));
        assert_eq!(w.streams.get_mut(i).map(|s| s.next_due), Some(60));
        assert_eq!(w.local.packets, 3);
        assert_eq!(w.local.skipped, 0);
        // The stream's own count is published for `Pacer::packets_sent`.
        assert_eq!(
            w.streams.get_mut(i).map(|s| s.sent.load(Ordering::Relaxed)),
            Some(3)
        );
    }

    #[test]
    fn each_packet_counts_its_own_lateness() {
        let clip = clip();
        let (mut w, rx, _) = one_stream(&clip);
        // Woke 50 ms after tick 0: the packets due at 0, 20 and 40 ms are 50, 30 and 10 ms
        // late.
        w.wake_ns = w.base_ns + 50 * NS_PER_MS;
        let now = w.base;
        w.process_slot(0, 50, now);
        let _ = recv_all(&rx, 3);
        let l = w.local.lateness;
        assert_eq!(l.count(), 3);
        assert_eq!(l.sum_ns, 90 * NS_PER_MS);
        // 10 ms in (5, 10] ms; 30 and 50 ms both in (20, 50] ms.
        assert_eq!(l.buckets[Lateness::bucket_of(10 * NS_PER_MS)], 1);
        assert_eq!(l.buckets[Lateness::bucket_of(30 * NS_PER_MS)], 2);
        assert_eq!(
            Lateness::bucket_of(30 * NS_PER_MS),
            Lateness::bucket_of(50 * NS_PER_MS)
        );
        w.publish_stats();
        let st = &w.shared.threads[0].stats;
        assert_eq!(st.lateness_sum_ns.load(Ordering::Relaxed), 90 * NS_PER_MS);
        let published: u64 = st.lateness.iter().map(|b| b.load(Ordering::Relaxed)).sum();
        assert_eq!(published, 3);
        assert_eq!(w.local.lateness.count(), 0, "published once");
    }

    #[test]
    fn very_late_wake_skips_the_oldest() {
        let clip = clip();
        let (mut w, rx, i) = one_stream(&clip);
        let ts0 = w
            .streams
            .get_mut(i)
            .map_or(0, |s| s.packetizer.next_timestamp());
        let now = w.base;
        // 200 ms late: 11 packets owed; the 3 oldest are skipped, 8 sent.
        w.process_slot(0, 200, now);
        let got = recv_all(&rx, MAX_BATCH);
        assert_eq!(
            got[0].0.timestamp,
            ts0.wrapping_add(3 * 160),
            "timestamp skips 3"
        );
        assert!(
            got.windows(2)
                .all(|p| p[1].0.sequence == p[0].0.sequence.wrapping_add(1))
        );
        // The clip is not advanced over the skipped packets.
        assert_eq!(got[0].1, &clip.bytes(Law::Pcmu)[..160]);
        assert_eq!(w.local.skipped, 3);
        assert_eq!(w.streams.get_mut(i).map(|s| s.next_due), Some(220));
        let _ = rx.set_nonblocking(true);
        assert!(rx.recv(&mut [0u8; 1500]).is_err(), "no more than a batch");
    }

    #[test]
    fn limit_counts_from_the_packets_already_sent() {
        let clip = clip();
        let (mut w, rx, i) = one_stream(&clip);
        let now = w.base;
        w.process_slot(0, 0, now);
        w.process_slot(20, 20, now);
        // 60 ms more from here: three packets, then the stream ends.
        w.commands().push(Command::Limit(
            1,
            imss_media::samples_in(Duration::from_millis(60)),
        ));
        w.drain_commands(30, usize::MAX);
        for t in (40..=140).step_by(20) {
            w.process_slot(t, t, now);
        }
        let got = recv_all(&rx, 5);
        assert_eq!(got[4].1, &clip.bytes(Law::Pcmu)[640..800]);
        let _ = rx.set_nonblocking(true);
        assert!(
            rx.recv(&mut [0u8; 1500]).is_err(),
            "nothing after the limit"
        );
        assert_eq!(w.streams.get_mut(i).map(|s| s.ended), Some(true));
        assert_eq!(w.local.packets, 5);
    }

    #[test]
    fn end_at_mark_ends_the_playout_at_that_mark() {
        let clip = clip();
        let (mut w, rx, i) = one_stream(&clip);
        let short = Arc::new(Clip::from_samples_8k(&[0.25; 400]));
        let playout = Playout::new(
            vec![
                PlayItem::Clip(Arc::clone(&short)),
                PlayItem::Mark(0),
                PlayItem::Clip(Arc::clone(&clip)),
            ],
            Repeat::Times(1),
            Duration::ZERO,
            None,
        );
        w.commands().push(Command::Replace(1, Box::new(playout)));
        w.commands().push(Command::EndAtMark(1, Some(0)));
        w.drain_commands(0, usize::MAX);
        let now = w.base;
        for t in 0..=200 {
            w.process_slot(t, t, now);
        }
        // 400 samples: two full packets and one of 80 samples padded with silence.
        let got = recv_all(&rx, 3);
        assert!(got[2].1[80..].iter().all(|&b| b == Law::Pcmu.silence()));
        let _ = rx.set_nonblocking(true);
        assert!(rx.recv(&mut [0u8; 1500]).is_err(), "nothing after the mark");
        assert_eq!(w.streams.get_mut(i).map(|s| s.ended), Some(true));
    }

    #[test]
    fn paused_stream_keeps_media_time() {
        let clip = clip();
        let (mut w, rx, i) = one_stream(&clip);
        let ts0 = w
            .streams
            .get_mut(i)
            .map_or(0, |s| s.packetizer.next_timestamp());
        let now = w.base;
        w.process_slot(0, 0, now);
        w.commands().push(Command::Pause(1));
        w.drain_commands(10, usize::MAX);
        for t in (20..=100).step_by(20) {
            w.process_slot(t, t, now);
        }
        w.commands().push(Command::Resume(1));
        w.drain_commands(110, usize::MAX);
        w.process_slot(120, 120, now);
        let got = recv_all(&rx, 2);
        assert_eq!(got[1].0.timestamp, ts0.wrapping_add(6 * 160));
        assert_eq!(got[1].0.sequence, got[0].0.sequence.wrapping_add(1));
        assert!(got[1].0.marker);
        assert_eq!(
            got[1].1,
            &clip.bytes(Law::Pcmu)[160..320],
            "clip resumes in place"
        );
    }
}
