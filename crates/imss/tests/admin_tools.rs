//! The configuration pages' tools against the real binary: the IMAP connection test against
//! a real Dovecot (each step made to fail in turn), and speaking a text with espeak-ng.

mod support;

#[path = "../../mail/tests/dovecot/mod.rs"]
mod dovecot;

use dovecot::Dovecot;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;
use support::Server;
use support::raw::{self, ADMIN_TOKEN, Answer, VIEWER_TOKEN, server_with_tokens};

/// The server with an admin and a viewer token and `extra` configuration.
fn server(extra: &str) -> Server {
    server_with_tokens(extra, |_| {})
}

/// `POST path` with a JSON body; the answer is never chunked.
fn post(addr: SocketAddr, path: &str, token: Option<&str>, body: &str) -> Answer {
    let a = raw::request(
        addr,
        "POST",
        path,
        token,
        "application/json",
        Some(body.as_bytes()),
        Duration::from_secs(60),
    );
    assert!(!a.chunked(), "{}", a.head);
    a
}

/// Runs the mail test with `overrides`; the JSON answer (200 expected).
fn mail_test(server: &Server, overrides: &str) -> serde_json::Value {
    let a = post(
        server.http,
        "/api/v1/mail/test",
        Some(ADMIN_TOKEN),
        overrides,
    );
    assert_eq!(a.status, 200, "{overrides}: {}", a.text());
    a.json()
}

