//! The pacing engine over real sockets on 127.0.0.1: what arrives, in what order, when.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use imss_media::{Clip, Law, PlayItem, Playout, Repeat};
use imss_rtp::rtcp::{self, RtcpPacket};
use imss_rtp::{NewStream, Pacer, PacingError, PortAllocator, PortPair, RtpHeader, StreamEvent};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// A clip whose bytes differ from packet to packet, `samples` long (a multiple of 160).
fn test_clip(samples: usize) -> Arc<Clip> {
    let s: Vec<f32> = (0..samples)
        .map(|i| ((i as f32) * 0.037).sin() * 0.6 * (1.0 + (i % 800) as f32 / 800.0) / 2.0)
        .collect();
    Arc::new(Clip::from_samples_8k(&s))
}

fn once(clip: &Arc<Clip>) -> Playout {
    Playout::new(
        vec![PlayItem::Clip(Arc::clone(clip))],
        Repeat::Times(1),
        Duration::ZERO,
        None,
    )
}

fn forever(clip: &Arc<Clip>) -> Playout {
    Playout::new(
        vec![PlayItem::Clip(Arc::clone(clip))],
        Repeat::Forever,
        Duration::ZERO,
        None,
    )
}

struct Events {
    rx: Receiver<StreamEvent>,
    seen: Vec<StreamEvent>,
}

impl Events {
    /// Waits for an event matching `want`, keeping everything seen.
    fn wait_for(&mut self, timeout: Duration, want: impl Fn(&StreamEvent) -> bool) -> StreamEvent {
        if let Some(e) = self.seen.iter().find(|e| want(e)) {
            return e.clone();
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(e) => {
                    self.seen.push(e.clone());
                    if want(&e) {
                        return e;
                    }
                }
                Err(_) => panic!(
                    "event not received within {timeout:?}; seen {:?}",
                    self.seen
                ),
            }
        }
    }

    fn count(&mut self, want: impl Fn(&StreamEvent) -> bool) -> usize {
        while let Ok(e) = self.rx.try_recv() {
            self.seen.push(e);
        }
        self.seen.iter().filter(|e| want(e)).count()
    }
}

fn pacer(threads: usize) -> (Pacer, Events) {
    let (tx, rx) = channel();
    let tx = Mutex::new(tx);
    let callback = Arc::new(move |e: StreamEvent| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(e);
        }
    });
    let pacer = match Pacer::start(threads, callback) {
        Ok(p) => p,
        Err(e) => panic!("pacer did not start: {e}"),
    };
    (
        pacer,
        Events {
            rx,
            seen: Vec::new(),
        },
    )
}

/// The remote end: an RTP and an RTCP socket.
struct Peer {
    rtp: UdpSocket,
    rtcp: UdpSocket,
}

impl Peer {
    fn new() -> Peer {
        let bind = || match UdpSocket::bind((LOCAL, 0)) {
            Ok(s) => s,
            Err(e) => panic!("bind 127.0.0.1:0: {e}"),
        };
        let (rtp, rtcp) = (bind(), bind());
        for s in [&rtp, &rtcp] {
            let _ = s.set_read_timeout(Some(Duration::from_millis(400)));
        }
        Peer { rtp, rtcp }
    }

    fn rtp_addr(&self) -> SocketAddr {
        self.rtp.local_addr().unwrap_or_else(|e| panic!("{e}"))
    }

    fn rtcp_addr(&self) -> SocketAddr {
        self.rtcp.local_addr().unwrap_or_else(|e| panic!("{e}"))
    }

    /// Packets until `total` has passed or nothing came for 400 ms after the first.
    fn receive(&self, total: Duration) -> Vec<Packet> {
        receive_on(&self.rtp, total)
    }
}

#[derive(Clone, Debug)]
struct Packet {
    at: Instant,
    header: RtpHeader,
    payload: Vec<u8>,
}

fn receive_on(sock: &UdpSocket, total: Duration) -> Vec<Packet> {
    let start = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < total {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let at = Instant::now();
                let header = match RtpHeader::parse(&buf[..n]) {
                    Ok(h) => h,
                    Err(e) => panic!("not RTP: {e}"),
                };
                let payload =
                    buf[header.payload_offset..header.payload_offset + header.payload_len].to_vec();
                out.push(Packet {
                    at,
                    header,
                    payload,
                });
            }
            Err(_) if !out.is_empty() => break,
            Err(_) => {}
        }
    }
    out
}

