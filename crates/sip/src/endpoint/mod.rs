//! The user-agent server core (RFC 3261 §8.2, §12, §13.3, §15, §17.2, §18.2) over UDP and
//! TCP, with the client transactions of the BYEs and session refreshes it sends.
//!
//! The endpoint answers what it can on its own (100 Trying, OPTIONS, CANCEL, BYE, errors,
//! retransmissions) and reports calls as [`Event`]s; the server answers INVITEs and
//! re-INVITEs with [`Endpoint::accept`] or [`Endpoint::reject`] and ends calls with
//! [`Endpoint::hangup`]. Every call that produced [`Event::IncomingCall`] ends with exactly
//! one [`Event::Cancelled`] or [`Event::Ended`].
//!
//! TCP: the shell frames messages with [`crate::message::parse_stream_detailed`] and passes
//! each as [`Input::Stream`] (or [`Input::StreamMalformed`]) with its connection id.
//! Responses go back on the same connection ([`Transmit::conn`]). A [`Transmit`] over TCP
//! whose `conn` is `None` asks the shell to open a connection to `to` (the connection the
//! dialog used was closed, see [`Endpoint::connection_closed`]).
//!
//! OPTIONS outside a call is answered 200 with Allow, Accept, Supported and the SDP given to
//! [`Endpoint::set_options_sdp`] (usually [`crate::sdp::capabilities_sdp`]).
//!
//! The 2xx to an INVITE is retransmitted (RFC 3261 §13.3.1.4) over UDP only; over TCP the
//! endpoint relies on the transport and only waits 64·T1 for the ACK.
//!
//! Session timers (RFC 4028, [`session_timer`]): an INVITE, re-INVITE or UPDATE with a
//! Session-Expires below [`SessionTimerSettings::min_se`] from a caller that supports timers
//! gets 422 with Min-SE; otherwise the 2xx carries `Session-Expires: N;refresher=…` (and
//! `Require: timer` when the caller supports timers). When the caller refreshes and does not,
//! the endpoint sends BYE at the interval minus min(32 s, interval/3) and reports
//! [`EndReason::SessionExpired`]. When the server refreshes, it sends a body-less UPDATE at
//! half the interval if the caller's Allow lists UPDATE, else it asks the server for a
//! re-INVITE offer ([`Event::RefreshNeeded`], [`Endpoint::refresh_with_offer`]); a refresh
//! answered 408 or 481, or never answered, ends the call with BYE
//! ([`EndReason::RefreshFailed`]). UPDATE (RFC 3311) without a body is answered 200 here as a
//! refresh; with an offer it is reported like a re-INVITE.

pub mod session_timer;
pub(crate) mod timer;

pub use session_timer::{Refresher, SessionExpires, SessionTimerSettings};
pub use timer::TimerSettings;
use timer::{Timer, TimerTable, TxId};

use crate::message::{
    self, CSeq, Headers, Malformed, Message, Method, NameAddr, Request, Response, Via,
};
use crate::util;
use session_timer::{Agreed, Negotiation};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Methods the endpoint implements (the Allow header).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE";

/// Option tags the endpoint supports (the Supported header; a Require naming any other
/// gets 420).
pub const SUPPORTED: &str = "timer";

/// A transport protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: the endpoint retransmits.
    Udp,
    /// TCP: reliable; messages framed by Content-Length.
    Tcp,
}

impl Transport {
    fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }

    fn reliable(self) -> bool {
        self == Transport::Tcp
    }
}

/// Identity of the server in the messages it writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointConfig {
    /// Host written into Contact and Via (an address reachable by callers).
    pub contact_host: String,
    /// Port written into Contact and Via.
    pub contact_port: u16,
    /// Product token written into Server and User-Agent.
    pub user_agent: String,
}

/// Bounds on the endpoint's state; beyond them new requests get 503.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointLimits {
    /// Most server and client transactions at once (default 65 536).
    pub max_transactions: usize,
    /// Most calls (dialogs, including unanswered INVITEs) at once (default 16 384).
    pub max_dialogs: usize,
    /// Seconds announced in Retry-After with a 503 (default 5).
    pub retry_after_secs: u32,
}

impl Default for EndpointLimits {
    fn default() -> Self {
        EndpointLimits {
            max_transactions: 65_536,
            max_dialogs: 16_384,
            retry_after_secs: 5,
        }
    }
}

/// A call handle (not the SIP Call-ID, which [`Endpoint::sip_call_id`] gives).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(u64);

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "call-{}", self.0)
    }
}

/// Something received, for [`Endpoint::handle_input`].
#[derive(Debug)]
pub enum Input<'a> {
    /// A UDP datagram.
    Datagram {
        /// Source address.
        from: SocketAddr,
        /// The datagram.
        bytes: &'a [u8],
    },
    /// A message framed on a TCP connection.
    Stream {
        /// The shell's connection id.
        conn: u64,
        /// The connection's peer address.
        from: SocketAddr,
        /// The message.
        message: Message,
    },
    /// A message on a TCP connection that failed to parse; answered with 400 when it can
    /// be. The shell closes the connection when `malformed.consumed` is `None`.
    StreamMalformed {
        /// The shell's connection id.
        conn: u64,
        /// The connection's peer address.
        from: SocketAddr,
        /// The failure.
        malformed: Malformed,
    },
}

/// Bytes to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Transport to use.
    pub transport: Transport,
    /// TCP: the connection to write on; `None` = open a connection to `to`.
    pub conn: Option<u64>,
    /// Destination address.
    pub to: SocketAddr,
    /// The message.
    pub bytes: Vec<u8>,
}

/// Why a call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The caller sent BYE (answered 200).
    RemoteBye,
    /// The server's BYE completed: its final status, or `None` when it timed out (Timer F).
    LocalBye {
        /// Final response to the BYE, if any.
        status: Option<u16>,
    },
    /// No ACK for the 2xx within 64·T1 (Timer H); a BYE was sent.
    AckTimeout,
    /// The INVITE was answered with this final status by [`Endpoint::reject`] or by
    /// [`Endpoint::hangup`] before it was accepted.
    Rejected {
        /// The status sent.
        status: u16,
    },
    /// The caller was to refresh the session (RFC 4028) and did not in time; a BYE was
    /// sent.
    SessionExpired,
    /// The server's session refresh failed: its final status (408, 481), or `None` when it
    /// went unanswered; a BYE was sent.
    RefreshFailed {
        /// Final response to the refresh, if any.
        status: Option<u16>,
    },
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EndReason::RemoteBye => f.write_str("caller hung up"),
            EndReason::LocalBye { status: Some(s) } => write!(f, "server hung up (BYE {s})"),
            EndReason::LocalBye { status: None } => f.write_str("server hung up (BYE unanswered)"),
            EndReason::AckTimeout => f.write_str("no ACK for 200 OK"),
            EndReason::Rejected { status } => write!(f, "rejected with {status}"),
            EndReason::SessionExpired => f.write_str("session timer expired without a refresh"),
            EndReason::RefreshFailed { status: Some(s) } => {
                write!(f, "session refresh failed ({s})")
            }
            EndReason::RefreshFailed { status: None } => f.write_str("session refresh unanswered"),
        }
    }
}

/// What happened, for the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new INVITE: answer with [`Endpoint::accept`] or [`Endpoint::reject`].
    IncomingCall {
        /// The call.
        call: CallId,
        /// The Request-URI (RFC 4240 parameters live here).
        request_uri: String,
        /// The SDP offer, if the INVITE had a body.
        offer: Option<String>,
        /// The From header as written.
        from: String,
        /// Where the INVITE came from.
        remote: SocketAddr,
        /// How it came.
        transport: Transport,
    },
    /// A re-INVITE, or an UPDATE with an offer (RFC 3311), in the call: answer with
    /// accept()/reject().
    ReInvite {
        /// The call.
        call: CallId,
        /// The new offer, if any.
        offer: Option<String>,
    },
    /// The ACK for the 200 OK arrived.
    Established {
        /// The call.
        call: CallId,
    },
    /// The caller cancelled before the answer; 487 was already sent.
    Cancelled {
        /// The call.
        call: CallId,
    },
    /// The call is over.
    Ended {
        /// The call.
        call: CallId,
        /// Why.
        reason: EndReason,
    },
    /// An OPTIONS request was answered (informational).
    Options {
        /// Its source.
        from: SocketAddr,
    },
    /// The session was refreshed (RFC 4028): by the caller (a body-less UPDATE, answered
    /// here) or by the server's own refresh (informational).
    Refreshed {
        /// The call.
        call: CallId,
    },
    /// The server is to refresh the session and the caller does not allow UPDATE: call
    /// [`Endpoint::refresh_with_offer`] with the session's current description, its o=
    /// version incremented. Without it the session expires.
    RefreshNeeded {
        /// The call.
        call: CallId,
    },
}

