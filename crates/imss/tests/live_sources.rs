//! Live sources fed from outside, against real peers: Icecast (Debian `icecast2`) fed by
//! ffmpeg as a source client in MP3, Ogg Vorbis, Ogg Opus and AAC, with ICY metadata on;
//! and a `command` source running sox. Callers come in over plain SIP (`sip:NAME@…`) and
//! MRCP (`source:NAME`); what they receive is checked by content — correlation with what
//! ffmpeg was fed, or its tone — and by timing: the fallback within `stall_ms` plus a frame
//! when Icecast dies, no RTP gap over 40 ms, no call dropped.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::*;

const SOURCE_PASSWORD: &str = "imss-source";
const ADMIN_PASSWORD: &str = "imss-admin";
/// The fallback tone the server plays (`fallback = "tone"`).
const FALLBACK_HZ: f64 = 440.0;
/// Samples in a 20 ms frame at 8 kHz.
const FRAME: usize = 160;

/// A real Icecast server on a loopback port, with its config, logs and pid file in a temp
/// folder; killed on drop.
struct Icecast {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
}

impl Icecast {
    /// Starts Icecast on `port` (0: a free one) and waits until it answers HTTP.
    fn start(dir: &Path, port: u16) -> Icecast {
        let icecast = require("icecast2", "icecast2");
        let port = if port == 0 { free_tcp_port() } else { port };
        let dir = dir.join("icecast");
        let logs = dir.join("log");
        let web = dir.join("web");
        for d in [&dir, &logs, &web] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        // Icecast refuses to run as root: as root it changes to `nobody`, who must be able
        // to write its logs.
        let root = unsafe { libc::geteuid() } == 0;
        let owner = if root {
            for d in [dir.parent().expect("parent"), &dir, &logs, &web] {
                set_mode(d, 0o777);
            }
            "<changeowner><user>nobody</user><group>nogroup</group></changeowner>"
        } else {
            ""
        };
        // A playlist whose first stream is missing, for the server to skip (served from the
        // web root by Icecast itself).
        std::fs::write(
            web.join("radio.pls"),
            format!(
                "[playlist]\nNumberOfEntries=2\nFile1=http://127.0.0.1:{port}/missing.mp3\n\
                 File2=http://127.0.0.1:{port}/live.mp3\nVersion=2\n"
            ),
        )
        .expect("write pls");
        set_mode(&web.join("radio.pls"), 0o644);
        let config = dir.join("icecast.xml");
        std::fs::write(
            &config,
            format!(
                r#"<icecast>
  <location>test</location><admin>test@localhost</admin>
  <limits><clients>100</clients><sources>10</sources><source-timeout>10</source-timeout></limits>
  <authentication>
    <source-password>{SOURCE_PASSWORD}</source-password>
    <admin-user>admin</admin-user><admin-password>{ADMIN_PASSWORD}</admin-password>
  </authentication>
  <hostname>127.0.0.1</hostname>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  <fileserve>1</fileserve>
  <paths>
    <basedir>{dir}</basedir><logdir>{logs}</logdir><pidfile>{dir}/icecast.pid</pidfile>
    <webroot>{web}</webroot><adminroot>/usr/share/icecast2/admin</adminroot>
  </paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>
  <security><chroot>0</chroot>{owner}</security>
</icecast>
"#,
                dir = dir.display(),
                logs = logs.display(),
                web = web.display(),
            ),
        )
        .expect("write icecast config");
        let child = Command::new(icecast)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start icecast2");
        let mut ic = Icecast {
            child: Some(child),
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while http_status(port, "/radio.pls") != Some(200) {
            if let Some(child) = &mut ic.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("icecast2 exited ({status}):\n{}", ic.error_log());
            }
            assert!(
                Instant::now() < deadline,
                "icecast2 did not answer on port {port}:\n{}",
                ic.error_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        ic
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log/error.log")).unwrap_or_default()
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Kills Icecast at once (SIGKILL), as a crash would.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sets the StreamTitle of `mount` through the admin interface.
    fn set_title(&self, mount: &str, title: &str) {
        let auth = base64(&format!("admin:{ADMIN_PASSWORD}"));
        let path = format!(
            "/admin/metadata?mount={mount}&mode=updinfo&song={}",
            title.replace(' ', "+")
        );
        let status = http_request(
            self.port,
            &format!("GET {path} HTTP/1.0\r\nAuthorization: Basic {auth}\r\n\r\n"),
        );
        assert_eq!(status, Some(200), "icecast admin metadata update");
    }
}

impl Drop for Icecast {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- icecast error log ---\n{}", self.error_log());
        }
        self.kill();
    }
}

/// ffmpeg as an Icecast source client for one mount; killed on drop.
struct Feeder {
    child: Child,
}

impl Feeder {
    /// Streams `input` (ffmpeg input options) encoded with `codec` (output options, the
    /// muxer last) to `mount`, and waits until Icecast serves the mount.
    fn start(
        ic: &Icecast,
        mount: &str,
        input: &[&str],
        codec: &[&str],
        content_type: &str,
    ) -> Feeder {
        let ffmpeg = require("ffmpeg", "ffmpeg");
        let child = Command::new(ffmpeg)
            .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
            .args(input)
            .args(codec)
            .args(["-content_type", content_type])
            .arg(format!(
                "icecast://source:{SOURCE_PASSWORD}@127.0.0.1:{}{mount}",
                ic.port
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ffmpeg");
        let mut feeder = Feeder { child };
        let deadline = Instant::now() + Duration::from_secs(15);
        while http_status(ic.port, mount) != Some(200) {
            if let Ok(Some(status)) = feeder.child.try_wait() {
                panic!("ffmpeg feeding {mount} exited: {status}");
            }
            assert!(Instant::now() < deadline, "icecast never served {mount}");
            std::thread::sleep(Duration::from_millis(50));
        }
        feeder
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An MP3 mount of a 1 kHz sine.
fn feed_mp3_tone(ic: &Icecast, mount: &str, hz: u32) -> Feeder {
    Feeder::start(
        ic,
        mount,
        &[
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency={hz}:sample_rate=44100"),
        ],
        &["-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3"],
        "audio/mpeg",
    )
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral TCP port")
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// The status code of a GET of `path` on the loopback `port`, if anything answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    http_request(port, &format!("GET {path} HTTP/1.0\r\n\r\n"))
}

fn http_request(port: u16, request: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    let line = String::from_utf8_lossy(&head[..got]);
    line.split(' ').nth(1)?.parse().ok()
}

fn base64(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | u32::from(c) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unix_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1000.0)
        .unwrap_or(0.0)
}

/// The server's log without ANSI colours.
fn plain_log(server: &Server) -> String {
    let log = server.log();
    let mut out = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Waits until the server's log has a line with every one of `parts`.
fn wait_for_log(server: &Server, parts: &[&str], limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        if plain_log(server)
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} within {limit:?}; log:\n{}",
            plain_log(server)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A call's report and audio.
struct Received {
    report: serde_json::Value,
    audio: Vec<f32>,
}

impl Received {
    /// Kernel arrival time of the first packet, ms since the Unix epoch.
    fn first_ms(&self) -> f64 {
        self.report["first_packet_unix_ms"]
            .as_f64()
            .expect("first packet time")
    }
}

/// Runs `imss call` with `args` (the URI and options), writing the audio to `out`.
fn call(args: &[&str], out: &Path, limit: Duration) -> Received {
    let (status, stdout, stderr) = run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_imss"))
            .arg("call")
            .args(args)
            .args(["--json", "--out"])
            .arg(out)
            .env("RUST_LOG", "warn"),
        limit,
    );
    assert!(status.success(), "imss call {args:?}: {stdout}\n{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("report ({e}): {stdout}"));
    let (rate, audio) = read_wav(out);
    assert_eq!(rate, 8000);
    Received { report, audio }
}

/// A plain-SIP caller of `sip:NAME@server` for `seconds`, on its own thread.
fn plain_caller(
    server: &Server,
    name: &str,
    seconds: f64,
    tag: &str,
) -> std::thread::JoinHandle<Received> {
    let uri = format!("sip:{name}@{}", server.sip);
    let out = server.dir.path().join(format!("{tag}.wav"));
    let secs = seconds.to_string();
    std::thread::spawn(move || {
        call(
            &[&uri, "--seconds", &secs],
            &out,
            Duration::from_secs_f64(seconds + 30.0),
        )
    })
}

/// Starts the server with `sources`. Its pacing threads run in the real-time class (when
/// the tests may, as root in CI), so that the other tests of the suite, running at the same
/// time on two cores, cannot delay its packets: these tests measure their spacing. The
/// first lines of the extra configuration land in the harness's `[rtp]` table.
fn live_server(sources: &str) -> Server {
    start_server(&format!("realtime_priority = 50\n{sources}"), |_| {})
}

/// The share of `samples`' energy at `hz` (1.0 for a pure tone at `hz`).
fn tone_share(samples: &[f32], hz: f64) -> f64 {
    let (mut s, mut c, mut p) = (0.0, 0.0, 0.0);
    for (i, &x) in samples.iter().enumerate() {
        let w = std::f64::consts::TAU * hz * i as f64 / 8000.0;
        s += f64::from(x) * w.sin();
        c += f64::from(x) * w.cos();
        p += f64::from(x) * f64::from(x);
    }
    let n = samples.len() as f64;
    let amp = 2.0 * s.hypot(c) / n;
    if p <= 0.0 {
        return 0.0;
    }
    (amp * amp / 2.0) / (p / n)
}

fn rms(samples: &[f32]) -> f64 {
    (samples.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>() / samples.len().max(1) as f64)
        .sqrt()
}

/// Normalised correlation of `window` with `reference` at `off`, read cyclically.
fn correlation_at(reference: &[f32], window: &[f32], off: usize) -> f64 {
    let n = reference.len();
    let (mut dot, mut r2, mut w2) = (0.0, 0.0, 0.0);
    for (i, &w) in window.iter().enumerate() {
        let r = f64::from(reference[(off + i) % n]);
        dot += r * f64::from(w);
        r2 += r * r;
        w2 += f64::from(w) * f64::from(w);
    }
    dot / (r2 * w2).sqrt().max(1e-12)
}

/// The best normalised correlation of `window` with a looped reference given at twice the
/// rate (16 kHz), and its offset in 8 kHz samples. Both half-sample phases are tried: a
/// codec's delay (an MP3 encoder's 1,105 samples at 16 kHz) may leave the 8 kHz audio half
/// a sample off, which costs a 3 kHz harmonic most of its correlation.
fn best_correlation(reference_16k: &[f32], window: &[f32]) -> (usize, f64) {
    let even: Vec<f32> = reference_16k.iter().step_by(2).copied().collect();
    let odd: Vec<f32> = reference_16k.iter().skip(1).step_by(2).copied().collect();
    let (off, corr) = (0..even.len())
        .map(|off| (off, correlation_at(&even, window, off)))
        .fold((0, f64::MIN), |best, c| if c.1 > best.1 { c } else { best });
    let n = even.len();
    let odd_best = [n - 1, 0]
        .iter()
        .map(|d| correlation_at(&odd, window, (off + d) % n))
        .fold(f64::MIN, f64::max);
    (off, corr.max(odd_best))
}

/// Asserts the RTP of a call was paced throughout: nothing lost, no gap over 40 ms, the
/// call not dropped.
fn assert_paced(r: &Received, who: &str, seconds: f64) {
    let rep = &r.report;
    assert_eq!(rep["lost"].as_u64(), Some(0), "{who} lost packets: {rep}");
    let max = rep["spacing"]["max_ms"].as_f64().expect("spacing");
    assert!(
        max <= 20.0,
        "{who}: packets {max:.1} ms off their 20 ms spacing (a gap over 40 ms): {rep}"
    );
    assert!(
        rep["rtp_gaps"].as_array().is_some_and(Vec::is_empty),
        "{who}: RTP gaps {}",
        rep["rtp_gaps"]
    );
    assert_eq!(
        rep["ended_by_server"].as_bool(),
        Some(false),
        "{who}: the server hung up"
    );
    let audio = rep["audio_seconds"].as_f64().expect("audio seconds");
    assert!(
        audio >= seconds - 0.2,
        "{who}: {audio:.2} s of audio in a {seconds} s call"
    );
}

/// What each 20 ms frame of a call holds: the stream's tone, the fallback's, or neither.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Heard {
    Stream,
    Fallback,
    /// Both in one frame: the switch.
    Switch,
    Other,
}

fn classify(audio: &[f32], stream_hz: f64) -> Vec<Heard> {
    audio
        .chunks_exact(FRAME)
        .map(|f| {
            let (s, b) = (tone_share(f, stream_hz), tone_share(f, FALLBACK_HZ));
            if rms(f) < 0.01 {
                Heard::Other
            } else if s > 0.8 {
                Heard::Stream
            } else if b > 0.8 {
                Heard::Fallback
            } else if s + b > 0.3 {
                // A frame holding the end of one and the start of the other.
                Heard::Switch
            } else {
                Heard::Other
            }
        })
        .collect()
}

/// Every frame after the first half second is the stream or the fallback, but for single
/// frames that hold a switch between them.
fn assert_no_dead_air(heard: &[Heard], who: &str) {
    for (i, h) in heard.iter().enumerate().skip(25) {
        assert!(
            *h != Heard::Other,
            "{who}: frame {i} is neither the stream nor the fallback: {heard:?}"
        );
        assert!(
            !(*h == Heard::Switch && heard[i - 1] == Heard::Switch),
            "{who}: frames {} and {i} both switch: {heard:?}",
            i - 1
        );
    }
}

#[test]
fn icecast_streams_in_every_codec_reach_sip_and_mrcp_callers() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A non-repeating, speech-like signal, looped by ffmpeg: callers' audio must correlate
    // with it, and two callers must hear the same moment.
    let speech = dir.path().join("speech.wav");
    write_wav(&speech, 16_000, &speech_like(16_000, 4.0));
    let reference = speech_like(16_000, 4.0);
    let speech_in = speech.to_string_lossy().to_string();
    let ic = Icecast::start(dir.path(), 0);
    let _mp3 = Feeder::start(
        &ic,
        "/live.mp3",
        &["-stream_loop", "-1", "-i", &speech_in],
        &["-c:a", "libmp3lame", "-b:a", "128k", "-f", "mp3"],
        "audio/mpeg",
    );
    let _vorbis = Feeder::start(
        &ic,
        "/live.ogg",
        &["-f", "lavfi", "-i", "sine=frequency=500:sample_rate=44100"],
        &["-c:a", "libvorbis", "-b:a", "64k", "-f", "ogg"],
        "application/ogg",
    );
    let _opus = Feeder::start(
        &ic,
        "/live.opus",
        &["-f", "lavfi", "-i", "sine=frequency=700:sample_rate=48000"],
        &["-c:a", "libopus", "-b:a", "48k", "-f", "ogg"],
        "audio/ogg",
    );
    let _aac = Feeder::start(
        &ic,
        "/live.aac",
        &["-f", "lavfi", "-i", "sine=frequency=1200:sample_rate=44100"],
        &["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
        "audio/aac",
    );
    ic.set_title("/live.mp3", "Hold Music One");
    let source = |name: &str, url: &str| {
        format!(
            "[[external_audio]]\nname = \"{name}\"\nkind = \"http\"\nurl = \"{url}\"\n\
             fallback = \"silence\"\nreconnect_max_ms = 1000\nkeep_warm = true\n"
        )
    };
    let config = [
        source("MP3", &ic.url("/live.mp3")),
        source("OGG", &ic.url("/live.ogg")),
        source("OPUS", &ic.url("/live.opus")),
        source("AAC", &ic.url("/live.aac")),
        // A .pls whose first entry is missing; and Icecast's own .m3u of the MP3 mount.
        source("PLS", &ic.url("/radio.pls")),
        source("M3U", &ic.url("/live.mp3.m3u")),
    ]
    .concat();
    let server = live_server(&config);
    for (name, codec) in [
        ("MP3", "mp3"),
        ("OGG", "vorbis"),
        ("OPUS", "opus"),
        ("AAC", "aac"),
        ("PLS", "mp3"),
        ("M3U", "mp3"),
    ] {
        wait_for_log(
            &server,
            &[
                "upstream delivers audio",
                &format!("source=\"{name}\""),
                codec,
            ],
            Duration::from_secs(20),
        );
        wait_for_log(
            &server,
            &["listeners hear the upstream", &format!("source={name}")],
            Duration::from_secs(20),
        );
    }
    wait_for_log(
        &server,
        &["now playing", "source=\"MP3\"", "Hold Music One"],
        Duration::from_secs(10),
    );

    // Two plain-SIP callers of MP3 700 ms apart, an MRCP caller, and one caller per codec.
    let a = plain_caller(&server, "MP3", 3.0, "mp3-a");
    std::thread::sleep(Duration::from_millis(700));
    let b = plain_caller(&server, "MP3", 3.0, "mp3-b");
    let mrcp = {
        let uri = format!("sip:imss@{}", server.sip);
        let out = server.dir.path().join("mrcp.wav");
        std::thread::spawn(move || {
            call(
                &[
                    "--mrcp",
                    &uri,
                    "--speak",
                    "source:MP3",
                    "--stop-after",
                    "2500",
                    "--seconds",
                    "20",
                ],
                &out,
                Duration::from_secs(40),
            )
        })
    };
    let tones: Vec<_> = [("OGG", 500.0), ("OPUS", 700.0), ("AAC", 1200.0)]
        .into_iter()
        .map(|(name, hz)| (name, hz, plain_caller(&server, name, 2.0, name)))
        .collect();
    let playlists: Vec<_> = ["PLS", "M3U"]
        .into_iter()
        .map(|name| (name, plain_caller(&server, name, 2.0, name)))
        .collect();

    let a = a.join().expect("caller a");
    let b = b.join().expect("caller b");
    let mrcp = mrcp.join().expect("mrcp caller");
    assert_paced(&a, "MP3 caller a", 3.0);
    assert_paced(&b, "MP3 caller b", 3.0);
    let mut offsets = Vec::new();
    for (who, r) in [("a", &a), ("b", &b), ("mrcp", &mrcp)] {
        let window = &r.audio[4000..8000];
        let (off, corr) = best_correlation(&reference, window);
        eprintln!("MP3 caller {who}: correlation {corr:.3} with what ffmpeg fed");
        assert!(
            corr > 0.98,
            "MP3 caller {who} does not hear what ffmpeg fed (correlation {corr:.3})"
        );
        offsets.push(off);
    }
    // Same moment: b's sample k is a's sample k + (b_first - a_first) * 8, modulo the loop.
    let expected = ((b.first_ms() - a.first_ms()) * 8.0).round() as i64;
    let measured = offsets[1] as i64 - offsets[0] as i64;
    let n = reference.len() as i64 / 2;
    let lag = (measured - expected).rem_euclid(n);
    let lag = lag.min(n - lag);
    eprintln!("MP3 callers: expected offset {expected}, measured {measured} (mod {n})");
    assert!(
        lag <= 160,
        "caller b is {lag} samples off caller a at the same moment (more than a 20 ms frame)"
    );
    assert_eq!(
        mrcp.report["stopped"].as_bool(),
        Some(true),
        "{}",
        mrcp.report
    );
    for (name, hz, caller) in tones {
        let r = caller.join().expect("caller");
        assert_paced(&r, name, 2.0);
        let share = tone_share(&r.audio[800..15_200], hz);
        eprintln!("{name}: {share:.3} of the energy at {hz} Hz");
        assert!(
            share > 0.9,
            "{name} caller does not hear the {hz} Hz stream ({share:.3})"
        );
    }
    for (name, caller) in playlists {
        let r = caller.join().expect("caller");
        assert_paced(&r, name, 2.0);
        let (_, corr) = best_correlation(&reference, &r.audio[4000..8000]);
        assert!(
            corr > 0.98,
            "{name} caller does not hear the MP3 mount (correlation {corr:.3})"
        );
    }
    // The .pls's first entry is missing: logged nowhere as an outage, the second played.
    let log = plain_log(&server);
    assert!(
        log.lines().any(|l| l.contains("upstream delivers audio")
            && l.contains("source=\"PLS\"")
            && l.contains("/live.mp3")),
        "the playlist's second entry plays:\n{log}"
    );
}

#[test]
fn killing_icecast_mid_call_plays_the_fallback_until_the_stream_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ic = Icecast::start(dir.path(), 0);
    let port = ic.port;
    let mut feeder = Some(feed_mp3_tone(&ic, "/live.mp3", 1000));
    let stall_ms = 2000.0;
    let server = live_server(&format!(
        "[[external_audio]]\nname = \"MP3\"\nkind = \"http\"\nurl = \"{}\"\n\
             fallback = \"tone\"\nstall_ms = {stall_ms}\nreconnect_max_ms = 1000\n\
             keep_warm = true\n",
        ic.url("/live.mp3")
    ));
    wait_for_log(
        &server,
        &["listeners hear the upstream", "source=MP3"],
        Duration::from_secs(20),
    );
    let seconds = 13.0;
    let callers = [
        plain_caller(&server, "MP3", seconds, "kill-a"),
        plain_caller(&server, "MP3", seconds, "kill-b"),
    ];
    std::thread::sleep(Duration::from_millis(3500));
    let killed_ms = unix_ms();
    ic.kill();
    drop(feeder.take());
    std::thread::sleep(Duration::from_millis(3000));
    let restarted_ms = unix_ms();
    ic = Icecast::start(dir.path(), port);
    feeder = Some(feed_mp3_tone(&ic, "/live.mp3", 1000));
    let got: Vec<Received> = callers
        .into_iter()
        .map(|c| c.join().expect("caller"))
        .collect();
    // The log of the calls' time, before the feeder's end makes an outage of its own.
    let log = plain_log(&server);
    drop(feeder);

    let mut failovers = Vec::new();
    for (who, r) in ["a", "b"].iter().zip(&got) {
        assert_paced(r, who, seconds);
        let heard = classify(&r.audio, 1000.0);
        let at_ms = |frame: usize| r.first_ms() + frame as f64 * 20.0;
        let frame_at = |ms: f64| ((ms - r.first_ms()) / 20.0).floor().max(0.0) as usize;
        let killed = frame_at(killed_ms);
        assert!(
            heard[25..killed.saturating_sub(5)]
                .iter()
                .all(|h| *h == Heard::Stream),
            "caller {who}: the stream before the kill: {heard:?}"
        );
        let fallback = (killed..heard.len())
            .find(|&i| heard[i] != Heard::Stream)
            .expect("the fallback after the kill");
        let failover_ms = at_ms(fallback) - killed_ms;
        eprintln!("caller {who}: fallback {failover_ms:.0} ms after Icecast was killed");
        assert!(
            failover_ms <= stall_ms + 20.0,
            "caller {who}: the fallback came {failover_ms:.0} ms after the kill (stall_ms {stall_ms} + one frame)"
        );
        failovers.push(failover_ms);
        let restarted = frame_at(restarted_ms);
        assert!(
            heard[fallback + 1..restarted]
                .iter()
                .all(|h| *h == Heard::Fallback),
            "caller {who}: the fallback while Icecast is down: {heard:?}"
        );
        let back = (restarted..heard.len())
            .find(|&i| heard[i] == Heard::Stream)
            .expect("the stream after the restart");
        eprintln!(
            "caller {who}: the stream again {:.0} ms after Icecast restarted",
            at_ms(back) - restarted_ms
        );
        assert!(
            heard[back + 1..].iter().all(|h| *h == Heard::Stream),
            "caller {who}: the stream to the end: {heard:?}"
        );
        // Never dead air: every frame after the first half second is the stream, the
        // fallback, or one frame of a switch between them. (The restarted stream itself
        // may begin with its encoder's few milliseconds of silence.)
        assert_no_dead_air(&heard[..back.saturating_sub(3)], who);
    }
    // Both callers switch at the same moment.
    assert!(
        (failovers[0] - failovers[1]).abs() <= 40.0,
        "callers switched {failovers:?} ms after the kill"
    );
    // One outage, logged once when it began and once when it ended.
    let count = |what: &str| {
        log.lines()
            .filter(|l| l.contains(what) && l.contains("MP3"))
            .count()
    };
    assert_eq!(count("upstream lost"), 1, "{log}");
    assert_eq!(count("upstream recovered"), 1, "{log}");
}

/// The sox processes that are children of `pid`.
fn sox_children(pid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for child in children
            .split_whitespace()
            .filter_map(|c| c.parse::<i32>().ok())
        {
            let comm = std::fs::read_to_string(format!("/proc/{child}/comm")).unwrap_or_default();
            if comm.trim() == "sox" {
                found.push(child);
            }
        }
    }
    found
}

#[test]
fn a_command_source_is_restarted_when_its_program_stalls_or_is_killed() {
    require("sox", "sox");
    // 16 kHz stereo: a pipe (64 KiB) then holds one second.
    let server = live_server(
        "[[external_audio]]\nname = \"SOX\"\nkind = \"command\"\n\
         command = \"sox -q -n -t raw -r 16000 -e signed -b 16 -c 2 - synth 3600 sine 600\"\n\
         format = \"s16le\"\nsample_rate = 16000\nchannels = 2\nprebuffer_ms = 300\n\
         stall_ms = 1000\nreconnect_min_ms = 100\nreconnect_max_ms = 500\nfallback = \"tone\"\n\
         keep_warm = true\n",
    );
    wait_for_log(
        &server,
        &["listeners hear the upstream", "source=SOX"],
        Duration::from_secs(20),
    );
    let first = sox_children(server.pid());
    assert_eq!(first.len(), 1, "one sox child of the server");
    let seconds = 12.0;
    let caller = plain_caller(&server, "SOX", seconds, "sox");
    std::thread::sleep(Duration::from_millis(1500));
    // A hung program: its audio stops, the buffers play out, then the fallback; after
    // stall_ms without output the server kills it and starts it again.
    unsafe { libc::kill(first[0], libc::SIGSTOP) };
    let deadline = Instant::now() + Duration::from_secs(10);
    let second = loop {
        let now = sox_children(server.pid());
        if let Some(&pid) = now.iter().find(|&&p| p != first[0]) {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "sox was not restarted after a stall"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        !std::path::Path::new(&format!("/proc/{}", first[0])).exists()
            || std::fs::read_to_string(format!("/proc/{}/stat", first[0]))
                .is_ok_and(|s| s.contains(") Z ")),
        "the stalled sox was killed"
    );
    std::thread::sleep(Duration::from_millis(2000));
    // Killed outright: its output ends, what is buffered plays while it restarts.
    unsafe { libc::kill(second, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = sox_children(server.pid());
        if now.iter().any(|&p| p != first[0] && p != second) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "sox was not restarted after SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = caller.join().expect("caller");
    assert_paced(&r, "SOX caller", seconds);
    let heard = classify(&r.audio, 600.0);
    assert_no_dead_air(&heard, "SOX caller");
    let fallback = heard
        .iter()
        .position(|h| *h == Heard::Fallback)
        .expect("the fallback while sox hung");
    assert!(
        heard[fallback..].contains(&Heard::Stream),
        "sox again after the fallback: {heard:?}"
    );
    assert_eq!(
        heard.last(),
        Some(&Heard::Stream),
        "sox at the end of the call: {heard:?}"
    );
    let log = plain_log(&server);
    assert!(
        log.lines()
            .any(|l| l.contains("upstream lost") && l.contains("no output for 1000 ms")),
        "{log}"
    );
    // A program whose output ended is started again without an outage to log (its exit
    // status goes to the source's health); the hung one was an outage, logged once.
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("upstream lost") && l.contains("SOX"))
            .count(),
        1,
        "{log}"
    );
}

/// Icecast's listener count on `mount`, from its admin statistics.
fn icecast_listeners(ic: &Icecast, mount: &str) -> u32 {
    let auth = base64(&format!("admin:{ADMIN_PASSWORD}"));
    let mut s = TcpStream::connect(("127.0.0.1", ic.port)).expect("connect to icecast");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    write!(
        s,
        "GET /admin/stats HTTP/1.0\r\nAuthorization: Basic {auth}\r\n\r\n"
    )
    .expect("send");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    let at = body
        .find(&format!("<source mount=\"{mount}\">"))
        .unwrap_or_else(|| panic!("no {mount} in icecast stats: {body}"));
    let rest = &body[at..];
    let start = rest.find("<listeners>").expect("listeners") + "<listeners>".len();
    let end = rest[start..].find('<').expect("end of listeners");
    rest[start..start + end].parse().expect("a number")
}

fn wait_for_listeners(ic: &Icecast, mount: &str, n: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = icecast_listeners(ic, mount);
        if now == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "icecast has {now} listeners on {mount}, not {n}, after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_http_source_connects_for_its_first_caller_and_lets_go_once_idle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ic = Icecast::start(dir.path(), 0);
    let _feeder = feed_mp3_tone(&ic, "/live.mp3", 1000);
    let server = live_server(&format!(
        "[[external_audio]]\nname = \"MP3\"\nkind = \"http\"\nurl = \"{}\"\n\
         fallback = \"tone\"\nprebuffer_ms = 500\nidle_stop_s = 1\n",
        ic.url("/live.mp3")
    ));
    // Nobody listens: the server does not connect.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(icecast_listeners(&ic, "/live.mp3"), 0);
    assert!(
        !plain_log(&server).contains("upstream delivers audio"),
        "{}",
        plain_log(&server)
    );

    for round in ["first", "second"] {
        let caller = plain_caller(&server, "MP3", 3.0, &format!("lazy-{round}"));
        wait_for_listeners(&ic, "/live.mp3", 1, Duration::from_secs(5));
        let r = caller.join().expect("caller");
        assert_paced(&r, round, 3.0);
        let heard = classify(&r.audio, 1000.0);
        // The stream within the first second, silence before it, never the fallback tone:
        // a caller put on hold hears music after a moment, not a tone.
        let first = heard
            .iter()
            .position(|h| *h == Heard::Stream)
            .unwrap_or_else(|| panic!("{round} caller never hears the stream: {heard:?}"));
        assert!(
            first <= 50,
            "{round} caller: the stream from frame {first}: {heard:?}"
        );
        // (The frame where the stream begins may hold silence and the stream.)
        assert!(
            heard[..first]
                .iter()
                .enumerate()
                .all(|(i, h)| *h == Heard::Other || (i + 1 == first && *h == Heard::Switch)),
            "{round} caller: before the stream: {heard:?}"
        );
        assert!(
            heard[first + 1..].iter().all(|h| *h == Heard::Stream),
            "{round} caller: the stream to the end: {heard:?}"
        );
        // The caller has gone: after idle_stop_s the server lets the stream go.
        wait_for_listeners(&ic, "/live.mp3", 0, Duration::from_secs(5));
    }
    let log = plain_log(&server);
    assert_eq!(
        log.matches("upstream let go: the source has no listeners")
            .count(),
        2,
        "{log}"
    );
    assert!(
        !log.contains("upstream lost"),
        "letting go is no outage: {log}"
    );
}
