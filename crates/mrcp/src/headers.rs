//! Header fields: the generic ones (RFC 6787 §6.2) and the synthesizer's (§8.4), with typed
//! accessors for what the media player acts on.

use std::fmt;
use std::time::Duration;

use crate::message::RequestId;

/// Header field names as this crate writes them (lookups are case-insensitive).
pub mod names {
    /// Generic: identifies the channel a message belongs to (`<id>@<resource>`).
    pub const CHANNEL_IDENTIFIER: &str = "Channel-Identifier";
    /// Generic: media type of the body.
    pub const CONTENT_TYPE: &str = "Content-Type";
    /// Generic: length of the body in bytes.
    pub const CONTENT_LENGTH: &str = "Content-Length";
    /// Generic: base URI for relative URIs in the body.
    pub const CONTENT_BASE: &str = "Content-Base";
    /// Generic: content identifier.
    pub const CONTENT_ID: &str = "Content-ID";
    /// Generic: content encoding.
    pub const CONTENT_ENCODING: &str = "Content-Encoding";
    /// Generic: content location.
    pub const CONTENT_LOCATION: &str = "Content-Location";
    /// Generic: request-ids a STOP/PAUSE/RESUME/CONTROL/BARGE-IN-OCCURRED acted on.
    pub const ACTIVE_REQUEST_ID_LIST: &str = "Active-Request-Id-List";
    /// Generic: correlates a barge-in proxied from another resource.
    pub const PROXY_SYNC_ID: &str = "Proxy-Sync-Id";
    /// Generic: accepted character sets.
    pub const ACCEPT_CHARSET: &str = "Accept-Charset";
    /// Generic: accepted body types.
    pub const ACCEPT: &str = "Accept";
    /// Generic: how long to wait for a URI fetch, in milliseconds.
    pub const FETCH_TIMEOUT: &str = "Fetch-Timeout";
    /// Generic: HTTP-style cache control for fetches.
    pub const CACHE_CONTROL: &str = "Cache-Control";
    /// Generic: a tag to put in the server's logs.
    pub const LOGGING_TAG: &str = "Logging-Tag";
    /// Generic: vendor parameters (`name=value;…`).
    pub const VENDOR_SPECIFIC_PARAMETERS: &str = "Vendor-Specific-Parameters";
    /// Generic: cookies for fetches.
    pub const SET_COOKIE: &str = "Set-Cookie";
    /// Synthesizer: how far a CONTROL jumps.
    pub const JUMP_SIZE: &str = "Jump-Size";
    /// Synthesizer: whether barge-in stops this SPEAK.
    pub const KILL_ON_BARGE_IN: &str = "Kill-On-Barge-In";
    /// Synthesizer: URI of a speaker profile.
    pub const SPEAKER_PROFILE: &str = "Speaker-Profile";
    /// Synthesizer: why a SPEAK completed (`000 normal`).
    pub const COMPLETION_CAUSE: &str = "Completion-Cause";
    /// Synthesizer: the same, for a person (a quoted string).
    pub const COMPLETION_REASON: &str = "Completion-Reason";
    /// Synthesizer: voice gender.
    pub const VOICE_GENDER: &str = "Voice-Gender";
    /// Synthesizer: voice age.
    pub const VOICE_AGE: &str = "Voice-Age";
    /// Synthesizer: voice variant.
    pub const VOICE_VARIANT: &str = "Voice-Variant";
    /// Synthesizer: voice name.
    pub const VOICE_NAME: &str = "Voice-Name";
    /// Synthesizer: prosody volume.
    pub const PROSODY_VOLUME: &str = "Prosody-Volume";
    /// Synthesizer: prosody rate.
    pub const PROSODY_RATE: &str = "Prosody-Rate";
    /// Synthesizer: prosody pitch.
    pub const PROSODY_PITCH: &str = "Prosody-Pitch";
    /// Synthesizer: `timestamp=<NTP>[;<mark>]`.
    pub const SPEECH_MARKER: &str = "Speech-Marker";
    /// Synthesizer: default language of the text.
    pub const SPEECH_LANGUAGE: &str = "Speech-Language";
    /// Synthesizer: fetch hint for documents.
    pub const FETCH_HINT: &str = "Fetch-Hint";
    /// Synthesizer: fetch hint for audio.
    pub const AUDIO_FETCH_HINT: &str = "Audio-Fetch-Hint";
    /// Synthesizer: the URI whose fetch failed.
    pub const FAILED_URI: &str = "Failed-URI";
    /// Synthesizer: why that fetch failed.
    pub const FAILED_URI_CAUSE: &str = "Failed-URI-Cause";
    /// Synthesizer: restart the current SPEAK (CONTROL).
    pub const SPEAK_RESTART: &str = "Speak-Restart";
    /// Synthesizer: how much more to speak.
    pub const SPEAK_LENGTH: &str = "Speak-Length";
    /// Synthesizer: load or unload a lexicon (DEFINE-LEXICON).
    pub const LOAD_LEXICON: &str = "Load-Lexicon";
    /// Synthesizer: lexicon search order.
    pub const LEXICON_SEARCH_ORDER: &str = "Lexicon-Search-Order";
}

