//! Mail URIs: RFC 5092 IMAP message URLs and `fbmc:` file-based store references.
//!
//! Only URLs that name one message (`imessagepart`) are accepted: a mailbox listing or
//! search (`?…`), a byte range (`;PARTIAL=`) and URLAUTH are refused with
//! [`UriError::Unsupported`], because a play plan needs exactly one audio source.

use std::fmt;
use std::str::FromStr;

/// Why a mail URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// Neither `imap://` nor `fbmc:`.
    #[error("unsupported scheme in {0:?}: expected imap:// or fbmc:")]
    UnsupportedScheme(String),
    /// `imap://` with no host.
    #[error("IMAP URL has no host")]
    MissingHost,
    /// A host that is neither a name, an IPv4 address nor a bracketed IPv6 address.
    #[error("invalid host {0:?}")]
    InvalidHost(String),
    /// A port that is not a number from 1 to 65535.
    #[error("invalid port {0:?}")]
    InvalidPort(String),
    /// A user part that RFC 5092 does not allow (stray `;` or `:`, empty AUTH type).
    #[error("invalid user part {0:?}")]
    InvalidUserInfo(String),
    /// No mailbox before `/;UID=`.
    #[error("no mailbox in {0:?}")]
    MissingMailbox(String),
    /// No `/;UID=n`: the URL names a mailbox, not a message.
    #[error("no /;UID= in {0:?}: the URL must name one message")]
    MissingUid(String),
    /// A number that is not a non-zero 32-bit value without leading zeros.
    #[error("invalid {field} {value:?}: expected a number from 1 to 4294967295")]
    InvalidNumber {
        /// `UID` or `UIDVALIDITY`.
        field: &'static str,
        /// The text as written.
        value: String,
    },
    /// A section that is not a part number such as `2` or `1.2`.
    #[error("invalid SECTION {0:?}: expected a part number such as 2 or 1.2")]
    InvalidSection(String),
    /// `%` not followed by two hex digits.
    #[error("bad percent-encoding at byte {0}")]
    InvalidPercentEncoding(usize),
    /// Percent-decoded text that is not UTF-8.
    #[error("{0} is not UTF-8 after percent-decoding")]
    NotUtf8(&'static str),
    /// A character that must be percent-encoded at that place.
    #[error("character {ch:?} at byte {index} must be percent-encoded")]
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its byte offset in the URI.
        index: usize,
    },
    /// A parameter this crate does not know, or one out of order.
    #[error("unexpected parameter {0:?}")]
    UnexpectedParameter(String),
    /// Valid RFC 5092 syntax that does not name one playable message.
    #[error("{0} is not supported: the URL must name one message or part")]
    Unsupported(&'static str),
    /// An `fbmc:` reference that is not `fbmc:MAILBOX/MESSAGE`.
    #[error("invalid file-based mail URI {0:?}: expected fbmc:MAILBOX/MESSAGE")]
    InvalidFbmc(String),
}

/// A URI naming a voicemail message: IMAP or the file-based store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailUri {
    /// `imap://…`
    Imap(ImapUrl),
    /// `fbmc:MAILBOX/MESSAGE`
    Fbmc(FbmcUri),
}

impl MailUri {
    /// Parses either form; the scheme is case-insensitive.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        if starts_with_ignore_case(s, "imap:") {
            ImapUrl::parse(s).map(MailUri::Imap)
        } else if starts_with_ignore_case(s, "fbmc:") {
            FbmcUri::parse(s).map(MailUri::Fbmc)
        } else {
            Err(UriError::UnsupportedScheme(truncate(s)))
        }
    }
}

impl FromStr for MailUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for MailUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailUri::Imap(u) => u.fmt(f),
            MailUri::Fbmc(u) => u.fmt(f),
        }
    }
}

