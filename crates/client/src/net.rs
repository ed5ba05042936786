//! RTP sockets: binding even/odd port pairs, kernel receive timestamps and batched receive.
//!
//! Hand-written on `libc` because the figures this client reports depend on when the kernel
//! received each datagram (`SO_TIMESTAMPNS`), which neither std nor tokio expose, and because
//! bench receivers drain thousands of sockets with `recvmmsg` into preallocated buffers.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// Largest datagram kept; longer ones are truncated and ignored.
pub const MAX_DATAGRAM: usize = 2048;

/// Attempts at finding an even port whose successor is free.
const PAIR_ATTEMPTS: usize = 200;

/// Binds an RTP socket on an ephemeral even port of `ip` and, when `with_rtcp`, an RTCP socket
/// on the next (odd) port. Both are non-blocking and timestamp what they receive.
pub fn bind_rtp_pair(ip: IpAddr, with_rtcp: bool) -> io::Result<(UdpSocket, Option<UdpSocket>)> {
    let mut last_err = None;
    for _ in 0..PAIR_ATTEMPTS {
        let rtp = UdpSocket::bind(SocketAddr::new(ip, 0))?;
        let port = rtp.local_addr()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if !with_rtcp {
            prepare(&rtp)?;
            return Ok((rtp, None));
        }
        match UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
            Ok(rtcp) => {
                prepare(&rtp)?;
                rtcp.set_nonblocking(true)?;
                return Ok((rtp, Some(rtcp)));
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::AddrInUse, "no free even/odd port pair found")
    }))
}

/// Makes `sock` non-blocking, asks for kernel receive timestamps and a larger receive buffer.
fn prepare(sock: &UdpSocket) -> io::Result<()> {
    sock.set_nonblocking(true)?;
    set_int_opt(sock, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1)?;
    // Best effort: covers a receiver thread stalled for a few hundred ms.
    let _ = set_int_opt(sock, libc::SOL_SOCKET, libc::SO_RCVBUF, 64 * 1024);
    Ok(())
}

