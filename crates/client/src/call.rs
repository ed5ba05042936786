//! `imss call`: one call, its RTP received, measured and optionally written as WAV.
//!
//! With [`CallOptions::mrcp`] the call is an MRCPv2 session (RFC 6787): the INVITE offers a
//! control channel, and once the server answers, the control exchange of [`crate::mrcp`]
//! (SPEAK, then PAUSE/RESUME/STOP) runs beside the SIP dialog; its end hangs up the call.

use crate::capture::AudioCapture;
use crate::mrcp::{self, ControlOutcome, MrcpOptions, SpeakBody};
use crate::receiver::{ReceiverPool, StreamSpec};
use crate::sdp_offer::{self, Answer};
use crate::sip_shell::{Step, UacShell};
use crate::stats::{SpacingSummary, SteadyWindow, StreamSummary};
use crate::{ClientError, Codec, SPACING_SKIP, SipTarget, net};
use imss_sip::uac::UacEvent;
use serde::Serialize;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Without any response to the INVITE by then, the server is taken as not responding
/// (the INVITE has been retransmitted at 0.5, 1.5 and 3.5 s).
const NO_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a provisional response, how long to wait for the final one (Timer B, 64·T1).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(32);
/// How long to wait for the 200 OK to our BYE before giving up on it.
const BYE_GRACE: Duration = Duration::from_secs(4);
/// Audio beyond the requested duration kept in the WAV (a server may send a little more).
const CAPTURE_SLACK_SECONDS: f64 = 5.0;
/// In an MRCP call the control exchange has `seconds` to finish; the SIP side waits this much
/// longer, so the exchange reports its own timeout first.
const CONTROL_SLACK: Duration = Duration::from_secs(1);
/// Arrival gaps of at least this many packet times are reported (a PAUSE, a stall).
const GAP_PACKETS: u32 = 3;

/// The control exchange of an MRCP call, run beside the SIP dialog.
/// It hands back the connection, which stays open until the dialog has ended.
type ControlExchange =
    Pin<Box<dyn Future<Output = (Result<ControlOutcome, ClientError>, Option<TcpStream>)> + Send>>;

/// What `imss call` asks for.
#[derive(Clone, Debug)]
pub struct CallOptions {
    /// SIP URI, e.g. `sip:annc@127.0.0.1:6060;play=x.wav`; port 5060 when absent.
    pub uri: String,
    /// Seconds to stay on the call after the answer (the server may hang up first).
    pub seconds: f64,
    /// Where to write the received audio (8 kHz mono 16-bit WAV), if anywhere.
    pub out: Option<PathBuf>,
    /// Codecs to offer, in order of preference.
    pub codecs: Vec<Codec>,
    /// Packet time to ask for, in ms.
    pub ptime_ms: u32,
    /// Local address for SIP and RTP.
    pub local_ip: IpAddr,
    /// Make the call an MRCPv2 session and SPEAK this; `seconds` then bounds the whole
    /// exchange and the call ends when the SPEAK completes.
    pub mrcp: Option<MrcpOptions>,
}

/// A pause in the arrival of RTP packets.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RtpGap {
    /// When the last packet before the gap arrived, ms after the SPEAK was sent (MRCP calls)
    /// or after the first packet (plain calls).
    pub at_ms: f64,
    /// How long no packet arrived, ms.
    pub length_ms: f64,
}

