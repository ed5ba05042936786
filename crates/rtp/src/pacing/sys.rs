//! The few Linux calls the pacing threads make: the monotonic clock, absolute sleeps,
//! timer slack, and `sendmmsg`.

use std::io;
use std::os::fd::RawFd;

/// Nanoseconds on CLOCK_MONOTONIC (the clock `std::time::Instant` reads on Linux).
pub(crate) fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sleeps until CLOCK_MONOTONIC reaches `deadline_ns` (absolute, so no drift accumulates),
/// resuming after signals.
pub(crate) fn sleep_until(deadline_ns: u64) {
    let ts = libc::timespec {
        tv_sec: (deadline_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (deadline_ns % 1_000_000_000) as libc::c_long,
    };
    loop {
        // SAFETY: `ts` is a valid timespec; the remainder pointer may be null with TIMER_ABSTIME.
        let rc = unsafe {
            libc::clock_nanosleep(
                libc::CLOCK_MONOTONIC,
                libc::TIMER_ABSTIME,
                &ts,
                std::ptr::null_mut(),
            )
        };
        // clock_nanosleep returns the error number instead of setting errno.
        if rc != libc::EINTR {
            return;
        }
    }
}

/// Lowers this thread's timer slack to 1 µs: the default 50 µs would be added to every wake-up.
pub(crate) fn set_timer_slack_1us() {
    // SAFETY: PR_SET_TIMERSLACK takes an unsigned long and affects only the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong) };
}

/// Puts the calling thread in the SCHED_FIFO class at `priority` (1–99).
pub(crate) fn set_realtime(priority: u8) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: libc::c_int::from(priority.clamp(1, 99)),
    };
    // SAFETY: `param` is valid; pthread_self() names the calling thread.
    let rc = unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Restricts the calling thread to CPU `cpu`.
pub(crate) fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes within it; pid 0 is the
    // calling thread.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Most packets one `sendmmsg` call carries (a stream catching up after a late wake-up).
pub(crate) const MAX_BATCH: usize = 8;

/// Sends `packets` on the connected socket `fd` in one `sendmmsg` call. Returns how many
/// were sent; an error only if none was.
pub(crate) fn send_batch(fd: RawFd, packets: &[&[u8]]) -> io::Result<usize> {
    let n = packets.len().min(MAX_BATCH);
    // SAFETY: all-zero iovec/mmsghdr values are valid (null pointers, zero lengths).
    let mut iov: [libc::iovec; MAX_BATCH] = unsafe { std::mem::zeroed() };
    let mut msgs: [libc::mmsghdr; MAX_BATCH] = unsafe { std::mem::zeroed() };
    for j in 0..n {
        iov[j].iov_base = packets[j].as_ptr() as *mut libc::c_void;
        iov[j].iov_len = packets[j].len();
        // Connected socket: no msg_name.
        msgs[j].msg_hdr.msg_iov = &mut iov[j];
        msgs[j].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs[..n]` point at `iov[..n]`, which point at the live `packets` slices; the
    // kernel only reads them (and writes `msg_len`) during the call.
    let rc =
        unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), n as libc::c_uint, libc::MSG_DONTWAIT) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn monotonic_matches_instant_rate() {
        let t0 = std::time::Instant::now();
        let n0 = monotonic_ns();
        sleep_until(n0 + 20_000_000);
        let n1 = monotonic_ns();
        let elapsed = t0.elapsed();
        assert!(n1 >= n0 + 20_000_000, "woke before the deadline");
        let diff = elapsed.as_nanos() as i128 - i128::from(n1 - n0);
        assert!(
            diff.abs() < 2_000_000,
            "{diff} ns between Instant and CLOCK_MONOTONIC"
        );
    }

    #[test]
    fn sendmmsg_sends_in_order() -> io::Result<()> {
        let rx = UdpSocket::bind("127.0.0.1:0")?;
        let tx = UdpSocket::bind("127.0.0.1:0")?;
        tx.connect(rx.local_addr()?)?;
        let a = [1u8; 10];
        let b = [2u8; 20];
        let c = [3u8; 30];
        assert_eq!(send_batch(tx.as_raw_fd(), &[&a, &b, &c])?, 3);
        let mut buf = [0u8; 64];
        for (len, byte) in [(10, 1), (20, 2), (30, 3)] {
            let n = rx.recv(&mut buf)?;
            assert_eq!(n, len);
            assert_eq!(buf[0], byte);
        }
        Ok(())
    }
}