/// A header field value the peer sent that does not follow the RFC's grammar (maps to 404).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("header field {name} has an illegal value {value:?}: {problem}")]
pub struct HeaderError {
    /// The header field name.
    pub name: &'static str,
    /// The offending value.
    pub value: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

impl HeaderError {
    fn new(name: &'static str, value: &str, problem: &'static str) -> HeaderError {
        HeaderError {
            name,
            value: value.to_string(),
            problem,
        }
    }
}

/// The header fields of a message, in order, with their names as received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, String)>,
}

impl Headers {
    /// No header fields.
    pub fn new() -> Headers {
        Headers::default()
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Appends a field, keeping any earlier one of the same name.
    pub fn push(&mut self, name: &str, value: impl Into<String>) {
        self.fields.push((name.to_string(), value.into()));
    }

    /// Sets `name` to `value`: replaces the first field of that name and drops the others.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self
            .fields
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            Some(i) => {
                self.fields[i].1 = value;
                let mut index = 0;
                self.fields.retain(|(n, _)| {
                    let keep = index <= i || !n.eq_ignore_ascii_case(name);
                    index += 1;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    /// Removes every field called `name`; returns the first value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let first = self.get(name).map(str::to_string);
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        first
    }

    /// The fields in order, as `(name, value)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// No fields at all.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// `Channel-Identifier`.
    pub fn channel_identifier(&self) -> Option<&str> {
        self.get(names::CHANNEL_IDENTIFIER)
    }

    /// The media type of `Content-Type`, without parameters, lower-cased.
    pub fn content_type(&self) -> Option<String> {
        self.get(names::CONTENT_TYPE).map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// `Content-Length`.
    pub fn content_length(&self) -> Result<Option<usize>, HeaderError> {
        self.parsed(names::CONTENT_LENGTH, |v| {
            digits(v, 20)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or("expected a byte count")
        })
    }

    /// `Content-Base`.
    pub fn content_base(&self) -> Option<&str> {
        self.get(names::CONTENT_BASE)
    }

    /// `Active-Request-Id-List`: `request-id *("," request-id)`.
    pub fn active_request_id_list(&self) -> Result<Option<Vec<RequestId>>, HeaderError> {
        self.parsed(names::ACTIVE_REQUEST_ID_LIST, parse_request_id_list)
    }

    /// `Proxy-Sync-Id`.
    pub fn proxy_sync_id(&self) -> Option<&str> {
        self.get(names::PROXY_SYNC_ID)
    }

    /// `Completion-Cause`.
    pub fn completion_cause(&self) -> Result<Option<CompletionCause>, HeaderError> {
        self.parsed(names::COMPLETION_CAUSE, CompletionCause::parse)
    }

    /// `Completion-Reason`, with the quoted-string's quotes and escapes removed.
    pub fn completion_reason(&self) -> Option<String> {
        self.get(names::COMPLETION_REASON).map(unquote)
    }

    /// `Speech-Marker`.
    pub fn speech_marker(&self) -> Result<Option<SpeechMarker>, HeaderError> {
        self.parsed(names::SPEECH_MARKER, SpeechMarker::parse)
    }

    /// `Kill-On-Barge-In`.
    pub fn kill_on_barge_in(&self) -> Result<Option<bool>, HeaderError> {
        self.parsed(names::KILL_ON_BARGE_IN, parse_bool)
    }

    /// `Speak-Restart`.
    pub fn speak_restart(&self) -> Result<Option<bool>, HeaderError> {
        self.parsed(names::SPEAK_RESTART, parse_bool)
    }

    /// `Load-Lexicon`.
    pub fn load_lexicon(&self) -> Result<Option<bool>, HeaderError> {
        self.parsed(names::LOAD_LEXICON, parse_bool)
    }

    /// `Jump-Size`: a signed numeric length or a mark tag.
    pub fn jump_size(&self) -> Result<Option<SpeechLength>, HeaderError> {
        self.parsed(names::JUMP_SIZE, |v| SpeechLength::parse(v, true))
    }

    /// `Speak-Length`: a positive numeric length or a mark tag.
    pub fn speak_length(&self) -> Result<Option<SpeechLength>, HeaderError> {
        self.parsed(names::SPEAK_LENGTH, |v| SpeechLength::parse(v, false))
    }

    /// `Fetch-Timeout` (milliseconds on the wire).
    pub fn fetch_timeout(&self) -> Result<Option<Duration>, HeaderError> {
        self.parsed(names::FETCH_TIMEOUT, |v| {
            digits(v, 19)
                .map(Duration::from_millis)
                .ok_or("expected milliseconds")
        })
    }

    /// `Voice-Gender`: `male`, `female` or `neutral`.
    pub fn voice_gender(&self) -> Result<Option<&str>, HeaderError> {
        self.parsed(names::VOICE_GENDER, |v| {
            ["male", "female", "neutral"]
                .iter()
                .any(|g| g.eq_ignore_ascii_case(v))
                .then_some(v)
                .ok_or("expected male, female or neutral")
        })
    }

    /// `Voice-Age` in years.
    pub fn voice_age(&self) -> Result<Option<u32>, HeaderError> {
        self.parsed(names::VOICE_AGE, |v| {
            digits(v, 3)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("expected 1 to 3 digits")
        })
    }

    /// `Voice-Variant`.
    pub fn voice_variant(&self) -> Result<Option<u32>, HeaderError> {
        self.parsed(names::VOICE_VARIANT, |v| {
            digits(v, 9)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("expected a number")
        })
    }

    /// `Voice-Name`.
    pub fn voice_name(&self) -> Option<&str> {
        self.get(names::VOICE_NAME)
    }

    /// `Speech-Language`.
    pub fn speech_language(&self) -> Option<&str> {
        self.get(names::SPEECH_LANGUAGE)
    }

    /// `Speaker-Profile`.
    pub fn speaker_profile(&self) -> Option<&str> {
        self.get(names::SPEAKER_PROFILE)
    }

    /// `Logging-Tag`.
    pub fn logging_tag(&self) -> Option<&str> {
        self.get(names::LOGGING_TAG)
    }

    fn parsed<'a, T>(
        &'a self,
        name: &'static str,
        parse: impl FnOnce(&'a str) -> Result<T, &'static str>,
    ) -> Result<Option<T>, HeaderError> {
        match self.get(name) {
            None => Ok(None),
            Some(v) => parse(v)
                .map(Some)
                .map_err(|problem| HeaderError::new(name, v, problem)),
        }
    }
}

/// Up to `max` ASCII digits and nothing else.
fn digits(v: &str, max: usize) -> Option<u64> {
    let v = v.trim();
    if v.is_empty() || v.len() > max || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

fn parse_bool(v: &str) -> Result<bool, &'static str> {
    let v = v.trim();
    if v.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if v.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err("expected true or false")
    }
}

fn parse_request_id_list(v: &str) -> Result<Vec<RequestId>, &'static str> {
    v.split(',')
        .map(|id| {
            digits(id, 10)
                .and_then(|n| RequestId::try_from(n).ok())
                .ok_or("expected comma-separated request-ids")
        })
        .collect()
}

/// Formats request-ids for `Active-Request-Id-List`.
pub fn format_request_id_list(ids: &[RequestId]) -> String {
    ids.iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Writes `text` as an RFC 6787 quoted-string.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            // Line breaks would end the header field.
            '\r' | '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Reads a quoted-string; a bare value is returned as it is.
pub fn unquote(v: &str) -> String {
    let v = v.trim();
    let Some(inner) = v.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return v.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Why a SPEAK completed (RFC 6787 §8.4.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompletionCause {
    /// `000 normal`.
    Normal,
    /// `001 barge-in`.
    BargeIn,
    /// `002 parse-failure`: the body could not be parsed.
    ParseFailure,
    /// `003 uri-failure`: a URI could not be fetched.
    UriFailure,
    /// `004 error`: the synthesizer failed.
    Error,
    /// `005 language-unsupported`.
    LanguageUnsupported,
    /// `006 lexicon-load-failure`.
    LexiconLoadFailure,
    /// `007 cancelled`.
    Cancelled,
}

impl CompletionCause {
    const ALL: [CompletionCause; 8] = [
        CompletionCause::Normal,
        CompletionCause::BargeIn,
        CompletionCause::ParseFailure,
        CompletionCause::UriFailure,
        CompletionCause::Error,
        CompletionCause::LanguageUnsupported,
        CompletionCause::LexiconLoadFailure,
        CompletionCause::Cancelled,
    ];

    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            CompletionCause::Normal => 0,
            CompletionCause::BargeIn => 1,
            CompletionCause::ParseFailure => 2,
            CompletionCause::UriFailure => 3,
            CompletionCause::Error => 4,
            CompletionCause::LanguageUnsupported => 5,
            CompletionCause::LexiconLoadFailure => 6,
            CompletionCause::Cancelled => 7,
        }
    }

    /// The cause name.
    pub fn name(self) -> &'static str {
        match self {
            CompletionCause::Normal => "normal",
            CompletionCause::BargeIn => "barge-in",
            CompletionCause::ParseFailure => "parse-failure",
            CompletionCause::UriFailure => "uri-failure",
            CompletionCause::Error => "error",
            CompletionCause::LanguageUnsupported => "language-unsupported",
            CompletionCause::LexiconLoadFailure => "lexicon-load-failure",
            CompletionCause::Cancelled => "cancelled",
        }
    }

    /// Reads `3DIGIT SP name`; the code decides, the name is informative.
    pub fn parse(v: &str) -> Result<CompletionCause, &'static str> {
        let code = v.trim().split(' ').next().unwrap_or_default();
        if code.len() != 3 {
            return Err("expected a three-digit cause code");
        }
        let code = digits(code, 3).ok_or("expected a three-digit cause code")?;
        CompletionCause::ALL
            .into_iter()
            .find(|c| u64::from(c.code()) == code)
            .ok_or("unknown synthesizer completion cause")
    }
}

impl fmt::Display for CompletionCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03} {}", self.code(), self.name())
    }
}

