//! Voicemail audio out of email, for imss's `imap:` and `fbmc:` play-plan URIs.
//!
//! This crate owns:
//! - mail URIs ([`uri`]): RFC 5092 IMAP URLs naming one message or body part, and
//!   `fbmc:MAILBOX/MESSAGE` references into the file-based mail store;
//! - an IMAP4rev1 client ([`imap`]) on tokio: implicit TLS, STARTTLS or plain TCP,
//!   LOGIN or AUTHENTICATE PLAIN, a pool of logged-in sessions per user, whole-message
//!   and single-part fetches, and a streaming fetch that hands out a large attachment's
//!   audio while it is still arriving;
//! - the file-based mail store ([`fbmc`]): message files and Maildir folders under one
//!   root that no URI can leave;
//! - MIME ([`mime`]): finding the audio parts of a message and the header fields a
//!   voicemail reader announces (From, Date, Subject, Asterisk's `X-Asterisk-VM-*`).
//!
//! It must not decode audio (the bytes it returns are transfer-decoded, not
//! audio-decoded: `imss-media` turns them into samples) and it knows nothing of MRCP or
//! SIP: its [`MailError`] variants are specific enough for a caller to choose a completion
//! cause (see the enum's documentation).
//!
//! Protocol and format work is done by the libraries of the field rather than by hand:
//! `async-imap` speaks IMAP (command tagging, literals, response parsing including
//! BODYSTRUCTURE, which is where hand-written IMAP clients usually go wrong) and
//! `mail-parser` parses MIME (nested multiparts, RFC 2047/2231 names, charsets, broken
//! real-world mail). Hand-written here, because no dependency offers them:
//! - the RFC 5092 URL parser: small, and exact about which URLs name one message;
//! - the incremental transfer decoder, which carries incomplete base64 groups and
//!   quoted-printable lines across the partial fetches of a streamed attachment;
//! - IMAP's modified UTF-7 for mailbox names, a few dozen lines.
//!
//! TLS is rustls on the ring provider, trusting Mozilla's roots or a private CA file.

pub mod fbmc;
pub mod imap;
pub mod mime;
pub mod uri;

use std::path::PathBuf;
use std::time::Duration;

pub use fbmc::FileMailStore;
pub use imap::{
    AuthMethod, ConnectionReport, ConnectionStep, ImapClient, ImapSettings, PartInfo, PoolStats,
    StepOutcome, TlsMode, test_connection,
};
pub use mime::{AudioPart, FetchedMessage, MessageInfo, TransferEncoding};
pub use uri::{FbmcUri, ImapUrl, MailUri, UriError};