fn ephemeral_ports() -> PortPair {
    let bind = || UdpSocket::bind((LOCAL, 0)).unwrap_or_else(|e| panic!("{e}"));
    PortPair::unmanaged(bind(), bind()).unwrap_or_else(|e| panic!("{e}"))
}

fn stream(
    id: u64,
    ports: PortPair,
    peer: &Peer,
    law: Law,
    ptime_ms: u64,
    playout: Playout,
) -> NewStream {
    NewStream {
        id,
        ports,
        remote_rtp: peer.rtp_addr(),
        remote_rtcp: peer.rtcp_addr(),
        payload_type: law.payload_type(),
        law,
        ptime: Duration::from_millis(ptime_ms),
        playout,
        cname: format!("imss-test-{id}@127.0.0.1"),
    }
}

fn add(pacer: &Pacer, s: NewStream) {
    if let Err(e) = pacer.add(s) {
        panic!("add failed: {e}");
    }
}

/// Checks seq contiguity, timestamp steps, SSRC and PT over `packets`.
fn assert_contiguous(packets: &[Packet], step: u32, pt: u8) {
    assert!(!packets.is_empty(), "no packets");
    let first = packets[0].header;
    for w in packets.windows(2) {
        let (a, b) = (w[0].header, w[1].header);
        assert_eq!(b.sequence, a.sequence.wrapping_add(1), "sequence gap");
        assert_eq!(
            b.timestamp.wrapping_sub(a.timestamp),
            step,
            "timestamp step"
        );
        assert_eq!(b.ssrc, first.ssrc, "SSRC changed");
    }
    assert!(packets.iter().all(|p| p.header.payload_type == pt));
}

fn median_spacing_ms(packets: &[Packet]) -> f64 {
    let mut gaps: Vec<f64> = packets
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64() * 1000.0)
        .collect();
    gaps.sort_by(f64::total_cmp);
    gaps[gaps.len() / 2]
}

#[test]
fn finite_clip_arrives_whole_in_order_then_bye() {
    let (pacer, mut events) = pacer(2);
    let peer = Peer::new();
    let clip = test_clip(8000); // 1 s: 50 packets of 20 ms
    add(
        &pacer,
        stream(1, ephemeral_ports(), &peer, Law::Pcmu, 20, once(&clip)),
    );
    assert_eq!(pacer.active_streams(), 1);

    let packets = peer.receive(Duration::from_secs(3));
    assert_eq!(packets.len(), 50, "1 s at 20 ms");
    assert_contiguous(&packets, 160, 0);
    let payload: Vec<u8> = packets.iter().flat_map(|p| p.payload.clone()).collect();
    assert_eq!(
        payload,
        clip.bytes(Law::Pcmu),
        "payload is the clip, in order"
    );
    assert!(packets[0].header.marker, "marker on the first packet");
    assert!(
        packets[1..].iter().all(|p| !p.header.marker),
        "marker only on the first"
    );
    let spacing = median_spacing_ms(&packets);
    assert!((spacing - 20.0).abs() <= 1.0, "median spacing {spacing} ms");

    events.wait_for(Duration::from_secs(1), |e| {
        *e == StreamEvent::Ended { id: 1, playout: 0 }
    });
    // Nothing after the end.
    assert!(peer.receive(Duration::from_millis(300)).is_empty());

    pacer.remove(1);
    let removed = events.wait_for(Duration::from_secs(1), |e| {
        matches!(e, StreamEvent::Removed { id: 1, .. })
    });
    assert_eq!(
        removed,
        StreamEvent::Removed {
            id: 1,
            packets: 50,
            octets: 8000
        }
    );
    assert_eq!(pacer.active_streams(), 0);
    assert_eq!(
        events.count(|e| matches!(e, StreamEvent::Ended { .. })),
        1,
        "Ended once"
    );

    // RTCP BYE (SR + SDES + BYE) on the RTCP port.
    let ssrc = packets[0].header.ssrc;
    let mut buf = [0u8; 1500];
    let mut saw_bye = false;
    while let Ok(n) = peer.rtcp.recv(&mut buf) {
        for p in rtcp::parse_compound(&buf[..n]) {
            match p {
                Ok(RtcpPacket::Goodbye { ssrc: s }) => {
                    assert_eq!(s, ssrc);
                    saw_bye = true;
                }
                Ok(_) => {}
                Err(e) => panic!("bad RTCP: {e}"),
            }
        }
        if saw_bye {
            break;
        }
    }
    assert!(saw_bye, "no RTCP BYE");
    let stats = pacer.stats();
    assert_eq!(stats.packets_sent, 50);
    assert_eq!(stats.octets_sent, 50 * 172);
    assert_eq!(stats.send_errors, 0);
    pacer.shutdown();
}