/// An RFC 5092 IMAP URL naming one message, optionally one body part of it.
///
/// `imap://[user[;AUTH=type]@]host[:port]/MAILBOX[;UIDVALIDITY=n]/;UID=n[/;SECTION=part]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImapUrl {
    /// Percent-decoded user name (`enc-user`), if any.
    pub user: Option<String>,
    /// Percent-decoded SASL mechanism from `;AUTH=` (`*` means any), if any.
    pub auth: Option<String>,
    /// Host as written: a name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    /// Port, if written (RFC 5092's default is 143; the configured port applies otherwise).
    pub port: Option<u16>,
    /// Percent-decoded mailbox name in UTF-8; may contain the hierarchy delimiter `/`.
    pub mailbox: String,
    /// The UIDVALIDITY the UID belongs to, if given.
    pub uid_validity: Option<u32>,
    /// The message's UID.
    pub uid: u32,
    /// IMAP part number such as `2` or `1.2`, if the URL names one part.
    pub section: Option<String>,
}

impl ImapUrl {
    /// Parses an `imap://` URL naming one message.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        const SCHEME: &str = "imap://";
        if !starts_with_ignore_case(s, SCHEME) {
            return Err(UriError::UnsupportedScheme(truncate(s)));
        }
        if s.contains('?') {
            return Err(UriError::Unsupported("a mailbox search (?…)"));
        }
        if let Some(i) = s.find('#') {
            return Err(UriError::InvalidChar { ch: '#', index: i });
        }
        let rest = &s[SCHEME.len()..];
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let base = SCHEME.len();
        let (user, auth, host, port) = parse_authority(authority, base)?;
        let path_base = base + authority.len() + 1;
        if path.is_empty() {
            return Err(UriError::MissingMailbox(truncate(s)));
        }
        // The mailbox reference ends at `/;UID=`: `bchar` has no ';', so that text cannot
        // occur inside an encoded mailbox name (which may itself end in '/').
        let lower = path.to_ascii_lowercase();
        let (mailbox_ref, params) = match lower.find("/;uid=") {
            Some(i) => (&path[..i], &path[i + 1..]),
            None if lower.starts_with(";uid=") => ("", path),
            None => return Err(UriError::MissingUid(truncate(s))),
        };
        let (enc_mailbox, uid_validity) = match mailbox_ref.find(';') {
            Some(i) => {
                let param = &mailbox_ref[i..];
                let value = strip_param(param, ";UIDVALIDITY=")
                    .ok_or_else(|| UriError::UnexpectedParameter(truncate(param)))?;
                (
                    &mailbox_ref[..i],
                    Some(parse_nz_number("UIDVALIDITY", value)?),
                )
            }
            None => (mailbox_ref, None),
        };
        if enc_mailbox.is_empty() {
            return Err(UriError::MissingMailbox(truncate(s)));
        }
        check_chars(enc_mailbox, path_base, is_bchar)?;
        let mailbox = percent_decode_utf8(enc_mailbox, path_base, "mailbox")?;
        if mailbox.chars().any(char::is_control) {
            return Err(UriError::InvalidChar {
                ch: mailbox.chars().find(|c| c.is_control()).unwrap_or('\0'),
                index: path_base,
            });
        }

        let mut segments = params.split('/');
        let uid_segment = segments.next().unwrap_or("");
        let uid_text = strip_param(uid_segment, ";UID=").ok_or_else(|| {
            if uid_segment.is_empty() {
                UriError::MissingUid(truncate(s))
            } else {
                UriError::UnexpectedParameter(truncate(uid_segment))
            }
        })?;
        let uid = parse_nz_number("UID", uid_text)?;
        let mut section = None;
        for segment in segments {
            if let Some(value) = strip_param(segment, ";SECTION=") {
                if section.is_some() {
                    return Err(UriError::UnexpectedParameter(truncate(segment)));
                }
                section = Some(parse_section(value)?);
            } else if strip_param(segment, ";PARTIAL=").is_some() {
                return Err(UriError::Unsupported(";PARTIAL="));
            } else if strip_param(segment, ";URLAUTH=").is_some()
                || strip_param(segment, ";EXPIRE=").is_some()
            {
                return Err(UriError::Unsupported(";URLAUTH="));
            } else {
                return Err(UriError::UnexpectedParameter(truncate(segment)));
            }
        }
        Ok(ImapUrl {
            user,
            auth,
            host,
            port,
            mailbox,
            uid_validity,
            uid,
            section,
        })
    }

    /// The section as IMAP part numbers, e.g. `[1, 2]` for `1.2`.
    pub fn section_path(&self) -> Option<Vec<u32>> {
        self.section.as_deref().and_then(section_numbers)
    }

    /// The same URL without a section: the whole message.
    pub fn without_section(&self) -> ImapUrl {
        ImapUrl {
            section: None,
            ..self.clone()
        }
    }
}

