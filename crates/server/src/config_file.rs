//! Writing the configuration file back: the web interface's password changes and the
//! `imss admin` commands change the model, validate it, and write the file atomically (a
//! temporary file in the same folder, fsync, rename), keeping the previous one as `FILE.bak`.
//! An invalid configuration is never written.
//!
//! Every change is recorded in the audit log next to the file (`FILE.audit`, one JSON object
//! per line: when, who, and each setting that changed with its old and new value — secrets
//! shown only as changed). A change may name the version of the file it was made from
//! ([`version`]); if the file has changed since, it is refused as a conflict rather than
//! overwriting the other change.

use crate::config::{Config, ConfigError, WebAccount};
use imss_web::auth::{Account, AccountStore, Accounts, AuthSettings, Role, Token};
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Why a configuration file could not be updated.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The file does not load, or the changed configuration does not validate.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The change itself is refused.
    #[error("{0}")]
    Refused(String),
    /// The file changed since the version the change was made from.
    #[error(
        "the configuration was changed meanwhile (version {current}, the change was made from {expected}): reload it and apply the change again"
    )]
    Conflict {
        /// The version the change was made from.
        expected: String,
        /// The file's version now.
        current: String,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// Writes `config` to `path` atomically: a temporary file in the same folder (with the
/// permissions of the file it replaces, or owner-only for a new one: it holds secrets), fsync,
/// the previous file copied to `FILE.bak`, rename, fsync of the folder. Sections that did not
/// change keep their text as the previous file had it, comments included.
pub fn write_atomically(path: &Path, config: &Config) -> std::io::Result<()> {
    let fresh = toml::to_string(config).map_err(std::io::Error::other)?;
    let text = std::fs::read_to_string(path)
        .ok()
        .and_then(|old| keep_unchanged_sections(&old, config, &fresh))
        .unwrap_or(fresh);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?
        .to_string_lossy()
        .into_owned();
    let tmp = dir.join(format!(
        ".{name}.{}.{:08x}.tmp",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mode = std::fs::metadata(path).ok().map(|m| m.permissions());
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt as _;
        // Owner-only from the start: the file holds password hashes and other secrets.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        if let Some(mode) = mode {
            file.set_permissions(mode)?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        drop(file);
        if path.exists() {
            let mut bak = path.as_os_str().to_owned();
            bak.push(".bak");
            std::fs::copy(path, PathBuf::from(bak))?;
        }
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `new`'s keys and values written into `old` in place: unchanged keys keep their text,
/// changed values keep their comments, keys gone are removed, new keys go last.
fn merge_table(old: &mut toml_edit::Table, new: &toml_edit::Table) {
    let gone: Vec<String> = old
        .iter()
        .filter(|(k, _)| !new.contains_key(k))
        .map(|(k, _)| k.to_string())
        .collect();
    for k in gone {
        old.remove(&k);
    }
    for (k, new_item) in new.iter() {
        let same = old
            .get(k)
            .is_some_and(|o| o.to_string().trim() == new_item.to_string().trim());
        if same {
            continue;
        }
        match (old.get_mut(k), new_item) {
            (Some(toml_edit::Item::Value(o)), toml_edit::Item::Value(n)) => {
                let decor = o.decor().clone();
                *o = n.clone();
                *o.decor_mut() = decor;
            }
            (Some(slot), _) => *slot = new_item.clone(),
            (None, _) => {
                old.insert(k, new_item.clone());
            }
        }
    }
}

/// `config` as TOML in which every top-level section equal to the one in `old` (the previous
/// file) is written as `old` wrote it, and the others as in `fresh` (`config` serialized), in
/// the order of `old`. `None` when `old` does not parse or the result would not read back as
/// `config`.
fn keep_unchanged_sections(old: &str, config: &Config, fresh: &str) -> Option<String> {
    let old_config: Config = toml::from_str(old).ok()?;
    let old_doc: toml_edit::DocumentMut = old.parse().ok()?;
    let new_doc: toml_edit::DocumentMut = fresh.parse().ok()?;
    let old_values = serde_json::to_value(&old_config).ok()?;
    let new_values = serde_json::to_value(config).ok()?;
    let mut keys: Vec<String> = old_doc.iter().map(|(k, _)| k.to_string()).collect();
    for (k, _) in new_doc.iter() {
        if !keys.iter().any(|known| known == k) {
            keys.push(k.to_string());
        }
    }
    // Plain `key = value` lines go first: after a table header they would belong to it.
    let is_value = |key: &String| {
        let item = new_doc.get(key).or_else(|| old_doc.get(key));
        item.is_some_and(|i| i.is_value())
    };
    keys.sort_by_key(|k| !is_value(k));
    let defaults = serde_json::to_value(Config::default()).ok()?;
    let mut out = String::new();
    for key in keys {
        // A section the old file left out stays out while it holds the defaults.
        if !old_doc.contains_key(&key) && defaults.get(&key) == new_values.get(&key) {
            continue;
        }
        let unchanged = old_values.get(&key) == new_values.get(&key);
        let source = if unchanged && old_doc.contains_key(&key) {
            &old_doc
        } else {
            &new_doc
        };
        let Some(item) = source.get(&key) else {
            continue;
        };
        let mut item = item.clone();
        // A changed table keeps its comments and the layout of its unchanged keys.
        if !unchanged
            && let (Some(old), Some(new)) = (
                old_doc.get(&key).and_then(|i| i.as_table()),
                item.as_table(),
            )
        {
            let mut merged = old.clone();
            merge_table(&mut merged, new);
            item = toml_edit::Item::Table(merged);
        }
        let mut part = toml_edit::DocumentMut::new();
        part.insert(&key, item);
        let text = part.to_string();
        if !out.is_empty() && !out.ends_with("\n\n") && !text.starts_with('\n') {
            out.push('\n');
        }
        out.push_str(&text);
    }
    if let Some(trailing) = old_doc.trailing().as_str() {
        out.push_str(trailing);
    }
    let back: Config = toml::from_str(&out).ok()?;
    (back == *config).then_some(out)
}

/// The version of a configuration file's content: the first 16 hex digits of its SHA-256,
/// as an HTTP ETag would carry it.
pub fn version(text: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What [`update`] wrote.
#[derive(Debug)]
pub struct Updated {
    /// The configuration now in the file.
    pub config: Config,
    /// Its version ([`version`]).
    pub version: String,
}

/// Loads the file at `path`, applies `change`, validates and writes it back atomically, and
/// records the change in the audit log as made by `who`. With `expected_version`, a file
/// that changed since that version is left alone ([`UpdateError::Conflict`]).
pub fn update(
    path: &Path,
    who: &str,
    expected_version: Option<&str>,
    change: impl FnOnce(&mut Config) -> Result<(), String>,
) -> Result<Updated, UpdateError> {
    // One read-change-write at a time in this process, so no change is lost.
    static WRITER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = WRITER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let text = std::fs::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let current = version(&text);
    if let Some(expected) = expected_version
        && expected != current
    {
        return Err(UpdateError::Conflict {
            expected: expected.to_string(),
            current,
        });
    }
    let before = Config::load(path)?;
    let mut config = before.clone();
    change(&mut config).map_err(UpdateError::Refused)?;
    config.validate()?;
    write_atomically(path, &config).map_err(|source| UpdateError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    let written = std::fs::read(path).map_err(|source| UpdateError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    if let Err(e) = audit(path, who, &before, &config) {
        tracing::warn!(file = %path.display(), error = %e, "the configuration change was written but not recorded in the audit log");
    }
    Ok(Updated {
        config,
        version: version(&written),
    })
}

/// The audit log of the configuration file at `path`.
pub fn audit_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".audit");
    PathBuf::from(p)
}

/// Appends one line to the audit log: when, who, what changed.
fn audit(path: &Path, who: &str, before: &Config, after: &Config) -> std::io::Result<()> {
    let changes = changes(before, after);
    let line = serde_json::json!({
        "at": now_rfc3339(),
        "who": who,
        "changes": changes,
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(audit_path(path))?;
    // One write of the whole line: an append cut short leaves no half line behind.
    file.write_all(format!("{line}\n").as_bytes())?;
    file.sync_data()
}

/// Whether a setting holds a secret: its value is never written to the audit log.
fn is_secret(key: &str) -> bool {
    ["password", "hash", "token", "secret"]
        .iter()
        .any(|s| key.to_ascii_lowercase().contains(s))
}

/// Every setting that differs, as `{ "key": "http.admins[0].role", "old": …, "new": … }`
/// (secrets as `"<changed>"`, `"<set>"` or `"<removed>"`).
pub fn changes(before: &Config, after: &Config) -> Vec<serde_json::Value> {
    let (Ok(a), Ok(b)) = (serde_json::to_value(before), serde_json::to_value(after)) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    diff("", &a, &b, false, &mut out);
    out
}

fn diff(
    key: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    secret: bool,
    out: &mut Vec<serde_json::Value>,
) {
    use serde_json::Value;
    if a == b {
        return;
    }
    // An entry added or removed is compared with an empty one, so that its secrets are
    // masked like any other.
    let empty_object = Value::Object(serde_json::Map::new());
    let empty_array = Value::Array(Vec::new());
    let (a, b) = match (a, b) {
        (Value::Null, Value::Object(_)) => (&empty_object, b),
        (Value::Object(_), Value::Null) => (a, &empty_object),
        (Value::Null, Value::Array(_)) => (&empty_array, b),
        (Value::Array(_), Value::Null) => (a, &empty_array),
        _ => (a, b),
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let sub = if key.is_empty() {
                    k.clone()
                } else {
                    format!("{key}.{k}")
                };
                diff(
                    &sub,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    secret || is_secret(k),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            for i in 0..x.len().max(y.len()) {
                diff(
                    &format!("{key}[{i}]"),
                    x.get(i).unwrap_or(&Value::Null),
                    y.get(i).unwrap_or(&Value::Null),
                    secret,
                    out,
                );
            }
        }
        _ if secret => {
            let state = |v: &Value| if v.is_null() { "<unset>" } else { "<set>" };
            let (old, new) = if a.is_null() || b.is_null() {
                (state(a), state(b))
            } else {
                ("<set>", "<changed>")
            };
            out.push(serde_json::json!({ "key": key, "old": old, "new": new }));
        }
        _ => out.push(serde_json::json!({ "key": key, "old": a, "new": b })),
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// Seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian calendar).
pub fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rest = secs % 86_400;
    // Days to civil date (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Sets the password hash of web account `user`, adding the account when it is missing
/// (with `role`, or admin), and clears its must-change mark unless `must_change`. `role`
/// replaces the role of an existing account when given.
pub fn set_password(
    config: &mut Config,
    user: &str,
    role: Option<Role>,
    password_hash: &str,
    must_change: bool,
) {
    match config.http.admins.iter_mut().find(|a| a.user == user) {
        Some(account) => {
            account.password_hash = password_hash.to_string();
            account.must_change_password = must_change;
            if let Some(role) = role {
                account.role = role;
            }
        }
        None => config.http.admins.push(WebAccount {
            user: user.to_string(),
            password_hash: password_hash.to_string(),
            role: role.unwrap_or(Role::Admin),
            must_change_password: must_change,
        }),
    }
}

/// The web interface's accounts and tokens of `[http]`.
pub fn web_accounts(config: &Config) -> Accounts {
    let users = config.http.admins.iter().map(|a| Account {
        user: a.user.clone(),
        password_hash: a.password_hash.clone(),
        role: a.role,
        must_change: a.must_change_password,
    });
    let tokens = config
        .http
        .api_tokens
        .iter()
        .filter_map(|t| {
            Some(Token {
                name: t.name.clone(),
                sha256: imss_web::auth::parse_sha256_hex(&t.hash.to_ascii_lowercase())?,
                role: t.role,
                created: t.created.clone(),
            })
        })
        .collect();
    Accounts::new(users, tokens)
}

/// `[http]` without what a reload applies at once (accounts, tokens, session lifetime), to
/// tell whether the rest changed.
pub fn without_web_access(http: &crate::config::Http) -> crate::config::Http {
    crate::config::Http {
        admins: Vec::new(),
        api_tokens: Vec::new(),
        session_ttl_s: 0,
        ..http.clone()
    }
}

/// The session settings of `[http]`: cookies are marked `Secure` when the web interface
/// serves HTTPS (`http.tls_cert`).
pub fn web_auth_settings(config: &Config) -> AuthSettings {
    AuthSettings {
        session_ttl: std::time::Duration::from_secs(config.http.session_ttl_s),
        secure_cookie: config.http.tls_cert.is_some(),
    }
}

/// Keeps password changes made in the web interface in the configuration file.
pub struct FileAccountStore {
    path: PathBuf,
}

impl FileAccountStore {
    /// A store writing to the configuration file at `path`.
    pub fn new(path: PathBuf) -> FileAccountStore {
        FileAccountStore { path }
    }
}

impl AccountStore for FileAccountStore {
    fn set_password(&self, user: &str, role: Role, password_hash: &str) -> Result<(), String> {
        update(&self.path, &format!("web: {user}"), None, |config| {
            let existing = config.http.admins.iter().any(|a| a.user == user);
            set_password(
                config,
                user,
                (!existing).then_some(role),
                password_hash,
                false,
            );
            Ok(())
        })
        .map(drop)
        .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_798_761_599), "2026-12-31T23:59:59Z");
    }

    #[test]
    fn a_change_from_an_old_version_is_a_conflict_and_changes_are_audited_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imss.toml");
        std::fs::write(&path, "[general]\nname = \"first\"\n").unwrap();
        let v1 = version(&std::fs::read(&path).unwrap());
        let hash = imss_web::auth::hash_password("a-long-password").unwrap();
        // Two admins start from version 1; the first to save wins.
        let first = update(&path, "web: ann", Some(&v1), |c| {
            c.general.name = "second".into();
            set_password(c, "bob", None, &hash, false);
            Ok(())
        })
        .unwrap();
        assert_ne!(first.version, v1);
        assert_eq!(first.version, version(&std::fs::read(&path).unwrap()));
        let err = update(&path, "web: bob", Some(&v1), |c| {
            c.general.name = "third".into();
            Ok(())
        })
        .unwrap_err();
        assert!(
            matches!(&err, UpdateError::Conflict { expected, current } if *expected == v1 && *current == first.version),
            "{err}"
        );
        assert_eq!(Config::load(&path).unwrap().general.name, "second");
        // From the current version it goes through.
        update(&path, "web: bob", Some(&first.version), |c| {
            c.general.name = "third".into();
            Ok(())
        })
        .unwrap();

        let log = std::fs::read_to_string(audit_path(&path)).unwrap();
        let lines: Vec<serde_json::Value> = log
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{log}");
        assert_eq!(lines[0]["who"], "web: ann");
        assert!(lines[0]["at"].as_str().unwrap().ends_with('Z'));
        let changes = lines[0]["changes"].as_array().unwrap();
        let change = |key: &str| changes.iter().find(|c| c["key"] == key).cloned();
        assert_eq!(
            change("general.name").unwrap(),
            serde_json::json!({"key": "general.name", "old": "first", "new": "second"})
        );
        assert_eq!(
            change("http.admins[0].password_hash").unwrap()["new"],
            "<set>"
        );
        assert!(!log.contains("argon2"), "no hash in the audit log: {log}");
        assert_eq!(lines[1]["who"], "web: bob");
        assert_eq!(lines[1]["changes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn written_files_load_back_and_keep_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imss.toml");
        std::fs::write(&path, "[general]\nname = \"first\"\n").unwrap();
        let hash = imss_web::auth::hash_password("a-long-password").unwrap();
        let written = update(&path, "test", None, |c| {
            c.general.name = "second".into();
            set_password(c, "ann", None, &hash, false);
            Ok(())
        })
        .unwrap()
        .config;
        let loaded = Config::load(&path).unwrap();
        assert_eq!(loaded, written);
        assert_eq!(loaded.http.admins[0].user, "ann");
        assert_eq!(loaded.http.admins[0].role, Role::Admin);
        let bak = std::fs::read_to_string(dir.path().join("imss.toml.bak")).unwrap();
        assert!(bak.contains("first"));
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        // The file, its backup and its audit log.
        assert_eq!(names.len(), 3, "{names:?}");
    }

    #[test]
    fn an_invalid_change_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imss.toml");
        std::fs::write(&path, "[general]\nname = \"first\"\n").unwrap();
        let err = update(&path, "test", None, |c| {
            set_password(c, "ann", None, "not a hash", false);
            Ok(())
        })
        .unwrap_err();
        assert!(
            err.to_string().contains("http.admins[0].password_hash"),
            "{err}"
        );
        assert!(!err.to_string().contains("not a hash"), "{err}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[general]\nname = \"first\"\n"
        );
    }

    #[test]
    fn the_store_adds_and_updates_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imss.toml");
        std::fs::write(&path, "").unwrap();
        let store = FileAccountStore::new(path.clone());
        let h1 = imss_web::auth::hash_password("first-password").unwrap();
        store.set_password("admin", Role::Admin, &h1).unwrap();
        let h2 = imss_web::auth::hash_password("second-password").unwrap();
        store.set_password("admin", Role::Viewer, &h2).unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.http.admins.len(), 1);
        assert_eq!(c.http.admins[0].password_hash, h2);
        // An existing account keeps its role.
        assert_eq!(c.http.admins[0].role, Role::Admin);
        let accounts = web_accounts(&c);
        assert!(accounts.user("admin").is_some());
    }

    #[test]
    fn comments_of_unchanged_sections_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imss.toml");
        let original = "# imss on host A\n[general]\nname = \"a\" # shown in the UI\n\n\
                        # the SIP side\n[sip]\nport = 5070\n\n[http]\n# admin port\nport = 8191\n";
        std::fs::write(&path, original).unwrap();
        let hash = imss_web::auth::hash_password("a-long-password").unwrap();
        let written = update(&path, "test", None, |c| {
            set_password(c, "ann", None, &hash, false);
            Ok(())
        })
        .unwrap()
        .config;
        let text = std::fs::read_to_string(&path).unwrap();
        for kept in [
            "# imss on host A",
            "name = \"a\" # shown in the UI",
            "# the SIP side",
        ] {
            assert!(text.contains(kept), "{kept:?} lost:\n{text}");
        }
        assert!(text.contains("[[http.admins]]"), "{text}");
        // Sections the file left out stay out.
        assert!(
            !text.contains("[rtp]") && !text.contains("external_audio"),
            "{text}"
        );
        assert_eq!(Config::load(&path).unwrap(), written);
        assert_eq!(written.sip.port, 5070);
        assert_eq!(written.http.port, 8191);
        // A changed section keeps its comments, and a changed value its own.
        assert!(text.contains("# admin port\nport = 8191"), "{text}");
        update(&path, "test", None, |c| {
            c.general.name = "b".into();
            Ok(())
        })
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# imss on host A\n[general]\n"), "{text}");
        assert!(text.contains("name = \"b\" # shown in the UI"), "{text}");
        assert!(text.contains("# the SIP side"), "{text}");
    }

    #[test]
    fn http_accounts_are_validated() {
        let hash = imss_web::auth::hash_password("a-long-password").unwrap();
        let parse = |extra: &str| {
            Config::from_toml(&format!("[http]\n{extra}"), Path::new("t.toml"))
                .map_err(|e| e.to_string())
        };
        let account = |user: &str, phc: &str, role: &str| {
            format!(
                "[[http.admins]]\nuser = \"{user}\"\npassword_hash = \"{phc}\"\nrole = \"{role}\"\n"
            )
        };
        let token = |name: &str, hash: &str, created: &str| {
            format!(
                "[[http.api_tokens]]\nname = \"{name}\"\nhash = \"{hash}\"\nrole = \"viewer\"\n\
                 created = \"{created}\"\n"
            )
        };
        let sha = "ab".repeat(32);
        let ok = parse(&format!(
            "session_ttl_s = 3600\n{}{}{}",
            account("ann", &hash, "admin"),
            account("val", &hash, "viewer"),
            token("ci", &sha, "2026-11-24T03:00:00Z")
        ))
        .unwrap();
        assert_eq!(ok.http.admins[1].role, Role::Viewer);
        assert_eq!(ok.http.session_ttl_s, 3600);
        assert_eq!(Config::default().http.session_ttl_s, 8 * 3600);
        // The debug form names accounts but shows no hash.
        let shown = format!("{:?}", ok.http);
        assert!(shown.contains("ann") && !shown.contains("argon2") && !shown.contains(&sha));

        let twice = parse(&format!(
            "{}{}",
            account("ann", &hash, "admin"),
            account("ann", &hash, "viewer")
        ));
        assert!(twice.unwrap_err().contains("http.admins[1].user"));
        let bad_role = parse(&account("ann", &hash, "root")).unwrap_err();
        assert!(bad_role.contains("root"), "{bad_role}");
        let not_phc = parse(&account("ann", "$2b$12$abcdefghijklmnopqrstuv", "admin")).unwrap_err();
        assert!(
            not_phc.contains("http.admins[0].password_hash"),
            "{not_phc}"
        );
        assert!(!not_phc.contains("$2b$"), "the hash is echoed: {not_phc}");
        let argon2i = hash.replacen("argon2id", "argon2i", 1);
        assert!(parse(&account("ann", &argon2i, "admin")).is_err());
        let short = parse(&token("ci", "abc", "2026-11-24T03:00:00Z")).unwrap_err();
        assert!(short.contains("http.api_tokens[0].hash"), "{short}");
        let date = parse(&token("ci", &sha, "yesterday")).unwrap_err();
        assert!(date.contains("http.api_tokens[0].created"), "{date}");
        let with_offset = parse(&token("ci", &sha, "2026-11-24T03:00:00.5+01:00"));
        assert!(with_offset.is_ok(), "{with_offset:?}");
        let names = parse(&format!(
            "{}{}",
            token("ci", &sha, "2026-11-24T03:00:00Z"),
            token("ci", &sha, "2026-11-24T03:00:00Z")
        ))
        .unwrap_err();
        assert!(names.contains("http.api_tokens[1].name"), "{names}");
        assert!(
            parse("session_ttl_s = 10\n")
                .unwrap_err()
                .contains("http.session_ttl_s")
        );
    }

    #[test]
    fn embedded_defaults_round_trip_through_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("imss.toml");
        let config = Config::embedded(dir.path());
        write_atomically(&path, &config).unwrap();
        assert_eq!(Config::load(&path).unwrap(), config);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "a new file is the owner's only");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        write_atomically(&path, &config).unwrap();
        assert_eq!(mode(&path), 0o640, "a replaced file keeps its permissions");
    }
}
