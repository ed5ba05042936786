//! The tokio shell around `imss_sip::uac::ClientCall`s: one UDP socket, calls by Call-ID.
//!
//! The run-loop rule of the sans-IO core: after every input (`handle_message`,
//! `handle_timeout`, `hangup`), drain `poll_transmit` and `poll_event` until both are empty,
//! then sleep until the earliest `poll_timeout`. Timers of all calls sit in one binary heap;
//! an entry is only a hint (it may be stale), the call's own `poll_timeout` decides.

use crate::ClientError;
use imss_sip::message::{self, Message, Method, Response};
use imss_sip::uac::{ClientCall, UacConfig, UacEvent};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use tokio::net::UdpSocket;

/// Largest SIP datagram read.
const MAX_SIP_DATAGRAM: usize = 65_535;

/// Something that happened to one call.
#[derive(Debug)]
pub struct ShellEvent {
    /// The call's Call-ID.
    pub call_id: String,
    /// What happened.
    pub event: UacEvent,
    /// When the input that caused it was read.
    pub at: Instant,
}

/// What [`UacShell::next`] returns.
#[derive(Debug)]
pub enum Step {
    /// A call event.
    Event(ShellEvent),
    /// The caller's deadline was reached.
    Deadline,
    /// The socket reported the server unreachable (ICMP), for no particular call.
    Unreachable(std::io::Error),
}

/// One UDP SIP socket and the client calls it carries.
pub struct UacShell {
    socket: UdpSocket,
    local: SocketAddr,
    remote: SocketAddr,
    calls: HashMap<String, ClientCall>,
    /// Warning texts of failure responses, added to the `Failed` reason (the operator wants
    /// "404 Not Found: no such file", not only the status line).
    warnings: HashMap<String, String>,
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    events: VecDeque<ShellEvent>,
    buf: Vec<u8>,
    /// Datagrams that did not parse or matched no call.
    pub stray: u64,
    /// Datagrams that could not be sent.
    pub send_errors: u64,
    /// ICMP errors (port or host unreachable) reported on the socket.
    pub icmp_errors: u64,
}

