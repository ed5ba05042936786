//! `imss`: the media streaming server and its operator tools.
//!
//! `serve` runs the server (embedded defaults without `--config`), `check-config` validates a
//! file, `call` places one test call and `bench` many, `admin` manages web interface accounts
//! and API tokens.

mod admin;
mod logging;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use imss_server::Config;
use std::net::IpAddr;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "imss",
    version,
    about = "Open media streaming server for contact centres"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the media streaming server.
    Serve {
        /// Configuration file (TOML). Without it the embedded defaults are used.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory for the embedded defaults (audio/, mail/, cache/ below it).
        #[arg(long, default_value = "imss-data")]
        data_dir: PathBuf,
    },
    /// Validate a configuration file and exit (non-zero with the key and line on error).
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Place one call, receive its RTP, report loss and jitter, optionally write a WAV.
    ///
    /// With --mrcp the call is an MRCPv2 session (RFC 6787): SPEAK on the granted channel,
    /// PAUSE/RESUME/STOP at the given offsets, every MRCP message received printed.
    Call {
        /// SIP URI, e.g. 'sip:annc@127.0.0.1:6060;play=x.wav', 'sip:moh@127.0.0.1:6060', or
        /// with --mrcp 'sip:imss@127.0.0.1:6060'.
        uri: String,
        /// Seconds to stay on the call (the server may hang up first); with --mrcp the limit
        /// for the whole exchange up to SPEAK-COMPLETE. Default 5, with --mrcp 60.
        #[arg(long)]
        seconds: Option<f64>,
        /// Write the received audio here (8 kHz mono 16-bit WAV).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Codecs to offer, in order of preference.
        #[arg(long, value_delimiter = ',', default_value = "pcmu,pcma")]
        codecs: Vec<String>,
        /// Packet time to ask for, in ms.
        #[arg(long, default_value_t = 20)]
        ptime: u32,
        /// Local address for SIP and RTP.
        #[arg(long, default_value = "127.0.0.1")]
        local_ip: IpAddr,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Open an MRCPv2 session and SPEAK (needs --speak).
        #[arg(long, requires = "speak")]
        mrcp: bool,
        /// What to SPEAK: a URI (file path, file://, source:NAME, http://...) sent as
        /// text/uri-list, SSML (starting with '<'), or plain text.
        #[arg(long, value_name = "URI|TEXT", requires = "mrcp")]
        speak: Option<String>,
        /// Send PAUSE this many ms after the SPEAK's IN-PROGRESS response.
        #[arg(long, value_name = "MS", requires = "mrcp")]
        pause_after: Option<u64>,
        /// Send RESUME this many ms after the SPEAK's IN-PROGRESS response.
        #[arg(long, value_name = "MS", requires = "mrcp")]
        resume_after: Option<u64>,
        /// Send STOP this many ms after the SPEAK's IN-PROGRESS response.
        #[arg(long, value_name = "MS", requires = "mrcp")]
        stop_after: Option<u64>,
        /// MRCP resource to ask for.
        #[arg(long, value_name = "NAME", default_value = "speechsynth")]
        resource: String,
    },
    /// Web interface accounts and API tokens in a configuration file.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Load test: many concurrent calls to one URI.
    Bench {
        /// SIP URI to call.
        uri: String,
        /// Concurrent calls.
        #[arg(long, default_value_t = 100)]
        calls: usize,
        /// Seconds each call is held after it is answered.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// New calls per second while ramping up.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// PID of the server, to report its CPU and memory (same machine only).
        #[arg(long)]
        server_pid: Option<u32>,
        /// Local address for SIP and RTP.
        #[arg(long, default_value = "127.0.0.1")]
        local_ip: IpAddr,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// MRCPv2 sessions (RFC 6787): each INVITE offers a control channel; once answered,
        /// the session opens it and SPEAKs (needs --speak). Reports INVITE to channel ready,
        /// SPEAK to IN-PROGRESS and SPEAK to the first RTP packet with sound.
        #[arg(long, requires = "speak")]
        mrcp: bool,
        /// What each session SPEAKs: a URI, SSML or text, as for `call --speak`. It should
        /// start with sound (a tone file, a live source) for the SPEAK-to-audio figure.
        /// `{n}` is replaced by the session's number (from 1), e.g.
        /// `imap://host/INBOX/;UID={n}` for a message of its own per session.
        #[arg(long, value_name = "URI|TEXT", requires = "mrcp")]
        speak: Option<String>,
        /// MRCP resource to ask for.
        #[arg(long, value_name = "NAME", default_value = "speechsynth")]
        resource: String,
        /// With --mrcp: SPEAK this many ms after the control connection opens.
        #[arg(long, value_name = "MS", default_value_t = 0, requires = "mrcp")]
        speak_after: u64,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let log_filter = logging::init();
    raise_open_files_limit();
    match cli.command {
        Command::CheckConfig { file } => {
            let config = Config::load(&file)?;
            for warning in config.warnings() {
                eprintln!("{}: warning: {warning}", file.display());
            }
            println!(
                "{}: ok ({} live source{})",
                file.display(),
                config.external_audio.len(),
                if config.external_audio.len() == 1 {
                    ""
                } else {
                    "s"
                }
            );
            Ok(())
        }
        Command::Serve { config, data_dir } => {
            let (loaded, path) = match config {
                Some(path) => (Config::load(&path)?, path),
                None => embedded_config(&data_dir)?,
            };
            if !logging::from_environment()
                && let Err(e) = logging::setter(log_filter.clone())(&loaded.general.log_level)
            {
                tracing::warn!(level = %loaded.general.log_level, error = %e, "general.log_level not applied");
            }
            runtime()?.block_on(serve(loaded, path, logging::setter(log_filter)))
        }
        Command::Call {
            uri,
            seconds,
            out,
            codecs,
            ptime,
            local_ip,
            json,
            mrcp,
            speak,
            pause_after,
            resume_after,
            stop_after,
            resource,
        } => {
            let ms = |v: Option<u64>| v.map(std::time::Duration::from_millis);
            let mrcp = match (mrcp, speak) {
                (true, Some(speak)) => Some(imss_client::MrcpOptions {
                    speak,
                    pause_after: ms(pause_after),
                    resume_after: ms(resume_after),
                    stop_after: ms(stop_after),
                    resource,
                }),
                (true, None) => bail!("--mrcp needs --speak URI|TEXT"),
                (false, _) => None,
            };
            let seconds = seconds.unwrap_or(if mrcp.is_some() { 60.0 } else { 5.0 });
            let opts = imss_client::CallOptions {
                uri,
                seconds,
                out,
                codecs: parse_codecs(&codecs)?,
                ptime_ms: ptime,
                local_ip,
                mrcp,
            };
            let report = runtime()?
                .block_on(imss_client::place_call(&opts))
                .with_context(|| format!("call to {}", opts.uri))?;
            print_report(&report, json)
        }
        Command::Admin { command } => admin::run(command),
        Command::Bench {
            uri,
            calls,
            seconds,
            rate,
            server_pid,
            local_ip,
            json,
            mrcp,
            speak,
            resource,
            speak_after,
        } => {
            let opts = imss_client::BenchOptions {
                uri,
                calls,
                seconds,
                rate,
                server_pid,
                local_ip,
                mrcp: match (mrcp, speak) {
                    (true, Some(speak)) => Some(imss_client::BenchMrcp {
                        speak,
                        resource,
                        speak_after: std::time::Duration::from_millis(speak_after),
                    }),
                    (true, None) => bail!("--mrcp needs --speak URI|TEXT"),
                    (false, _) => None,
                },
            };
            let report = runtime()?
                .block_on(imss_client::run_bench(&opts))
                .with_context(|| format!("bench against {}", opts.uri))?;
            print_report(&report, json)
        }
    }
}

