//! Test harness: starts the real `imss` binary on ephemeral ports with a temporary data
//! directory, and the real peers (sipp, ffmpeg, sox) the tests talk to it with.
#![allow(dead_code)]

pub mod api;
pub mod mrcp;
pub mod raw;
pub mod session;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Fails the test with the Debian package to install when a peer program is missing.
pub fn require(program: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/bin"] {
        let p = Path::new(dir).join(program);
        if p.exists() {
            return p;
        }
    }
    panic!(
        "{program} is required for this test: install the Debian package `{package}` (scripts/test does)"
    );
}

/// A running `imss serve` with its temp directory; killed on drop.
pub struct Server {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub sip: SocketAddr,
    pub http: SocketAddr,
    pub mrcp: SocketAddr,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    /// The audio root of this server.
    pub fn audio(&self) -> PathBuf {
        self.dir.path().join("audio")
    }

    /// Everything the server logged so far.
    pub fn log(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- imss log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free port number right now (bind to 0, read, release).
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// An even free port whose odd neighbour is free too (for an RTP/RTCP pair).
pub fn free_rtp_port() -> u16 {
    for _ in 0..200 {
        let p = free_udp_port() & !1;
        if p < 1024 {
            continue;
        }
        if UdpSocket::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p + 1)).is_ok()
        {
            return p;
        }
    }
    panic!("no free RTP port pair");
}

/// Starts the server. `prepare` fills the audio root before start; `extra_toml` is appended
/// to a config that binds everything on 127.0.0.1 with ephemeral SIP, HTTP and MRCP ports
/// (its lines `mrcp.KEY = …` go into the `[mrcp]` table, `sip.KEY = …` into `[sip]`,
/// `http.KEY = …` into `[http]`).
pub fn start_server(extra_toml: &str, prepare: impl FnOnce(&Path)) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let audio = dir.path().join("audio");
    std::fs::create_dir_all(&audio).expect("mkdir audio");
    prepare(&audio);
    // A private RTP range per server keeps parallel tests apart.
    let base = 20000 + (std::process::id() as u16 % 200) * 40 + (rand_u16() % 40) * 100;
    let base = base & !1;
    // Keys of `extra_toml` that start with `mrcp.` go into the [mrcp] table.
    let (mrcp_extra, extra): (Vec<&str>, Vec<&str>) =
        extra_toml.lines().partition(|l| l.starts_with("mrcp."));
    let mrcp_extra: String = mrcp_extra
        .iter()
        .map(|l| format!("{}\n", l.trim_start_matches("mrcp.")))
        .collect();
    let (sip_extra, extra): (Vec<&str>, Vec<&str>) =
        extra.into_iter().partition(|l| l.starts_with("sip."));
    let sip_extra: String = sip_extra
        .iter()
        .map(|l| format!("{}\n", l.trim_start_matches("sip.")))
        .collect();
    let (http_extra, extra): (Vec<&str>, Vec<&str>) =
        extra.into_iter().partition(|l| l.starts_with("http."));
    let http_extra: String = http_extra
        .iter()
        .map(|l| format!("{}\n", l.trim_start_matches("http.")))
        .collect();
    let extra = extra.join("\n");
    let config = format!(
        r#"[general]
name = "test"
data_dir = "{data}"
[sip]
bind = "127.0.0.1"
port = 0
{sip_extra}[http]
bind = "127.0.0.1"
port = 0
{http_extra}[mrcp]
bind = "127.0.0.1"
port = 0
{mrcp_extra}[rtp]
bind = "127.0.0.1"
port_min = {base}
port_max = {max}
pacing_threads = 1
{extra}
"#,
        data = dir.path().display(),
        max = base as u32 + 4000,
    );
    let path = dir.path().join("imss.toml");
    std::fs::write(&path, config).expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_imss"))
        .args(["serve", "--config"])
        .arg(&path)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start imss");
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut err = child.stderr.take().expect("stderr");
    let sink = stderr.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = err.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        }
    });
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "imss did not report ready; stderr:\n{}",
                stderr.lock().map(|s| s.clone()).unwrap_or_default()
            )
        });
    let v: serde_json::Value = serde_json::from_str(&line).expect("ready line is JSON");
    let sip: SocketAddr = v["sip_udp"]
        .as_str()
        .expect("sip_udp")
        .parse()
        .expect("addr");
    let http: SocketAddr = v["http"].as_str().expect("http").parse().expect("addr");
    let mrcp: SocketAddr = v["mrcp"].as_str().expect("mrcp").parse().expect("addr");
    Server {
        child,
        dir,
        sip,
        http,
        mrcp,
        stderr,
    }
}

