//! What a plain-SIP caller asked for, read from the Request-URI.
//!
//! `sip:annc@host;play=URI[;repeat=N|forever][;delay=MS][;duration=MS]` is an RFC 4240
//! announcement; `sip:NAME@host` is the named live source NAME (music on hold).

use std::time::Duration;

/// A call's target, before any file is touched.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// RFC 4240 announcement.
    Announcement(Announcement),
    /// A named live source, played until the caller hangs up.
    Source(String),
}

/// The RFC 4240 parameters of an `annc` call.
#[derive(Debug, Clone, PartialEq)]
pub struct Announcement {
    /// The `play=` URI, percent-decoded.
    pub play: String,
    /// How often to play it; `None` is `forever`.
    pub repeat: Option<u32>,
    /// Silence between repetitions.
    pub delay: Duration,
    /// Upper bound on the whole announcement.
    pub duration: Option<Duration>,
}

/// Why a Request-URI cannot be served; each maps to a SIP status.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TargetError {
    /// Not a sip:/sips: URI or no user part (400).
    #[error("Request-URI {0:?} is not a sip: URI with a user part")]
    NotSipUri(String),
    /// `annc` without `play=` (400).
    #[error("annc needs a play= parameter (RFC 4240)")]
    MissingPlay,
    /// A parameter value cannot be read (400).
    #[error("bad {name} parameter {value:?}: {why}")]
    BadParameter {
        /// Parameter name.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// Longest accepted `delay` or `duration`, one day: larger values are typos.
const MAX_MS: u64 = 86_400_000;

/// Reads the target of a Request-URI.
pub fn parse(request_uri: &str) -> Result<Target, TargetError> {
    let not_sip = || TargetError::NotSipUri(request_uri.to_string());
    let rest = strip_scheme(request_uri).ok_or_else(not_sip)?;
    // Headers (`?…`) are not part of the target.
    let rest = rest.split('?').next().unwrap_or(rest);
    let (user, host_and_params) = rest.split_once('@').ok_or_else(not_sip)?;
    if user.is_empty() {
        return Err(not_sip());
    }
    let user = percent_decode(user).ok_or_else(not_sip)?;
    let mut params = host_and_params.split(';');
    let _host = params.next();
    if !user.eq_ignore_ascii_case("annc") {
        return Ok(Target::Source(user));
    }
    let mut ann = Announcement {
        play: String::new(),
        repeat: Some(1),
        delay: Duration::ZERO,
        duration: None,
    };
    for p in params {
        let (name, value) = p.split_once('=').unwrap_or((p, ""));
        let decoded = || {
            percent_decode(value).ok_or_else(|| TargetError::BadParameter {
                name: "play",
                value: value.to_string(),
                why: "bad %-escape",
            })
        };
        match name.to_ascii_lowercase().as_str() {
            "play" => ann.play = decoded()?,
            "repeat" => {
                ann.repeat = if value.eq_ignore_ascii_case("forever") {
                    None
                } else {
                    let n: u32 = value.parse().map_err(|_| TargetError::BadParameter {
                        name: "repeat",
                        value: value.to_string(),
                        why: "expected a count or \"forever\"",
                    })?;
                    if n == 0 {
                        return Err(TargetError::BadParameter {
                            name: "repeat",
                            value: value.to_string(),
                            why: "must be at least 1",
                        });
                    }
                    Some(n)
                }
            }
            "delay" => ann.delay = millis("delay", value)?,
            "duration" => ann.duration = Some(millis("duration", value)?),
            _ => {} // locale, param, extension, transport, … do not change what is played
        }
    }
    if ann.play.is_empty() {
        return Err(TargetError::MissingPlay);
    }
    Ok(Target::Announcement(ann))
}

fn strip_scheme(uri: &str) -> Option<&str> {
    let lower = uri.get(..5)?.to_ascii_lowercase();
    if lower.starts_with("sip:") {
        uri.get(4..)
    } else if lower == "sips:" {
        uri.get(5..)
    } else {
        None
    }
}

fn millis(name: &'static str, value: &str) -> Result<Duration, TargetError> {
    match value.parse::<u64>() {
        Ok(ms) if ms <= MAX_MS => Ok(Duration::from_millis(ms)),
        _ => Err(TargetError::BadParameter {
            name,
            value: value.to_string(),
            why: "expected milliseconds (0–86400000)",
        }),
    }
}

/// Decodes `%XX` escapes (RFC 3261 §19.1.2); `None` when an escape is malformed or the
/// result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcement_with_all_parameters() {
        let t = parse(
            "sip:annc@127.0.0.1:6060;play=file:///greet%20ing.wav;repeat=3;delay=500;duration=9000",
        )
        .expect("parses");
        assert_eq!(
            t,
            Target::Announcement(Announcement {
                play: "file:///greet ing.wav".into(),
                repeat: Some(3),
                delay: Duration::from_millis(500),
                duration: Some(Duration::from_millis(9000)),
            })
        );
    }

    #[test]
    fn defaults_and_forever() {
        let Target::Announcement(a) = parse("sip:annc@h;play=x.wav").expect("ok") else {
            panic!("announcement expected")
        };
        assert_eq!(a.repeat, Some(1));
        assert_eq!(a.delay, Duration::ZERO);
        assert_eq!(a.duration, None);
        let Target::Announcement(a) = parse("sip:ANNC@h;play=x.wav;repeat=forever").expect("ok")
        else {
            panic!("announcement expected")
        };
        assert_eq!(a.repeat, None);
    }

    #[test]
    fn named_source() {
        assert_eq!(
            parse("sip:moh@10.0.0.1;transport=udp").expect("ok"),
            Target::Source("moh".into())
        );
        assert_eq!(
            parse("sips:MP3@host").expect("ok"),
            Target::Source("MP3".into())
        );
    }

    #[test]
    fn errors_are_specific() {
        assert_eq!(parse("sip:annc@h"), Err(TargetError::MissingPlay));
        assert!(matches!(
            parse("sip:annc@h;play=x;repeat=0"),
            Err(TargetError::BadParameter { name: "repeat", .. })
        ));
        assert!(matches!(
            parse("sip:annc@h;play=x;delay=-1"),
            Err(TargetError::BadParameter { name: "delay", .. })
        ));
        assert!(matches!(
            parse("sip:annc@h;play=%zz"),
            Err(TargetError::BadParameter { .. })
        ));
        assert!(matches!(parse("tel:+123"), Err(TargetError::NotSipUri(_))));
        assert!(matches!(
            parse("sip:127.0.0.1:6060"),
            Err(TargetError::NotSipUri(_))
        ));
    }
}
