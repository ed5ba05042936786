//! The IMAP4rev1 client: settings, a pooled client that fetches voicemail audio by RFC
//! 5092 URL, a streaming part fetch, and a step-by-step connection test.
//!
//! Every fetch opens its mailbox read-only (EXAMINE) and asks for `BODY.PEEK[…]`, so
//! playing a voicemail never marks it seen. Credentials are sent only to the configured
//! server: a URL naming another host is refused.

mod connect;
mod pool;
mod structure;
mod utf7;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_imap::error::Error as ImapError;
use async_imap::imap_proto::{AttributeValue, MessageSection, Response, SectionPath, Status};
use tokio::sync::mpsc;

use crate::MailError;
use crate::mime::{
    AudioPart, FetchedMessage, MessageInfo, PartHeader, TransferDecoder, TransferEncoding,
    decode_body, message_info, parse_message,
};
use crate::uri::{ImapUrl, section_numbers};
use connect::{Credentials, ImapSession, imap_error, io_error, server_text};
pub use pool::PoolStats;
use pool::{Lease, Pool};

/// Encoded bytes asked for per partial fetch when streaming a part.
pub const STREAM_CHUNK_BYTES: u32 = 64 * 1024;

/// Decoded chunks buffered between the streaming fetch and its reader.
const STREAM_CHANNEL_DEPTH: usize = 2;

/// How the connection to the IMAP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// TLS from the first byte (IMAPS, usually port 993).
    #[default]
    Implicit,
    /// Plain connection upgraded with STARTTLS before login (usually port 143).
    StartTls,
    /// No TLS: only for a server on the same host or a trusted network.
    None,
}

impl FromStr for TlsMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "implicit" => Ok(TlsMode::Implicit),
            "starttls" => Ok(TlsMode::StartTls),
            "none" => Ok(TlsMode::None),
            other => Err(format!(
                "unknown TLS mode {other:?}: expected implicit, starttls or none"
            )),
        }
    }
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Implicit => "implicit",
            TlsMode::StartTls => "starttls",
            TlsMode::None => "none",
        })
    }
}

/// How the client authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMethod {
    /// The IMAP LOGIN command.
    #[default]
    Login,
    /// AUTHENTICATE PLAIN (RFC 4616).
    Plain,
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "login" => Ok(AuthMethod::Login),
            "plain" => Ok(AuthMethod::Plain),
            other => Err(format!(
                "unknown authentication method {other:?}: expected login or plain"
            )),
        }
    }
}

/// Where the IMAP server is and how to log in to it.
#[derive(Clone, PartialEq, Eq)]
pub struct ImapSettings {
    /// Server host name or address; URLs must name this host.
    pub host: String,
    /// Server port (993 for implicit TLS, 143 otherwise).
    pub port: u16,
    /// Transport protection.
    pub tls: TlsMode,
    /// Check the server certificate (chain and name). Off only for testing.
    pub verify_certificates: bool,
    /// PEM file with the private CA(s) to trust instead of Mozilla's roots.
    pub ca_file: Option<PathBuf>,
    /// LOGIN or AUTHENTICATE PLAIN.
    pub auth: AuthMethod,
    /// The service account used for URLs that name no user.
    pub user: String,
    /// The service account's password. Never printed.
    pub password: String,
    /// Passwords of users that URLs may name (`imap://USER@host/…`). Never printed.
    pub users: BTreeMap<String, String>,
    /// Bound on name resolution, TCP connection and TLS handshake, each.
    pub connect_timeout: Duration,
    /// Bound on any read or write that makes no progress.
    pub read_timeout: Duration,
    /// Most connections open at once (in use or idle).
    pub pool_size: usize,
    /// A pooled session idle longer than this is checked with NOOP before reuse.
    pub idle_keepalive: Duration,
    /// A pooled session idle longer than this is closed instead of reused.
    pub max_idle: Duration,
}

impl Default for ImapSettings {
    fn default() -> Self {
        ImapSettings {
            host: String::new(),
            port: 993,
            tls: TlsMode::Implicit,
            verify_certificates: true,
            ca_file: None,
            auth: AuthMethod::Login,
            user: String::new(),
            password: String::new(),
            users: BTreeMap::new(),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            pool_size: 8,
            idle_keepalive: Duration::from_secs(60),
            max_idle: Duration::from_secs(600),
        }
    }
}

