//! The audio files API against the real binary: upload a tone made by sox, see it listed
//! with its format and length, fetch it back decoded and hear it in a real SIP call; and
//! everything an upload must refuse (undecodable content, paths out of the audio root,
//! oversized bodies, taken names, viewers).

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::raw::{self, ADMIN_TOKEN, Answer, VIEWER_TOKEN, server_with_tokens};
use support::{Server, require};

/// The server with an admin and a viewer token; `prepare` fills the audio root.
fn server(prepare: impl FnOnce(&Path)) -> Server {
    server_with_tokens("", prepare)
}

/// A raw HTTP/1.1 request (so paths reach the server exactly as written).
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Answer {
    raw::request(
        addr,
        method,
        path,
        token,
        "application/octet-stream",
        body,
        Duration::from_secs(20),
    )
}

/// A 16-bit mono sine WAV made by sox.
fn sox_sine(dir: &Path, name: &str, rate: u32, seconds: f32, hz: u32, extra: &[&str]) -> Vec<u8> {
    let sox = require("sox", "sox");
    let path = dir.join(name);
    let out = Command::new(sox)
        .args(["-n", "-r", &rate.to_string(), "-c", "1", "-b", "16"])
        .args(extra)
        .arg(&path)
        .args([
            "synth",
            &seconds.to_string(),
            "sine",
            &hz.to_string(),
            "vol",
            "0.5",
        ])
        .output()
        .expect("run sox");
    assert!(
        out.status.success(),
        "sox: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&path).expect("read sox output")
}

/// Frequency of the loud part of `samples` by zero crossings.
fn frequency(rate: u32, samples: &[f32]) -> f64 {
    let loud: Vec<f32> = samples
        .chunks(160)
        .filter(|c| (c.iter().map(|s| s * s).sum::<f32>() / c.len() as f32).sqrt() > 0.05)
        .flatten()
        .copied()
        .collect();
    assert!(loud.len() > rate as usize / 4, "too little loud audio");
    let crossings = loud
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    crossings as f64 / 2.0 / (loud.len() as f64 / f64::from(rate))
}

/// A WAV body: rate, channels, bits and the samples as f32.
fn parse_wav(bytes: &[u8]) -> (hound::WavSpec, Vec<f32>) {
    let mut r = hound::WavReader::new(std::io::Cursor::new(bytes)).expect("a WAV body");
    let spec = r.spec();
    let samples = r
        .samples::<i16>()
        .map(|s| f32::from(s.expect("sample")) / 32768.0)
        .collect();
    (spec, samples)
}

/// Every file under `dir`, hidden ones included.
fn all_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).expect("under").display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Calls `sip:annc@…;play=<file>` and measures the loud audio that arrives.
fn play_in_a_call(server: &Server, file: &str) -> (usize, f64) {
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("bind RTP");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let caller = UdpSocket::bind("127.0.0.1:0").expect("bind SIP");
    caller
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    let local = caller.local_addr().expect("addr");
    let uri = format!("sip:annc@{};play={file}", server.sip);
    let invite = support::request(
        "INVITE",
        &uri,
        local,
        "Content-Type: application/sdp\r\n",
        &support::offer(rtp_port, "0"),
        "files1",
    );
    caller.send_to(invite.as_bytes(), server.sip).expect("send");
    let mut buf = vec![0u8; 65536];
    let mut answer = String::new();
    while let Ok((n, _)) = caller.recv_from(&mut buf) {
        let t = String::from_utf8_lossy(&buf[..n]).to_string();
        if t.starts_with("SIP/2.0 2") || t.starts_with("SIP/2.0 4") || t.starts_with("SIP/2.0 5") {
            answer = t;
            break;
        }
    }
    assert!(
        answer.starts_with("SIP/2.0 200"),
        "the call was not answered: {answer}\n{}",
        server.log()
    );
    let to = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("to:"))
        .expect("To")
        .split_once(':')
        .expect("To value")
        .1
        .trim()
        .to_string();
    let ack = format!(
        "ACK {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-files1ack\r\nFrom: <sip:t@{local}>;tag=files1\r\nTo: {to}\r\nCall-ID: files1@test\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(ack.as_bytes(), server.sip).expect("ACK");
    support::session::loud_frequency(&rtp, Duration::from_millis(1500))
}

