//! The tokio shell around the sans-IO SIP endpoint, and the call table.
//!
//! One task owns the [`Endpoint`] and every call: it reads UDP datagrams and framed TCP
//! messages, feeds them in with the current time, sends what the endpoint hands back, sleeps
//! until its next timer, and turns endpoint events into streams on the pacing engine (and
//! pacing events, such as the end of an announcement, into BYEs). TCP connections have a
//! reader and a writer task each; they never touch call state. MRCPv2 control connections
//! over TLS are the same after a handshake task of their own, bounded by
//! [`TLS_HANDSHAKE`], so a slow or failed handshake holds up nothing else.
//!
//! Session timers (RFC 4028) run in the endpoint; a session that expires ends like a BYE
//! from the caller ([`Event::Ended`] → `end_call`), and a refresh by re-INVITE re-offers the
//! last description the call answered with, its version incremented.
//!
//! SIP messages and MRCPv2 connections from outside `sip.trusted_networks` are refused
//! before the endpoint sees them ([`trusted`]). The JSON API lists and ends calls through
//! [`control`]: its requests arrive on a channel of this task, so the call table keeps one
//! owner.

pub(crate) mod control;
mod mrcp;
mod trusted;

use crate::Shared;
use crate::audio_root::{self, AudioPathError};
use crate::target::{self, Target};
use imss_media::{Clip, Law, PlayItem, Playout, Repeat};
use imss_rtp::PortPair;
use imss_rtp::pacing::{NewStream, StreamEvent};
use imss_sip::endpoint::{
    CallId, Endpoint, EndpointConfig, Event, Input, SessionTimerSettings, Transmit, Transport,
};
use imss_sip::message::{self, Message};
use imss_sip::sdp::{self, AnswerParams, Codec, Negotiated, SessionDescription};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};

/// Largest SIP message accepted over TCP before the connection is closed.
const MAX_TCP_BUFFER: usize = 128 * 1024;
/// Largest UDP datagram read.
const MAX_DATAGRAM: usize = 65_535;
/// How long shutdown waits for BYE transactions to finish.
const DRAIN_GRACE: Duration = Duration::from_secs(2);
/// How often sessions are checked for timeouts.
const HOUSEKEEPING: Duration = Duration::from_secs(1);
/// How long opening an outbound SIP/TCP connection may take.
const OUTBOUND_CONNECT: Duration = Duration::from_secs(5);
/// How long a client may take to complete the TLS handshake of an MRCPv2 control connection.
const TLS_HANDSHAKE: Duration = Duration::from_secs(10);

