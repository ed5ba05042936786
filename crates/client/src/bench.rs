//! `imss bench`: many concurrent calls to one URI, with receiver figures, set-up latency
//! and the server's CPU and memory.
//!
//! Control plane: one tokio task drives every call over one UDP SIP socket. Media plane: a
//! [`ReceiverPool`] of two epoll threads, one slot per call. Every phase is bounded by a
//! hard deadline computed up front, so a run stops by itself whatever the server does.

use crate::bench_mrcp::{
    BenchMrcp, CauseCount, ControlEvent, ControlSink, MrcpFigures, spawn_control,
};
use crate::call::percent;
use crate::mrcp::SpeakBody;
use crate::procstat::{self, CpuSample};
use crate::receiver::{ReceiverPool, StreamSpec};
use crate::sdp_offer;
use crate::sip_shell::{Step, UacShell};
use crate::stats::{SpacingSummary, SteadyWindow, ns_to_ms};
use crate::{ClientError, Codec, SPACING_SKIP, SipTarget, net};
use imss_sip::uac::UacEvent;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A call with no final answer by then has failed ("timeout"); Timer B is 32 s.
const SETUP_LIMIT: Duration = Duration::from_secs(34);
/// Time allowed for the BYEs of the last calls to complete.
const TEARDOWN: Duration = Duration::from_secs(5);
/// Below this the steady-state window is too short for CPU figures; the whole run is used.
const MIN_WINDOW: Duration = Duration::from_secs(1);
/// Codecs every bench call offers, in this order.
const BENCH_CODECS: [Codec; 2] = [Codec::Pcmu, Codec::Pcma];
/// Packet time every bench call asks for.
const BENCH_PTIME_MS: u32 = 20;
/// Receiver threads read their sockets once per this interval (five 20 ms packets per
/// system call: 2.2 µs of CPU per packet against 7 µs when reading each as it comes, at 2,000
/// streams); arrival times come from the kernel, so accuracy does not suffer.
const RECEIVE_INTERVAL: Duration = Duration::from_millis(100);

/// The receivers' read interval: `IMSS_BENCH_POLL_MS` overrides the default.
fn receive_interval() -> Duration {
    std::env::var("IMSS_BENCH_POLL_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(RECEIVE_INTERVAL, Duration::from_millis)
}
/// File descriptors kept free for the runtime, the SIP socket and /proc reads.
const FD_RESERVE: u64 = 64;

/// What `imss bench` asks for.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// SIP URI every call goes to.
    pub uri: String,
    /// Calls in total, all concurrent once ramped up.
    pub calls: usize,
    /// Seconds each call is held after its answer.
    pub seconds: f64,
    /// New calls per second while ramping up.
    pub rate: f64,
    /// The server's PID, for its CPU and memory (same machine only).
    pub server_pid: Option<u32>,
    /// Local address for SIP and RTP.
    pub local_ip: IpAddr,
    /// MRCPv2 sessions instead of plain calls: each INVITE offers a control channel, and
    /// once answered the session SPEAKs this on it.
    pub mrcp: Option<BenchMrcp>,
}

/// How many calls failed with one cause.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CallFailure {
    /// `"486 Busy Here"`, `"timeout"`, `"unreachable"`, `"bad answer"`, `"local: …"`.
    pub cause: String,
    /// Calls that failed so.
    pub calls: usize,
}

/// Percentiles of a set of durations, ms.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

/// CPU and memory over the measuring window.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct CpuFigures {
    /// The server's CPU, percent of one core (utime+stime delta / wall / ticks).
    pub server_cpu_percent: Option<f64>,
    /// The server's resident memory (VmRSS) at the end of the window, KiB.
    pub server_rss_kib: Option<u64>,
    /// This bench process's CPU, percent of one core.
    pub bench_cpu_percent: Option<f64>,
    /// CPU time the hypervisor gave to other guests while this machine wanted it, percent
    /// of all cores (`steal` in `/proc/stat`): on a shared host, timing figures worsen with it.
    pub machine_steal_percent: Option<f64>,
}

