//! Turns a play URI into a file under the audio root, refusing anything that escapes it.

use std::path::{Component, Path, PathBuf};

/// Why a play URI does not name a playable file.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AudioPathError {
    /// The file does not exist under the audio root (SIP 404, MRCP 003).
    #[error("no such audio file: {0}")]
    NotFound(String),
    /// The path leaves the audio root, by `..` or a link (SIP 403).
    #[error("{0} is outside the audio root")]
    Forbidden(String),
    /// A scheme this server does not play from files (SIP 404, MRCP 003).
    #[error("unsupported URI scheme in {0:?}")]
    UnsupportedScheme(String),
}

/// Resolves `uri` (`file:///a/b.wav`, `a/b.wav`, `/a/b.wav`) against `root`.
///
/// A `file:` or absolute path that already lies under the root is used as is; otherwise it is
/// read relative to the root. The canonical result must stay under the canonical root.
pub fn resolve(root: &Path, uri: &str) -> Result<PathBuf, AudioPathError> {
    let path_part = if let Some(rest) = uri.strip_prefix("file://") {
        // file://localhost/x and file:///x
        rest.strip_prefix("localhost").unwrap_or(rest)
    } else if uri.contains("://") || uri.starts_with("source:") {
        return Err(AudioPathError::UnsupportedScheme(uri.to_string()));
    } else {
        uri
    };
    if path_part.is_empty() {
        return Err(AudioPathError::NotFound(uri.to_string()));
    }
    let canonical_root = root.canonicalize().map_err(|_| {
        AudioPathError::NotFound(format!("{uri} (audio root {} is missing)", root.display()))
    })?;
    let requested = Path::new(path_part);
    let candidate = if requested.is_absolute()
        && (requested.starts_with(&canonical_root) || requested.starts_with(root))
    {
        requested.to_path_buf()
    } else {
        let relative: PathBuf = requested
            .components()
            .filter(|c| !matches!(c, Component::RootDir | Component::Prefix(_)))
            .collect();
        if relative
            .components()
            .any(|c| matches!(c, Component::ParentDir))
        {
            return Err(AudioPathError::Forbidden(uri.to_string()));
        }
        canonical_root.join(relative)
    };
    let real = match candidate.canonicalize() {
        Ok(p) => p,
        Err(_) => return Err(AudioPathError::NotFound(uri.to_string())),
    };
    if !real.starts_with(&canonical_root) {
        return Err(AudioPathError::Forbidden(uri.to_string()));
    }
    if !real.is_file() {
        return Err(AudioPathError::NotFound(uri.to_string()));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_inside_and_refuses_outside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("audio");
        std::fs::create_dir_all(root.join("moh")).expect("mkdir");
        std::fs::write(root.join("moh/a.wav"), b"x").expect("write");
        std::fs::write(dir.path().join("secret.wav"), b"x").expect("write");
        let real_root = root.canonicalize().expect("canon");

        assert_eq!(resolve(&root, "moh/a.wav"), Ok(real_root.join("moh/a.wav")));
        assert_eq!(
            resolve(&root, "/moh/a.wav"),
            Ok(real_root.join("moh/a.wav"))
        );
        assert_eq!(
            resolve(&root, "file:///moh/a.wav"),
            Ok(real_root.join("moh/a.wav"))
        );
        let abs = format!("file://{}", real_root.join("moh/a.wav").display());
        assert_eq!(resolve(&root, &abs), Ok(real_root.join("moh/a.wav")));

        assert!(matches!(
            resolve(&root, "../secret.wav"),
            Err(AudioPathError::Forbidden(_))
        ));
        assert!(matches!(
            resolve(&root, "moh/../../secret.wav"),
            Err(AudioPathError::Forbidden(_))
        ));
        assert!(matches!(
            resolve(&root, "missing.wav"),
            Err(AudioPathError::NotFound(_))
        ));
        assert!(matches!(
            resolve(&root, "moh"),
            Err(AudioPathError::NotFound(_))
        ));
        assert!(matches!(
            resolve(&root, "ftp://x/y.wav"),
            Err(AudioPathError::UnsupportedScheme(_))
        ));

        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.wav"), root.join("link.wav"))
                .expect("symlink");
            assert!(matches!(
                resolve(&root, "link.wav"),
                Err(AudioPathError::Forbidden(_))
            ));
        }
    }
}