#[test]
fn an_uploaded_tone_is_listed_fetched_and_played_in_a_call() {
    let server = server(|_| {});
    let dir = tempfile::tempdir().expect("tempdir");
    let tone = sox_sine(dir.path(), "tone.wav", 16_000, 2.0, 1000, &[]);

    let up = http(
        server.http,
        "PUT",
        "/api/v1/files/moh/tone.wav",
        Some(ADMIN_TOKEN),
        Some(&tone),
    );
    assert_eq!(up.status, 201, "{}", up.text());
    let up = up.json();
    assert_eq!(up["path"], "moh/tone.wav");
    assert_eq!(up["bytes"], tone.len());
    assert_eq!(up["format"], "WAV, PCM 16-bit, 16000 Hz, mono");
    assert!(
        (up["seconds"].as_f64().expect("seconds") - 2.0).abs() < 0.01,
        "{up}"
    );
    assert_eq!(
        std::fs::read(server.audio().join("moh/tone.wav")).expect("stored"),
        tone
    );

    // Listed, for viewers too.
    let list = http(
        server.http,
        "GET",
        "/api/v1/files",
        Some(VIEWER_TOKEN),
        None,
    );
    assert_eq!(list.status, 200, "{}", list.text());
    let list = list.json();
    let root = server.audio().canonicalize().expect("root");
    assert_eq!(list["root"], root.display().to_string());
    assert_eq!(list["truncated"], false);
    let files = list["files"].as_array().expect("files");
    let entry = files
        .iter()
        .find(|f| f["path"] == "moh/tone.wav")
        .unwrap_or_else(|| panic!("not listed: {list}"));
    assert_eq!(entry["bytes"], tone.len());
    assert_eq!(entry["format"], "WAV, PCM 16-bit, 16000 Hz, mono");
    assert!((entry["seconds"].as_f64().expect("seconds") - 2.0).abs() < 0.01);
    assert!(entry["error"].is_null(), "{entry}");
    assert!(
        entry["modified"].as_str().expect("modified").ends_with('Z'),
        "{entry}"
    );

    // The bytes as stored, and decoded.
    let raw = http(
        server.http,
        "GET",
        "/api/v1/files/moh/tone.wav",
        Some(VIEWER_TOKEN),
        None,
    );
    assert_eq!(raw.status, 200);
    assert_eq!(raw.content_type, "audio/wav");
    assert_eq!(raw.body, tone);
    let decoded = http(
        server.http,
        "GET",
        "/api/v1/files/moh/tone.wav?as=wav",
        Some(VIEWER_TOKEN),
        None,
    );
    assert_eq!(decoded.status, 200, "{}", decoded.text());
    assert_eq!(decoded.content_type, "audio/wav");
    let (spec, samples) = parse_wav(&decoded.body);
    assert_eq!((spec.channels, spec.bits_per_sample), (1, 16));
    assert_eq!(spec.sample_rate, 16_000);
    assert!((samples.len() as f64 / 16_000.0 - 2.0).abs() < 0.01);
    let hz = frequency(16_000, &samples);
    assert!((hz - 1000.0).abs() < 10.0, "decoded tone at {hz:.1} Hz");

    // And in a call, by the name the listing gives.
    let (packets, hz) = play_in_a_call(&server, "moh/tone.wav");
    assert!(packets >= 50, "only {packets} loud packets");
    // Crossings are counted within each 20 ms packet, which misses about one in forty.
    assert!((hz - 1000.0).abs() < 40.0, "the call played {hz:.1} Hz");
}

#[test]
fn voicemail_formats_are_listed_as_unplayable_but_decoded_for_browsers() {
    let work = tempfile::tempdir().expect("tempdir");
    // GSM 06.10 in WAV (what Asterisk mails): calls do not play it, browsers cannot either.
    let gsm = sox_sine(
        work.path(),
        "vm.wav",
        8000,
        1.5,
        1000,
        &["-e", "gsm-full-rate"],
    );
    let server = server(|audio| {
        std::fs::write(audio.join("vm.wav"), &gsm).expect("write");
        std::fs::write(audio.join("notes.txt"), b"hello").expect("write");
    });
    let list = http(
        server.http,
        "GET",
        "/api/v1/files",
        Some(VIEWER_TOKEN),
        None,
    )
    .json();
    let files = list["files"].as_array().expect("files");
    let paths: Vec<&str> = files.iter().filter_map(|f| f["path"].as_str()).collect();
    assert_eq!(paths, ["notes.txt", "vm.wav"], "{list}");
    assert!(files[0]["error"].as_str().is_some(), "{list}");
    assert!(
        files[1]["error"].as_str().is_some(),
        "GSM is not playable: {list}"
    );
    let decoded = http(
        server.http,
        "GET",
        "/api/v1/files/vm.wav?as=wav",
        Some(VIEWER_TOKEN),
        None,
    );
    assert_eq!(decoded.status, 200, "{}", decoded.text());
    let (spec, samples) = parse_wav(&decoded.body);
    assert_eq!(spec.sample_rate, 8000);
    let hz = frequency(8000, &samples);
    assert!((hz - 1000.0).abs() < 20.0, "GSM tone decoded at {hz:.1} Hz");
    let bad = http(
        server.http,
        "GET",
        "/api/v1/files/vm.wav?as=mp3",
        Some(VIEWER_TOKEN),
        None,
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["field"], "as");
}