/// Counters for monitoring.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointStats {
    /// Requests received (including retransmissions).
    pub requests: u64,
    /// Request retransmissions absorbed by a transaction.
    pub retransmissions_absorbed: u64,
    /// Messages dropped because they could not be parsed or answered.
    pub dropped_malformed: u64,
    /// Responses dropped because they matched no transaction.
    pub dropped_responses: u64,
    /// Malformed requests answered with 400/413/505.
    pub rejected_malformed: u64,
    /// Requests refused with 503 because a limit was reached.
    pub refused_overload: u64,
}

/// Where a message goes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dest {
    transport: Transport,
    conn: Option<u64>,
    addr: SocketAddr,
}

/// Where a request came from.
#[derive(Clone, Copy, Debug)]
struct Source {
    transport: Transport,
    conn: Option<u64>,
    from: SocketAddr,
}

/// RFC 3261 §17.2.3 transaction identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum TxKey {
    /// Magic-cookie branch: branch, sent-by and method (ACK counts as INVITE).
    Branch {
        branch: String,
        sent_by: String,
        method: String,
    },
    /// RFC 2543 peers: Call-ID, From tag, CSeq number, top Via and method.
    Legacy {
        call_id: String,
        from_tag: String,
        cseq: u32,
        via: String,
        method: String,
    },
}

impl TxKey {
    fn of(req: &Request, via: &Via, via_raw: &str) -> TxKey {
        let method = match &req.method {
            Method::Ack => "INVITE".to_string(),
            m => m.as_str().to_string(),
        };
        if via.is_rfc3261() {
            TxKey::Branch {
                branch: via.branch().unwrap_or_default().to_string(),
                sent_by: via.sent_by().to_ascii_lowercase(),
                method,
            }
        } else {
            TxKey::Legacy {
                call_id: req.call_id().unwrap_or_default().to_string(),
                from_tag: req
                    .from()
                    .and_then(|f| f.tag().map(String::from))
                    .unwrap_or_default(),
                cseq: req.cseq().map_or(0, |c| c.seq),
                via: via_raw.trim().to_string(),
                method,
            }
        }
    }

    fn with_method(&self, m: &str) -> TxKey {
        let mut k = self.clone();
        match &mut k {
            TxKey::Branch { method, .. } | TxKey::Legacy { method, .. } => *method = m.into(),
        }
        k
    }
}

