//! TLS for the MRCPv2 control channel (`TCP/TLS/MRCPv2`, RFC 6787 §4.2): the server's
//! certificate chain and key, read from PEM files, as a rustls configuration.
//!
//! rustls rather than OpenSSL bindings: memory-safe, no system library to match at build or
//! run time, TLS 1.2 and 1.3 only, and the same library the tokio ecosystem (tokio-rustls)
//! uses. It runs on the `ring` provider: aws-lc-rs would need cmake to build.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls;

/// Why the TLS configuration cannot be used; each names the config key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    /// The certificate file cannot be read or holds no PEM certificate.
    #[error("mrcp.tls_cert: {path}: {message}")]
    Certificate {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The key file cannot be read or holds no PEM private key.
    #[error("mrcp.tls_key: {path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the pair (e.g. the key does not belong to the certificate).
    #[error("mrcp.tls_key: {0}")]
    Mismatch(String),
}

impl TlsConfigError {
    /// The dotted config key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            TlsConfigError::Certificate { .. } => "mrcp.tls_cert",
            TlsConfigError::Key { .. } | TlsConfigError::Mismatch(_) => "mrcp.tls_key",
        }
    }

    /// The message without the key.
    pub fn detail(&self) -> String {
        match self {
            TlsConfigError::Certificate { path, message }
            | TlsConfigError::Key { path, message } => format!("{path}: {message}"),
            TlsConfigError::Mismatch(m) => m.clone(),
        }
    }
}

/// Reads the certificate chain (leaf first) and the private key (PKCS#8, PKCS#1 or SEC1)
/// and builds the server configuration of the TLS control channel listener.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    let cert_err = |message: String| TlsConfigError::Certificate {
        path: cert.display().to_string(),
        message,
    };
    let key_err = |message: String| TlsConfigError::Key {
        path: key.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(pem_message(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(pem_message(&e)))?;
    if certs.is_empty() {
        return Err(cert_err("no PEM CERTIFICATE block".into()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|e| key_err(pem_message(&e)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsConfigError::Mismatch(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, private_key)
        .map_err(|e| TlsConfigError::Mismatch(format!("does not fit mrcp.tls_cert: {e}")))?;
    Ok(Arc::new(config))
}

fn pem_message(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => {
            "no PEM block of the expected kind (a certificate, or a private key)".into()
        }
        other => format!("invalid PEM: {other:?}"),
    }
}

/// The web interface's TLS configuration (`http.tls_cert`, `http.tls_key`), read again when
/// either file changes: checked at most once a second, on new connections. A changed pair
/// that cannot be used is logged and the previous one stays.
pub struct ReloadingConfig {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    state: std::sync::Mutex<Loaded>,
}

struct Loaded {
    config: Arc<rustls::ServerConfig>,
    /// Modification times of the pair last read (or last refused).
    stamps: (Option<std::time::SystemTime>, Option<std::time::SystemTime>),
    checked: std::time::Instant,
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `e` with the `[http]` keys instead of `[mrcp]`'s.
fn for_http(e: &TlsConfigError) -> String {
    let key = if e.key().ends_with("cert") {
        "http.tls_cert"
    } else {
        "http.tls_key"
    };
    format!("{key}: {}", e.detail())
}

impl ReloadingConfig {
    /// Reads the pair once; an error names the `[http]` key at fault.
    pub fn new(cert: &Path, key: &Path) -> Result<ReloadingConfig, String> {
        let stamps = (modified(cert), modified(key));
        let config = server_config(cert, key).map_err(|e| for_http(&e))?;
        Ok(ReloadingConfig {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            state: std::sync::Mutex::new(Loaded {
                config,
                stamps,
                checked: std::time::Instant::now(),
            }),
        })
    }

    /// The configuration for the next handshake.
    pub fn current(&self) -> Arc<rustls::ServerConfig> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.checked.elapsed() >= std::time::Duration::from_secs(1) {
            state.checked = std::time::Instant::now();
            let stamps = (modified(&self.cert), modified(&self.key));
            if stamps != state.stamps {
                state.stamps = stamps;
                match server_config(&self.cert, &self.key) {
                    Ok(config) => {
                        tracing::info!(cert = %self.cert.display(), "web interface TLS certificate reloaded");
                        state.config = config;
                    }
                    Err(e) => tracing::error!(
                        error = %for_http(&e),
                        "the changed web interface TLS certificate cannot be used: the previous one stays"
                    ),
                }
            }
        }
        Arc::clone(&state.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, c.cert.pem()).expect("write cert");
        std::fs::write(&key, c.key_pair.serialize_pem()).expect("write key");
        (cert, key)
    }

    #[test]
    fn a_matching_pair_loads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = write_pair(dir.path());
        server_config(&cert, &key).expect("valid pair");
    }

    #[test]
    fn errors_name_the_key_and_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (cert, key) = write_pair(dir.path());
        let missing = dir.path().join("missing.pem");
        let e = server_config(&missing, &key).unwrap_err();
        assert_eq!(e.key(), "mrcp.tls_cert");
        assert!(e.to_string().contains("missing.pem"), "{e}");

        let e = server_config(&cert, &cert).unwrap_err();
        assert_eq!(e.key(), "mrcp.tls_key", "a certificate is no key: {e}");
        assert!(e.to_string().contains("cert.pem"), "{e}");

        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not pem at all\n").expect("write");
        let e = server_config(&junk, &key).unwrap_err();
        assert_eq!(e.key(), "mrcp.tls_cert");

        // Another certificate's key.
        let other = tempfile::tempdir().expect("tempdir");
        let (_, other_key) = write_pair(other.path());
        let e = server_config(&cert, &other_key).unwrap_err();
        assert_eq!(e.key(), "mrcp.tls_key");
        assert!(e.to_string().contains("does not fit"), "{e}");
    }
}