impl FromStr for ImapUrl {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for ImapUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("imap://")?;
        if self.user.is_some() || self.auth.is_some() {
            if let Some(user) = &self.user {
                f.write_str(&percent_encode(user, is_achar))?;
            }
            if let Some(auth) = &self.auth {
                f.write_str(";AUTH=")?;
                if auth == "*" {
                    f.write_str("*")?;
                } else {
                    f.write_str(&percent_encode(auth, is_achar))?;
                }
            }
            f.write_str("@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        f.write_str("/")?;
        f.write_str(&percent_encode(&self.mailbox, is_bchar))?;
        if let Some(v) = self.uid_validity {
            write!(f, ";UIDVALIDITY={v}")?;
        }
        write!(f, "/;UID={}", self.uid)?;
        if let Some(section) = &self.section {
            write!(f, "/;SECTION={section}")?;
        }
        Ok(())
    }
}

/// A message in the file-based mail store: `fbmc:MAILBOX/MESSAGE`.
///
/// MAILBOX may contain `/` (nested folders); MESSAGE is the last segment. Both are
/// percent-decoded. Whether the path stays inside the store is checked by the store
/// ([`crate::FileMailStore`]), which owns the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FbmcUri {
    /// Mailbox folder, relative to the store's root.
    pub mailbox: String,
    /// Message name: a file name (`MESSAGE`, `MESSAGE.eml`) or a Maildir unique name.
    pub message: String,
}

impl FbmcUri {
    /// Parses `fbmc:MAILBOX/MESSAGE`.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        const SCHEME: &str = "fbmc:";
        if !starts_with_ignore_case(s, SCHEME) {
            return Err(UriError::UnsupportedScheme(truncate(s)));
        }
        let rest = &s[SCHEME.len()..];
        check_chars(rest, SCHEME.len(), |b| {
            b.is_ascii_graphic() && !matches!(b, b'?' | b'#')
        })?;
        let (enc_mailbox, enc_message) = rest
            .rsplit_once('/')
            .ok_or_else(|| UriError::InvalidFbmc(truncate(s)))?;
        if enc_mailbox.is_empty() || enc_message.is_empty() {
            return Err(UriError::InvalidFbmc(truncate(s)));
        }
        let mailbox = percent_decode_utf8(enc_mailbox, SCHEME.len(), "mailbox")?;
        let message =
            percent_decode_utf8(enc_message, SCHEME.len() + enc_mailbox.len() + 1, "message")?;
        if mailbox.chars().chain(message.chars()).any(char::is_control) {
            return Err(UriError::InvalidFbmc(truncate(s)));
        }
        Ok(FbmcUri { mailbox, message })
    }
}

impl FromStr for FbmcUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for FbmcUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fbmc:{}/{}",
            percent_encode(&self.mailbox, |b| is_bchar(b) && b != b'%'),
            percent_encode(&self.message, |b| is_achar(b) && b != b'%')
        )
    }
}

/// Splits a section such as `1.2` into part numbers; `None` unless every component is a
/// non-zero number without leading zeros.
pub fn section_numbers(section: &str) -> Option<Vec<u32>> {
    if section.is_empty() {
        return None;
    }
    section
        .split('.')
        .map(nz_number)
        .collect::<Option<Vec<u32>>>()
}

fn parse_section(enc: &str) -> Result<String, UriError> {
    let decoded = percent_decode_utf8(enc, 0, "section")
        .map_err(|_| UriError::InvalidSection(truncate(enc)))?;
    if section_numbers(&decoded).is_none() {
        return Err(UriError::InvalidSection(truncate(&decoded)));
    }
    Ok(decoded)
}

type Authority = (Option<String>, Option<String>, String, Option<u16>);