#[test]
fn ptime_30_and_10() {
    let (pacer, mut events) = pacer(1);
    let clip = test_clip(4800); // 600 ms
    let peer30 = Peer::new();
    let peer10 = Peer::new();
    add(
        &pacer,
        stream(30, ephemeral_ports(), &peer30, Law::Pcma, 30, once(&clip)),
    );
    add(
        &pacer,
        stream(10, ephemeral_ports(), &peer10, Law::Pcma, 10, once(&clip)),
    );
    let h10 = std::thread::spawn(move || peer10.receive(Duration::from_secs(2)));
    let p30 = peer30.receive(Duration::from_secs(2));
    let p10 = h10
        .join()
        .unwrap_or_else(|_| panic!("receiver thread panicked"));

    assert_eq!(p30.len(), 20);
    assert_contiguous(&p30, 240, 8);
    assert!(p30.iter().all(|p| p.payload.len() == 240));
    assert_eq!(p10.len(), 60);
    assert_contiguous(&p10, 80, 8);
    assert!(p10.iter().all(|p| p.payload.len() == 80));
    for packets in [&p30, &p10] {
        let payload: Vec<u8> = packets.iter().flat_map(|p| p.payload.clone()).collect();
        assert_eq!(payload, clip.bytes(Law::Pcma));
    }
    let s30 = median_spacing_ms(&p30);
    let s10 = median_spacing_ms(&p10);
    assert!(
        (s30 - 30.0).abs() <= 1.0,
        "median spacing {s30} ms at ptime 30"
    );
    assert!(
        (s10 - 10.0).abs() <= 1.0,
        "median spacing {s10} ms at ptime 10"
    );
    events.wait_for(Duration::from_secs(1), |e| {
        *e == StreamEvent::Ended { id: 30, playout: 0 }
    });
    events.wait_for(Duration::from_secs(1), |e| {
        *e == StreamEvent::Ended { id: 10, playout: 0 }
    });
    pacer.shutdown();
    assert_eq!(
        events.count(|e| matches!(e, StreamEvent::Removed { .. })),
        2
    );
}