/// The TLS control channel listener (`mrcp.tls_port`) and its rustls acceptor.
pub(crate) struct TlsListener {
    pub listener: TcpListener,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

/// What the connection tasks and the blocking pool send to the SIP task.
enum ShellInput {
    Tcp {
        conn: u64,
        from: SocketAddr,
        message: Message,
    },
    TcpMalformed {
        conn: u64,
        from: SocketAddr,
        malformed: message::Malformed,
    },
    TcpOpened {
        conn: u64,
        writer: mpsc::UnboundedSender<Vec<u8>>,
    },
    TcpClosed {
        conn: u64,
    },
    Mrcp {
        conn: u64,
        message: imss_mrcp::Message,
    },
    MrcpOpened {
        conn: u64,
        writer: mpsc::UnboundedSender<Vec<u8>>,
        /// The connection came through the TLS listener.
        tls: bool,
    },
    MrcpClosed {
        conn: u64,
    },
    SpeakResolved {
        channel_id: String,
        request_id: imss_mrcp::RequestId,
        result: mrcp::Resolved,
        limit: Option<Duration>,
    },
    Resolved {
        call: CallId,
        result: Result<Arc<Clip>, (u16, String)>,
        announcement: target::Announcement,
    },
}

/// A call's media: its ports, what it plays, and whether the pacing engine has it.
struct Call {
    /// When the INVITE arrived.
    created: Instant,
    /// The same moment on the wall clock, for the sessions API.
    since: SystemTime,
    /// Where the INVITE came from.
    peer: SocketAddr,
    /// The codec of the last answer, once one was given.
    codec: Option<Codec>,
    /// What a plain-SIP call plays (`source:NAME` or the announcement's URI); `None` for
    /// an MRCPv2 session, whose channels say what they play.
    playing: Option<String>,
    /// Playouts replaced on the stream so far (matches `StreamEvent::Ended::playout`).
    playouts: u64,
    offer: Option<String>,
    /// MRCPv2 control channels of this dialog (RFC 6787); empty for a plain-SIP call.
    channels: Vec<imss_sip::sdp::ControlChannel>,
    stream_id: u64,
    /// Ports and playout not yet handed to the pacing engine (held from the start).
    parked: Option<(PortPair, Playout)>,
    port: u16,
    in_pacer: bool,
    session_id: u64,
    session_version: u64,
    /// The SDP of the last 2xx, re-offered (version incremented) by a refresh re-INVITE.
    local_sdp: Option<String>,
    hanging_up: bool,
    /// Counts the call in the session gauges while it is in the call table.
    _session: crate::metrics::SessionGuard,
}

struct Shell {
    shared: Arc<Shared>,
    endpoint: Endpoint,
    udp: UdpSocket,
    tcp_writers: HashMap<u64, mpsc::UnboundedSender<Vec<u8>>>,
    calls: HashMap<CallId, Call>,
    channels: mrcp::Channels,
    by_stream: HashMap<u64, CallId>,
    next_stream: u64,
    next_conn: u64,
    input_tx: mpsc::UnboundedSender<ShellInput>,
    /// MRCPv2 control connections that came through the TLS listener.
    tls_conns: HashSet<u64>,
    /// `sip.trusted_networks` as applied now.
    trusted: trusted::TrustedNetworks,
}

/// The sockets the SIP task serves.
pub(crate) struct Listeners {
    /// SIP over UDP and its bound address.
    pub udp: UdpSocket,
    pub udp_addr: SocketAddr,
    /// SIP over TCP (same port).
    pub tcp: TcpListener,
    /// MRCPv2 control connections over TCP.
    pub mrcp: TcpListener,
    /// MRCPv2 control connections over TLS, when configured.
    pub mrcp_tls: Option<TlsListener>,
}

pub(crate) async fn run(
    shared: Arc<Shared>,
    listeners: Listeners,
    mut pacer_rx: mpsc::UnboundedReceiver<StreamEvent>,
    mut control_rx: mpsc::UnboundedReceiver<control::ControlMsg>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Listeners {
        udp,
        udp_addr,
        tcp,
        mrcp: mrcp_listener,
        mrcp_tls,
    } = listeners;
    let contact_host = shared.config.sip_advertise().to_string();
    let mut endpoint = Endpoint::new(EndpointConfig {
        contact_host,
        contact_port: udp_addr.port(),
        user_agent: format!(
            "imss/{} ({})",
            env!("CARGO_PKG_VERSION"),
            shared.config.general.name
        ),
    });
    endpoint.set_options_sdp(options_sdp(&shared));
    endpoint.set_session_timers(SessionTimerSettings {
        session_expires: shared.config.sip.session_expires_s,
        min_se: shared.config.sip.min_se_s,
    });
    let (input_tx, mut input_rx) = mpsc::unbounded_channel();
    let metrics = Arc::clone(&shared.metrics);
    let trusted = trusted::TrustedNetworks::new(&shared);
    let mut shell = Shell {
        shared,
        endpoint,
        udp,
        tcp_writers: HashMap::new(),
        calls: HashMap::new(),
        channels: mrcp::Channels::new(metrics),
        by_stream: HashMap::new(),
        next_stream: 1,
        next_conn: 1,
        input_tx,
        tls_conns: HashSet::new(),
        trusted,
    };
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
    loop {
        let deadline = shell
            .endpoint
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            r = shell.udp.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    if shell.trusted.allows(&shell.shared, from.ip()) {
                        let now = Instant::now();
                        shell.endpoint.handle_input(now, Input::Datagram { from, bytes: &buf[..n] });
                    } else {
                        shell.refuse_untrusted_datagram(from, &buf[..n]);
                    }
                }
                // ICMP errors of earlier sends surface here on some systems; keep serving.
                Err(e) => tracing::debug!(error = %e, "SIP/UDP receive error"),
            },
            r = tcp.accept() => match r {
                Ok((stream, from)) => {
                    let conn = shell.next_conn;
                    shell.next_conn += 1;
                    let _ = spawn_connection(conn, from, stream, shell.input_tx.clone());
                }
                Err(e) => tracing::warn!(error = %e, "SIP/TCP accept failed"),
            },
            r = mrcp_listener.accept() => match r {
                Ok((stream, peer)) if !shell.trusted.allows(&shell.shared, peer.ip()) => {
                    tracing::warn!(%peer, "MRCPv2 connection from outside sip.trusted_networks closed");
                    drop(stream);
                }
                Ok((stream, peer)) => {
                    let conn = shell.next_conn;
                    shell.next_conn += 1;
                    let _ = stream.set_nodelay(true);
                    mrcp::spawn_connection(conn, peer, stream, shell.input_tx.clone(), false);
                }
                Err(e) => tracing::warn!(error = %e, "MRCPv2 accept failed"),
            },
            r = accept_tls(mrcp_tls.as_ref()) => match r {
                Ok((stream, peer, _)) if !shell.trusted.allows(&shell.shared, peer.ip()) => {
                    tracing::warn!(%peer, "MRCPv2/TLS connection from outside sip.trusted_networks closed");
                    drop(stream);
                }
                Ok((stream, peer, acceptor)) => {
                    let conn = shell.next_conn;
                    shell.next_conn += 1;
                    let tx = shell.input_tx.clone();
                    tokio::spawn(async move {
                        let _ = stream.set_nodelay(true);
                        match tokio::time::timeout(TLS_HANDSHAKE, acceptor.accept(stream)).await {
                            Ok(Ok(tls)) => mrcp::spawn_connection(conn, peer, tls, tx, true),
                            Ok(Err(e)) => {
                                tracing::info!(%peer, error = %e, "MRCPv2 TLS handshake failed; closing");
                            }
                            Err(_) => tracing::info!(%peer, "MRCPv2 TLS handshake timed out; closing"),
                        }
                    });
                }
                Err(e) => tracing::warn!(error = %e, "MRCPv2/TLS accept failed"),
            },
            Some(input) = input_rx.recv() => shell.handle_shell_input(input),
            Some(msg) = control_rx.recv() => shell.handle_control(msg),
            Some(ev) = pacer_rx.recv() => shell.handle_pacer_event(ev),
            () = tokio::time::sleep_until(deadline) => {
                shell.endpoint.handle_timeout(Instant::now());
            }
            _ = housekeeping.tick() => shell.mrcp_housekeeping(Instant::now()),
            _ = shutdown.wait_for(|s| *s) => break,
        }
        shell.drain();
    }
    shell.shut_down(&mut buf).await;
}