/// `Speech-Marker: timestamp=<NTP>[;<mark>]` (RFC 6787 §8.4.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeechMarker {
    /// The 64-bit NTP timestamp as a decimal number.
    pub timestamp: u64,
    /// The mark's name, if any.
    pub name: Option<String>,
}

impl SpeechMarker {
    /// Reads the header value; vendor parameters after the mark are ignored.
    pub fn parse(v: &str) -> Result<SpeechMarker, &'static str> {
        let mut parts = v.trim().split(';');
        let ts = parts
            .next()
            .and_then(|p| {
                let (key, value) = p.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("timestamp")
                    .then_some(value)
            })
            .ok_or("expected timestamp=<NTP time>")?;
        let timestamp = digits(ts, 20).ok_or("timestamp is not a 64-bit number")?;
        let name = parts
            .next()
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string);
        Ok(SpeechMarker { timestamp, name })
    }
}

impl fmt::Display for SpeechMarker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "timestamp={}", self.timestamp)?;
        if let Some(name) = &self.name {
            write!(f, ";{name}")?;
        }
        Ok(())
    }
}

/// Unit of a numeric speech length (§8.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpeechUnit {
    /// `Second`.
    Second,
    /// `Word`.
    Word,
    /// `Sentence`.
    Sentence,
    /// `Paragraph`.
    Paragraph,
}

