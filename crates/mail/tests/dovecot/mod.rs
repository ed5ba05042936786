//! A real Dovecot IMAP server for tests, one per test, plus voicemail-style test mail.
//!
//! Other crates' tests include this file with
//! `#[path = "../../mail/tests/dovecot/mod.rs"] mod dovecot;` — it uses only std,
//! `tempfile` and `rcgen`.
//!
//! [`Dovecot::start`] writes a configuration into a temporary folder (passwd-file users
//! with plain passwords, Maildir homes, a certificate signed by a CA generated for the
//! test, an IMAPS listener and a STARTTLS-capable IMAP listener on free ports) and runs
//! `dovecot -F -c <temp>/dovecot.conf` in the foreground. Mail is put in and changed over
//! IMAP itself (APPEND, STORE, EXPUNGE, DELETE/CREATE) with a minimal client on a plain
//! socket, which Dovecot allows because the connection comes from the local host.
//!
//! The Debian package `dovecot-imapd` must be installed; without it the test panics
//! saying so. `sox` and `ffmpeg` make the audio fixtures.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const DOVECOT: &str = "/usr/sbin/dovecot";
const INSTALL_HINT: &str =
    "install the Debian package dovecot-imapd (apt-get install dovecot-imapd)";

/// How to configure the test server.
#[derive(Debug, Clone)]
pub struct DovecotOptions {
    /// `(user, password)` pairs; each gets a Maildir home.
    pub users: Vec<(String, String)>,
    /// `disable_plaintext_auth = no`: LOGIN without TLS from any address.
    pub plaintext_auth: bool,
}

impl Default for DovecotOptions {
    fn default() -> Self {
        DovecotOptions {
            users: vec![
                ("voicemail".to_owned(), "vm-secret-1".to_owned()),
                ("alice".to_owned(), "alice-secret-2".to_owned()),
            ],
            plaintext_auth: false,
        }
    }
}

/// A running Dovecot; stopped (and its folder removed) on drop.
pub struct Dovecot {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// Port of the plain IMAP listener that offers STARTTLS.
    pub imap_port: u16,
    /// Port of the implicit-TLS (IMAPS) listener.
    pub imaps_port: u16,
    /// PEM file of the CA that signed the server certificate.
    pub ca_file: PathBuf,
    /// The users and their passwords.
    pub users: Vec<(String, String)>,
    log_path: PathBuf,
    /// Logins made by this harness itself, per user, so they can be told apart.
    own_logins: Mutex<HashMap<String, usize>>,
}

impl Dovecot {
    /// Starts a server with the default users (`voicemail`, `alice`).
    pub fn start() -> Dovecot {
        Dovecot::start_with(DovecotOptions::default())
    }

