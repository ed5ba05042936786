//! The file-based mail store: message files, Maildirs, and paths that try to leave the
//! root.

mod dovecot;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use dovecot::{Attachment, asterisk_voicemail};
use imss_mail::{FbmcUri, FileMailStore, MailError, MailStore};

const MB: u64 = 1024 * 1024;

fn voicemail(tag: u8) -> (Vec<u8>, Vec<u8>) {
    let audio: Vec<u8> = b"RIFF"
        .iter()
        .copied()
        .chain((0..3000u32).map(|i| (i as u8).wrapping_mul(tag)))
        .collect();
    let message = asterisk_voicemail(
        u32::from(tag),
        "\"Bob\" <5550000>",
        3,
        Some(Attachment {
            content_type: "audio/x-wav",
            file_name: "msg0001.wav",
            data: &audio,
        }),
    );
    (audio, message)
}

fn fetch(store: &FileMailStore, uri: &str) -> Result<imss_mail::FetchedMessage, MailError> {
    store.fetch_audio(&FbmcUri::parse(uri).expect("valid fbmc URI"), MB)
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().expect("parent")).expect("create folder");
    fs::write(path, bytes).expect("write");
}

#[test]
fn message_files_eml_and_bare() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, ma) = voicemail(1);
    let (b, mb) = voicemail(2);
    write(&dir.path().join("1234/INBOX/msg0001.eml"), &ma);
    write(&dir.path().join("1234/INBOX/msg0002"), &mb);
    let store = FileMailStore::new(dir.path());

    let first = fetch(&store, "fbmc:1234/INBOX/msg0001").expect("eml");
    assert_eq!(first.parts[0].data, a);
    assert_eq!(first.parts[0].section, "2");
    assert_eq!(first.info.caller_id(), Some("\"Bob\" <5550000>"));
    assert_eq!(first.info.asterisk_field("Message-Num"), Some("1"));
    let second = fetch(&store, "fbmc:1234/INBOX/msg0002").expect("bare");
    assert_eq!(second.parts[0].data, b);
}

#[test]
fn maildir_messages_and_trashed_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (a, ma) = voicemail(3);
    let (b, mb) = voicemail(4);
    let (_, mc) = voicemail(5);
    let inbox = dir.path().join("vm");
    write(&inbox.join("cur/1700000001.M1P1.pbx,S=100,W=102:2,S"), &ma);
    write(&inbox.join("new/1700000002.M2P1.pbx"), &mb);
    write(&inbox.join("cur/1700000003.M3P1.pbx:2,ST"), &mc);
    fs::create_dir_all(inbox.join("tmp")).expect("tmp");
    let store = FileMailStore::new(dir.path());

    assert_eq!(
        fetch(&store, "fbmc:vm/1700000001.M1P1.pbx")
            .expect("cur")
            .parts[0]
            .data,
        a
    );
    assert_eq!(
        fetch(&store, "fbmc:vm/1700000002.M2P1.pbx")
            .expect("new")
            .parts[0]
            .data,
        b
    );
    let err = fetch(&store, "fbmc:vm/1700000003.M3P1.pbx").expect_err("trashed");
    assert!(matches!(err, MailError::Deleted { .. }), "{err:?}");
    // A prefix of a unique name is not that message.
    let err = fetch(&store, "fbmc:vm/1700000001.M1P").expect_err("prefix");
    assert!(matches!(err, MailError::NotFound { .. }), "{err:?}");
}

#[test]
fn missing_messages_and_mailboxes_name_the_uri() {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir_all(dir.path().join("vm")).expect("mailbox");
    let store = FileMailStore::new(dir.path());
    let err = fetch(&store, "fbmc:vm/nothing").expect_err("missing");
    assert!(
        matches!(&err, MailError::NotFound { uri } if uri == "fbmc:vm/nothing"),
        "{err:?}"
    );
    assert!(err.to_string().contains("fbmc:vm/nothing"), "{err}");
    let err = fetch(&store, "fbmc:nobox/x").expect_err("no mailbox");
    assert!(matches!(err, MailError::MailboxNotFound { .. }), "{err:?}");
}

#[test]
fn paths_never_leave_the_root() {
    let outside = tempfile::tempdir().expect("temp dir");
    let (_, message) = voicemail(6);
    write(&outside.path().join("secret.eml"), &message);
    write(&outside.path().join("box/secret.eml"), &message);

    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("root");
    write(&root.join("vm/ok.eml"), &message);
    symlink(outside.path().join("secret.eml"), root.join("vm/link.eml")).expect("symlink");
    symlink(outside.path().join("box"), root.join("escape")).expect("symlink");
    symlink(root.join("vm/ok.eml"), root.join("vm/inside.eml")).expect("symlink");
    let store = FileMailStore::new(&root);

    let outside_name = outside
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .expect("name");
    for uri in [
        "fbmc:../secret/x".to_owned(),
        format!("fbmc:vm/..%2F..%2F{outside_name}%2Fsecret"),
        format!("fbmc:../{outside_name}/secret"),
        "fbmc:vm/../vm/ok".to_owned(),
        "fbmc:./vm/ok".to_owned(),
        "fbmc:vm//ok".to_owned(),
        "fbmc:vm/..".to_owned(),
        "fbmc:/etc/passwd".to_owned(),
        "fbmc:vm/link".to_owned(),
        "fbmc:escape/secret".to_owned(),
    ] {
        let err = fetch(&store, &uri).expect_err(&uri);
        assert!(
            matches!(err, MailError::PathEscape { .. }),
            "{uri}: {err:?}"
        );
    }
    // A link that stays inside the root is fine.
    fetch(&store, "fbmc:vm/inside").expect("link inside the root");
}

#[test]
fn size_bound_and_messages_without_audio() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, message) = voicemail(7);
    write(&dir.path().join("vm/a.eml"), &message);
    write(
        &dir.path().join("vm/b.eml"),
        &asterisk_voicemail(8, "5550000", 0, None),
    );
    let store = FileMailStore::new(dir.path());
    let err = store
        .fetch_audio(&FbmcUri::parse("fbmc:vm/a").expect("uri"), 1000)
        .expect_err("too large");
    assert!(
        matches!(err, MailError::TooLarge { size, limit: 1000, .. } if size == message.len() as u64),
        "{err:?}"
    );
    let err = fetch(&store, "fbmc:vm/b").expect_err("no audio");
    assert!(matches!(err, MailError::NoAudio { .. }), "{err:?}");
}

#[tokio::test]
async fn the_mail_store_front_reads_fbmc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (audio, message) = voicemail(9);
    write(&dir.path().join("vm/cur/1.M1.pbx:2,"), &message);
    let store = MailStore::new(None, Some(dir.path().to_owned())).expect("store");
    let fetched = store
        .fetch_audio("fbmc:vm/1.M1.pbx", MB)
        .await
        .expect("fetch");
    assert_eq!(fetched.parts[0].data, audio);
    let err = store
        .fetch_audio("imap://h/INBOX/;UID=1", MB)
        .await
        .expect_err("no IMAP configured");
    assert!(
        matches!(err, MailError::NotConfigured { scheme: "imap" }),
        "{err:?}"
    );
}
