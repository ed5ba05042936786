//! Requests from the JSON API to the SIP shell, which owns the call table: answered over a
//! channel so the call table keeps one owner.

use std::net::SocketAddr;
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};

/// One request to the shell; each carries the sender its answer goes back on.
pub(crate) enum ControlMsg {
    /// The calls in the table now (those not already being ended).
    Sessions {
        reply: oneshot::Sender<Vec<SessionInfo>>,
    },
    /// Ends a call as shutdown does (BYE, stream stopped, MRCPv2 channels closed). `id` is
    /// the session's id or its SIP Call-ID; the answer says whether there was such a call.
    End {
        id: String,
        reply: oneshot::Sender<bool>,
    },
}

/// What kind of session a call is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SessionKind {
    /// An MRCPv2 session (RFC 6787): control channels and the audio they play.
    Mrcp,
    /// A plain SIP call playing a source or an announcement.
    Sip,
}

/// One call of the table, as the shell sees it now.
#[derive(Clone, Debug)]
pub(crate) struct SessionInfo {
    /// The shell's handle of the call (`call-N`), stable for the call's life.
    pub id: String,
    pub kind: SessionKind,
    /// Where the INVITE came from.
    pub peer: SocketAddr,
    /// The SIP Call-ID.
    pub call_id: String,
    /// The MRCPv2 Channel-Identifiers of the session (empty for plain SIP).
    pub channels: Vec<String>,
    /// What it plays now: a source name, an announcement's URI, a SPEAK's summary.
    pub playing: Option<String>,
    /// When the INVITE arrived.
    pub since: SystemTime,
    /// Whole seconds since then.
    pub seconds: u64,
    /// The negotiated codec (`PCMU`, `PCMA`), once an offer was answered.
    pub codec: Option<&'static str>,
    /// RTP packets its stream sent so far.
    pub packets: u64,
}

/// The shell is not running (the server is shutting down).
#[derive(Debug)]
pub(crate) struct ShellGone;

/// The API's handle on the shell.
#[derive(Clone)]
pub(crate) struct Control {
    tx: mpsc::UnboundedSender<ControlMsg>,
}

impl Control {
    /// A handle and the receiver the shell reads.
    pub(crate) fn new() -> (Control, mpsc::UnboundedReceiver<ControlMsg>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Control { tx }, rx)
    }

    /// The calls in the table now.
    pub(crate) async fn sessions(&self) -> Result<Vec<SessionInfo>, ShellGone> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(ControlMsg::Sessions { reply })
            .map_err(|_| ShellGone)?;
        answer.await.map_err(|_| ShellGone)
    }

    /// Ends the call `id` (session id or SIP Call-ID); `false` when there is none.
    pub(crate) async fn end(&self, id: String) -> Result<bool, ShellGone> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(ControlMsg::End { id, reply })
            .map_err(|_| ShellGone)?;
        answer.await.map_err(|_| ShellGone)
    }
}

impl super::Shell {
    /// Answers one request of the API.
    pub(super) fn handle_control(&mut self, msg: ControlMsg) {
        match msg {
            ControlMsg::Sessions { reply } => {
                let _ = reply.send(self.sessions());
            }
            ControlMsg::End { id, reply } => {
                let call = self.call_named(&id);
                if let Some(call) = &call {
                    self.hang_up(
                        std::time::Instant::now(),
                        call.clone(),
                        "ended through the API",
                    );
                }
                let _ = reply.send(call.is_some());
            }
        }
    }

    /// The calls of the table that are not being ended, oldest first.
    fn sessions(&self) -> Vec<SessionInfo> {
        let mut out: Vec<SessionInfo> = self
            .calls
            .iter()
            .filter(|(_, c)| !c.hanging_up)
            .map(|(call, c)| {
                let mrcp = !c.channels.is_empty();
                SessionInfo {
                    id: call.to_string(),
                    kind: if mrcp {
                        SessionKind::Mrcp
                    } else {
                        SessionKind::Sip
                    },
                    peer: c.peer,
                    call_id: self
                        .endpoint
                        .sip_call_id(call)
                        .unwrap_or_default()
                        .to_string(),
                    channels: c.channels.iter().map(|ch| ch.channel_id.clone()).collect(),
                    playing: if mrcp {
                        self.channels.playing(&c.channels)
                    } else {
                        c.playing.clone()
                    },
                    since: c.since,
                    seconds: c.created.elapsed().as_secs(),
                    codec: c.codec.map(|codec| match codec {
                        imss_sip::sdp::Codec::Pcmu => "PCMU",
                        imss_sip::sdp::Codec::Pcma => "PCMA",
                    }),
                    packets: if c.in_pacer {
                        self.shared.pacer.packets_sent(c.stream_id).unwrap_or(0)
                    } else {
                        0
                    },
                }
            })
            .collect();
        out.sort_by(|a, b| a.since.cmp(&b.since).then_with(|| a.id.cmp(&b.id)));
        out
    }

    /// The call whose session id (`call-N`) or SIP Call-ID is `id`.
    fn call_named(&self, id: &str) -> Option<imss_sip::endpoint::CallId> {
        self.calls
            .keys()
            .find(|call| call.to_string() == id)
            .or_else(|| {
                self.calls
                    .keys()
                    .find(|call| self.endpoint.sip_call_id(call) == Some(id))
            })
            .cloned()
    }
}