/// The next connection of the TLS listener with its acceptor; never ready without one.
async fn accept_tls(
    tls: Option<&TlsListener>,
) -> std::io::Result<(TcpStream, SocketAddr, tokio_rustls::TlsAcceptor)> {
    match tls {
        Some(t) => {
            let (stream, peer) = t.listener.accept().await?;
            Ok((stream, peer, t.acceptor.clone()))
        }
        None => std::future::pending().await,
    }
}

/// Splits a connection (TCP, or TLS over TCP): the read half for the caller, and a queue
/// whose messages a writer task sends in order (flushed, so TLS records go out at once)
/// until the connection fails.
fn split_with_writer<S>(stream: S) -> (tokio::io::ReadHalf<S>, mpsc::UnboundedSender<Vec<u8>>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (reader, mut writer) = tokio::io::split(stream);
    let (wtx, mut wrx) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        while let Some(bytes) = wrx.recv().await {
            if writer.write_all(&bytes).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
        let _ = writer.shutdown().await;
    });
    (reader, wtx)
}

/// Starts the reader and writer tasks of one TCP connection; returns its writer queue.
fn spawn_connection(
    conn: u64,
    from: SocketAddr,
    stream: TcpStream,
    tx: mpsc::UnboundedSender<ShellInput>,
) -> mpsc::UnboundedSender<Vec<u8>> {
    let _ = stream.set_nodelay(true);
    let (mut reader, wtx) = split_with_writer(stream);
    let _ = tx.send(ShellInput::TcpOpened {
        conn,
        writer: wtx.clone(),
    });
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::with_capacity(4096);
        let mut chunk = vec![0u8; 16 * 1024];
        'read: loop {
            let n = match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            buf.extend_from_slice(&chunk[..n]);
            loop {
                // RFC 3261 §7.5: CRLFs between messages (keep-alives) are ignored.
                let skip = buf
                    .iter()
                    .take_while(|b| **b == b'\r' || **b == b'\n')
                    .count();
                buf.drain(..skip);
                if buf.is_empty() {
                    break;
                }
                match message::parse_stream_detailed(&buf) {
                    Ok(Some((message, used))) => {
                        buf.drain(..used);
                        if tx
                            .send(ShellInput::Tcp {
                                conn,
                                from,
                                message,
                            })
                            .is_err()
                        {
                            break 'read;
                        }
                    }
                    Ok(None) if buf.len() > MAX_TCP_BUFFER => {
                        tracing::info!(peer = %from, "SIP/TCP message too large; closing");
                        break 'read;
                    }
                    Ok(None) => break,
                    Err(malformed) => {
                        tracing::info!(peer = %from, error = %malformed.error, "malformed SIP over TCP");
                        let resync = malformed.consumed;
                        let _ = tx.send(ShellInput::TcpMalformed {
                            conn,
                            from,
                            malformed,
                        });
                        match resync {
                            Some(n) => {
                                buf.drain(..n.min(buf.len()));
                            }
                            // Framing is lost: give the 400 a moment to be written, then close.
                            None => {
                                tokio::time::sleep(Duration::from_millis(200)).await;
                                break 'read;
                            }
                        }
                    }
                }
            }
        }
        let _ = tx.send(ShellInput::TcpClosed { conn });
    });
    wtx
}

