//! The MRCPv2 side of `imss bench --mrcp`: one task per session opens the control
//! connection the server granted, SPEAKs, and reports what happened to the bench's run loop.
//!
//! Only RFC 6787 is assumed of the server: a `TCP/MRCPv2` channel in the answer, a SPEAK
//! answered `200 IN-PROGRESS` (or `COMPLETE` at once) and a SPEAK-COMPLETE. The audio's start
//! is taken from the RTP itself (the first packet carrying sound, see
//! [`crate::receiver::SOUND_THRESHOLD`]), so a server that sends comfort silence before the
//! SPEAK and one that sends nothing are measured alike.

use crate::mrcp::{self, SpeakBody};
use crate::net;
use imss_mrcp::{Check, EventName, Limits, Message, Method, StartLine, names};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc, oneshot};

/// How long a control connection may take to open.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// Request-id of each session's SPEAK.
const SPEAK_ID: u32 = 1;

/// What every session of an MRCP bench SPEAKs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchMrcp {
    /// A URI (sent as `text/uri-list`), SSML or text, as for `imss call --mrcp --speak`.
    /// For the SPEAK-to-audio figure it should start with sound (a tone file, a live
    /// source), not silence.
    pub speak: String,
    /// The resource to ask for (`speechsynth` or `basicsynth`).
    pub resource: String,
    /// Wait this long after the control connection opens before SPEAKing (so that SPEAKs
    /// meet a server with every session of the run already up).
    pub speak_after: Duration,
}

/// Something that happened on one session's control connection.
#[derive(Debug)]
pub(crate) enum ControlEvent {
    /// The TCP connection is open: the session is ready for requests.
    Connected { at: Instant },
    /// The SPEAK left, at this CLOCK_REALTIME (comparable with RTP arrival times).
    SpeakSent { at: Instant, unix_ns: i64 },
    /// The SPEAK's `200 IN-PROGRESS` (or a COMPLETE response) arrived.
    Answered { at: Instant },
    /// SPEAK-COMPLETE (or a COMPLETE response), with its Completion-Cause.
    Completed { cause: String },
    /// The control exchange failed; the cause names what went wrong.
    Failed { cause: String },
}

/// Where control tasks report, and the wake-up of the run loop.
#[derive(Clone)]
pub(crate) struct ControlSink {
    tx: mpsc::UnboundedSender<(usize, ControlEvent)>,
    wake: Arc<Notify>,
}

impl ControlSink {
    pub(crate) fn new() -> (ControlSink, mpsc::UnboundedReceiver<(usize, ControlEvent)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            ControlSink {
                tx,
                wake: Arc::new(Notify::new()),
            },
            rx,
        )
    }

    /// Wakes the run loop whenever an event is queued.
    pub(crate) fn wake(&self) -> &Notify {
        &self.wake
    }

    fn send(&self, slot: usize, ev: ControlEvent) {
        let _ = self.tx.send((slot, ev));
        self.wake.notify_one();
    }
}

