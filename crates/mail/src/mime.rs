//! Audio attachments and voicemail header fields of an email message.
//!
//! Parsing is mail-parser's job; this module walks its part tree to number parts the way
//! IMAP does (RFC 3501 §6.4.5: `1`, `2`, `1.2`, parts of an attached message below its
//! own number), picks the parts that carry audio, and reads the fields a voicemail reader
//! shows. The bytes returned are transfer-decoded (base64, quoted-printable) but never
//! audio-decoded: that is `imss-media`'s job.

use std::collections::BTreeMap;

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{Encoding, Message, MessageParser, MessagePart, MimeHeaders, PartType};

use crate::MailError;

/// Content types that carry audio whatever their file name.
const AUDIO_TYPES: &[&str] = &[
    "audio/wav",
    "audio/x-wav",
    "audio/x-wave",
    "audio/wave",
    "audio/vnd.wave",
    "audio/mpeg",
    "audio/basic",
    "audio/gsm",
    "audio/x-gsm",
];

/// File name extensions that mark audio in a generic (`application/octet-stream`,
/// other `audio/*`, or untyped) part.
const AUDIO_EXTENSIONS: &[&str] = &["wav", "gsm", "mp3", "au", "ul", "al"];

/// The header prefix Asterisk's voicemail (`app_voicemail`) writes its fields with.
const ASTERISK_PREFIX: &str = "X-Asterisk-VM-";

/// One audio attachment, transfer-decoded.
#[derive(Clone, PartialEq, Eq)]
pub struct AudioPart {
    /// IMAP part number, e.g. `2` or `1.2`: usable as `;SECTION=` in an IMAP URL.
    pub section: String,
    /// Lower-case `type/subtype` as declared, without parameters; `application/octet-stream`
    /// for an untyped part.
    pub content_type: String,
    /// File name from Content-Disposition `filename` or Content-Type `name`.
    pub file_name: Option<String>,
    /// The part's bytes after base64 or quoted-printable decoding.
    pub data: Vec<u8>,
}

impl std::fmt::Debug for AudioPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioPart")
            .field("section", &self.section)
            .field("content_type", &self.content_type)
            .field("file_name", &self.file_name)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// The header fields a voicemail reader announces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageInfo {
    /// Display name of the first From address.
    pub from_name: Option<String>,
    /// Address of the first From address.
    pub from_address: Option<String>,
    /// Date header in RFC 3339 form.
    pub date: Option<String>,
    /// Date header as seconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// Subject, RFC 2047-decoded.
    pub subject: Option<String>,
    /// `X-Asterisk-VM-*` fields keyed by the name after the prefix as written
    /// (`CallerID`, `Duration`, `Orig-date`, `Message-Num`, …).
    pub asterisk: BTreeMap<String, String>,
}

impl MessageInfo {
    /// An `X-Asterisk-VM-*` field by its name after the prefix, ignoring case.
    pub fn asterisk_field(&self, name: &str) -> Option<&str> {
        self.asterisk
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The caller as Asterisk recorded it (`X-Asterisk-VM-CallerID`).
    pub fn caller_id(&self) -> Option<&str> {
        self.asterisk_field("CallerID")
    }

    /// The recording's length in seconds (`X-Asterisk-VM-Duration`).
    pub fn duration_secs(&self) -> Option<u32> {
        self.asterisk_field("Duration")
            .and_then(|d| d.trim().parse().ok())
    }
}

/// A message's audio parts and header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedMessage {
    /// Header fields of the (top-level) message.
    pub info: MessageInfo,
    /// Audio parts in message order; never empty.
    pub parts: Vec<AudioPart>,
}

/// Transfer encoding of a body part (RFC 2045 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    /// 7bit, 8bit or binary: the bytes as they are.
    Identity,
    /// Base64.
    Base64,
    /// Quoted-printable.
    QuotedPrintable,
}

