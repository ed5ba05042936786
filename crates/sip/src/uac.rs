//! The user-agent client used by `imss call` and `imss bench`: one [`ClientCall`] per call,
//! over UDP (RFC 3261 §13.2, §17.1).
//!
//! The INVITE client transaction retransmits with Timer A and gives up with Timer B; a 2xx
//! is acknowledged with an ACK of its own (to the remote target, through the route set) and
//! re-acknowledged when retransmitted; a 3xx–6xx is acknowledged inside the transaction.
//! `hangup` sends CANCEL before a final response (after the first provisional one, RFC 3261
//! §9.1) and BYE after a 2xx; both retransmit with Timer E and give up with Timer F.
//! [`UacEvent::Terminated`] is always the last event.

use crate::endpoint::TimerSettings;
use crate::endpoint::timer::{Timer, TimerTable};
use crate::message::{CSeq, Message, Method, NameAddr, Request, Response, Via};
use crate::{routing, util};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const INVITE_TX: u64 = 1;
const CANCEL_TX: u64 = 2;
const BYE_TX: u64 = 3;

/// What a call needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UacConfig {
    /// The local UDP address (written into Via, Contact and From).
    pub local: SocketAddr,
    /// The Request-URI (`sip:annc@host;play=…`).
    pub target_uri: String,
    /// Where to send the INVITE.
    pub remote: SocketAddr,
    /// The SDP offer.
    pub sdp_offer: String,
    /// The user part of From and Contact (`imss` if empty).
    pub from_user: String,
}

/// What happened to the call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UacEvent {
    /// A provisional response (100–199).
    Provisional(u16),
    /// 2xx: the call is up; the answer SDP.
    Answered {
        /// The SDP answer (empty if the 2xx had no body).
        sdp: String,
    },
    /// A final error response, or 408 when Timer B expired.
    Failed {
        /// Status code.
        status: u16,
        /// Reason phrase.
        reason: String,
    },
    /// The server sent BYE (answered 200).
    RemoteBye,
    /// Nothing more will happen; the call can be dropped.
    Terminated,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// INVITE sent, no response yet.
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// 2xx received and acknowledged.
    Confirmed,
    /// Our BYE is outstanding.
    Ending,
    /// Done.
    Terminated,
}

/// A request in flight with its retransmission state.
struct Outgoing {
    bytes: Vec<u8>,
    to: SocketAddr,
    interval: Duration,
    branch: String,
    proceeding: bool,
}

/// One outgoing call. See the module documentation.
pub struct ClientCall {
    cfg: UacConfig,
    timers_cfg: TimerSettings,
    state: State,
    call_id: String,
    local_tag: String,
    from: String,
    contact: String,
    invite_cseq: u32,
    invite: Outgoing,
    invite_via: String,
    cancel: Option<Outgoing>,
    bye: Option<Outgoing>,
    /// The ACK for the 2xx, re-sent when the 2xx is retransmitted.
    ack: Option<(SocketAddr, Vec<u8>)>,
    remote_to: Option<String>,
    remote_target: String,
    route_set: Vec<String>,
    local_cseq: u32,
    remote_cseq: Option<u32>,
    /// hangup() before any provisional response: CANCEL on the first one.
    cancel_wanted: bool,
    /// hangup() while a CANCEL was outstanding and a 2xx arrived anyway: BYE after ACK.
    hangup_wanted: bool,
    /// The last response to a request of the server, for its retransmissions.
    last_reply: Option<(String, Vec<u8>)>,
    timers: TimerTable,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<UacEvent>,
}

impl ClientCall {
    /// Builds the call and queues its INVITE.
    pub fn new(now: Instant, cfg: UacConfig) -> Self {
        Self::with_timer_settings(now, cfg, TimerSettings::default())
    }