/// Why a message's audio could not be had.
///
/// A caller maps these to its own failure kinds; for MRCP: [`NotFound`](Self::NotFound),
/// [`Deleted`](Self::Deleted), [`UidValidityChanged`](Self::UidValidityChanged),
/// [`MailboxNotFound`](Self::MailboxNotFound), [`PathEscape`](Self::PathEscape),
/// [`ServerNotConfigured`](Self::ServerNotConfigured) and [`Uri`](Self::Uri) are a URI
/// that names nothing playable (`uri-failure`); [`NoAudio`](Self::NoAudio) and
/// [`TooLarge`](Self::TooLarge) are media that cannot be played; the connection errors
/// ([`Dns`](Self::Dns), [`Connect`](Self::Connect), [`Tls`](Self::Tls),
/// [`Auth`](Self::Auth), [`Timeout`](Self::Timeout), [`Closed`](Self::Closed)) are an
/// unreachable mail server; [`Protocol`](Self::Protocol), [`Io`](Self::Io),
/// [`Settings`](Self::Settings) and [`NotConfigured`](Self::NotConfigured) are internal or
/// configuration errors.
///
/// No variant ever carries a password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailError {
    /// The URI is malformed.
    #[error("invalid mail URI: {0}")]
    Uri(#[from] UriError),
    /// No message with that UID or name.
    #[error("{uri}: no such message")]
    NotFound {
        /// The URI as given.
        uri: String,
    },
    /// The message is flagged `\Deleted` (IMAP) or trashed (Maildir `T`).
    #[error("{uri}: the message is marked deleted")]
    Deleted {
        /// The URI as given.
        uri: String,
    },
    /// The mailbox was recreated since the URI was made: its UIDs name other messages.
    #[error("{uri}: the mailbox's UIDVALIDITY is {actual}, the URI was made for {expected}")]
    UidValidityChanged {
        /// The URI as given.
        uri: String,
        /// UIDVALIDITY in the URI.
        expected: u32,
        /// UIDVALIDITY the server reports.
        actual: u32,
    },
    /// The mailbox does not exist (or may not be read).
    #[error("mailbox {mailbox:?} does not exist: {detail}")]
    MailboxNotFound {
        /// Mailbox name as in the URI.
        mailbox: String,
        /// The server's words, or the path that is missing.
        detail: String,
    },
    /// The message (or part) is larger than the caller allows; nothing was downloaded.
    #[error("{uri}: {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// The URI as given.
        uri: String,
        /// Size the server or the file reports.
        size: u64,
        /// The caller's bound.
        limit: u64,
    },
    /// The message has no audio part (or the named part is not audio).
    #[error("{uri}: no audio attachment")]
    NoAudio {
        /// The URI as given.
        uri: String,
    },
    /// The server refused the credentials, or none are configured for the user.
    #[error("login rejected for user {user}: {detail}")]
    Auth {
        /// The user name (never the password).
        user: String,
        /// The server's words.
        detail: String,
    },
    /// The mail server's name does not resolve.
    #[error("cannot resolve mail server {host}: {detail}")]
    Dns {
        /// Host name as configured.
        host: String,
        /// Resolver's words.
        detail: String,
    },
    /// No TCP connection to the mail server.
    #[error("cannot connect to mail server {addr}: {detail}")]
    Connect {
        /// `host:port` tried.
        addr: String,
        /// The system's words.
        detail: String,
    },
    /// TLS failed: certificate not trusted, name mismatch, handshake refused.
    #[error("TLS with mail server {host} failed: {detail}")]
    Tls {
        /// Host name as configured.
        host: String,
        /// What failed.
        detail: String,
    },
    /// A network step took longer than its bound.
    #[error("mail server did not answer within {after:?} while {step}")]
    Timeout {
        /// What was being done.
        step: String,
        /// The bound that ran out.
        after: Duration,
    },
    /// The server closed the connection in the middle of a command.
    #[error("mail server closed the connection while {during}")]
    Closed {
        /// What was being done.
        during: String,
    },
    /// The server answered something this client cannot use.
    #[error("IMAP protocol error: {detail}")]
    Protocol {
        /// What was wrong.
        detail: String,
    },
    /// An `imap://` URL names a server other than the configured one: credentials are
    /// only ever sent to the configured server.
    #[error("{uri}: mail server {host} is not the configured one")]
    ServerNotConfigured {
        /// The URI as given.
        uri: String,
        /// The host (and port) it names.
        host: String,
    },
    /// An `fbmc:` URI that would leave the store's root.
    #[error("{uri}: path leaves the mail store")]
    PathEscape {
        /// The URI as given.
        uri: String,
    },
    /// The IMAP settings cannot work (empty host, zero pool size, …).
    #[error("invalid mail settings: {detail}")]
    Settings {
        /// What is wrong.
        detail: String,
    },
    /// The URI's scheme has no configuration (no IMAP server, or no store root).
    #[error("{scheme} URIs are not configured on this server")]
    NotConfigured {
        /// `imap` or `fbmc`.
        scheme: &'static str,
    },
    /// Reading the file-based store failed.
    #[error("reading {path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// One front for both URI schemes: `imap:` goes to the IMAP client, `fbmc:` to the
/// file-based store, and both answer with a [`FetchedMessage`].
#[derive(Debug, Clone)]
pub struct MailStore {
    imap: Option<ImapClient>,
    files: Option<FileMailStore>,
}

impl MailStore {
    /// A store with an IMAP server (if `imap` is given) and a file-based store (if
    /// `fbmc_root` is given). Fails if the settings are invalid or the CA file unreadable.
    pub fn new(
        imap: Option<ImapSettings>,
        fbmc_root: Option<PathBuf>,
    ) -> Result<MailStore, MailError> {
        Ok(MailStore {
            imap: imap.map(ImapClient::new).transpose()?,
            files: fbmc_root.map(FileMailStore::new),
        })
    }

    /// The IMAP client, if configured.
    pub fn imap(&self) -> Option<&ImapClient> {
        self.imap.as_ref()
    }

    /// The file-based store, if configured.
    pub fn files(&self) -> Option<&FileMailStore> {
        self.files.as_ref()
    }

    /// Fetches the audio of the message a URI names; `max_bytes` bounds the download.
    pub async fn fetch_audio(
        &self,
        uri: &str,
        max_bytes: u64,
    ) -> Result<FetchedMessage, MailError> {
        match MailUri::parse(uri)? {
            MailUri::Imap(url) => {
                let client = self
                    .imap
                    .as_ref()
                    .ok_or(MailError::NotConfigured { scheme: "imap" })?;
                client.fetch_audio(&url, max_bytes).await
            }
            MailUri::Fbmc(reference) => {
                let store = self
                    .files
                    .clone()
                    .ok_or(MailError::NotConfigured { scheme: "fbmc" })?;
                tokio::task::spawn_blocking(move || store.fetch_audio(&reference, max_bytes))
                    .await
                    .map_err(|e| MailError::Protocol {
                        detail: format!("file-based store task failed: {e}"),
                    })?
            }
        }
    }
}