/// What one call measured. `Display` is the operator's report; `Serialize` is `--json`.
#[derive(Clone, Debug, Serialize)]
pub struct CallReport {
    /// The URI called.
    pub uri: String,
    /// The call's Call-ID (to find it in the server's log).
    pub call_id: String,
    /// The server's SIP address.
    pub server: SocketAddr,
    /// The local RTP address offered.
    pub local_rtp: SocketAddr,
    /// Set-up latency: INVITE sent to 200 OK received, ms.
    pub setup_ms: f64,
    /// The codec the server answered with.
    pub codec: Codec,
    /// The packet time of the answer, ms.
    pub ptime_ms: f64,
    /// Packets received, duplicates included.
    pub packets: u64,
    /// Packets expected from the sequence number range (RFC 3550 A.3).
    pub expected: u64,
    /// Expected minus distinct packets received.
    pub lost: u64,
    /// `lost / expected`, percent.
    pub loss_percent: f64,
    /// Packets received more than once.
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// RFC 3550 interarrival jitter at the end of the call, ms (A.8).
    pub jitter_ms: f64,
    /// |arrival gap − ptime| between consecutive packets, from kernel receive timestamps.
    pub spacing: SpacingSummary,
    /// The start of the stream left out of the spacing figures, ms.
    pub spacing_skip_ms: u64,
    /// Seconds of distinct audio received.
    pub audio_seconds: f64,
    /// Seconds from the answer to the end of the call.
    pub call_seconds: f64,
    /// True when the server sent BYE first.
    pub ended_by_server: bool,
    /// Times the stream's SSRC changed.
    pub ssrc_changes: u32,
    /// Kernel arrival time of the first RTP packet, ms since the Unix epoch: lines up the
    /// audio of several calls in wall-clock time.
    pub first_packet_unix_ms: Option<f64>,
    /// The WAV file written, if any.
    pub wav: Option<PathBuf>,
    /// Arrival gaps of at least three packet times, in arrival order (noted while the audio
    /// is captured: with `out`, and always in MRCP calls).
    pub rtp_gaps: Vec<RtpGap>,
    /// MRCP calls: the channel the server granted (`a=channel`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mrcp_channel: Option<String>,
    /// MRCP calls: the control connection's address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mrcp_control: Option<SocketAddr>,
    /// MRCP calls: the SPEAK body's Content-Type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speak_content_type: Option<String>,
    /// MRCP calls: every message received on the control connection (start line and
    /// headers, after `+<ms>` since the SPEAK was sent).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mrcp_messages: Vec<String>,
    /// MRCP calls: SPEAK sent to its `200 IN-PROGRESS` received, ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speak_to_in_progress_ms: Option<f64>,
    /// MRCP calls: SPEAK sent to the kernel arrival of the first RTP packet carrying sound
    /// (comfort silence before it does not count), ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speak_to_first_rtp_ms: Option<f64>,
    /// MRCP calls: the SPEAK-COMPLETE's Completion-Cause, e.g. `000 normal`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_cause: Option<String>,
    /// MRCP calls: the SPEAK-COMPLETE's Completion-Reason, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub completion_reason: Option<String>,
    /// MRCP calls: true when a STOP ended the SPEAK (no SPEAK-COMPLETE follows a STOP).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl fmt::Display for CallReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "call        {} ({})", self.uri, self.server)?;
        writeln!(f, "call-id     {}", self.call_id)?;
        writeln!(f, "set-up      {:.1} ms (INVITE to 200 OK)", self.setup_ms)?;
        writeln!(f, "codec       {}, ptime {} ms", self.codec, self.ptime_ms)?;
        writeln!(
            f,
            "packets     {} received, {} expected, {} lost ({:.2} %), {} duplicate, {} reordered",
            self.packets,
            self.expected,
            self.lost,
            self.loss_percent,
            self.duplicates,
            self.reordered
        )?;
        writeln!(f, "jitter      {:.3} ms (RFC 3550)", self.jitter_ms)?;
        writeln!(
            f,
            "spacing     p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms \
             (|arrival gap - ptime|, kernel timestamps, {} pairs, first {} ms excluded)",
            self.spacing.p50_ms,
            self.spacing.p99_ms,
            self.spacing.max_ms,
            self.spacing.samples,
            self.spacing_skip_ms
        )?;
        writeln!(
            f,
            "audio       {:.2} s received during {:.2} s of call",
            self.audio_seconds, self.call_seconds
        )?;
        write!(
            f,
            "ended by    {}",
            if self.ended_by_server {
                "the server (BYE)"
            } else {
                "the client (BYE)"
            }
        )?;
        for g in &self.rtp_gaps {
            write!(
                f,
                "\ngap         no RTP for {:.1} ms from +{:.1} ms",
                g.length_ms, g.at_ms
            )?;
        }
        if let Some(w) = &self.wav {
            write!(f, "\nwav         {}", w.display())?;
        }
        let Some(channel) = &self.mrcp_channel else {
            return Ok(());
        };
        write!(f, "\nmrcp        channel {channel}")?;
        if let Some(c) = self.mrcp_control {
            write!(f, ", control {c}")?;
        }
        if let Some(t) = &self.speak_content_type {
            write!(f, ", SPEAK {t}")?;
        }
        let ms = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.3} ms"));
        write!(
            f,
            "\nspeak       IN-PROGRESS after {}, first RTP with sound after {}",
            ms(self.speak_to_in_progress_ms),
            ms(self.speak_to_first_rtp_ms)
        )?;
        match (&self.completion_cause, self.stopped) {
            (Some(cause), _) => {
                write!(f, "\ncompletion  {cause}")?;
                if let Some(r) = &self.completion_reason {
                    write!(f, " ({r})")?;
                }
            }
            (None, true) => write!(f, "\ncompletion  stopped (STOP)")?,
            (None, false) => write!(f, "\ncompletion  -")?,
        }
        write!(f, "\nmessages    {} received", self.mrcp_messages.len())?;
        for block in &self.mrcp_messages {
            for line in block.lines() {
                write!(f, "\n  {line}")?;
            }
        }
        Ok(())
    }
}

