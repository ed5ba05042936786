//! The errors of a test call or a bench run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Why a call or a bench run failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The target is not a SIP URI this client can call.
    #[error("invalid SIP URI {uri:?}: {detail}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The host of the URI did not resolve.
    #[error("cannot resolve {host}: {detail}")]
    Resolve {
        /// Host name from the URI.
        host: String,
        /// Resolver error.
        detail: String,
    },
    /// The options make no sense (no codec, zero calls, ...).
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The server did not answer the INVITE in time (nothing listening, or packets lost).
    #[error("no answer from {remote} after {after:?}: server unreachable or not responding")]
    Timeout {
        /// Where the INVITE went.
        remote: SocketAddr,
        /// How long the client waited.
        after: Duration,
    },
    /// The server is unreachable (ICMP port unreachable, no route).
    #[error("server {remote} unreachable: {source}")]
    Unreachable {
        /// Where the INVITE went.
        remote: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The server answered the INVITE with a final failure status.
    #[error("{status} {reason}")]
    Rejected {
        /// SIP status code (>= 300).
        status: u16,
        /// Reason phrase, with the Warning text when the server sent one.
        reason: String,
    },
    /// The 200 OK carried no usable SDP answer.
    #[error("unusable SDP answer: {0}")]
    BadAnswer(String),
    /// The call was answered but no RTP packet arrived.
    #[error("no RTP received on {local} during {seconds:.1} s of call")]
    NoRtp {
        /// The local RTP address offered in SDP.
        local: SocketAddr,
        /// How long the call was up.
        seconds: f64,
    },
    /// A local socket or thread operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The system error.
        source: std::io::Error,
    },
    /// The answer granted no MRCP channel (no `a=channel` on the control m-line).
    #[error(
        "the answer has no a=channel for the {resource} resource: the server did not allocate it"
    )]
    MissingChannel {
        /// The resource asked for.
        resource: String,
    },
    /// The TCP control connection could not be opened.
    #[error("cannot open the MRCP control connection to {addr}: {source}")]
    ControlConnect {
        /// The address from the answer.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// An MRCP request was answered with a failure status (4xx, 5xx).
    #[error("{method} {request_id} answered {status}{transcript}")]
    MrcpStatus {
        /// The request's method.
        method: String,
        /// Its request-id.
        request_id: u32,
        /// The status code.
        status: u16,
        /// The MRCP messages received up to then.
        transcript: Transcript,
    },
    /// The SPEAK completed with a cause other than `000 normal`.
    #[error("SPEAK-COMPLETE {cause}{}{transcript}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    SpeakFailed {
        /// The Completion-Cause, e.g. `003 uri-failure`.
        cause: String,
        /// The Completion-Reason, if the server gave one.
        reason: Option<String>,
        /// The MRCP messages received.
        transcript: Transcript,
    },
    /// The control exchange did not finish within the call's time limit.
    #[error("no SPEAK-COMPLETE within {:.1} s{transcript}", after.as_secs_f64())]
    SpeakTimeout {
        /// The limit.
        after: Duration,
        /// The MRCP messages received.
        transcript: Transcript,
    },
    /// The control connection closed or lost its framing before the SPEAK finished.
    #[error("MRCP control connection lost: {detail}{transcript}")]
    ControlLost {
        /// What happened.
        detail: String,
        /// The MRCP messages received.
        transcript: Transcript,
    },
    /// Writing the WAV file failed.
    #[error("writing {path}: {detail}")]
    Wav {
        /// The output file.
        path: PathBuf,
        /// The writer's error.
        detail: String,
    },
}

/// The MRCP messages received before a failure, each a block of start line and headers
/// with its time after the SPEAK; shown after the error's first line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transcript(pub Vec<String>);

impl std::fmt::Display for Transcript {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        f.write_str("\nMRCP messages received:")?;
        for block in &self.0 {
            for line in block.lines() {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

impl ClientError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ClientError {
        ClientError::Io {
            context: context.into(),
            source,
        }
    }
}