/// A `Jump-Size` or `Speak-Length` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpeechLength {
    /// `[+|-]N Unit`; negative only in Jump-Size.
    Numeric {
        /// Signed amount.
        value: i64,
        /// Unit of the amount.
        unit: SpeechUnit,
    },
    /// `<mark> Tag`: up to the named SSML mark.
    Tag(String),
}

impl SpeechLength {
    fn parse(v: &str, signed: bool) -> Result<SpeechLength, &'static str> {
        let v = v.trim();
        let (amount, unit) = v
            .rsplit_once(' ')
            .ok_or("expected <number> <unit> or <mark> Tag")?;
        let amount = amount.trim();
        if unit.eq_ignore_ascii_case("Tag") {
            if amount.is_empty() {
                return Err("expected a mark name before Tag");
            }
            return Ok(SpeechLength::Tag(amount.to_string()));
        }
        let unit = match unit.to_ascii_lowercase().as_str() {
            "second" => SpeechUnit::Second,
            "word" => SpeechUnit::Word,
            "sentence" => SpeechUnit::Sentence,
            "paragraph" => SpeechUnit::Paragraph,
            _ => return Err("expected Second, Word, Sentence, Paragraph or Tag"),
        };
        let (negative, number) = match amount.as_bytes().first() {
            Some(b'+') => (false, &amount[1..]),
            Some(b'-') => (true, &amount[1..]),
            _ if signed => return Err("a jump size starts with + or -"),
            _ => (false, amount),
        };
        if negative && !signed {
            return Err("a speak length cannot be negative");
        }
        let n = digits(number, 18).ok_or("expected a number")?;
        let n = i64::try_from(n).map_err(|_| "number too large")?;
        Ok(SpeechLength::Numeric {
            value: if negative { -n } else { n },
            unit,
        })
    }
}

