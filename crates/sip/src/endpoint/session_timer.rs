//! RFC 4028 session timers: the Session-Expires and Min-SE header fields, and what the UAS
//! settles on for a session refresh request (INVITE, re-INVITE or UPDATE).
//!
//! The negotiation is a pure function of the request's header fields and the server's
//! [`SessionTimerSettings`]; the endpoint applies its outcome when it sends the 2xx and arms
//! the refresh (we refresh) or expiry (the caller refreshes) timer from there.

use crate::message::Headers;
use std::fmt;
use std::time::Duration;

/// The option tag of the extension (Supported, Require).
pub const TIMER_TAG: &str = "timer";

/// Who sends the session refresh requests (the `refresher` parameter, RFC 4028 §4). The
/// roles are those of the transaction that carries the header field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresher {
    /// The client of the request (the caller, for an INVITE it sent).
    Uac,
    /// The server of the request.
    Uas,
}

impl Refresher {
    fn token(self) -> &'static str {
        match self {
            Refresher::Uac => "uac",
            Refresher::Uas => "uas",
        }
    }
}

/// A Session-Expires header field value (RFC 4028 §4): `delta-seconds[;refresher=uac|uas]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionExpires {
    /// The session interval in seconds.
    pub interval: u32,
    /// Who refreshes, when the sender said so.
    pub refresher: Option<Refresher>,
}

/// A Session-Expires or Min-SE value that is not `delta-seconds` (→ 400).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed {0}")]
pub struct MalformedTimerHeader(pub &'static str);

/// `delta-seconds` (RFC 3261 §25.1); values beyond 2³²−1 saturate, as RFC 3261 §20.19 asks
/// for Expires.
fn delta_seconds(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        s.parse::<u64>()
            .map_or(u32::MAX, |v| v.min(u64::from(u32::MAX)) as u32),
    )
}

impl SessionExpires {
    /// Parses a header field value; unknown parameters are ignored, an unknown refresher
    /// value is treated as absent.
    pub fn parse(value: &str) -> Result<SessionExpires, MalformedTimerHeader> {
        let mut parts = value.split(';');
        let interval = parts
            .next()
            .and_then(delta_seconds)
            .ok_or(MalformedTimerHeader("Session-Expires"))?;
        let refresher = parts
            .filter_map(|p| p.split_once('='))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case("refresher"))
            .and_then(|(_, v)| match v.trim().to_ascii_lowercase().as_str() {
                "uac" => Some(Refresher::Uac),
                "uas" => Some(Refresher::Uas),
                _ => None,
            });
        Ok(SessionExpires {
            interval,
            refresher,
        })
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.interval)?;
        if let Some(r) = self.refresher {
            write!(f, ";refresher={}", r.token())?;
        }
        Ok(())
    }
}

/// Parses a Min-SE header field value (RFC 4028 §5): `delta-seconds *(;generic-param)`.
pub fn parse_min_se(value: &str) -> Result<u32, MalformedTimerHeader> {
    value
        .split(';')
        .next()
        .and_then(delta_seconds)
        .ok_or(MalformedTimerHeader("Min-SE"))
}

/// The server's session timer policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionTimerSettings {
    /// The longest session interval granted, in seconds: a request asking for more is
    /// lowered to it (never below the request's Min-SE). Default 1800 (RFC 4028 §4).
    pub session_expires: u32,
    /// The shortest session interval accepted, in seconds (the Min-SE of a 422). RFC 4028
    /// §5 puts the floor at 90 seconds, the default; lower values are for tests.
    pub min_se: u32,
}

impl Default for SessionTimerSettings {
    fn default() -> Self {
        SessionTimerSettings {
            session_expires: 1800,
            min_se: 90,
        }
    }
}

/// The session timer a 2xx settles on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The session interval in seconds.
    pub interval: u32,
    /// Who refreshes, in the roles of the request being answered.
    pub refresher: Refresher,
    /// The request said `Supported: timer`: the 2xx says `Require: timer`.
    pub uac_supports: bool,
}

impl Agreed {
    /// The header fields of the 2xx (Supported: timer is always sent by the endpoint).
    pub fn response_headers(&self) -> Vec<(&'static str, String)> {
        let se = SessionExpires {
            interval: self.interval,
            refresher: Some(self.refresher),
        };
        let mut h = vec![("Session-Expires", se.to_string())];
        if self.uac_supports {
            h.push(("Require", TIMER_TAG.to_string()));
        }
        h
    }
}