#[test]
fn pause_and_resume_keep_media_time() {
    let (pacer, _events) = pacer(1);
    let peer = Peer::new();
    let clip = test_clip(16_000);
    add(
        &pacer,
        stream(7, ephemeral_ports(), &peer, Law::Pcmu, 20, forever(&clip)),
    );
    let before = peer.receive(Duration::from_millis(300));
    pacer.pause(7);
    // Drain what was in flight, then expect silence on the wire.
    let tail = receive_on(&peer.rtp, Duration::from_millis(100));
    let mut before: Vec<Packet> = before.into_iter().chain(tail).collect();
    std::thread::sleep(Duration::from_millis(500));
    let mut buf = [0u8; 2048];
    let _ = peer.rtp.set_nonblocking(true);
    assert!(
        peer.rtp.recv(&mut buf).is_err(),
        "a packet was sent while paused"
    );
    let _ = peer.rtp.set_nonblocking(false);
    pacer.resume(7);
    let after = peer.receive(Duration::from_millis(300));
    assert!(after.len() >= 10, "{} packets after resume", after.len());

    assert_contiguous(&before, 160, 0);
    assert_contiguous(&after, 160, 0);
    let last = before
        .pop()
        .unwrap_or_else(|| panic!("no packets before pause"));
    let first = &after[0];
    assert_eq!(
        first.header.sequence,
        last.header.sequence.wrapping_add(1),
        "no sequence gap"
    );
    assert!(first.header.marker, "marker after resume");
    assert!(after[1..].iter().all(|p| !p.header.marker));
    let jump = first.header.timestamp.wrapping_sub(last.header.timestamp);
    assert_eq!(jump % 160, 0, "timestamps stay on the packet grid");
    // Media time follows wall-clock time across the pause (±2 packets of scheduling noise).
    let wall = (first.at - last.at).as_secs_f64() * 8000.0;
    assert!(
        (f64::from(jump) - wall).abs() <= 320.0,
        "jump {jump} vs {wall} samples"
    );
    assert!(jump >= 160 * 25, "the pause lasted > 500 ms: jump {jump}");
    // The clip resumes where it paused: no audio was consumed while paused.
    let bytes = clip.bytes(Law::Pcmu);
    let sent_before = before.len() + 1;
    let offset = (sent_before * 160) % bytes.len();
    assert_eq!(first.payload, &bytes[offset..offset + 160]);
    pacer.shutdown();
}