impl fmt::Display for SpeechLength {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpeechLength::Tag(t) => write!(f, "{t} Tag"),
            SpeechLength::Numeric { value, unit } => {
                let unit = match unit {
                    SpeechUnit::Second => "Second",
                    SpeechUnit::Word => "Word",
                    SpeechUnit::Sentence => "Sentence",
                    SpeechUnit::Paragraph => "Paragraph",
                };
                write!(f, "{value:+} {unit}")
            }
        }
    }
}

/// Prosody of synthesized speech in percent of the engine's defaults (100 = unchanged), read
/// from the `Prosody-Rate`, `Prosody-Volume` and `Prosody-Pitch` parameters, whose
/// values are those of the SSML 1.0 `<prosody>` attributes of the same names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Prosody {
    /// Speaking rate: `x-slow` 50 … `x-fast` 200, a multiplier (`1.5` → 150) or a relative
    /// change (`+20%` → 120); 10 to 400.
    pub rate: Option<u16>,
    /// Linear loudness: `silent` 0, `x-soft` 25, `soft` 50, `medium` 100, `loud` 150, `x-loud`
    /// 200, a number 0–100 (SSML's scale, whose default is 100), a relative change (`-10`,
    /// `+6dB`); 0 to 200.
    pub volume: Option<u16>,
    /// Base pitch: `x-low` 50 … `x-high` 150 or a relative change (`+10%`); 10 to 200.
    pub pitch: Option<u16>,
}

impl Prosody {
    /// Reads the `Prosody-*` fields of `headers`. Also returns the names of the ones it
    /// cannot honour: other dimensions (contour, range, duration) and values it does not
    /// read (pitch in Hz, say).
    pub fn from_headers(headers: &Headers) -> (Prosody, Vec<String>) {
        let mut prosody = Prosody::default();
        let mut unread = Vec::new();
        for (name, value) in headers.iter().filter(|(n, _)| is_prosody(n)) {
            let dimension = name[8..].to_ascii_lowercase();
            let parsed = match dimension.as_str() {
                "rate" => parse_rate(value).map(|v| prosody.rate = Some(v)),
                "volume" => parse_volume(value).map(|v| prosody.volume = Some(v)),
                "pitch" => parse_pitch(value).map(|v| prosody.pitch = Some(v)),
                _ => None,
            };
            if parsed.is_none() {
                unread.push(name.to_string());
            }
        }
        (prosody, unread)
    }