impl Shell {
    fn drain(&mut self) {
        loop {
            while let Some(t) = self.endpoint.poll_transmit() {
                self.send(t);
            }
            match self.endpoint.poll_event() {
                Some(ev) => self.handle_event(ev),
                None => break,
            }
        }
    }

    fn send(&mut self, t: Transmit) {
        self.shared.metrics.sip_sent(&t.bytes);
        match t.transport {
            Transport::Udp => {
                if let Err(e) = self.udp.try_send_to(&t.bytes, t.to) {
                    tracing::debug!(peer = %t.to, error = %e, "SIP/UDP send failed");
                }
            }
            Transport::Tcp => match t.conn {
                Some(c) => {
                    let sent = self
                        .tcp_writers
                        .get(&c)
                        .is_some_and(|w| w.send(t.bytes.clone()).is_ok());
                    if !sent {
                        tracing::debug!(peer = %t.to, "SIP/TCP connection gone; message dropped");
                    }
                }
                // The dialog's connection closed: open a new one (RFC 3261 §18.1.1).
                None => {
                    let conn = self.next_conn;
                    self.next_conn += 1;
                    let tx = self.input_tx.clone();
                    let to = t.to;
                    tokio::spawn(async move {
                        match tokio::time::timeout(OUTBOUND_CONNECT, TcpStream::connect(to)).await {
                            Ok(Ok(stream)) => {
                                let writer = spawn_connection(conn, to, stream, tx);
                                let _ = writer.send(t.bytes);
                            }
                            _ => tracing::info!(peer = %to, "cannot open SIP/TCP connection"),
                        }
                    });
                }
            },
        }
    }

    fn handle_shell_input(&mut self, input: ShellInput) {
        let now = Instant::now();
        match input {
            ShellInput::Tcp {
                conn,
                from,
                message,
            } => {
                if self.trusted.allows(&self.shared, from.ip()) {
                    self.endpoint.handle_input(
                        now,
                        Input::Stream {
                            conn,
                            from,
                            message,
                        },
                    );
                } else {
                    self.refuse_untrusted(from, Transport::Tcp, Some(conn), &message);
                }
            }
            // From outside the trusted networks, unreadable messages are dropped unanswered.
            ShellInput::TcpMalformed { from, .. }
                if !self.trusted.allows(&self.shared, from.ip()) => {}
            ShellInput::TcpMalformed {
                conn,
                from,
                malformed,
            } => self.endpoint.handle_input(
                now,
                Input::StreamMalformed {
                    conn,
                    from,
                    malformed,
                },
            ),
            ShellInput::Mrcp { conn, message } => {
                if !self.mrcp_refused_in_clear(conn, &message) {
                    self.handle_mrcp(now, conn, message);
                }
            }
            ShellInput::SpeakResolved {
                channel_id,
                request_id,
                result,
                limit,
            } => self.speak_resolved(now, &channel_id, request_id, result, limit),
            ShellInput::MrcpOpened { conn, writer, tls } => {
                if tls {
                    self.tls_conns.insert(conn);
                }
                self.mrcp_opened(conn, writer);
            }
            ShellInput::MrcpClosed { conn } => {
                self.tls_conns.remove(&conn);
                self.mrcp_closed(now, conn);
            }
            ShellInput::TcpOpened { conn, writer } => {
                self.tcp_writers.insert(conn, writer);
            }
            ShellInput::TcpClosed { conn } => {
                self.tcp_writers.remove(&conn);
                self.endpoint.connection_closed(conn);
            }
            ShellInput::Resolved {
                call,
                result,
                announcement,
            } => {
                let Some(offer) = self.calls.get(&call).and_then(|c| c.offer.clone()) else {
                    return; // cancelled while the file was loading
                };
                match result {
                    Ok(clip) => {
                        let playout = Playout::new(
                            vec![PlayItem::Clip(clip)],
                            announcement.repeat.map_or(Repeat::Forever, Repeat::Times),
                            announcement.delay,
                            announcement.duration,
                        );
                        self.start_media(now, call, &offer, playout);
                    }
                    Err((status, reason)) => {
                        self.calls.remove(&call);
                        self.endpoint.reject(now, call, status, &reason, None);
                    }
                }
            }
        }
    }