/// What a bench run measured. `Display` is the operator's report; `Serialize` is `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The URI called.
    pub uri: String,
    /// Calls attempted.
    pub calls_attempted: usize,
    /// Calls answered with 200 OK.
    pub calls_answered: usize,
    /// Calls that did not get a usable answer.
    pub calls_failed: usize,
    /// Failures by cause.
    pub failures: Vec<CallFailure>,
    /// Answered calls the server hung up before the hold time ended.
    pub ended_by_server: usize,
    /// Answered calls that received no RTP at all.
    pub calls_without_rtp: usize,
    /// Calls still up or ending at the hard deadline (one BYE sent, its answer not awaited).
    pub calls_abandoned: usize,
    /// Calls whose BYE got no final response within 5 s.
    pub byes_unconfirmed: usize,
    /// Most calls up at the same time.
    pub peak_concurrent: usize,
    /// Ramp rate asked for, calls/s.
    pub rate: f64,
    /// Hold time per call, s.
    pub seconds: f64,
    /// Wall time of the run, s.
    pub duration_seconds: f64,
    /// INVITE → 200 OK.
    pub setup_latency: LatencySummary,
    /// Answers per second from the first INVITE to the last answer.
    pub answers_per_second: f64,
    /// The MRCPv2 figures of an `--mrcp` run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mrcp: Option<MrcpFigures>,
    /// Packets received (duplicates included), all calls.
    pub packets_received: u64,
    /// Packets expected from the sequence number ranges (RFC 3550 A.3), all calls.
    pub packets_expected: u64,
    /// Expected minus distinct packets received.
    pub packets_lost: u64,
    /// `packets_lost / packets_expected`, percent.
    pub loss_percent: f64,
    /// Duplicated packets, all calls.
    pub duplicates: u64,
    /// Reordered packets, all calls.
    pub reordered: u64,
    /// |arrival gap − ptime| over all consecutive packet pairs of all calls (kernel
    /// timestamps, 10 µs histogram buckets).
    pub spacing: SpacingSummary,
    /// The same over the steady window only: every call up, none hung up yet (no set-up or
    /// teardown traffic on the machine).
    pub steady_spacing: SpacingSummary,
    /// The start of each call left out of the spacing figures (set-up transient), ms.
    pub spacing_skip_ms: u64,
    /// Mean of the calls' final RFC 3550 jitter, ms.
    pub jitter_mean_ms: f64,
    /// Largest final RFC 3550 jitter of a call, ms.
    pub jitter_max_ms: f64,
    /// `"steady"` (every call answered, none hung up yet) or `"whole run"`.
    pub cpu_window: &'static str,
    /// Length of the CPU window, s.
    pub cpu_window_seconds: f64,
    /// Calls up during the CPU window (at its start).
    pub cpu_window_calls: usize,
    /// CPU and memory.
    pub cpu: CpuFigures,
    /// Whether RTCP ports were bound (skipped when the open-files limit is too low).
    pub rtcp_ports_bound: bool,
    /// RTP receiver threads.
    pub receiver_threads: usize,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bench       {} calls to {} at {} calls/s, held {} s, {:.1} s in all",
            self.calls_attempted, self.uri, self.rate, self.seconds, self.duration_seconds
        )?;
        writeln!(
            f,
            "calls       {} answered, {} failed, peak {} concurrent, {} ended by the server, \
             {} without RTP, {} abandoned at the deadline, {} BYE unconfirmed",
            self.calls_answered,
            self.calls_failed,
            self.peak_concurrent,
            self.ended_by_server,
            self.calls_without_rtp,
            self.calls_abandoned,
            self.byes_unconfirmed
        )?;
        for fl in &self.failures {
            writeln!(f, "  failed    {} x {}", fl.calls, fl.cause)?;
        }
        let l = &self.setup_latency;
        writeln!(
            f,
            "set-up      p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms \
             (INVITE to 200 OK), {:.1} answers/s",
            l.p50_ms, l.p95_ms, l.p99_ms, l.max_ms, self.answers_per_second
        )?;
        if let Some(m) = &self.mrcp {
            writeln!(f, "{m}")?;
        }
        writeln!(
            f,
            "packets     {} received, {} expected, {} lost ({:.3} %), {} duplicate, {} reordered",
            self.packets_received,
            self.packets_expected,
            self.packets_lost,
            self.loss_percent,
            self.duplicates,
            self.reordered
        )?;
        writeln!(
            f,
            "spacing     p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over {} pairs \
             (|arrival gap - ptime|, kernel timestamps, first {} ms of each call excluded)",
            self.spacing.p50_ms,
            self.spacing.p99_ms,
            self.spacing.max_ms,
            self.spacing.samples,
            self.spacing_skip_ms
        )?;
        writeln!(
            f,
            "steady      p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms over {} pairs \
             (spacing while every call was up and none had hung up)",
            self.steady_spacing.p50_ms,
            self.steady_spacing.p99_ms,
            self.steady_spacing.max_ms,
            self.steady_spacing.samples,
        )?;
        writeln!(
            f,
            "jitter      mean {:.3} ms, max {:.3} ms (RFC 3550, per call)",
            self.jitter_mean_ms, self.jitter_max_ms
        )?;
        let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |p| format!("{p:.1} %"));
        writeln!(
            f,
            "cpu         server {}, bench {} (of one core; {} window, {:.1} s, {} calls up), \
             stolen by the host {}",
            pct(self.cpu.server_cpu_percent),
            pct(self.cpu.bench_cpu_percent),
            self.cpu_window,
            self.cpu_window_seconds,
            self.cpu_window_calls,
            pct(self.cpu.machine_steal_percent)
        )?;
        write!(
            f,
            "memory      server RSS {}",
            self.cpu
                .server_rss_kib
                .map_or("n/a".to_string(), |k| format!(
                    "{:.1} MiB",
                    k as f64 / 1024.0
                ))
        )?;
        if !self.rtcp_ports_bound {
            write!(
                f,
                "\nnote        RTCP ports not bound (open-files limit too low): one socket per call"
            )?;
        }
        Ok(())
    }
}