impl TransferEncoding {
    /// From a Content-Transfer-Encoding value; unknown values are taken as identity.
    pub fn from_header(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()) {
            Some(v) if v == "base64" => TransferEncoding::Base64,
            Some(v) if v == "quoted-printable" => TransferEncoding::QuotedPrintable,
            _ => TransferEncoding::Identity,
        }
    }
}

/// Whether a part with this content type and file name carries audio.
///
/// `content_type` is `type/subtype` (any case, parameters allowed); `None` means the part
/// declared no type.
pub fn is_audio(content_type: Option<&str>, file_name: Option<&str>) -> bool {
    let ct = content_type.map(normalise_type);
    if let Some(ct) = &ct
        && AUDIO_TYPES.contains(&ct.as_str())
    {
        return true;
    }
    let generic = match &ct {
        None => true,
        Some(ct) => ct == "application/octet-stream" || ct.starts_with("audio/"),
    };
    generic && file_name.is_some_and(has_audio_extension)
}

fn has_audio_extension(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && AUDIO_EXTENSIONS.iter().any(|a| ext.eq_ignore_ascii_case(a))
    })
}

fn normalise_type(ct: &str) -> String {
    ct.split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn parser() -> MessageParser {
    MessageParser::new()
        .with_minimal_headers()
        .default_header_text()
}

/// Parses a whole message and returns its audio parts and header fields.
///
/// `max_bytes` bounds the raw message ([`MailError::TooLarge`] above it); `source` names
/// the message in errors (its URI).
pub fn parse_message(
    raw: &[u8],
    max_bytes: u64,
    source: &str,
) -> Result<FetchedMessage, MailError> {
    let size = raw.len() as u64;
    if size > max_bytes {
        return Err(MailError::TooLarge {
            uri: source.to_owned(),
            size,
            limit: max_bytes,
        });
    }
    let message = parser().parse(raw).ok_or_else(|| MailError::Protocol {
        detail: format!("{source}: not an email message"),
    })?;
    let info = message_info_of(&message);
    let mut parts = Vec::new();
    collect_message(&message, "", &mut parts);
    if parts.is_empty() {
        return Err(MailError::NoAudio {
            uri: source.to_owned(),
        });
    }
    Ok(FetchedMessage { info, parts })
}

/// Reads the voicemail header fields from a message or its header alone.
pub fn message_info(header_or_message: &[u8]) -> MessageInfo {
    match parser().parse_headers(header_or_message) {
        Some(message) => message_info_of(&message),
        None => MessageInfo::default(),
    }
}

/// Content type, file name and transfer encoding read from a part's MIME header
/// (IMAP `BODY[n.MIME]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartHeader {
    /// Lower-case `type/subtype`, or `None` if the part declares none.
    pub content_type: Option<String>,
    /// File name from Content-Disposition or Content-Type.
    pub file_name: Option<String>,
    /// Content-Transfer-Encoding.
    pub encoding: TransferEncoding,
}

impl PartHeader {
    /// Parses a MIME part header (the lines up to and including the blank line).
    pub fn parse(mime_header: &[u8]) -> PartHeader {
        let mut text = mime_header.to_vec();
        if !text.ends_with(b"\r\n\r\n") && !text.ends_with(b"\n\n") {
            text.extend_from_slice(b"\r\n\r\n");
        }
        match parser().parse_headers(&text[..]) {
            Some(message) => {
                let root = message.root_part();
                PartHeader {
                    content_type: root.content_type().map(type_of),
                    file_name: root.attachment_name().map(str::to_owned),
                    encoding: TransferEncoding::from_header(root.content_transfer_encoding()),
                }
            }
            None => PartHeader {
                content_type: None,
                file_name: None,
                encoding: TransferEncoding::Identity,
            },
        }
    }

    /// Whether this part carries audio (see [`is_audio`]).
    pub fn is_audio(&self) -> bool {
        is_audio(self.content_type.as_deref(), self.file_name.as_deref())
    }