    /// Starts a server with these options; panics with the log if it cannot.
    pub fn start_with(options: DovecotOptions) -> Dovecot {
        if !Path::new(DOVECOT).exists() {
            panic!("{DOVECOT} not found: {INSTALL_HINT}");
        }
        let (uid, gid) = passwd_ids("dovecot")
            .unwrap_or_else(|| panic!("no system user 'dovecot': {INSTALL_HINT}"));
        if passwd_ids("dovenull").is_none() {
            panic!("no system user 'dovenull': {INSTALL_HINT}");
        }
        let mut dir = tempfile::Builder::new()
            .prefix("imss-dovecot-")
            .tempdir()
            .expect("temporary folder");
        let root = dir.path().to_owned();
        let ca_file = write_certificates(&root);
        let mut passwd = String::new();
        for (user, password) in &options.users {
            writeln!(passwd, "{user}:{{PLAIN}}{password}::::::").expect("string write");
        }
        fs::write(root.join("users"), passwd).expect("write users");
        for sub in ["home", "run", "state"] {
            fs::create_dir_all(root.join(sub)).expect("create folder");
        }
        chown_tree(&root, uid, gid);
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
        let log_path = root.join("dovecot.log");

        let mut last_log = String::new();
        for attempt in 0..8 {
            let imap_port = free_port();
            let imaps_port = free_port();
            if imap_port == imaps_port {
                continue;
            }
            let config = config(&root, &options, uid, gid, imap_port, imaps_port, attempt);
            fs::write(root.join("dovecot.conf"), config).expect("write dovecot.conf");
            let _ = fs::remove_file(&log_path);
            let child = Command::new(DOVECOT)
                // Its own process group, so that stopping it ends every Dovecot process
                // (client sessions outlive the master otherwise).
                .process_group(0)
                .arg("-F")
                .arg("-c")
                .arg(root.join("dovecot.conf"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(
                    fs::File::create(root.join("dovecot.stderr"))
                        .map(Stdio::from)
                        .unwrap_or_else(|_| Stdio::null()),
                )
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {DOVECOT}: {e}; {INSTALL_HINT}"));
            let mut server = Dovecot {
                dir,
                child: Some(child),
                imap_port,
                imaps_port,
                ca_file: ca_file.clone(),
                users: options.users.clone(),
                log_path: log_path.clone(),
                own_logins: Mutex::new(HashMap::new()),
            };
            match server.wait_ready(Duration::from_secs(15)) {
                Ok(()) => return server,
                Err(why) => {
                    last_log = format!("{why}\n{}", server.log());
                    dir = server.take_dir();
                    if !last_log.contains("in use") {
                        break;
                    }
                }
            }
        }
        panic!("Dovecot did not start:\n{last_log}");
    }

    fn take_dir(mut self) -> tempfile::TempDir {
        self.stop();
        let placeholder = tempfile::Builder::new()
            .prefix("imss-dovecot-spent-")
            .tempdir()
            .expect("temporary folder");
        std::mem::replace(&mut self.dir, placeholder)
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let stderr =
                    fs::read_to_string(self.dir.path().join("dovecot.stderr")).unwrap_or_default();
                return Err(format!("dovecot exited with {status}: {stderr}"));
            }
            let ready = [self.imap_port, self.imaps_port].iter().all(|&port| {
                TcpStream::connect_timeout(
                    &format!("127.0.0.1:{port}").parse().expect("address"),
                    Duration::from_millis(200),
                )
                .is_ok()
            });
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!("ports not accepting after {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The address the listeners are bound to.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The temporary folder holding the configuration, certificates and mail.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A user's password.
    pub fn password(&self, user: &str) -> &str {
        self.users
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, p)| p.as_str())
            .unwrap_or_else(|| panic!("no test user {user}"))
    }

    /// Dovecot's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Successful logins of `user` logged so far, not counting the harness's own.
    pub fn login_count(&self, user: &str) -> usize {
        let needle = format!("Login: user=<{user}>");
        let own = self
            .own_logins
            .lock()
            .map(|m| m.get(user).copied().unwrap_or(0))
            .unwrap_or(0);
        self.log().matches(&needle).count().saturating_sub(own)
    }

    /// Like [`Dovecot::login_count`] after the log has caught up with `expected` (the log
    /// is written by a separate process), or after a short wait.
    pub fn login_count_settled(&self, user: &str, expected: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let n = self.login_count(user);
            if n >= expected || Instant::now() > deadline {
                // One more look so a count above the expectation is seen too.
                std::thread::sleep(Duration::from_millis(100));
                return self.login_count(user);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn raw(&self, user: &str) -> RawImap {
        let mut imap = RawImap::connect(self.imap_port);
        let password = self.password(user).to_owned();
        imap.command(&format!("LOGIN {} {}", quote(user), quote(&password)));
        if let Ok(mut own) = self.own_logins.lock() {
            *own.entry(user.to_owned()).or_default() += 1;
        }
        imap
    }

    /// Creates a mailbox (no error if it exists).
    pub fn create_mailbox(&self, user: &str, mailbox: &str) {
        let mut imap = self.raw(user);
        imap.command_allow_no(&format!("CREATE {}", quote(mailbox)));
        imap.logout();
    }

    /// Appends a message (creating the mailbox if needed) and returns its UID.
    pub fn append(&self, user: &str, mailbox: &str, message: &[u8]) -> u32 {
        self.append_with_flags(user, mailbox, "", message)
    }

    /// Appends a message with flags such as `\Seen` and returns its UID.
    pub fn append_with_flags(&self, user: &str, mailbox: &str, flags: &str, message: &[u8]) -> u32 {
        let mut imap = self.raw(user);
        if !mailbox.eq_ignore_ascii_case("INBOX") {
            imap.command_allow_no(&format!("CREATE {}", quote(mailbox)));
        }
        let uid = imap.append(mailbox, flags, message);
        imap.logout();
        uid
    }

    /// Flags a message `\Deleted` without expunging it.
    pub fn set_deleted_flag(&self, user: &str, mailbox: &str, uid: u32) {
        let mut imap = self.raw(user);
        imap.command(&format!("SELECT {}", quote(mailbox)));
        imap.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
        imap.logout();
    }

    /// Removes a message for good.
    pub fn expunge(&self, user: &str, mailbox: &str, uid: u32) {
        let mut imap = self.raw(user);
        imap.command(&format!("SELECT {}", quote(mailbox)));
        imap.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
        imap.command(&format!("UID EXPUNGE {uid}"));
        imap.logout();
    }

    /// The mailbox's current UIDVALIDITY.
    pub fn uid_validity(&self, user: &str, mailbox: &str) -> u32 {
        let mut imap = self.raw(user);
        let lines = imap.command(&format!("STATUS {} (UIDVALIDITY)", quote(mailbox)));
        imap.logout();
        lines
            .iter()
            .find_map(|l| {
                let rest = &l[l.find("UIDVALIDITY ")? + "UIDVALIDITY ".len()..];
                rest.trim_end_matches([')', '\r', '\n'])
                    .split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no UIDVALIDITY in {lines:?}"))
    }

    /// Deletes and recreates a mailbox (not INBOX): it comes back empty with a new
    /// UIDVALIDITY.
    pub fn recreate_mailbox(&self, user: &str, mailbox: &str) {
        let before = self.uid_validity(user, mailbox);
        let mut imap = self.raw(user);
        imap.command(&format!("DELETE {}", quote(mailbox)));
        imap.command(&format!("CREATE {}", quote(mailbox)));
        imap.logout();
        let after = self.uid_validity(user, mailbox);
        assert_ne!(before, after, "UIDVALIDITY did not change");
    }

    /// Stops the server and every process it started: open IMAP sessions end too.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // The master leads its own process group (see `start_with`).
        let group = format!("-{}", child.id());
        let signal = |name: &str| {
            let _ = Command::new("kill")
                .args([name, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Whatever did not exit on TERM (or outlived the master) goes now.
        signal("-KILL");
        let _ = child.wait();
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(clippy::too_many_arguments)]
fn config(
    root: &Path,
    options: &DovecotOptions,
    uid: u32,
    gid: u32,
    imap_port: u16,
    imaps_port: u16,
    attempt: u32,
) -> String {
    let r = root.display();
    let plaintext = if options.plaintext_auth {
        "disable_plaintext_auth = no\n"
    } else {
        ""
    };
    format!(
        "protocols = imap
listen = 127.0.0.1
instance_name = imss-test-{imap_port}-{attempt}
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/dovecot.log
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
}}
auth_mechanisms = plain login
auth_failure_delay = 0
{plaintext}ssl = yes
ssl_cert = <{r}/server.pem
ssl_key = <{r}/server.key
ssl_min_protocol = TLSv1.2
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {r}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/home/%u
}}
# Repeated failed logins from one address would otherwise be delayed more and more.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
"
    )
}

/// A CA, and a server certificate for 127.0.0.1 and localhost signed by it. Returns the
/// CA's PEM file.
fn write_certificates(root: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "imss test CA");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params");
    params
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    fs::write(root.join("server.pem"), cert.pem()).expect("write server.pem");
    fs::write(root.join("server.key"), key.serialize_pem()).expect("write server.key");
    let ca_file = root.join("ca.pem");
    fs::write(&ca_file, ca.pem()).expect("write ca.pem");
    ca_file
}

/// A CA PEM file the test server's certificate does not chain to.
pub fn unrelated_ca_file(dir: &Path) -> PathBuf {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "unrelated CA");
    let ca = params.self_signed(&key).expect("certificate");
    let path = dir.join("unrelated-ca.pem");
    fs::write(&path, ca.pem()).expect("write CA");
    path
}

fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != user {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some((uid, gid))
    })
}