#[test]
fn uploads_refuse_bad_content_bad_paths_big_bodies_and_taken_names() {
    let server = server(|_| {});
    let work = tempfile::tempdir().expect("tempdir");
    let tone = sox_sine(work.path(), "a.wav", 8000, 1.0, 1000, &[]);
    let low = sox_sine(work.path(), "b.wav", 8000, 3.0, 500, &[]);
    let put = |path: &str, token: &str, body: &[u8]| {
        http(server.http, "PUT", path, Some(token), Some(body))
    };

    // Content that does not decode: 400 naming the body, nothing written.
    for (name, garbage) in [
        ("junk.wav", &b"this is not audio, only text"[..]),
        (
            "junk2.wav",
            &b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0garbagegarbage"[..],
        ),
        ("junk.mp3", &[0u8; 4096][..]),
    ] {
        let a = put(&format!("/api/v1/files/{name}"), ADMIN_TOKEN, garbage);
        assert_eq!(a.status, 400, "{name}: {}", a.text());
        let e = a.json();
        assert_eq!(e["error"], "invalid");
        assert_eq!(e["field"], "body", "{e}");
        assert!(!e["message"].as_str().unwrap_or("").is_empty());
    }
    // MP3 content under a .wav name.
    let mislabelled = {
        let out = work.path().join("c.mp3");
        let status = Command::new(require("ffmpeg", "ffmpeg"))
            .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
            .arg(work.path().join("a.wav"))
            .args(["-c:a", "libmp3lame", "-b:a", "32k"])
            .arg(&out)
            .status()
            .expect("ffmpeg");
        assert!(status.success());
        std::fs::read(out).expect("mp3")
    };
    let a = put("/api/v1/files/c.wav", ADMIN_TOKEN, &mislabelled);
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(a.json()["field"], "body");
    let a = put("/api/v1/files/c.mp3", ADMIN_TOKEN, &mislabelled);
    assert_eq!(a.status, 201, "{}", a.text());
    assert!(
        a.json()["format"]
            .as_str()
            .unwrap_or("")
            .starts_with("MP3, 8000 Hz, mono")
    );

    // Paths out of the root, hidden, odd or with an extension calls do not play.
    for path in [
        "/api/v1/files/../x.wav",
        "/api/v1/files//etc/x.wav",
        "/api/v1/files/%2Fetc%2Fx.wav",
        "/api/v1/files/%2e%2e/x.wav",
        "/api/v1/files/moh/%2e%2e%2f%2e%2e%2fx.wav",
        "/api/v1/files/moh/..%5Cx.wav",
        "/api/v1/files/.hidden.wav",
        "/api/v1/files/a%00b.wav",
        "/api/v1/files/a%0Ab.wav",
        "/api/v1/files/x.txt",
        "/api/v1/files/x.exe",
    ] {
        let a = put(path, ADMIN_TOKEN, &tone);
        assert_eq!(a.status, 400, "{path}: {}", a.text());
        assert_eq!(a.json()["field"], "path", "{path}: {}", a.text());
    }
    assert!(!server.dir.path().join("x.wav").exists());
    assert!(!Path::new("/etc/x.wav").exists());

    // Over 64 MiB: refused by its declared length, and when it arrives in chunks.
    let big = vec![0u8; 64 * 1024 * 1024 + 1];
    let a = put("/api/v1/files/big.wav", ADMIN_TOKEN, &big);
    assert_eq!(a.status, 413, "{}", a.text());
    assert_eq!(a.json()["error"], "too_large");
    let chunked = {
        let mut s = TcpStream::connect(server.http).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let head = format!(
            "PUT /api/v1/files/big2.wav HTTP/1.1\r\nHost: imss\r\nConnection: close\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n"
        );
        s.write_all(head.as_bytes()).expect("head");
        let chunk = vec![0u8; 1 << 20];
        for _ in 0..65 {
            if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .is_err()
                || s.write_all(&chunk).is_err()
                || s.write_all(b"\r\n").is_err()
            {
                break;
            }
        }
        let _ = s.write_all(b"0\r\n\r\n");
        raw::read_answer(&mut s)
    };
    assert_eq!(chunked.status, 413, "{}", chunked.text());
    assert_eq!(chunked.json()["error"], "too_large");

    // Names taken: 409 unless overwrite=true.
    assert_eq!(put("/api/v1/files/t/a.wav", ADMIN_TOKEN, &tone).status, 201);
    let again = put("/api/v1/files/t/a.wav", ADMIN_TOKEN, &low);
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(again.json()["error"], "exists");
    assert_eq!(
        std::fs::read(server.audio().join("t/a.wav")).expect("kept"),
        tone
    );
    let replaced = put("/api/v1/files/t/a.wav?overwrite=true", ADMIN_TOKEN, &low);
    assert_eq!(replaced.status, 201, "{}", replaced.text());
    assert!((replaced.json()["seconds"].as_f64().expect("seconds") - 3.0).abs() < 0.01);
    let decoded = http(
        server.http,
        "GET",
        "/api/v1/files/t/a.wav?as=wav",
        Some(ADMIN_TOKEN),
        None,
    );
    let (_, samples) = parse_wav(&decoded.body);
    let hz = frequency(8000, &samples);
    assert!((hz - 500.0).abs() < 10.0, "replaced file plays {hz:.1} Hz");
    // A folder is not a file.
    let a = put("/api/v1/files/t?overwrite=true", ADMIN_TOKEN, &tone);
    assert_eq!(a.status, 400);

    // Only what was accepted is there: no temporary files, nothing refused.
    assert_eq!(all_files(&server.audio()), ["c.mp3", "t/a.wav"]);
}