    /// The declared type, `application/octet-stream` when there is none.
    pub fn content_type_or_default(&self) -> String {
        self.content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".to_owned())
    }
}

/// Transfer-decodes a whole part body.
pub fn decode_body(encoding: TransferEncoding, body: &[u8]) -> Result<Vec<u8>, MailError> {
    let mut decoder = TransferDecoder::new(encoding);
    let mut out = decoder.push(body)?;
    out.extend(decoder.finish()?);
    Ok(out)
}

fn type_of(ct: &mail_parser::ContentType<'_>) -> String {
    match ct.subtype() {
        Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
        None => ct.ctype().to_ascii_lowercase(),
    }
}

fn message_info_of(message: &Message<'_>) -> MessageInfo {
    let from = message.from().and_then(|a| a.first());
    let mut asterisk = BTreeMap::new();
    for header in message.headers() {
        let name = header.name();
        if name.len() > ASTERISK_PREFIX.len()
            && name.is_char_boundary(ASTERISK_PREFIX.len())
            && name[..ASTERISK_PREFIX.len()].eq_ignore_ascii_case(ASTERISK_PREFIX)
        {
            let value = header.value().as_text().unwrap_or("").trim().to_owned();
            asterisk.insert(name[ASTERISK_PREFIX.len()..].to_owned(), value);
        }
    }
    MessageInfo {
        from_name: from
            .and_then(|a| a.name.as_deref())
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
        from_address: from.and_then(|a| a.address.as_deref()).map(str::to_owned),
        date: message.date().map(|d| d.to_rfc3339()),
        timestamp: message.date().map(|d| d.to_timestamp()),
        subject: message.subject().map(str::to_owned),
        asterisk,
    }
}

/// Visits the parts of `message`, numbering them below `prefix` (empty at top level).
fn collect_message(message: &Message<'_>, prefix: &str, out: &mut Vec<AudioPart>) {
    let Some(root) = message.parts.first() else {
        return;
    };
    match &root.body {
        PartType::Multipart(children) => {
            for (i, id) in children.iter().enumerate() {
                let section = join_section(prefix, i + 1);
                collect_part(message, *id, &section, out);
            }
        }
        _ => collect_part(message, 0, &join_section(prefix, 1), out),
    }
}

fn collect_part(message: &Message<'_>, id: u32, section: &str, out: &mut Vec<AudioPart>) {
    let Some(part) = message.parts.get(id as usize) else {
        return;
    };
    match &part.body {
        PartType::Multipart(children) => {
            for (i, child) in children.iter().enumerate() {
                collect_part(message, *child, &join_section(section, i + 1), out);
            }
        }
        PartType::Message(nested) => collect_message(nested, section, out),
        _ => {
            let content_type = part.content_type().map(type_of);
            let file_name = part.attachment_name().map(str::to_owned);
            if !is_audio(content_type.as_deref(), file_name.as_deref()) {
                return;
            }
            if let Some(data) = part_bytes(message, part) {
                out.push(AudioPart {
                    section: section.to_owned(),
                    content_type: content_type
                        .unwrap_or_else(|| "application/octet-stream".to_owned()),
                    file_name,
                    data,
                });
            }
        }
    }
}

/// The transfer-decoded bytes of a leaf part. mail-parser keeps binary parts as bytes;
/// an untyped part is taken for text by MIME's defaults, so its bytes are decoded again
/// from the raw message to undo the text conversion.
fn part_bytes(message: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    match &part.body {
        PartType::Binary(b) | PartType::InlineBinary(b) => Some(b.to_vec()),
        PartType::Text(_) | PartType::Html(_) => {
            let raw = message
                .raw_message
                .get(part.offset_body as usize..part.offset_end as usize)?;
            match part.encoding {
                Encoding::Base64 => base64_decode(raw),
                Encoding::QuotedPrintable => quoted_printable_decode(raw),
                Encoding::None => Some(raw.to_vec()),
            }
        }
        PartType::Message(_) | PartType::Multipart(_) => None,
    }
}