#[derive(Debug)]
enum Phase {
    Waiting,
    Inviting { call_id: String, sent: Instant },
    Up { call_id: String },
    Ending { call_id: String },
    Done,
}

struct BenchCall {
    phase: Phase,
    sockets: Option<(UdpSocket, Option<UdpSocket>)>,
    answered: bool,
    /// When its INVITE left.
    invited: Option<Instant>,
    /// Dropping it ends the session's control task (MRCP runs).
    control: Option<tokio::sync::oneshot::Sender<()>>,
    /// When its SPEAK left: monotonic, and CLOCK_REALTIME ns.
    speak_sent: Option<(Instant, i64)>,
}

/// Runs the load: `calls` calls started at `rate` per second, each held `seconds` after
/// its answer, then hung up. Stops by itself at a hard deadline.
pub async fn run_bench(opts: &BenchOptions) -> Result<BenchReport, ClientError> {
    validate(opts)?;
    let soft = raise_open_files_limit();
    // Sockets per call: RTP, RTCP and (MRCP) the control connection; the most calls up at
    // once is bounded by the ramp rate times the time a call lives.
    let per_call = if opts.mrcp.is_some() { 3 } else { 2 };
    let concurrent = opts
        .calls
        .min((opts.rate * (opts.seconds + 2.0)).ceil() as usize);
    let with_rtcp = soft.is_none_or(|s| s >= (per_call * concurrent) as u64 + FD_RESERVE);
    if !with_rtcp {
        tracing::warn!(
            limit = soft,
            calls = opts.calls,
            "open-files limit too low for RTP+RTCP per call: binding RTP only"
        );
    }
    let target = SipTarget::parse(&opts.uri)?;
    let server = target.resolve(opts.local_ip.is_ipv4()).await?;
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().min(2));
    let window = Arc::new(SteadyWindow::default());
    let pool = ReceiverPool::start(
        threads,
        opts.calls,
        SPACING_SKIP,
        receive_interval(),
        window.clone(),
    )
    .map_err(|e| ClientError::io("starting the RTP receivers", e))?;
    let mut shell = UacShell::bind(opts.local_ip, server).await?;

    let t0 = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / opts.rate);
    let hold = Duration::from_secs_f64(opts.seconds);
    let ramp = interval.mul_f64(opts.calls as f64);
    let hard_deadline = t0 + ramp + SETUP_LIMIT + hold + TEARDOWN;

    let mut calls: Vec<BenchCall> = (0..opts.calls)
        .map(|_| BenchCall {
            phase: Phase::Waiting,
            sockets: None,
            answered: false,
            invited: None,
            control: None,
            speak_sent: None,
        })
        .collect();
    let speak_body = opts
        .mrcp
        .as_ref()
        .map(|m| Arc::new(SpeakBody::for_input(&m.speak)));
    let (sink, mut control_rx) = ControlSink::new();
    let mut control_failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut completions: BTreeMap<String, usize> = BTreeMap::new();
    let (mut ready_ns, mut response_ns) = (Vec::new(), Vec::new());
    let mut connected = 0usize;
    let mut last_answer = t0;
    let mut by_id: HashMap<String, usize> = HashMap::with_capacity(opts.calls);
    let mut hangups: VecDeque<(Instant, usize)> = VecDeque::with_capacity(opts.calls);
    let mut setup_timeouts: VecDeque<(Instant, usize)> = VecDeque::with_capacity(opts.calls);
    let mut end_timeouts: VecDeque<(Instant, usize)> = VecDeque::with_capacity(opts.calls);
    let mut byes_unconfirmed = 0usize;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut setup_ns: Vec<u64> = Vec::with_capacity(opts.calls);
    let mut next_start = 0usize;
    let mut finished = 0usize;
    let mut up = 0usize;
    let mut peak = 0usize;
    let mut ended_by_server = 0usize;

    let run_start = cpu_pair(opts.server_pid);
    let mut steady_start: Option<(Instant, usize, CpuPair)> = None;
    let mut steady_end: Option<(Instant, CpuPair, Option<u64>)> = None;
    let mut settled = 0usize; // answered or failed
    let mut any_response = false;

    while finished < opts.calls {
        let now = Instant::now();
        if now >= hard_deadline {
            break;
        }
        // Start the calls that are due.
        while next_start < opts.calls && t0 + interval.mul_f64(next_start as f64) <= now {
            let i = next_start;
            next_start += 1;
            match net::bind_rtp_pair(opts.local_ip, with_rtcp) {
                Ok((rtp, rtcp)) => {
                    let port = rtp.local_addr().map_or(0, |a| a.port());
                    let session_id = rand::random::<u32>().into();
                    let offer = match &opts.mrcp {
                        Some(m) => sdp_offer::mrcp_offer(
                            opts.local_ip,
                            port,
                            &BENCH_CODECS,
                            BENCH_PTIME_MS,
                            session_id,
                            &m.resource,
                        ),
                        None => sdp_offer::offer(
                            opts.local_ip,
                            port,
                            &BENCH_CODECS,
                            BENCH_PTIME_MS,
                            session_id,
                        ),
                    };
                    let sent = Instant::now();
                    let call_id = shell.start_call(&target.request_uri, offer).await;
                    by_id.insert(call_id.clone(), i);
                    calls[i].sockets = Some((rtp, rtcp));
                    calls[i].invited = Some(sent);
                    calls[i].phase = Phase::Inviting { call_id, sent };
                    setup_timeouts.push_back((sent + SETUP_LIMIT, i));
                }
                Err(e) => {
                    *failures.entry(format!("local: {e}")).or_default() += 1;
                    calls[i].phase = Phase::Done;
                    finished += 1;
                    settled += 1;
                }
            }
        }
        // Hang up the calls whose hold time is over.
        while let Some(&(at, i)) = hangups.front() {
            if at > now {
                break;
            }
            hangups.pop_front();
            if let Phase::Up { call_id } = &calls[i].phase {
                let call_id = call_id.clone();
                if steady_end.is_none() {
                    window.close_now();
                    steady_end = Some((
                        now,
                        cpu_pair(opts.server_pid),
                        opts.server_pid.and_then(procstat::rss_kib),
                    ));
                }
                pool.close(i);
                shell.hangup(&call_id).await;
                // The control connection closes once the BYE is answered (Terminated), so
                // the server sees the session end by its BYE, not by the connection.
                calls[i].phase = Phase::Ending { call_id };
                end_timeouts.push_back((now + TEARDOWN, i));
                up -= 1;
            }
        }
        // Stop waiting for BYE transactions that do not complete.
        while let Some(&(at, i)) = end_timeouts.front() {
            if at > now {
                break;
            }
            end_timeouts.pop_front();
            if let Phase::Ending { call_id } = &calls[i].phase {
                let call_id = call_id.clone();
                shell.abandon(&call_id);
                by_id.remove(&call_id);
                calls[i].control = None;
                byes_unconfirmed += 1;
                calls[i].phase = Phase::Done;
                finished += 1;
            }
        }
        // Give up on set-ups that take too long.
        while let Some(&(at, i)) = setup_timeouts.front() {
            if at > now {
                break;
            }
            setup_timeouts.pop_front();
            if let Phase::Inviting { call_id, .. } = &calls[i].phase {
                let call_id = call_id.clone();
                shell.hangup(&call_id).await;
                shell.abandon(&call_id);
                by_id.remove(&call_id);
                *failures.entry("timeout".into()).or_default() += 1;
                calls[i].phase = Phase::Done;
                calls[i].sockets = None;
                finished += 1;
                settled += 1;
            }
        }
        if steady_start.is_none() && settled == opts.calls {
            window.open_now();
            steady_start = Some((Instant::now(), up, cpu_pair(opts.server_pid)));
        }

        let mut wake = hard_deadline;
        if next_start < opts.calls {
            wake = wake.min(t0 + interval.mul_f64(next_start as f64));
        }
        if let Some(&(at, _)) = hangups.front() {
            wake = wake.min(at);
        }
        if let Some(&(at, _)) = setup_timeouts.front() {
            wake = wake.min(at);
        }
        if let Some(&(at, _)) = end_timeouts.front() {
            wake = wake.min(at);
        }
        // What the control tasks reported.
        while let Ok((i, ev)) = control_rx.try_recv() {
            let call = &mut calls[i];
            match ev {
                ControlEvent::Connected { at } => {
                    connected += 1;
                    if let Some(sent) = call.invited {
                        ready_ns.push(ns_between(sent, at));
                    }
                }
                ControlEvent::SpeakSent { at, unix_ns } => call.speak_sent = Some((at, unix_ns)),
                ControlEvent::Answered { at } => {
                    if let Some((sent, _)) = call.speak_sent {
                        response_ns.push(ns_between(sent, at));
                    }
                }
                ControlEvent::Completed { cause } => *completions.entry(cause).or_default() += 1,
                ControlEvent::Failed { cause } => *control_failures.entry(cause).or_default() += 1,
            }
        }
        let ev = match shell.next_or_woken(wake, Some(sink.wake())).await {
            Step::Event(ev) => ev,
            Step::Deadline => continue,
            Step::Unreachable(e) => {
                if !any_response {
                    // Nothing listens there: every call would wait out Timer B.
                    return Err(ClientError::Unreachable {
                        remote: server,
                        source: e,
                    });
                }
                continue;
            }
        };
        any_response |= match &ev.event {
            UacEvent::Failed { status, .. } => *status != 408,
            UacEvent::Terminated => false,
            _ => true,
        };
        let Some(&i) = by_id.get(&ev.call_id) else {
            continue;
        };
        match ev.event {
            UacEvent::Provisional(_) => {}
            UacEvent::Answered { sdp } => {
                let Phase::Inviting { call_id, sent } = &calls[i].phase else {
                    continue;
                };
                let (call_id, sent) = (call_id.clone(), *sent);
                settled += 1;
                let answer =
                    sdp_offer::read_answer(&sdp, &BENCH_CODECS).and_then(|a| match &opts.mrcp {
                        Some(m) => {
                            sdp_offer::read_control_answer(&sdp, &m.resource).map(|c| (a, Some(c)))
                        }
                        None => Ok((a, None)),
                    });
                match answer {
                    Ok((answer, control)) => {
                        calls[i].answered = true;
                        last_answer = ev.at;
                        setup_ns.push(ns_between(sent, ev.at));
                        if let (Some(c), Some(body), Some(m)) = (control, &speak_body, &opts.mrcp) {
                            // `{n}` in what is spoken is the session's number, from 1: each
                            // session can ask for something of its own (a voicemail message).
                            let body = if body.content.contains("{n}") {
                                Arc::new(SpeakBody {
                                    content_type: body.content_type,
                                    content: body.content.replace("{n}", &(i + 1).to_string()),
                                })
                            } else {
                                body.clone()
                            };
                            calls[i].control = Some(spawn_control(
                                i,
                                c.addr,
                                c.channel,
                                body,
                                m.speak_after,
                                sink.clone(),
                            ));
                        }
                        if let Some((rtp, rtcp)) = calls[i].sockets.take() {
                            let added = pool.add(StreamSpec {
                                slot: i,
                                socket: rtp,
                                rtcp,
                                ptime: answer.ptime,
                                capture: None,
                            });
                            if let Err(e) = added {
                                return Err(ClientError::io("adding a stream to the receivers", e));
                            }
                        }
                        hangups.push_back((ev.at + hold, i));
                        calls[i].phase = Phase::Up { call_id };
                        up += 1;
                        peak = peak.max(up);
                    }
                    Err(e) => {
                        let cause = match &e {
                            ClientError::MissingChannel { .. } => "answer without a=channel",
                            ClientError::BadAnswer(d) if d.contains("port 0") => {
                                "resource declined (port 0)"
                            }
                            _ => "bad answer",
                        };
                        *failures.entry(cause.into()).or_default() += 1;
                        shell.hangup(&call_id).await;
                        calls[i].phase = Phase::Ending { call_id };
                        calls[i].sockets = None;
                        end_timeouts.push_back((Instant::now() + TEARDOWN, i));
                    }
                }
            }
            UacEvent::Failed { status, reason } => {
                if matches!(calls[i].phase, Phase::Inviting { .. }) {
                    settled += 1;
                    let cause = if status == 408 {
                        "timeout".to_string()
                    } else {
                        format!("{status} {reason}")
                    };
                    *failures.entry(cause).or_default() += 1;
                    calls[i].sockets = None;
                    // The transaction may still ACK retransmitted responses; the call is
                    // over for the bench.
                    calls[i].phase = Phase::Done;
                    finished += 1;
                }
            }
            UacEvent::RemoteBye => {
                if let Phase::Up { call_id } = &calls[i].phase {
                    let call_id = call_id.clone();
                    if steady_end.is_none() {
                        window.close_now();
                        steady_end = Some((
                            ev.at,
                            cpu_pair(opts.server_pid),
                            opts.server_pid.and_then(procstat::rss_kib),
                        ));
                    }
                    ended_by_server += 1;
                    calls[i].control = None;
                    pool.close(i);
                    calls[i].phase = Phase::Ending { call_id };
                    end_timeouts.push_back((Instant::now() + TEARDOWN, i));
                    up -= 1;
                }
            }
            UacEvent::Terminated => {
                by_id.remove(&ev.call_id);
                calls[i].control = None;
                if matches!(calls[i].phase, Phase::Up { .. }) {
                    up -= 1;
                    pool.close(i);
                }
                if matches!(calls[i].phase, Phase::Inviting { .. }) {
                    settled += 1;
                    *failures
                        .entry("terminated before answer".into())
                        .or_default() += 1;
                }
                if !matches!(calls[i].phase, Phase::Done) {
                    calls[i].phase = Phase::Done;
                    finished += 1;
                }
            }
        }
    }
    let run_end = cpu_pair(opts.server_pid);
    let end_rss = opts.server_pid.and_then(procstat::rss_kib);
    let t_end = Instant::now();

    // Whatever is left at the deadline is abandoned.
    let mut abandoned = 0usize;
    for c in &mut calls {
        match std::mem::replace(&mut c.phase, Phase::Done) {
            Phase::Waiting => {
                *failures
                    .entry("not started before the deadline".into())
                    .or_default() += 1;
            }
            Phase::Inviting { call_id, .. } => {
                // One CANCEL (or BYE) so the server does not stream into the void; no waiting.
                shell.hangup(&call_id).await;
                shell.abandon(&call_id);
                *failures.entry("timeout".into()).or_default() += 1;
            }
            Phase::Up { call_id } => {
                shell.hangup(&call_id).await;
                shell.abandon(&call_id);
                abandoned += 1;
            }
            Phase::Ending { call_id } => {
                shell.abandon(&call_id);
                abandoned += 1;
            }
            Phase::Done => {}
        }
    }
    let out = pool
        .finish()
        .map_err(|e| ClientError::io("stopping the RTP receivers", e))?;

    // Receiver figures over the answered calls.
    let (mut rx, mut exp, mut lost, mut dup, mut reord, mut no_rtp) = (0, 0, 0, 0, 0, 0usize);
    let mut jitters = Vec::with_capacity(opts.calls);
    for (c, r) in calls.iter().zip(&out.streams) {
        if !c.answered {
            continue;
        }
        match r {
            Some(r) if r.summary.packets > 0 => {
                let s = &r.summary;
                rx += s.packets;
                exp += s.expected;
                lost += s.lost;
                dup += s.duplicates;
                reord += s.reordered;
                if s.packets >= 2 {
                    jitters.push(s.jitter_ms);
                }
            }
            _ => no_rtp += 1,
        }
    }
    let jitter_mean_ms = if jitters.is_empty() {
        0.0
    } else {
        jitters.iter().sum::<f64>() / jitters.len() as f64
    };
    let jitter_max_ms = jitters.iter().copied().fold(0.0, f64::max);

    // The CPU window: steady state if it lasted long enough, else the whole run.
    let (cpu_window, window_start, window_end, window_calls, end_rss) =
        match (steady_start, steady_end) {
            (Some((s_at, calls_up, s_cpu)), Some((e_at, e_cpu, rss)))
                if e_at.saturating_duration_since(s_at) >= MIN_WINDOW =>
            {
                ("steady", (s_at, s_cpu), (e_at, e_cpu), calls_up, rss)
            }
            _ => (
                "whole run",
                (t0, run_start),
                (t_end, run_end),
                peak,
                end_rss,
            ),
        };
    let cpu = CpuFigures {
        server_cpu_percent: match (window_start.1.server, window_end.1.server) {
            (Some(a), Some(b)) => procstat::cpu_percent(&a, &b),
            _ => None,
        },
        server_rss_kib: end_rss,
        bench_cpu_percent: match (window_start.1.own, window_end.1.own) {
            (Some(a), Some(b)) => procstat::cpu_percent(&a, &b),
            _ => None,
        },
        machine_steal_percent: match (window_start.1.machine, window_end.1.machine) {
            (Some(a), Some(b)) => procstat::steal_percent(&a, &b),
            _ => None,
        },
    };

    let answered = setup_ns.len();
    let failed_total: usize = failures.values().sum();
    let mrcp = opts.mrcp.as_ref().map(|m| {
        let mut audio_ns: Vec<u64> = calls
            .iter()
            .zip(&out.streams)
            .filter_map(|(c, r)| {
                let (_, sent) = c.speak_sent?;
                let first = r.as_ref()?.first_sound_ns?;
                u64::try_from(first - sent).ok()
            })
            .collect();
        let counts = |m: BTreeMap<String, usize>| {
            m.into_iter()
                .map(|(cause, sessions)| CauseCount { cause, sessions })
                .collect()
        };
        MrcpFigures {
            resource: m.resource.clone(),
            speak: m.speak.clone(),
            connected,
            session_ready: latency_summary(&mut ready_ns),
            speak_response: latency_summary(&mut response_ns),
            speaks_with_audio: audio_ns.len(),
            speak_to_audio: latency_summary(&mut audio_ns),
            speaks_sent: calls.iter().filter(|c| c.speak_sent.is_some()).count(),
            completions: counts(completions),
            control_failures: counts(control_failures),
        }
    });
    for c in &mut calls {
        c.control = None;
    }
    let answer_span = last_answer.saturating_duration_since(t0).as_secs_f64();
    Ok(BenchReport {
        uri: opts.uri.clone(),
        calls_attempted: opts.calls,
        calls_answered: answered,
        calls_failed: failed_total,
        failures: failures
            .into_iter()
            .map(|(cause, calls)| CallFailure { cause, calls })
            .collect(),
        ended_by_server,
        calls_without_rtp: no_rtp,
        calls_abandoned: abandoned,
        byes_unconfirmed,
        peak_concurrent: peak,
        rate: opts.rate,
        seconds: opts.seconds,
        duration_seconds: t_end.saturating_duration_since(t0).as_secs_f64(),
        setup_latency: latency_summary(&mut setup_ns),
        answers_per_second: if answer_span > 0.0 {
            answered as f64 / answer_span
        } else {
            0.0
        },
        mrcp,
        packets_received: rx,
        packets_expected: exp,
        packets_lost: lost,
        loss_percent: percent(lost, exp),
        duplicates: dup,
        reordered: reord,
        spacing: out.spacing.summary_ms(),
        steady_spacing: out.steady_spacing.summary_ms(),
        spacing_skip_ms: SPACING_SKIP.as_millis() as u64,
        jitter_mean_ms,
        jitter_max_ms,
        cpu_window,
        cpu_window_seconds: window_end
            .0
            .saturating_duration_since(window_start.0)
            .as_secs_f64(),
        cpu_window_calls: window_calls,
        cpu,
        rtcp_ports_bound: with_rtcp,
        receiver_threads: threads,
    })
}