/// Starts session `slot`'s control task: connect to `addr`, SPEAK `body` on `channel`,
/// follow the request to its end, then hold the connection until the returned sender is
/// dropped (the session's BYE); a server may take the connection's close as the end of the
/// session.
pub(crate) fn spawn_control(
    slot: usize,
    addr: SocketAddr,
    channel: String,
    body: Arc<SpeakBody>,
    speak_after: Duration,
    sink: ControlSink,
) -> oneshot::Sender<()> {
    let (stop_tx, mut stop) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let deadline = Instant::now() + CONNECT_LIMIT;
        let mut stream = tokio::select! {
            r = mrcp::connect(addr, deadline) => match r {
                Ok(s) => {
                    // Closed with a reset when the session ends: thousands of sessions per
                    // second would otherwise leave their ports in TIME_WAIT and exhaust the
                    // local port range within half a minute.
                    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                    s
                }
                Err(e) => {
                    sink.send(slot, ControlEvent::Failed { cause: format!("control connection: {}", short(&e.to_string())) });
                    return;
                }
            },
            _ = &mut stop => return,
        };
        sink.send(slot, ControlEvent::Connected { at: Instant::now() });
        if !speak_after.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(speak_after) => {}
                _ = &mut stop => return,
            }
        }
        let speak = Message::request(Method::Speak, SPEAK_ID)
            .with_header(names::CHANNEL_IDENTIFIER, channel.clone())
            .with_body(body.content_type, body.content.clone().into_bytes())
            .encode();
        let (at, unix_ns) = (Instant::now(), net::realtime_ns());
        if let Err(e) = stream.write_all(&speak).await {
            sink.send(
                slot,
                ControlEvent::Failed {
                    cause: format!("sending SPEAK: {}", e.kind()),
                },
            );
            return;
        }
        sink.send(slot, ControlEvent::SpeakSent { at, unix_ns });

        let limits = Limits::default();
        let mut buf: Vec<u8> = Vec::with_capacity(2048);
        let mut chunk = [0u8; 4096];
        let mut answered = false;
        let mut done = false;
        loop {
            loop {
                let len = match imss_mrcp::check(&buf, &limits) {
                    Ok(Check::Complete(len)) => len,
                    Ok(Check::Incomplete) => break,
                    Err(e) => {
                        sink.send(
                            slot,
                            ControlEvent::Failed {
                                cause: format!("control framing: {}", short(&e.to_string())),
                            },
                        );
                        let _ = (&mut stop).await;
                        return;
                    }
                };
                let raw: Vec<u8> = buf.drain(..len).collect();
                let Ok(msg) = imss_mrcp::parse(&raw, &limits) else {
                    continue;
                };
                if msg
                    .headers
                    .channel_identifier()
                    .is_some_and(|c| c.trim() != channel)
                {
                    continue;
                }
                match &msg.start {
                    StartLine::Response {
                        request_id,
                        status,
                        state,
                    } if *request_id == SPEAK_ID && !answered => {
                        answered = true;
                        if !status.is_success() {
                            sink.send(
                                slot,
                                ControlEvent::Failed {
                                    cause: format!("SPEAK answered {}", status.as_u16()),
                                },
                            );
                            done = true;
                            continue;
                        }
                        sink.send(slot, ControlEvent::Answered { at: Instant::now() });
                        if *state == imss_mrcp::RequestState::Complete {
                            sink.send(slot, ControlEvent::Completed { cause: cause(&msg) });
                            done = true;
                        }
                    }
                    StartLine::Event {
                        event: EventName::SpeakComplete,
                        request_id,
                        ..
                    } if *request_id == SPEAK_ID && !done => {
                        sink.send(slot, ControlEvent::Completed { cause: cause(&msg) });
                        done = true;
                    }
                    _ => {}
                }
            }
            tokio::select! {
                r = stream.read(&mut chunk) => match r {
                    Ok(0) | Err(_) => {
                        if !done {
                            sink.send(slot, ControlEvent::Failed {
                                cause: "control connection closed before SPEAK-COMPLETE".into(),
                            });
                        }
                        let _ = (&mut stop).await;
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                },
                _ = &mut stop => return,
            }
        }
    });
    stop_tx
}

/// The Completion-Cause of a SPEAK-COMPLETE, e.g. `000 normal`.
fn cause(msg: &Message) -> String {
    msg.headers.get(names::COMPLETION_CAUSE).map_or_else(
        || "(no Completion-Cause)".to_string(),
        |c| c.trim().to_string(),
    )
}

/// Error texts become failure causes, counted by equal text: drop what varies per session
/// (addresses stay, they are the same for every session of a run).
fn short(s: &str) -> String {
    s.chars().take(120).collect()
}

/// How many sessions ended one way.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CauseCount {
    /// `000 normal`, `003 uri-failure`, `SPEAK answered 404`, …
    pub cause: String,
    /// Sessions that ended so.
    pub sessions: usize,
}

/// The MRCPv2 figures of a bench run.
#[derive(Clone, Debug, Serialize)]
pub struct MrcpFigures {
    /// The resource asked for.
    pub resource: String,
    /// What was spoken.
    pub speak: String,
    /// Control connections opened.
    pub connected: usize,
    /// INVITE sent → control connection open (the session is ready for requests).
    pub session_ready: crate::bench::LatencySummary,
    /// SPEAK sent → its `200 IN-PROGRESS`.
    pub speak_response: crate::bench::LatencySummary,
    /// SPEAK sent → kernel arrival of the first RTP packet carrying sound.
    pub speak_to_audio: crate::bench::LatencySummary,
    /// SPEAKs whose audio was seen.
    pub speaks_with_audio: usize,
    /// SPEAKs sent.
    pub speaks_sent: usize,
    /// How the SPEAKs ended (SPEAK-COMPLETE causes); sessions hung up first are not here.
    pub completions: Vec<CauseCount>,
    /// Control failures by cause.
    pub control_failures: Vec<CauseCount>,
}

impl std::fmt::Display for MrcpFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = |s: &crate::bench::LatencySummary| {
            format!(
                "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
            )
        };
        writeln!(
            f,
            "mrcp        {} SPEAK of {:?}: {} control connections, {} SPEAKs sent, {} with audio",
            self.resource, self.speak, self.connected, self.speaks_sent, self.speaks_with_audio
        )?;
        writeln!(
            f,
            "  ready     {} (INVITE to control connection open)",
            l(&self.session_ready)
        )?;
        writeln!(
            f,
            "  response  {} (SPEAK to 200 IN-PROGRESS)",
            l(&self.speak_response)
        )?;
        write!(
            f,
            "  audio     {} (SPEAK to the first RTP packet with sound, kernel timestamps)",
            l(&self.speak_to_audio)
        )?;
        for c in &self.completions {
            write!(f, "\n  complete  {} x {}", c.sessions, c.cause)?;
        }
        for c in &self.control_failures {
            write!(f, "\n  failed    {} x {}", c.sessions, c.cause)?;
        }
        Ok(())
    }
}