impl fmt::Debug for ImapSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = |s: &str| if s.is_empty() { "<unset>" } else { "<set>" };
        let users: BTreeMap<&str, &str> = self
            .users
            .iter()
            .map(|(u, p)| (u.as_str(), secret(p)))
            .collect();
        f.debug_struct("ImapSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("verify_certificates", &self.verify_certificates)
            .field("ca_file", &self.ca_file)
            .field("auth", &self.auth)
            .field("user", &self.user)
            .field("password", &secret(&self.password))
            .field("users", &users)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("pool_size", &self.pool_size)
            .field("idle_keepalive", &self.idle_keepalive)
            .field("max_idle", &self.max_idle)
            .finish()
    }
}

impl ImapSettings {
    /// Checks values that would make every fetch fail.
    pub fn validate(&self) -> Result<(), String> {
        if self.host.trim().is_empty() {
            return Err("imap_host is empty".to_owned());
        }
        if self.port == 0 {
            return Err("imap_port must be from 1 to 65535".to_owned());
        }
        if self.pool_size == 0 {
            return Err("the IMAP pool size must be at least 1".to_owned());
        }
        if self.connect_timeout.is_zero() || self.read_timeout.is_zero() {
            return Err("IMAP timeouts must be longer than zero".to_owned());
        }
        Ok(())
    }

    fn credentials_for(&self, url: &ImapUrl) -> Result<Credentials, MailError> {
        let (user, password) = match &url.user {
            None => (self.user.clone(), self.password.clone()),
            Some(u) => match self.users.get(u) {
                Some(p) => (u.clone(), p.clone()),
                None if *u == self.user => (self.user.clone(), self.password.clone()),
                None => {
                    return Err(MailError::Auth {
                        user: u.clone(),
                        detail: "no password is configured for this user".to_owned(),
                    });
                }
            },
        };
        if user.is_empty() {
            return Err(MailError::Auth {
                user: String::new(),
                detail: "no IMAP account is configured".to_owned(),
            });
        }
        let method = match url.auth.as_deref() {
            None | Some("*") => self.auth,
            Some(m) if m.eq_ignore_ascii_case("PLAIN") => AuthMethod::Plain,
            Some(m) if m.eq_ignore_ascii_case("LOGIN") => AuthMethod::Login,
            Some(m) => {
                return Err(MailError::Auth {
                    user,
                    detail: format!("authentication mechanism {m} is not supported"),
                });
            }
        };
        Ok(Credentials {
            user,
            password,
            method,
        })
    }

    fn check_server(&self, url: &ImapUrl) -> Result<(), MailError> {
        let configured = self.host.trim_start_matches('[').trim_end_matches(']');
        let same_host = url.host.eq_ignore_ascii_case(configured);
        let same_port = url.port.is_none_or(|p| p == self.port);
        if same_host && same_port {
            Ok(())
        } else {
            Err(MailError::ServerNotConfigured {
                uri: url.to_string(),
                host: match url.port {
                    Some(p) => format!("{}:{p}", url.host),
                    None => url.host.clone(),
                },
            })
        }
    }
}

/// What a streamed part is, learnt before its bytes are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    /// IMAP part number.
    pub section: String,
    /// Lower-case `type/subtype`.
    pub content_type: String,
    /// File name, if the part has one.
    pub file_name: Option<String>,
    /// Transfer encoding being undone.
    pub encoding: TransferEncoding,
    /// Size of the encoded part in bytes (the decoded audio is about 3/4 of it for base64).
    pub encoded_size: u64,
}

/// An IMAP client with a pool of logged-in sessions. Cheap to clone.
#[derive(Clone)]
pub struct ImapClient {
    pool: Arc<Pool>,
}

impl fmt::Debug for ImapClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapClient")
            .field("settings", &self.pool.settings)
            .field("stats", &self.pool.stats())
            .finish()
    }
}

/// Outcome of one fetch attempt and whether its session may be reused.
fn reusable(e: &MailError) -> bool {
    matches!(
        e,
        MailError::NotFound { .. }
            | MailError::Deleted { .. }
            | MailError::UidValidityChanged { .. }
            | MailError::MailboxNotFound { .. }
            | MailError::TooLarge { .. }
            | MailError::NoAudio { .. }
    )
}