fn parse_authority(authority: &str, base: usize) -> Result<Authority, UriError> {
    let (userinfo, hostport, host_base) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..], base + i + 1),
        None => (None, authority, base),
    };
    let (mut user, mut auth) = (None, None);
    if let Some(userinfo) = userinfo {
        let (enc_user, enc_auth) = match userinfo.find(';') {
            Some(i) => {
                let param = &userinfo[i..];
                let value = strip_param(param, ";AUTH=")
                    .ok_or_else(|| UriError::InvalidUserInfo(truncate(userinfo)))?;
                (&userinfo[..i], Some(value))
            }
            None => (userinfo, None),
        };
        if enc_user.is_empty() && enc_auth.is_none() {
            return Err(UriError::InvalidUserInfo(truncate(userinfo)));
        }
        if !enc_user.is_empty() {
            check_chars(enc_user, base, is_achar)?;
            user = Some(percent_decode_utf8(enc_user, base, "user")?);
        }
        if let Some(enc_auth) = enc_auth {
            if enc_auth.is_empty() {
                return Err(UriError::InvalidUserInfo(truncate(userinfo)));
            }
            if enc_auth == "*" {
                auth = Some("*".to_owned());
            } else {
                check_chars(enc_auth, base, is_achar)?;
                auth = Some(percent_decode_utf8(enc_auth, base, "AUTH type")?);
            }
        }
    }
    let (host, port_text) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let end = bracketed
            .find(']')
            .ok_or_else(|| UriError::InvalidHost(truncate(hostport)))?;
        let host = &bracketed[..end];
        if host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(UriError::InvalidHost(truncate(hostport)));
        }
        let after = &bracketed[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UriError::InvalidHost(truncate(hostport))),
        };
        (host, port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(UriError::MissingHost);
    }
    if !hostport.starts_with('[')
        && let Some((i, ch)) = host
            .char_indices()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~')))
    {
        return Err(UriError::InvalidChar {
            ch,
            index: host_base + i,
        });
    }
    let port = match port_text {
        None => None,
        Some(p) => {
            let valid = !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit());
            match p.parse::<u16>() {
                Ok(n) if valid && n > 0 => Some(n),
                _ => return Err(UriError::InvalidPort(truncate(p))),
            }
        }
    };
    Ok((user, auth, host.to_owned(), port))
}

/// Returns the value after `name` when `segment` starts with it (case-insensitive, as
/// ABNF literals are).
fn strip_param<'a>(segment: &'a str, name: &str) -> Option<&'a str> {
    if starts_with_ignore_case(segment, name) {
        Some(&segment[name.len()..])
    } else {
        None
    }
}

fn nz_number(text: &str) -> Option<u32> {
    let valid = !text.is_empty()
        && text.len() <= 10
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    if !valid {
        return None;
    }
    text.parse::<u32>().ok()
}

fn parse_nz_number(field: &'static str, text: &str) -> Result<u32, UriError> {
    nz_number(text).ok_or_else(|| UriError::InvalidNumber {
        field,
        value: truncate(text),
    })
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len()
        && s.is_char_boundary(prefix.len())
        && s[..prefix.len()].eq_ignore_ascii_case(prefix)
}

/// Keeps error messages bounded whatever the input.
fn truncate(s: &str) -> String {
    const MAX: usize = 200;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// RFC 5092 `uchar` without `pct-encoded`: unreserved and `sub-delims-sh`.
fn is_uchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'\'' | b'(' | b')' | b'*' | b'+' | b','
        )
}

/// RFC 5092 `achar` (plus `%` for encoded octets).
fn is_achar(b: u8) -> bool {
    is_uchar(b) || matches!(b, b'&' | b'=' | b'%')
}

/// RFC 5092 `bchar` (plus `%` for encoded octets).
fn is_bchar(b: u8) -> bool {
    is_achar(b) || matches!(b, b':' | b'@' | b'/')
}

fn check_chars(text: &str, base: usize, allowed: impl Fn(u8) -> bool) -> Result<(), UriError> {
    match text
        .char_indices()
        .find(|&(_, c)| !c.is_ascii() || !allowed(c as u8))
    {
        Some((i, ch)) => Err(UriError::InvalidChar {
            ch,
            index: base + i,
        }),
        None => Ok(()),
    }
}