    fn handle_pacer_event(&mut self, ev: StreamEvent) {
        match ev {
            StreamEvent::Ended { id, playout } => {
                let Some(call) = self.by_stream.get(&id).cloned() else {
                    return;
                };
                // In an MRCPv2 session the end of the audio completes the SPEAK; the
                // session goes on.
                if self.mrcp_stream_ended(Instant::now(), &call, playout) {
                    return;
                }
                self.hang_up(Instant::now(), call, "play finished");
            }
            StreamEvent::Mark { id, playout, mark } => {
                if let Some(call) = self.by_stream.get(&id).cloned() {
                    self.mrcp_mark(Instant::now(), &call, playout, mark);
                }
            }
            StreamEvent::Removed { id, packets, .. } => {
                tracing::debug!(stream = id, packets, "stream removed");
            }
        }
    }

    fn handle_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::IncomingCall {
                call,
                request_uri,
                offer,
                from,
                remote,
                ..
            } => {
                tracing::info!(call_id = ?call, %request_uri, %from, peer = %remote, "INVITE");
                self.incoming_call(now, call, &request_uri, offer, remote);
            }
            Event::ReInvite { call, offer } => self.re_invite(now, call, offer),
            Event::Established { call } => {
                tracing::debug!(call_id = ?call, "ACK");
            }
            Event::Cancelled { call } => {
                tracing::info!(call_id = ?call, "CANCEL");
                self.end_call(&call);
            }
            Event::Ended { call, reason } => {
                tracing::info!(call_id = ?call, reason = ?reason, "call ended");
                self.end_call(&call);
            }
            Event::Options { from } => {
                tracing::debug!(peer = %from, "OPTIONS");
            }
            Event::Refreshed { call } => {
                tracing::debug!(call_id = ?call, "session refreshed");
            }
            Event::RefreshNeeded { call } => self.refresh_by_reinvite(now, call),
        }
    }

    /// The server refreshes the session of `call` by re-INVITE (RFC 4028 §7.4): the last
    /// description it answered with, as an offer with the next version (RFC 3264 §8).
    fn refresh_by_reinvite(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let Some(previous) = c
            .local_sdp
            .as_deref()
            .and_then(|s| s.parse::<SessionDescription>().ok())
        else {
            tracing::warn!(call_id = ?call, "no session description to refresh with");
            return;
        };
        c.session_version += 1;
        let offer = sdp::refresh_offer(&previous, c.session_version);
        tracing::debug!(call_id = ?call, version = c.session_version, "refreshing by re-INVITE");
        self.endpoint
            .refresh_with_offer(now, call, offer.to_string());
    }

    fn incoming_call(
        &mut self,
        now: Instant,
        call: CallId,
        request_uri: &str,
        offer: Option<String>,
        peer: SocketAddr,
    ) {
        if self.calls.len() >= self.shared.config.sip.max_calls {
            self.endpoint.reject(
                now,
                call,
                503,
                "Service Unavailable (call limit reached)",
                None,
            );
            return;
        }
        let Some(offer) = offer else {
            self.endpoint.reject(
                now,
                call,
                488,
                "Not Acceptable Here (an SDP offer in the INVITE is required)",
                Some("304 imss \"INVITE without SDP offer\""),
            );
            return;
        };
        // An MRCPv2 session (RFC 6787 §4): its Request-URI need not name anything.
        match offer.parse::<SessionDescription>() {
            Ok(sdp) if sdp::is_mrcp_offer(&sdp) => {
                self.start_mrcp_session(now, call, offer, &sdp, peer);
                return;
            }
            _ => {}
        }
        let target = match target::parse(request_uri) {
            Ok(t) => t,
            Err(e) => {
                self.endpoint
                    .reject(now, call, 400, &format!("Bad Request ({e})"), None);
                return;
            }
        };
        let kind = match &target {
            Target::Announcement(a) if !a.play.starts_with("source:") => {
                crate::metrics::SessionKind::SipAnnouncement
            }
            _ => crate::metrics::SessionKind::SipSource,
        };
        let playing = match &target {
            Target::Source(name) => format!("source:{name}"),
            Target::Announcement(a) => a.play.clone(),
        };
        let stream_id = self.next_stream;
        self.next_stream += 1;
        self.calls.insert(
            call.clone(),
            Call {
                _session: self.shared.metrics.session(kind),
                created: now,
                since: SystemTime::now(),
                peer,
                codec: None,
                playing: Some(playing),
                playouts: 0,
                offer: Some(offer.clone()),
                channels: Vec::new(),
                stream_id,
                parked: None,
                port: 0,
                in_pacer: false,
                session_id: rand::random::<u32>() as u64,
                session_version: 1,
                local_sdp: None,
                hanging_up: false,
            },
        );
        match target {
            Target::Source(name) => self.play_live(now, call, &offer, &name, None),
            Target::Announcement(announcement) => {
                if let Some(name) = announcement.play.strip_prefix("source:") {
                    self.play_live(now, call, &offer, name, announcement.duration);
                    return;
                }
                let shared = self.shared.clone();
                let tx = self.input_tx.clone();
                tokio::task::spawn_blocking(move || {
                    if crate::fetch::is_http_uri(&announcement.play) {
                        let result = fetched_announcement(&shared, &announcement.play);
                        let _ = tx.send(ShellInput::Resolved {
                            call,
                            result,
                            announcement,
                        });
                        return;
                    }
                    let root = shared.config.audio_root();
                    let result = audio_root::resolve(&root, &announcement.play)
                        .map_err(|e| match e {
                            AudioPathError::Forbidden(_) => (403, format!("Forbidden ({e})")),
                            AudioPathError::NotFound(_) | AudioPathError::UnsupportedScheme(_) => {
                                (404, format!("Not Found ({e})"))
                            }
                        })
                        .and_then(|path| {
                            shared
                                .clips
                                .get(&path)
                                .map_err(|e| (415, format!("Unsupported Media Type ({e})")))
                        });
                    let _ = tx.send(ShellInput::Resolved {
                        call,
                        result,
                        announcement,
                    });
                });
            }
        }
    }

    /// Plays the live source `name` (until `limit`, or until the caller hangs up), or answers
    /// 404 when there is no such source.
    fn play_live(
        &mut self,
        now: Instant,
        call: CallId,
        offer: &str,
        name: &str,
        limit: Option<Duration>,
    ) {
        match self.shared.sources.listen(name) {
            Some(items) => {
                // The source's announcement, if it has one, then the source, which never
                // ends by itself.
                let playout = Playout::new(items, Repeat::Times(1), Duration::ZERO, limit);
                self.start_media(now, call, offer, playout);
            }
            None => {
                self.calls.remove(&call);
                self.endpoint.reject(
                    now,
                    call,
                    404,
                    &format!("Not Found (no source named {name})"),
                    None,
                );
            }
        }
    }

    /// Negotiates the offer, allocates ports, starts the stream and answers 200 OK.
    fn start_media(&mut self, now: Instant, call: CallId, offer: &str, playout: Playout) {
        let offer_sdp = match offer.parse::<SessionDescription>() {
            Ok(s) => s,
            Err(e) => {
                self.calls.remove(&call);
                self.endpoint.reject(
                    now,
                    call,
                    400,
                    &format!("Bad Request (malformed SDP: {e})"),
                    None,
                );
                return;
            }
        };
        let ports = match self.shared.ports.allocate() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(call_id = ?call, error = %e, "no RTP port");
                self.calls.remove(&call);
                self.endpoint.reject(
                    now,
                    call,
                    503,
                    "Service Unavailable (no free RTP port)",
                    None,
                );
                return;
            }
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        let params = AnswerParams {
            addr: self.shared.config.rtp_advertise(),
            port: ports.port(),
            session_id: c.session_id,
            session_version: c.session_version,
            username: "imss".into(),
            default_ptime_ms: self.shared.config.rtp.ptime_ms,
        };
        let (answer, negotiated) = match sdp::answer_audio(&offer_sdp, &params) {
            Ok(r) => r,
            Err(e) => {
                self.calls.remove(&call);
                let warning = format!("304 imss \"{e}\"");
                self.endpoint.reject(
                    now,
                    call,
                    488,
                    "Not Acceptable Here (no common codec: PCMU or PCMA required)",
                    Some(&warning),
                );
                return;
            }
        };
        c.port = ports.port();
        c.codec = Some(negotiated.codec);
        let stream_id = c.stream_id;
        match negotiated.remote {
            Some(remote) => {
                self.shared.pacer.add(new_stream(
                    stream_id,
                    ports,
                    remote,
                    &negotiated,
                    playout,
                    &self.shared.config.general.name,
                ))
                .map_or_else(
                    |e| tracing::error!(call_id = ?call, error = %e, "pacing engine refused stream"),
                    |()| c.in_pacer = true,
                );
            }
            None => c.parked = Some((ports, playout)),
        }
        self.by_stream.insert(stream_id, call.clone());
        tracing::info!(call_id = ?call, port = c.port, codec = ?negotiated.codec, remote = ?negotiated.remote, "answered");
        let answer = answer.to_string();
        c.local_sdp = Some(answer.clone());
        self.endpoint.accept(now, call, answer);
    }

    fn re_invite(&mut self, now: Instant, call: CallId, offer: Option<String>) {
        let Some(c) = self.calls.get_mut(&call) else {
            self.endpoint
                .reject(now, call, 481, "Call/Transaction Does Not Exist", None);
            return;
        };
        let Some(offer) = offer.or_else(|| c.offer.clone()) else {
            self.endpoint
                .reject(now, call, 488, "Not Acceptable Here (no SDP)", None);
            return;
        };
        let offer_sdp = match offer.parse::<SessionDescription>() {
            Ok(s) => s,
            Err(e) => {
                self.endpoint.reject(
                    now,
                    call,
                    400,
                    &format!("Bad Request (malformed SDP: {e})"),
                    None,
                );
                return;
            }
        };
        c.session_version += 1;
        let params = AnswerParams {
            addr: self.shared.config.rtp_advertise(),
            port: c.port,
            session_id: c.session_id,
            session_version: c.session_version,
            username: "imss".into(),
            default_ptime_ms: self.shared.config.rtp.ptime_ms,
        };
        let result = if c.channels.is_empty() {
            sdp::answer_audio(&offer_sdp, &params).map(|(a, n)| (a, Some(n)))
        } else {
            self.renegotiate_mrcp(&call, &offer_sdp, params)
        };
        let (answer, negotiated) = match result {
            Ok(r) => r,
            Err(e) => {
                mrcp::reject_negotiation(self, now, call, &e);
                return;
            }
        };
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        c.offer = Some(offer);
        if let Some(n) = &negotiated {
            c.codec = Some(n.codec);
        }
        let pacer = &self.shared.pacer;
        let remote = negotiated.as_ref().and_then(|n| n.remote);
        match (negotiated.as_ref().zip(remote), c.in_pacer) {
            (Some((negotiated, remote)), true) => {
                let (law, pt) = law_of(negotiated);
                pacer.update_remote(
                    c.stream_id,
                    remote,
                    rtcp_of(negotiated, remote),
                    negotiated.ptime,
                    law,
                    pt,
                );
                pacer.resume(c.stream_id);
            }
            (Some((negotiated, remote)), false) => {
                if let Some((ports, playout)) = c.parked.take() {
                    let s = new_stream(
                        c.stream_id,
                        ports,
                        remote,
                        negotiated,
                        playout,
                        &self.shared.config.general.name,
                    );
                    if pacer.add(s).is_ok() {
                        c.in_pacer = true;
                    }
                }
            }
            (None, true) => pacer.pause(c.stream_id),
            (None, false) => {}
        }
        tracing::info!(call_id = ?call, remote = ?remote, "re-INVITE answered");
        let answer = answer.to_string();
        c.local_sdp = Some(answer.clone());
        self.endpoint.accept(now, call, answer);
    }

    /// Ends a call from the server's side: its media and control channels stop now, and the
    /// BYE goes out (the call table entry goes when the BYE transaction ends).
    fn hang_up(&mut self, now: Instant, call: CallId, why: &str) {
        let Some(c) = self.calls.get_mut(&call) else {
            return;
        };
        if c.hanging_up {
            return;
        }
        c.hanging_up = true;
        if c.in_pacer {
            c.in_pacer = false;
            self.shared.pacer.remove(c.stream_id);
        }
        let channels = std::mem::take(&mut c.channels);
        self.channels.remove_call(&channels);
        tracing::info!(call_id = ?call, why, "hanging up");
        self.endpoint.hangup(now, call);
    }

    fn end_call(&mut self, call: &CallId) {
        if let Some(c) = self.calls.remove(call) {
            self.channels.remove_call(&c.channels);
            self.by_stream.remove(&c.stream_id);
            if c.in_pacer {
                self.shared.pacer.remove(c.stream_id);
            }
        }
    }

    async fn shut_down(mut self, buf: &mut [u8]) {
        let now = Instant::now();
        let calls: Vec<CallId> = self.calls.keys().cloned().collect();
        for call in calls {
            self.endpoint.hangup(now, call);
        }
        self.drain();
        let until = tokio::time::Instant::now() + DRAIN_GRACE;
        while !self.calls.is_empty() {
            let deadline = self
                .endpoint
                .poll_timeout()
                .map(tokio::time::Instant::from_std)
                .map_or(until, |d| d.min(until));
            tokio::select! {
                r = self.udp.recv_from(buf) => if let Ok((n, from)) = r {
                    self.endpoint.handle_input(Instant::now(), Input::Datagram { from, bytes: &buf[..n] });
                },
                () = tokio::time::sleep_until(deadline) => {
                    if tokio::time::Instant::now() >= until { break; }
                    self.endpoint.handle_timeout(Instant::now());
                }
            }
            self.drain();
        }
        let ids: Vec<u64> = self
            .calls
            .values()
            .filter(|c| c.in_pacer)
            .map(|c| c.stream_id)
            .collect();
        for id in ids {
            self.shared.pacer.remove(id);
        }
    }
}