impl ImapClient {
    /// A client for these settings; fails if they are invalid or the CA file unreadable.
    /// No connection is made until the first fetch.
    pub fn new(settings: ImapSettings) -> Result<ImapClient, MailError> {
        settings
            .validate()
            .map_err(|detail| MailError::Settings { detail })?;
        let tls = match settings.tls {
            TlsMode::None => None,
            TlsMode::Implicit | TlsMode::StartTls => Some(connect::tls_config(&settings)?),
        };
        Ok(ImapClient {
            pool: Arc::new(Pool::new(settings, tls)),
        })
    }

    /// The settings this client uses.
    pub fn settings(&self) -> &ImapSettings {
        &self.pool.settings
    }

    /// Login and reuse counters.
    pub fn stats(&self) -> PoolStats {
        self.pool.stats()
    }

    /// Decides what to do with a session after an operation failed on it: a reused
    /// session the server had closed is replaced once (returns `None`: try again); a
    /// session that only met a "no such message"-like answer goes back to the pool.
    fn after_failure(&self, lease: Lease, e: MailError, retried: &mut bool) -> Option<MailError> {
        if let MailError::Closed { during } = &e
            && lease.reused
            && !*retried
        {
            tracing::debug!(%during, "pooled IMAP session was closed by the server; reconnecting");
            *retried = true;
            return None;
        }
        if reusable(&e) {
            self.pool.release(lease);
        }
        Some(e)
    }