    /// `changes`' values where it has them, ours elsewhere.
    pub fn overlaid(self, changes: Prosody) -> Prosody {
        Prosody {
            rate: changes.rate.or(self.rate),
            volume: changes.volume.or(self.volume),
            pitch: changes.pitch.or(self.pitch),
        }
    }

    /// True when no dimension is set.
    pub fn is_empty(&self) -> bool {
        *self == Prosody::default()
    }
}

/// A short unsigned decimal number (`12`, `0.5`).
fn decimal(v: &str) -> Option<f64> {
    let ok = !v.is_empty()
        && v.len() <= 12
        && v.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && v.bytes().filter(|&b| b == b'.').count() <= 1
        && v != ".";
    ok.then(|| v.parse().ok()).flatten()
}

/// `+N%` / `-N%` as a percentage of the default.
fn relative_percent(v: &str) -> Option<f64> {
    let (sign, rest) = match v.as_bytes().first()? {
        b'+' => (1.0, &v[1..]),
        b'-' => (-1.0, &v[1..]),
        _ => return None,
    };
    Some(100.0 + sign * decimal(rest.strip_suffix('%')?)?)
}

fn percent_in(value: f64, min: u16, max: u16) -> u16 {
    value.round().clamp(f64::from(min), f64::from(max)) as u16
}

fn parse_rate(v: &str) -> Option<u16> {
    let v = v.trim().to_ascii_lowercase();
    let percent = match v.as_str() {
        "x-slow" => 50.0,
        "slow" => 75.0,
        "medium" | "default" => 100.0,
        "fast" => 150.0,
        "x-fast" => 200.0,
        _ => relative_percent(&v)
            .or_else(|| v.strip_suffix('%').and_then(decimal))
            .or_else(|| decimal(&v).map(|m| m * 100.0))?,
    };
    Some(percent_in(percent, 10, 400))
}

fn parse_volume(v: &str) -> Option<u16> {
    let v = v.trim().to_ascii_lowercase();
    let percent = match v.as_str() {
        "silent" => 0.0,
        "x-soft" => 25.0,
        "soft" => 50.0,
        "medium" | "default" => 100.0,
        "loud" => 150.0,
        "x-loud" => 200.0,
        _ => {
            if let Some(db) = v.strip_suffix("db") {
                let (sign, n) = match db.as_bytes().first()? {
                    b'+' => (1.0, &db[1..]),
                    b'-' => (-1.0, &db[1..]),
                    _ => (1.0, db),
                };
                100.0 * 10f64.powf(sign * decimal(n)? / 20.0)
            } else if let Some(n) = v.strip_prefix('+') {
                100.0 + decimal(n)?
            } else if let Some(n) = v.strip_prefix('-') {
                100.0 - decimal(n)?
            } else {
                let n = decimal(&v)?;
                if n > 100.0 {
                    return None;
                }
                n
            }
        }
    };
    Some(percent_in(percent, 0, 200))
}

fn parse_pitch(v: &str) -> Option<u16> {
    let v = v.trim().to_ascii_lowercase();
    let percent = match v.as_str() {
        "x-low" => 50.0,
        "low" => 75.0,
        "medium" | "default" => 100.0,
        "high" => 125.0,
        "x-high" => 150.0,
        _ => relative_percent(&v)?,
    };
    Some(percent_in(percent, 10, 200))
}