/// Prints a call or bench report, as text or as JSON.
fn print_report<R: std::fmt::Display + serde::Serialize>(report: &R, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

/// One thread for the async side of every command. The server's control plane (SIP,
/// MRCPv2 connections, HTTP) and the bench's are many small hand-offs — a control
/// connection's message to the SIP/MRCP shell, the shell's answer to the connection's writer —
/// and on a multi-thread runtime each is a wake-up of another worker: at 1,000 MRCP
/// sessions/s that cost a fifth of the server's CPU in context switches and put p99 set-up
/// above 500 ms, against 11 ms here; the bench itself needs a sixth less CPU
/// (docs/BENCHMARKS.md). Media runs on the pacing and receiver threads, file decoding and
/// text-to-speech on the blocking pool, so nothing slow shares this thread.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")
}

fn parse_codecs(names: &[String]) -> Result<Vec<imss_client::Codec>> {
    names
        .iter()
        .map(|n| match n.to_ascii_lowercase().as_str() {
            "pcmu" | "ulaw" => Ok(imss_client::Codec::Pcmu),
            "pcma" | "alaw" => Ok(imss_client::Codec::Pcma),
            other => bail!("unknown codec {other:?}: use pcmu and/or pcma"),
        })
        .collect()
}

/// Without `--config`: the configuration file `DATA_DIR/imss.toml`, written with the embedded
/// defaults on the first start, so that changes made in the web interface are kept.
fn embedded_config(data_dir: &std::path::Path) -> Result<(Config, PathBuf)> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join("imss.toml");
    let config = if path.exists() {
        Config::load(&path)?
    } else {
        let c = Config::embedded(data_dir);
        imss_server::config_file::write_atomically(&path, &c)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(file = %path.display(), "embedded defaults written; the server keeps its settings there");
        c
    };
    prepare_embedded(&config)?;
    Ok((config, path))
}