impl Call {
    /// Replaces what the call's stream plays, counting playouts so that the end of a replaced
    /// one is recognised as stale.
    fn replace_playout(&mut self, pacer: &imss_rtp::pacing::Pacer, playout: Playout) {
        self.playouts += 1;
        pacer.replace_playout(self.stream_id, playout);
    }
}

fn law_of(n: &Negotiated) -> (Law, u8) {
    let law = match n.codec {
        Codec::Pcmu => Law::Pcmu,
        Codec::Pcma => Law::Pcma,
    };
    (law, n.payload_type)
}

fn rtcp_of(n: &Negotiated, remote: SocketAddr) -> SocketAddr {
    n.remote_rtcp
        .unwrap_or_else(|| SocketAddr::new(remote.ip(), remote.port().wrapping_add(1)))
}

fn new_stream(
    id: u64,
    ports: PortPair,
    remote: SocketAddr,
    n: &Negotiated,
    playout: Playout,
    server_name: &str,
) -> NewStream {
    let (law, payload_type) = law_of(n);
    NewStream {
        id,
        ports,
        remote_rtp: remote,
        remote_rtcp: rtcp_of(n, remote),
        payload_type,
        law,
        ptime: n.ptime,
        playout,
        cname: format!("{server_name}-{id}"),
    }
}

/// The SDP of what this server offers, for OPTIONS (RFC 3264 §9, RFC 6787 §7): its MRCPv2
/// resources and the codecs it sends.
fn options_sdp(shared: &Shared) -> String {
    sdp::mrcp_capabilities_sdp(
        shared.config.rtp_advertise(),
        "imss",
        &mrcp::RESOURCES,
        shared.mrcp_tls_port.is_some(),
    )
}

/// The clip of an RFC 4240 `play=http(s)://…` announcement, or the SIP status and reason
/// phrase its failure maps to (404, 408, 415, 403; see [`crate::fetch::FetchError::sip_status`]).
/// Blocking.
fn fetched_announcement(shared: &Shared, uri: &str) -> Result<Arc<Clip>, (u16, String)> {
    shared
        .http_audio
        .clip(uri, &crate::fetch::FetchOptions::default())
        .map_err(|e| {
            let (status, phrase) = e.sip_status();
            // A reason phrase is one line of text.
            let detail: String = format!("{uri}: {e}")
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            (status, format!("{phrase} ({detail})"))
        })
}
