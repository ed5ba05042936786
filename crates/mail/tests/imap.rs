//! The IMAP client against a real Dovecot, one server per test.

mod dovecot;

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use dovecot::{Attachment, Dovecot, DovecotOptions, asterisk_voicemail};
use imss_mail::{
    AuthMethod, ConnectionStep, ImapClient, ImapSettings, ImapUrl, MailError, MailStore, TlsMode,
    test_connection,
};

const USER: &str = "voicemail";
const MB: u64 = 1024 * 1024;

fn settings(server: &Dovecot, tls: TlsMode) -> ImapSettings {
    ImapSettings {
        host: server.host().to_owned(),
        port: match tls {
            TlsMode::Implicit => server.imaps_port,
            TlsMode::StartTls | TlsMode::None => server.imap_port,
        },
        tls,
        ca_file: Some(server.ca_file.clone()),
        user: USER.to_owned(),
        password: server.password(USER).to_owned(),
        connect_timeout: Duration::from_secs(3),
        read_timeout: Duration::from_secs(3),
        ..ImapSettings::default()
    }
}

fn url(text: &str) -> ImapUrl {
    ImapUrl::parse(text).expect("valid URL")
}

fn inbox_url(server: &Dovecot, uid: u32) -> ImapUrl {
    url(&format!("imap://{}/INBOX/;UID={uid}", server.host()))
}

fn wav_message(dir: &std::path::Path, msg_num: u32) -> (Vec<u8>, Vec<u8>) {
    let wav = dovecot::wav_sine(dir, &format!("m{msg_num}.wav"), 8000, 1.0);
    let message = asterisk_voicemail(
        msg_num,
        "\"Alice\" <5551234>",
        1,
        Some(Attachment {
            content_type: "audio/x-wav",
            file_name: &format!("msg{msg_num:04}.wav"),
            data: &wav,
        }),
    );
    (wav, message)
}

/// WAV, WAV49 and MP3 voicemail fetched over one transport, each byte-exact.
async fn fetch_all_formats(tls: TlsMode, auth: AuthMethod, options: DovecotOptions) {
    let server = Dovecot::start_with(options);
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dovecot::wav_sine(dir.path(), "a.wav", 8000, 1.0);
    let wav49 = dovecot::wav49_sine(dir.path(), "b.wav", 1.0);
    let mp3 = dovecot::mp3_sine(dir.path(), "c.mp3", 1.0);
    let cases = [
        ("audio/x-wav", "msg0001.wav", &wav),
        ("audio/x-wav", "msg0002.WAV", &wav49),
        ("audio/mpeg", "msg0003.mp3", &mp3),
    ];
    let mut uids = Vec::new();
    for (i, (content_type, file_name, data)) in cases.iter().enumerate() {
        let message = asterisk_voicemail(
            i as u32 + 1,
            "\"Alice\" <5551234>",
            7,
            Some(Attachment {
                content_type,
                file_name,
                data,
            }),
        );
        uids.push(server.append(USER, "INBOX", &message));
    }
    let client = ImapClient::new(ImapSettings {
        auth,
        ..settings(&server, tls)
    })
    .expect("client");
    for (uid, (content_type, file_name, data)) in uids.iter().zip(cases.iter()) {
        let fetched = client
            .fetch_audio(&inbox_url(&server, *uid), 10 * MB)
            .await
            .unwrap_or_else(|e| panic!("{tls:?} UID {uid}: {e}"));
        assert_eq!(fetched.parts.len(), 1);
        let part = &fetched.parts[0];
        assert_eq!(part.section, "2");
        assert_eq!(part.content_type, *content_type);
        assert_eq!(part.file_name.as_deref(), Some(*file_name));
        assert!(part.data == **data, "{file_name}: bytes differ");
        assert_eq!(fetched.info.caller_id(), Some("\"Alice\" <5551234>"));
        assert_eq!(fetched.info.duration_secs(), Some(7));
        assert_eq!(
            fetched.info.from_address.as_deref(),
            Some("asterisk@pbx.example")
        );
        assert_eq!(
            fetched
                .info
                .asterisk_field("Message-Num")
                .map(str::to_owned),
            Some((uids.iter().position(|u| u == uid).unwrap_or(0) + 1).to_string())
        );
    }
}