fn set_int_opt(sock: &UdpSocket, level: i32, name: i32, value: i32) -> io::Result<()> {
    // SAFETY: the fd is open for the lifetime of `sock`; the option value is a plain c_int
    // whose size is passed alongside.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The current CLOCK_REALTIME in nanoseconds: the clock of `SO_TIMESTAMPNS`.
pub fn realtime_ns() -> i64 {
    // SAFETY: clock_gettime writes one timespec into the struct passed by pointer.
    let mut ts: libc::timespec = unsafe { zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Space for one `SCM_TIMESTAMPNS` control message (and a little more), 8-byte aligned.
const CMSG_WORDS: usize = 8;

/// Preallocated buffers for `recvmmsg`: `N` datagrams per call, each with its kernel receive
/// timestamp. Built once per receiver thread; receiving allocates nothing.
///
/// Holds raw pointers into its own heap buffers, so it is neither `Send` nor `Sync`: create
/// it on the thread that uses it.
pub struct RecvBatch {
    bufs: Vec<u8>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    iovecs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    filled: usize,
}

impl RecvBatch {
    /// Buffers for `n` datagrams of up to [`MAX_DATAGRAM`] octets.
    pub fn new(n: usize) -> RecvBatch {
        let n = n.max(1);
        let mut bufs = vec![0u8; n * MAX_DATAGRAM];
        let mut cmsgs = vec![[0u64; CMSG_WORDS]; n];
        let mut iovecs: Vec<libc::iovec> = (0..n)
            .map(|i| libc::iovec {
                // SAFETY: i < n, so the offset stays inside `bufs`.
                iov_base: unsafe { bufs.as_mut_ptr().add(i * MAX_DATAGRAM) }.cast(),
                iov_len: MAX_DATAGRAM,
            })
            .collect();
        let hdrs = (0..n)
            .map(|i| {
                // SAFETY: mmsghdr is plain old data; all-zero is a valid (empty) value.
                let mut h: libc::mmsghdr = unsafe { zeroed() };
                h.msg_hdr.msg_iov = &mut iovecs[i];
                h.msg_hdr.msg_iovlen = 1;
                h.msg_hdr.msg_control = cmsgs[i].as_mut_ptr().cast();
                h.msg_hdr.msg_controllen = size_of::<[u64; CMSG_WORDS]>() as _;
                h
            })
            .collect();
        // The Vecs are never resized, so the pointers above stay valid when `self` moves.
        RecvBatch {
            bufs,
            cmsgs,
            iovecs,
            hdrs,
            filled: 0,
        }
    }

    /// Receives up to `N` datagrams from the non-blocking socket `fd`; 0 when none waits.
    pub fn recv(&mut self, fd: i32) -> io::Result<usize> {
        for h in &mut self.hdrs {
            h.msg_hdr.msg_controllen = size_of::<[u64; CMSG_WORDS]>() as _;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        debug_assert_eq!(self.iovecs.len(), self.hdrs.len());
        debug_assert_eq!(self.cmsgs.len(), self.hdrs.len());
        // SAFETY: every header points at buffers owned by `self` with their true lengths.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            self.filled = 0;
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        self.filled = n as usize;
        Ok(self.filled)
    }

    /// Datagram `i` of the last receive and its kernel arrival time (CLOCK_REALTIME ns), or
    /// `None` if `i` is out of range or the datagram was truncated.
    pub fn get(&self, i: usize) -> Option<(&[u8], i64)> {
        if i >= self.filled {
            return None;
        }
        let h = &self.hdrs[i];
        if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (h.msg_len as usize).min(MAX_DATAGRAM);
        let data = &self.bufs[i * MAX_DATAGRAM..i * MAX_DATAGRAM + len];
        let at = timestamp_of(&h.msg_hdr).unwrap_or_else(realtime_ns);
        Some((data, at))
    }
}

/// The `SCM_TIMESTAMPNS` of a received message, if the kernel attached one.
fn timestamp_of(msg: &libc::msghdr) -> Option<i64> {
    // SAFETY: `msg` was filled by recvmmsg; the CMSG_* macros walk its control buffer within
    // msg_controllen, and the timespec is read unaligned from inside that buffer.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts: libc::timespec =
                    std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>());
                return Some(ts.tv_sec * 1_000_000_000 + ts.tv_nsec);
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_is_even_and_consecutive() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let (rtp, rtcp) = bind_rtp_pair(ip, true).expect("pair");
        let p = rtp.local_addr().expect("addr").port();
        assert_eq!(p % 2, 0);
        let q = rtcp.expect("rtcp").local_addr().expect("addr").port();
        assert_eq!(q, p + 1);
    }

    #[test]
    fn batch_receive_carries_kernel_timestamps() {
        let ip: IpAddr = "127.0.0.1".parse().expect("ip");
        let (rtp, _) = bind_rtp_pair(ip, false).expect("socket");
        let to = rtp.local_addr().expect("addr");
        let tx = UdpSocket::bind("127.0.0.1:0").expect("tx");
        // The kernel turns receive stamping on through deferred work when the first socket
        // of the system asks for it (until then it stamps at read time); a call's socket is
        // bound a round trip before any RTP can arrive, give the test the same head start.
        std::thread::sleep(std::time::Duration::from_millis(50));
        let before = realtime_ns();
        for i in 0..3u8 {
            tx.send_to(&[i; 20], to).expect("send");
        }
        let sent = realtime_ns();
        // Read late: the stamps must still say when the datagrams arrived, not when read.
        std::thread::sleep(std::time::Duration::from_millis(30));
        let mut batch = RecvBatch::new(8);
        let n = batch.recv(rtp.as_raw_fd()).expect("recv");
        assert_eq!(
            n, 3,
            "loopback datagrams are queued by the time send returns"
        );
        for i in 0..n {
            let (d, at) = batch.get(i).expect("datagram");
            assert_eq!(d, &[i as u8; 20]);
            assert!(
                at >= before && at <= sent,
                "stamp {at} outside [{before}, {sent}]"
            );
        }
        assert!(batch.get(3).is_none());
        assert_eq!(batch.recv(rtp.as_raw_fd()).expect("empty"), 0);
    }
}
