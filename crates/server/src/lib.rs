//! The imss server's core: wires a SIP dialog to an RTP stream and its source.
//!
//! Owns: the configuration model, start-up and shutdown of every listener, the live
//! sources, and the call table (one entry per SIP dialog, each with its paced RTP stream).
//! The SIP, RTP and media crates do the protocol and media work; this crate only moves
//! bytes between sockets and their sans-IO cores and decides what each call plays.
//!
//! Must not: build packets or touch audio samples (the pacing engine does), or block the
//! tokio runtime (file decoding runs on the blocking pool).
//!
//! The MRCPv2 control channel can also run over TLS ([`tls`], `mrcp.tls_port`): rustls
//! (through tokio-rustls), memory-safe and free of system libraries, on the `ring` crypto
//! provider.
//!
//! Audio named by `http://` and `https://` URIs in requests is fetched by [`fetch`] with
//! `ureq`: a small, well-kept blocking HTTP/1.1 client (fetches run on the blocking pool
//! beside file decoding, so an async client would buy nothing), built on rustls with the
//! same `ring` provider and Mozilla's root certificates, without OpenSSL or aws-lc-rs.
//! Cache freshness follows RFC 7234 through `http-cache-semantics`.

pub mod admin;
pub mod audio_root;
pub mod config;
pub mod config_file;
mod demo;
pub mod fetch;
mod live;
pub mod mail_watch;
pub mod metrics;
mod sip_shell;
pub mod target;
pub mod tls;
pub mod tts;
mod upstream;
mod voicemail;

pub use config::{Config, ConfigError};
pub use demo::write_demo_music;
pub use live::SourcesReload;

