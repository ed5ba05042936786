//! Voicemail out of email, end to end: a real Dovecot (started per test, IMAPS with a
//! certificate made for the test) holds Asterisk-style voicemail messages put there with
//! IMAP APPEND; MRCPv2 SPEAKs of their `imap://` URIs play them to a real RTP socket, and
//! what arrives is compared with the attachment's audio. The faults a mail server has
//! (wrong password, missing or expunged message, UIDVALIDITY changed, no audio, too large,
//! corrupt audio, the server stopping mid-download) each end the SPEAK with their own
//! completion cause while the server and other calls carry on.

mod support;

#[path = "../../mail/tests/dovecot/mod.rs"]
mod dovecot;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dovecot::{Attachment, Dovecot, asterisk_voicemail};
use support::session::*;
use support::*;

const USER: &str = "voicemail";

/// The server, configured for `mail` (and `extra` after it).
fn server_for(mail: &Dovecot, password: &str, extra: &str) -> Server {
    start_server(
        &format!(
            "[mail]\nimap_host = \"{}\"\nimap_port = {}\nimap_tls = \"implicit\"\n\
             imap_ca_file = \"{}\"\nimap_user = \"{USER}\"\nimap_password = \"{password}\"\n\
             read_timeout_ms = 3000\nconnect_timeout_ms = 3000\n{extra}",
            mail.host(),
            mail.imaps_port,
            mail.ca_file.display(),
        ),
        |_| {},
    )
}

fn imap_uri(mail: &Dovecot, uid: u32) -> String {
    format!("imap://{}/INBOX/;UID={uid}", mail.host())
}

/// A voicemail message with one attachment.
fn message(content_type: &str, name: &str, data: &[u8]) -> Vec<u8> {
    asterisk_voicemail(
        7,
        "\"Alice\" <5551234>",
        3,
        Some(Attachment {
            content_type,
            file_name: name,
            data,
        }),
    )
}

/// 16-bit mono WAV bytes of `samples` at `rate`.
fn wav_bytes(dir: &Path, name: &str, rate: u32, samples: &[f32]) -> Vec<u8> {
    let path = dir.join(name);
    write_wav(&path, rate, samples);
    std::fs::read(&path).expect("read wav")
}

/// The received audio from its first sound to its last.
fn trimmed(audio: &[f32]) -> &[f32] {
    let first = audio.iter().position(|x| x.abs() > 0.01).unwrap_or(0);
    let last = audio.iter().rposition(|x| x.abs() > 0.01).unwrap_or(first);
    &audio[first..=last]
}

/// Asserts a SPEAK-COMPLETE with `cause` and, for URI failures, the Failed-URI-Cause.
fn assert_failed(done: &str, cause: &str, uri: &str, uri_cause: &str) {
    assert!(
        done.contains(&format!("Completion-Cause: {cause}")),
        "{cause}: {done}"
    );
    assert!(done.contains(&format!("Failed-URI: {uri}\r\n")), "{done}");
    assert!(
        done.contains(&format!("Failed-URI-Cause: {uri_cause}\r\n")),
        "{uri_cause}: {done}"
    );
    assert!(done.contains("Completion-Reason:"), "{done}");
}