    /// [`ClientCall::new`] with explicit T1/T2/T4.
    pub fn with_timer_settings(now: Instant, cfg: UacConfig, timers_cfg: TimerSettings) -> Self {
        let user = if cfg.from_user.is_empty() {
            "imss".to_string()
        } else {
            cfg.from_user.clone()
        };
        let local = util::host_port(&cfg.local.ip().to_string(), cfg.local.port());
        let local_tag = util::random_token(16);
        let from = format!("<sip:{user}@{local}>;tag={local_tag}");
        let contact = format!("<sip:{user}@{local}>");
        let call_id = format!("{}@{}", util::random_token(20), cfg.local.ip());
        let invite_cseq = util::initial_cseq();
        let branch = util::new_branch();
        let invite_via = format!("SIP/2.0/UDP {local};branch={branch};rport");
        let mut req = Request::new(Method::Invite, cfg.target_uri.clone());
        req.headers.push("Via", invite_via.clone());
        req.headers.push("Max-Forwards", "70");
        req.headers.push("From", from.clone());
        req.headers.push("To", format!("<{}>", cfg.target_uri));
        req.headers.push("Call-ID", call_id.clone());
        req.headers.push("CSeq", format!("{invite_cseq} INVITE"));
        req.headers.push("Contact", contact.clone());
        req.headers
            .push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
        req.headers.push("User-Agent", user_agent());
        if !cfg.sdp_offer.is_empty() {
            req.headers.push("Content-Type", "application/sdp");
            req.body = cfg.sdp_offer.clone().into_bytes();
        }
        let invite = Outgoing {
            bytes: req.to_bytes(),
            to: cfg.remote,
            interval: timers_cfg.t1,
            branch,
            proceeding: false,
        };
        let mut call = ClientCall {
            remote_target: cfg.target_uri.clone(),
            cfg,
            timers_cfg,
            state: State::Calling,
            call_id,
            local_tag,
            from,
            contact,
            invite_cseq,
            invite,
            invite_via,
            cancel: None,
            bye: None,
            ack: None,
            remote_to: None,
            route_set: Vec::new(),
            local_cseq: invite_cseq,
            remote_cseq: None,
            cancel_wanted: false,
            hangup_wanted: false,
            last_reply: None,
            timers: TimerTable::default(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        call.transmits
            .push_back((call.invite.to, call.invite.bytes.clone()));
        call.timers
            .set(Timer::A(INVITE_TX), now + call.timers_cfg.t1);
        call.timers
            .set(Timer::B(INVITE_TX), now + call.timers_cfg.timeout());
        call
    }

    /// The SIP Call-ID, to route incoming messages to this call.
    pub fn call_id(&self) -> &str {
        &self.call_id
    }

    /// True once [`UacEvent::Terminated`] has been queued.
    pub fn is_terminated(&self) -> bool {
        self.state == State::Terminated
    }

    /// Feeds a response, or a request of the server within the call (BYE), for this Call-ID.
    pub fn handle_message(&mut self, now: Instant, msg: Message) {
        if msg.call_id() != Some(self.call_id.as_str()) {
            return;
        }
        match msg {
            Message::Response(r) => self.handle_response(now, r),
            Message::Request(r) => self.handle_request(r),
        }
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(t) = self.timers.pop_expired(now) {
            self.on_timer(now, t);
        }
    }

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<UacEvent> {
        self.events.pop_front()
    }

    /// When [`ClientCall::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next_timeout()
    }

    /// Ends the call: CANCEL before the answer, BYE after it.
    pub fn hangup(&mut self, now: Instant) {
        match self.state {
            State::Calling => self.cancel_wanted = true,
            State::Proceeding => self.send_cancel(now),
            State::Confirmed => self.send_bye(now),
            State::Ending | State::Terminated => {}
        }
    }

    // ---- responses ----------------------------------------------------------------------

    fn handle_response(&mut self, now: Instant, r: Response) {
        let Some(branch) = r.top_via().and_then(|v| v.branch().map(String::from)) else {
            return;
        };
        let Some(cseq) = r.cseq() else {
            return;
        };
        match cseq.method {
            Method::Invite if branch == self.invite.branch && cseq.seq == self.invite_cseq => {
                self.invite_response(now, r);
            }
            Method::Cancel if self.cancel.as_ref().is_some_and(|c| c.branch == branch) => {
                if r.status >= 200 {
                    self.stop_request(CANCEL_TX);
                } else if let Some(c) = self.cancel.as_mut() {
                    c.proceeding = true;
                }
            }
            Method::Bye if self.bye.as_ref().is_some_and(|b| b.branch == branch) => {
                if r.status >= 200 {
                    self.stop_request(BYE_TX);
                    self.terminate();
                } else if let Some(b) = self.bye.as_mut() {
                    b.proceeding = true;
                }
            }
            _ => {}
        }
    }

    fn invite_response(&mut self, now: Instant, r: Response) {
        match r.status {
            100..=199 => {
                if self.state == State::Calling {
                    self.state = State::Proceeding;
                    self.invite.proceeding = true;
                    self.timers.stop(Timer::A(INVITE_TX));
                    if self.cancel_wanted {
                        self.send_cancel(now);
                    }
                }
                if self.state == State::Proceeding {
                    self.events.push_back(UacEvent::Provisional(r.status));
                }
            }
            200..=299 => {
                if let Some((to, bytes)) = self.ack.clone() {
                    // A retransmitted 2xx: acknowledge it again (RFC 3261 §13.2.2.4).
                    self.transmits.push_back((to, bytes));
                    return;
                }
                if !matches!(self.state, State::Calling | State::Proceeding) {
                    return;
                }
                self.timers.stop(Timer::A(INVITE_TX));
                self.timers.stop(Timer::B(INVITE_TX));
                self.stop_request(CANCEL_TX);
                self.remote_to = r.headers.get("To").map(String::from);
                if let Some(c) = r
                    .headers
                    .list("Contact")
                    .first()
                    .and_then(|c| NameAddr::parse(c).ok())
                {
                    self.remote_target = c.uri;
                }
                // RFC 3261 §12.1.2: the UAC's route set is the Record-Route list reversed.
                self.route_set = r
                    .headers
                    .list("Record-Route")
                    .into_iter()
                    .rev()
                    .map(String::from)
                    .collect();
                self.state = State::Confirmed;
                self.send_ack_2xx();
                self.events.push_back(UacEvent::Answered {
                    sdp: String::from_utf8_lossy(&r.body).into_owned(),
                });
                if self.cancel_wanted || self.hangup_wanted {
                    self.send_bye(now);
                }
            }
            _ => {
                self.send_ack_error(&r);
                if !matches!(self.state, State::Calling | State::Proceeding) {
                    return;
                }
                self.timers.stop(Timer::A(INVITE_TX));
                self.timers.stop(Timer::B(INVITE_TX));
                self.stop_request(CANCEL_TX);
                self.events.push_back(UacEvent::Failed {
                    status: r.status,
                    reason: r.reason.clone(),
                });
                self.terminate();
            }
        }
    }

    /// ACK for a 2xx: a new transaction, to the remote target through the route set.
    fn send_ack_2xx(&mut self) {
        let route = routing::route(&self.remote_target, &self.route_set);
        let mut ack = Request::new(Method::Ack, route.request_uri.clone());
        let local = util::host_port(&self.cfg.local.ip().to_string(), self.cfg.local.port());
        ack.headers.push(
            "Via",
            format!("SIP/2.0/UDP {local};branch={};rport", util::new_branch()),
        );
        ack.headers.push("Max-Forwards", "70");
        for r in &route.routes {
            ack.headers.push("Route", r.clone());
        }
        self.push_dialog_headers(&mut ack, self.invite_cseq, Method::Ack);
        let to = routing::resolve(&route.next_hop).unwrap_or(self.cfg.remote);
        let bytes = ack.to_bytes();
        self.ack = Some((to, bytes.clone()));
        self.transmits.push_back((to, bytes));
    }

    /// ACK for a 3xx–6xx: inside the INVITE transaction (RFC 3261 §17.1.1.3).
    fn send_ack_error(&mut self, r: &Response) {
        let mut ack = Request::new(Method::Ack, self.cfg.target_uri.clone());
        ack.headers.push("Via", self.invite_via.clone());
        ack.headers.push("Max-Forwards", "70");
        ack.headers.push("From", self.from.clone());
        ack.headers
            .push("To", r.headers.get("To").unwrap_or_default().to_string());
        ack.headers.push("Call-ID", self.call_id.clone());
        ack.headers
            .push("CSeq", format!("{} ACK", self.invite_cseq));
        self.transmits.push_back((self.invite.to, ack.to_bytes()));
    }

    fn push_dialog_headers(&self, req: &mut Request, seq: u32, method: Method) {
        req.headers.push("From", self.from.clone());
        req.headers.push(
            "To",
            self.remote_to
                .clone()
                .unwrap_or_else(|| format!("<{}>", self.cfg.target_uri)),
        );
        req.headers.push("Call-ID", self.call_id.clone());
        req.headers.push("CSeq", CSeq { seq, method }.to_string());
    }

    fn send_cancel(&mut self, now: Instant) {
        if self.cancel.is_some() {
            return;
        }
        // RFC 3261 §9.1: same Request-URI, Call-ID, From, To, CSeq number and top Via.
        let mut c = Request::new(Method::Cancel, self.cfg.target_uri.clone());
        c.headers.push("Via", self.invite_via.clone());
        c.headers.push("Max-Forwards", "70");
        c.headers.push("From", self.from.clone());
        c.headers.push("To", format!("<{}>", self.cfg.target_uri));
        c.headers.push("Call-ID", self.call_id.clone());
        c.headers
            .push("CSeq", format!("{} CANCEL", self.invite_cseq));
        c.headers.push("User-Agent", user_agent());
        self.hangup_wanted = true;
        self.cancel = Some(self.start_request(
            now,
            CANCEL_TX,
            c,
            self.invite.branch.clone(),
            self.cfg.remote,
        ));
    }

    fn send_bye(&mut self, now: Instant) {
        if self.bye.is_some() || self.state == State::Terminated {
            return;
        }
        self.state = State::Ending;
        self.local_cseq = self.local_cseq.wrapping_add(1);
        let route = routing::route(&self.remote_target, &self.route_set);
        let mut bye = Request::new(Method::Bye, route.request_uri.clone());
        let branch = util::new_branch();
        let local = util::host_port(&self.cfg.local.ip().to_string(), self.cfg.local.port());
        bye.headers
            .push("Via", format!("SIP/2.0/UDP {local};branch={branch};rport"));
        bye.headers.push("Max-Forwards", "70");
        for r in &route.routes {
            bye.headers.push("Route", r.clone());
        }
        self.push_dialog_headers(&mut bye, self.local_cseq, Method::Bye);
        bye.headers.push("Contact", self.contact.clone());
        bye.headers.push("User-Agent", user_agent());
        let to = routing::resolve(&route.next_hop).unwrap_or(self.cfg.remote);
        self.bye = Some(self.start_request(now, BYE_TX, bye, branch, to));
    }

    /// Sends a non-INVITE request and arms Timers E and F.
    fn start_request(
        &mut self,
        now: Instant,
        id: u64,
        req: Request,
        branch: String,
        to: SocketAddr,
    ) -> Outgoing {
        let bytes = req.to_bytes();
        self.transmits.push_back((to, bytes.clone()));
        self.timers.set(Timer::E(id), now + self.timers_cfg.t1);
        self.timers
            .set(Timer::F(id), now + self.timers_cfg.timeout());
        Outgoing {
            bytes,
            to,
            interval: self.timers_cfg.t1,
            branch,
            proceeding: false,
        }
    }

    fn stop_request(&mut self, id: u64) {
        self.timers.stop(Timer::E(id));
        self.timers.stop(Timer::F(id));
    }

    fn terminate(&mut self) {
        if self.state == State::Terminated {
            return;
        }
        self.state = State::Terminated;
        for id in [INVITE_TX, CANCEL_TX, BYE_TX] {
            for t in [Timer::A(id), Timer::B(id), Timer::E(id), Timer::F(id)] {
                self.timers.stop(t);
            }
        }
        self.events.push_back(UacEvent::Terminated);
    }

    // ---- requests from the server -------------------------------------------------------

    fn handle_request(&mut self, r: Request) {
        if r.method == Method::Ack {
            return;
        }
        let Some(via) = r.top_via() else {
            return;
        };
        let branch = via.branch().unwrap_or_default().to_string();
        if let Some((b, bytes)) = &self.last_reply
            && *b == branch
        {
            self.transmits
                .push_back((reply_address(&via, self.cfg.remote), bytes.clone()));
            return;
        }
        let ours = r
            .to()
            .is_some_and(|t| t.tag() == Some(self.local_tag.as_str()));
        let seq = r.cseq().map_or(0, |c| c.seq);
        let (status, remote_bye) = if !ours || self.remote_to.is_none() {
            (481, false)
        } else if self.remote_cseq.is_some_and(|last| seq <= last) {
            (500, false)
        } else {
            self.remote_cseq = Some(seq);
            match r.method {
                Method::Bye => (200, true),
                Method::Options => (200, false),
                _ => (405, false),
            }
        };
        let mut resp = Response::new(status, crate::message::reason_phrase(status));
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            resp.headers.copy_from(&r.headers, name);
        }
        if status == 405 {
            resp.headers
                .push("Allow", "INVITE, ACK, BYE, CANCEL, OPTIONS");
        }
        resp.headers.push("User-Agent", user_agent());
        let bytes = resp.to_bytes();
        self.last_reply = Some((branch, bytes.clone()));
        self.transmits
            .push_back((reply_address(&via, self.cfg.remote), bytes));
        if remote_bye && self.state != State::Terminated {
            self.stop_request(BYE_TX);
            self.events.push_back(UacEvent::RemoteBye);
            self.terminate();
        }
    }