#[test]
fn many_streams_on_allocated_ports() {
    let (pacer, mut events) = pacer(2);
    let alloc = loop {
        let min = 20_000 + (rand::random::<u16>() % 9_000) / 2 * 2;
        if let Ok(a) = PortAllocator::new(LOCAL, min, min + 199) {
            break a;
        }
    };
    let clip = test_clip(8000);
    let mut peers = Vec::new();
    for id in 0..40 {
        let ports = match alloc.allocate() {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(ports.port() % 2, 0);
        let peer = Peer::new();
        add(&pacer, stream(id, ports, &peer, Law::Pcmu, 20, once(&clip)));
        peers.push(peer);
    }
    assert_eq!(alloc.in_use(), 40);
    let handles: Vec<_> = peers
        .into_iter()
        .map(|peer| std::thread::spawn(move || peer.receive(Duration::from_secs(3))))
        .collect();
    for h in handles {
        let packets = h.join().unwrap_or_else(|_| panic!("receiver panicked"));
        assert_eq!(packets.len(), 50);
        assert_contiguous(&packets, 160, 0);
        let payload: Vec<u8> = packets.iter().flat_map(|p| p.payload.clone()).collect();
        assert_eq!(payload, clip.bytes(Law::Pcmu));
    }
    for id in 0..40 {
        events.wait_for(Duration::from_secs(1), |e| {
            *e == StreamEvent::Ended { id, playout: 0 }
        });
        pacer.remove(id);
    }
    for id in 0..40 {
        events.wait_for(
            Duration::from_secs(1),
            |e| matches!(e, StreamEvent::Removed { id: i, .. } if *i == id),
        );
    }
    assert_eq!(pacer.active_streams(), 0);
    assert_eq!(
        alloc.in_use(),
        0,
        "ports return to the allocator after Removed"
    );
    assert_eq!(pacer.stats().packets_sent, 40 * 50);
    pacer.shutdown();
}

#[test]
fn rtcp_sender_reports_and_receiver_reports() {
    let (pacer, _events) = pacer(1);
    let peer = Peer::new();
    let clip = test_clip(8000);
    let ports = ephemeral_ports();
    let rtp_rx = peer.rtp.try_clone().unwrap_or_else(|e| panic!("{e}"));
    let rtp_thread = std::thread::spawn(move || receive_on(&rtp_rx, Duration::from_millis(3800)));
    add(
        &pacer,
        stream(5, ports, &peer, Law::Pcmu, 20, forever(&clip)),
    );
    let start = Instant::now();

    // The first SR comes 1.03–3.08 s after the start (RFC 3550 initial interval, randomised).
    let _ = peer
        .rtcp
        .set_read_timeout(Some(Duration::from_millis(3500)));
    let mut buf = [0u8; 1500];
    let n = match peer.rtcp.recv(&mut buf) {
        Ok(n) => n,
        Err(e) => panic!("no RTCP report: {e}"),
    };
    let sr_at = Instant::now();
    let ntp_at_arrival = rtcp::NtpTime::from_system_time(std::time::SystemTime::now());
    let arrived = sr_at - start;
    let rtp = rtp_thread
        .join()
        .unwrap_or_else(|_| panic!("receiver thread panicked"));
    assert!(
        arrived >= Duration::from_millis(900),
        "first report after {arrived:?}"
    );
    let mut parsed = rtcp::parse_compound(&buf[..n]);
    let Some(Ok(RtcpPacket::SenderReport { ssrc, info, .. })) = parsed.next() else {
        panic!("compound does not start with an SR");
    };
    assert_eq!(ssrc, rtp[0].header.ssrc, "SR is about our stream");
    assert!(
        matches!(
            parsed.next(),
            Some(Ok(RtcpPacket::Other { packet_type: 202 }))
        ),
        "SDES follows"
    );
    // Counts and media time agree with the packets that arrived before the report.
    let before: Vec<&Packet> = rtp.iter().filter(|p| p.at <= sr_at).collect();
    let Some(latest) = before.last() else {
        panic!("no RTP before the SR");
    };
    assert!(
        info.packet_count.abs_diff(before.len() as u32) <= 2,
        "SR counts {} packets, {} arrived before it",
        info.packet_count,
        before.len()
    );
    assert_eq!(info.octet_count, info.packet_count * 160);
    let media_gap = info.rtp_timestamp.wrapping_sub(latest.header.timestamp) as i32;
    assert!(
        (-160..=480).contains(&media_gap),
        "SR RTP timestamp {media_gap} samples after the last packet's"
    );
    let ntp_age = (ntp_at_arrival.0.wrapping_sub(info.ntp.0) >> 16) as f64 / 65536.0;
    assert!(ntp_age < 0.1, "SR wall clock {ntp_age} s old on arrival");
    pacer.shutdown();
}

#[test]
fn receiver_reports_are_read() {
    let (pacer, _events) = pacer(1);
    let peer = Peer::new();
    let clip = test_clip(8000);
    let ports = ephemeral_ports();
    let server_rtcp = ports.rtcp.local_addr().unwrap_or_else(|e| panic!("{e}"));
    add(
        &pacer,
        stream(6, ports, &peer, Law::Pcmu, 20, forever(&clip)),
    );
    let first = peer.receive(Duration::from_millis(100));
    let ssrc = first[0].header.ssrc;
    // A receiver report about our stream: 25% lost recently, 3 lost in all, jitter 40.
    let mut rr = vec![0x81, 201, 0, 7, 0, 0, 0, 0x42];
    rr.extend_from_slice(&ssrc.to_be_bytes());
    rr.extend_from_slice(&[
        64, 0, 0, 3, 0, 0, 0, 10, 0, 0, 0, 40, 0, 0, 0, 0, 0, 0, 0, 0,
    ]);
    if let Err(e) = peer.rtcp.send_to(&rr, server_rtcp) {
        panic!("{e}");
    }
    // It is read when the stream's first report is due (within 3.08 s).
    let _ = peer
        .rtcp
        .set_read_timeout(Some(Duration::from_millis(3500)));
    let mut buf = [0u8; 1500];
    if let Err(e) = peer.rtcp.recv(&mut buf) {
        panic!("no RTCP report: {e}");
    }
    // The thread publishes its counters at the end of the wake-up that sent the report,
    // which may be a moment after the report arrives here.
    let until = std::time::Instant::now() + Duration::from_millis(200);
    let mut stats = pacer.stats();
    while stats.receiver_reports == 0 && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
        stats = pacer.stats();
    }
    assert_eq!(stats.receiver_reports, 1);
    assert_eq!(stats.reported_lost, 3);
    assert!(stats.rtcp_sent >= 1);
    pacer.shutdown();
}