impl UacShell {
    /// Binds an ephemeral UDP port on `local_ip` for calls to `remote`. ICMP errors are
    /// requested (`IP_RECVERR`) so that a server that is not listening shows up at once as
    /// "unreachable" rather than after the 32 s INVITE timeout.
    pub async fn bind(local_ip: IpAddr, remote: SocketAddr) -> Result<UacShell, ClientError> {
        let std_sock = std::net::UdpSocket::bind(SocketAddr::new(local_ip, 0))
            .map_err(|e| ClientError::io(format!("binding a SIP socket on {local_ip}"), e))?;
        std_sock
            .set_nonblocking(true)
            .map_err(|e| ClientError::io("configuring the SIP socket", e))?;
        enable_icmp_errors(&std_sock, local_ip.is_ipv4());
        // A bench ramp brings hundreds of responses per second; let bursts queue rather
        // than drop (best effort: the kernel caps this at net.core.rmem_max).
        set_int_opt(&std_sock, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
        let socket = UdpSocket::from_std(std_sock)
            .map_err(|e| ClientError::io("registering the SIP socket", e))?;
        let local = socket
            .local_addr()
            .map_err(|e| ClientError::io("reading the SIP socket address", e))?;
        Ok(UacShell {
            socket,
            local,
            remote,
            calls: HashMap::new(),
            warnings: HashMap::new(),
            timers: BinaryHeap::new(),
            events: VecDeque::new(),
            buf: vec![0u8; MAX_SIP_DATAGRAM],
            stray: 0,
            send_errors: 0,
            icmp_errors: 0,
        })
    }

    /// Sends an INVITE to `target_uri` with `sdp_offer`; returns the new call's Call-ID.
    pub async fn start_call(&mut self, target_uri: &str, sdp_offer: String) -> String {
        let now = Instant::now();
        let call = ClientCall::new(
            now,
            UacConfig {
                local: self.local,
                target_uri: target_uri.to_string(),
                remote: self.remote,
                sdp_offer,
                from_user: "imss-client".to_string(),
            },
        );
        let id = call.call_id().to_string();
        self.calls.insert(id.clone(), call);
        self.settle(&id, now).await;
        id
    }

    /// Hangs up a call: CANCEL before the answer, BYE after.
    pub async fn hangup(&mut self, call_id: &str) {
        let now = Instant::now();
        if let Some(call) = self.calls.get_mut(call_id) {
            call.hangup(now);
            self.settle(call_id, now).await;
        }
    }

    /// Forgets a call without signalling (the end of a bounded run).
    pub fn abandon(&mut self, call_id: &str) {
        self.calls.remove(call_id);
        self.warnings.remove(call_id);
    }

    /// Waits for the next call event, or until `deadline`.
    pub async fn next(&mut self, deadline: Instant) -> Step {
        self.next_or_woken(deadline, None).await
    }

    /// As [`UacShell::next`], and also returns [`Step::Deadline`] early when `wake` is
    /// notified (another task has news for the caller's loop). Never interrupts the
    /// handling of a datagram.
    pub async fn next_or_woken(
        &mut self,
        deadline: Instant,
        wake_up: Option<&tokio::sync::Notify>,
    ) -> Step {
        loop {
            if let Some(e) = self.events.pop_front() {
                return Step::Event(e);
            }
            let now = Instant::now();
            if now >= deadline {
                return Step::Deadline;
            }
            if let Some(Reverse((at, _))) = self.timers.peek()
                && *at <= now
            {
                self.fire_due_timers(now).await;
                continue;
            }
            let wake = self
                .timers
                .peek()
                .map_or(deadline, |Reverse((at, _))| (*at).min(deadline));
            tokio::select! {
                r = self.socket.recv_from(&mut self.buf) => match r {
                    Ok((n, from)) => {
                        self.input(n, from, Instant::now()).await;
                        // Read what else is queued before looking at timers again.
                        for _ in 0..64 {
                            match self.socket.try_recv_from(&mut self.buf) {
                                Ok((n, from)) => self.input(n, from, Instant::now()).await,
                                Err(_) => break,
                            }
                        }
                    }
                    Err(e) => {
                        self.icmp_errors += 1;
                        drain_error_queue(&self.socket);
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::ConnectionRefused
                                | std::io::ErrorKind::HostUnreachable
                                | std::io::ErrorKind::NetworkUnreachable
                        ) {
                            return Step::Unreachable(e);
                        }
                    }
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
                _ = async {
                    match wake_up {
                        Some(n) => n.notified().await,
                        None => std::future::pending().await,
                    }
                } => return Step::Deadline,
            }
        }
    }

    async fn fire_due_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, id))) = self.timers.pop() else {
                break;
            };
            let due = self
                .calls
                .get(&id)
                .and_then(ClientCall::poll_timeout)
                .is_some_and(|t| t <= now);
            if due {
                if let Some(call) = self.calls.get_mut(&id) {
                    call.handle_timeout(now);
                }
                self.settle(&id, now).await;
            }
        }
    }

    async fn input(&mut self, n: usize, from: SocketAddr, at: Instant) {
        let Some(bytes) = self.buf.get(..n) else {
            return;
        };
        let msg = match message::parse_datagram(bytes) {
            Ok(m) => m,
            Err(_) => {
                self.stray += 1;
                return;
            }
        };
        let Some(id) = msg.call_id().map(str::to_string) else {
            self.stray += 1;
            return;
        };
        match self.calls.get_mut(&id) {
            Some(call) => {
                if let Message::Response(r) = &msg
                    && r.status >= 300
                    && let Some(w) = r.headers.get("Warning").and_then(warning_text)
                {
                    self.warnings.insert(id.clone(), w);
                }
                call.handle_message(at, msg);
                self.settle(&id, at).await;
            }
            None => {
                self.stray += 1;
                if let Message::Request(req) = &msg
                    && req.method != Method::Ack
                {
                    // A request for a dialog we no longer know (e.g. a retransmitted BYE
                    // after we forgot the call): RFC 3261 §12.2.2.
                    let mut resp = Response::new(481, "Call/Transaction Does Not Exist");
                    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                        resp.headers.copy_from(&req.headers, name);
                    }
                    resp.headers.push("Content-Length", "0");
                    self.send(&resp.to_bytes(), from).await;
                }
            }
        }
    }

    /// Drains what a call has to send and to tell after an input, and files its next timer.
    async fn settle(&mut self, id: &str, now: Instant) {
        let mut out = Vec::new();
        let mut terminated = false;
        let next_timer;
        {
            let Some(call) = self.calls.get_mut(id) else {
                return;
            };
            loop {
                let mut progressed = false;
                while let Some(t) = call.poll_transmit() {
                    out.push(t);
                    progressed = true;
                }
                while let Some(mut event) = call.poll_event() {
                    terminated |= matches!(event, UacEvent::Terminated);
                    if let UacEvent::Failed { reason, .. } = &mut event
                        && let Some(w) = self.warnings.remove(id)
                    {
                        reason.push_str(": ");
                        reason.push_str(&w);
                    }
                    self.events.push_back(ShellEvent {
                        call_id: id.to_string(),
                        event,
                        at: now,
                    });
                    progressed = true;
                }
                if !progressed {
                    break;
                }
            }
            next_timer = call.poll_timeout();
        }
        for (to, bytes) in out {
            self.send(&bytes, to).await;
        }
        if terminated {
            self.calls.remove(id);
            self.warnings.remove(id);
        } else if let Some(at) = next_timer {
            self.timers.push(Reverse((at, id.to_string())));
        }
    }

    async fn send(&mut self, bytes: &[u8], to: SocketAddr) {
        if self.socket.send_to(bytes, to).await.is_err() {
            self.send_errors += 1;
        }
    }
}

