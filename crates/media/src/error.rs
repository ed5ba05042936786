use std::path::PathBuf;

/// Why audio could not be loaded or a live source started. Every variant names its file.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The file does not exist.
    #[error("{}: audio file not found", path.display())]
    NotFound {
        /// The path as given.
        path: PathBuf,
    },
    /// The bytes are not audio this server can decode (unknown container or codec).
    #[error("{}: {detail}", path.display())]
    Unsupported {
        /// The file, or `(in-memory audio)`.
        path: PathBuf,
        /// What is not supported, e.g. "not a recognised audio format".
        detail: String,
    },
    /// The container was recognised but its audio could not be decoded.
    #[error("{}: cannot decode audio: {detail}", path.display())]
    Decode {
        /// The file, or `(in-memory audio)`.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// Reading the file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The resampler rejected its parameters (an unusable sample rate).
    #[error("cannot resample {rate} Hz audio to 8000 Hz: {detail}")]
    Resample {
        /// The input sample rate.
        rate: u32,
        /// rubato's explanation.
        detail: String,
    },
    /// A live source's settings are unusable.
    #[error("live source {name}: {detail}")]
    InvalidSource {
        /// The live source.
        name: String,
        /// What is wrong, e.g. a tone frequency above 4 kHz.
        detail: String,
    },
    /// A live source's producer thread could not be started.
    #[error("live source {name}: cannot start its thread: {source}")]
    Spawn {
        /// The live source.
        name: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl MediaError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> MediaError {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::NotFound {
            MediaError::NotFound { path }
        } else {
            MediaError::Io { path, source }
        }
    }
}