#[test]
fn deletes_and_roles() {
    let server = server(|audio| {
        std::fs::create_dir_all(audio.join("moh")).expect("mkdir");
        support::write_wav(&audio.join("moh/a.wav"), 8000, &support::tone(8000, 0.5));
    });
    let work = tempfile::tempdir().expect("tempdir");
    let tone = sox_sine(work.path(), "a.wav", 8000, 0.5, 1000, &[]);

    // No credentials: 401; a viewer reads but cannot change anything.
    assert_eq!(
        http(server.http, "GET", "/api/v1/files", None, None).status,
        401
    );
    assert_eq!(
        http(server.http, "GET", "/api/v1/files/moh/a.wav", None, None).status,
        401
    );
    assert_eq!(
        http(
            server.http,
            "GET",
            "/api/v1/files",
            Some(VIEWER_TOKEN),
            None
        )
        .status,
        200
    );
    let a = http(
        server.http,
        "PUT",
        "/api/v1/files/new.wav",
        Some(VIEWER_TOKEN),
        Some(&tone),
    );
    assert_eq!(a.status, 403, "{}", a.text());
    let a = http(
        server.http,
        "DELETE",
        "/api/v1/files/moh/a.wav",
        Some(VIEWER_TOKEN),
        None,
    );
    assert_eq!(a.status, 403, "{}", a.text());
    assert_eq!(
        http(
            server.http,
            "PUT",
            "/api/v1/files/new.wav",
            None,
            Some(&tone)
        )
        .status,
        401
    );
    assert!(server.audio().join("moh/a.wav").exists());
    assert!(!server.audio().join("new.wav").exists());

    // Folders are refused, escapes too; a file goes, then is missing.
    let a = http(
        server.http,
        "DELETE",
        "/api/v1/files/moh",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(a.json()["field"], "path");
    let a = http(
        server.http,
        "DELETE",
        "/api/v1/files/%2e%2e/imss.toml",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(a.status, 400, "{}", a.text());
    assert_eq!(a.json()["field"], "path");
    assert!(server.dir.path().join("imss.toml").exists());
    let a = http(
        server.http,
        "DELETE",
        "/api/v1/files/moh/a.wav",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(a.status, 204, "{}", a.text());
    assert!(!server.audio().join("moh/a.wav").exists());
    let a = http(
        server.http,
        "DELETE",
        "/api/v1/files/moh/a.wav",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(a.status, 404, "{}", a.text());
    assert_eq!(a.json()["error"], "not_found");
    let a = http(
        server.http,
        "GET",
        "/api/v1/files/moh/a.wav",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(a.status, 404);
    // Reading outside the root is refused as well.
    let a = http(
        server.http,
        "GET",
        "/api/v1/files/..%2Fimss.toml",
        Some(ADMIN_TOKEN),
        None,
    );
    assert_eq!(a.status, 400, "{}", a.text());
}