#[test]
fn update_remote_moves_the_stream() {
    let (pacer, _events) = pacer(1);
    let a = Peer::new();
    let b = Peer::new();
    let clip = test_clip(8000);
    add(
        &pacer,
        stream(9, ephemeral_ports(), &a, Law::Pcmu, 20, forever(&clip)),
    );
    let at_a = a.receive(Duration::from_millis(200));
    pacer.update_remote(
        9,
        b.rtp_addr(),
        b.rtcp_addr(),
        Duration::from_millis(20),
        Law::Pcma,
        8,
    );
    let at_b = b.receive(Duration::from_millis(400));
    let tail_a = receive_on(&a.rtp, Duration::from_millis(50));
    let at_a: Vec<Packet> = at_a.into_iter().chain(tail_a).collect();
    assert!(at_b.len() >= 10);
    assert_contiguous(&at_b, 160, 8);
    let (last_a, first_b) = (at_a[at_a.len() - 1].header, at_b[0].header);
    assert_eq!(first_b.ssrc, last_a.ssrc, "same SSRC after renegotiation");
    assert_eq!(first_b.sequence, last_a.sequence.wrapping_add(1));
    assert_eq!(first_b.timestamp, last_a.timestamp.wrapping_add(160));
    pacer.shutdown();
}

#[test]
fn replace_playout_restarts_an_ended_stream() {
    let (pacer, mut events) = pacer(1);
    let peer = Peer::new();
    let short = test_clip(1600); // 10 packets
    add(
        &pacer,
        stream(3, ephemeral_ports(), &peer, Law::Pcmu, 20, once(&short)),
    );
    let first = peer.receive(Duration::from_secs(1));
    events.wait_for(Duration::from_secs(1), |e| {
        *e == StreamEvent::Ended { id: 3, playout: 0 }
    });
    assert_eq!(first.len(), 10);
    let other = test_clip(3200);
    pacer.replace_playout(3, once(&other));
    let second = peer.receive(Duration::from_secs(1));
    assert_eq!(second.len(), 20);
    assert!(second[0].header.marker, "marker when sending starts again");
    assert_eq!(
        second[0].header.sequence,
        first[9].header.sequence.wrapping_add(1)
    );
    let payload: Vec<u8> = second.iter().flat_map(|p| p.payload.clone()).collect();
    assert_eq!(payload, other.bytes(Law::Pcmu));
    let jump = second[0]
        .header
        .timestamp
        .wrapping_sub(first[9].header.timestamp);
    assert!(
        jump > 160 && jump.is_multiple_of(160),
        "timestamp kept pace with the idle time: {jump}"
    );
    events.wait_for(Duration::from_secs(1), |e| {
        *e == StreamEvent::Ended { id: 3, playout: 1 }
    });
    // The first playout's end and the replacement's end, told apart.
    assert_eq!(
        events.count(|e| *e == StreamEvent::Ended { id: 3, playout: 0 }),
        1
    );
    assert_eq!(
        events.count(|e| *e == StreamEvent::Ended { id: 3, playout: 1 }),
        1
    );
    pacer.shutdown();
}

#[test]
fn rejects_bad_streams() {
    let (pacer, _events) = pacer(1);
    let peer = Peer::new();
    let clip = test_clip(160);
    let bad_ptime = stream(1, ephemeral_ports(), &peer, Law::Pcmu, 121, once(&clip));
    assert!(matches!(
        pacer.add(bad_ptime),
        Err(PacingError::Ptime { .. })
    ));
    let mut fractional = stream(1, ephemeral_ports(), &peer, Law::Pcmu, 20, once(&clip));
    fractional.ptime = Duration::from_micros(20_500);
    assert!(matches!(
        pacer.add(fractional),
        Err(PacingError::Ptime { .. })
    ));
    let mut long_cname = stream(1, ephemeral_ports(), &peer, Law::Pcmu, 20, once(&clip));
    long_cname.cname = "x".repeat(256);
    assert!(matches!(
        pacer.add(long_cname),
        Err(PacingError::Cname { len: 256 })
    ));
    add(
        &pacer,
        stream(1, ephemeral_ports(), &peer, Law::Pcmu, 20, once(&clip)),
    );
    let dup = stream(1, ephemeral_ports(), &peer, Law::Pcmu, 20, once(&clip));
    let err = pacer.add(dup).err();
    assert!(
        matches!(err, Some(PacingError::DuplicateId { id: 1 })),
        "{err:?}"
    );
    assert_eq!(pacer.active_streams(), 1);
    // Commands for unknown streams are ignored.
    pacer.pause(99);
    pacer.resume(99);
    pacer.remove(99);
    pacer.replace_playout(99, once(&clip));
    assert_eq!(pacer.active_streams(), 1);
    pacer.shutdown();
}