    /// Fetches the audio of the message (or the single part) an IMAP URL names.
    ///
    /// Without SECTION the whole message is downloaded (`BODY.PEEK[]`) and its audio
    /// parts found; with SECTION only that part (`BODY.PEEK[n]`, its type from
    /// `BODY.PEEK[n.MIME]`). Nothing is downloaded when the message (or part) is larger
    /// than `max_bytes`.
    pub async fn fetch_audio(
        &self,
        url: &ImapUrl,
        max_bytes: u64,
    ) -> Result<FetchedMessage, MailError> {
        let settings = &self.pool.settings;
        settings.check_server(url)?;
        let creds = settings.credentials_for(url)?;
        let mut retried = false;
        loop {
            let mut lease = self.pool.acquire(&creds).await?;
            let session = &mut lease.session;
            let result = match examine(session, settings, url).await {
                Err(e) => Err(e),
                Ok(()) => match url.section_path() {
                    None => fetch_whole(session, settings, url, max_bytes).await,
                    Some(path) => fetch_section(session, settings, url, &path, max_bytes).await,
                },
            };
            match result {
                Ok(message) => {
                    self.pool.release(lease);
                    return Ok(message);
                }
                Err(e) => {
                    if let Some(e) = self.after_failure(lease, e, &mut retried) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// The message's header fields and its audio parts (type, file name, encoding, size)
    /// in message order, without downloading any body: BODYSTRUCTURE, the header and the
    /// candidate parts' MIME headers. With a SECTION in the URL, only that part. A part
    /// larger than `max_bytes` is [`MailError::TooLarge`]; none at all is
    /// [`MailError::NoAudio`].
    pub async fn audio_parts(
        &self,
        url: &ImapUrl,
        max_bytes: u64,
    ) -> Result<(MessageInfo, Vec<PartInfo>), MailError> {
        let settings = &self.pool.settings;
        settings.check_server(url)?;
        let creds = settings.credentials_for(url)?;
        let mut retried = false;
        loop {
            let mut lease = self.pool.acquire(&creds).await?;
            let session = &mut lease.session;
            let result = match examine(session, settings, url).await {
                Err(e) => Err(e),
                Ok(()) => list_audio_parts(session, settings, url, max_bytes).await,
            };
            match result {
                Ok(found) => {
                    self.pool.release(lease);
                    return Ok(found);
                }
                Err(e) => {
                    if let Some(e) = self.after_failure(lease, e, &mut retried) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Streams one part's transfer-decoded bytes while it downloads, in partial fetches
    /// of [`STREAM_CHUNK_BYTES`].
    ///
    /// The part is `section` if given, else the URL's SECTION, else the message's first
    /// audio part. Its type, encoding and size are known (and the size checked against
    /// `max_bytes`) before the first byte is fetched. The receiver yields decoded chunks
    /// in order, then closes; an error is its last item. Dropping the receiver stops the
    /// download after the current chunk.
    pub async fn fetch_part_stream(
        &self,
        url: &ImapUrl,
        section: Option<&str>,
        max_bytes: u64,
    ) -> Result<(PartInfo, mpsc::Receiver<Result<Vec<u8>, MailError>>), MailError> {
        let settings = &self.pool.settings;
        settings.check_server(url)?;
        let requested = match section.or(url.section.as_deref()) {
            Some(s) => Some(
                section_numbers(s)
                    .ok_or_else(|| MailError::Uri(crate::UriError::InvalidSection(s.to_owned())))?,
            ),
            None => None,
        };
        let creds = settings.credentials_for(url)?;
        let mut retried = false;
        let (info, lease) = loop {
            let mut lease = self.pool.acquire(&creds).await?;
            let session = &mut lease.session;
            let result = match examine(session, settings, url).await {
                Err(e) => Err(e),
                Ok(()) => {
                    prepare_stream(session, settings, url, requested.as_deref(), max_bytes).await
                }
            };
            match result {
                Ok(info) => break (info, lease),
                Err(e) => {
                    if let Some(e) = self.after_failure(lease, e, &mut retried) {
                        return Err(e);
                    }
                }
            }
        };
        let (tx, rx) = mpsc::channel(STREAM_CHANNEL_DEPTH);
        let client = self.clone();
        let url = url.clone();
        let task_info = info.clone();
        tokio::spawn(async move {
            client
                .stream_part(lease, url, task_info, max_bytes, tx)
                .await;
        });
        Ok((info, rx))
    }

    async fn stream_part(
        &self,
        mut lease: Lease,
        url: ImapUrl,
        info: PartInfo,
        max_bytes: u64,
        tx: mpsc::Sender<Result<Vec<u8>, MailError>>,
    ) {
        let settings = &self.pool.settings;
        let path = section_numbers(&info.section).unwrap_or_default();
        let mut decoder = TransferDecoder::new(info.encoding);
        let mut offset: u64 = 0;
        loop {
            let query = format!("BODY.PEEK[{}]<{offset}.{STREAM_CHUNK_BYTES}>", info.section);
            let during = format!("streaming {url} at byte {offset}");
            let chunk = match uid_fetch(&mut lease.session, settings, &url, &query, &during).await {
                Ok(mut fetches) => match fetches.pop() {
                    Some(f) => f
                        .sections
                        .into_iter()
                        .find(|(p, mime, _)| *p == path && !*mime)
                        .map(|(_, _, data)| data)
                        .unwrap_or_default(),
                    None => {
                        let _ = tx
                            .send(Err(MailError::NotFound {
                                uri: url.to_string(),
                            }))
                            .await;
                        self.pool.release(lease);
                        return;
                    }
                },
                Err(e) => {
                    tracing::debug!(uri = %url, error = %e, "streaming fetch failed");
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let n = chunk.len() as u64;
            offset += n;
            if offset > max_bytes {
                let _ = tx
                    .send(Err(MailError::TooLarge {
                        uri: url.to_string(),
                        size: offset,
                        limit: max_bytes,
                    }))
                    .await;
                self.pool.release(lease);
                return;
            }
            match decoder.push(&chunk) {
                Ok(decoded) if decoded.is_empty() => {}
                Ok(decoded) => {
                    if tx.send(Ok(decoded)).await.is_err() {
                        // The reader is gone; the session is between commands.
                        self.pool.release(lease);
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    self.pool.release(lease);
                    return;
                }
            }
            if n < u64::from(STREAM_CHUNK_BYTES) {
                break;
            }
        }
        match decoder.finish() {
            Ok(rest) if rest.is_empty() => {}
            Ok(rest) => {
                let _ = tx.send(Ok(rest)).await;
            }
            Err(e) => {
                let _ = tx.send(Err(e)).await;
            }
        }
        self.pool.release(lease);
    }
}

async fn examine(
    session: &mut ImapSession,
    settings: &ImapSettings,
    url: &ImapUrl,
) -> Result<(), MailError> {
    session.get_mut().timed().restart();
    let name = utf7::encode_mailbox(&url.mailbox);
    let mailbox = session.examine(&name).await.map_err(|e| match e {
        ImapError::No(text) | ImapError::Bad(text) => MailError::MailboxNotFound {
            mailbox: url.mailbox.clone(),
            detail: server_text(&text),
        },
        e => imap_error(
            e,
            &format!("opening mailbox {:?}", url.mailbox),
            settings.read_timeout,
        ),
    })?;
    if let (Some(expected), Some(actual)) = (url.uid_validity, mailbox.uid_validity)
        && expected != actual
    {
        return Err(MailError::UidValidityChanged {
            uri: url.to_string(),
            expected,
            actual,
        });
    }
    Ok(())
}

/// What one FETCH response carried, copied out of the response buffer.
#[derive(Debug, Default)]
struct FetchedItems {
    uid: Option<u32>,
    size: Option<u32>,
    deleted: bool,
    /// `BODY[]`.
    body: Option<Vec<u8>>,
    /// `BODY[HEADER]`.
    header: Option<Vec<u8>>,
    /// `BODY[n]`, `BODY[n]<offset>` (false) and `BODY[n.MIME]` (true) by part path.
    sections: Vec<(Vec<u32>, bool, Vec<u8>)>,
    /// BODYSTRUCTURE, as the parts it makes addressable.
    structure: Option<Vec<structure::StructurePart>>,
}

impl FetchedItems {
    fn from_attributes(attrs: &[AttributeValue<'_>]) -> Self {
        let mut items = FetchedItems::default();
        for attr in attrs {
            match attr {
                AttributeValue::Uid(uid) => items.uid = Some(*uid),
                AttributeValue::Rfc822Size(size) => items.size = Some(*size),
                AttributeValue::Flags(flags) => {
                    items.deleted = flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted"));
                }
                AttributeValue::BodySection { section, data, .. } => {
                    let data = data.as_deref().unwrap_or_default().to_vec();
                    match section {
                        None => items.body = Some(data),
                        Some(SectionPath::Full(MessageSection::Header)) => {
                            items.header = Some(data);
                        }
                        Some(SectionPath::Part(path, None)) => {
                            items.sections.push((path.clone(), false, data));
                        }
                        Some(SectionPath::Part(path, Some(MessageSection::Mime))) => {
                            items.sections.push((path.clone(), true, data));
                        }
                        Some(_) => {}
                    }
                }
                AttributeValue::Rfc822(Some(data)) => items.body = Some(data.to_vec()),
                AttributeValue::BodyStructure(bs) => items.structure = Some(structure::parts(bs)),
                _ => {}
            }
        }
        items
    }

    fn section(&self, path: &[u32], mime: bool) -> Option<&[u8]> {
        self.sections
            .iter()
            .find(|(p, m, _)| p == path && *m == mime)
            .map(|(_, _, data)| data.as_slice())
    }
}

/// `UID FETCH`: the responses about the URL's message (the server may add unsolicited
/// ones about others), up to the tagged completion. A connection that ends first is
/// [`MailError::Closed`]; a NO is [`MailError::NotFound`] (the message cannot be
/// fetched, e.g. it was expunged by another session).
async fn uid_fetch(
    session: &mut ImapSession,
    settings: &ImapSettings,
    url: &ImapUrl,
    query: &str,
    during: &str,
) -> Result<Vec<FetchedItems>, MailError> {
    let tag = session
        .run_command(format!("UID FETCH {} {query}", url.uid))
        .await
        .map_err(|e| imap_error(e, during, settings.read_timeout))?;
    let mut out = Vec::new();
    loop {
        let response = session
            .read_response()
            .await
            .map_err(|e| io_error(e, during, settings.read_timeout))?;
        let Some(response) = response else {
            return Err(MailError::Closed {
                during: during.to_owned(),
            });
        };
        match response.parsed() {
            Response::Done {
                tag: done,
                status,
                outcome,
            } if *done == tag => {
                let text = outcome.information.as_deref().unwrap_or("").to_owned();
                return match status {
                    Status::Ok => Ok(out),
                    Status::No => {
                        tracing::debug!(uri = %url, server = %text, "UID FETCH refused");
                        Err(MailError::NotFound {
                            uri: url.to_string(),
                        })
                    }
                    _ => Err(MailError::Protocol {
                        detail: format!("{during}: server answered {status:?} {text}"),
                    }),
                };
            }
            Response::Fetch(_, attrs) => {
                let items = FetchedItems::from_attributes(attrs);
                if items.uid == Some(url.uid) {
                    out.push(items);
                }
            }
            Response::Data {
                status: Status::Bye,
                outcome,
            } => {
                return Err(MailError::Closed {
                    during: format!(
                        "{during} (server said BYE: {})",
                        outcome.information.as_deref().unwrap_or("")
                    ),
                });
            }
            _ => {}
        }
    }
}

/// Checks existence, the \Deleted flag and the size before any body is fetched.
async fn fetch_meta(
    session: &mut ImapSession,
    settings: &ImapSettings,
    url: &ImapUrl,
    with_structure: bool,
) -> Result<FetchedItems, MailError> {
    let query = if with_structure {
        "(UID FLAGS RFC822.SIZE BODYSTRUCTURE)"
    } else {
        "(UID FLAGS RFC822.SIZE)"
    };
    let during = format!("looking up {url}");
    let mut fetches = uid_fetch(session, settings, url, query, &during).await?;
    if fetches.is_empty() {
        return Err(MailError::NotFound {
            uri: url.to_string(),
        });
    }
    let fetch = fetches.swap_remove(0);
    if fetch.deleted {
        return Err(MailError::Deleted {
            uri: url.to_string(),
        });
    }
    Ok(fetch)
}

async fn fetch_whole(
    session: &mut ImapSession,
    settings: &ImapSettings,
    url: &ImapUrl,
    max_bytes: u64,
) -> Result<FetchedMessage, MailError> {
    let meta = fetch_meta(session, settings, url, false).await?;
    let size = u64::from(meta.size.unwrap_or(0));
    if size > max_bytes {
        return Err(MailError::TooLarge {
            uri: url.to_string(),
            size,
            limit: max_bytes,
        });
    }
    let during = format!("downloading {url}");
    let fetches = uid_fetch(session, settings, url, "BODY.PEEK[]", &during).await?;
    let body = fetches
        .first()
        .and_then(|f| f.body.as_deref())
        .ok_or_else(|| MailError::NotFound {
            uri: url.to_string(),
        })?;
    parse_message(body, max_bytes, &url.to_string())
}

async fn fetch_section(
    session: &mut ImapSession,
    settings: &ImapSettings,
    url: &ImapUrl,
    path: &[u32],
    max_bytes: u64,
) -> Result<FetchedMessage, MailError> {
    let section = path
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let meta = fetch_meta(session, settings, url, true).await?;
    let part = meta
        .structure
        .as_deref()
        .and_then(|parts| parts.iter().find(|p| p.section == section))
        .ok_or_else(|| MailError::NotFound {
            uri: url.to_string(),
        })?;
    let leaf = part.leaf.clone().ok_or_else(|| MailError::NoAudio {
        uri: url.to_string(),
    })?;
    if u64::from(leaf.octets) > max_bytes {
        return Err(MailError::TooLarge {
            uri: url.to_string(),
            size: u64::from(leaf.octets),
            limit: max_bytes,
        });
    }
    let query = format!("(BODY.PEEK[HEADER] BODY.PEEK[{section}.MIME] BODY.PEEK[{section}])");
    let during = format!("downloading {url}");
    let fetches = uid_fetch(session, settings, url, &query, &during).await?;
    let fetch = fetches.first().ok_or_else(|| MailError::NotFound {
        uri: url.to_string(),
    })?;
    let mime = fetch.section(path, true).unwrap_or_default();
    let header = PartHeader::parse(mime);
    if !header.is_audio() {
        return Err(MailError::NoAudio {
            uri: url.to_string(),
        });
    }
    let body = fetch.section(path, false).unwrap_or_default();
    let data = decode_body(header.encoding, body)?;
    Ok(FetchedMessage {
        info: message_info(fetch.header.as_deref().unwrap_or_default()),
        parts: vec![AudioPart {
            section,
            content_type: header.content_type_or_default(),
            file_name: header.file_name,
            data,
        }],
    })
}

async fn list_audio_parts(
    session: &mut ImapSession,
    settings: &ImapSettings,
    url: &ImapUrl,
    max_bytes: u64,
) -> Result<(MessageInfo, Vec<PartInfo>), MailError> {
    let meta = fetch_meta(session, settings, url, true).await?;
    let bs = meta.structure.as_ref().ok_or_else(|| MailError::Protocol {
        detail: format!("{url}: the server sent no BODYSTRUCTURE"),
    })?;
    let candidates: Vec<structure::LeafPart> = match url.section.as_deref() {
        Some(section) => bs
            .iter()
            .find(|p| p.section == section)
            .and_then(|p| p.leaf.clone())
            .into_iter()
            .collect(),
        None => structure::audio_candidates(bs),
    };
    let mut query = String::from("(BODY.PEEK[HEADER]");
    for leaf in &candidates {
        query.push_str(&format!(" BODY.PEEK[{}.MIME]", leaf.section));
    }
    query.push(')');
    let during = format!("reading the headers of {url}");
    let fetches = uid_fetch(session, settings, url, &query, &during).await?;
    let fetch = fetches.first().ok_or_else(|| MailError::NotFound {
        uri: url.to_string(),
    })?;
    let info = message_info(fetch.header.as_deref().unwrap_or_default());
    let mut parts = Vec::new();
    for leaf in candidates {
        let path = section_numbers(&leaf.section).unwrap_or_default();
        // The part header decides (see `prepare_stream`).
        let header = PartHeader::parse(fetch.section(&path, true).unwrap_or_default());
        if !header.is_audio() {
            continue;
        }
        if u64::from(leaf.octets) > max_bytes {
            return Err(MailError::TooLarge {
                uri: url.to_string(),
                size: u64::from(leaf.octets),
                limit: max_bytes,
            });
        }
        parts.push(PartInfo {
            section: leaf.section,
            content_type: header.content_type_or_default(),
            file_name: header.file_name,
            encoding: header.encoding,
            encoded_size: u64::from(leaf.octets),
        });
    }
    if parts.is_empty() {
        return Err(MailError::NoAudio {
            uri: url.to_string(),
        });
    }
    Ok((info, parts))
}

async fn prepare_stream(
    session: &mut ImapSession,
    settings: &ImapSettings,
    url: &ImapUrl,
    requested: Option<&[u32]>,
    max_bytes: u64,
) -> Result<PartInfo, MailError> {
    let meta = fetch_meta(session, settings, url, true).await?;
    let no_audio = || MailError::NoAudio {
        uri: url.to_string(),
    };
    let bs = meta.structure.as_ref().ok_or_else(|| MailError::Protocol {
        detail: format!("{url}: the server sent no BODYSTRUCTURE"),
    })?;
    let candidates: Vec<structure::LeafPart> = match requested {
        Some(path) => {
            let section = path
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(".");
            let part =
                bs.iter()
                    .find(|p| p.section == section)
                    .ok_or_else(|| MailError::NotFound {
                        uri: format!("{url} (section {section})"),
                    })?;
            vec![part.leaf.clone().ok_or_else(no_audio)?]
        }
        None => structure::audio_candidates(bs),
    };
    // The part header decides: BODYSTRUCTURE cannot tell a declared text/plain from an
    // untyped part, which MIME's defaults also make text/plain.
    for leaf in candidates {
        let path = section_numbers(&leaf.section).unwrap_or_default();
        let query = format!("BODY.PEEK[{}.MIME]", leaf.section);
        let during = format!("reading the part header of {url}");
        let fetches = uid_fetch(session, settings, url, &query, &during).await?;
        let mime = fetches
            .first()
            .and_then(|f| f.section(&path, true))
            .ok_or_else(|| MailError::NotFound {
                uri: url.to_string(),
            })?;
        let header = PartHeader::parse(mime);
        if !header.is_audio() {
            continue;
        }
        if u64::from(leaf.octets) > max_bytes {
            return Err(MailError::TooLarge {
                uri: url.to_string(),
                size: u64::from(leaf.octets),
                limit: max_bytes,
            });
        }
        return Ok(PartInfo {
            section: leaf.section,
            content_type: header.content_type_or_default(),
            file_name: header.file_name,
            encoding: header.encoding,
            encoded_size: u64::from(leaf.octets),
        });
    }
    Err(no_audio())
}

/// A step of connecting to the IMAP server, as [`test_connection`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionStep {
    /// Resolving the host name.
    Dns,
    /// Opening the TCP connection (and, without TLS, reading the greeting).
    Tcp,
    /// The TLS handshake (implicit or after STARTTLS) and the greeting.
    Tls,
    /// LOGIN or AUTHENTICATE.
    Login,
    /// Opening INBOX read-only.
    Mailbox,
}

impl fmt::Display for ConnectionStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectionStep::Dns => "dns",
            ConnectionStep::Tcp => "tcp",
            ConnectionStep::Tls => "tls",
            ConnectionStep::Login => "login",
            ConnectionStep::Mailbox => "mailbox",
        })
    }
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOutcome {
    /// Which step.
    pub step: ConnectionStep,
    /// Whether it succeeded.
    pub ok: bool,
    /// How long it took.
    pub elapsed: Duration,
    /// What it found, or why it failed.
    pub detail: String,
}

/// The result of [`test_connection`]: the steps tried in order, and the first failure.
#[derive(Debug, Default)]
pub struct ConnectionReport {
    /// Steps tried, in order; the last one failed if any did.
    pub steps: Vec<StepOutcome>,
    /// The step that failed, if any.
    pub failed: Option<ConnectionStep>,
    /// The failure, if any.
    pub error: Option<MailError>,
}

impl ConnectionReport {
    /// Whether every step succeeded.
    pub fn is_ok(&self) -> bool {
        self.failed.is_none()
    }

    fn record<T>(
        &mut self,
        step: ConnectionStep,
        started: Instant,
        result: Result<T, MailError>,
        describe: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        let elapsed = started.elapsed();
        match result {
            Ok(v) => {
                self.steps.push(StepOutcome {
                    step,
                    ok: true,
                    elapsed,
                    detail: describe(&v),
                });
                Some(v)
            }
            Err(e) => {
                self.steps.push(StepOutcome {
                    step,
                    ok: false,
                    elapsed,
                    detail: e.to_string(),
                });
                self.failed = Some(step);
                self.error = Some(e);
                None
            }
        }
    }
}

/// Connects, logs in with the service account and opens INBOX read-only, reporting each
/// step. Network failures are reported, not returned: `Err` only for invalid settings.
pub async fn test_connection(settings: &ImapSettings) -> Result<ConnectionReport, MailError> {
    settings
        .validate()
        .map_err(|detail| MailError::Settings { detail })?;
    let mut report = ConnectionReport::default();

    let t = Instant::now();
    let Some(addrs) = report.record(
        ConnectionStep::Dns,
        t,
        connect::resolve(settings).await,
        |a| {
            a.iter()
                .map(|a| a.ip().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        },
    ) else {
        return Ok(report);
    };

    let t = Instant::now();
    let Some(tcp) = report.record(
        ConnectionStep::Tcp,
        t,
        connect::connect_tcp(settings, &addrs).await,
        |s| match s.peer_addr() {
            Ok(a) => format!("connected to {a}"),
            Err(_) => "connected".to_owned(),
        },
    ) else {
        return Ok(report);
    };

    let (step, what) = match settings.tls {
        TlsMode::None => (ConnectionStep::Tcp, "greeting received (no TLS)"),
        TlsMode::Implicit => (ConnectionStep::Tls, "TLS established, greeting received"),
        TlsMode::StartTls => (
            ConnectionStep::Tls,
            "greeting received, STARTTLS established",
        ),
    };
    let t = Instant::now();
    let established = async {
        let tls = match settings.tls {
            TlsMode::None => None,
            _ => Some(connect::tls_config(settings)?),
        };
        connect::establish(settings, tls.as_ref(), tcp).await
    }
    .await;
    let Some(client) = report.record(step, t, established, |_| what.to_owned()) else {
        return Ok(report);
    };

    let creds = Credentials {
        user: settings.user.clone(),
        password: settings.password.clone(),
        method: settings.auth,
    };
    let t = Instant::now();
    let Some(mut session) = report.record(
        ConnectionStep::Login,
        t,
        connect::login(settings, client, &creds).await,
        |_| format!("logged in as {}", settings.user),
    ) else {
        return Ok(report);
    };

    let t = Instant::now();
    let examined = session.examine("INBOX").await.map_err(|e| match e {
        ImapError::No(text) | ImapError::Bad(text) => MailError::MailboxNotFound {
            mailbox: "INBOX".to_owned(),
            detail: server_text(&text),
        },
        e => imap_error(e, "opening INBOX", settings.read_timeout),
    });
    report.record(ConnectionStep::Mailbox, t, examined, |m| {
        format!("INBOX has {} messages", m.exists)
    });
    let _ = tokio::time::timeout(settings.read_timeout, session.logout()).await;
    Ok(report)
}
