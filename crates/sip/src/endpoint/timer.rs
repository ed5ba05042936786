//! RFC 3261 timers (§17, Table 4) and RFC 4028 session timers as a table of deadlines, earliest first; shared by the
//! endpoint and the client.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// A transaction's identifier inside the endpoint.
pub(crate) type TxId = u64;

/// One running RFC 3261 timer and the transaction it belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Timer {
    /// INVITE request retransmission (client, UDP).
    A(TxId),
    /// INVITE transaction timeout (client).
    B(TxId),
    /// Wait for response retransmissions (INVITE client).
    D(TxId),
    /// Non-INVITE request retransmission (client, UDP).
    E(TxId),
    /// Non-INVITE transaction timeout (client).
    F(TxId),
    /// INVITE final response retransmission (server, UDP); also drives the 2xx
    /// retransmission of §13.3.1.4.
    G(TxId),
    /// Wait for ACK (server).
    H(TxId),
    /// Wait for ACK retransmissions (server).
    I(TxId),
    /// Wait for non-INVITE request retransmissions (server).
    J(TxId),
    /// Wait for response retransmissions (client).
    K(TxId),
    /// RFC 4028: time for the server to refresh the session of this call (its number).
    SessionRefresh(u64),
    /// RFC 4028: the session of this call was not refreshed in time; BYE.
    SessionExpiry(u64),
}

/// Deadlines indexed by timer; the earliest is found in O(log n).
#[derive(Debug, Default)]
pub(crate) struct TimerTable {
    by_timer: HashMap<Timer, Instant>,
    queue: BTreeSet<(Instant, Timer)>,
}

impl TimerTable {
    /// Arms (or re-arms) a timer.
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        if let Some(old) = self.by_timer.insert(timer, at) {
            self.queue.remove(&(old, timer));
        }
        self.queue.insert((at, timer));
    }

    /// Disarms a timer.
    pub(crate) fn stop(&mut self, timer: Timer) {
        if let Some(old) = self.by_timer.remove(&timer) {
            self.queue.remove(&(old, timer));
        }
    }

    /// When `timer` fires, if armed.
    pub(crate) fn deadline(&self, timer: Timer) -> Option<Instant> {
        self.by_timer.get(&timer).copied()
    }

    /// The earliest deadline.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Removes and returns one timer whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<Timer> {
        let (at, timer) = *self.queue.first()?;
        if at > now {
            return None;
        }
        self.queue.remove(&(at, timer));
        self.by_timer.remove(&timer);
        Some(timer)
    }

    /// Number of armed timers.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_timer.len()
    }
}

/// T1, T2 and T4 (RFC 3261 §17.1.1.1, Table 4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerSettings {
    /// RTT estimate (default 500 ms).
    pub t1: Duration,
    /// Longest retransmission interval (default 4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (default 5 s).
    pub t4: Duration,
}

impl Default for TimerSettings {
    fn default() -> Self {
        TimerSettings {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerSettings {
    /// 64·T1: Timers B, F, H and J (UDP).
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }

    /// The next retransmission interval after `current`: doubled, capped at T2.
    pub fn backoff(&self, current: Duration) -> Duration {
        (current * 2).min(self.t2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_rearm() {
        let t0 = Instant::now();
        let mut t = TimerTable::default();
        t.set(Timer::H(1), t0 + Duration::from_secs(32));
        t.set(Timer::G(1), t0 + Duration::from_millis(500));
        t.set(Timer::J(2), t0 + Duration::from_secs(1));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_millis(500)));
        t.set(Timer::G(1), t0 + Duration::from_secs(2));
        assert_eq!(t.next_timeout(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_expired(t0), None);
        assert_eq!(
            t.pop_expired(t0 + Duration::from_secs(5)),
            Some(Timer::J(2))
        );
        assert_eq!(
            t.pop_expired(t0 + Duration::from_secs(5)),
            Some(Timer::G(1))
        );
        assert_eq!(t.pop_expired(t0 + Duration::from_secs(5)), None);
        t.stop(Timer::H(1));
        assert_eq!(t.next_timeout(), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn backoff_caps_at_t2() {
        let s = TimerSettings::default();
        let mut d = s.t1;
        let mut seen = vec![];
        for _ in 0..6 {
            seen.push(d.as_millis());
            d = s.backoff(d);
        }
        assert_eq!(seen, [500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(s.timeout(), Duration::from_secs(32));
    }
}