#[test]
fn the_mail_test_names_the_step_that_fails() {
    let dovecot = Dovecot::start();
    let password = dovecot.password("voicemail").to_string();
    let server = server(&format!(
        "[mail]\nimap_host = \"127.0.0.1\"\nimap_port = {}\nimap_tls = \"implicit\"\nimap_ca_file = \"{}\"\nimap_user = \"voicemail\"\nimap_password = \"{password}\"\n",
        dovecot.imaps_port,
        dovecot.ca_file.display()
    ));
    let mut answers = Vec::new();

    // The saved settings work.
    let ok = mail_test(&server, "");
    assert_eq!(ok["ok"], true, "{ok}");
    assert_eq!(ok["step"], "done", "{ok}");
    let message = ok["message"].as_str().expect("message");
    assert!(message.contains("logged in as voicemail"), "{message}");
    assert!(message.contains("INBOX has 0 messages"), "{message}");
    let steps: Vec<&str> = ok["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .filter_map(|s| s["step"].as_str())
        .collect();
    assert_eq!(steps, ["dns", "tcp", "tls", "login", "mailbox"]);
    assert!(ok["elapsed_ms"].as_u64().is_some());
    answers.push(ok);

    // STARTTLS on the plain port, from the page's values before they are saved.
    let starttls = mail_test(
        &server,
        &format!(
            r#"{{"imap_port": {}, "imap_tls": "starttls"}}"#,
            dovecot.imap_port
        ),
    );
    assert_eq!(starttls["ok"], true, "{starttls}");

    // Each step failing in turn.
    let wrong = "wrong-password-123";
    let login = mail_test(&server, &format!(r#"{{"imap_password": "{wrong}"}}"#));
    assert_eq!(
        (&login["ok"], &login["step"]),
        (&false.into(), &"login".into()),
        "{login}"
    );
    answers.push(login);

    let dns = mail_test(&server, r#"{"imap_host": "no-such-host.invalid"}"#);
    assert_eq!(dns["step"], "dns", "{dns}");
    assert!(
        dns["message"]
            .as_str()
            .unwrap_or("")
            .contains("no-such-host.invalid"),
        "{dns}"
    );
    answers.push(dns);

    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("address").port()
    };
    let tcp = mail_test(&server, &format!(r#"{{"imap_port": {closed}}}"#));
    assert_eq!(
        (&tcp["ok"], &tcp["step"]),
        (&false.into(), &"tcp".into()),
        "{tcp}"
    );
    answers.push(tcp);

    // TLS spoken to the plain-text port; a certificate from a CA nobody trusts.
    let plain = mail_test(
        &server,
        &format!(r#"{{"imap_port": {}}}"#, dovecot.imap_port),
    );
    assert_eq!(
        (&plain["ok"], &plain["step"]),
        (&false.into(), &"tls".into()),
        "{plain}"
    );
    answers.push(plain);
    let work = tempfile::tempdir().expect("tempdir");
    let other_ca = dovecot::unrelated_ca_file(work.path());
    let untrusted = mail_test(
        &server,
        &serde_json::json!({ "imap_ca_file": other_ca }).to_string(),
    );
    assert_eq!(untrusted["step"], "tls", "{untrusted}");
    answers.push(untrusted);

    // A user whose INBOX the server cannot open.
    dovecot.create_mailbox("alice", "Archive");
    let inbox = dovecot.dir().join("home/alice/Maildir");
    for sub in ["cur", "new", "tmp"] {
        let p = inbox.join(sub);
        std::fs::create_dir_all(&p).expect("mkdir");
        std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .expect("chmod");
    }
    let mailbox = mail_test(
        &server,
        &format!(
            r#"{{"imap_user": "alice", "imap_password": "{}"}}"#,
            dovecot.password("alice")
        ),
    );
    assert_eq!(
        (&mailbox["ok"], &mailbox["step"]),
        (&false.into(), &"mailbox".into()),
        "{mailbox}"
    );
    answers.push(mailbox);

    // Values that cannot be used: 400 naming the key; nothing is tried.
    for (body, field) in [
        (r#"{"imap_port": 70000}"#, "mail.imap_port"),
        (r#"{"imap_port": "x"}"#, "mail.imap_port"),
        (r#"{"imap_tls": "ssl"}"#, "mail.imap_tls"),
        (r#"{"read_timeout_ms": 1}"#, "mail.read_timeout_ms"),
        (r#"{"imap_host": "a b"}"#, "mail.imap_host"),
        (r#"{"imap_host": null}"#, "mail.imap_host"),
        (r#"[]"#, "body"),
    ] {
        let a = post(server.http, "/api/v1/mail/test", Some(ADMIN_TOKEN), body);
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        assert_eq!(a.json()["field"], field, "{body}: {}", a.text());
    }
    // Admins only.
    let a = post(server.http, "/api/v1/mail/test", Some(VIEWER_TOKEN), "{}");
    assert_eq!(a.status, 403, "{}", a.text());
    assert_eq!(
        post(server.http, "/api/v1/mail/test", None, "{}").status,
        401
    );

    // No password in any answer or log line.
    let log = server.log();
    assert!(log.contains("IMAP connection tested"), "{log}");
    for secret in [password.as_str(), wrong, dovecot.password("alice")] {
        for a in &answers {
            assert!(!a.to_string().contains(secret), "{secret} in {a}");
        }
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

/// RMS of each 20 ms frame.
fn frame_levels(samples: &[f32]) -> Vec<f32> {
    samples
        .chunks(160)
        .map(|c| (c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32).sqrt())
        .collect()
}

#[test]
fn speak_returns_speech_as_wav() {
    support::require("espeak-ng", "espeak-ng");
    let server = server("");
    let text = "The quick brown fox jumps over the lazy dog, twice.";
    let a = post(
        server.http,
        "/api/v1/tts/speak",
        Some(ADMIN_TOKEN),
        &serde_json::json!({ "text": text }).to_string(),
    );
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.content_type, "audio/wav");
    assert_eq!(&a.body[..4], b"RIFF");
    assert_eq!(&a.body[8..12], b"WAVE");
    let mut reader = hound::WavReader::new(std::io::Cursor::new(&a.body)).expect("WAV");
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.sample_rate, spec.bits_per_sample),
        (1, 8000, 16)
    );
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    let samples: Vec<f32> = reader
        .samples::<i16>()
        .map(|s| f32::from(s.expect("sample")) / 32768.0)
        .collect();
    // Ten words at 175 words per minute: some 3 s, not a blip and not a minute.
    let seconds = samples.len() as f64 / 8000.0;
    assert!((1.5..10.0).contains(&seconds), "{seconds:.2} s of speech");
    let levels = frame_levels(&samples);
    let voiced = levels.iter().filter(|l| **l > 0.02).count();
    assert!(
        voiced as f64 > levels.len() as f64 * 0.4,
        "only {voiced} of {} frames hold sound",
        levels.len()
    );
    let rms = (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt();
    assert!(rms > 0.03, "RMS {rms}");
    // Speech, not a tone: its zero-crossing rate varies from frame to frame.
    let rates: Vec<usize> = samples
        .chunks(160)
        .zip(&levels)
        .filter(|(_, l)| **l > 0.02)
        .map(|(c, _)| {
            c.windows(2)
                .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
                .count()
        })
        .collect();
    let (min, max) = (
        rates.iter().min().copied().unwrap_or(0),
        rates.iter().max().copied().unwrap_or(0),
    );
    assert!(max > min + 10, "zero crossings per frame {min}..{max}");

    // Faster is shorter; another voice works; a voice the engine lacks is refused.
    let fast = post(
        server.http,
        "/api/v1/tts/speak",
        Some(ADMIN_TOKEN),
        &serde_json::json!({ "text": text, "rate": 400, "voice": "en-gb" }).to_string(),
    );
    assert_eq!(fast.status, 200, "{}", fast.text());
    let fast_seconds = (fast.body.len() - 44) as f64 / 16_000.0;
    assert!(
        fast_seconds < seconds * 0.75,
        "{fast_seconds:.2} s at 400 wpm against {seconds:.2} s"
    );
    for (body, field) in [
        (
            serde_json::json!({ "text": "hi", "voice": "zzqx" }),
            "voice",
        ),
        (serde_json::json!({ "text": "" }), "text"),
        (serde_json::json!({ "text": "   " }), "text"),
        (serde_json::json!({ "text": "a".repeat(2001) }), "text"),
        (serde_json::json!({ "voice": "en-us" }), "text"),
        (serde_json::json!({ "text": "hi", "rate": 5 }), "rate"),
    ] {
        let a = post(
            server.http,
            "/api/v1/tts/speak",
            Some(ADMIN_TOKEN),
            &body.to_string(),
        );
        assert_eq!(a.status, 400, "{body}: {}", a.text());
        assert_eq!(a.json()["field"], field, "{body}: {}", a.text());
    }
    let huge = serde_json::json!({ "text": "a".repeat(3 << 20) }).to_string();
    let a = post(server.http, "/api/v1/tts/speak", Some(ADMIN_TOKEN), &huge);
    assert_eq!(a.status, 413, "{}", a.text());
    assert_eq!(a.json()["error"], "too_large");
    let a = post(
        server.http,
        "/api/v1/tts/speak",
        Some(VIEWER_TOKEN),
        r#"{"text": "hi"}"#,
    );
    assert_eq!(a.status, 403, "{}", a.text());
}
