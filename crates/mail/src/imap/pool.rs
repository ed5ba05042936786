//! Logged-in IMAP sessions kept for reuse, per user.
//!
//! At most `pool_size` connections are open at once (in use or idle). A session idle for
//! longer than `idle_keepalive` is checked with NOOP before reuse; one idle for longer
//! than `max_idle` is closed instead (servers drop idle clients after 30 minutes, RFC
//! 3501 §5.4). A session that saw a transport or protocol error is never returned.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::timeout;
use tokio_rustls::rustls::ClientConfig;

use super::ImapSettings;
use super::connect::{self, Credentials, ImapSession};
use crate::MailError;

/// A session lent to one operation.
pub(crate) struct Lease {
    pub session: ImapSession,
    pub reused: bool,
    user: String,
    permit: OwnedSemaphorePermit,
}

struct IdleSession {
    session: ImapSession,
    since: Instant,
    permit: OwnedSemaphorePermit,
}

/// Counters for monitoring and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Successful logins since the client was made.
    pub logins: u64,
    /// Operations served by a session that was already logged in.
    pub reuses: u64,
    /// Sessions idle in the pool now.
    pub idle: usize,
}

pub(crate) struct Pool {
    pub settings: ImapSettings,
    pub tls: Option<Arc<ClientConfig>>,
    idle: Mutex<HashMap<String, Vec<IdleSession>>>,
    permits: Arc<Semaphore>,
    logins: AtomicU64,
    reuses: AtomicU64,
}

impl Pool {
    pub fn new(settings: ImapSettings, tls: Option<Arc<ClientConfig>>) -> Pool {
        let size = settings.pool_size.max(1);
        Pool {
            settings,
            tls,
            idle: Mutex::new(HashMap::new()),
            permits: Arc::new(Semaphore::new(size)),
            logins: AtomicU64::new(0),
            reuses: AtomicU64::new(0),
        }
    }

    pub fn stats(&self) -> PoolStats {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(Vec::len)
            .sum();
        PoolStats {
            logins: self.logins.load(Ordering::Relaxed),
            reuses: self.reuses.load(Ordering::Relaxed),
            idle,
        }
    }

    fn take_idle(&self, user: &str) -> Option<IdleSession> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let sessions = idle.get_mut(user)?;
        let session = sessions.pop();
        if sessions.is_empty() {
            idle.remove(user);
        }
        session
    }

    /// Closes the longest-idle session of any user, freeing its connection slot.
    fn evict_oldest(&self) -> bool {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = idle
            .iter()
            .flat_map(|(user, v)| v.iter().enumerate().map(move |(i, s)| (user, i, s.since)))
            .min_by_key(|&(_, _, since)| since)
            .map(|(user, i, _)| (user.clone(), i));
        let Some((user, i)) = oldest else {
            return false;
        };
        if let Some(sessions) = idle.get_mut(&user) {
            sessions.remove(i);
            if sessions.is_empty() {
                idle.remove(&user);
            }
        }
        true
    }

    /// A logged-in session for `creds.user`: an idle one if it is still alive, else a new
    /// one.
    pub async fn acquire(&self, creds: &Credentials) -> Result<Lease, MailError> {
        while let Some(mut idle) = self.take_idle(&creds.user) {
            let age = idle.since.elapsed();
            if age > self.settings.max_idle {
                continue;
            }
            idle.session.get_mut().timed().restart();
            if age > self.settings.idle_keepalive {
                match timeout(self.settings.read_timeout, idle.session.noop()).await {
                    Ok(Ok(())) => {}
                    _ => {
                        tracing::debug!(user = %creds.user, "pooled IMAP session failed NOOP, dropped");
                        continue;
                    }
                }
            }
            self.reuses.fetch_add(1, Ordering::Relaxed);
            return Ok(Lease {
                session: idle.session,
                reused: true,
                user: creds.user.clone(),
                permit: idle.permit,
            });
        }
        let permit = loop {
            if let Ok(permit) = self.permits.clone().try_acquire_owned() {
                break permit;
            }
            if self.evict_oldest() {
                continue;
            }
            match timeout(
                self.settings.connect_timeout,
                self.permits.clone().acquire_owned(),
            )
            .await
            {
                Ok(Ok(permit)) => break permit,
                Ok(Err(_)) => {
                    return Err(MailError::Protocol {
                        detail: "IMAP connection pool closed".to_owned(),
                    });
                }
                Err(_) => {
                    return Err(MailError::Timeout {
                        step: format!(
                            "waiting for one of the {} IMAP connections to become free",
                            self.settings.pool_size
                        ),
                        after: self.settings.connect_timeout,
                    });
                }
            }
        };
        let session = connect::open(&self.settings, self.tls.as_ref(), creds).await?;
        self.logins.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(user = %creds.user, host = %self.settings.host, "IMAP login");
        Ok(Lease {
            session,
            reused: false,
            user: creds.user.clone(),
            permit,
        })
    }

    /// Returns a session that finished its operation cleanly.
    pub fn release(&self, lease: Lease) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.entry(lease.user).or_default().push(IdleSession {
            session: lease.session,
            since: Instant::now(),
            permit: lease.permit,
        });
    }
}