/// Whether `name` is a synthesizer or generic parameter SET-PARAMS may set and GET-PARAMS read.
pub fn is_settable_synth_param(name: &str) -> bool {
    const SETTABLE: [&str; 16] = [
        names::KILL_ON_BARGE_IN,
        names::SPEAKER_PROFILE,
        names::VOICE_GENDER,
        names::VOICE_AGE,
        names::VOICE_VARIANT,
        names::VOICE_NAME,
        names::SPEECH_LANGUAGE,
        names::FETCH_HINT,
        names::AUDIO_FETCH_HINT,
        names::FETCH_TIMEOUT,
        names::LOGGING_TAG,
        names::VENDOR_SPECIFIC_PARAMETERS,
        names::CACHE_CONTROL,
        names::SET_COOKIE,
        names::LEXICON_SEARCH_ORDER,
        names::CONTENT_BASE,
    ];
    SETTABLE.iter().any(|n| n.eq_ignore_ascii_case(name)) || is_prosody(name)
}

/// `Prosody-*` header fields (§8.4.6: pitch, contour, range, rate, duration, volume).
pub fn is_prosody(name: &str) -> bool {
    name.len() > 8 && name.as_bytes()[..8].eq_ignore_ascii_case(b"prosody-")
}

/// `Voice-*` header fields.
pub fn is_voice(name: &str) -> bool {
    name.len() > 6 && name.as_bytes()[..6].eq_ignore_ascii_case(b"voice-")
}

