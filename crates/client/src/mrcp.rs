//! The MRCPv2 control side of `imss call --mrcp`: one SPEAK on the channel the server
//! granted, PAUSE/RESUME/STOP at given offsets, every received message recorded.
//!
//! Framing and parsing are `imss-mrcp`'s; this module only moves bytes over one TCP
//! connection and decides what to send next.

use crate::ClientError;
use crate::error::Transcript;
use imss_mrcp::{
    Check, EventName, Limits, Message, Method, RequestId, RequestState, StartLine, names,
};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The request-id of the SPEAK; later requests count up from it.
pub const SPEAK_REQUEST_ID: RequestId = 1;
/// Audio file extensions that make a single word a file path rather than text to speak.
const AUDIO_EXTENSIONS: [&str; 10] = [
    "wav", "mp3", "ogg", "oga", "opus", "flac", "au", "aif", "aiff", "m4a",
];

/// What an MRCP call speaks and when it pauses, resumes or stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MrcpOptions {
    /// What to SPEAK: a URI (`tone.wav`, `file:///…`, `source:NAME`, `http://…`) sent as
    /// `text/uri-list`, an SSML document (starts with `<`), or plain text for TTS.
    pub speak: String,
    /// Send PAUSE this long after the SPEAK's IN-PROGRESS response.
    pub pause_after: Option<Duration>,
    /// Send RESUME this long after the IN-PROGRESS response.
    pub resume_after: Option<Duration>,
    /// Send STOP this long after the IN-PROGRESS response.
    pub stop_after: Option<Duration>,
    /// The resource to ask for: `speechsynth` (default) or `basicsynth`.
    pub resource: String,
}

impl Default for MrcpOptions {
    fn default() -> Self {
        MrcpOptions {
            speak: String::new(),
            pause_after: None,
            resume_after: None,
            stop_after: None,
            resource: "speechsynth".to_string(),
        }
    }
}

/// A SPEAK body: its Content-Type and content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeakBody {
    /// `text/uri-list`, `application/ssml+xml` or `text/plain`.
    pub content_type: &'static str,
    /// The body.
    pub content: String,
}

impl SpeakBody {
    /// Chooses the body for what the operator typed: SSML when it starts with `<`, a URI
    /// list when it is one word with a scheme (`source:moh`), a `/`, or an audio file
    /// extension, plain text otherwise.
    pub fn for_input(input: &str) -> SpeakBody {
        let t = input.trim();
        if t.starts_with('<') {
            return SpeakBody {
                content_type: "application/ssml+xml",
                content: t.to_string(),
            };
        }
        if looks_like_uri(t) {
            return SpeakBody {
                content_type: "text/uri-list",
                content: format!("{t}\r\n"),
            };
        }
        SpeakBody {
            content_type: "text/plain",
            content: t.to_string(),
        }
    }
}

fn looks_like_uri(t: &str) -> bool {
    if t.is_empty() || t.chars().any(char::is_whitespace) {
        return false;
    }
    let has_scheme = t.split_once(':').is_some_and(|(scheme, rest)| {
        !rest.is_empty()
            && scheme.len() > 1
            && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    });
    let audio_file = t.rsplit_once('.').is_some_and(|(stem, ext)| {
        !stem.is_empty() && AUDIO_EXTENSIONS.iter().any(|a| a.eq_ignore_ascii_case(ext))
    });
    has_scheme || t.contains('/') || audio_file
}

/// How the SPEAK ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ControlOutcome {
    /// Every message received, formatted by [`format_block`].
    pub messages: Vec<String>,
    /// When the SPEAK was written to the connection.
    pub speak_sent: Option<Instant>,
    /// The same, as CLOCK_REALTIME ns (to compare with kernel RTP arrival times).
    pub speak_sent_unix_ns: Option<i64>,
    /// SPEAK to its `200 IN-PROGRESS` response.
    pub in_progress_after: Option<Duration>,
    /// The SPEAK-COMPLETE's Completion-Cause (`000 normal`).
    pub completion_cause: Option<String>,
    /// The SPEAK-COMPLETE's Completion-Reason, if any.
    pub completion_reason: Option<String>,
    /// True when a STOP ended the SPEAK (RFC 6787: no SPEAK-COMPLETE follows).
    pub stopped: bool,
}