use imss_media::ClipCache;
use imss_rtp::PortAllocator;
use imss_rtp::pacing::{Pacer, PacerConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not bind.
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address tried.
        addr: SocketAddr,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The RTP port range cannot be used.
    #[error("rtp port range: {0}")]
    Ports(String),
    /// The pacing threads could not start.
    #[error("cannot start the pacing threads: {0}")]
    Pacing(std::io::Error),
    /// The TLS certificate or key of the MRCPv2 control channel cannot be used.
    #[error("{0}")]
    Tls(#[from] tls::TlsConfigError),
    /// The HTTP audio fetcher could not be set up (its cache folder, CA file or proxy).
    #[error("{0}")]
    HttpAudio(#[from] fetch::SetupError),
    /// The mail settings cannot be used (a CA file that cannot be read, say).
    #[error("[mail]: {0}")]
    Mail(#[from] imss_mail::MailError),
    /// The web interface's TLS certificate or key cannot be used.
    #[error("{0}")]
    WebTls(String),
    /// The web interface's access control could not be set up.
    #[error("web interface access control: {0}")]
    WebAuth(String),
    /// A data folder could not be created.
    #[error("cannot create {path}: {source}")]
    DataDir {
        /// Folder.
        path: std::path::PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

/// A started server: its bound addresses and the handle that stops it.
pub struct RunningServer {
    /// SIP over UDP.
    pub sip_udp: SocketAddr,
    /// SIP over TCP.
    pub sip_tcp: SocketAddr,
    /// HTTP (health check, later the web interface).
    pub http: SocketAddr,
    /// MRCPv2 control channels (TCP).
    pub mrcp: SocketAddr,
    /// MRCPv2 control channels over TLS, when `mrcp.tls_port` is set.
    pub mrcp_tls: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    health: Arc<imss_web::Health>,
    shared: Arc<Shared>,
    admin: Arc<admin::Admin>,
}

/// What [`RunningServer::reload`] applied, and what it could not.
#[derive(Debug, Default, PartialEq)]
pub struct ReloadReport {
    /// Live sources added, changed and removed.
    pub sources: SourcesReload,
    /// Settings that changed and were applied at once (`mail`, `tts`, `general.log_level`,
    /// `sip.trusted_networks`, `http.admins`, `external_audio`, …).
    pub applied: Vec<&'static str>,
    /// Sections of the new configuration that differ from the running one and take effect
    /// only after a restart (ports, bind addresses, folders, …).
    pub needs_restart: Vec<&'static str>,
}

impl RunningServer {
    /// Applies a new, validated configuration as far as it can change while calls run: the
    /// live sources (`[[external_audio]]`), `[mail]`, `[tts]`, the log level, the trusted
    /// networks and the web accounts. Listeners of unchanged sources are not touched; see
    /// [`ReloadReport`] for the rest.
    pub fn reload(&self, config: &Config) -> ReloadReport {
        self.admin.apply(config)
    }

    /// The configuration applied now (the start-up one, then each reload's).
    pub fn applied_config(&self) -> Arc<Config> {
        self.shared.applied()
    }

    /// Stops accepting calls, ends every call with BYE, and waits for the tasks.
    pub async fn shutdown(self) {
        self.health.set_draining();
        let _ = self.shutdown.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// The sections of `config` that differ from `started` (what the server started with) in
/// settings only a restart changes: ports, bind addresses, folders, …
pub(crate) fn restart_sections(started: &Config, config: &Config) -> Vec<&'static str> {
    let restart_only = |c: &Config| {
        let mut c = c.clone();
        c.general.log_level = String::new();
        c.general.location = String::new();
        c.sip.trusted_networks = Vec::new();
        c.http = config_file::without_web_access(&c.http);
        c.mail = config::Mail::default();
        c.tts = config::Tts::default();
        c.external_audio = Vec::new();
        c
    };
    let (now, then) = (restart_only(config), restart_only(started));
    let sections: [(&'static str, bool); 8] = [
        ("general", now.general != then.general),
        ("sip", now.sip != then.sip),
        ("mrcp", now.mrcp != then.mrcp),
        ("rtp", now.rtp != then.rtp),
        ("http", now.http != then.http),
        ("audio", now.audio != then.audio),
        ("http_audio", now.http_audio != then.http_audio),
        ("notifier", now.notifier != then.notifier),
    ];
    sections
        .iter()
        .filter(|(_, differs)| *differs)
        .map(|(name, _)| *name)
        .collect()
}

/// `config` applied to the running server; see [`RunningServer::reload`].
pub(crate) fn apply(
    shared: &Arc<Shared>,
    web_auth: &imss_web::auth::Auth,
    set_log_level: Option<&admin::SetLogLevel>,
    config: &Config,
) -> ReloadReport {
    let before = shared.applied();
    let mut needs_restart = restart_sections(&shared.config, config);
    let mut applied = Vec::new();
    if config.general.log_level != before.general.log_level {
        match set_log_level.map(|set| set(&config.general.log_level)) {
            Some(Ok(())) => applied.push("general.log_level"),
            Some(Err(e)) => {
                tracing::warn!(level = %config.general.log_level, error = %e, "log level not changed");
                needs_restart.push("general.log_level");
            }
            None => needs_restart.push("general.log_level"),
        }
    }
    if config.general.location != before.general.location {
        // Read where it is shown (the dashboard); nothing listens on it.
        applied.push("general.location");
    }
    if config.sip.trusted_networks != before.sip.trusted_networks {
        applied.push("sip.trusted_networks");
    }
    match shared.voicemail.reconfigure(config) {
        Ok(true) => applied.push("mail"),
        Ok(false) => {}
        Err(e) => {
            tracing::error!(error = %e, "the new [mail] settings cannot be used: the previous ones stay until a restart");
            needs_restart.push("mail");
        }
    }
    if config.tts != before.tts {
        // Requests look the engine up by these settings: the next one gets the new engine.
        applied.push("tts");
    }
    // Web accounts, tokens and the session lifetime apply at once. Compared with the
    // accounts in force, which password changes made at login update too.
    // Cookies stay `Secure` or not as the listener runs: TLS on the port changes at restart.
    let mut settings = config_file::web_auth_settings(config);
    settings.secure_cookie = shared.config.http.tls_cert.is_some();
    if web_auth.replace(config_file::web_accounts(config), settings) {
        applied.push("http.admins");
    }
    let sources = shared.sources.reload(config);
    if !(sources.added.is_empty() && sources.changed.is_empty() && sources.removed.is_empty()) {
        applied.push("external_audio");
    }
    *shared
        .applied
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config.clone());
    ReloadReport {
        sources,
        applied,
        needs_restart,
    }
}

/// Shared, read-mostly state every call needs.
pub(crate) struct Shared {
    /// The configuration the server started with (listeners, ports and folders follow it).
    pub config: Config,
    /// The configuration applied now: the start-up one, then each reload's or saved change's.
    /// Settings that change live (`[mail]`, `[tts]`, trusted networks, …) are read here.
    pub applied: std::sync::RwLock<Arc<Config>>,
    pub clips: Arc<ClipCache>,
    pub ports: PortAllocator,
    pub pacer: Pacer,
    pub sources: live::LiveSources,
    /// Mints MRCPv2 Channel-Identifiers.
    pub channel_ids: imss_sip::sdp::ChannelIds,
    /// The bound MRCPv2 control port, written into SDP answers.
    pub mrcp_port: u16,
    /// Audio fetched over HTTP(S) for requests, and its caches.
    pub http_audio: Arc<fetch::HttpAudio>,
    /// The bound TLS control port, written into answers to `TCP/TLS/MRCPv2` offers.
    pub mrcp_tls_port: Option<u16>,
    /// Voicemail out of email (`imap:` and `fbmc:` URIs), and its cache.
    pub voicemail: voicemail::Voicemail,
    /// Sessions, SIP and MRCP responses, for `/metrics` and the status snapshot.
    pub metrics: Arc<metrics::Metrics>,
    /// When the server started.
    pub started: std::time::Instant,
}

impl Shared {
    /// The configuration applied now.
    pub fn applied(&self) -> Arc<Config> {
        Arc::clone(
            &self
                .applied
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// Binds SIP over UDP and TCP on the same port. With port 0 (tests) UDP picks the port and
/// TCP follows; if that TCP port is taken (an ephemeral port of some outgoing connection),
/// another pair is tried.
async fn bind_sip(
    ip: std::net::IpAddr,
    port: u16,
) -> Result<
    (
        tokio::net::UdpSocket,
        SocketAddr,
        tokio::net::TcpListener,
        SocketAddr,
    ),
    StartError,
> {
    let sip_bind = SocketAddr::new(ip, port);
    let mut attempts = if port == 0 { 20 } else { 1 };
    loop {
        attempts -= 1;
        let udp = tokio::net::UdpSocket::bind(sip_bind)
            .await
            .map_err(|source| StartError::Bind {
                what: "SIP/UDP",
                addr: sip_bind,
                source,
            })?;
        let sip_udp = udp.local_addr().map_err(|source| StartError::Bind {
            what: "SIP/UDP",
            addr: sip_bind,
            source,
        })?;
        // TCP on the same port as UDP (port 0 in tests: the port UDP got).
        let tcp_bind = SocketAddr::new(ip, sip_udp.port());
        let tcp = match tokio::net::TcpListener::bind(tcp_bind).await {
            Ok(tcp) => tcp,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && attempts > 0 => continue,
            Err(source) => {
                return Err(StartError::Bind {
                    what: "SIP/TCP",
                    addr: tcp_bind,
                    source,
                });
            }
        };
        let sip_tcp = tcp.local_addr().map_err(|source| StartError::Bind {
            what: "SIP/TCP",
            addr: tcp_bind,
            source,
        })?;
        return Ok((udp, sip_udp, tcp, sip_tcp));
    }
}

/// How live playlists fetch their `http(s)://` entries: through the request fetcher, with
/// its caches, limits and host allowlist.
fn playlist_fetcher(http_audio: &Arc<fetch::HttpAudio>) -> imss_media::ClipFetcher {
    let http_audio = Arc::clone(http_audio);
    Arc::new(move |uri: &str| {
        http_audio
            .clip(uri, &fetch::FetchOptions::default())
            .map_err(|e| e.to_string())
    })
}

/// Starts every listener and the media plane; returns once all of them are up.
pub async fn start(config: Config) -> Result<RunningServer, StartError> {
    start_with_config_file(config, None).await
}

/// [`start`] for a configuration read from `file`: password changes made in the web
/// interface are written back to it (without a file they last until the server stops).
pub async fn start_with_config_file(
    config: Config,
    file: Option<std::path::PathBuf>,
) -> Result<RunningServer, StartError> {
    start_with_options(config, file, None).await
}

/// [`start_with_config_file`], with the hook that changes the process's log filter when
/// `general.log_level` changes.
pub async fn start_with_options(
    config: Config,
    file: Option<std::path::PathBuf>,
    set_log_level: Option<admin::SetLogLevel>,
) -> Result<RunningServer, StartError> {
    for dir in [config.general.data_dir.clone(), config.audio_root()] {
        std::fs::create_dir_all(&dir).map_err(|source| StartError::DataDir {
            path: dir.clone(),
            source,
        })?;
    }
    let cache_bytes = config.audio.cache_mib.unwrap_or(256) * 1024 * 1024;
    let clips = Arc::new(ClipCache::new(cache_bytes));
    let ports = PortAllocator::new(config.rtp.bind, config.rtp.port_min, config.rtp.port_max)
        .map_err(|e| StartError::Ports(e.to_string()))?;
    let http_audio = Arc::new(fetch::HttpAudio::new(&config)?);
    let voicemail = voicemail::Voicemail::new(&config)?;
    let sources = live::LiveSources::start(&config, &clips, Some(playlist_fetcher(&http_audio)));

    let (pacer_tx, pacer_rx) = tokio::sync::mpsc::unbounded_channel();
    let pacer = Pacer::start_with(
        PacerConfig {
            threads: config.rtp.pacing_threads,
            realtime_priority: config.rtp.realtime_priority,
            pin_cpus: config.rtp.pin_cpus,
        },
        Arc::new(move |ev| {
            let _ = pacer_tx.send(ev);
        }),
    )
    .map_err(StartError::Pacing)?;

    let (shutdown, shutdown_rx) = watch::channel(false);
    let health = Arc::new(imss_web::Health::default());

    let (udp, sip_udp, tcp, sip_tcp) = bind_sip(config.sip.bind, config.sip.port).await?;

    let http_bind = SocketAddr::new(config.http.bind, config.http.port);
    let http_listener = tokio::net::TcpListener::bind(http_bind)
        .await
        .map_err(|source| StartError::Bind {
            what: "HTTP",
            addr: http_bind,
            source,
        })?;
    let web_tls = match (&config.http.tls_cert, &config.http.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(
            tls::ReloadingConfig::new(cert, key).map_err(StartError::WebTls)?,
        )),
        _ => None,
    };
    let http = http_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "HTTP",
            addr: http_bind,
            source,
        })?;

    let mrcp_bind = SocketAddr::new(config.mrcp.bind, config.mrcp.port);
    let mrcp_listener = tokio::net::TcpListener::bind(mrcp_bind)
        .await
        .map_err(|source| StartError::Bind {
            what: "MRCPv2",
            addr: mrcp_bind,
            source,
        })?;
    let mrcp = mrcp_listener
        .local_addr()
        .map_err(|source| StartError::Bind {
            what: "MRCPv2",
            addr: mrcp_bind,
            source,
        })?;

    let mrcp_tls = match (
        &config.mrcp.tls_port,
        &config.mrcp.tls_cert,
        &config.mrcp.tls_key,
    ) {
        (Some(port), Some(cert), Some(key)) => {
            let tls_config = tls::server_config(cert, key)?;
            let bind = SocketAddr::new(config.mrcp.bind, *port);
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|source| StartError::Bind {
                    what: "MRCPv2/TLS",
                    addr: bind,
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                what: "MRCPv2/TLS",
                addr: bind,
                source,
            })?;
            Some((
                sip_shell::TlsListener {
                    listener,
                    acceptor: tokio_rustls::TlsAcceptor::from(tls_config),
                },
                addr,
            ))
        }
        _ => None,
    };
    let mrcp_tls_addr = mrcp_tls.as_ref().map(|(_, a)| *a);

    let shared_for_reload;
    let shared = Arc::new(Shared {
        applied: std::sync::RwLock::new(Arc::new(config.clone())),
        config,
        clips,
        ports,
        pacer,
        sources,
        channel_ids: imss_sip::sdp::ChannelIds::new(),
        mrcp_port: mrcp.port(),
        mrcp_tls_port: mrcp_tls_addr.map(|a| a.port()),
        http_audio,
        voicemail,
        metrics: Arc::default(),
        started: std::time::Instant::now(),
    });

    let mut tasks = Vec::new();
    let mut http_shutdown = shutdown_rx.clone();
    let account_store = file.clone().map(|f| {
        Arc::new(config_file::FileAccountStore::new(f)) as Arc<dyn imss_web::auth::AccountStore>
    });
    let web_auth = Arc::new(
        imss_web::auth::Auth::new(
            config_file::web_accounts(&shared.config),
            config_file::web_auth_settings(&shared.config),
            account_store,
        )
        .map_err(StartError::WebAuth)?,
    );
    let (status, history, sampler) = metrics::spawn_sampler(&shared, shutdown_rx.clone());
    tasks.push(sampler);
    tasks.push(mail_watch::spawn(Arc::clone(&shared), shutdown_rx.clone()));
    let (render_metrics, metrics_access) = metrics::metrics_endpoint(&shared);
    let metrics_addr = match shared.config.http.metrics_bind {
        Some(bind) => {
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .map_err(|source| StartError::Bind {
                    what: "HTTP /metrics",
                    addr: bind,
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                what: "HTTP /metrics",
                addr: bind,
                source,
            })?;
            let routes = imss_web::metrics::routes(render_metrics.clone(), metrics_access.clone());
            let mut stop = shutdown_rx.clone();
            tasks.push(tokio::spawn(async move {
                let stop = async move {
                    let _ = stop.wait_for(|s| *s).await;
                };
                if let Err(e) = imss_web::serve(listener, routes, stop).await {
                    tracing::error!(error = %e, "HTTP /metrics listener failed");
                }
            }));
            Some(addr)
        }
        None => None,
    };
    // `/metrics` checks its own access rule (`[http] metrics`), so the login gate lets it
    // through; `/api/v1/status`, its live feed and the dashboard stay behind the gate (the
    // login page opens its own assets).
    web_auth.open_path("/metrics");
    let (control, control_rx) = sip_shell::control::Control::new();
    let admin = Arc::new(admin::Admin {
        shared: Arc::clone(&shared),
        file,
        web_auth: Arc::clone(&web_auth),
        set_log_level,
        shell: control,
        stopping: shutdown_rx.clone(),
    });
    let render_status: imss_web::metrics::RenderText =
        Arc::new(move || metrics::read_status(&status));
    let router = imss_web::router(health.clone())
        .merge(imss_web::metrics::routes(render_metrics, metrics_access))
        .merge(imss_web::metrics::status_routes(
            render_status.clone(),
            Arc::new(move || {
                history
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .to_json()
            }),
        ))
        .merge(imss_web::events::routes(render_status, shutdown_rx.clone()))
        .merge(imss_web::pages::routes(&web_auth))
        .merge(admin::routes(Arc::clone(&admin)));
    let router = imss_web::auth::secure(router, web_auth.clone());
    tasks.push(tokio::spawn(async move {
        let stop = async move {
            let _ = http_shutdown.wait_for(|s| *s).await;
        };
        let served = match web_tls {
            Some(tls) => {
                let current: imss_web::tls::CurrentConfig = Arc::new(move || tls.current());
                imss_web::tls::serve(http_listener, current, router, stop).await
            }
            None => imss_web::serve(http_listener, router, stop).await,
        };
        if let Err(e) = served {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    }));
    let listeners = sip_shell::Listeners {
        udp,
        udp_addr: sip_udp,
        tcp,
        mrcp: mrcp_listener,
        mrcp_tls: mrcp_tls.map(|(l, _)| l),
    };
    shared_for_reload = Arc::clone(&shared);
    tasks.push(tokio::spawn(sip_shell::run(
        shared,
        listeners,
        pacer_rx,
        control_rx,
        shutdown_rx,
    )));
    health.set_ready();
    tracing::info!(%sip_udp, %sip_tcp, %http, %mrcp, mrcp_tls = ?mrcp_tls_addr, metrics = ?metrics_addr, "imss ready");
    Ok(RunningServer {
        sip_udp,
        sip_tcp,
        http,
        mrcp,
        mrcp_tls: mrcp_tls_addr,
        shutdown,
        tasks,
        health,
        shared: shared_for_reload,
        admin,
    })
}