/// RFC 3261 §8.2.2.2 merged-request identity (requests without To tag).
type MergeKey = (String, String, u32, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ServerState {
    /// No final response yet.
    Proceeding,
    /// Final response sent (non-2xx for INVITE); absorbing retransmissions.
    Completed,
    /// 2xx to INVITE sent; retransmitting it until the ACK.
    Accepted,
    /// ACK received; absorbing its retransmissions.
    Confirmed,
}

struct ServerTx {
    key: TxKey,
    merge: Option<MergeKey>,
    invite: bool,
    state: ServerState,
    dest: Dest,
    /// The response header fields copied from the request (Via with received/rport, From,
    /// To, Call-ID, CSeq).
    base: Headers,
    to_has_tag: bool,
    /// The last response sent, for retransmissions.
    last: Option<Vec<u8>>,
    interval: Duration,
    call: Option<CallId>,
    cseq: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientState {
    Trying,
    Proceeding,
    Completed,
}

/// What a client transaction of the endpoint carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ClientKind {
    /// The server hangs up.
    Bye,
    /// A body-less session refresh (RFC 4028 §7.4, RFC 3311).
    Update,
    /// A session refresh by re-INVITE with the current offer.
    Invite,
}

impl ClientKind {
    fn method(self) -> Method {
        match self {
            ClientKind::Bye => Method::Bye,
            ClientKind::Update => Method::Update,
            ClientKind::Invite => Method::Invite,
        }
    }
}

struct ClientTx {
    kind: ClientKind,
    branch: String,
    call: CallId,
    cseq: u32,
    dest: Dest,
    /// The request (its bytes are re-sent; an INVITE's ACK is built from it).
    request: Request,
    bytes: Vec<u8>,
    state: ClientState,
    interval: Duration,
    /// INVITE: the ACK sent for its final response, re-sent when that is retransmitted.
    ack: Option<(Dest, Vec<u8>)>,
}

/// The RFC 4028 session timer of a call once a 2xx settled it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SessionTimer {
    /// Session interval, seconds.
    interval: u32,
    /// The server sends the refreshes (else it waits for the caller's).
    we_refresh: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DialogState {
    /// INVITE received, waiting for accept/reject.
    Offered,
    /// 2xx sent, waiting for ACK.
    Accepted,
    /// ACK received.
    Confirmed,
    /// Our BYE is outstanding.
    Terminating,
}

struct Dialog {
    call_id: String,
    local_tag: String,
    remote_tag: String,
    /// To of the INVITE (our identity), without tag.
    local: NameAddr,
    /// From of the INVITE (the caller), with its tag.
    remote: NameAddr,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    remote_cseq: u32,
    transport: Transport,
    conn: Option<u64>,
    source: SocketAddr,
    state: DialogState,
    /// INVITE (initial or re-INVITE) waiting for accept/reject.
    pending_invite: Option<TxId>,
    /// 2xx sent on this transaction, ACK not yet received.
    awaiting_ack: Option<TxId>,
    /// Record-Route of the initial INVITE, copied into its 2xx.
    record_route: Vec<String>,
    /// hangup() was called while the 2xx was unacknowledged.
    hangup_after_ack: bool,
    /// The session timer the pending INVITE or UPDATE settled on, applied with its 2xx.
    pending_timer: Option<Agreed>,
    /// The session timer in force.
    session: Option<SessionTimer>,
    /// The caller's Allow lists UPDATE (so refreshes need no offer).
    peer_allows_update: bool,
    /// The server's session refresh in flight.
    refresh: Option<TxId>,
}

/// The SIP user-agent server. See the module documentation.
pub struct Endpoint {
    cfg: EndpointConfig,
    limits: EndpointLimits,
    timers_cfg: TimerSettings,
    session_timers: SessionTimerSettings,
    options_sdp: Option<String>,
    next_id: u64,
    server_txs: HashMap<TxId, ServerTx>,
    server_keys: HashMap<TxKey, TxId>,
    merge_index: HashMap<MergeKey, TxId>,
    client_txs: HashMap<TxId, ClientTx>,
    client_branches: HashMap<String, TxId>,
    dialogs: HashMap<CallId, Dialog>,
    dialog_index: HashMap<(String, String), CallId>,
    timers: TimerTable,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
    stats: EndpointStats,
}

/// Response extras: header fields, and an optional (content type, body).
struct Extras {
    headers: Vec<(&'static str, String)>,
    body: Option<(&'static str, Vec<u8>)>,
}

impl Extras {
    fn none() -> Extras {
        Extras {
            headers: Vec::new(),
            body: None,
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Extras {
        self.headers.push((name, value.into()));
        self
    }
}

impl Endpoint {
    /// A new endpoint with default limits and timers.
    pub fn new(cfg: EndpointConfig) -> Self {
        Endpoint {
            cfg,
            limits: EndpointLimits::default(),
            timers_cfg: TimerSettings::default(),
            session_timers: SessionTimerSettings::default(),
            options_sdp: None,
            next_id: 1,
            server_txs: HashMap::new(),
            server_keys: HashMap::new(),
            merge_index: HashMap::new(),
            client_txs: HashMap::new(),
            client_branches: HashMap::new(),
            dialogs: HashMap::new(),
            dialog_index: HashMap::new(),
            timers: TimerTable::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: EndpointStats::default(),
        }
    }

    /// Replaces the state limits.
    pub fn set_limits(&mut self, limits: EndpointLimits) {
        self.limits = limits;
    }

    /// Replaces T1/T2/T4 (for networks with unusual round-trip times, and tests).
    pub fn set_timer_settings(&mut self, t: TimerSettings) {
        self.timers_cfg = t;
    }

    /// Replaces the RFC 4028 session timer policy (default 1800 s, Min-SE 90 s).
    pub fn set_session_timers(&mut self, s: SessionTimerSettings) {
        self.session_timers = s;
    }

    /// The session interval in force for `call` (seconds) and whether the server is the
    /// refresher; `None` without a session timer.
    pub fn session_timer(&self, call: &CallId) -> Option<(u32, bool)> {
        self.dialogs
            .get(call)
            .and_then(|d| d.session)
            .map(|s| (s.interval, s.we_refresh))
    }

    /// The SDP returned in 200 OK to OPTIONS (see [`crate::sdp::capabilities_sdp`]).
    pub fn set_options_sdp(&mut self, sdp: String) {
        self.options_sdp = Some(sdp);
    }

    /// Counters.
    pub fn stats(&self) -> EndpointStats {
        self.stats
    }

    /// Calls in progress (unanswered, answered or ending).
    pub fn call_count(&self) -> usize {
        self.dialogs.len()
    }

    /// Server and client transactions in progress.
    pub fn transaction_count(&self) -> usize {
        self.server_txs.len() + self.client_txs.len()
    }

    /// The SIP Call-ID of a call, for logs.
    pub fn sip_call_id(&self, call: &CallId) -> Option<&str> {
        self.dialogs.get(call).map(|d| d.call_id.as_str())
    }

    // ---- inputs -------------------------------------------------------------------------

    /// Feeds one received message.
    pub fn handle_input(&mut self, now: Instant, input: Input<'_>) {
        match input {
            Input::Datagram { from, bytes } => {
                let src = Source {
                    transport: Transport::Udp,
                    conn: None,
                    from,
                };
                match message::parse_datagram_detailed(bytes) {
                    Ok(msg) => self.handle_message(now, msg, src),
                    Err(m) => self.handle_malformed(m, src),
                }
            }
            Input::Stream {
                conn,
                from,
                message,
            } => {
                let src = Source {
                    transport: Transport::Tcp,
                    conn: Some(conn),
                    from,
                };
                self.handle_message(now, message, src);
            }
            Input::StreamMalformed {
                conn,
                from,
                malformed,
            } => {
                let src = Source {
                    transport: Transport::Tcp,
                    conn: Some(conn),
                    from,
                };
                self.handle_malformed(malformed, src);
            }
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_expired(now) {
            self.on_timer(now, t);
        }
    }

    /// A TCP connection closed: later messages for its dialogs ask for a new connection.
    pub fn connection_closed(&mut self, conn: u64) {
        for d in self.dialogs.values_mut() {
            if d.conn == Some(conn) {
                d.conn = None;
            }
        }
        for tx in self.server_txs.values_mut() {
            if tx.dest.conn == Some(conn) {
                tx.dest.conn = None;
            }
        }
        for tx in self.client_txs.values_mut() {
            if tx.dest.conn == Some(conn) {
                tx.dest.conn = None;
            }
        }
    }

    // ---- outputs ------------------------------------------------------------------------

    /// The next message to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next event for the server.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Endpoint::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    // ---- commands -----------------------------------------------------------------------

    /// Answers the pending INVITE or re-INVITE of `call` with 200 OK and this SDP.
    pub fn accept(&mut self, now: Instant, call: CallId, sdp_answer: String) {
        let Some(d) = self.dialogs.get_mut(&call) else {
            tracing::debug!(call_id = %call, "accept for an unknown call ignored");
            return;
        };
        let Some(tx_id) = d.pending_invite.take() else {
            tracing::debug!(call_id = %call, "accept without a pending INVITE ignored");
            return;
        };
        let timer = d.pending_timer.take();
        // An UPDATE with an offer is answered like a re-INVITE, but expects no ACK.
        let invite = self.server_txs.get(&tx_id).is_some_and(|tx| tx.invite);
        let initial = d.state == DialogState::Offered;
        if initial {
            d.state = DialogState::Accepted;
        }
        if invite {
            d.awaiting_ack = Some(tx_id);
        }
        let tag = d.local_tag.clone();
        let record_route = if initial {
            d.record_route.clone()
        } else {
            Vec::new()
        };
        let transport = d.transport;
        let mut extras = Extras::none().header("Contact", self.contact(transport));
        for rr in record_route {
            extras.headers.push(("Record-Route", rr));
        }
        let mut extras = extras.header("Allow", ALLOW).header("Supported", SUPPORTED);
        if let Some(t) = &timer {
            extras.headers.extend(t.response_headers());
        }
        if !sdp_answer.is_empty() {
            extras.body = Some(("application/sdp", sdp_answer.into_bytes()));
        }
        self.respond(now, tx_id, 200, "OK", Some(&tag), extras);
        self.start_session_timer(
            now,
            &call,
            timer.map(|a| SessionTimer {
                interval: a.interval,
                we_refresh: a.refresher == Refresher::Uas,
            }),
        );
        if !invite {
            self.events.push_back(Event::Refreshed { call });
        }
    }

    /// Sends the re-INVITE of a server-side session refresh (after
    /// [`Event::RefreshNeeded`]) with `sdp_offer`, the session's description with its o=
    /// version incremented.
    pub fn refresh_with_offer(&mut self, now: Instant, call: CallId, sdp_offer: String) {
        self.send_refresh(now, &call, Some(sdp_offer));
    }

    /// Answers the pending INVITE or re-INVITE of `call` with a final error status.
    /// `warning` is a Warning header value (`304 host "text"`) or plain text, which is
    /// wrapped as `399 <contact_host> "text"`.
    pub fn reject(
        &mut self,
        now: Instant,
        call: CallId,
        status: u16,
        reason: &str,
        warning: Option<&str>,
    ) {
        let Some(d) = self.dialogs.get_mut(&call) else {
            tracing::debug!(call_id = %call, "reject for an unknown call ignored");
            return;
        };
        let Some(tx_id) = d.pending_invite.take() else {
            tracing::debug!(call_id = %call, "reject without a pending INVITE ignored");
            return;
        };
        let status = if (300..=699).contains(&status) {
            status
        } else {
            500
        };
        // A refused refresh leaves the session timer as it was.
        d.pending_timer = None;
        let initial = d.state == DialogState::Offered;
        let tag = d.local_tag.clone();
        let mut extras = Extras::none();
        if let Some(w) = warning {
            extras = extras.header("Warning", self.warning_value(w));
        }
        if status == 405 {
            extras = extras.header("Allow", ALLOW);
        }
        let reason = if reason.trim().is_empty() {
            message::reason_phrase(status)
        } else {
            reason
        };
        let reason = sanitize_reason(reason);
        self.respond(now, tx_id, status, &reason, Some(&tag), extras);
        if initial {
            self.remove_dialog(now, &call);
            self.events.push_back(Event::Ended {
                call,
                reason: EndReason::Rejected { status },
            });
        }
    }

    /// Ends `call` from the server side: BYE once established (after the ACK, RFC 3261
    /// §15), 480 if the INVITE was not yet answered. [`Event::Ended`] follows when done.
    pub fn hangup(&mut self, now: Instant, call: CallId) {
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        match d.state {
            DialogState::Offered => {
                self.reject(now, call, 480, "Temporarily Unavailable", None);
            }
            DialogState::Accepted => d.hangup_after_ack = true,
            DialogState::Confirmed => self.send_bye(now, &call),
            DialogState::Terminating => {}
        }
    }

    // ---- receiving ----------------------------------------------------------------------

    fn handle_malformed(&mut self, m: Malformed, src: Source) {
        let Some(req) = m.answerable else {
            tracing::debug!(peer = %src.from, error = %m.error, "unparsable SIP message dropped");
            self.stats.dropped_malformed += 1;
            return;
        };
        tracing::debug!(peer = %src.from, error = %m.error, "malformed SIP request answered");
        self.stats.rejected_malformed += 1;
        let status = m.error.status_code();
        let extras = if status == 505 {
            Extras::none()
        } else {
            Extras::none().header("Warning", self.warning_value(&m.error.to_string()))
        };
        self.respond_stateless(&req, src, status, &m.error.to_string(), extras);
    }

    fn handle_message(&mut self, now: Instant, msg: Message, src: Source) {
        match msg {
            Message::Request(req) => self.handle_request(now, req, src),
            Message::Response(resp) => self.handle_response(now, resp),
        }
    }

    fn handle_request(&mut self, now: Instant, req: Request, src: Source) {
        self.stats.requests += 1;
        let vias = req.headers.list("Via");
        let Some((via, via_raw)) = vias
            .first()
            .and_then(|raw| Via::parse(raw).ok().map(|v| (v, raw.to_string())))
        else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let key = TxKey::of(&req, &via, &via_raw);
        if req.method == Method::Ack {
            self.handle_ack(now, &req, &key);
            return;
        }
        if let Some(&id) = self.server_keys.get(&key) {
            self.stats.retransmissions_absorbed += 1;
            if let Some(tx) = self.server_txs.get(&id)
                && let Some(bytes) = tx.last.clone()
            {
                let dest = tx.dest.clone();
                self.send(dest, bytes);
            }
            return;
        }
        if self.server_txs.len() + self.client_txs.len() >= self.limits.max_transactions {
            self.stats.refused_overload += 1;
            let extras =
                Extras::none().header("Retry-After", self.limits.retry_after_secs.to_string());
            self.respond_stateless(&req, src, 503, "Service Unavailable", extras);
            return;
        }
        let tx_id = self.new_server_tx(&req, &via, key.clone(), src);
        if req.method == Method::Cancel {
            self.handle_cancel(now, tx_id, &key);
            return;
        }
        let max_forwards = req
            .headers
            .get("Max-Forwards")
            .and_then(|v| v.trim().parse::<u32>().ok());
        if max_forwards == Some(0) {
            self.respond(now, tx_id, 483, "Too Many Hops", None, Extras::none());
            return;
        }
        if !matches!(
            req.method,
            Method::Invite | Method::Bye | Method::Options | Method::Update
        ) {
            let extras = Extras::none().header("Allow", ALLOW);
            self.respond(now, tx_id, 405, "Method Not Allowed", None, extras);
            return;
        }
        let to = req.to();
        let to_tag = to.as_ref().and_then(|t| t.tag()).map(String::from);
        if to_tag.is_none()
            && let Some(mk) = merge_key(&req)
        {
            if self.merge_index.contains_key(&mk) {
                self.respond(now, tx_id, 482, "Loop Detected", None, Extras::none());
                return;
            }
            self.merge_index.insert(mk.clone(), tx_id);
            if let Some(tx) = self.server_txs.get_mut(&tx_id) {
                tx.merge = Some(mk);
            }
        }
        let unsupported: Vec<&str> = req
            .headers
            .list("Require")
            .into_iter()
            .filter(|t| !SUPPORTED.split(", ").any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if !unsupported.is_empty() {
            let extras = Extras::none().header("Unsupported", unsupported.join(", "));
            self.respond(now, tx_id, 420, "Bad Extension", None, extras);
            return;
        }
        match to_tag {
            Some(tag) => self.handle_in_dialog(now, tx_id, &req, &tag, src),
            None => match req.method {
                Method::Invite => self.handle_new_invite(now, tx_id, req, src),
                Method::Options => self.answer_options(now, tx_id, src),
                _ => self.respond(
                    now,
                    tx_id,
                    481,
                    "Call/Transaction Does Not Exist",
                    None,
                    Extras::none(),
                ),
            },
        }
    }

    fn new_server_tx(&mut self, req: &Request, via: &Via, key: TxKey, src: Source) -> TxId {
        let (base, dest) = self.response_base(req, via, src);
        let id = self.next_id();
        let to_has_tag = req.to().is_some_and(|t| t.tag().is_some());
        self.server_txs.insert(
            id,
            ServerTx {
                key: key.clone(),
                merge: None,
                invite: req.method == Method::Invite,
                state: ServerState::Proceeding,
                dest,
                base,
                to_has_tag,
                last: None,
                interval: self.timers_cfg.t1,
                call: None,
                cseq: req.cseq().map_or(0, |c| c.seq),
            },
        );
        self.server_keys.insert(key, id);
        id
    }

    fn answer_options(&mut self, now: Instant, tx_id: TxId, src: Source) {
        let tag = util::random_token(12);
        let mut extras = Extras::none()
            .header("Contact", self.contact(src.transport))
            .header("Allow", ALLOW)
            .header("Accept", "application/sdp")
            .header("Supported", SUPPORTED);
        if let Some(sdp) = &self.options_sdp {
            extras.body = Some(("application/sdp", sdp.clone().into_bytes()));
        }
        self.respond(now, tx_id, 200, "OK", Some(&tag), extras);
        self.events.push_back(Event::Options { from: src.from });
    }

    /// Checks the body of an INVITE (RFC 3261 §8.2.3): SDP or nothing.
    fn check_invite_body(&mut self, now: Instant, tx_id: TxId, req: &Request) -> bool {
        let encoding_ok = req
            .headers
            .get("Content-Encoding")
            .is_none_or(|e| e.trim().eq_ignore_ascii_case("identity"));
        let type_ok = req.body.is_empty()
            || req.headers.get("Content-Type").is_some_and(|t| {
                t.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/sdp"))
            });
        if encoding_ok && type_ok {
            return true;
        }
        let extras = Extras::none()
            .header("Accept", "application/sdp")
            .header("Accept-Encoding", "identity");
        self.respond(now, tx_id, 415, "Unsupported Media Type", None, extras);
        false
    }

    fn handle_new_invite(&mut self, now: Instant, tx_id: TxId, req: Request, src: Source) {
        if self.dialogs.len() >= self.limits.max_dialogs {
            self.stats.refused_overload += 1;
            let extras =
                Extras::none().header("Retry-After", self.limits.retry_after_secs.to_string());
            self.respond(now, tx_id, 503, "Service Unavailable", None, extras);
            return;
        }
        let contact = req
            .headers
            .list("Contact")
            .first()
            .map(|c| NameAddr::parse(c));
        let remote_target = match contact {
            Some(Ok(c)) => c.uri,
            Some(Err(_)) => {
                self.respond(now, tx_id, 400, "Malformed Contact", None, Extras::none());
                return;
            }
            None => {
                self.respond(now, tx_id, 400, "Missing Contact", None, Extras::none());
                return;
            }
        };
        if !self.check_invite_body(now, tx_id, &req) {
            return;
        }
        let (Some(from), Some(to), Some(call_id), Some(cseq)) =
            (req.from(), req.to(), req.call_id(), req.cseq())
        else {
            self.respond(now, tx_id, 400, "Bad Request", None, Extras::none());
            return;
        };
        let Some(remote_tag) = from.tag().map(String::from) else {
            self.respond(now, tx_id, 400, "Missing From tag", None, Extras::none());
            return;
        };
        let Some(pending_timer) = self.negotiate_timer(now, tx_id, &req) else {
            return;
        };
        let mut trying = Extras::none();
        if let Some(ts) = req.headers.get("Timestamp") {
            trying = trying.header("Timestamp", ts);
        }
        self.respond(now, tx_id, 100, "Trying", None, trying);

        let call = CallId(self.next_id());
        let local_tag = util::random_token(16);
        let mut local = to;
        local.params.remove("tag");
        let record_route: Vec<String> = req
            .headers
            .list("Record-Route")
            .into_iter()
            .map(String::from)
            .collect();
        let dialog = Dialog {
            call_id: call_id.to_string(),
            local_tag: local_tag.clone(),
            remote_tag: remote_tag.clone(),
            local,
            remote: from,
            remote_target,
            // RFC 3261 §12.1.1: the UAS's route set is the Record-Route list in order.
            route_set: record_route.clone(),
            local_cseq: util::initial_cseq(),
            remote_cseq: cseq.seq,
            transport: src.transport,
            conn: src.conn,
            source: src.from,
            state: DialogState::Offered,
            pending_invite: Some(tx_id),
            awaiting_ack: None,
            record_route,
            hangup_after_ack: false,
            pending_timer,
            session: None,
            peer_allows_update: allows_update(&req),
            refresh: None,
        };
        self.dialog_index
            .insert((call_id.to_string(), local_tag), call.clone());
        self.dialogs.insert(call.clone(), dialog);
        if let Some(tx) = self.server_txs.get_mut(&tx_id) {
            tx.call = Some(call.clone());
        }
        tracing::debug!(call_id = %call_id, call = %call, peer = %src.from, "INVITE received");
        self.events.push_back(Event::IncomingCall {
            call,
            request_uri: req.uri.clone(),
            offer: body_text(&req.body),
            from: req.headers.get("From").unwrap_or_default().to_string(),
            remote: src.from,
            transport: src.transport,
        });
    }

    fn find_dialog(&self, req: &Request, to_tag: &str) -> Option<CallId> {
        let call_id = req.call_id()?;
        let call = self
            .dialog_index
            .get(&(call_id.to_string(), to_tag.to_string()))?;
        let d = self.dialogs.get(call)?;
        let from_tag = req.from()?.tag().map(String::from)?;
        (from_tag == d.remote_tag).then(|| call.clone())
    }

    fn handle_in_dialog(
        &mut self,
        now: Instant,
        tx_id: TxId,
        req: &Request,
        to_tag: &str,
        src: Source,
    ) {
        let Some(call) = self.find_dialog(req, to_tag) else {
            self.respond(
                now,
                tx_id,
                481,
                "Call/Transaction Does Not Exist",
                None,
                Extras::none(),
            );
            return;
        };
        let seq = req.cseq().map_or(0, |c| c.seq);
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        // RFC 3261 §12.2.2: lower (or repeated, with a new branch) CSeq is out of order.
        if seq <= d.remote_cseq {
            self.respond(now, tx_id, 500, "CSeq Out of Order", None, Extras::none());
            return;
        }
        d.remote_cseq = seq;
        if let Some(tx) = self.server_txs.get_mut(&tx_id) {
            tx.call = Some(call.clone());
        }
        match req.method {
            Method::Bye => self.handle_bye(now, tx_id, call),
            Method::Options => self.answer_options(now, tx_id, src),
            Method::Invite => self.handle_reinvite(now, tx_id, req, call),
            Method::Update => self.handle_update(now, tx_id, req, call),
            _ => {
                let extras = Extras::none().header("Allow", ALLOW);
                self.respond(now, tx_id, 405, "Method Not Allowed", None, extras);
            }
        }
    }

    fn handle_bye(&mut self, now: Instant, tx_id: TxId, call: CallId) {
        let Some(d) = self.dialogs.get(&call) else {
            return;
        };
        let tag = d.local_tag.clone();
        let awaiting = d.awaiting_ack;
        self.respond(now, tx_id, 200, "OK", Some(&tag), Extras::none());
        if let Some(a) = awaiting {
            self.timers.stop(Timer::G(a));
        }
        self.remove_dialog(now, &call);
        tracing::debug!(call = %call, "BYE received");
        self.events.push_back(Event::Ended {
            call,
            reason: EndReason::RemoteBye,
        });
    }

    fn handle_reinvite(&mut self, now: Instant, tx_id: TxId, req: &Request, call: CallId) {
        let Some((_, pending_timer)) = self.admit_in_dialog_offer(now, tx_id, req, &call, true)
        else {
            return;
        };
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        d.pending_invite = Some(tx_id);
        d.pending_timer = pending_timer;
        self.respond(now, tx_id, 100, "Trying", None, Extras::none());
        self.events.push_back(Event::ReInvite {
            call,
            offer: body_text(&req.body),
        });
    }

    /// RFC 3311 UPDATE in a dialog: without a body a session refresh answered here; with an
    /// offer reported as [`Event::ReInvite`].
    fn handle_update(&mut self, now: Instant, tx_id: TxId, req: &Request, call: CallId) {
        let offer = body_text(&req.body);
        let Some((tag, timer)) =
            self.admit_in_dialog_offer(now, tx_id, req, &call, offer.is_some())
        else {
            return;
        };
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        let transport = d.transport;
        if let Some(offer) = offer {
            d.pending_invite = Some(tx_id);
            d.pending_timer = timer;
            self.events.push_back(Event::ReInvite {
                call,
                offer: Some(offer),
            });
            return;
        }
        let mut extras = Extras::none()
            .header("Contact", self.contact(transport))
            .header("Allow", ALLOW)
            .header("Supported", SUPPORTED);
        if let Some(t) = &timer {
            extras.headers.extend(t.response_headers());
        }
        self.respond(now, tx_id, 200, "OK", Some(&tag), extras);
        tracing::debug!(call = %call, "session refreshed by UPDATE");
        self.start_session_timer(
            now,
            &call,
            timer.map(|a| SessionTimer {
                interval: a.interval,
                we_refresh: a.refresher == Refresher::Uas,
            }),
        );
        self.events.push_back(Event::Refreshed { call });
    }

    /// The checks a re-INVITE or UPDATE passes before it is reported or answered: 481 in a
    /// dialog being torn down, 491 while another offer is outstanding (when `offers`: RFC
    /// 3261 §14.2, RFC 3311 §5.2), the body, the session timer (RFC 4028 §9). On success the
    /// request refreshes the dialog's target and what the peer allows, and this returns the
    /// dialog's local tag and the agreed timer; `None` when the request was answered here.
    fn admit_in_dialog_offer(
        &mut self,
        now: Instant,
        tx_id: TxId,
        req: &Request,
        call: &CallId,
        offers: bool,
    ) -> Option<(String, Option<Agreed>)> {
        let d = self.dialogs.get(call)?;
        let tag = d.local_tag.clone();
        if d.state == DialogState::Terminating {
            self.respond(
                now,
                tx_id,
                481,
                "Call/Transaction Does Not Exist",
                Some(&tag),
                Extras::none(),
            );
            return None;
        }
        if offers
            && (d.pending_invite.is_some()
                || d.awaiting_ack.is_some()
                || self.refresh_invite_out(d))
        {
            // Retry-After per RFC 3261 §14.1 for the glare.
            let extras = Extras::none().header("Retry-After", "1");
            self.respond(now, tx_id, 491, "Request Pending", Some(&tag), extras);
            return None;
        }
        if !self.check_invite_body(now, tx_id, req) {
            return None;
        }
        let timer = self.negotiate_timer(now, tx_id, req)?;
        let target = req
            .headers
            .list("Contact")
            .first()
            .and_then(|c| NameAddr::parse(c).ok());
        let d = self.dialogs.get_mut(call)?;
        // Both are target refresh requests (RFC 3261 §12.2.2, RFC 3311 §5.2).
        if let Some(t) = target {
            d.remote_target = t.uri;
        }
        if req.headers.contains("Allow") {
            d.peer_allows_update = allows_update(req);
        }
        Some((tag, timer))
    }

    /// RFC 4028 §9 for a request about to be reported or answered: `None` when it was
    /// answered here (422 with Min-SE, or 400 for a malformed header field).
    fn negotiate_timer(
        &mut self,
        now: Instant,
        tx_id: TxId,
        req: &Request,
    ) -> Option<Option<Agreed>> {
        match session_timer::negotiate(&req.headers, &self.session_timers) {
            Ok(Negotiation::Off) => Some(None),
            Ok(Negotiation::On(a)) => Some(Some(a)),
            Ok(Negotiation::TooSmall { min_se }) => {
                let extras = Extras::none()
                    .header("Min-SE", min_se.to_string())
                    .header("Supported", SUPPORTED);
                self.respond(now, tx_id, 422, "Session Interval Too Small", None, extras);
                None
            }
            Err(e) => {
                let reason = format!("Bad Request ({e})");
                self.respond(now, tx_id, 400, &reason, None, Extras::none());
                None
            }
        }
    }

    /// True while the server's own re-INVITE refresh of this dialog is in flight.
    fn refresh_invite_out(&self, d: &Dialog) -> bool {
        d.refresh
            .and_then(|id| self.client_txs.get(&id))
            .is_some_and(|tx| tx.kind == ClientKind::Invite && tx.state != ClientState::Completed)
    }

    fn handle_cancel(&mut self, now: Instant, cancel_tx: TxId, key: &TxKey) {
        let invite_tx = self.server_keys.get(&key.with_method("INVITE")).copied();
        let Some(invite_tx) = invite_tx else {
            self.respond(
                now,
                cancel_tx,
                481,
                "Call/Transaction Does Not Exist",
                None,
                Extras::none(),
            );
            return;
        };
        let (state, call) = match self.server_txs.get(&invite_tx) {
            Some(tx) => (tx.state, tx.call.clone()),
            None => (ServerState::Completed, None),
        };
        let tag = call
            .as_ref()
            .and_then(|c| self.dialogs.get(c))
            .map(|d| d.local_tag.clone())
            .unwrap_or_else(|| util::random_token(16));
        self.respond(now, cancel_tx, 200, "OK", Some(&tag), Extras::none());
        if state != ServerState::Proceeding {
            return;
        }
        self.respond(
            now,
            invite_tx,
            487,
            "Request Terminated",
            Some(&tag),
            Extras::none(),
        );
        let Some(call) = call else {
            return;
        };
        let initial = match self.dialogs.get_mut(&call) {
            Some(d) => {
                if d.pending_invite == Some(invite_tx) {
                    d.pending_invite = None;
                }
                d.state == DialogState::Offered
            }
            None => false,
        };
        if initial {
            self.remove_dialog(now, &call);
            tracing::debug!(call = %call, "INVITE cancelled");
            self.events.push_back(Event::Cancelled { call });
        }
    }

    fn handle_ack(&mut self, now: Instant, req: &Request, key: &TxKey) {
        if let Some(&id) = self.server_keys.get(key) {
            let Some(tx) = self.server_txs.get_mut(&id) else {
                return;
            };
            match tx.state {
                ServerState::Completed => {
                    tx.state = ServerState::Confirmed;
                    let wait = if tx.dest.transport.reliable() {
                        Duration::ZERO
                    } else {
                        self.timers_cfg.t4
                    };
                    self.timers.stop(Timer::G(id));
                    self.timers.stop(Timer::H(id));
                    self.timers.set(Timer::I(id), now + wait);
                    return;
                }
                ServerState::Accepted => {
                    // An ACK for the 2xx reusing the INVITE's branch (RFC 2543 style).
                    if let Some(call) = tx.call.clone() {
                        self.ack_2xx(now, id, call);
                    }
                    return;
                }
                ServerState::Proceeding | ServerState::Confirmed => return,
            }
        }
        // ACK for a 2xx: its own transaction, matched to the dialog (RFC 3261 §13.3.1.4).
        let Some(to_tag) = req.to().and_then(|t| t.tag().map(String::from)) else {
            return;
        };
        let Some(call) = self.find_dialog(req, &to_tag) else {
            return;
        };
        let seq = req.cseq().map_or(0, |c| c.seq);
        let Some(tx_id) = self.dialogs.get(&call).and_then(|d| d.awaiting_ack) else {
            return;
        };
        if self.server_txs.get(&tx_id).is_some_and(|tx| tx.cseq == seq) {
            self.ack_2xx(now, tx_id, call);
        }
    }

    fn ack_2xx(&mut self, now: Instant, tx_id: TxId, call: CallId) {
        self.timers.stop(Timer::G(tx_id));
        self.timers.stop(Timer::H(tx_id));
        if let Some(tx) = self.server_txs.get_mut(&tx_id) {
            tx.state = ServerState::Confirmed;
            // Keeps absorbing INVITE retransmissions for a while (RFC 6026 §8.7).
            let wait = if tx.dest.transport.reliable() {
                Duration::ZERO
            } else {
                self.timers_cfg.timeout()
            };
            self.timers.set(Timer::I(tx_id), now + wait);
        }
        let Some(d) = self.dialogs.get_mut(&call) else {
            return;
        };
        if d.awaiting_ack == Some(tx_id) {
            d.awaiting_ack = None;
        }
        if d.state == DialogState::Accepted {
            d.state = DialogState::Confirmed;
            self.events
                .push_back(Event::Established { call: call.clone() });
            if d.hangup_after_ack {
                self.send_bye(now, &call);
            }
        }
    }

    fn handle_response(&mut self, now: Instant, resp: Response) {
        let branch = resp
            .top_via()
            .and_then(|v| v.branch().map(String::from))
            .unwrap_or_default();
        let found = self.client_branches.get(&branch).copied().filter(|id| {
            self.client_txs.get(id).is_some_and(|tx| {
                resp.cseq()
                    .is_some_and(|c| c.method == tx.kind.method() && c.seq == tx.cseq)
            })
        });
        let Some(id) = found else {
            self.stats.dropped_responses += 1;
            return;
        };
        if self.client_txs.get(&id).map(|tx| tx.kind) == Some(ClientKind::Invite) {
            self.invite_response(now, id, &resp);
            return;
        }
        let Some(tx) = self.client_txs.get_mut(&id) else {
            return;
        };
        if tx.state == ClientState::Completed {
            return;
        }
        if resp.status < 200 {
            tx.state = ClientState::Proceeding;
            tx.interval = self.timers_cfg.t2;
            return;
        }
        tx.state = ClientState::Completed;
        let call = tx.call.clone();
        let kind = tx.kind;
        let reliable = tx.dest.transport.reliable();
        self.timers.stop(Timer::E(id));
        self.timers.stop(Timer::F(id));
        if reliable {
            self.remove_client_tx(id);
        } else {
            self.timers.set(Timer::K(id), now + self.timers_cfg.t4);
        }
        if kind == ClientKind::Update {
            self.refresh_answered(now, &call, id, ClientKind::Update, Some(&resp));
            return;
        }
        if self.dialogs.contains_key(&call) {
            self.remove_dialog(now, &call);
            self.events.push_back(Event::Ended {
                call,
                reason: EndReason::LocalBye {
                    status: Some(resp.status),
                },
            });
        }
    }

    /// A response to the server's re-INVITE refresh (RFC 3261 §17.1.1): a 1xx stops the
    /// retransmissions, every final response is acknowledged (a 2xx by an ACK of its own,
    /// RFC 3261 §13.2.2.4) and re-acknowledged when it is retransmitted.
    fn invite_response(&mut self, now: Instant, id: TxId, resp: &Response) {
        let Some(tx) = self.client_txs.get_mut(&id) else {
            return;
        };
        if resp.status < 200 {
            if tx.state == ClientState::Trying {
                tx.state = ClientState::Proceeding;
                self.timers.stop(Timer::A(id));
            }
            return;
        }
        if tx.state == ClientState::Completed {
            if let Some((dest, bytes)) = tx.ack.clone() {
                self.send(dest, bytes);
            }
            return;
        }
        tx.state = ClientState::Completed;
        let ack = ack_for(&tx.request, resp);
        let dest = tx.dest.clone();
        let bytes = ack.to_bytes();
        tx.ack = Some((dest.clone(), bytes.clone()));
        let call = tx.call.clone();
        self.timers.stop(Timer::A(id));
        self.timers.stop(Timer::B(id));
        let linger = if dest.transport.reliable() {
            Duration::ZERO
        } else {
            self.timers_cfg.timeout()
        };
        self.timers.set(Timer::D(id), now + linger);
        self.send(dest, bytes);
        self.refresh_answered(now, &call, id, ClientKind::Invite, Some(resp));
    }

    /// The outcome of the server's session refresh `id` of `call`: its final response, or
    /// `None` when it timed out (RFC 4028 §10).
    fn refresh_answered(
        &mut self,
        now: Instant,
        call: &CallId,
        id: TxId,
        kind: ClientKind,
        resp: Option<&Response>,
    ) {
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        if d.refresh != Some(id) {
            return;
        }
        d.refresh = None;
        if d.state == DialogState::Terminating {
            return;
        }
        let Some(current) = d.session else {
            return;
        };
        let status = resp.map(|r| r.status);
        match status {
            Some(200..=299) => {
                // RFC 4028 §7.2: the 2xx settles the timer; without Session-Expires the
                // peer does not support it and the server goes on refreshing.
                let settled = resp
                    .and_then(|r| r.headers.get("Session-Expires"))
                    .and_then(|v| SessionExpires::parse(v).ok())
                    .map_or(current, |se| SessionTimer {
                        interval: se.interval.max(1),
                        we_refresh: se.refresher != Some(Refresher::Uas),
                    });
                tracing::debug!(call = %call, interval = settled.interval, "session refreshed");
                self.start_session_timer(now, call, Some(settled));
                self.events
                    .push_back(Event::Refreshed { call: call.clone() });
            }
            Some(422) => {
                let min = resp
                    .and_then(|r| r.headers.get("Min-SE"))
                    .and_then(|v| session_timer::parse_min_se(v).ok())
                    .unwrap_or(0);
                if min > current.interval {
                    d.session = Some(SessionTimer {
                        interval: min,
                        ..current
                    });
                    self.refresh_now(now, call, kind);
                } else {
                    self.retry_refresh_later(now, call);
                }
            }
            Some(405 | 501) if kind == ClientKind::Update => {
                d.peer_allows_update = false;
                self.refresh_now(now, call, ClientKind::Invite);
            }
            Some(408 | 481) | None => {
                tracing::info!(call = %call, status = ?status, "session refresh failed; ending the call");
                self.end_session(now, call, EndReason::RefreshFailed { status });
            }
            Some(_) => self.retry_refresh_later(now, call),
        }
    }

    /// Sends a refresh of `kind` now (an INVITE asks the server for its offer first).
    fn refresh_now(&mut self, now: Instant, call: &CallId, kind: ClientKind) {
        match kind {
            ClientKind::Invite => self
                .events
                .push_back(Event::RefreshNeeded { call: call.clone() }),
            _ => self.send_refresh(now, call, None),
        }
    }

    /// After a refused refresh: one more try halfway to the session's end, if there is time.
    fn retry_refresh_later(&mut self, now: Instant, call: &CallId) {
        let Some(expiry) = self.timers.deadline(Timer::SessionExpiry(call.0)) else {
            return;
        };
        let left = expiry.saturating_duration_since(now);
        if left >= Duration::from_secs(2) {
            self.timers
                .set(Timer::SessionRefresh(call.0), now + left / 2);
        }
    }

    /// Puts `timer` in force for `call` from `now`, or turns the session timer off.
    fn start_session_timer(&mut self, now: Instant, call: &CallId, timer: Option<SessionTimer>) {
        self.timers.stop(Timer::SessionRefresh(call.0));
        self.timers.stop(Timer::SessionExpiry(call.0));
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        d.session = timer;
        let Some(t) = timer else {
            return;
        };
        if t.we_refresh {
            self.timers.set(
                Timer::SessionRefresh(call.0),
                now + session_timer::refresh_after(t.interval),
            );
        }
        self.timers.set(
            Timer::SessionExpiry(call.0),
            now + session_timer::bye_after(t.interval),
        );
    }

    /// Ends `call` from the endpoint itself (the session timer): BYE now, the call is
    /// reported ended at once, the BYE transaction runs on its own.
    fn end_session(&mut self, now: Instant, call: &CallId, reason: EndReason) {
        if let Some(a) = self
            .dialogs
            .get_mut(call)
            .and_then(|d| d.awaiting_ack.take())
        {
            self.timers.stop(Timer::G(a));
        }
        self.send_bye(now, call);
        self.remove_dialog(now, call);
        self.events.push_back(Event::Ended {
            call: call.clone(),
            reason,
        });
    }

    // ---- timers -------------------------------------------------------------------------

    fn on_timer(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::G(id) => {
                let Some(tx) = self.server_txs.get_mut(&id) else {
                    return;
                };
                if !matches!(tx.state, ServerState::Completed | ServerState::Accepted) {
                    return;
                }
                tx.interval = self.timers_cfg.backoff(tx.interval);
                let next = now + tx.interval;
                if let Some(bytes) = tx.last.clone() {
                    let dest = tx.dest.clone();
                    self.send(dest, bytes);
                }
                self.timers.set(Timer::G(id), next);
            }
            Timer::H(id) => {
                let Some(tx) = self.server_txs.get(&id) else {
                    return;
                };
                let accepted = tx.state == ServerState::Accepted;
                let call = tx.call.clone();
                self.remove_server_tx(id);
                if !accepted {
                    return;
                }
                let Some(call) = call else {
                    return;
                };
                if self.dialogs.get(&call).and_then(|d| d.awaiting_ack) != Some(id) {
                    return;
                }
                tracing::info!(call = %call, "no ACK for 200 OK; ending the call");
                // RFC 3261 §13.3.1.4: the session SHOULD be terminated with BYE.
                if let Some(d) = self.dialogs.get_mut(&call) {
                    d.awaiting_ack = None;
                }
                self.send_bye(now, &call);
                self.remove_dialog(now, &call);
                self.events.push_back(Event::Ended {
                    call,
                    reason: EndReason::AckTimeout,
                });
            }
            Timer::I(id) | Timer::J(id) => self.remove_server_tx(id),
            Timer::E(id) => {
                let Some(tx) = self.client_txs.get_mut(&id) else {
                    return;
                };
                if tx.state == ClientState::Completed {
                    return;
                }
                tx.interval = if tx.state == ClientState::Proceeding {
                    self.timers_cfg.t2
                } else {
                    self.timers_cfg.backoff(tx.interval)
                };
                let next = now + tx.interval;
                let (dest, bytes) = (tx.dest.clone(), tx.bytes.clone());
                self.send(dest, bytes);
                self.timers.set(Timer::E(id), next);
            }
            Timer::F(id) => {
                let Some(tx) = self.client_txs.get(&id) else {
                    return;
                };
                let call = tx.call.clone();
                let kind = tx.kind;
                self.timers.stop(Timer::E(id));
                self.remove_client_tx(id);
                if kind == ClientKind::Update {
                    self.refresh_answered(now, &call, id, kind, None);
                    return;
                }
                if self.dialogs.contains_key(&call) {
                    tracing::info!(call = %call, "BYE unanswered; call ended");
                    self.remove_dialog(now, &call);
                    self.events.push_back(Event::Ended {
                        call,
                        reason: EndReason::LocalBye { status: None },
                    });
                }
            }
            Timer::K(id) | Timer::D(id) => self.remove_client_tx(id),
            Timer::A(id) => {
                let Some(tx) = self.client_txs.get_mut(&id) else {
                    return;
                };
                if tx.state != ClientState::Trying {
                    return;
                }
                // Timer A doubles without the T2 cap (RFC 3261 §17.1.1.2).
                tx.interval *= 2;
                let next = now + tx.interval;
                let (dest, bytes) = (tx.dest.clone(), tx.bytes.clone());
                self.send(dest, bytes);
                self.timers.set(Timer::A(id), next);
            }
            Timer::B(id) => {
                let Some(tx) = self.client_txs.get(&id) else {
                    return;
                };
                if tx.state == ClientState::Completed {
                    return;
                }
                let call = tx.call.clone();
                self.remove_client_tx(id);
                self.refresh_answered(now, &call, id, ClientKind::Invite, None);
            }
            Timer::SessionRefresh(n) => self.on_refresh_due(now, CallId(n)),
            Timer::SessionExpiry(n) => {
                let call = CallId(n);
                let Some(d) = self.dialogs.get(&call) else {
                    return;
                };
                if d.state == DialogState::Terminating || d.session.is_none() {
                    return;
                }
                tracing::info!(call = %call, "session not refreshed in time; ending the call");
                self.end_session(now, &call, EndReason::SessionExpired);
            }
        }
    }

    /// Time for the server to refresh the session of `call`.
    fn on_refresh_due(&mut self, now: Instant, call: CallId) {
        let Some(d) = self.dialogs.get(&call) else {
            return;
        };
        if d.session.is_none_or(|s| !s.we_refresh)
            || d.state == DialogState::Terminating
            || d.refresh.is_some()
        {
            return;
        }
        if d.state != DialogState::Confirmed
            || d.pending_invite.is_some()
            || d.awaiting_ack.is_some()
        {
            // An offer/answer exchange is under way (its 2xx will settle the timer anyway):
            // look again in a second.
            self.timers
                .set(Timer::SessionRefresh(call.0), now + Duration::from_secs(1));
            return;
        }
        let kind = if d.peer_allows_update {
            ClientKind::Update
        } else {
            ClientKind::Invite
        };
        tracing::debug!(call = %call, method = %kind.method(), "refreshing the session");
        self.refresh_now(now, &call, kind);
    }

    // ---- sending ------------------------------------------------------------------------

    fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn send(&mut self, dest: Dest, bytes: Vec<u8>) {
        self.transmits.push_back(Transmit {
            transport: dest.transport,
            conn: dest.conn,
            to: dest.addr,
            bytes,
        });
    }

    fn contact(&self, transport: Transport) -> String {
        let hp = util::host_port(&self.cfg.contact_host, self.cfg.contact_port);
        match transport {
            Transport::Udp => format!("<sip:{hp}>"),
            Transport::Tcp => format!("<sip:{hp};transport=tcp>"),
        }
    }

    fn warning_value(&self, w: &str) -> String {
        let b = w.as_bytes();
        let coded = b.len() > 4 && b[..3].iter().all(u8::is_ascii_digit) && b[3] == b' ';
        if coded {
            sanitize_reason(w)
        } else {
            let text: String = sanitize_reason(w).replace(['"', '\\'], "'");
            format!("399 {} \"{text}\"", self.cfg.contact_host)
        }
    }

    /// RFC 3261 §18.2.1 and RFC 3581: the top Via gets `received` and `rport`; §18.2.2:
    /// where the response goes.
    fn response_base(&self, req: &Request, via: &Via, src: Source) -> (Headers, Dest) {
        let mut top = via.clone();
        let src_ip = src.from.ip().to_string();
        let wants_rport = top.rport().is_some();
        if wants_rport {
            top.params.set("rport", Some(src.from.port().to_string()));
        }
        if wants_rport || util::parse_ip(&top.host) != Some(src.from.ip()) {
            top.params.set("received", Some(src_ip));
        }
        let dest = match src.transport {
            Transport::Tcp => Dest {
                transport: Transport::Tcp,
                conn: src.conn,
                addr: src.from,
            },
            Transport::Udp => {
                let addr = if wants_rport {
                    src.from
                } else if let Some(maddr) = top.maddr().and_then(util::parse_ip) {
                    SocketAddr::new(maddr, top.port.unwrap_or(5060))
                } else {
                    SocketAddr::new(src.from.ip(), top.port.unwrap_or(5060))
                };
                Dest {
                    transport: Transport::Udp,
                    conn: None,
                    addr,
                }
            }
        };
        let mut h = Headers::new();
        let vias = req.headers.list("Via");
        h.push("Via", top.to_string());
        for v in vias.iter().skip(1) {
            h.push("Via", *v);
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = req.headers.get(name) {
                h.push(name, v);
            }
        }
        (h, dest)
    }

    fn build_response(
        &self,
        base: &Headers,
        to_has_tag: bool,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        extras: Extras,
    ) -> Response {
        let mut r = Response::new(status, reason);
        for (n, v) in base.iter() {
            if n == "To" && !to_has_tag && status > 100 {
                let tagged = match (to_tag, NameAddr::parse(v)) {
                    (Some(tag), Ok(mut to)) => {
                        to.params.set("tag", Some(tag.to_string()));
                        to.to_string()
                    }
                    (Some(tag), Err(_)) => format!("{v};tag={tag}"),
                    (None, _) => format!("{v};tag={}", util::random_token(12)),
                };
                r.headers.push("To", tagged);
            } else {
                r.headers.push(n, v);
            }
        }
        r.headers.push("Server", self.cfg.user_agent.clone());
        for (n, v) in extras.headers {
            r.headers.push(n, v);
        }
        if let Some((ct, body)) = extras.body {
            r.headers.push("Content-Type", ct);
            r.body = body;
        }
        r
    }

    /// Sends a response through a server transaction and advances its state.
    fn respond(
        &mut self,
        now: Instant,
        tx_id: TxId,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        extras: Extras,
    ) {
        let Some(tx) = self.server_txs.get(&tx_id) else {
            return;
        };
        if tx.state != ServerState::Proceeding {
            return;
        }
        let resp = self.build_response(&tx.base, tx.to_has_tag, status, reason, to_tag, extras);
        let bytes = resp.to_bytes();
        let t1 = self.timers_cfg.t1;
        let timeout = self.timers_cfg.timeout();
        let Some(tx) = self.server_txs.get_mut(&tx_id) else {
            return;
        };
        let dest = tx.dest.clone();
        let reliable = dest.transport.reliable();
        tx.last = Some(bytes.clone());
        self.transmits.push_back(Transmit {
            transport: dest.transport,
            conn: dest.conn,
            to: dest.addr,
            bytes,
        });
        if status < 200 {
            return;
        }
        if !tx.invite {
            tx.state = ServerState::Completed;
            if reliable {
                self.remove_server_tx(tx_id);
            } else {
                self.timers.set(Timer::J(tx_id), now + timeout);
            }
            return;
        }
        tx.state = if status < 300 {
            ServerState::Accepted
        } else {
            ServerState::Completed
        };
        tx.interval = t1;
        if !reliable {
            self.timers.set(Timer::G(tx_id), now + t1);
        }
        self.timers.set(Timer::H(tx_id), now + timeout);
    }

    fn respond_stateless(
        &mut self,
        req: &Request,
        src: Source,
        status: u16,
        reason: &str,
        extras: Extras,
    ) {
        let Some(via) = req.top_via() else {
            self.stats.dropped_malformed += 1;
            return;
        };
        let (base, dest) = self.response_base(req, &via, src);
        let to_has_tag = req.to().is_some_and(|t| t.tag().is_some());
        let tag = util::random_token(12);
        let resp = self.build_response(&base, to_has_tag, status, reason, Some(&tag), extras);
        self.send(dest, resp.to_bytes());
    }

    fn send_bye(&mut self, now: Instant, call: &CallId) {
        let Some(d) = self.dialogs.get_mut(call) else {
            return;
        };
        if d.state == DialogState::Terminating {
            return;
        }
        d.state = DialogState::Terminating;
        if let Some(p) = d.pending_invite.take() {
            let tag = d.local_tag.clone();
            self.respond(
                now,
                p,
                487,
                "Request Terminated",
                Some(&tag),
                Extras::none(),
            );
        }
        let Some((req, dest, branch)) = self.dialog_request(call, Method::Bye) else {
            return;
        };
        tracing::debug!(call = %call, "sending BYE");
        self.start_client_tx(now, call, ClientKind::Bye, req, dest, branch);
    }

    /// Sends the server's session refresh of `call` (RFC 4028 §7.4): a body-less UPDATE, or
    /// a re-INVITE with `offer`. The request says the server refreshes
    /// (`refresher=uac`: it is this request's client).
    fn send_refresh(&mut self, now: Instant, call: &CallId, offer: Option<String>) {
        let Some(d) = self.dialogs.get(call) else {
            return;
        };
        let Some(session) = d.session else {
            return;
        };
        if d.state != DialogState::Confirmed || d.refresh.is_some() {
            return;
        }
        let (method, kind) = if offer.is_some() {
            (Method::Invite, ClientKind::Invite)
        } else {
            (Method::Update, ClientKind::Update)
        };
        let transport = d.transport;
        let Some((mut req, dest, branch)) = self.dialog_request(call, method) else {
            return;
        };
        req.headers.push("Contact", self.contact(transport));
        req.headers.push("Allow", ALLOW);
        req.headers.push("Supported", SUPPORTED);
        let se = SessionExpires {
            interval: session.interval,
            refresher: Some(Refresher::Uac),
        };
        req.headers.push("Session-Expires", se.to_string());
        req.headers.push(
            "Min-SE",
            self.session_timers.min_se.min(session.interval).to_string(),
        );
        if let Some(sdp) = offer {
            req.headers.push("Content-Type", "application/sdp");
            req.body = sdp.into_bytes();
        }
        let id = self.start_client_tx(now, call, kind, req, dest, branch);
        if let Some(d) = self.dialogs.get_mut(call) {
            d.refresh = Some(id);
        }
    }

    /// A new request in the dialog of `call` (next local CSeq, routed through the route
    /// set), where it goes, and its branch.
    fn dialog_request(&mut self, call: &CallId, method: Method) -> Option<(Request, Dest, String)> {
        let d = self.dialogs.get_mut(call)?;
        d.local_cseq = d.local_cseq.wrapping_add(1);
        let transport = d.transport;
        let branch = util::new_branch();
        let route = crate::routing::route(&d.remote_target, &d.route_set);
        let mut req = Request::new(method.clone(), route.request_uri.clone());
        let via_host = util::host_port(&self.cfg.contact_host, self.cfg.contact_port);
        req.headers.push(
            "Via",
            format!(
                "SIP/2.0/{} {via_host};branch={branch};rport",
                transport.via_token()
            ),
        );
        req.headers.push("Max-Forwards", "70");
        for r in &route.routes {
            req.headers.push("Route", r.clone());
        }
        let mut from = d.local.clone();
        from.params.set("tag", Some(d.local_tag.clone()));
        req.headers.push("From", from.to_string());
        req.headers.push("To", d.remote.to_string());
        req.headers.push("Call-ID", d.call_id.clone());
        req.headers.push(
            "CSeq",
            CSeq {
                seq: d.local_cseq,
                method,
            }
            .to_string(),
        );
        req.headers.push("User-Agent", self.cfg.user_agent.clone());
        let addr = crate::routing::resolve(&route.next_hop).unwrap_or(d.source);
        let dest = Dest {
            transport,
            conn: if transport.reliable() { d.conn } else { None },
            addr,
        };
        Some((req, dest, branch))
    }

    /// Sends `req` in a new client transaction of `call` and arms its timers (A/B for an
    /// INVITE, E/F otherwise; no retransmissions over TCP).
    fn start_client_tx(
        &mut self,
        now: Instant,
        call: &CallId,
        kind: ClientKind,
        req: Request,
        dest: Dest,
        branch: String,
    ) -> TxId {
        let bytes = req.to_bytes();
        let id = self.next_id();
        let cseq = req.cseq().map_or(0, |c| c.seq);
        let reliable = dest.transport.reliable();
        self.client_txs.insert(
            id,
            ClientTx {
                kind,
                branch: branch.clone(),
                call: call.clone(),
                cseq,
                dest: dest.clone(),
                request: req,
                bytes: bytes.clone(),
                state: ClientState::Trying,
                interval: self.timers_cfg.t1,
                ack: None,
            },
        );
        self.client_branches.insert(branch, id);
        let (retransmit, give_up) = if kind == ClientKind::Invite {
            (Timer::A(id), Timer::B(id))
        } else {
            (Timer::E(id), Timer::F(id))
        };
        if !reliable {
            self.timers.set(retransmit, now + self.timers_cfg.t1);
        }
        self.timers.set(give_up, now + self.timers_cfg.timeout());
        self.send(dest, bytes);
        id
    }

    // ---- bookkeeping --------------------------------------------------------------------

    fn remove_server_tx(&mut self, id: TxId) {
        if let Some(tx) = self.server_txs.remove(&id) {
            if self.server_keys.get(&tx.key) == Some(&id) {
                self.server_keys.remove(&tx.key);
            }
            if let Some(mk) = tx.merge
                && self.merge_index.get(&mk) == Some(&id)
            {
                self.merge_index.remove(&mk);
            }
        }
        for t in [Timer::G(id), Timer::H(id), Timer::I(id), Timer::J(id)] {
            self.timers.stop(t);
        }
    }

    fn remove_client_tx(&mut self, id: TxId) {
        if let Some(tx) = self.client_txs.remove(&id) {
            self.client_branches.remove(&tx.branch);
        }
        for t in [
            Timer::A(id),
            Timer::B(id),
            Timer::D(id),
            Timer::E(id),
            Timer::F(id),
            Timer::K(id),
        ] {
            self.timers.stop(t);
        }
    }

    /// Forgets a call; an INVITE still waiting for accept/reject gets 487 (RFC 3261 §15.1.2).
    fn remove_dialog(&mut self, now: Instant, call: &CallId) {
        if let Some(d) = self.dialogs.remove(call) {
            if let Some(p) = d.pending_invite {
                self.respond(
                    now,
                    p,
                    487,
                    "Request Terminated",
                    Some(&d.local_tag),
                    Extras::none(),
                );
            }
            self.dialog_index.remove(&(d.call_id, d.local_tag));
        }
        self.timers.stop(Timer::SessionRefresh(call.0));
        self.timers.stop(Timer::SessionExpiry(call.0));
    }
}

/// Whether a request's Allow lists UPDATE (method names are case-sensitive).
fn allows_update(req: &Request) -> bool {
    req.headers.list("Allow").contains(&"UPDATE")
}

/// The ACK for a final response to the server's re-INVITE `invite`: for a 2xx a
/// transaction of its own (new branch), for an error inside the INVITE's transaction (same
/// branch, RFC 3261 §17.1.1.3); either way to where the INVITE went, with its Request-URI,
/// Route set, From, Call-ID and CSeq number, and the response's To.
fn ack_for(invite: &Request, resp: &Response) -> Request {
    let mut ack = Request::new(Method::Ack, invite.uri.clone());
    let mut via = invite.headers.get("Via").unwrap_or_default().to_string();
    if resp.status < 300
        && let Ok(mut v) = Via::parse(&via)
    {
        v.params.set("branch", Some(util::new_branch()));
        via = v.to_string();
    }
    ack.headers.push("Via", via);
    ack.headers.push("Max-Forwards", "70");
    ack.headers.copy_from(&invite.headers, "Route");
    ack.headers.copy_from(&invite.headers, "From");
    ack.headers
        .push("To", resp.headers.get("To").unwrap_or_default().to_string());
    ack.headers.copy_from(&invite.headers, "Call-ID");
    let seq = invite.cseq().map_or(0, |c| c.seq);
    ack.headers.push(
        "CSeq",
        CSeq {
            seq,
            method: Method::Ack,
        }
        .to_string(),
    );
    ack
}

fn merge_key(req: &Request) -> Option<MergeKey> {
    let from_tag = req.from()?.tag()?.to_string();
    let cseq = req.cseq()?;
    Some((
        req.call_id()?.to_string(),
        from_tag,
        cseq.seq,
        cseq.method.as_str().to_string(),
    ))
}

fn body_text(body: &[u8]) -> Option<String> {
    (!body.is_empty()).then(|| String::from_utf8_lossy(body).into_owned())
}

/// A reason phrase or Warning text without line breaks or control characters.
fn sanitize_reason(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests;