/// One request planned for a time after the IN-PROGRESS response.
#[derive(Clone, Debug)]
struct Planned {
    after: Duration,
    method: Method,
}

/// Opens the control connection to `addr` (the answer's `c=` address and `m=application`
/// port), giving up at `deadline`.
pub async fn connect(addr: SocketAddr, deadline: Instant) -> Result<TcpStream, ClientError> {
    match tokio::time::timeout_at(deadline.into(), TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            tracing::debug!(peer = %addr, "MRCP control connection open");
            Ok(s)
        }
        Ok(Err(source)) => Err(ClientError::ControlConnect { addr, source }),
        Err(_) => Err(ClientError::ControlConnect {
            addr,
            source: std::io::Error::new(std::io::ErrorKind::TimedOut, "no connection in time"),
        }),
    }
}

/// SPEAKs on `channel` over `stream`, sends the planned requests and returns when the SPEAK
/// completed or was stopped, failing at `deadline`. The caller keeps the connection open
/// until the session is torn down (a server may take its close as the end of the session).
pub async fn run_control(
    stream: &mut TcpStream,
    channel: String,
    opts: MrcpOptions,
    deadline: Instant,
) -> Result<ControlOutcome, ClientError> {
    let limit = deadline.saturating_duration_since(Instant::now());
    let addr = stream
        .peer_addr()
        .map_err(|e| ClientError::io("reading the control connection's peer", e))?;

    let body = SpeakBody::for_input(&opts.speak);
    let speak = Message::request(Method::Speak, SPEAK_REQUEST_ID)
        .with_header(names::CHANNEL_IDENTIFIER, channel.clone())
        .with_body(body.content_type, body.content.into_bytes());
    let mut out = ControlOutcome::default();
    let speak_at = Instant::now();
    out.speak_sent = Some(speak_at);
    out.speak_sent_unix_ns = Some(unix_ns(SystemTime::now()));
    let lost = |detail: String, out: &ControlOutcome| ClientError::ControlLost {
        detail,
        transcript: Transcript(out.messages.clone()),
    };
    if let Err(e) = stream.write_all(&speak.encode()).await {
        return Err(lost(format!("sending SPEAK: {e}"), &out));
    }

    let mut plan: Vec<Planned> = [
        (opts.pause_after, Method::Pause),
        (opts.resume_after, Method::Resume),
        (opts.stop_after, Method::Stop),
    ]
    .into_iter()
    .filter_map(|(after, method)| after.map(|after| Planned { after, method }))
    .collect();
    // Stable: equal offsets keep PAUSE, RESUME, STOP order.
    plan.sort_by_key(|p| p.after);
    plan.reverse();
    let mut sent: Vec<(RequestId, Method)> = vec![(SPEAK_REQUEST_ID, Method::Speak)];
    let mut next_id = SPEAK_REQUEST_ID + 1;
    let mut in_progress_at: Option<Instant> = None;
    let limits = Limits::default();
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];

    loop {
        // Every whole message in the buffer.
        loop {
            let len = match imss_mrcp::check(&buf, &limits) {
                Ok(Check::Complete(len)) => len,
                Ok(Check::Incomplete) => break,
                Err(e) => return Err(lost(format!("framing: {e}"), &out)),
            };
            let raw: Vec<u8> = buf.drain(..len).collect();
            let now = Instant::now();
            out.messages
                .push(format_block(&raw, now.saturating_duration_since(speak_at)));
            let msg = match imss_mrcp::parse(&raw, &limits) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(peer = %addr, error = %e, "unparsable MRCP message ignored");
                    continue;
                }
            };
            tracing::info!(
                channel = %channel,
                at_ms = now.saturating_duration_since(speak_at).as_secs_f64() * 1000.0,
                message = %start_line(&raw),
                "MRCP message received"
            );
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
                } => {
                    let Some((_, method)) = sent.iter().find(|(id, _)| id == request_id) else {
                        continue;
                    };
                    if !status.is_success() {
                        return Err(ClientError::MrcpStatus {
                            method: method.to_string(),
                            request_id: *request_id,
                            status: status.as_u16(),
                            transcript: Transcript(out.messages.clone()),
                        });
                    }
                    match method {
                        Method::Speak => {
                            if *state == RequestState::InProgress && in_progress_at.is_none() {
                                in_progress_at = Some(now);
                                out.in_progress_after =
                                    Some(now.saturating_duration_since(speak_at));
                            }
                            if *state == RequestState::Complete {
                                // Done at once (nothing to play); no event will follow.
                                return Ok(out);
                            }
                        }
                        Method::Stop => {
                            out.stopped = true;
                            return Ok(out);
                        }
                        _ => {}
                    }
                }
                StartLine::Event {
                    event: EventName::SpeakComplete,
                    request_id,
                    ..
                } if *request_id == SPEAK_REQUEST_ID => {
                    let cause = msg
                        .headers
                        .get(names::COMPLETION_CAUSE)
                        .map(|c| c.trim().to_string());
                    let reason = msg
                        .headers
                        .get(names::COMPLETION_REASON)
                        .map(|r| r.trim().to_string());
                    out.completion_cause = cause.clone();
                    out.completion_reason = reason.clone();
                    let normal = cause
                        .as_deref()
                        .is_some_and(|c| c.split(' ').next() == Some("000"));
                    if !normal {
                        return Err(ClientError::SpeakFailed {
                            cause: cause.unwrap_or_else(|| "(no Completion-Cause)".into()),
                            reason,
                            transcript: Transcript(out.messages.clone()),
                        });
                    }
                    return Ok(out);
                }
                _ => {}
            }
        }

        let due = in_progress_at.and_then(|t| plan.last().map(|p| t + p.after));
        let wake = due.map_or(deadline, |d| d.min(deadline));
        tokio::select! {
            r = stream.read(&mut chunk) => match r {
                Ok(0) => return Err(lost("closed by the server".into(), &out)),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(lost(e.to_string(), &out)),
            },
            _ = tokio::time::sleep_until(wake.into()) => {
                if Instant::now() >= deadline {
                    return Err(ClientError::SpeakTimeout {
                        after: limit,
                        transcript: Transcript(out.messages.clone()),
                    });
                }
                if let Some(p) = plan.pop() {
                    let id = next_id;
                    next_id += 1;
                    let m = Message::request(p.method.clone(), id)
                        .with_header(names::CHANNEL_IDENTIFIER, channel.clone());
                    if let Err(e) = stream.write_all(&m.encode()).await {
                        return Err(lost(format!("sending {}: {e}", p.method), &out));
                    }
                    tracing::debug!(channel = %channel, method = %p.method, request_id = id, "sent");
                    sent.push((id, p.method));
                }
            }
        }
    }
}

