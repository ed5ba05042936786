//! The RTP receiver against a local sender thread: known G.711 packets every 20 ms with one
//! lost, one duplicated and one pair swapped; statistics and WAV content are checked.

mod support;

use imss_client::capture::AudioCapture;
use imss_client::net::bind_rtp_pair;
use imss_client::receiver::{ReceiverPool, StreamSpec};
use imss_client::stats::SteadyWindow;
use imss_media::Law;
use imss_rtp::Packetizer;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::tone;

const PACKETS: u16 = 60;
const LOST: u16 = 10;
const DUPLICATED: u16 = 20;
const SWAPPED: u16 = 30; // 31 is sent before 30

/// Packet `i` of the test stream: 160 samples of tone starting at sample 160·i.
fn packet(p: &mut Packetizer, law: Law, i: u16) -> Vec<u8> {
    let payload: Vec<u8> = (0..160u64)
        .map(|k| law.encode(tone(u64::from(i) * 160 + k)))
        .collect();
    let mut buf = vec![0u8; 12 + 160];
    let n = p.write(&payload, false, &mut buf);
    buf.truncate(n);
    buf
}

/// Sends the stream paced by absolute 20 ms deadlines: packet `k` in time slot `k`, except
/// the lost one (its slot stays empty), the swapped pair (each in the other's slot) and the
/// duplicate (a second copy right after the original).
fn send_stream(to: std::net::SocketAddr, law: Law) {
    let tx = UdpSocket::bind("127.0.0.1:0").expect("sender socket");
    // Build every packet in sequence order so the packetiser numbers them 0..PACKETS.
    let mut p = Packetizer::new(law.payload_type());
    let packets: Vec<Vec<u8>> = (0..PACKETS).map(|i| packet(&mut p, law, i)).collect();
    let start = Instant::now();
    for slot in 0..PACKETS {
        let due = start + Duration::from_millis(20) * u32::from(slot);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let i = match slot {
            LOST => continue,
            SWAPPED => SWAPPED + 1,
            s if s == SWAPPED + 1 => SWAPPED,
            s => s,
        };
        tx.send_to(&packets[usize::from(i)], to).expect("send");
        if i == DUPLICATED {
            tx.send_to(&packets[usize::from(i)], to).expect("send");
        }
    }
}

#[test]
fn statistics_and_wav_from_a_local_sender() {
    let law = Law::Pcma;
    let (rtp, rtcp) = bind_rtp_pair("127.0.0.1".parse().expect("ip"), true).expect("ports");
    let to = rtp.local_addr().expect("addr");
    let pool = ReceiverPool::start(
        1,
        1,
        Duration::from_millis(200),
        Duration::ZERO,
        Arc::new(SteadyWindow::default()),
    )
    .expect("pool");
    pool.add(StreamSpec {
        slot: 0,
        socket: rtp,
        rtcp,
        ptime: Duration::from_millis(20),
        capture: Some(AudioCapture::new(8000 * 10)),
    })
    .expect("add");
    let sender = std::thread::spawn(move || send_stream(to, law));
    sender.join().expect("sender");
    std::thread::sleep(Duration::from_millis(50));
    pool.close(0);
    let out = pool.finish().expect("finish");
    let r = out.streams[0].as_ref().expect("stream 0 was added");
    let s = r.summary;

    assert_eq!(s.packets, u64::from(PACKETS)); // 59 distinct + 1 duplicate
    assert_eq!(s.expected, u64::from(PACKETS));
    assert_eq!(s.lost, 1);
    assert_eq!(s.duplicates, 1);
    assert_eq!(s.reordered, 1);
    assert!(
        (s.audio_seconds - 59.0 * 0.02).abs() < 1e-9,
        "{}",
        s.audio_seconds
    );
    // A sleeping sender on a busy machine is late by a few ms at worst; a receiver that
    // mixed up units (ns vs timestamp units) would be off by orders of magnitude.
    assert!(s.jitter_ms < 5.0, "jitter {} ms", s.jitter_ms);

    // Spacing counts only pairs of consecutive sequence numbers in arrival order: 0-9 (9),
    // 11-20 (9), duplicate 20 then 21 (1), 21-29 (8), 32-59 (27) = 54, less the 9 that end
    // within the first 200 ms = 45 (one more if a sleep overshoots at the boundary).
    let sp = out.spacing.summary_ms();
    assert!(
        (45..=46).contains(&sp.samples),
        "spacing pairs {}",
        sp.samples
    );
    assert!(sp.p50_ms < 5.0, "spacing p50 {} ms", sp.p50_ms);

    // WAV content: the tone, sample-exact, with the lost packet as silence.
    let cap = r.capture.as_ref().expect("capture");
    let path = std::env::temp_dir().join(format!("imss-client-rx-{}.wav", std::process::id()));
    cap.write_wav(&path).expect("write wav");
    let mut reader = hound::WavReader::open(&path).expect("open wav");
    let spec = reader.spec();
    assert_eq!(
        (spec.sample_rate, spec.channels, spec.bits_per_sample),
        (8000, 1, 16)
    );
    let samples: Vec<i16> = reader
        .samples::<i16>()
        .map(|x| x.expect("sample"))
        .collect();
    let _ = std::fs::remove_file(&path);
    assert_eq!(samples.len(), usize::from(PACKETS) * 160);
    for (n, &got) in samples.iter().enumerate() {
        let packet = (n / 160) as u16;
        let want = if packet == LOST {
            0
        } else {
            law.decode(law.encode(tone(n as u64)))
        };
        assert_eq!(got, want, "sample {n} (packet {packet})");
    }
}