fn percent_decode_utf8(text: &str, base: usize, what: &'static str) -> Result<String, UriError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(UriError::InvalidPercentEncoding(base + i)),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UriError::NotUtf8(what))
}

fn percent_encode(text: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b != b'%' && keep(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn full_url() {
        let u = ImapUrl::parse(
            "imap://vm%40corp;AUTH=PLAIN@mail.example:1993/Voice%20Mail/2024;UIDVALIDITY=385759045/;UID=20/;SECTION=1.2",
        )
        .expect("valid");
        assert_eq!(u.user.as_deref(), Some("vm@corp"));
        assert_eq!(u.auth.as_deref(), Some("PLAIN"));
        assert_eq!(u.host, "mail.example");
        assert_eq!(u.port, Some(1993));
        assert_eq!(u.mailbox, "Voice Mail/2024");
        assert_eq!(u.uid_validity, Some(385759045));
        assert_eq!(u.uid, 20);
        assert_eq!(u.section.as_deref(), Some("1.2"));
        assert_eq!(u.section_path(), Some(vec![1, 2]));
    }

    #[test]
    fn minimal_url_and_case_insensitive_parameters() {
        let u = ImapUrl::parse("IMAP://host/INBOX/;uid=42").expect("valid");
        assert_eq!(u.user, None);
        assert_eq!(u.port, None);
        assert_eq!(u.mailbox, "INBOX");
        assert_eq!(u.uid, 42);
        assert_eq!(u.to_string(), "imap://host/INBOX/;UID=42");
    }

    #[test]
    fn ipv6_host() {
        let u = ImapUrl::parse("imap://[::1]:143/INBOX/;UID=1").expect("valid");
        assert_eq!(u.host, "::1");
        assert_eq!(u.to_string(), "imap://[::1]:143/INBOX/;UID=1");
    }

    #[test]
    fn utf8_mailbox() {
        let u = ImapUrl::parse("imap://h/Entw%C3%BCrfe/;UID=3").expect("valid");
        assert_eq!(u.mailbox, "Entwürfe");
    }

    #[test]
    fn malformed_urls_are_typed_errors() {
        type Check = fn(&UriError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("http://h/INBOX/;UID=1", |e| {
                matches!(e, UriError::UnsupportedScheme(_))
            }),
            ("imap:///INBOX/;UID=1", |e| {
                matches!(e, UriError::MissingHost)
            }),
            ("imap://h:0/INBOX/;UID=1", |e| {
                matches!(e, UriError::InvalidPort(_))
            }),
            ("imap://h:99999/INBOX/;UID=1", |e| {
                matches!(e, UriError::InvalidPort(_))
            }),
            ("imap://h/INBOX", |e| matches!(e, UriError::MissingUid(_))),
            ("imap://h/", |e| matches!(e, UriError::MissingMailbox(_))),
            ("imap://h/;UID=1", |e| {
                matches!(e, UriError::MissingMailbox(_))
            }),
            ("imap://h/INBOX/;UID=0", |e| {
                matches!(e, UriError::InvalidNumber { .. })
            }),
            ("imap://h/INBOX/;UID=4294967296", |e| {
                matches!(e, UriError::InvalidNumber { .. })
            }),
            ("imap://h/INBOX/;UID=x", |e| {
                matches!(e, UriError::InvalidNumber { .. })
            }),
            ("imap://h/INBOX;UIDVALIDITY=/;UID=1", |e| {
                matches!(e, UriError::InvalidNumber { .. })
            }),
            ("imap://h/INBOX/;UID=1/;SECTION=HEADER", |e| {
                matches!(e, UriError::InvalidSection(_))
            }),
            ("imap://h/INBOX/;UID=1/;SECTION=1..2", |e| {
                matches!(e, UriError::InvalidSection(_))
            }),
            ("imap://h/INBOX/;UID=1/;PARTIAL=0.100", |e| {
                matches!(e, UriError::Unsupported(_))
            }),
            ("imap://h/INBOX?SUBJECT%20x", |e| {
                matches!(e, UriError::Unsupported(_))
            }),
            ("imap://h/IN%ZZBOX/;UID=1", |e| {
                matches!(e, UriError::InvalidPercentEncoding(_))
            }),
            ("imap://h/IN%FFBOX/;UID=1", |e| {
                matches!(e, UriError::NotUtf8(_))
            }),
            ("imap://h/IN BOX/;UID=1", |e| {
                matches!(e, UriError::InvalidChar { ch: ' ', .. })
            }),
            ("imap://u;X=1@h/INBOX/;UID=1", |e| {
                matches!(e, UriError::InvalidUserInfo(_))
            }),
            ("imap://u;AUTH=@h/INBOX/;UID=1", |e| {
                matches!(e, UriError::InvalidUserInfo(_))
            }),
            ("imap://h/INBOX/;UID=1/;FOO=2", |e| {
                matches!(e, UriError::UnexpectedParameter(_))
            }),
            ("fbmc:nomessage", |e| matches!(e, UriError::InvalidFbmc(_))),
            ("fbmc:/msg", |e| matches!(e, UriError::InvalidFbmc(_))),
            ("fbmc:box/", |e| matches!(e, UriError::InvalidFbmc(_))),
        ];
        for (uri, check) in cases {
            match MailUri::parse(uri) {
                Ok(u) => panic!("{uri} parsed as {u:?}"),
                Err(e) => assert!(check(&e), "{uri}: unexpected error {e:?}"),
            }
        }
    }

    #[test]
    fn fbmc() {
        let u = MailUri::parse("fbmc:users/1234/INBOX/msg0001").expect("valid");
        assert_eq!(
            u,
            MailUri::Fbmc(FbmcUri {
                mailbox: "users/1234/INBOX".into(),
                message: "msg0001".into()
            })
        );
        assert_eq!(u.to_string(), "fbmc:users/1234/INBOX/msg0001");
        let dotted = FbmcUri::parse("fbmc:INBOX/1700000000.M1P2.host").expect("valid");
        assert_eq!(dotted.message, "1700000000.M1P2.host");
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 ./;:@%&=?#_~-]{1,20}",
            any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
        ]
    }

    fn imap_url() -> impl Strategy<Value = ImapUrl> {
        (
            proptest::option::of(
                any_text().prop_filter("no control", |s| !s.chars().any(char::is_control)),
            ),
            proptest::option::of(prop_oneof![Just("*".to_owned()), "[A-Z0-9-]{1,12}"]),
            prop_oneof![
                "[a-z0-9]([a-z0-9.-]{0,20}[a-z0-9])?",
                Just("::1".to_owned()),
                Just("127.0.0.1".to_owned())
            ],
            proptest::option::of(1u16..),
            any_text().prop_filter("no control", |s| !s.chars().any(char::is_control)),
            proptest::option::of(1u32..),
            1u32..,
            proptest::option::of(proptest::collection::vec(1u32..1000, 1..4)),
        )
            .prop_map(
                |(user, auth, host, port, mailbox, uid_validity, uid, section)| ImapUrl {
                    user,
                    auth,
                    host,
                    port,
                    mailbox,
                    uid_validity,
                    uid,
                    section: section
                        .map(|s| s.iter().map(u32::to_string).collect::<Vec<_>>().join(".")),
                },
            )
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC*") {
            let _ = MailUri::parse(&s);
        }

        #[test]
        fn parsing_imap_like_input_never_panics(s in "imap://[a-z@;:=%0-9.\\[\\]/A-Z?]{0,60}") {
            let _ = MailUri::parse(&s);
        }

        #[test]
        fn imap_url_round_trips(u in imap_url()) {
            let text = u.to_string();
            let parsed = ImapUrl::parse(&text);
            prop_assert_eq!(parsed, Ok(u), "formatted as {}", text);
        }

        #[test]
        fn fbmc_uri_round_trips(
            mailbox in "[a-zA-Z0-9 %/._-]{0,10}[a-zA-Z0-9]",
            message in any_text().prop_filter("no control", |s| !s.chars().any(char::is_control)),
        ) {
            let u = FbmcUri { mailbox, message };
            let text = u.to_string();
            prop_assert_eq!(FbmcUri::parse(&text), Ok(u), "formatted as {}", text);
        }
    }
}