/// What the UAS answers a session refresh request with (RFC 4028 §9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Negotiation {
    /// The request has no Session-Expires: no session timer (the server imposes none).
    Off,
    /// Accept with this session timer.
    On(Agreed),
    /// `422 Session Interval Too Small` with this Min-SE.
    TooSmall {
        /// The server's minimum, for the Min-SE header field.
        min_se: u32,
    },
}

/// True when the list header `name` holds the option tag `timer`.
pub(crate) fn has_timer_tag(headers: &Headers, name: &str) -> bool {
    headers
        .list(name)
        .iter()
        .any(|t| t.eq_ignore_ascii_case(TIMER_TAG))
}

/// RFC 4028 §9 for one request.
///
/// - no Session-Expires → [`Negotiation::Off`];
/// - an interval below `min_se` from a caller that supports timers → 422 with our Min-SE;
///   from one that does not (a proxy inserted the header field), a 422 would only fail the
///   call, so the interval is raised to `min_se` instead (RFC 4028 erratum 1687);
/// - an interval above `session_expires` is lowered to it, but never below the request's
///   Min-SE (or 90 s without one, RFC 4028 §9);
/// - refresher: what a timer-aware caller asked for, else the caller (`uac`: it knows best
///   whether the session is alive); `uas` for a caller without timer support.
pub(crate) fn negotiate(
    headers: &Headers,
    settings: &SessionTimerSettings,
) -> Result<Negotiation, MalformedTimerHeader> {
    let Some(value) = headers.get("Session-Expires") else {
        return Ok(Negotiation::Off);
    };
    let asked = SessionExpires::parse(value)?;
    let request_min = headers.get("Min-SE").map(parse_min_se).transpose()?;
    let uac_supports = has_timer_tag(headers, "Supported") || has_timer_tag(headers, "Require");
    let mut interval = asked.interval;
    if interval < settings.min_se {
        if uac_supports {
            return Ok(Negotiation::TooSmall {
                min_se: settings.min_se.max(request_min.unwrap_or(0)),
            });
        }
        interval = settings.min_se;
    } else if interval > settings.session_expires {
        let floor = request_min.unwrap_or(90).min(interval);
        interval = settings.session_expires.max(floor);
    }
    let refresher = if uac_supports {
        asked.refresher.unwrap_or(Refresher::Uac)
    } else {
        Refresher::Uas
    };
    Ok(Negotiation::On(Agreed {
        interval,
        refresher,
        uac_supports,
    }))
}

/// When the refresher sends its refresh: half the interval (RFC 4028 §10).
pub(crate) fn refresh_after(interval: u32) -> Duration {
    Duration::from_millis(u64::from(interval) * 500)
}