    // ---- timers -------------------------------------------------------------------------

    fn on_timer(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::A(_) => {
                if self.state != State::Calling {
                    return;
                }
                // Timer A doubles without the T2 cap (RFC 3261 §17.1.1.2).
                self.invite.interval *= 2;
                self.transmits
                    .push_back((self.invite.to, self.invite.bytes.clone()));
                self.timers
                    .set(Timer::A(INVITE_TX), now + self.invite.interval);
            }
            Timer::B(_) => {
                if matches!(self.state, State::Calling | State::Proceeding) {
                    self.events.push_back(UacEvent::Failed {
                        status: 408,
                        reason: "Request Timeout".into(),
                    });
                    self.terminate();
                }
            }
            Timer::E(id) => {
                let t2 = self.timers_cfg.t2;
                let backoff = self
                    .timers_cfg
                    .backoff(self.outgoing(id).map_or(t2, |o| o.interval));
                let Some(o) = self.outgoing_mut(id) else {
                    return;
                };
                o.interval = if o.proceeding { t2 } else { backoff };
                let (to, bytes, next) = (o.to, o.bytes.clone(), now + o.interval);
                self.transmits.push_back((to, bytes));
                self.timers.set(Timer::E(id), next);
            }
            Timer::F(id) => {
                self.timers.stop(Timer::E(id));
                // A BYE that is never answered still ends the call; a CANCEL that is not
                // answered leaves the INVITE to Timer B.
                if id == BYE_TX {
                    self.terminate();
                }
            }
            Timer::D(_)
            | Timer::G(_)
            | Timer::H(_)
            | Timer::I(_)
            | Timer::J(_)
            | Timer::K(_)
            | Timer::SessionRefresh(_)
            | Timer::SessionExpiry(_) => {}
        }
    }

    fn outgoing(&self, id: u64) -> Option<&Outgoing> {
        match id {
            CANCEL_TX => self.cancel.as_ref(),
            BYE_TX => self.bye.as_ref(),
            _ => None,
        }
    }

    fn outgoing_mut(&mut self, id: u64) -> Option<&mut Outgoing> {
        match id {
            CANCEL_TX => self.cancel.as_mut(),
            BYE_TX => self.bye.as_mut(),
            _ => None,
        }
    }
}