#[test]
fn an_imap_voicemail_plays_by_content_and_replays_from_the_cache_without_the_server() {
    let mut mail = Dovecot::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let reference = speech_like(8000, 3.0);
    let wav = wav_bytes(dir.path(), "msg0007.wav", 8000, &reference);
    let uid = mail.append(USER, "INBOX", &message("audio/x-wav", "msg0007.wav", &wav));
    let server = server_for(&mail, mail.password(USER), "");
    let uri = imap_uri(&mail, uid);

    let mut s = open_session(&server);
    s.speak_uri(1, "", &uri);
    let (audio, done, _) = s.play_through(1, Duration::from_secs(10));
    assert!(done.contains("Completion-Cause: 000 normal"), "{done}");
    let got = trimmed(&audio);
    assert!(
        (23_000..=25_600).contains(&got.len()),
        "3 s of audio expected, {} samples",
        got.len()
    );
    let (_, snr) = snr_db(&reference, got, 2000, 400);
    assert!(snr > 25.0, "SNR {snr:.1} dB against the attachment");

    // "Press 1 to repeat": served from the cache, even with the mail server gone.
    mail.stop();
    s.speak_uri(2, "", &uri);
    let (again, done, _) = s.play_through(2, Duration::from_secs(10));
    assert!(done.contains("Completion-Cause: 000 normal"), "{done}");
    let (_, snr) = snr_db(&reference, trimmed(&again), 2000, 400);
    assert!(snr > 25.0, "replay SNR {snr:.1} dB");
}

#[test]
fn wav49_mp3_and_file_store_voicemail_play() {
    let mail = Dovecot::start();
    let dir = tempfile::tempdir().expect("tempdir");
    // GSM 06.10 in WAV, as Asterisk writes it; the reference is sox's decoding of it.
    wav_bytes(dir.path(), "src.wav", 8000, &speech_like(8000, 2.0));
    let wav49 = dir.path().join("msg.WAV");
    let sox = require("sox", "sox");
    let ok = Command::new(&sox)
        .arg(dir.path().join("src.wav"))
        .args(["-e", "gsm-full-rate"])
        .arg(&wav49)
        .status()
        .expect("sox");
    assert!(ok.success());
    let decoded = dir.path().join("decoded.wav");
    let ok = Command::new(&sox)
        .arg(&wav49)
        .args(["-e", "signed", "-b", "16"])
        .arg(&decoded)
        .status()
        .expect("sox");
    assert!(ok.success());
    let (_, gsm_reference) = read_wav(&decoded);
    let wav49 = std::fs::read(&wav49).expect("read");
    let gsm_uid = mail.append(
        USER,
        "INBOX",
        &message("audio/x-wav", "msg0007.WAV", &wav49),
    );
    // MP3 of a 1 kHz tone at −6 dBFS.
    wav_bytes(dir.path(), "mp3src.wav", 22050, &tone(22050, 1.5));
    let ffmpeg = require("ffmpeg", "ffmpeg");
    let ok = Command::new(ffmpeg)
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(dir.path().join("mp3src.wav"))
        .args(["-c:a", "libmp3lame", "-b:a", "64k"])
        .arg(dir.path().join("msg.mp3"))
        .status()
        .expect("ffmpeg");
    assert!(ok.success());
    let mp3 = std::fs::read(dir.path().join("msg.mp3")).expect("read mp3");
    let mp3_uid = mail.append(USER, "INBOX", &message("audio/mpeg", "msg0008.mp3", &mp3));
    // The file-based store: a Maildir under the store root.
    let fbmc_wav = wav_bytes(dir.path(), "fb.wav", 16000, &tone(16000, 1.0));
    let server = server_for(&mail, mail.password(USER), "");
    let maildir = server.dir.path().join("mail/1234/cur");
    std::fs::create_dir_all(&maildir).expect("mkdir");
    std::fs::write(
        maildir.join("1700000000.M1P1.pbx:2,S"),
        message("audio/wav", "msg0001.wav", &fbmc_wav),
    )
    .expect("write message");

    let mut s = open_session(&server);
    s.speak_uri(1, "", &imap_uri(&mail, gsm_uid));
    let (audio, done, _) = s.play_through(1, Duration::from_secs(10));
    assert!(done.contains("Completion-Cause: 000 normal"), "{done}");
    let (_, snr) = snr_db(&gsm_reference, trimmed(&audio), 2000, 400);
    assert!(
        snr > 25.0,
        "WAV49 SNR {snr:.1} dB against sox's GSM decoding"
    );

    s.speak_uri(2, "", &imap_uri(&mail, mp3_uid));
    let (loud, hz) = s.plays(2, Duration::from_millis(800));
    assert!(
        loud >= 30 && (950.0..1050.0).contains(&hz),
        "MP3: {loud} packets at {hz:.0} Hz"
    );
    assert!(s.complete(Duration::from_secs(5)).contains("000 normal"));

    s.speak_uri(3, "", "fbmc:1234/1700000000.M1P1.pbx");
    let (loud, hz) = s.plays(3, Duration::from_millis(600));
    assert!(
        loud >= 20 && (950.0..1050.0).contains(&hz),
        "fbmc: {loud} packets at {hz:.0} Hz"
    );
    assert!(s.complete(Duration::from_secs(5)).contains("000 normal"));
    // No path leaves the store.
    s.speak_uri(4, "", "fbmc:../../etc/passwd");
    let done = s.complete(Duration::from_secs(5));
    assert!(done.contains("Completion-Cause: 003 uri-failure"), "{done}");
}