/// Checks a parameter's value against its grammar where this crate knows one.
pub fn validate_param(headers: &Headers, name: &str) -> Result<(), HeaderError> {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "kill-on-barge-in" => headers.kill_on_barge_in().map(drop),
        "fetch-timeout" => headers.fetch_timeout().map(drop),
        "voice-gender" => headers.voice_gender().map(drop),
        "voice-age" => headers.voice_age().map(drop),
        "voice-variant" => headers.voice_variant().map(drop),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_set_replaces() {
        let mut h = Headers::new();
        h.push("channel-identifier", "a@speechsynth");
        h.push("X", "1");
        h.push("CHANNEL-IDENTIFIER", "b@speechsynth");
        assert_eq!(h.channel_identifier(), Some("a@speechsynth"));
        h.set(names::CHANNEL_IDENTIFIER, "c@speechsynth");
        assert_eq!(h.len(), 2);
        assert_eq!(h.get("Channel-Identifier"), Some("c@speechsynth"));
        assert_eq!(h.remove("x").as_deref(), Some("1"));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn completion_cause_round_trips_and_rejects_garbage() {
        for c in CompletionCause::ALL {
            assert_eq!(CompletionCause::parse(&c.to_string()), Ok(c));
        }
        assert_eq!(CompletionCause::parse("001"), Ok(CompletionCause::BargeIn));
        assert!(CompletionCause::parse("1 barge-in").is_err());
        assert!(CompletionCause::parse("099 nope").is_err());
        assert!(CompletionCause::parse("").is_err());
    }

    #[test]
    fn active_request_id_list_parses_and_rejects() {
        let mut h = Headers::new();
        h.push(names::ACTIVE_REQUEST_ID_LIST, "1, 2,3");
        assert_eq!(h.active_request_id_list(), Ok(Some(vec![1, 2, 3])));
        h.set(names::ACTIVE_REQUEST_ID_LIST, "1,,2");
        assert!(h.active_request_id_list().is_err());
        h.set(names::ACTIVE_REQUEST_ID_LIST, "4294967296");
        assert!(h.active_request_id_list().is_err());
        assert_eq!(format_request_id_list(&[7, 8]), "7,8");
    }

    #[test]
    fn speech_marker_forms() {
        let m = SpeechMarker::parse("timestamp=857206027059;here").unwrap();
        assert_eq!(m.timestamp, 857206027059);
        assert_eq!(m.name.as_deref(), Some("here"));
        assert_eq!(m.to_string(), "timestamp=857206027059;here");
        let bare = SpeechMarker::parse("timestamp=1").unwrap();
        assert_eq!(bare.name, None);
        assert!(SpeechMarker::parse("time=1").is_err());
        assert!(SpeechMarker::parse("timestamp=x").is_err());
    }

    #[test]
    fn speech_lengths() {
        let mut h = Headers::new();
        h.push(names::JUMP_SIZE, "-3 Second");
        assert_eq!(
            h.jump_size(),
            Ok(Some(SpeechLength::Numeric {
                value: -3,
                unit: SpeechUnit::Second
            }))
        );
        h.set(names::JUMP_SIZE, "here Tag");
        assert_eq!(h.jump_size(), Ok(Some(SpeechLength::Tag("here".into()))));
        h.set(names::JUMP_SIZE, "3 Second");
        assert!(h.jump_size().is_err(), "jump size needs a sign");
        h.push(names::SPEAK_LENGTH, "10 second");
        assert_eq!(
            h.speak_length(),
            Ok(Some(SpeechLength::Numeric {
                value: 10,
                unit: SpeechUnit::Second
            }))
        );
        h.set(names::SPEAK_LENGTH, "-10 Second");
        assert!(h.speak_length().is_err());
        assert_eq!(
            SpeechLength::Numeric {
                value: 5,
                unit: SpeechUnit::Word
            }
            .to_string(),
            "+5 Word"
        );
    }

    #[test]
    fn prosody_values() {
        let read = |fields: &[(&str, &str)]| {
            let mut h = Headers::new();
            for (n, v) in fields {
                h.push(n, *v);
            }
            Prosody::from_headers(&h)
        };
        assert_eq!(
            read(&[
                ("Prosody-Rate", "fast"),
                ("prosody-volume", "X-SOFT"),
                ("Prosody-Pitch", "+10%"),
                ("Voice-Name", "x"),
            ]),
            (
                Prosody {
                    rate: Some(150),
                    volume: Some(25),
                    pitch: Some(110)
                },
                vec![]
            )
        );
        let rate = |v| read(&[("Prosody-Rate", v)]).0.rate;
        assert_eq!(rate("1.5"), Some(150));
        assert_eq!(rate("-20%"), Some(80));
        assert_eq!(rate("80%"), Some(80));
        assert_eq!(rate("100"), Some(400), "clamped");
        assert_eq!(rate("default"), Some(100));
        let volume = |v| read(&[("Prosody-Volume", v)]).0.volume;
        assert_eq!(volume("silent"), Some(0));
        assert_eq!(volume("42"), Some(42));
        assert_eq!(volume("-10"), Some(90));
        assert_eq!(volume("+6dB"), Some(200));
        assert_eq!(volume("-6dB"), Some(50));
        assert_eq!(volume("101"), None);
        let (p, unread) = read(&[
            ("Prosody-Pitch", "120Hz"),
            ("Prosody-Contour", "(0%,+20Hz)"),
            ("Prosody-Rate", "1..5"),
            ("Prosody-Volume", "loud"),
        ]);
        assert_eq!(
            p,
            Prosody {
                volume: Some(150),
                ..Prosody::default()
            }
        );
        assert_eq!(unread, ["Prosody-Pitch", "Prosody-Contour", "Prosody-Rate"]);
        let base = Prosody {
            rate: Some(50),
            volume: Some(50),
            pitch: None,
        };
        assert_eq!(
            base.overlaid(Prosody {
                volume: Some(0),
                ..Prosody::default()
            }),
            Prosody {
                rate: Some(50),
                volume: Some(0),
                pitch: None
            }
        );
        assert!(Prosody::default().is_empty() && !base.is_empty());
    }

    #[test]
    fn quoting_round_trips() {
        let q = quote("file \"a.wav\" not found\\");
        assert_eq!(q, "\"file \\\"a.wav\\\" not found\\\\\"");
        assert_eq!(unquote(&q), "file \"a.wav\" not found\\");
        assert_eq!(unquote("bare"), "bare");
    }

    #[test]
    fn booleans_and_timeouts() {
        let mut h = Headers::new();
        h.push(names::KILL_ON_BARGE_IN, "FALSE");
        h.push(names::FETCH_TIMEOUT, "2500");
        h.push(names::SPEAK_RESTART, "yes");
        assert_eq!(h.kill_on_barge_in(), Ok(Some(false)));
        assert_eq!(h.fetch_timeout(), Ok(Some(Duration::from_millis(2500))));
        assert!(h.speak_restart().is_err());
        assert!(is_settable_synth_param("prosody-rate"));
        assert!(is_settable_synth_param("Voice-Name"));
        assert!(!is_settable_synth_param("Completion-Cause"));
    }
}
