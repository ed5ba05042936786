//! `place_call` and `run_bench` against a scripted local UAS that sends G.711 tone.

mod support;

use imss_client::{BenchOptions, CallOptions, ClientError, Codec, place_call, run_bench};
use imss_media::Law;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::{FakeUas, Script, tone};

fn options(server: SocketAddr, seconds: f64, out: Option<PathBuf>) -> CallOptions {
    CallOptions {
        uri: format!("sip:annc@{server};play=hello.wav"),
        seconds,
        out,
        codecs: vec![Codec::Pcma, Codec::Pcmu],
        ptime_ms: 20,
        local_ip: "127.0.0.1".parse().expect("ip"),
        mrcp: None,
    }
}

fn wav_path(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("imss-client-{name}-{}.wav", std::process::id()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_hangs_up_after_its_announcement() {
    let uas = FakeUas::start(Script::Answer {
        ptime_ms: 20,
        packets: 50,
        then_bye: true,
    });
    let out = wav_path("annc");
    let started = Instant::now();
    let report = place_call(&options(uas.addr, 10.0, Some(out.clone())))
        .await
        .expect("call succeeds");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "returned on the server's BYE"
    );
    let addr = uas.addr;
    let stats = uas.stop();
    assert_eq!(
        stats.request_uris,
        vec![format!("sip:annc@{addr};play=hello.wav")]
    );
    assert_eq!(stats.acks, 1);
    assert_eq!(
        stats.byes_received, 0,
        "the client must not BYE a call the server ended"
    );
    assert_eq!(stats.laws, vec![Law::Pcma], "first offered codec");

    assert!(report.ended_by_server);
    assert_eq!(report.codec, Codec::Pcma);
    assert_eq!(report.ptime_ms, 20.0);
    assert_eq!(report.packets, 50);
    assert_eq!(report.expected, 50);
    assert_eq!(report.lost, 0);
    assert!((report.audio_seconds - 1.0).abs() < 1e-9);
    assert!(
        report.setup_ms > 0.0 && report.setup_ms < 1000.0,
        "{}",
        report.setup_ms
    );
    assert!(report.jitter_ms < 5.0, "{}", report.jitter_ms);
    assert!(report.spacing.samples >= 35, "{}", report.spacing.samples);

    let mut r = hound::WavReader::open(&out).expect("wav written");
    let samples: Vec<i16> = r.samples::<i16>().map(|s| s.expect("sample")).collect();
    let _ = std::fs::remove_file(&out);
    assert_eq!(samples.len(), 50 * 160);
    for (n, &s) in samples.iter().enumerate() {
        assert_eq!(
            s,
            Law::Pcma.decode(Law::Pcma.encode(tone(n as u64))),
            "sample {n}"
        );
    }

    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["packets"], 50);
    assert_eq!(json["codec"], "PCMA");
    assert_eq!(json["ended_by_server"], true);
    let text = report.to_string();
    assert!(text.contains("50 received, 50 expected, 0 lost"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hangs_up_after_the_requested_seconds() {
    let uas = FakeUas::start(Script::Answer {
        ptime_ms: 30,
        packets: u64::MAX,
        then_bye: false,
    });
    let mut opts = options(uas.addr, 1.0, None);
    opts.codecs = vec![Codec::Pcmu];
    opts.ptime_ms = 30;
    let report = place_call(&opts).await.expect("call succeeds");
    let stats = uas.stop();
    assert_eq!(stats.byes_received, 1);
    assert!(!report.ended_by_server);
    assert_eq!(report.codec, Codec::Pcmu);
    assert_eq!(report.ptime_ms, 30.0);
    // 1 s at 30 ms: about 33 packets.
    assert!((28..=36).contains(&report.packets), "{}", report.packets);
    assert_eq!(report.lost, 0);
    assert!(
        (report.call_seconds - 1.0).abs() < 0.2,
        "{}",
        report.call_seconds
    );
    assert_eq!(report.wav, None);
}

#[tokio::test]
async fn failure_status_carries_the_warning_text() {
    let uas = FakeUas::start(Script::Reject {
        status: 404,
        reason: "Not Found",
        warning: "no such file",
    });
    let err = place_call(&options(uas.addr, 2.0, None))
        .await
        .expect_err("rejected");
    assert!(
        matches!(err, ClientError::Rejected { status: 404, .. }),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "404 Not Found: no such file");
    assert_eq!(uas.stop().acks, 1, "the failure response is acknowledged");
}

#[tokio::test]
async fn closed_port_is_reported_unreachable_quickly() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let started = Instant::now();
    let err = place_call(&options(addr, 2.0, None))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn answered_call_without_rtp_is_an_error() {
    let uas = FakeUas::start(Script::Answer {
        ptime_ms: 20,
        packets: 0,
        then_bye: false,
    });
    let err = place_call(&options(uas.addr, 0.5, None))
        .await
        .expect_err("no RTP");
    assert!(matches!(err, ClientError::NoRtp { .. }), "{err:?}");
    assert_eq!(uas.stop().byes_received, 1, "the call is still hung up");
}

#[tokio::test]
async fn bad_uri_is_refused_before_any_traffic() {
    let mut opts = options("127.0.0.1:9".parse().expect("addr"), 1.0, None);
    opts.uri = "annc@127.0.0.1".into();
    assert!(matches!(
        place_call(&opts).await,
        Err(ClientError::InvalidUri { .. })
    ));
    opts.uri = "sip:annc@127.0.0.1".into();
    opts.codecs.clear();
    assert!(matches!(
        place_call(&opts).await,
        Err(ClientError::InvalidOptions(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_holds_concurrent_calls_and_reports() {
    let uas = FakeUas::start(Script::Answer {
        ptime_ms: 20,
        packets: u64::MAX,
        then_bye: false,
    });
    let opts = BenchOptions {
        uri: format!("sip:moh@{}", uas.addr),
        calls: 20,
        seconds: 2.0,
        rate: 50.0,
        server_pid: Some(std::process::id()),
        local_ip: "127.0.0.1".parse().expect("ip"),
        mrcp: None,
    };
    let started = Instant::now();
    let report = run_bench(&opts).await.expect("bench runs");
    let elapsed = started.elapsed();
    let stats = uas.stop();
    assert!(elapsed < Duration::from_secs(6), "{elapsed:?}");
    assert_eq!(stats.invites, 20);
    assert_eq!(stats.byes_received, 20);
    assert_eq!(report.calls_attempted, 20);
    assert_eq!(report.calls_answered, 20);
    assert_eq!(report.calls_failed, 0);
    assert!(report.failures.is_empty());
    assert_eq!(report.peak_concurrent, 20);
    assert_eq!(report.calls_without_rtp, 0);
    assert_eq!(report.calls_abandoned, 0);
    // 20 calls × 2 s at 20 ms ≈ 2000 packets.
    assert!(
        (1800..=2200).contains(&report.packets_received),
        "{}",
        report.packets_received
    );
    assert_eq!(report.packets_lost, 0);
    assert_eq!(report.packets_expected, report.packets_received);
    assert!(report.spacing.samples > 1500, "{}", report.spacing.samples);
    assert!(report.setup_latency.max_ms > 0.0);
    assert!(report.setup_latency.p50_ms <= report.setup_latency.p99_ms);
    assert_eq!(report.cpu_window, "steady");
    assert!(report.cpu.server_cpu_percent.is_some());
    assert!(report.cpu.server_rss_kib.is_some_and(|k| k > 0));
    assert!(report.cpu.bench_cpu_percent.is_some());
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["calls_answered"], 20);
    assert_eq!(json["spacing_skip_ms"], 200);
    let text = report.to_string();
    assert!(text.contains("20 answered, 0 failed"), "{text}");
    assert!(
        text.contains("first 200 ms of each call excluded"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_counts_failures_by_status() {
    let uas = FakeUas::start(Script::Reject {
        status: 486,
        reason: "Busy Here",
        warning: "all lines busy",
    });
    let opts = BenchOptions {
        uri: format!("sip:moh@{}", uas.addr),
        calls: 5,
        seconds: 1.0,
        rate: 100.0,
        server_pid: None,
        local_ip: "127.0.0.1".parse().expect("ip"),
        mrcp: None,
    };
    let report = run_bench(&opts).await.expect("bench runs");
    drop(uas);
    assert_eq!(report.calls_answered, 0);
    assert_eq!(report.calls_failed, 5);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].cause, "486 Busy Here: all lines busy");
    assert_eq!(report.failures[0].calls, 5);
    assert_eq!(report.cpu.server_cpu_percent, None);
}

#[tokio::test]
async fn bench_against_a_closed_port_stops_at_once() {
    let closed = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let opts = BenchOptions {
        uri: format!("sip:moh@{addr}"),
        calls: 3,
        seconds: 1.0,
        rate: 100.0,
        server_pid: None,
        local_ip: "127.0.0.1".parse().expect("ip"),
        mrcp: None,
    };
    let started = Instant::now();
    let err = run_bench(&opts).await.expect_err("nothing listens");
    assert!(matches!(err, ClientError::Unreachable { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}