/// Creates the data folders of the embedded defaults and, on a fresh start, the demo music
/// the `moh` source plays.
fn prepare_embedded(config: &Config) -> Result<()> {
    let moh = config.audio_root().join("moh");
    std::fs::create_dir_all(&moh).with_context(|| format!("creating {}", moh.display()))?;
    let empty = std::fs::read_dir(&moh)
        .with_context(|| format!("reading {}", moh.display()))?
        .next()
        .is_none();
    if empty {
        let demo = moh.join("imss-demo.wav");
        imss_server::write_demo_music(&demo)
            .with_context(|| format!("writing {}", demo.display()))?;
    }
    Ok(())
}

/// Serves until SIGTERM or Ctrl-C. On SIGHUP the configuration file is read again and
/// applied as far as it can be while calls run (see `RunningServer::reload`); a file that
/// does not load or validate changes nothing.
async fn serve(
    config: Config,
    path: std::path::PathBuf,
    set_log_level: imss_server::admin::SetLogLevel,
) -> Result<()> {
    let server =
        imss_server::start_with_options(config, Some(path.clone()), Some(set_log_level)).await?;
    // One machine-readable line on stdout so scripts and tests learn the bound ports.
    println!(
        "{}",
        serde_json::json!({
            "event": "ready",
            "sip_udp": server.sip_udp.to_string(),
            "sip_tcp": server.sip_tcp.to_string(),
            "http": server.http.to_string(),
            "mrcp": server.mrcp.to_string(),
            "mrcp_tls": server.mrcp_tls.map(|a| a.to_string()),
        })
    );
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            _ = hangup.recv() => reload(&server, &path),
        }
    }
    tracing::info!("shutting down: ending calls");
    server.shutdown().await;
    Ok(())
}

/// SIGHUP: reads the configuration file again and applies it.
fn reload(server: &imss_server::RunningServer, path: &std::path::Path) {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(error) => {
            tracing::error!(file = %path.display(), %error, "configuration not reloaded: the running one stays");
            return;
        }
    };
    let report = server.reload(&config);
    tracing::info!(
        file = %path.display(),
        sources_added = ?report.sources.added,
        sources_changed = ?report.sources.changed,
        sources_removed = ?report.sources.removed,
        applied = ?report.applied,
        "configuration reloaded"
    );
    if !report.needs_restart.is_empty() {
        tracing::warn!(sections = ?report.needs_restart, "these settings changed and take effect after a restart");
    }
}

/// Raises the soft open-files limit to the hard limit: every call holds two RTP sockets.
fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