#[tokio::test]
async fn implicit_tls_fetches_wav_wav49_and_mp3_byte_exact() {
    fetch_all_formats(
        TlsMode::Implicit,
        AuthMethod::Login,
        DovecotOptions::default(),
    )
    .await;
}

#[tokio::test]
async fn starttls_with_authenticate_plain_fetches_byte_exact() {
    fetch_all_formats(
        TlsMode::StartTls,
        AuthMethod::Plain,
        DovecotOptions::default(),
    )
    .await;
}

#[tokio::test]
async fn plain_tcp_fetches_when_the_server_allows_it() {
    fetch_all_formats(
        TlsMode::None,
        AuthMethod::Login,
        DovecotOptions {
            plaintext_auth: true,
            ..DovecotOptions::default()
        },
    )
    .await;
}

#[tokio::test]
async fn section_fetch_returns_only_that_part() {
    let server = Dovecot::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (wav, message) = wav_message(dir.path(), 1);
    let uid = server.append(USER, "INBOX", &message);
    let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");

    let base = format!("imap://{}/INBOX/;UID={uid}", server.host());
    let fetched = client
        .fetch_audio(&url(&format!("{base}/;SECTION=2")), 10 * MB)
        .await
        .expect("section 2");
    assert_eq!(fetched.parts.len(), 1);
    assert_eq!(fetched.parts[0].section, "2");
    assert_eq!(fetched.parts[0].content_type, "audio/x-wav");
    assert_eq!(fetched.parts[0].file_name.as_deref(), Some("msg0001.wav"));
    assert!(fetched.parts[0].data == wav, "bytes differ");
    assert_eq!(fetched.info.caller_id(), Some("\"Alice\" <5551234>"));

    let text = client
        .fetch_audio(&url(&format!("{base}/;SECTION=1")), 10 * MB)
        .await;
    assert!(matches!(text, Err(MailError::NoAudio { .. })), "{text:?}");
    let missing = client
        .fetch_audio(&url(&format!("{base}/;SECTION=9")), 10 * MB)
        .await;
    assert!(
        matches!(missing, Err(MailError::NotFound { .. })),
        "{missing:?}"
    );
    let small = client
        .fetch_audio(&url(&format!("{base}/;SECTION=2")), 1000)
        .await;
    assert!(
        matches!(small, Err(MailError::TooLarge { .. })),
        "{small:?}"
    );
}

/// Audio in a nested multipart (quoted-printable), in an untyped part with an audio file
/// name, and inside an attached message.
const NESTED: &[u8] = b"From: a@b.example\r\n\
Subject: nested\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=outer\r\n\
\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\
\r\n\
--inner\r\n\
Content-Type: text/plain\r\n\
\r\n\
text\r\n\
--inner\r\n\
Content-Type: application/octet-stream; name=\"a.GSM\"\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
ab=3Dc=\r\n\
d\r\n\
--inner--\r\n\
--outer\r\n\
Content-Disposition: attachment; filename=\"b.au\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AAEC/w==\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"c.wav.pdf\"\r\n\
\r\n\
%PDF\r\n\
--outer\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: c@d.example\r\n\
Content-Type: audio/basic\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
AQID\r\n\
--outer--\r\n";