/// Places one call, receives its RTP for `seconds` (or until the server hangs up), hangs
/// up, and reports what arrived; writes the audio to `out` when given.
pub async fn place_call(opts: &CallOptions) -> Result<CallReport, ClientError> {
    validate(opts)?;
    let target = SipTarget::parse(&opts.uri)?;
    let server = target.resolve(opts.local_ip.is_ipv4()).await?;
    let (rtp, rtcp) = net::bind_rtp_pair(opts.local_ip, true)
        .map_err(|e| ClientError::io(format!("binding RTP ports on {}", opts.local_ip), e))?;
    let local_rtp = rtp
        .local_addr()
        .map_err(|e| ClientError::io("reading the RTP socket address", e))?;
    let session_id = rand::random::<u32>().into();
    let offer = match &opts.mrcp {
        Some(m) => sdp_offer::mrcp_offer(
            opts.local_ip,
            local_rtp.port(),
            &opts.codecs,
            opts.ptime_ms,
            session_id,
            &m.resource,
        ),
        None => sdp_offer::offer(
            opts.local_ip,
            local_rtp.port(),
            &opts.codecs,
            opts.ptime_ms,
            session_id,
        ),
    };
    let pool = ReceiverPool::start(
        1,
        1,
        SPACING_SKIP,
        Duration::ZERO,
        Arc::new(SteadyWindow::default()),
    )
    .map_err(|e| ClientError::io("starting the RTP receiver", e))?;
    let mut shell = UacShell::bind(opts.local_ip, server).await?;
    let invite_at = Instant::now();
    let call_id = shell.start_call(&target.request_uri, offer).await;
    tracing::debug!(call_id = %call_id, peer = %server, "INVITE sent");

    let mut sockets = Some((rtp, rtcp));
    let mut got_response = false;
    let mut answer: Option<(Answer, Instant)> = None;
    let mut ended_by_server = false;
    let mut ended_at: Option<Instant> = None;
    let mut hung_up = false;
    let mut deadline = invite_at + NO_RESPONSE_TIMEOUT;
    let mut control: Option<ControlExchange> = None;
    let mut control_addr: Option<(SocketAddr, String)> = None;
    let mut control_result: Option<Result<ControlOutcome, ClientError>> = None;
    let mut control_connection: Option<TcpStream> = None;
    let failure: Option<ClientError> = loop {
        let step = match control.as_mut() {
            Some(exchange) => tokio::select! {
                step = shell.next(deadline) => step,
                (result, connection) = exchange => {
                    control = None;
                    control_result = Some(result);
                    control_connection = connection;
                    if !(hung_up || ended_by_server) {
                        ended_at = Some(Instant::now());
                        pool.close(0);
                        shell.hangup(&call_id).await;
                        hung_up = true;
                        deadline = Instant::now() + BYE_GRACE;
                    }
                    continue;
                }
            },
            None => shell.next(deadline).await,
        };
        match step {
            Step::Event(ev) => match ev.event {
                UacEvent::Provisional(_) => {
                    if !got_response {
                        got_response = true;
                        deadline = invite_at + ANSWER_TIMEOUT;
                    }
                }
                UacEvent::Answered { sdp } => {
                    got_response = true;
                    if answer.is_some() {
                        continue;
                    }
                    let read =
                        sdp_offer::read_answer(&sdp, &opts.codecs).and_then(|a| match &opts.mrcp {
                            Some(m) => sdp_offer::read_control_answer(&sdp, &m.resource)
                                .map(|c| (a, Some(c))),
                            None => Ok((a, None)),
                        });
                    let (a, granted) = match read {
                        Ok(a) => a,
                        Err(e) => {
                            // Hang up cleanly, then report the bad answer.
                            shell.hangup(&call_id).await;
                            wait_terminated(&mut shell, Instant::now() + BYE_GRACE).await;
                            break Some(e);
                        }
                    };
                    if let Some((rtp, rtcp)) = sockets.take() {
                        // An MRCP call always captures: its report needs the sound onsets.
                        let capture = (opts.out.is_some() || opts.mrcp.is_some()).then(|| {
                            let max = (opts.seconds + CAPTURE_SLACK_SECONDS) * 8000.0;
                            let mut c = AudioCapture::new(max.min(u32::MAX as f64) as usize);
                            c.set_gap_threshold(a.ptime * GAP_PACKETS);
                            c
                        });
                        pool.add(StreamSpec {
                            slot: 0,
                            socket: rtp,
                            rtcp,
                            ptime: a.ptime,
                            capture,
                        })
                        .map_err(|e| ClientError::io("starting to receive RTP", e))?;
                    }
                    tracing::debug!(call_id = %call_id, codec = %a.codec, "answered");
                    answer = Some((a, ev.at));
                    let limit = ev.at + Duration::from_secs_f64(opts.seconds);
                    deadline = limit;
                    if let (Some(m), Some(c)) = (&opts.mrcp, granted) {
                        tracing::debug!(call_id = %call_id, channel = %c.channel, control = %c.addr, "MRCP channel granted");
                        control_addr = Some((c.addr, c.channel.clone()));
                        let speak = m.clone();
                        control = Some(Box::pin(async move {
                            match mrcp::connect(c.addr, limit).await {
                                Ok(mut s) => {
                                    let r =
                                        mrcp::run_control(&mut s, c.channel, speak, limit).await;
                                    (r, Some(s))
                                }
                                Err(e) => (Err(e), None),
                            }
                        }));
                        deadline = limit + CONTROL_SLACK;
                    }
                }
                UacEvent::Failed { status, reason } => {
                    break Some(if status == 408 && !got_response {
                        ClientError::Timeout {
                            remote: server,
                            after: invite_at.elapsed(),
                        }
                    } else {
                        ClientError::Rejected { status, reason }
                    });
                }
                UacEvent::RemoteBye => {
                    ended_by_server = true;
                    ended_at.get_or_insert(ev.at);
                    pool.close(0);
                    deadline = Instant::now() + BYE_GRACE;
                }
                UacEvent::Terminated => break None,
            },
            Step::Deadline => {
                if answer.is_none() {
                    shell.hangup(&call_id).await;
                    break Some(ClientError::Timeout {
                        remote: server,
                        after: invite_at.elapsed(),
                    });
                }
                if hung_up || ended_by_server {
                    // The BYE transaction did not complete in time; the figures stand.
                    break None;
                }
                if control.take().is_some() {
                    control_result = Some(Err(ClientError::SpeakTimeout {
                        after: Duration::from_secs_f64(opts.seconds),
                        transcript: Default::default(),
                    }));
                }
                ended_at = Some(Instant::now());
                pool.close(0);
                shell.hangup(&call_id).await;
                hung_up = true;
                deadline = Instant::now() + BYE_GRACE;
            }
            Step::Unreachable(e) => {
                if !got_response {
                    break Some(ClientError::Unreachable {
                        remote: server,
                        source: e,
                    });
                }
            }
        }
    };
    // The dialog is over: now the control connection may close.
    drop(control_connection);
    let out = pool
        .finish()
        .map_err(|e| ClientError::io("stopping the RTP receiver", e))?;
    if let Some(e) = failure {
        return Err(e);
    }
    let outcome = match (&opts.mrcp, control_result) {
        (None, _) => None,
        (Some(_), Some(Ok(o))) => Some(o),
        (Some(_), Some(Err(e))) => return Err(e),
        (Some(_), None) => {
            return Err(ClientError::ControlLost {
                detail: "the server ended the call before the SPEAK completed".into(),
                transcript: Default::default(),
            });
        }
    };
    let Some((answer, answered_at)) = answer else {
        return Err(ClientError::BadAnswer(
            "the call ended without an answer".into(),
        ));
    };
    let ended_at = ended_at.unwrap_or_else(Instant::now);
    let call_seconds = ended_at
        .saturating_duration_since(answered_at)
        .as_secs_f64();
    let result = out.streams.into_iter().next().flatten();
    let (summary, capture) = match result {
        Some(r) => (r.summary, r.capture),
        None => (StreamSummary::default(), None),
    };
    if summary.packets == 0 {
        return Err(ClientError::NoRtp {
            local: local_rtp,
            seconds: call_seconds,
        });
    }
    let speak_unix_ns = outcome.as_ref().and_then(|o| o.speak_sent_unix_ns);
    let reference_ns = speak_unix_ns.or(summary.first_arrival_ns).unwrap_or(0);
    let since_reference = |ns: i64| (ns - reference_ns) as f64 / 1e6;
    let (rtp_gaps, first_sound_ns) = match &capture {
        Some(c) => (
            c.gaps()
                .iter()
                .map(|g| RtpGap {
                    at_ms: since_reference(g.from_ns),
                    length_ms: (g.to_ns - g.from_ns) as f64 / 1e6,
                })
                .collect(),
            speak_unix_ns.and_then(|s| c.onsets().iter().copied().find(|&t| t >= s)),
        ),
        None => (Vec::new(), None),
    };
    let wav = match (&opts.out, capture) {
        (Some(path), Some(c)) => {
            c.write_wav(path)?;
            Some(path.clone())
        }
        _ => None,
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (mrcp_control, mrcp_channel) = match control_addr {
        Some((a, c)) if outcome.is_some() => (Some(a), Some(c)),
        _ => (None, None),
    };
    let outcome = outcome.unwrap_or_default();
    Ok(CallReport {
        uri: opts.uri.clone(),
        call_id,
        server,
        local_rtp,
        setup_ms: answered_at
            .saturating_duration_since(invite_at)
            .as_secs_f64()
            * 1000.0,
        codec: answer.codec,
        ptime_ms: answer.ptime.as_secs_f64() * 1000.0,
        packets: summary.packets,
        expected: summary.expected,
        lost: summary.lost,
        loss_percent: percent(summary.lost, summary.expected),
        duplicates: summary.duplicates,
        reordered: summary.reordered,
        jitter_ms: summary.jitter_ms,
        spacing: out.spacing.summary_ms(),
        spacing_skip_ms: SPACING_SKIP.as_millis() as u64,
        audio_seconds: summary.audio_seconds,
        call_seconds,
        ended_by_server,
        ssrc_changes: summary.ssrc_changes,
        first_packet_unix_ms: summary.first_arrival_ns.map(|ns| ns as f64 / 1e6),
        wav,
        rtp_gaps,
        mrcp_channel,
        mrcp_control,
        speak_content_type: opts
            .mrcp
            .as_ref()
            .map(|m| SpeakBody::for_input(&m.speak).content_type.to_string()),
        mrcp_messages: outcome.messages,
        speak_to_in_progress_ms: outcome.in_progress_after.map(ms),
        speak_to_first_rtp_ms: first_sound_ns.map(since_reference),
        completion_cause: outcome.completion_cause,
        completion_reason: outcome.completion_reason,
        stopped: outcome.stopped,
    })
}

async fn wait_terminated(shell: &mut UacShell, deadline: Instant) {
    loop {
        match shell.next(deadline).await {
            Step::Event(ev) if matches!(ev.event, UacEvent::Terminated) => return,
            Step::Deadline => return,
            _ => {}
        }
    }
}

fn validate(opts: &CallOptions) -> Result<(), ClientError> {
    let bad = |s: &str| Err(ClientError::InvalidOptions(s.to_string()));
    if opts.codecs.is_empty() {
        return bad("offer at least one codec (PCMU or PCMA)");
    }
    if !(opts.seconds.is_finite() && opts.seconds > 0.0 && opts.seconds <= 86_400.0) {
        return bad("seconds must be in (0, 86400]");
    }
    if !(10..=200).contains(&opts.ptime_ms) {
        return bad("ptime must be between 10 and 200 ms");
    }
    if let Some(m) = &opts.mrcp {
        if m.speak.trim().is_empty() {
            return bad("an MRCP call needs something to SPEAK (a URI or text)");
        }
        let token = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
        if m.resource.is_empty() || !m.resource.chars().all(token) {
            return bad("the MRCP resource must be a name such as speechsynth or basicsynth");
        }
    }
    Ok(())
}

/// `part / whole` in percent; 0 when `whole` is 0.
pub(crate) fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}