#[test]
fn many_streams_over_two_threads() {
    let law = Law::Pcmu;
    let streams = 40usize;
    let window = Arc::new(SteadyWindow::default());
    let pool = ReceiverPool::start(
        2,
        streams,
        Duration::ZERO,
        Duration::from_millis(40),
        window.clone(),
    )
    .expect("pool");
    let mut targets = Vec::new();
    for slot in 0..streams {
        let (rtp, _) = bind_rtp_pair("127.0.0.1".parse().expect("ip"), false).expect("port");
        targets.push(rtp.local_addr().expect("addr"));
        pool.add(StreamSpec {
            slot,
            socket: rtp,
            rtcp: None,
            ptime: Duration::from_millis(20),
            capture: None,
        })
        .expect("add");
    }
    let tx = UdpSocket::bind("127.0.0.1:0").expect("tx");
    let mut packetizers: Vec<Packetizer> = (0..streams)
        .map(|_| Packetizer::new(law.payload_type()))
        .collect();
    let start = Instant::now();
    for round in 0..25u32 {
        // The steady window covers rounds 10..20 only.
        if round == 10 {
            window.open_now();
        }
        if round == 20 {
            window.close_now();
        }
        let due = start + Duration::from_millis(20) * round;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        for (slot, to) in targets.iter().enumerate() {
            // Stream 7 loses every fifth packet.
            let pkt = packet(&mut packetizers[slot], law, round as u16);
            if slot == 7 && round % 5 == 4 {
                continue;
            }
            tx.send_to(&pkt, to).expect("send");
        }
    }
    std::thread::sleep(Duration::from_millis(50));
    let out = pool.finish().expect("finish");
    for (slot, r) in out.streams.iter().enumerate() {
        let s = r.as_ref().expect("added").summary;
        if slot == 7 {
            // Rounds 4, 9, 14, 19, 24 dropped; the last one is beyond the highest seen.
            assert_eq!((s.packets, s.expected, s.lost), (20, 24, 4), "slot 7");
        } else {
            assert_eq!((s.packets, s.expected, s.lost), (25, 25, 0), "slot {slot}");
        }
    }
    assert!(
        out.spacing.count() > 30 * 20,
        "pairs {}",
        out.spacing.count()
    );
    // Rounds 10..20 of 40 streams (stream 7 misses two): about 10 pairs each, by arrival time
    // even though the threads read those packets up to 40 ms later.
    let steady = out.steady_spacing.count();
    assert!((300..=420).contains(&steady), "steady pairs {steady}");
    // The threads read every 40 ms, so two packets often come out of one recvmmsg; only
    // kernel receive timestamps keep their spacing near 20 ms (read-time stamps would put
    // the median error at 20 ms).
    let p50 = out.spacing.percentile_ns(50.0);
    assert!(p50 < 5_000_000, "spacing p50 {p50} ns");
}