fn chown_tree(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap_or_else(|e| {
        panic!(
            "chown {}: {e} (the tests run Dovecot and must run as root)",
            path.display()
        )
    });
    if path.is_dir() {
        for entry in fs::read_dir(path).expect("read folder") {
            chown_tree(&entry.expect("folder entry").path(), uid, gid);
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Just enough IMAP to put mail in: line responses, one literal upload for APPEND.
struct RawImap {
    reader: BufReader<TcpStream>,
    tag: u32,
}

impl RawImap {
    fn connect(port: u16) -> RawImap {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to Dovecot");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut imap = RawImap {
            reader: BufReader::new(stream),
            tag: 0,
        };
        let greeting = imap.line();
        assert!(greeting.starts_with("* OK"), "greeting: {greeting}");
        imap
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).expect("read from Dovecot");
        assert!(n > 0, "Dovecot closed the connection");
        line
    }

    fn send(&mut self, bytes: &[u8]) {
        let stream = self.reader.get_mut();
        stream.write_all(bytes).expect("write to Dovecot");
        stream.flush().expect("flush");
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("h{}", self.tag)
    }

    /// Runs a command; returns the untagged lines and the tagged one (last), whatever the
    /// status.
    fn run(&mut self, command: &str) -> Vec<String> {
        let tag = self.next_tag();
        self.send(format!("{tag} {command}\r\n").as_bytes());
        self.until_tagged(&tag)
    }

    fn until_tagged(&mut self, tag: &str) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let done = line.starts_with(&format!("{tag} "));
            // A literal in a response: read its bytes and the rest of the line.
            if let Some(n) = literal_len(&line) {
                let mut skip = vec![0u8; n];
                self.reader.read_exact(&mut skip).expect("literal");
                let rest = self.line();
                lines.push(format!("{line}{rest}"));
                continue;
            }
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    fn command(&mut self, command: &str) -> Vec<String> {
        let lines = self.run(command);
        let last = lines.last().cloned().unwrap_or_default();
        assert!(
            last.split_whitespace().nth(1) == Some("OK"),
            "{command}: {lines:?}"
        );
        lines
    }

    fn command_allow_no(&mut self, command: &str) -> Vec<String> {
        let lines = self.run(command);
        let last = lines.last().cloned().unwrap_or_default();
        assert!(
            matches!(last.split_whitespace().nth(1), Some("OK") | Some("NO")),
            "{command}: {lines:?}"
        );
        lines
    }

    fn append(&mut self, mailbox: &str, flags: &str, message: &[u8]) -> u32 {
        let tag = self.next_tag();
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(" ({flags})")
        };
        self.send(
            format!(
                "{tag} APPEND {}{flags} {{{}}}\r\n",
                quote(mailbox),
                message.len()
            )
            .as_bytes(),
        );
        let go = self.line();
        assert!(go.starts_with('+'), "APPEND refused: {go}");
        self.send(message);
        self.send(b"\r\n");
        let lines = self.until_tagged(&tag);
        let last = lines.last().cloned().unwrap_or_default();
        // `hN OK [APPENDUID <uidvalidity> <uid>] Append completed.`
        let uid = last
            .find("[APPENDUID ")
            .and_then(|i| last[i..].split_whitespace().nth(2))
            .and_then(|s| s.trim_end_matches(']').parse().ok());
        uid.unwrap_or_else(|| panic!("APPEND: {lines:?}"))
    }

    fn logout(mut self) {
        let _ = self.run("LOGOUT");
    }
}