fn join_section(prefix: &str, n: usize) -> String {
    if prefix.is_empty() {
        n.to_string()
    } else {
        format!("{prefix}.{n}")
    }
}

/// Transfer-decodes a part body that arrives in pieces of any size: incomplete base64
/// groups and quoted-printable lines are carried over to the next piece.
#[derive(Debug)]
pub struct TransferDecoder {
    encoding: TransferEncoding,
    /// Base64: sextets of the group in progress.
    group: [u8; 4],
    group_len: usize,
    /// Base64: padding seen; what follows is ignored.
    padded: bool,
    /// Quoted-printable: the incomplete last line.
    carry: Vec<u8>,
}

/// Quoted-printable lines are at most 76 characters (RFC 2045 §6.7); a longer run without
/// a line break is decoded up to a safe point rather than buffered without bound.
const QP_MAX_CARRY: usize = 8 * 1024;

impl TransferDecoder {
    /// A decoder for the given encoding.
    pub fn new(encoding: TransferEncoding) -> Self {
        TransferDecoder {
            encoding,
            group: [0; 4],
            group_len: 0,
            padded: false,
            carry: Vec::new(),
        }
    }

    /// Decodes the next piece; returns the bytes complete so far.
    pub fn push(&mut self, input: &[u8]) -> Result<Vec<u8>, MailError> {
        match self.encoding {
            TransferEncoding::Identity => Ok(input.to_vec()),
            TransferEncoding::Base64 => self.push_base64(input),
            TransferEncoding::QuotedPrintable => self.push_qp(input),
        }
    }

    /// Ends the body; returns what was still held back.
    pub fn finish(&mut self) -> Result<Vec<u8>, MailError> {
        match self.encoding {
            TransferEncoding::Identity => Ok(Vec::new()),
            TransferEncoding::Base64 => {
                let mut out = Vec::new();
                // A missing final padding is tolerated, as mail readers do.
                self.flush_group(&mut out);
                Ok(out)
            }
            TransferEncoding::QuotedPrintable => {
                let rest = std::mem::take(&mut self.carry);
                decode_qp(&rest)
            }
        }
    }

    fn push_base64(&mut self, input: &[u8]) -> Result<Vec<u8>, MailError> {
        let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
        for &b in input {
            if self.padded {
                continue;
            }
            let sextet = match b {
                b'A'..=b'Z' => b - b'A',
                b'a'..=b'z' => b - b'a' + 26,
                b'0'..=b'9' => b - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' => {
                    self.flush_group(&mut out);
                    self.padded = true;
                    continue;
                }
                b' ' | b'\t' | b'\r' | b'\n' => continue,
                other => {
                    return Err(MailError::Protocol {
                        detail: format!("invalid byte 0x{other:02x} in a base64 body"),
                    });
                }
            };
            self.group[self.group_len] = sextet;
            self.group_len += 1;
            if self.group_len == 4 {
                let g = self.group;
                out.push((g[0] << 2) | (g[1] >> 4));
                out.push((g[1] << 4) | (g[2] >> 2));
                out.push((g[2] << 6) | g[3]);
                self.group_len = 0;
            }
        }
        Ok(out)
    }

    fn flush_group(&mut self, out: &mut Vec<u8>) {
        let g = self.group;
        match self.group_len {
            2 => out.push((g[0] << 2) | (g[1] >> 4)),
            3 => {
                out.push((g[0] << 2) | (g[1] >> 4));
                out.push((g[1] << 4) | (g[2] >> 2));
            }
            _ => {}
        }
        self.group_len = 0;
    }

    fn push_qp(&mut self, input: &[u8]) -> Result<Vec<u8>, MailError> {
        self.carry.extend_from_slice(input);
        let cut = match self.carry.iter().rposition(|&b| b == b'\n') {
            Some(i) => i + 1,
            None if self.carry.len() > QP_MAX_CARRY => {
                // Never split an `=XX` escape or a soft break.
                let tail = &self.carry[self.carry.len() - 2..];
                let keep = tail.iter().position(|&b| b == b'=').map_or(0, |p| 2 - p);
                self.carry.len() - keep
            }
            None => return Ok(Vec::new()),
        };
        let ready: Vec<u8> = self.carry.drain(..cut).collect();
        decode_qp(&ready)
    }
}

