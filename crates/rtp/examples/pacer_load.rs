//! Load check of the pacing engine on one machine: N looping G.711 streams sent to a local
//! receiver that timestamps arrivals in the kernel (SO_TIMESTAMPNS) and reports the spacing
//! error per stream, the pacer's own lateness figures, and the CPU the pacing threads used.
//!
//! `cargo run --release -p imss-rtp --example pacer_load -- [streams] [threads] [seconds] [ptime_ms]`
//! (defaults: 5000 2 10 20). Needs `ulimit -n` above 2 × streams + 10. Set `IMSS_RT=PRIO` to
//! run the pacing threads SCHED_FIFO at PRIO, `IMSS_PIN=1` to pin them to CPUs, and
//! `IMSS_NORECV=1` to send to a socket nobody reads (sender cost alone: no receiver wake-ups,
//! no spacing figures).

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use imss_media::{Clip, Law, PlayItem, Playout, Repeat};
use imss_rtp::{NewStream, Pacer, PacerConfig, PortPair, RtpHeader, StreamEvent};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user + system) of this process's threads whose name starts with `prefix`.
fn thread_cpu(prefix: &str) -> f64 {
    let ticks = 100.0; // USER_HZ on Linux
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut total = 0.0;
    for task in dir.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !name.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
        let rest = stat.rsplit(')').next().unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        total += (ut + st) / ticks;
    }
    total
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1e6
}

fn main() -> std::io::Result<()> {
    let streams = arg(1, 5000) as usize;
    let threads = arg(2, 2) as usize;
    let seconds = arg(3, 10);
    let ptime_ms = arg(4, 20);

    let receiver = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    let fd = receiver.as_raw_fd();
    let one: libc::c_int = 1;
    let rcvbuf: libc::c_int = 64 << 20;
    // SAFETY: valid option pointers and lengths for SOL_SOCKET options on a live socket.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&one as *const libc::c_int).cast(),
            4,
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&rcvbuf as *const libc::c_int).cast(),
            4,
        );
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&rcvbuf as *const libc::c_int).cast(),
            4,
        );
    }
    receiver.set_read_timeout(Some(Duration::from_millis(200)))?;
    let sink = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?; // RTCP, not read

    let stop = Arc::new(AtomicBool::new(false));
    let warmup_ns = 2_000_000_000u64;
    let ptime_ns = ptime_ms * 1_000_000;
    let rx_stop = Arc::clone(&stop);
    let rx = std::thread::Builder::new()
        .name("receiver".into())
        .spawn(move || {
            let mut last: HashMap<u32, (u16, u64)> = HashMap::new();
            let mut errors: Vec<u64> = Vec::with_capacity(1 << 22);
            let mut first_ns = 0u64;
            let mut received = 0u64;
            let mut gaps = 0u64;
            let mut buf = [0u8; 2048];
            let mut control = [0u64; 16];
            while !rx_stop.load(Ordering::Relaxed) {
                let mut iov = libc::iovec {
                    iov_base: buf.as_mut_ptr().cast(),
                    iov_len: buf.len(),
                };
                // SAFETY: zeroed msghdr is valid; we point it at live buffers.
                let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                msg.msg_control = control.as_mut_ptr().cast();
                msg.msg_controllen = std::mem::size_of_val(&control);
                // SAFETY: `msg` points at valid buffers for the duration of the call.
                let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
                if n < 0 {
                    continue;
                }
                let mut ts_ns = 0u64;
                // SAFETY: CMSG macros walk the control buffer the kernel filled.
                unsafe {
                    let mut c = libc::CMSG_FIRSTHDR(&msg);
                    while !c.is_null() {
                        if (*c).cmsg_level == libc::SOL_SOCKET
                            && (*c).cmsg_type == libc::SO_TIMESTAMPNS
                        {
                            let ts = std::ptr::read_unaligned(
                                libc::CMSG_DATA(c) as *const libc::timespec
                            );
                            ts_ns = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
                        }
                        c = libc::CMSG_NXTHDR(&msg, c);
                    }
                }
                let Ok(h) = RtpHeader::parse(&buf[..n as usize]) else {
                    continue;
                };
                received += 1;
                if first_ns == 0 {
                    first_ns = ts_ns;
                }
                if let Some((seq, prev)) = last.insert(h.ssrc, (h.sequence, ts_ns)) {
                    if h.sequence != seq.wrapping_add(1) {
                        gaps += 1;
                    } else if ts_ns - first_ns > warmup_ns {
                        errors.push(ts_ns.saturating_sub(prev).abs_diff(ptime_ns));
                    }
                }
            }
            (errors, received, gaps)
        })?;

    let (pacer_events, _) = (Arc::new(|_e: StreamEvent| {}), ());
    let config = PacerConfig {
        threads,
        realtime_priority: std::env::var("IMSS_RT").ok().and_then(|v| v.parse().ok()),
        pin_cpus: std::env::var("IMSS_PIN").is_ok_and(|v| v == "1"),
    };
    let pacer = Pacer::start_with(config, pacer_events)?;
    let samples: Vec<f32> = (0..8000).map(|i| ((i as f32) * 0.05).sin() * 0.3).collect();
    let clip = Arc::new(Clip::from_samples_8k(&samples));
    let remote_rtp = if std::env::var("IMSS_NORECV").is_ok_and(|v| v == "1") {
        sink.local_addr()?
    } else {
        receiver.local_addr()?
    };
    let remote_rtcp = sink.local_addr()?;
    for id in 0..streams as u64 {
        let ports = PortPair::unmanaged(
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?,
            UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?,
        )?;
        let s = NewStream {
            id,
            ports,
            remote_rtp,
            remote_rtcp,
            payload_type: 0,
            law: Law::Pcmu,
            ptime: Duration::from_millis(ptime_ms),
            playout: Playout::new(
                vec![PlayItem::Clip(Arc::clone(&clip))],
                Repeat::Forever,
                Duration::ZERO,
                None,
            ),
            cname: format!("load-{id}@127.0.0.1"),
        };
        if let Err(e) = pacer.add(s) {
            eprintln!("add {id}: {e}");
            return Ok(());
        }
    }
    let cpu0 = thread_cpu("imss-pacer");
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    let cpu = thread_cpu("imss-pacer") - cpu0;
    let wall = t0.elapsed().as_secs_f64();
    let stats = pacer.stats();
    pacer.shutdown();
    stop.store(true, Ordering::Relaxed);
    let Ok((mut errors, received, gaps)) = rx.join() else {
        eprintln!("receiver panicked");
        return Ok(());
    };
    errors.sort_unstable();
    println!("streams {streams}, pacing threads {threads}, ptime {ptime_ms} ms, {seconds} s");
    println!(
        "spacing error at receiver (after {} s warm-up): p50 {:.3} ms, p99 {:.3} ms, p99.9 {:.3} ms, max {:.3} ms over {} gaps",
        warmup_ns / 1_000_000_000,
        percentile(&errors, 0.5),
        percentile(&errors, 0.99),
        percentile(&errors, 0.999),
        percentile(&errors, 1.0),
        errors.len()
    );
    println!("received {received} packets, {gaps} sequence gaps");
    println!(
        "pacer: sent {}, send errors {}, skipped {}, late wake-ups {}, max lateness {:.3} ms",
        stats.packets_sent,
        stats.send_errors,
        stats.skipped_packets,
        stats.late_wakeups,
        stats.max_lateness.as_secs_f64() * 1e3
    );
    println!(
        "pacing threads CPU: {:.2} s over {:.1} s wall = {:.0}% of one core",
        cpu,
        wall,
        100.0 * cpu / wall
    );
    Ok(())
}
