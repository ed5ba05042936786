//! Whether the mail server can be reached, for the dashboard: the connection test of
//! `imss_mail` (DNS, TCP, TLS, login, mailbox) once a minute while `[mail]` names an IMAP
//! server, and at once after its settings change.

use crate::Shared;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How often the mail server is checked.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// The last check.
#[derive(Debug, Clone, Default, serde::Serialize, PartialEq)]
pub struct Reachability {
    /// `true` when every step succeeded, `false` when one failed, `null` before the first
    /// check or without an IMAP server.
    pub reachable: Option<bool>,
    /// When it was checked (RFC 3339).
    pub checked_at: Option<String>,
    /// The step that failed and why, or what was found.
    pub detail: Option<String>,
}

/// The process's last result.
pub(crate) fn last() -> Reachability {
    state()
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn state() -> &'static Mutex<Reachability> {
    static LAST: std::sync::OnceLock<Mutex<Reachability>> = std::sync::OnceLock::new();
    LAST.get_or_init(Mutex::default)
}

/// Checks now and then every [`INTERVAL`], and when the `[mail]` settings change, until
/// `stop`.
pub(crate) fn spawn(
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut checked: Option<crate::config::Mail> = None;
        let mut since_check = INTERVAL;
        loop {
            let mail = shared.applied().mail.clone();
            if checked.as_ref() != Some(&mail) || since_check >= INTERVAL {
                since_check = Duration::ZERO;
                let result = match crate::voicemail::imap_settings(&mail) {
                    None => Reachability::default(),
                    Some(settings) => {
                        let report = tokio::select! {
                            r = imss_mail::test_connection(&settings) => r,
                            _ = stop.wait_for(|s| *s) => return,
                        };
                        let now = Some(crate::config_file::now_rfc3339());
                        match report {
                            Ok(r) if r.is_ok() => Reachability {
                                reachable: Some(true),
                                checked_at: now,
                                detail: r.steps.last().map(|s| s.detail.clone()),
                            },
                            Ok(r) => Reachability {
                                reachable: Some(false),
                                checked_at: now,
                                detail: Some(format!(
                                    "{}: {}",
                                    r.failed.map(|s| s.to_string()).unwrap_or_default(),
                                    r.error.map(|e| e.to_string()).unwrap_or_default()
                                )),
                            },
                            Err(e) => Reachability {
                                reachable: Some(false),
                                checked_at: now,
                                detail: Some(e.to_string()),
                            },
                        }
                    }
                };
                if result.reachable == Some(false) && last().reachable != Some(false) {
                    tracing::warn!(detail = ?result.detail, "the mail server cannot be reached");
                }
                *state()
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = result;
                checked = Some(mail);
            }
            let tick = Duration::from_secs(1);
            tokio::select! {
                _ = tokio::time::sleep(tick) => since_check += tick,
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    })
}