/// The text of a Warning header value (`399 host "no such file"` → `no such file`, RFC 3261
/// §20.43); the whole value when it is not in that form.
fn warning_text(value: &str) -> Option<String> {
    let text = match (value.find('"'), value.rfind('"')) {
        (Some(a), Some(b)) if b > a => value[a + 1..b].replace("\\\"", "\""),
        _ => value.trim().to_string(),
    };
    (!text.is_empty()).then_some(text)
}

/// Asks the kernel to report ICMP errors on this unconnected socket (`IP_RECVERR`).
fn enable_icmp_errors(sock: &std::net::UdpSocket, v4: bool) {
    if v4 {
        set_int_opt(sock, libc::IPPROTO_IP, libc::IP_RECVERR, 1);
    } else {
        set_int_opt(sock, libc::IPPROTO_IPV6, libc::IPV6_RECVERR, 1);
    }
}

/// Sets an integer socket option, best effort.
fn set_int_opt(sock: &std::net::UdpSocket, level: i32, name: i32, value: libc::c_int) {
    use std::os::fd::AsRawFd;
    // SAFETY: a c_int option passed by pointer with its size; the fd is open.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Empties the socket's error queue: its entries count against the receive buffer.
fn drain_error_queue(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let mut data = [0u8; 512];
    let mut control = [0u64; 64];
    for _ in 0..64 {
        let mut iov = libc::iovec {
            iov_base: data.as_mut_ptr().cast(),
            iov_len: data.len(),
        };
        // SAFETY: msghdr is plain old data; it points at the local buffers above, which
        // outlive the call.
        let rc = unsafe {
            let mut msg: libc::msghdr = std::mem::zeroed();
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control) as _;
            libc::recvmsg(
                sock.as_raw_fd(),
                &mut msg,
                libc::MSG_ERRQUEUE | libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warning_text_is_the_quoted_part() {
        assert_eq!(
            warning_text(r#"399 imss "no such file: x.wav""#).as_deref(),
            Some("no such file: x.wav")
        );
        assert_eq!(
            warning_text(r#"399 h "say \"hi\"""#).as_deref(),
            Some(r#"say "hi""#)
        );
        assert_eq!(warning_text("plain words").as_deref(), Some("plain words"));
        assert_eq!(warning_text(r#"399 h """#), None);
    }
}