#[tokio::test]
async fn nested_parts_are_numbered_alike_from_mime_and_bodystructure() {
    let server = Dovecot::start();
    let uid = server.append(USER, "INBOX", NESTED);
    let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");
    let base = format!("imap://{}/INBOX/;UID={uid}", server.host());
    let whole = client.fetch_audio(&url(&base), MB).await.expect("whole");
    let sections: Vec<&str> = whole.parts.iter().map(|p| p.section.as_str()).collect();
    assert_eq!(sections, ["1.2", "2", "4.1"]);
    assert_eq!(whole.parts[0].data, b"ab=cd");
    assert_eq!(whole.parts[1].data, [0, 1, 2, 255]);
    assert_eq!(whole.parts[2].data, [1, 2, 3]);
    for part in &whole.parts {
        let link = url(&format!("{base}/;SECTION={}", part.section));
        let one = client.fetch_audio(&link, MB).await.expect("section");
        assert_eq!(
            one.parts,
            std::slice::from_ref(part),
            "section {}",
            part.section
        );
        let (info, mut rx) = client
            .fetch_part_stream(&link, None, MB)
            .await
            .expect("stream");
        assert_eq!(info.section, part.section);
        let mut streamed = Vec::new();
        while let Some(chunk) = rx.recv().await {
            streamed.extend(chunk.expect("chunk"));
        }
        assert_eq!(streamed, part.data, "section {}", part.section);
    }
    let (first, _rx) = client
        .fetch_part_stream(&url(&base), None, MB)
        .await
        .expect("first audio part");
    assert_eq!(first.section, "1.2");
    let pdf = client
        .fetch_audio(&url(&format!("{base}/;SECTION=3")), MB)
        .await;
    assert!(matches!(pdf, Err(MailError::NoAudio { .. })), "{pdf:?}");

    // The same parts, listed without downloading a body, with the message's header.
    let (header, listed) = client.audio_parts(&url(&base), MB).await.expect("parts");
    assert_eq!(header.from_address.as_deref(), Some("a@b.example"));
    assert_eq!(header.subject.as_deref(), Some("nested"));
    let listed: Vec<(&str, &str, Option<&str>)> = listed
        .iter()
        .map(|p| {
            (
                p.section.as_str(),
                p.content_type.as_str(),
                p.file_name.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("1.2", "application/octet-stream", Some("a.GSM")),
            ("2", "application/octet-stream", Some("b.au")),
            ("4.1", "audio/basic", None),
        ]
    );
    let (_, one) = client
        .audio_parts(&url(&format!("{base}/;SECTION=2")), MB)
        .await
        .expect("one part");
    assert_eq!(one.len(), 1);
    let none = client
        .audio_parts(&url(&format!("{base}/;SECTION=3")), MB)
        .await;
    assert!(matches!(none, Err(MailError::NoAudio { .. })), "{none:?}");
    let large = client.audio_parts(&url(&base), 4).await;
    assert!(
        matches!(large, Err(MailError::TooLarge { .. })),
        "{large:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_a_large_part_gives_the_same_bytes_while_it_arrives() {
    let server = Dovecot::start();
    let dir = tempfile::tempdir().expect("temp dir");
    // 16-bit mono at 8 kHz: 64 s is about 1 MB.
    let wav = dovecot::wav_sine(dir.path(), "big.wav", 8000, 64.0);
    assert!(wav.len() > 1_000_000);
    let message = asterisk_voicemail(
        1,
        "5551234",
        64,
        Some(Attachment {
            content_type: "audio/x-wav",
            file_name: "msg0001.wav",
            data: &wav,
        }),
    );
    let uid = server.append(USER, "INBOX", &message);
    let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");
    let whole = client
        .fetch_audio(&inbox_url(&server, uid), 10 * MB)
        .await
        .expect("whole message");

    // No section given: the first audio part is found from BODYSTRUCTURE.
    let (info, mut rx) = client
        .fetch_part_stream(&inbox_url(&server, uid), None, 10 * MB)
        .await
        .expect("stream");
    assert_eq!(info.section, "2");
    assert_eq!(info.content_type, "audio/x-wav");
    assert_eq!(info.file_name.as_deref(), Some("msg0001.wav"));
    assert!(info.encoded_size > wav.len() as u64);

    let mut streamed = Vec::new();
    let mut chunks = 0;
    let mut first_len = None;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.expect("chunk");
        if first_len.is_none() {
            first_len = Some(chunk.len());
            // The first chunk is here while most of the part is still on the server.
            assert!(
                chunk.len() < wav.len() / 4,
                "first chunk {} bytes",
                chunk.len()
            );
        }
        chunks += 1;
        streamed.extend_from_slice(&chunk);
    }
    assert!(chunks >= 10, "only {chunks} chunks");
    assert!(
        streamed == whole.parts[0].data,
        "streamed bytes differ from the full fetch"
    );
    assert!(streamed == wav, "streamed bytes differ from the file");

    // The session went back to the pool: one login served all three requests.
    assert_eq!(client.stats().logins, 1);
    let (_, mut rx) = client
        .fetch_part_stream(&inbox_url(&server, uid), Some("2"), 10 * MB)
        .await
        .expect("stream with section");
    let mut again = Vec::new();
    while let Some(chunk) = rx.recv().await {
        again.extend(chunk.expect("chunk"));
    }
    assert!(again == wav);
    let text = client
        .fetch_part_stream(&inbox_url(&server, uid), Some("1"), 10 * MB)
        .await;
    assert!(
        matches!(text, Err(MailError::NoAudio { .. })),
        "{:?}",
        text.err()
    );
    let small = client
        .fetch_part_stream(&inbox_url(&server, uid), None, 100_000)
        .await;
    assert!(
        matches!(small, Err(MailError::TooLarge { .. })),
        "{:?}",
        small.err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_stopping_mid_stream_ends_the_stream_with_an_error() {
    let mut server = Dovecot::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dovecot::wav_sine(dir.path(), "big.wav", 8000, 64.0);
    let message = asterisk_voicemail(
        1,
        "5551234",
        64,
        Some(Attachment {
            content_type: "audio/x-wav",
            file_name: "msg0001.wav",
            data: &wav,
        }),
    );
    let uid = server.append(USER, "INBOX", &message);
    let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");
    let (_, mut rx) = client
        .fetch_part_stream(&inbox_url(&server, uid), None, 10 * MB)
        .await
        .expect("stream");
    let first = rx
        .recv()
        .await
        .expect("first chunk")
        .expect("first chunk ok");
    assert!(!first.is_empty());
    server.stop();

    let started = Instant::now();
    let mut received = first.len();
    let outcome = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(item) = rx.recv().await {
            match item {
                Ok(chunk) => received += chunk.len(),
                Err(e) => return Some(e),
            }
        }
        None
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the stream hung after the server stopped:\n{}",
            server.log()
        )
    });
    let error = outcome.unwrap_or_else(|| {
        panic!(
            "the stream ended without an error after {received} bytes:\n{}",
            server.log()
        )
    });
    assert!(
        matches!(error, MailError::Closed { .. } | MailError::Timeout { .. }),
        "{error:?}"
    );
    assert!(received < wav.len(), "everything arrived before the stop");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn wrong_password_is_an_auth_error_that_never_shows_the_password() {
    let server = Dovecot::start();
    let wrong = "not-the-Password-42";
    for (tls, auth) in [
        (TlsMode::Implicit, AuthMethod::Login),
        (TlsMode::StartTls, AuthMethod::Plain),
    ] {
        let client = ImapClient::new(ImapSettings {
            password: wrong.to_owned(),
            auth,
            ..settings(&server, tls)
        })
        .expect("client");
        let err = client
            .fetch_audio(&inbox_url(&server, 1), MB)
            .await
            .expect_err("login must fail");
        assert!(
            matches!(&err, MailError::Auth { user, .. } if user == USER),
            "{err:?}"
        );
        let text = format!("{err} / {err:?} / {client:?}");
        assert!(text.contains("login rejected for user voicemail"), "{text}");
        assert!(!text.contains(wrong), "password leaked: {text}");
    }

    // A user in the URL without a configured password.
    let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");
    let err = client
        .fetch_audio(
            &url(&format!("imap://bob@{}/INBOX/;UID=1", server.host())),
            MB,
        )
        .await
        .expect_err("no password for bob");
    assert!(
        matches!(&err, MailError::Auth { user, .. } if user == "bob"),
        "{err:?}"
    );
}

#[tokio::test]
async fn per_user_passwords_log_in_as_the_user_in_the_url() {
    let server = Dovecot::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (wav, message) = wav_message(dir.path(), 1);
    let uid = server.append("alice", "INBOX", &message);
    let mut users = BTreeMap::new();
    users.insert("alice".to_owned(), server.password("alice").to_owned());
    let client = ImapClient::new(ImapSettings {
        users,
        ..settings(&server, TlsMode::Implicit)
    })
    .expect("client");
    let fetched = client
        .fetch_audio(
            &url(&format!("imap://alice@{}/INBOX/;UID={uid}", server.host())),
            MB,
        )
        .await
        .expect("alice's message");
    assert!(fetched.parts[0].data == wav);
    assert_eq!(server.login_count_settled("alice", 1), 1);
    assert_eq!(server.login_count(USER), 0);
}

#[tokio::test]
async fn untrusted_certificates_are_tls_errors_unless_verification_is_off() {
    let server = Dovecot::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (wav, message) = wav_message(dir.path(), 1);
    let uid = server.append(USER, "INBOX", &message);

    for (tls, ca_file) in [
        (TlsMode::Implicit, None),
        (TlsMode::StartTls, None),
        (
            TlsMode::Implicit,
            Some(dovecot::unrelated_ca_file(dir.path())),
        ),
    ] {
        let client = ImapClient::new(ImapSettings {
            ca_file,
            ..settings(&server, tls)
        })
        .expect("client");
        let err = client
            .fetch_audio(&inbox_url(&server, uid), MB)
            .await
            .expect_err("certificate must be refused");
        assert!(matches!(err, MailError::Tls { .. }), "{tls:?}: {err:?}");
        assert!(err.to_string().contains("certificate"), "{err}");
    }

    let client = ImapClient::new(ImapSettings {
        ca_file: None,
        verify_certificates: false,
        ..settings(&server, TlsMode::Implicit)
    })
    .expect("client");
    let fetched = client
        .fetch_audio(&inbox_url(&server, uid), MB)
        .await
        .expect("verification off");
    assert!(fetched.parts[0].data == wav);
}

#[tokio::test]
async fn uidvalidity_mismatch_is_reported_with_both_values() {
    let server = Dovecot::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, message) = wav_message(dir.path(), 1);
    let uid = server.append(USER, "Voice Mail/2024", &message);
    let before = server.uid_validity(USER, "Voice Mail/2024");
    let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");
    let link = url(&format!(
        "imap://{}/Voice%20Mail/2024;UIDVALIDITY={before}/;UID={uid}",
        server.host()
    ));
    client
        .fetch_audio(&link, MB)
        .await
        .expect("matching UIDVALIDITY");

    server.recreate_mailbox(USER, "Voice Mail/2024");
    let uid_again = server.append(USER, "Voice Mail/2024", &message);
    assert_eq!(uid_again, uid, "a recreated mailbox starts its UIDs again");
    let after = server.uid_validity(USER, "Voice Mail/2024");
    let err = client.fetch_audio(&link, MB).await.expect_err("mismatch");
    match err {
        MailError::UidValidityChanged {
            expected, actual, ..
        } => {
            assert_eq!(expected, before);
            assert_eq!(actual, after);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn missing_deleted_expunged_and_missing_mailbox() {
    let server = Dovecot::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, message) = wav_message(dir.path(), 1);
    let kept = server.append(USER, "INBOX", &message);
    let flagged = server.append(USER, "INBOX", &message);
    let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");

    let err = client
        .fetch_audio(&inbox_url(&server, 999), MB)
        .await
        .expect_err("no UID 999");
    assert!(
        matches!(&err, MailError::NotFound { uri } if uri.contains(";UID=999")),
        "{err:?}"
    );

    server.set_deleted_flag(USER, "INBOX", flagged);
    let err = client
        .fetch_audio(&inbox_url(&server, flagged), MB)
        .await
        .expect_err("flagged deleted");
    assert!(matches!(err, MailError::Deleted { .. }), "{err:?}");

    client
        .fetch_audio(&inbox_url(&server, kept), MB)
        .await
        .expect("present");
    server.expunge(USER, "INBOX", kept);
    let err = client
        .fetch_audio(&inbox_url(&server, kept), MB)
        .await
        .expect_err("expunged");
    assert!(matches!(err, MailError::NotFound { .. }), "{err:?}");

    let err = client
        .fetch_audio(
            &url(&format!("imap://{}/Nowhere/;UID=1", server.host())),
            MB,
        )
        .await
        .expect_err("no mailbox");
    assert!(
        matches!(&err, MailError::MailboxNotFound { mailbox, .. } if mailbox == "Nowhere"),
        "{err:?}"
    );
    // None of these answers cost a new login.
    assert_eq!(client.stats().logins, 1);
}

#[tokio::test]
async fn too_large_is_refused_before_the_body_is_downloaded() {
    let server = Dovecot::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dovecot::wav_sine(dir.path(), "big.wav", 8000, 20.0);
    let message = asterisk_voicemail(
        1,
        "5551234",
        20,
        Some(Attachment {
            content_type: "audio/x-wav",
            file_name: "msg0001.wav",
            data: &wav,
        }),
    );
    let uid = server.append(USER, "INBOX", &message);
    {
        let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");
        let err = client
            .fetch_audio(&inbox_url(&server, uid), 100_000)
            .await
            .expect_err("too large");
        match err {
            MailError::TooLarge { size, limit, .. } => {
                assert_eq!(size, message.len() as u64);
                assert_eq!(limit, 100_000);
            }
            other => panic!("{other:?}"),
        }
    }
    // The client is gone, so Dovecot logs what the session sent: no body, and far less
    // than the message.
    let deadline = Instant::now() + Duration::from_secs(5);
    let line = loop {
        let log = server.log();
        if let Some(line) = log
            .lines()
            .find(|l| l.contains(&format!("imap({USER})")) && l.contains("Disconnected"))
        {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no disconnect in the log:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(line.contains("body_count=0"), "{line}");
    let out: u64 = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("out="))
        .and_then(|n| n.trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no out= in {line}"));
    assert!(
        out < 20_000,
        "{out} bytes sent for a {} byte message",
        message.len()
    );
}

#[tokio::test]
async fn a_message_without_audio_is_no_audio() {
    let server = Dovecot::start();
    let uid = server.append(USER, "INBOX", &asterisk_voicemail(1, "5551234", 0, None));
    let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");
    let err = client
        .fetch_audio(&inbox_url(&server, uid), MB)
        .await
        .expect_err("no audio");
    assert!(matches!(err, MailError::NoAudio { .. }), "{err:?}");
    let err = client
        .fetch_part_stream(&inbox_url(&server, uid), None, MB)
        .await
        .expect_err("no audio");
    assert!(matches!(err, MailError::NoAudio { .. }), "{err:?}");
}

#[tokio::test]
async fn the_pool_reuses_one_login_for_sequential_fetches() {
    let server = Dovecot::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (wav, message) = wav_message(dir.path(), 1);
    let uid = server.append(USER, "INBOX", &message);
    let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");
    for _ in 0..5 {
        let fetched = client
            .fetch_audio(&inbox_url(&server, uid), MB)
            .await
            .expect("fetch");
        assert!(fetched.parts[0].data == wav);
    }
    let stats = client.stats();
    assert_eq!(stats.logins, 1);
    assert_eq!(stats.reuses, 4);
    assert_eq!(stats.idle, 1);
    assert_eq!(server.login_count_settled(USER, 1), 1, "{}", server.log());

    // A session idle past idle_keepalive is checked with NOOP and still reused.
    let client = ImapClient::new(ImapSettings {
        idle_keepalive: Duration::ZERO,
        ..settings(&server, TlsMode::Implicit)
    })
    .expect("client");
    for _ in 0..2 {
        client
            .fetch_audio(&inbox_url(&server, uid), MB)
            .await
            .expect("fetch");
    }
    assert_eq!(client.stats().logins, 1);
    assert_eq!(server.login_count_settled(USER, 2), 2);
}

#[tokio::test]
async fn a_url_for_another_server_is_refused_without_connecting() {
    let server = Dovecot::start();
    let client = ImapClient::new(settings(&server, TlsMode::Implicit)).expect("client");
    for other in [
        "imap://mail.example/INBOX/;UID=1".to_owned(),
        format!("imap://{}:1/INBOX/;UID=1", server.host()),
    ] {
        let err = client
            .fetch_audio(&url(&other), MB)
            .await
            .expect_err("other server");
        assert!(
            matches!(err, MailError::ServerNotConfigured { .. }),
            "{err:?}"
        );
    }
    assert_eq!(client.stats().logins, 0);
}

#[tokio::test]
async fn a_silent_server_times_out_within_read_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let client = ImapClient::new(ImapSettings {
        host: "127.0.0.1".to_owned(),
        port,
        tls: TlsMode::None,
        user: USER.to_owned(),
        password: "x".to_owned(),
        read_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_millis(500),
        ..ImapSettings::default()
    })
    .expect("client");
    let started = Instant::now();
    let err = client
        .fetch_audio(&url(&format!("imap://127.0.0.1:{port}/INBOX/;UID=1")), MB)
        .await
        .expect_err("no greeting");
    assert!(matches!(err, MailError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(listener);
}

#[tokio::test]
async fn connection_test_reports_the_failing_step() {
    let server = Dovecot::start();
    let ok = test_connection(&settings(&server, TlsMode::StartTls))
        .await
        .expect("report");
    assert!(ok.is_ok(), "{ok:?}");
    let steps: Vec<ConnectionStep> = ok.steps.iter().map(|s| s.step).collect();
    assert_eq!(
        steps,
        [
            ConnectionStep::Dns,
            ConnectionStep::Tcp,
            ConnectionStep::Tls,
            ConnectionStep::Login,
            ConnectionStep::Mailbox
        ]
    );

    let wrong = test_connection(&ImapSettings {
        password: "wrong-password-123".to_owned(),
        ..settings(&server, TlsMode::Implicit)
    })
    .await
    .expect("report");
    assert_eq!(wrong.failed, Some(ConnectionStep::Login));
    assert!(!format!("{wrong:?}").contains("wrong-password-123"));

    let untrusted = test_connection(&ImapSettings {
        ca_file: None,
        ..settings(&server, TlsMode::Implicit)
    })
    .await
    .expect("report");
    assert_eq!(untrusted.failed, Some(ConnectionStep::Tls), "{untrusted:?}");

    let closed_port = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let refused = test_connection(&ImapSettings {
        port: closed_port,
        ..settings(&server, TlsMode::Implicit)
    })
    .await
    .expect("report");
    assert_eq!(refused.failed, Some(ConnectionStep::Tcp), "{refused:?}");
    assert!(matches!(refused.error, Some(MailError::Connect { .. })));

    let unknown = test_connection(&ImapSettings {
        host: "no-such-host.invalid".to_owned(),
        ..settings(&server, TlsMode::Implicit)
    })
    .await
    .expect("report");
    assert_eq!(unknown.failed, Some(ConnectionStep::Dns), "{unknown:?}");
}

#[tokio::test]
async fn the_mail_store_serves_imap_and_fbmc_alike() {
    let server = Dovecot::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let (wav, message) = wav_message(dir.path(), 1);
    let uid = server.append(USER, "INBOX", &message);
    let root = dir.path().join("mail");
    std::fs::create_dir_all(root.join("1234")).expect("mailbox folder");
    std::fs::write(root.join("1234/msg0001.eml"), &message).expect("write message");

    let store =
        MailStore::new(Some(settings(&server, TlsMode::Implicit)), Some(root)).expect("store");
    let from_imap = store
        .fetch_audio(&format!("imap://{}/INBOX/;UID={uid}", server.host()), MB)
        .await
        .expect("imap");
    let from_files = store
        .fetch_audio("fbmc:1234/msg0001", MB)
        .await
        .expect("fbmc");
    assert_eq!(from_imap, from_files);
    assert!(from_files.parts[0].data == wav);

    let unconfigured = MailStore::new(None, None).expect("store");
    let err = unconfigured
        .fetch_audio("fbmc:1234/msg0001", MB)
        .await
        .expect_err("no root");
    assert!(
        matches!(err, MailError::NotConfigured { scheme: "fbmc" }),
        "{err:?}"
    );
    let err = unconfigured
        .fetch_audio("http://x/y", MB)
        .await
        .expect_err("not mail");
    assert!(matches!(err, MailError::Uri(_)), "{err:?}");
}

#[test]
fn settings_debug_never_prints_passwords() {
    let mut users = BTreeMap::new();
    users.insert("alice".to_owned(), "alice-pw-xyz".to_owned());
    let s = ImapSettings {
        host: "mail.example".to_owned(),
        user: "voicemail".to_owned(),
        password: "service-pw-abc".to_owned(),
        users,
        ..ImapSettings::default()
    };
    let text = format!("{s:?}");
    assert!(text.contains("<set>"), "{text}");
    assert!(text.contains("alice"), "{text}");
    assert!(
        !text.contains("service-pw-abc") && !text.contains("alice-pw-xyz"),
        "{text}"
    );
}

#[test]
fn fetch_futures_can_be_spawned() {
    fn assert_send<T: Send>(_: &T) {}
    let client = ImapClient::new(ImapSettings {
        host: "mail.example".to_owned(),
        ..ImapSettings::default()
    })
    .expect("client");
    let link = url("imap://mail.example/INBOX/;UID=1");
    assert_send(&client.fetch_audio(&link, MB));
    assert_send(&client.fetch_part_stream(&link, None, MB));
    let store = MailStore::new(None, None).expect("store");
    assert_send(&store.fetch_audio("fbmc:a/b", MB));
    assert_send(&test_connection(client.settings()));
}