#[test]
fn shutdown_says_bye_and_removes_every_stream() {
    let (pacer, mut events) = pacer(2);
    let clip = test_clip(8000);
    let peers: Vec<Peer> = (0..3).map(|_| Peer::new()).collect();
    for (id, peer) in peers.iter().enumerate() {
        add(
            &pacer,
            stream(
                id as u64,
                ephemeral_ports(),
                peer,
                Law::Pcmu,
                20,
                forever(&clip),
            ),
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    pacer.shutdown();
    assert_eq!(
        events.count(|e| matches!(e, StreamEvent::Removed { .. })),
        3
    );
    for peer in &peers {
        let mut buf = [0u8; 1500];
        let n = peer
            .rtcp
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no BYE: {e}"));
        let bye =
            rtcp::parse_compound(&buf[..n]).any(|p| matches!(p, Ok(RtcpPacket::Goodbye { .. })));
        assert!(bye, "the RTCP packet is not a BYE");
    }
}

#[test]
fn send_errors_are_counted_not_fatal() {
    let (pacer, mut events) = pacer(1);
    // A port nobody listens on: the kernel answers with ICMP port unreachable, and the
    // connected socket reports ECONNREFUSED on a later send.
    let closed = Peer::new();
    let dead_rtp = closed.rtp_addr();
    drop(closed);
    let live = Peer::new();
    let clip = test_clip(4000);
    let mut s = stream(1, ephemeral_ports(), &live, Law::Pcmu, 20, once(&clip));
    s.remote_rtp = dead_rtp;
    add(&pacer, s);
    add(
        &pacer,
        stream(2, ephemeral_ports(), &live, Law::Pcmu, 20, once(&clip)),
    );
    let packets = live.receive(Duration::from_secs(2));
    assert_eq!(packets.len(), 25, "the healthy stream is unaffected");
    events.wait_for(Duration::from_secs(1), |e| {
        *e == StreamEvent::Ended { id: 1, playout: 0 }
    });
    let stats = pacer.stats();
    assert!(stats.send_errors >= 1, "{stats:?}");
    assert_eq!(
        stats.packets_sent + stats.send_errors + stats.skipped_packets,
        50
    );
    pacer.shutdown();
}

#[test]
fn streams_spread_over_the_slots() {
    let (pacer, _events) = pacer(1);
    let peer = Peer::new();
    let clip = test_clip(8000);
    for id in 0..20 {
        add(
            &pacer,
            stream(id, ephemeral_ports(), &peer, Law::Pcmu, 20, forever(&clip)),
        );
    }
    let packets = peer.receive(Duration::from_millis(800));
    pacer.shutdown();
    // Each stream's phase within the 20 ms period, as a circular mean of its arrivals.
    let reference = packets[0].at;
    let mut by_ssrc: std::collections::HashMap<u32, (f64, f64)> = Default::default();
    for p in &packets {
        let ms = (p.at - reference).as_secs_f64() * 1000.0;
        let angle = (ms % 20.0) / 20.0 * std::f64::consts::TAU;
        let e = by_ssrc.entry(p.header.ssrc).or_default();
        e.0 += angle.sin();
        e.1 += angle.cos();
    }
    assert_eq!(by_ssrc.len(), 20);
    let mut phases: Vec<f64> = by_ssrc
        .values()
        .map(|(s, c)| s.atan2(*c).rem_euclid(std::f64::consts::TAU) / std::f64::consts::TAU * 20.0)
        .collect();
    phases.sort_by(f64::total_cmp);
    let mut widest = 20.0 - phases[19] + phases[0];
    for w in phases.windows(2) {
        widest = f64::max(widest, w[1] - w[0]);
    }
    // One stream per millisecond slot: gaps of ~1 ms. All in one slot would leave ~20 ms.
    assert!(widest <= 4.0, "phases {phases:?} leave a {widest} ms gap");
}
