//! `imss call`: one call, its RTP received, measured and optionally written as WAV.

use crate::capture::AudioCapture;
use crate::receiver::{ReceiverPool, StreamSpec};
use crate::sdp_offer::{self, Answer};
use crate::sip_shell::{Step, UacShell};
use crate::stats::{SpacingSummary, SteadyWindow, StreamSummary};
use crate::{ClientError, Codec, SPACING_SKIP, SipTarget, net};
use imss_sip::uac::UacEvent;
use serde::Serialize;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Without any response to the INVITE by then, the server is taken as not responding
/// (the INVITE has been retransmitted at 0.5, 1.5 and 3.5 s).
const NO_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// After a provisional response, how long to wait for the final one (Timer B, 64·T1).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(32);
/// How long to wait for the 200 OK to our BYE before giving up on it.
const BYE_GRACE: Duration = Duration::from_secs(4);
/// Audio beyond the requested duration kept in the WAV (a server may send a little more).
const CAPTURE_SLACK_SECONDS: f64 = 5.0;

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
        if let Some(w) = &self.wav {
            write!(f, "\nwav         {}", w.display())?;
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
    let offer = sdp_offer::offer(
        opts.local_ip,
        local_rtp.port(),
        &opts.codecs,
        opts.ptime_ms,
        rand::random::<u32>().into(),
    );
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
    let failure: Option<ClientError> = loop {
        match shell.next(deadline).await {
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
                    let a = match sdp_offer::read_answer(&sdp, &opts.codecs) {
                        Ok(a) => a,
                        Err(e) => {
                            // Hang up cleanly, then report the bad answer.
                            shell.hangup(&call_id).await;
                            wait_terminated(&mut shell, Instant::now() + BYE_GRACE).await;
                            break Some(e);
                        }
                    };
                    if let Some((rtp, rtcp)) = sockets.take() {
                        let capture = opts.out.as_ref().map(|_| {
                            let max = (opts.seconds + CAPTURE_SLACK_SECONDS) * 8000.0;
                            AudioCapture::new(max.min(u32::MAX as f64) as usize)
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
                    deadline = ev.at + Duration::from_secs_f64(opts.seconds);
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
    let out = pool
        .finish()
        .map_err(|e| ClientError::io("stopping the RTP receiver", e))?;
    if let Some(e) = failure {
        return Err(e);
    }
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
    let wav = match (&opts.out, capture) {
        (Some(path), Some(c)) => {
            c.write_wav(path)?;
            Some(path.clone())
        }
        _ => None,
    };
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