#[test]
fn read_headers_speaks_the_sender_and_date_before_the_message() {
    let mail = Dovecot::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = wav_bytes(dir.path(), "m.wav", 8000, &tone(8000, 1.5));
    let uid = mail.append(USER, "INBOX", &message("audio/x-wav", "msg0007.wav", &wav));
    let server = server_for(&mail, mail.password(USER), "");
    let uri = imap_uri(&mail, uid);
    let mut s = open_session(&server);
    s.speak_uri(1, "Vendor-Specific-Parameters: read-headers=true\r\n", &uri);
    let (audio, done, _) = s.play_through(1, Duration::from_secs(20));
    assert!(done.contains("Completion-Cause: 000 normal"), "{done}");
    let got = trimmed(&audio);
    // Speech (several seconds of it, not a tone), then the 1 kHz message to the end.
    let frames: Vec<f32> = got.chunks(800).map(|c| rms(c) as f32).collect();
    let tone_from = got
        .chunks(800)
        .position(|c| tone_share(c, 1000.0) > 0.9)
        .expect("the message's tone");
    assert!(
        tone_from >= 15,
        "at least 1.5 s of header speech before the message: {frames:?}"
    );
    let speech = &got[..tone_from * 800];
    assert!(
        speech.chunks(800).filter(|c| rms(c) > 0.02).count() >= 10,
        "the header is spoken, not silence: {frames:?}"
    );
    // (The last 100 ms before the tone may hold its start.)
    assert!(
        speech[..speech.len() - 800]
            .chunks(800)
            .all(|c| tone_share(c, 1000.0) < 0.5),
        "the header is not the message: {frames:?}"
    );
    let tail = &got[tone_from * 800..];
    assert!(
        (11_000..=12_800).contains(&tail.len()),
        "1.5 s of message after the header: {}",
        tail.len()
    );
}

fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / samples.len().max(1) as f64)
        .sqrt()
}

/// The share of `samples`' energy at `hz`.
fn tone_share(samples: &[f32], hz: f64) -> f64 {
    let (mut s, mut c, mut p) = (0.0, 0.0, 0.0);
    for (i, &x) in samples.iter().enumerate() {
        let x = f64::from(x);
        let w = std::f64::consts::TAU * hz * i as f64 / 8000.0;
        s += x * w.sin();
        c += x * w.cos();
        p += x * x;
    }
    let n = samples.len() as f64;
    let amp = 2.0 * s.hypot(c) / n;
    (amp * amp / 2.0) / (p / n).max(1e-12)
}