fn rand_u16() -> u16 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (t ^ (t >> 16)) as u16
}

/// Writes a 16-bit mono WAV.
pub fn write_wav(path: &Path, rate: u32, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).expect("create wav");
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .expect("write sample");
    }
    w.finalize().expect("finalize wav");
}

/// Reads a 16-bit mono WAV as f32 and its rate.
pub fn read_wav(path: &Path) -> (u32, Vec<f32>) {
    let mut r =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let rate = r.spec().sample_rate;
    let samples = r
        .samples::<i16>()
        .map(|s| f32::from(s.expect("sample")) / 32768.0)
        .collect();
    (rate, samples)
}

/// A 1 kHz sine at `rate`, −6 dBFS.
pub fn tone(rate: u32, seconds: f64) -> Vec<f32> {
    let n = (seconds * f64::from(rate)) as usize;
    (0..n)
        .map(|i| {
            (0.5 * (2.0 * std::f64::consts::PI * 1000.0 * i as f64 / f64::from(rate)).sin()) as f32
        })
        .collect()
}

/// A speech-like signal: a gliding 100–220 Hz voice with harmonics up to 3.3 kHz under
/// formant-like weights, amplitude-modulated at syllable rate. Analytic, so it can be
/// computed at any sample rate as an exact reference. Peak about 0.82 (no clipping).
pub fn speech_like(rate: u32, seconds: f64) -> Vec<f32> {
    let n = (seconds * f64::from(rate)) as usize;
    let two_pi = 2.0 * std::f64::consts::PI;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            // f0(t) = 160 + 60 sin(2π·0.7 t); its phase is the integral.
            let phase =
                two_pi * (160.0 * t - 60.0 / (two_pi * 0.7) * ((two_pi * 0.7 * t).cos() - 1.0));
            let f0 = 160.0 + 60.0 * (two_pi * 0.7 * t).sin();
            let mut v = 0.0;
            let mut k = 1.0;
            while k * f0 < 3300.0 && k < 40.0 {
                let f = k * f0;
                let w = (-(f - 700.0).powi(2) / 2.0e5).exp()
                    + 0.6 * (-(f - 1200.0).powi(2) / 3.0e5).exp()
                    + 0.3 * (-(f - 2500.0).powi(2) / 4.0e5).exp();
                v += w * (k * phase).sin();
                k += 1.0;
            }
            let env = 0.55 + 0.45 * (two_pi * 4.0 * t).sin();
            (0.07 * env * v) as f32
        })
        .collect()
}