/// RFC 3261 §18.2.2 for the client's replies: the Via's sent-by (rport/received honoured
/// when present), else the server's address.
fn reply_address(via: &Via, fallback: SocketAddr) -> SocketAddr {
    let host = via.received().unwrap_or(&via.host);
    let port = match via.rport() {
        Some(Some(p)) => Some(p),
        _ => via.port,
    };
    util::socket_addr(host, port).unwrap_or(fallback)
}

fn user_agent() -> String {
    format!("imss-call/{}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::parse_datagram;

    const SERVER: &str = "192.0.2.10:5060";

    fn cfg() -> UacConfig {
        UacConfig {
            local: "198.51.100.7:40000".parse().unwrap(),
            target_uri: "sip:annc@192.0.2.10:5060;play=file:hello.wav".into(),
            remote: SERVER.parse().unwrap(),
            sdp_offer: "v=0\r\n".into(),
            from_user: "tester".into(),
        }
    }

    fn sent(c: &mut ClientCall) -> Vec<Request> {
        std::iter::from_fn(|| c.poll_transmit())
            .map(|(_, b)| match parse_datagram(&b) {
                Ok(Message::Request(r)) => r,
                other => panic!("expected a request, got {other:?}"),
            })
            .collect()
    }

    fn events(c: &mut ClientCall) -> Vec<UacEvent> {
        std::iter::from_fn(|| c.poll_event()).collect()
    }

    fn response_to(
        req: &Request,
        status: u16,
        to_tag: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Message {
        let mut r = Response::new(status, crate::message::reason_phrase(status));
        for n in ["Via", "From", "To", "Call-ID", "CSeq"] {
            r.headers.copy_from(&req.headers, n);
        }
        if let Some(tag) = to_tag {
            let to = format!("{};tag={tag}", req.headers.get("To").unwrap());
            r.headers.set("To", to);
        }
        for (n, v) in extra {
            r.headers.push(*n, *v);
        }
        Message::Response(r)
    }

    #[test]
    fn invite_is_well_formed_and_retransmitted_with_timer_a() {
        let t0 = Instant::now();
        let mut c = ClientCall::new(t0, cfg());
        let inv = sent(&mut c);
        assert_eq!(inv.len(), 1);
        let inv = &inv[0];
        assert_eq!(inv.method, Method::Invite);
        assert_eq!(inv.uri, "sip:annc@192.0.2.10:5060;play=file:hello.wav");
        assert_eq!(inv.call_id(), Some(c.call_id()));
        assert!(inv.from().unwrap().tag().is_some());
        assert_eq!(
            inv.headers.get("Contact"),
            Some("<sip:tester@198.51.100.7:40000>")
        );
        assert_eq!(inv.body, b"v=0\r\n");
        let mut at = t0;
        for gap in [500, 1000, 2000, 4000, 8000, 16000] {
            assert_eq!(c.poll_timeout(), Some(at + Duration::from_millis(gap)));
            at += Duration::from_millis(gap);
            c.handle_timeout(at);
            assert_eq!(sent(&mut c), std::slice::from_ref(inv));
        }
        c.handle_timeout(t0 + Duration::from_secs(32));
        assert_eq!(
            events(&mut c),
            [
                UacEvent::Failed {
                    status: 408,
                    reason: "Request Timeout".into()
                },
                UacEvent::Terminated
            ]
        );
        assert_eq!(c.poll_timeout(), None);
    }

    #[test]
    fn error_response_is_acknowledged_in_the_transaction() {
        let t0 = Instant::now();
        let mut c = ClientCall::new(t0, cfg());
        let inv = sent(&mut c).remove(0);
        c.handle_message(t0, response_to(&inv, 100, None, &[]));
        c.handle_message(t0, response_to(&inv, 404, Some("srv"), &[]));
        let ack = sent(&mut c).remove(0);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(
            ack.headers.get("Via"),
            inv.headers.get("Via"),
            "same branch"
        );
        assert_eq!(ack.uri, inv.uri);
        assert_eq!(ack.to().unwrap().tag(), Some("srv"));
        assert_eq!(ack.cseq().unwrap().seq, inv.cseq().unwrap().seq);
        assert_eq!(
            events(&mut c),
            [
                UacEvent::Provisional(100),
                UacEvent::Failed {
                    status: 404,
                    reason: "Not Found".into()
                },
                UacEvent::Terminated
            ]
        );
        // A retransmitted 404 is acknowledged again.
        c.handle_message(t0, response_to(&inv, 404, Some("srv"), &[]));
        assert_eq!(sent(&mut c).len(), 1);
        assert!(events(&mut c).is_empty());
    }

    #[test]
    fn answered_call_acks_each_2xx_and_byes_through_the_route_set() {
        let t0 = Instant::now();
        let mut c = ClientCall::new(t0, cfg());
        let inv = sent(&mut c).remove(0);
        let ok = response_to(
            &inv,
            200,
            Some("srv"),
            &[
                ("Contact", "<sip:192.0.2.10:5060>"),
                (
                    "Record-Route",
                    "<sip:203.0.113.1;lr>, <sip:203.0.113.2:5070;lr>",
                ),
                ("Content-Type", "application/sdp"),
            ],
        );
        c.handle_message(t0, ok.clone());
        let ack = sent(&mut c).remove(0);
        assert_eq!(ack.method, Method::Ack);
        assert_eq!(ack.uri, "sip:192.0.2.10:5060");
        assert_ne!(
            ack.top_via().unwrap().branch(),
            inv.top_via().unwrap().branch()
        );
        assert_eq!(
            ack.headers.list("Route"),
            ["<sip:203.0.113.2:5070;lr>", "<sip:203.0.113.1;lr>"]
        );
        assert_eq!(events(&mut c), [UacEvent::Answered { sdp: String::new() }]);
        c.handle_message(t0, ok);
        assert_eq!(
            sent(&mut c),
            std::slice::from_ref(&ack),
            "2xx retransmission re-acknowledged"
        );
        c.hangup(t0);
        let mut tx = vec![];
        while let Some(x) = c.poll_transmit() {
            tx.push(x);
        }
        assert_eq!(tx[0].0, "203.0.113.2:5070".parse().unwrap(), "first route");
        let Ok(Message::Request(bye)) = parse_datagram(&tx[0].1) else {
            panic!()
        };
        assert_eq!(bye.method, Method::Bye);
        assert_eq!(bye.to().unwrap().tag(), Some("srv"));
        assert!(bye.cseq().unwrap().seq > inv.cseq().unwrap().seq);
        c.handle_timeout(t0 + Duration::from_millis(500));
        assert_eq!(sent(&mut c), std::slice::from_ref(&bye), "Timer E");
        c.handle_message(t0, response_to(&bye, 200, None, &[]));
        assert_eq!(events(&mut c), [UacEvent::Terminated]);
        assert!(c.is_terminated());
    }

    #[test]
    fn hangup_before_answer_cancels_after_the_first_provisional() {
        let t0 = Instant::now();
        let mut c = ClientCall::new(t0, cfg());
        let inv = sent(&mut c).remove(0);
        c.hangup(t0);
        assert!(
            sent(&mut c).is_empty(),
            "no CANCEL before a provisional response"
        );
        c.handle_message(t0, response_to(&inv, 180, Some("srv"), &[]));
        let cancel = sent(&mut c).remove(0);
        assert_eq!(cancel.method, Method::Cancel);
        assert_eq!(cancel.headers.get("Via"), inv.headers.get("Via"));
        assert_eq!(cancel.cseq().unwrap().seq, inv.cseq().unwrap().seq);
        assert_eq!(cancel.to().unwrap().tag(), None);
        c.handle_message(t0, response_to(&cancel, 200, Some("srv"), &[]));
        c.handle_message(t0, response_to(&inv, 487, Some("srv"), &[]));
        assert_eq!(sent(&mut c)[0].method, Method::Ack);
        assert_eq!(
            events(&mut c),
            [
                UacEvent::Provisional(180),
                UacEvent::Failed {
                    status: 487,
                    reason: "Request Terminated".into()
                },
                UacEvent::Terminated
            ]
        );
    }

    #[test]
    fn remote_bye_is_answered() {
        let t0 = Instant::now();
        let mut c = ClientCall::new(t0, cfg());
        let inv = sent(&mut c).remove(0);
        c.handle_message(
            t0,
            response_to(&inv, 200, Some("srv"), &[("Contact", "<sip:192.0.2.10>")]),
        );
        let _ = sent(&mut c);
        let _ = events(&mut c);
        let bye = format!(
            "BYE sip:tester@198.51.100.7:40000 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKsrvbye;rport\r\n\
From: <sip:annc@192.0.2.10>;tag=srv\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n",
            inv.headers.get("From").unwrap(),
            c.call_id()
        );
        let msg = parse_datagram(bye.as_bytes()).unwrap();
        c.handle_message(t0, msg.clone());
        let (to, bytes) = c.poll_transmit().unwrap();
        assert_eq!(to, SERVER.parse().unwrap());
        let Ok(Message::Response(ok)) = parse_datagram(&bytes) else {
            panic!()
        };
        assert_eq!(ok.status, 200);
        assert_eq!(ok.headers.get("CSeq"), Some("7 BYE"));
        assert_eq!(events(&mut c), [UacEvent::RemoteBye, UacEvent::Terminated]);
        c.handle_message(t0, msg);
        assert_eq!(c.poll_transmit().map(|(_, b)| b), Some(bytes), "cached 200");
        assert!(events(&mut c).is_empty());
        assert_eq!(c.poll_timeout(), None);
    }
}