#[test]
fn every_mail_fault_has_its_own_completion_and_other_calls_carry_on() {
    let mut mail = Dovecot::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = wav_bytes(dir.path(), "m.wav", 8000, &tone(8000, 1.0));
    let good = mail.append(USER, "INBOX", &message("audio/x-wav", "msg0001.wav", &wav));
    let expunged = mail.append(USER, "INBOX", &message("audio/x-wav", "msg0002.wav", &wav));
    let deleted = mail.append(USER, "INBOX", &message("audio/x-wav", "msg0003.wav", &wav));
    let no_audio = mail.append(USER, "INBOX", &asterisk_voicemail(4, "Bob", 0, None));
    let mut corrupt_wav = wav.clone();
    corrupt_wav[20] = 0x55; // WAVE_FORMAT 0x5501: no such codec
    corrupt_wav[21] = 0x55;
    let corrupt = mail.append(
        USER,
        "INBOX",
        &message("audio/x-wav", "msg0005.wav", &corrupt_wav),
    );
    // 50 MB: over the 20 MiB default limit.
    let huge_wav = vec![0u8; 50 * 1000 * 1000];
    let huge = mail.append(
        USER,
        "INBOX",
        &message("audio/x-wav", "msg0006.wav", &huge_wav),
    );
    // 150 s of 48 kHz (14.4 MB, just under the limit once in base64): still downloading
    // when the server is stopped.
    let long: Vec<f32> = tone(48000, 150.0);
    let long_wav = {
        let path = dir.path().join("long.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 48000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).expect("wav");
        for x in &long {
            w.write_sample((x * 16000.0) as i16).expect("sample");
        }
        w.finalize().expect("wav");
        std::fs::read(&path).expect("read")
    };
    let long_uid = mail.append(
        USER,
        "INBOX",
        &message("audio/x-wav", "msg0008.wav", &long_wav),
    );
    mail.set_deleted_flag(USER, "INBOX", deleted);
    let validity = mail.uid_validity(USER, "INBOX");
    let server = server_for(&mail, mail.password(USER), "");

    // A caller of a file, throughout.
    let bystander = {
        let uri = format!("sip:imss@{}", server.sip);
        let out = server.dir.path().join("bystander.wav");
        write_wav(&server.audio().join("long.wav"), 8000, &tone(8000, 12.0));
        std::thread::spawn(move || {
            run_with_timeout(
                Command::new(env!("CARGO_BIN_EXE_imss"))
                    .args([
                        "call", "--mrcp", &uri, "--speak", "long.wav", "--json", "--out",
                    ])
                    .arg(&out)
                    .env("RUST_LOG", "warn"),
                Duration::from_secs(60),
            )
        })
    };

    let mut s = open_session(&server);
    let mut id = 0;
    let speak = |s: &mut Session, id: &mut u32, uri: &str| -> String {
        *id += 1;
        s.speak_uri(*id, "", uri);
        s.complete(Duration::from_secs(20))
    };
    // The message was expunged after the platform learnt its UID.
    mail.expunge(USER, "INBOX", expunged);
    let base = imap_uri(&mail, expunged);
    assert_failed(
        &speak(&mut s, &mut id, &base),
        "003 uri-failure",
        &base,
        "not-found",
    );
    let uri = imap_uri(&mail, deleted);
    assert_failed(
        &speak(&mut s, &mut id, &uri),
        "003 uri-failure",
        &uri,
        "deleted",
    );
    let uri = format!(
        "imap://{}/INBOX;UIDVALIDITY={}/;UID={good}",
        mail.host(),
        validity + 1
    );
    assert_failed(
        &speak(&mut s, &mut id, &uri),
        "003 uri-failure",
        &uri,
        "uidvalidity-changed",
    );
    let uri = imap_uri(&mail, no_audio);
    assert_failed(
        &speak(&mut s, &mut id, &uri),
        "003 uri-failure",
        &uri,
        "no-audio",
    );
    let uri = imap_uri(&mail, huge);
    assert_failed(
        &speak(&mut s, &mut id, &uri),
        "003 uri-failure",
        &uri,
        "too-large",
    );
    let uri = imap_uri(&mail, corrupt);
    assert_failed(
        &speak(&mut s, &mut id, &uri),
        "004 error",
        &uri,
        "undecodable",
    );
    let uri = format!("imap://{}/Missing/;UID=1", mail.host());
    assert_failed(
        &speak(&mut s, &mut id, &uri),
        "003 uri-failure",
        &uri,
        "no-such-mailbox",
    );
    // The right message still plays.
    let uri = imap_uri(&mail, good);
    assert!(speak(&mut s, &mut id, &uri).contains("000 normal"));

    // Stopped mid-download: what arrived plays, then the SPEAK fails (the connection was
    // closed); a jump forward gets there at once.
    let uri = imap_uri(&mail, long_uid);
    id += 1;
    s.speak_uri(id, "", &uri);
    // Once its audio is heard.
    let (loud, _) = s.plays(id, Duration::from_millis(20));
    assert!(loud > 0, "the long message plays");
    mail.stop();
    std::thread::sleep(Duration::from_millis(500));
    id += 1;
    s.request("CONTROL", id, "Jump-Size: +3600 Second\r\n");
    let done = s.complete(Duration::from_secs(20));
    assert_failed(&done, "003 uri-failure", &uri, "connection-closed");

    // With the server down: unreachable.
    let uri = imap_uri(&mail, good + 100);
    let done = speak(&mut s, &mut id, &uri);
    assert!(
        done.contains("Failed-URI-Cause: unreachable")
            || done.contains("Failed-URI-Cause: timeout"),
        "{done}"
    );

    let (status, stdout, stderr) = bystander.join().expect("bystander");
    assert!(status.success(), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).expect("report");
    assert_eq!(report["completion_cause"], "000 normal", "{report}");
    assert_eq!(report["lost"], 0, "{report}");
}

#[test]
fn a_wrong_password_is_a_login_failure_and_is_never_logged() {
    let mail = Dovecot::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let wav = wav_bytes(dir.path(), "m.wav", 8000, &tone(8000, 1.0));
    let uid = mail.append(USER, "INBOX", &message("audio/x-wav", "msg0001.wav", &wav));
    let wrong = "not-the-Password-42";
    let server = server_for(&mail, wrong, "");
    let uri = imap_uri(&mail, uid);
    let mut s = open_session(&server);
    s.speak_uri(1, "", &uri);
    let done = s.complete(Duration::from_secs(20));
    assert_failed(&done, "003 uri-failure", &uri, "login-rejected");
    assert!(!done.contains(wrong), "{done}");

    // The dashboard says why the mail server cannot be used.
    let (admin, _) = support::api::tokens(&server);
    let auth = format!("Bearer {admin}");
    let mut api = support::api::Api::new(&server);
    let mail_status = |api: &mut support::api::Api, want: bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = api
                .get("/api/v1/status", &[("Authorization", &auth)])
                .json();
            let server_state = status["mail"]["server"].clone();
            if server_state["reachable"] == want {
                return server_state;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mail reachability never {want}: {server_state}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let state = mail_status(&mut api, false);
    assert!(
        state["detail"].as_str().unwrap().starts_with("login:"),
        "{state}"
    );
    // The right password, saved through the API, applies at once: the next SPEAK plays.
    let fixed = api.json(
        "PUT",
        "/api/v1/config/mail",
        &[("Authorization", &auth)],
        &serde_json::json!({ "imap_password": mail.password(USER) }),
    );
    assert_eq!(fixed.status, 200, "{}", fixed.body);
    assert_eq!(fixed.json()["applied"], serde_json::json!(["mail"]));
    mail_status(&mut api, true);
    s.speak_uri(2, "", &uri);
    let (audio, done, _) = s.play_through(2, Duration::from_secs(10));
    assert!(done.contains("Completion-Cause: 000 normal"), "{done}");
    assert!(
        tone_share(trimmed(&audio), 1000.0) > 0.8,
        "the message's tone"
    );
    api.assert_no_body_contains(&[wrong, mail.password(USER)]);
    assert!(!server.log().contains(wrong), "the password is in the log");
}