fn decode_qp(bytes: &[u8]) -> Result<Vec<u8>, MailError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    quoted_printable_decode(bytes).ok_or_else(|| MailError::Protocol {
        detail: "invalid quoted-printable body".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for c in data.chunks(3) {
            let n = (c[0] as u32) << 16
                | (*c.get(1).unwrap_or(&0) as u32) << 8
                | *c.get(2).unwrap_or(&0) as u32;
            for i in 0..4 {
                if i <= c.len() {
                    s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    s.push('=');
                }
            }
        }
        let mut wrapped = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && i % 76 == 0 {
                wrapped.push_str("\r\n");
            }
            wrapped.push(ch);
        }
        wrapped
    }

    fn voicemail(audio: &[u8]) -> Vec<u8> {
        format!(
            "Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n\
From: \"Asterisk PBX\" <asterisk@pbx.example>\r\n\
To: \"John\" <john@example.com>\r\n\
Subject: [PBX]: New message 1 in mailbox 1234\r\n\
X-Asterisk-VM-Message-Num: 1\r\n\
X-Asterisk-VM-CallerID: \"Alice\" <5551234>\r\n\
X-Asterisk-VM-Duration: 7\r\n\
X-Asterisk-VM-Orig-date: Monday, January 01, 2024 at 12:00:00 PM\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"----voicemail_1\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
\r\n\
------voicemail_1\r\n\
Content-Type: text/plain; charset=ISO-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Dear John, you have a new message.\r\n\
\r\n\
------voicemail_1\r\n\
Content-Type: audio/x-wav; name=\"msg0001.wav\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Description: Voicemail sound attachment.\r\n\
Content-Disposition: attachment; filename=\"msg0001.wav\"\r\n\
\r\n\
{}\r\n\
\r\n\
------voicemail_1--\r\n",
            b64(audio)
        )
        .into_bytes()
    }

    #[test]
    fn asterisk_voicemail() {
        let audio: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
        let m = parse_message(&voicemail(&audio), 1 << 20, "test").expect("parsed");
        assert_eq!(m.parts.len(), 1);
        let p = &m.parts[0];
        assert_eq!(p.section, "2");
        assert_eq!(p.content_type, "audio/x-wav");
        assert_eq!(p.file_name.as_deref(), Some("msg0001.wav"));
        assert_eq!(p.data, audio);
        assert_eq!(m.info.from_name.as_deref(), Some("Asterisk PBX"));
        assert_eq!(m.info.from_address.as_deref(), Some("asterisk@pbx.example"));
        assert_eq!(
            m.info.subject.as_deref(),
            Some("[PBX]: New message 1 in mailbox 1234")
        );
        assert_eq!(m.info.timestamp, Some(1_704_110_400));
        assert_eq!(m.info.caller_id(), Some("\"Alice\" <5551234>"));
        assert_eq!(m.info.duration_secs(), Some(7));
        assert_eq!(m.info.asterisk_field("message-num"), Some("1"));
        assert_eq!(
            m.info.asterisk.get("Orig-date").map(String::as_str),
            Some("Monday, January 01, 2024 at 12:00:00 PM")
        );
    }

    #[test]
    fn too_large_and_no_audio() {
        let msg = voicemail(b"RIFF");
        assert!(matches!(
            parse_message(&msg, 10, "u"),
            Err(MailError::TooLarge { limit: 10, .. })
        ));
        let text = b"From: a@b\r\nSubject: hi\r\n\r\nhello\r\n";
        assert!(matches!(
            parse_message(text, 1000, "u"),
            Err(MailError::NoAudio { .. })
        ));
    }

    #[test]
    fn nested_sections_untyped_and_quoted_printable() {
        let msg = b"From: a@b\r\n\
Content-Type: multipart/mixed; boundary=outer\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain\r\n\
\r\n\
text\r\n\
--inner\r\n\
Content-Type: application/octet-stream; name=\"a.GSM\"\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
ab=3Dc=\r\n\
d\r\n\
--inner--\r\n\
--outer\r\n\
Content-Disposition: attachment; filename=\"b.au\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAEC/w==\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"c.wav.pdf\"\r\n\
\r\n\
%PDF\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: c@d\r\n\
Content-Type: audio/basic\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AQID\r\n\
--outer--\r\n";
        let m = parse_message(msg, 1 << 20, "u").expect("parsed");
        let got: Vec<(&str, &str, Option<&str>, &[u8])> = m
            .parts
            .iter()
            .map(|p| {
                (
                    p.section.as_str(),
                    p.content_type.as_str(),
                    p.file_name.as_deref(),
                    p.data.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "1.2",
                    "application/octet-stream",
                    Some("a.GSM"),
                    &b"ab=cd"[..]
                ),
                (
                    "2",
                    "application/octet-stream",
                    Some("b.au"),
                    &[0, 1, 2, 255][..]
                ),
                ("4.1", "audio/basic", None, &[1, 2, 3][..]),
            ]
        );
    }

    #[test]
    fn classification() {
        assert!(is_audio(Some("audio/x-wav"), None));
        assert!(is_audio(Some("Audio/MPEG; x=y"), None));
        assert!(is_audio(None, Some("msg0001.WAV")));
        assert!(is_audio(Some("application/octet-stream"), Some("x.ul")));
        assert!(is_audio(Some("audio/x-unknown"), Some("x.mp3")));
        assert!(!is_audio(Some("application/octet-stream"), Some("x.pdf")));
        assert!(!is_audio(Some("text/plain"), Some("x.wav")));
        assert!(!is_audio(None, Some(".wav")));
        assert!(!is_audio(None, None));
    }

    #[test]
    fn base64_in_any_chunking_matches_whole_decoding() {
        let data: Vec<u8> = (0..2000u32).map(|i| (i * 7 + i / 3) as u8).collect();
        let encoded = b64(&data);
        for chunk in [1usize, 2, 3, 5, 77, 78, 1000] {
            let mut d = TransferDecoder::new(TransferEncoding::Base64);
            let mut out = Vec::new();
            for piece in encoded.as_bytes().chunks(chunk) {
                out.extend(d.push(piece).expect("valid"));
            }
            out.extend(d.finish().expect("valid"));
            assert_eq!(out, data, "chunk size {chunk}");
        }
    }

    #[test]
    fn quoted_printable_in_any_chunking_matches_whole_decoding() {
        let body = b"caf=C3=A9 =\r\nau lait=3D\r\nline two\r\n";
        let whole = decode_body(TransferEncoding::QuotedPrintable, body).expect("valid");
        assert_eq!(whole, "café au lait=\r\nline two\r\n".as_bytes());
        for chunk in 1..body.len() {
            let mut d = TransferDecoder::new(TransferEncoding::QuotedPrintable);
            let mut out = Vec::new();
            for piece in body.chunks(chunk) {
                out.extend(d.push(piece).expect("valid"));
            }
            out.extend(d.finish().expect("valid"));
            assert_eq!(out, whole, "chunk size {chunk}");
        }
    }

    #[test]
    fn part_header() {
        let h = PartHeader::parse(
            b"Content-Type: audio/x-wav; name=\"msg0001.wav\"\r\nContent-Transfer-Encoding: BASE64\r\n\r\n",
        );
        assert_eq!(h.content_type.as_deref(), Some("audio/x-wav"));
        assert_eq!(h.file_name.as_deref(), Some("msg0001.wav"));
        assert_eq!(h.encoding, TransferEncoding::Base64);
        assert!(h.is_audio());
    }
}