fn literal_len(line: &str) -> Option<usize> {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    let body = trimmed.strip_suffix('}')?;
    let open = body.rfind('{')?;
    body[open + 1..].trim_end_matches('+').parse().ok()
}

// ---------------------------------------------------------------------------------------
// Voicemail test mail.

/// An attachment of a test message.
#[derive(Debug, Clone, Copy)]
pub struct Attachment<'a> {
    /// Content-Type, e.g. `audio/x-wav`.
    pub content_type: &'a str,
    /// File name, e.g. `msg0001.wav`.
    pub file_name: &'a str,
    /// The attachment's bytes (base64-encoded into the message).
    pub data: &'a [u8],
}

/// A message as Asterisk's voicemail writes it: multipart/mixed with a text part and the
/// recording as a base64 attachment, and the `X-Asterisk-VM-*` header fields.
pub fn asterisk_voicemail(
    msg_num: u32,
    caller: &str,
    duration_secs: u32,
    audio: Option<Attachment<'_>>,
) -> Vec<u8> {
    let boundary = format!("----voicemail_{msg_num}123456789");
    let mut m = String::new();
    let _ = write!(
        m,
        "Date: Mon, 01 Jan 2024 12:00:00 +0000\r\n\
From: \"Asterisk PBX\" <asterisk@pbx.example>\r\n\
To: \"Mailbox 1234\" <vm1234@corp.example>\r\n\
Subject: [PBX]: New message {msg_num} in mailbox 1234\r\n\
Message-ID: <Asterisk-{msg_num}-1234-default@pbx.example>\r\n\
X-Asterisk-VM-Message-Num: {msg_num}\r\n\
X-Asterisk-VM-Server-Name: pbx\r\n\
X-Asterisk-VM-Context: default\r\n\
X-Asterisk-VM-Extension: 1234\r\n\
X-Asterisk-VM-Priority: 1\r\n\
X-Asterisk-VM-Caller-channel: PJSIP/trunk-00000001\r\n\
X-Asterisk-VM-Caller-ID-Num: 5551234\r\n\
X-Asterisk-VM-Caller-ID-Name: Alice\r\n\
X-Asterisk-VM-CallerID: {caller}\r\n\
X-Asterisk-VM-Duration: {duration_secs}\r\n\
X-Asterisk-VM-Category: \r\n\
X-Asterisk-VM-Message-Type: Voicemail\r\n\
X-Asterisk-VM-Orig-date: Monday, January 01, 2024 at 12:00:00 PM\r\n\
X-Asterisk-VM-Orig-time: 1704110400\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
\r\n\
--{boundary}\r\n\
Content-Type: text/plain; charset=ISO-8859-1\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
Dear Mailbox 1234:\r\n\
\r\n\
\tjust wanted to let you know you were just left a {duration_secs} second message \
(number {msg_num}) in mailbox 1234 from {caller}.\r\n\
\r\n"
    );
    if let Some(a) = audio {
        let _ = write!(
            m,
            "--{boundary}\r\n\
Content-Type: {ct}; name=\"{name}\"\r\n\
Content-Transfer-Encoding: base64\r\n\
Content-Description: Voicemail sound attachment.\r\n\
Content-Disposition: attachment; filename=\"{name}\"\r\n\
\r\n\
{data}\r\n\
\r\n",
            ct = a.content_type,
            name = a.file_name,
            data = base64_lines(a.data)
        );
    }
    let _ = write!(m, "--{boundary}--\r\n");
    m.into_bytes()
}

