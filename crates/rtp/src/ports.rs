//! RTP/RTCP port pairs: even RTP port, RTCP on the next odd port (RFC 3550 §11).

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, MutexGuard};

/// Why no port pair could be had.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Every even port of the range is taken (by this server or by other programs).
    #[error(
        "no free RTP port pair in {min}-{max}: every even port is in use (by this server or \
         other programs); widen [rtp] port_min/port_max or lower the load"
    )]
    Exhausted {
        /// Configured lower bound.
        min: u16,
        /// Configured upper bound.
        max: u16,
    },
    /// The range holds no even port with a following odd port.
    #[error("RTP port range {min}-{max} holds no even/odd port pair")]
    InvalidRange {
        /// Configured lower bound.
        min: u16,
        /// Configured upper bound.
        max: u16,
    },
    /// Binding failed for a reason other than the port being taken.
    #[error("cannot bind RTP/RTCP socket on {addr}: {source}")]
    Bind {
        /// Address that failed.
        addr: SocketAddr,
        /// The OS error.
        source: io::Error,
    },
}

struct Pool {
    bind: IpAddr,
    min: u16,
    max: u16,
    first: u16,
    state: Mutex<PoolState>,
}

struct PoolState {
    taken: Vec<bool>,
    in_use: usize,
    next: usize,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is a bitmap updated in single statements: still valid after a panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Hands out RTP/RTCP port pairs from a range. Cheap to clone; `Sync`.
///
/// Allocation goes round-robin through the range rather than reusing the lowest free port,
/// so a port just released is not handed to a new call while late packets of the old one
/// may still arrive. Ports bound by other programs are skipped.
#[derive(Clone)]
pub struct PortAllocator {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for PortAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortAllocator")
            .field("bind", &self.pool.bind)
            .field("min", &self.pool.min)
            .field("max", &self.pool.max)
            .field("in_use", &self.in_use())
            .finish()
    }
}

impl PortAllocator {
    /// An allocator of even RTP ports `p` with `min <= p` and `p + 1 <= max`, bound on `bind`.
    pub fn new(bind: IpAddr, min: u16, max: u16) -> Result<Self, PortError> {
        let first = min.saturating_add(min % 2);
        let invalid = PortError::InvalidRange { min, max };
        if first == 0 || max == u16::MAX && first == u16::MAX || first >= max {
            return Err(invalid);
        }
        let pairs = usize::from((max - first - 1) / 2) + 1;
        Ok(PortAllocator {
            pool: Arc::new(Pool {
                bind,
                min,
                max,
                first,
                state: Mutex::new(PoolState {
                    taken: vec![false; pairs],
                    in_use: 0,
                    next: 0,
                }),
            }),
        })
    }