#[derive(Clone, Copy, Debug)]
struct CpuPair {
    server: Option<CpuSample>,
    own: Option<CpuSample>,
    machine: Option<procstat::MachineSample>,
}

fn cpu_pair(server_pid: Option<u32>) -> CpuPair {
    CpuPair {
        server: server_pid.and_then(|p| procstat::cpu_sample(Some(p))),
        own: procstat::cpu_sample(None),
        machine: procstat::machine_sample(),
    }
}

/// Nanoseconds from `a` to `b` (0 if `b` is earlier).
fn ns_between(a: Instant, b: Instant) -> u64 {
    u64::try_from(b.saturating_duration_since(a).as_nanos()).unwrap_or(u64::MAX)
}

/// Exact percentiles of set-up latencies (nearest rank).
fn latency_summary(ns: &mut [u64]) -> LatencySummary {
    if ns.is_empty() {
        return LatencySummary::default();
    }
    ns.sort_unstable();
    let rank = |p: f64| {
        let r = ((p / 100.0) * ns.len() as f64).ceil() as usize;
        ns[r.clamp(1, ns.len()) - 1]
    };
    LatencySummary {
        p50_ms: ns_to_ms(rank(50.0)),
        p95_ms: ns_to_ms(rank(95.0)),
        p99_ms: ns_to_ms(rank(99.0)),
        max_ms: ns_to_ms(ns[ns.len() - 1]),
    }
}

