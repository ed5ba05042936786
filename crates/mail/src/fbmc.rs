//! The file-based mail store: `fbmc:MAILBOX/MESSAGE` under one root folder.
//!
//! A reference resolves, in this order, to `<root>/MAILBOX/MESSAGE.eml`,
//! `<root>/MAILBOX/MESSAGE`, or a Maildir message `<root>/MAILBOX/{cur,new}/MESSAGE…`
//! whose file name is MESSAGE followed by Maildir's suffixes (`,S=size`, `:2,flags`). A
//! Maildir message flagged `T` (trashed) counts as deleted.
//!
//! No reference may leave the root: `..`, `.` and empty segments are refused before the
//! file system is touched, and every path found is canonicalised (resolving symbolic
//! links) and must still lie below the canonical root.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use crate::MailError;
use crate::mime::{FetchedMessage, parse_message};
use crate::uri::FbmcUri;

/// A folder of mailboxes holding message files or Maildirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMailStore {
    root: PathBuf,
}

/// Separators that end a Maildir unique name: `:` before the info (`:2,FLAGS`), `,`
/// before Dovecot's size fields, and `;`/`!` used where `:` is not allowed in file names.
const MAILDIR_SEPARATORS: &[char] = &[':', ',', ';', '!'];

impl FileMailStore {
    /// A store rooted at `root` (not read until a message is fetched).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileMailStore { root: root.into() }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file holding the message a reference names.
    pub fn locate(&self, uri: &FbmcUri) -> Result<PathBuf, MailError> {
        let shown = uri.to_string();
        let escape = || MailError::PathEscape { uri: shown.clone() };
        let mailbox_parts: Vec<&str> = uri.mailbox.split('/').collect();
        if mailbox_parts.iter().any(|p| !is_plain_segment(p)) || !is_plain_segment(&uri.message) {
            return Err(escape());
        }
        let root = self.root.canonicalize().map_err(|source| MailError::Io {
            path: self.root.clone(),
            source,
        })?;
        let mut dir = root.clone();
        for part in &mailbox_parts {
            dir.push(part);
        }
        let dir = match dir.canonicalize() {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(MailError::MailboxNotFound {
                    mailbox: uri.mailbox.clone(),
                    detail: format!("no folder {}", dir.display()),
                });
            }
            Err(source) => return Err(MailError::Io { path: dir, source }),
        };
        if !dir.starts_with(&root) {
            return Err(escape());
        }
        if !dir.is_dir() {
            return Err(MailError::MailboxNotFound {
                mailbox: uri.mailbox.clone(),
                detail: format!("{} is not a folder", dir.display()),
            });
        }

        let eml = format!("{}.eml", uri.message);
        for name in [eml.as_str(), uri.message.as_str()] {
            if let Some(path) = checked_file(&dir.join(name), &root, &escape)? {
                return Ok(path);
            }
        }
        for sub in ["cur", "new"] {
            let folder = dir.join(sub);
            let entries = match fs::read_dir(&folder) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(MailError::Io {
                        path: folder,
                        source,
                    });
                }
            };
            for entry in entries {
                let entry = entry.map_err(|source| MailError::Io {
                    path: folder.clone(),
                    source,
                })?;
                let file_name = entry.file_name();
                let Some(name) = file_name.to_str() else {
                    continue;
                };
                if !maildir_name_matches(name, &uri.message) {
                    continue;
                }
                if let Some(path) = checked_file(&entry.path(), &root, &escape)? {
                    if maildir_flags(name).contains('T') {
                        return Err(MailError::Deleted { uri: shown });
                    }
                    return Ok(path);
                }
            }
        }
        Err(MailError::NotFound { uri: shown })
    }

    /// Reads the message a reference names and returns its audio parts and header
    /// fields. Blocking: call it from a blocking-capable thread.
    pub fn fetch_audio(&self, uri: &FbmcUri, max_bytes: u64) -> Result<FetchedMessage, MailError> {
        let path = self.locate(uri)?;
        let shown = uri.to_string();
        let io_err = |source| MailError::Io {
            path: path.clone(),
            source,
        };
        let file = fs::File::open(&path).map_err(io_err)?;
        let size = file.metadata().map_err(io_err)?.len();
        if size > max_bytes {
            return Err(MailError::TooLarge {
                uri: shown,
                size,
                limit: max_bytes,
            });
        }
        let mut raw = Vec::with_capacity(size as usize);
        // The file may grow between the size check and the read: read one byte past the
        // bound so that growth is noticed rather than truncated.
        file.take(max_bytes.saturating_add(1))
            .read_to_end(&mut raw)
            .map_err(io_err)?;
        parse_message(&raw, max_bytes, &shown)
    }
}

/// A path segment that names an entry of its folder: not empty, not `.` or `..`, no
/// separator, no NUL.
fn is_plain_segment(segment: &str) -> bool {
    !segment.is_empty()
        && !segment.contains(['/', '\0'])
        && matches!(
            Path::new(segment)
                .components()
                .collect::<Vec<_>>()
                .as_slice(),
            [Component::Normal(_)]
        )
}

/// The canonical path of `path` if it is a regular file (after links) inside `root`.
fn checked_file(
    path: &Path,
    root: &Path,
    escape: &dyn Fn() -> MailError,
) -> Result<Option<PathBuf>, MailError> {
    match fs::symlink_metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MailError::Io {
                path: path.to_owned(),
                source,
            });
        }
    }
    let canonical = match path.canonicalize() {
        Ok(c) => c,
        // A dangling link names no message.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(MailError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !canonical.starts_with(root) {
        return Err(escape());
    }
    Ok(canonical.is_file().then_some(canonical))
}

fn maildir_name_matches(file_name: &str, message: &str) -> bool {
    match file_name.strip_prefix(message) {
        Some("") => true,
        Some(rest) => rest.starts_with(MAILDIR_SEPARATORS),
        None => false,
    }
}

/// The flag letters of a Maildir file name (`…:2,FRS` → `FRS`).
fn maildir_flags(file_name: &str) -> &str {
    for sep in [":2,", ";2,", "!2,"] {
        if let Some(i) = file_name.rfind(sep) {
            return &file_name[i + sep.len()..];
        }
    }
    ""
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maildir_names() {
        assert!(maildir_name_matches("1700.M1P2.host:2,S", "1700.M1P2.host"));
        assert!(maildir_name_matches(
            "1700.M1P2.host,S=12,W=13:2,",
            "1700.M1P2.host"
        ));
        assert!(maildir_name_matches("1700.M1P2.host", "1700.M1P2.host"));
        assert!(!maildir_name_matches(
            "1700.M1P2.hostX:2,",
            "1700.M1P2.host"
        ));
        assert_eq!(maildir_flags("a,S=1:2,ST"), "ST");
        assert_eq!(maildir_flags("a"), "");
    }

    #[test]
    fn segments() {
        assert!(is_plain_segment("INBOX"));
        assert!(is_plain_segment("msg..1"));
        for bad in ["", ".", "..", "a/b", "a\0b"] {
            assert!(!is_plain_segment(bad), "{bad:?}");
        }
    }
}
