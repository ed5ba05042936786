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
    /// Writing the WAV file failed.
    #[error("writing {path}: {detail}")]
    Wav {
        /// The output file.
        path: PathBuf,
        /// The writer's error.
        detail: String,
    },
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