/// Best alignment of `got` against `reference` within ±`max_lag` samples, and the SNR there
/// after least-squares gain, in dB, computed over the overlap minus `trim` samples at both ends.
pub fn snr_db(reference: &[f32], got: &[f32], max_lag: usize, trim: usize) -> (isize, f64) {
    let mut best = (0isize, f64::MIN);
    for lag in -(max_lag as isize)..=(max_lag as isize) {
        let mut dot = 0.0;
        // Every sample: a stride would alias periodic signals (a 1 kHz tone at 8 kHz repeats
        // every 8 samples) and pick a quarter-period lag.
        for (i, r) in reference.iter().enumerate().take(16_000) {
            let j = i as isize + lag;
            if j >= 0 && (j as usize) < got.len() {
                dot += f64::from(*r) * f64::from(got[j as usize]);
            }
        }
        if dot > best.1 {
            best = (lag, dot);
        }
    }
    let lag = best.0;
    let pairs: Vec<(f64, f64)> = reference
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let j = i as isize + lag;
            (j >= 0 && (j as usize) < got.len())
                .then(|| (f64::from(*r), f64::from(got[j as usize])))
        })
        .collect();
    assert!(
        pairs.len() > 2 * trim + 800,
        "too little overlap: {}",
        pairs.len()
    );
    let pairs = &pairs[trim..pairs.len() - trim];
    let rg: f64 = pairs.iter().map(|(r, g)| r * g).sum();
    let gg: f64 = pairs.iter().map(|(_, g)| g * g).sum();
    let gain = if gg > 0.0 { rg / gg } else { 0.0 };
    let signal: f64 = pairs.iter().map(|(r, _)| r * r).sum();
    let noise: f64 = pairs.iter().map(|(r, g)| (r - gain * g).powi(2)).sum();
    (lag, 10.0 * (signal / noise.max(1e-20)).log10())
}

/// Runs a command with a deadline; returns (status, stdout, stderr).
pub fn run_with_timeout(
    cmd: &mut Command,
    limit: Duration,
) -> (std::process::ExitStatus, String, String) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let start = Instant::now();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            let o = t_out.join().unwrap_or_default();
            let e = t_err.join().unwrap_or_default();
            panic!("{cmd:?} ran past {limit:?}\nstdout:\n{o}\nstderr:\n{e}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (
        status,
        t_out.join().unwrap_or_default(),
        t_err.join().unwrap_or_default(),
    )
}

/// An ffmpeg process receiving PCMU/PCMA RTP on `port` (SDP file) and writing `out` as WAV.
pub struct FfmpegReceiver {
    child: Child,
    pub out: PathBuf,
}

impl FfmpegReceiver {
    pub fn start(dir: &Path, port: u16, payload_type: u8) -> FfmpegReceiver {
        let ffmpeg = require("ffmpeg", "ffmpeg");
        let sdp = dir.join(format!("recv-{port}.sdp"));
        let codec = if payload_type == 8 { "PCMA" } else { "PCMU" };
        std::fs::write(
            &sdp,
            format!(
                "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=recv\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {payload_type}\r\na=rtpmap:{payload_type} {codec}/8000\r\na=recvonly\r\n"
            ),
        )
        .expect("write sdp");
        let out = dir.join(format!("recv-{port}.wav"));
        let child = Command::new(ffmpeg)
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-y",
                "-protocol_whitelist",
                "file,udp,rtp",
                "-i",
            ])
            .arg(&sdp)
            .args(["-ar", "8000", "-ac", "1", "-c:a", "pcm_s16le"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start ffmpeg");
        FfmpegReceiver { child, out }
    }

    /// Stops ffmpeg the way a user would (SIGINT) so it finalises the WAV; returns its path.
    pub fn finish(mut self) -> PathBuf {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return self.out.clone();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("ffmpeg did not stop on SIGINT");
    }
}

impl Drop for FfmpegReceiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A SIP request with a well-formed header set; `extra` headers and `body` as given.
pub fn request(
    method: &str,
    uri: &str,
    local: SocketAddr,
    extra: &str,
    body: &str,
    tag: &str,
) -> String {
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-{tag}\r\nFrom: <sip:t@{local}>;tag={tag}\r\nTo: <{uri}>\r\nCall-ID: {tag}@test\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContact: <sip:t@{local}>\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The value of SIP header `name` (case-insensitive) in `msg`.
pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    let prefix = format!("{}:", name.to_ascii_lowercase());
    msg.lines()
        .find(|l| l.to_ascii_lowercase().starts_with(&prefix))
        .map(|l| l[name.len() + 1..].trim())
}

pub fn offer(port: u16, pts: &str) -> String {
    format!(
        "v=0\r\no=t 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {pts}\r\na=recvonly\r\n"
    )
}