/// A received message as the operator sees it: `+12.345 ms` and its start line, then its
/// header fields, each on its own line; the body only as its size.
pub fn format_block(raw: &[u8], after_speak: Duration) -> String {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let body_len = raw.len().saturating_sub(head_end + 4);
    let mut block = format!("+{:.3} ms", after_speak.as_secs_f64() * 1000.0);
    for (i, line) in head.split("\r\n").enumerate() {
        block.push_str(if i == 0 { "  " } else { "\n    " });
        block.push_str(line);
    }
    if body_len > 0 {
        block.push_str(&format!("\n    ({body_len} byte body)"));
    }
    block
}

fn start_line(raw: &[u8]) -> String {
    let end = raw
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(raw.len());
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// CLOCK_REALTIME in ns, as the kernel stamps received packets.
fn unix_ns(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speak_bodies_by_what_was_typed() {
        for uri in [
            "tone.wav",
            "moh/music.MP3",
            "file:///var/lib/imss/audio/a.wav",
            "source:moh",
            "http://h.example/a.wav",
            "fbmc:box/1",
            "imap://vm@mail/INBOX/;UID=4",
        ] {
            let b = SpeakBody::for_input(uri);
            assert_eq!(b.content_type, "text/uri-list", "{uri}");
            assert_eq!(b.content, format!("{uri}\r\n"));
        }
        for text in ["Hello", "Hello world.", "Press 1: sales", "version 2.5"] {
            assert_eq!(
                SpeakBody::for_input(text).content_type,
                "text/plain",
                "{text}"
            );
        }
        let ssml = SpeakBody::for_input(" <speak>hi</speak>\n");
        assert_eq!(
            (ssml.content_type, ssml.content.as_str()),
            ("application/ssml+xml", "<speak>hi</speak>")
        );
    }

    #[test]
    fn a_block_shows_the_start_line_and_headers_without_the_body() {
        let raw = Message::request(Method::Speak, 1)
            .with_header(names::CHANNEL_IDENTIFIER, "abc@speechsynth")
            .with_body("text/plain", "hello")
            .encode();
        let b = format_block(&raw, Duration::from_micros(12_345));
        let lines: Vec<&str> = b.lines().collect();
        assert!(lines[0].starts_with("+12.345 ms  MRCP/2.0 "), "{b}");
        assert!(lines[0].ends_with(" SPEAK 1"), "{b}");
        assert_eq!(lines[1], "    Channel-Identifier: abc@speechsynth");
        assert_eq!(lines.last().copied(), Some("    (5 byte body)"));
        assert!(!b.contains("hello"));
    }

    /// A scripted control-channel peer: answers SPEAK with IN-PROGRESS, then whatever
    /// `after_speak` says, and records the requests it got.
    async fn peer(
        script: impl FnOnce(RequestId) -> Vec<Message> + Send + 'static,
        answer_others: bool,
    ) -> (
        SocketAddr,
        tokio::task::JoinHandle<Vec<(Method, RequestId, Instant)>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let mut got = Vec::new();
            let Ok((mut s, _)) = listener.accept().await else {
                return got;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let mut script = Some(script);
            loop {
                while let Ok(Check::Complete(n)) = imss_mrcp::check(&buf, &Limits::default()) {
                    let raw: Vec<u8> = buf.drain(..n).collect();
                    let m = imss_mrcp::parse(&raw, &Limits::default()).expect("request");
                    let method = m.method().cloned().expect("a request");
                    got.push((method.clone(), m.request_id(), Instant::now()));
                    let mut replies = Vec::new();
                    if method == Method::Speak {
                        replies.push(Message::response(
                            m.request_id(),
                            imss_mrcp::StatusCode::SUCCESS,
                            RequestState::InProgress,
                        ));
                        if let Some(f) = script.take() {
                            replies.extend(f(m.request_id()));
                        }
                    } else if answer_others {
                        replies.push(Message::response(
                            m.request_id(),
                            imss_mrcp::StatusCode::SUCCESS,
                            RequestState::Complete,
                        ));
                    }
                    for r in replies {
                        let r = r.with_header(names::CHANNEL_IDENTIFIER, "c1@speechsynth");
                        if s.write_all(&r.encode()).await.is_err() {
                            return got;
                        }
                    }
                }
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return got,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        (addr, task)
    }

    async fn run(
        addr: SocketAddr,
        channel: String,
        opts: MrcpOptions,
        deadline: Instant,
    ) -> Result<ControlOutcome, ClientError> {
        let mut stream = connect(addr, deadline).await?;
        run_control(&mut stream, channel, opts, deadline).await
    }

    fn opts(speak: &str) -> MrcpOptions {
        MrcpOptions {
            speak: speak.to_string(),
            ..MrcpOptions::default()
        }
    }

    fn complete(cause: &str) -> impl FnOnce(RequestId) -> Vec<Message> + Send + 'static {
        let cause = cause.to_string();
        move |id| {
            vec![
                Message::event(EventName::SpeakComplete, id, RequestState::Complete)
                    .with_header(names::COMPLETION_CAUSE, cause)
                    .with_header(names::COMPLETION_REASON, "the reason"),
            ]
        }
    }

    #[tokio::test]
    async fn speak_to_speak_complete() {
        let (addr, task) = peer(complete("000 normal"), true).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let out = run(addr, "c1@speechsynth".into(), opts("a.wav"), deadline)
            .await
            .expect("completes");
        assert_eq!(out.completion_cause.as_deref(), Some("000 normal"));
        assert!(out.in_progress_after.is_some());
        assert_eq!(out.messages.len(), 2);
        assert!(out.messages[0].contains(" 1 200 IN-PROGRESS"));
        assert!(out.messages[1].contains("SPEAK-COMPLETE 1 COMPLETE"));
        assert!(!out.stopped);
        let got = task.await.expect("peer");
        assert_eq!(got.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_speak_is_an_error_with_its_cause_and_reason() {
        let (addr, _task) = peer(complete("003 uri-failure"), true).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        let e = run(addr, "c1@speechsynth".into(), opts("x.wav"), deadline)
            .await
            .expect_err("003 fails");
        let text = e.to_string();
        assert!(
            text.starts_with("SPEAK-COMPLETE 003 uri-failure: the reason"),
            "{text}"
        );
        assert!(text.contains("MRCP messages received:"), "{text}");
    }

    #[tokio::test]
    async fn pause_resume_stop_follow_the_in_progress_at_their_offsets() {
        let (addr, task) = peer(|_| Vec::new(), true).await;
        let o = MrcpOptions {
            pause_after: Some(Duration::from_millis(100)),
            resume_after: Some(Duration::from_millis(250)),
            stop_after: Some(Duration::from_millis(300)),
            ..opts("source:moh")
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        let out = run(addr, "c1@speechsynth".into(), o, deadline)
            .await
            .expect("stopped");
        assert!(out.stopped);
        assert_eq!(out.completion_cause, None);
        let got = task.await.expect("peer");
        let methods: Vec<(Method, RequestId)> =
            got.iter().map(|(m, id, _)| (m.clone(), *id)).collect();
        assert_eq!(
            methods,
            vec![
                (Method::Speak, 1),
                (Method::Pause, 2),
                (Method::Resume, 3),
                (Method::Stop, 4)
            ]
        );
        let t0 = got[0].2;
        let at = |i: usize| got[i].2.saturating_duration_since(t0);
        assert!(at(1) >= Duration::from_millis(100) && at(1) < Duration::from_millis(200));
        assert!(at(2) >= Duration::from_millis(250) && at(2) < Duration::from_millis(350));
        assert!(at(3) >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn failures_timeout_status_and_refused_connection() {
        // A response for a request not sent yet is only recorded; the SPEAK never completes.
        let (addr, _task) = peer(
            |_| {
                vec![Message::response(
                    7,
                    imss_mrcp::StatusCode::METHOD_NOT_VALID_IN_STATE,
                    RequestState::Complete,
                )]
            },
            false,
        )
        .await;
        let deadline = Instant::now() + Duration::from_millis(400);
        let e = run(addr, "c1@speechsynth".into(), opts("a.wav"), deadline)
            .await
            .expect_err("no SPEAK-COMPLETE");
        assert!(
            matches!(&e, ClientError::SpeakTimeout { transcript, .. } if transcript.0.len() == 2),
            "{e}"
        );

        let deadline = Instant::now() + Duration::from_secs(5);
        let rejecting = peer_rejecting_speak().await;
        let e = run(rejecting, "c1@speechsynth".into(), opts("a"), deadline)
            .await
            .expect_err("405");
        assert!(
            matches!(e, ClientError::MrcpStatus { status: 405, .. }),
            "{e}"
        );

        let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = closed.local_addr().expect("addr");
        drop(closed);
        let e = run(addr, "c1@speechsynth".into(), opts("a"), deadline)
            .await
            .expect_err("refused");
        assert!(matches!(e, ClientError::ControlConnect { .. }), "{e}");
    }

    async fn peer_rejecting_speak() -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            if let Ok((mut s, _)) = listener.accept().await {
                let mut chunk = [0u8; 4096];
                let _ = s.read(&mut chunk).await;
                let r = Message::response(
                    1,
                    imss_mrcp::StatusCode::RESOURCE_NOT_ALLOCATED,
                    RequestState::Complete,
                )
                .with_header(names::CHANNEL_IDENTIFIER, "c1@speechsynth");
                let _ = s.write_all(&r.encode()).await;
                let _ = s.read(&mut chunk).await;
            }
        });
        addr
    }
}