    /// Binds the next free pair (RTP on the even port, RTCP on the odd one).
    pub fn allocate(&self) -> Result<PortPair, PortError> {
        let pool = &self.pool;
        let mut state = pool.lock();
        let pairs = state.taken.len();
        for k in 0..pairs {
            let index = (state.next + k) % pairs;
            if state.taken[index] {
                continue;
            }
            let port = pool.first + 2 * index as u16;
            match bind_pair(pool.bind, port) {
                Ok((rtp, rtcp)) => {
                    state.taken[index] = true;
                    state.in_use += 1;
                    state.next = (index + 1) % pairs;
                    return Ok(PortPair {
                        rtp,
                        rtcp,
                        port,
                        lease: Some(Lease {
                            pool: Arc::clone(&self.pool),
                            index,
                        }),
                    });
                }
                Err(PortError::Bind { source, .. })
                    if source.kind() == io::ErrorKind::AddrInUse =>
                {
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        Err(PortError::Exhausted {
            min: pool.min,
            max: pool.max,
        })
    }

    /// Pairs currently handed out and not yet dropped.
    pub fn in_use(&self) -> usize {
        self.pool.lock().in_use
    }

    /// Pairs the range holds.
    pub fn capacity(&self) -> usize {
        self.pool.lock().taken.len()
    }
}

fn bind_pair(ip: IpAddr, port: u16) -> Result<(UdpSocket, UdpSocket), PortError> {
    let bind = |port| {
        let addr = SocketAddr::new(ip, port);
        UdpSocket::bind(addr).map_err(|source| PortError::Bind { addr, source })
    };
    let rtp = bind(port)?;
    let rtcp = bind(port + 1)?;
    Ok((rtp, rtcp))
}

struct Lease {
    pool: Arc<Pool>,
    index: usize,
}

/// Two bound std UdpSockets; the port returns to the allocator when this drops.
pub struct PortPair {
    /// RTP socket, on the even port advertised in SDP.
    pub rtp: UdpSocket,
    /// RTCP socket, on the odd port above it.
    pub rtcp: UdpSocket,
    port: u16,
    lease: Option<Lease>,
}

impl std::fmt::Debug for PortPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PortPair")
            .field("port", &self.port)
            .field("managed", &self.lease.is_some())
            .finish()
    }
}

impl PortPair {
    /// The RTP port (even); RTCP is on `port() + 1`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Wraps two sockets bound elsewhere (e.g. on ephemeral ports by a client); nothing is
    /// returned to any allocator on drop. The RTP socket's local port is reported by `port()`.
    pub fn unmanaged(rtp: UdpSocket, rtcp: UdpSocket) -> io::Result<PortPair> {
        let port = rtp.local_addr()?.port();
        Ok(PortPair {
            rtp,
            rtcp,
            port,
            lease: None,
        })
    }
}

impl Drop for PortPair {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            let mut state = lease.pool.lock();
            if let Some(taken) = state.taken.get_mut(lease.index)
                && *taken
            {
                *taken = false;
                state.in_use -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// A range of `pairs` even/odd pairs nobody is bound on right now, below the kernel's
    /// ephemeral range; retried because other tests run in parallel.
    fn free_range(pairs: u16) -> (u16, u16) {
        for _ in 0..200 {
            let start = rand::random::<u16>() % 10_000 / 2 * 2 + 20_000;
            let end = start + 2 * pairs - 1;
            let free = (start..=end).all(|p| UdpSocket::bind((LOCAL, p)).is_ok());
            if free {
                return (start, end);
            }
        }
        panic!("no free UDP port range found on 127.0.0.1");
    }

    #[test]
    fn rejects_ranges_without_a_pair() {
        assert!(matches!(
            PortAllocator::new(LOCAL, 20_001, 20_002),
            Err(PortError::InvalidRange { .. })
        ));
        assert!(matches!(
            PortAllocator::new(LOCAL, 20_000, 20_000),
            Err(PortError::InvalidRange { .. })
        ));
        assert!(matches!(
            PortAllocator::new(LOCAL, 0, 1),
            Err(PortError::InvalidRange { .. })
        ));
        let odd = PortAllocator::new(LOCAL, 20_001, 20_006).map(|a| a.capacity());
        assert_eq!(odd.ok(), Some(2), "20002/3 and 20004/5");
        let full = PortAllocator::new(LOCAL, 16_384, 32_767).map(|a| a.capacity());
        assert_eq!(full.ok(), Some(8192));
    }

    #[test]
    fn exhaustion_and_release() -> Result<(), PortError> {
        let (min, max) = free_range(3);
        let alloc = PortAllocator::new(LOCAL, min, max)?;
        let a = alloc.allocate()?;
        let b = alloc.allocate()?;
        let c = alloc.allocate()?;
        let mut ports = [a.port(), b.port(), c.port()];
        ports.sort_unstable();
        assert_eq!(ports, [min, min + 2, min + 4]);
        for pair in [&a, &b, &c] {
            assert_eq!(pair.port() % 2, 0);
            assert_eq!(
                pair.rtp.local_addr().map(|s| s.port()).ok(),
                Some(pair.port())
            );
            assert_eq!(
                pair.rtcp.local_addr().map(|s| s.port()).ok(),
                Some(pair.port() + 1)
            );
        }
        assert_eq!(alloc.in_use(), 3);
        let err = alloc.allocate().err();
        assert!(matches!(err, Some(PortError::Exhausted { .. })), "{err:?}");
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains(&format!("{min}-{max}")), "{msg}");

        let released = b.port();
        drop(b);
        assert_eq!(alloc.in_use(), 2);
        let again = alloc.allocate()?;
        assert_eq!(again.port(), released);
        assert_eq!(alloc.in_use(), 3);
        drop((a, c, again));
        assert_eq!(alloc.in_use(), 0);
        Ok(())
    }

    #[test]
    fn skips_ports_taken_by_others() -> Result<(), PortError> {
        let (min, max) = free_range(3);
        // Another program holds the RTCP port of the first pair and the RTP port of the second.
        let _other_rtcp = UdpSocket::bind((LOCAL, min + 1)).ok();
        let _other_rtp = UdpSocket::bind((LOCAL, min + 2)).ok();
        let alloc = PortAllocator::new(LOCAL, min, max)?;
        let pair = alloc.allocate()?;
        assert_eq!(pair.port(), min + 4);
        assert!(matches!(alloc.allocate(), Err(PortError::Exhausted { .. })));
        // The half-bound first pair must not stay bound by the failed attempt.
        assert!(UdpSocket::bind((LOCAL, min)).is_ok());
        Ok(())
    }

    #[test]
    fn round_robin_does_not_reuse_at_once() -> Result<(), PortError> {
        let (min, max) = free_range(3);
        let alloc = PortAllocator::new(LOCAL, min, max)?;
        let first = alloc.allocate()?.port(); // dropped at once
        let second = alloc.allocate()?;
        assert_ne!(second.port(), first);
        Ok(())
    }

    #[test]
    fn other_bind_errors_are_reported() {
        // 192.0.2.1 (TEST-NET-1) is not a local address: EADDRNOTAVAIL, not "exhausted".
        let alloc = PortAllocator::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 20_000, 20_009);
        let result = alloc.map(|a| a.allocate());
        assert!(
            matches!(result, Ok(Err(PortError::Bind { .. }))),
            "{result:?}"
        );
    }

    #[test]
    fn allocator_is_sync() {
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<PortAllocator>();
        assert_sync::<PortPair>();
    }
}