/// Raises the soft open-files limit to the hard limit; returns the soft limit now in force
/// (`None` if unlimited or unknown).
pub fn raise_open_files_limit() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    if lim.rlim_cur == libc::RLIM_INFINITY {
        None
    } else {
        Some(lim.rlim_cur)
    }
}

fn validate(opts: &BenchOptions) -> Result<(), ClientError> {
    let bad = |s: &str| Err(ClientError::InvalidOptions(s.to_string()));
    if opts.calls == 0 || opts.calls > 100_000 {
        return bad("calls must be between 1 and 100000");
    }
    if !(opts.rate.is_finite() && opts.rate > 0.0 && opts.rate <= 100_000.0) {
        return bad("rate must be a positive number of calls per second");
    }
    if !(opts.seconds.is_finite() && opts.seconds > 0.0 && opts.seconds <= 86_400.0) {
        return bad("seconds must be in (0, 86400]");
    }
    if let Some(m) = &opts.mrcp {
        if m.speak.trim().is_empty() {
            return bad("an MRCP bench needs something to SPEAK");
        }
        if m.resource.trim().is_empty() {
            return bad("an MRCP bench needs a resource (speechsynth or basicsynth)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles_by_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        v.reverse();
        let s = latency_summary(&mut v);
        assert_eq!(
            (s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms),
            (50.0, 95.0, 99.0, 100.0)
        );
        let mut one = vec![3_500_000];
        let s = latency_summary(&mut one);
        assert_eq!((s.p50_ms, s.max_ms), (3.5, 3.5));
        assert_eq!(latency_summary(&mut []), LatencySummary::default());
    }

    #[test]
    fn open_files_limit_is_at_the_hard_limit() {
        let soft = raise_open_files_limit();
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes the struct passed by pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
        if lim.rlim_cur != libc::RLIM_INFINITY {
            assert_eq!(soft, Some(lim.rlim_cur));
        }
    }

    #[test]
    fn options_are_validated() {
        let ok = BenchOptions {
            uri: "sip:moh@127.0.0.1:6060".into(),
            calls: 10,
            seconds: 1.0,
            rate: 10.0,
            server_pid: None,
            local_ip: "127.0.0.1".parse().expect("ip"),
            mrcp: None,
        };
        assert!(validate(&ok).is_ok());
        for bad in [
            BenchOptions {
                calls: 0,
                ..ok.clone()
            },
            BenchOptions {
                rate: 0.0,
                ..ok.clone()
            },
            BenchOptions {
                rate: f64::NAN,
                ..ok.clone()
            },
            BenchOptions {
                seconds: -1.0,
                ..ok.clone()
            },
            BenchOptions {
                mrcp: Some(BenchMrcp {
                    speak: " ".into(),
                    resource: "speechsynth".into(),
                    speak_after: Duration::ZERO,
                }),
                ..ok.clone()
            },
        ] {
            assert!(validate(&bad).is_err(), "{bad:?}");
        }
    }
}