/// Base64 in 76-character lines joined by CRLF.
pub fn base64_lines(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut flat = String::with_capacity(data.len() / 3 * 4 + 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= c.len() {
                flat.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                flat.push('=');
            }
        }
    }
    let mut out = String::with_capacity(flat.len() + flat.len() / 76 * 2);
    for (i, line) in flat.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.push_str("\r\n");
        }
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
    }
    out
}

fn run_tool(program: &str, package: &str, args: &[&str]) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {program}: {e}; install the Debian package {package}")
        });
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A 16-bit mono WAV sine made by sox.
pub fn wav_sine(dir: &Path, name: &str, rate: u32, secs: f32) -> Vec<u8> {
    let path = dir.join(name);
    let p = path.to_str().expect("UTF-8 path");
    run_tool(
        "sox",
        "sox",
        &[
            "-n",
            "-r",
            &rate.to_string(),
            "-c",
            "1",
            "-b",
            "16",
            p,
            "synth",
            &secs.to_string(),
            "sine",
            "440",
        ],
    );
    fs::read(&path).expect("read WAV")
}

/// GSM 06.10 in WAV (Asterisk's WAV49) made by sox from a sine.
pub fn wav49_sine(dir: &Path, name: &str, secs: f32) -> Vec<u8> {
    let source = dir.join(format!("{name}.src.wav"));
    let s = source.to_str().expect("UTF-8 path");
    run_tool(
        "sox",
        "sox",
        &[
            "-n",
            "-r",
            "8000",
            "-c",
            "1",
            "-b",
            "16",
            s,
            "synth",
            &secs.to_string(),
            "sine",
            "440",
        ],
    );
    let path = dir.join(name);
    let p = path.to_str().expect("UTF-8 path");
    run_tool("sox", "sox", &[s, "-e", "gsm-full-rate", p]);
    fs::read(&path).expect("read WAV49")
}

/// An MP3 sine made by ffmpeg.
pub fn mp3_sine(dir: &Path, name: &str, secs: f32) -> Vec<u8> {
    let path = dir.join(name);
    let p = path.to_str().expect("UTF-8 path");
    let source = format!("sine=frequency=440:duration={secs}");
    run_tool(
        "ffmpeg",
        "ffmpeg",
        &[
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            &source,
            "-ac",
            "1",
            "-ar",
            "22050",
            "-c:a",
            "libmp3lame",
            "-b:a",
            "32k",
            p,
        ],
    );
    fs::read(&path).expect("read MP3")
}