/// When the side that does not refresh gives up and sends BYE: the interval minus the
/// smaller of 32 seconds and a third of it (RFC 4028 §10).
pub(crate) fn bye_after(interval: u32) -> Duration {
    let whole = Duration::from_secs(u64::from(interval));
    whole - (whole / 3).min(Duration::from_secs(32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(lines: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (n, v) in lines {
            h.push(*n, *v);
        }
        h
    }

    fn settings(session_expires: u32, min_se: u32) -> SessionTimerSettings {
        SessionTimerSettings {
            session_expires,
            min_se,
        }
    }

    #[test]
    fn session_expires_parses_compact_form_params_and_garbage() {
        assert_eq!(
            SessionExpires::parse("1800;refresher=UAC").unwrap(),
            SessionExpires {
                interval: 1800,
                refresher: Some(Refresher::Uac)
            }
        );
        assert_eq!(
            SessionExpires::parse(" 90 ; x=1 ; refresher = uas").unwrap(),
            SessionExpires {
                interval: 90,
                refresher: Some(Refresher::Uas)
            }
        );
        assert_eq!(
            SessionExpires::parse("600;refresher=both")
                .unwrap()
                .refresher,
            None
        );
        assert_eq!(
            SessionExpires::parse("99999999999999").unwrap().interval,
            u32::MAX
        );
        for bad in [
            "",
            "abc",
            "-5",
            "1.5",
            ";refresher=uac",
            "123456789012345678901",
        ] {
            assert!(SessionExpires::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_min_se("120;x").unwrap(), 120);
        assert!(parse_min_se("soon").is_err());
        let h = headers(&[("x", "300;refresher=uac")]);
        assert_eq!(
            negotiate(&h, &SessionTimerSettings::default()).unwrap(),
            Negotiation::On(Agreed {
                interval: 300,
                refresher: Refresher::Uas,
                uac_supports: false
            }),
            "compact x is read; no Supported: timer → we refresh"
        );
    }

    #[test]
    fn no_session_expires_no_timer() {
        let h = headers(&[("Supported", "timer"), ("Min-SE", "120")]);
        assert_eq!(
            negotiate(&h, &SessionTimerSettings::default()).unwrap(),
            Negotiation::Off
        );
    }

    #[test]
    fn too_small_from_a_timer_aware_caller_gets_422_with_our_minimum() {
        let h = headers(&[("Supported", "100rel, timer"), ("Session-Expires", "60")]);
        assert_eq!(
            negotiate(&h, &SessionTimerSettings::default()).unwrap(),
            Negotiation::TooSmall { min_se: 90 }
        );
        // Exactly the minimum is fine.
        let h = headers(&[("k", "timer"), ("Session-Expires", "90")]);
        assert!(matches!(
            negotiate(&h, &SessionTimerSettings::default()).unwrap(),
            Negotiation::On(Agreed { interval: 90, .. })
        ));
    }

    #[test]
    fn too_small_without_timer_support_is_raised_not_refused() {
        let h = headers(&[("Session-Expires", "30")]);
        assert_eq!(
            negotiate(&h, &settings(1800, 90)).unwrap(),
            Negotiation::On(Agreed {
                interval: 90,
                refresher: Refresher::Uas,
                uac_supports: false
            })
        );
    }

    #[test]
    fn refresher_prefers_the_caller_and_honours_its_choice() {
        let s = SessionTimerSettings::default();
        let on = |lines: &[(&str, &str)]| match negotiate(&headers(lines), &s).unwrap() {
            Negotiation::On(a) => a,
            other => panic!("{other:?}"),
        };
        let a = on(&[("Supported", "timer"), ("Session-Expires", "600")]);
        assert_eq!(
            (a.interval, a.refresher, a.uac_supports),
            (600, Refresher::Uac, true)
        );
        let a = on(&[
            ("Supported", "timer"),
            ("Session-Expires", "600;refresher=uas"),
        ]);
        assert_eq!(a.refresher, Refresher::Uas);
        assert_eq!(
            a.response_headers(),
            vec![
                ("Session-Expires", "600;refresher=uas".to_string()),
                ("Require", "timer".to_string())
            ]
        );
        let a = on(&[("Session-Expires", "600;refresher=uac")]);
        assert_eq!(
            a.refresher,
            Refresher::Uas,
            "a caller without timer support"
        );
        assert_eq!(
            a.response_headers(),
            vec![("Session-Expires", "600;refresher=uas".to_string())]
        );
    }

    #[test]
    fn long_intervals_are_lowered_but_not_below_the_requests_min_se() {
        let s = settings(300, 90);
        let on = |lines: &[(&str, &str)]| match negotiate(&headers(lines), &s).unwrap() {
            Negotiation::On(a) => a.interval,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            on(&[("Supported", "timer"), ("Session-Expires", "3600")]),
            300
        );
        assert_eq!(
            on(&[
                ("Supported", "timer"),
                ("Session-Expires", "3600"),
                ("Min-SE", "1200")
            ]),
            1200
        );
        assert_eq!(
            on(&[("Supported", "timer"), ("Session-Expires", "200")]),
            200
        );
    }

    #[test]
    fn malformed_values_are_errors() {
        let s = SessionTimerSettings::default();
        assert!(negotiate(&headers(&[("Session-Expires", "later")]), &s).is_err());
        assert!(negotiate(&headers(&[("Session-Expires", "600"), ("Min-SE", "x")]), &s).is_err());
    }

    #[test]
    fn refresh_at_half_and_bye_before_expiry() {
        assert_eq!(refresh_after(1800), Duration::from_secs(900));
        assert_eq!(refresh_after(3), Duration::from_millis(1500));
        assert_eq!(bye_after(1800), Duration::from_secs(1768));
        assert_eq!(bye_after(90), Duration::from_secs(60));
        assert_eq!(bye_after(3), Duration::from_secs(2));
    }
}
