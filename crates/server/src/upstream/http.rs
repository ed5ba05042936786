//! `kind = "http"`: internet radio — Icecast, Shoutcast and the like — over HTTP or HTTPS.
//!
//! The client is `ureq` (blocking, on the worker's own thread) with rustls on the `ring`
//! provider and Mozilla's root certificates: certificates are always verified, redirects
//! are followed up to [`MAX_REDIRECTS`], proxies from the environment are not used. Every
//! request asks for ICY metadata (`Icy-MetaData: 1`); the blocks are removed by
//! [`IcyReader`] and the `StreamTitle` becomes the source's "now playing". A URL that
//! answers with a `.pls` or `.m3u` playlist is resolved to its entries, tried in order.

use std::time::Duration;

use imss_media::{StreamContainer, StreamEnd, decode_stream};
use ureq::ResponseExt;
use url::Url;

use super::icy::{IcyReader, TitleSink};
use super::probe::Step;
use super::{Attempt, format_known, playlist};

/// Most redirects followed for one request.
const MAX_REDIRECTS: u32 = 5;
/// Time to set up a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time from the request to the response's headers.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// A playlist may name another playlist, once.
const MAX_PLAYLIST_DEPTH: usize = 1;
/// Largest `icy-metaint` believed.
const MAX_METAINT: usize = 1 << 20;

/// The HTTP client of one source: a read that waits longer than `stall` fails, so that a
/// stalled stream is given up and reconnected.
pub(super) fn agent(stall: Duration) -> ureq::Agent {
    agent_with(stall, CONNECT_TIMEOUT, RESPONSE_TIMEOUT)
}

/// As [`agent`], with other connection and response timeouts (a test must fit in its time).
pub(super) fn agent_with(stall: Duration, connect: Duration, response: Duration) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .build();
    ureq::Agent::config_builder()
        .max_redirects(MAX_REDIRECTS)
        .max_redirects_will_error(true)
        .timeout_connect(Some(connect))
        .timeout_recv_response(Some(response))
        .timeout_per_read(Some(stall))
        .proxy(None)
        .user_agent(format!("imss/{}", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
}

/// One round: requests `url` — a stream, or a playlist whose entries are tried in turn —
/// and plays it until it ends or fails. Returns why it ended.
pub(super) fn play(agent: &ureq::Agent, url: &Url, attempt: &mut Attempt<'_>) -> String {
    play_url(agent, url, attempt, 0)
}

fn play_url(agent: &ureq::Agent, url: &Url, attempt: &mut Attempt<'_>, depth: usize) -> String {
    attempt.upstream().connecting(url.as_str());
    let response = match agent.get(url.as_str()).header("Icy-MetaData", "1").call() {
        Ok(response) => response,
        Err(e) => return format!("{url}: {}", describe(&e)),
    };
    let final_url = Url::parse(&response.get_uri().to_string()).unwrap_or_else(|_| url.clone());
    let content_type = header(&response, "content-type");
    if let Some(kind) = playlist::kind_of(content_type.as_deref(), &final_url) {
        if depth > MAX_PLAYLIST_DEPTH {
            return format!("{url}: a playlist inside a playlist inside a playlist");
        }
        let text = match response
            .into_body()
            .with_config()
            .limit(playlist::MAX_PLAYLIST_BYTES)
            .lossy_utf8(true)
            .read_to_string()
        {
            Ok(text) => text,
            Err(e) => return format!("{url}: reading the playlist: {}", describe(&e)),
        };
        let entries = match playlist::parse(kind, &text, &final_url) {
            Ok(entries) => entries,
            Err(e) => return format!("{url}: {e}"),
        };
        let mut failures = Vec::new();
        for entry in &entries {
            let reason = play_url(agent, entry, attempt, depth + 1);
            if attempt.heard_audio() || attempt.upstream().should_let_go() {
                // It played: the next round starts from the playlist again.
                return reason;
            }
            failures.push(reason);
        }
        return format!(
            "every entry of the playlist {url} failed: {}",
            failures.join("; ")
        );
    }
    stream(response, &final_url, content_type.as_deref(), attempt)
}

/// A test of `url` ([`super::probe`]): as [`play`], but a request that fails says at which
/// step, and a stream is decoded only until the attempt has enough audio. `Ok` once a
/// stream answered, with why its decoding ended.
pub(super) fn probe(
    agent: &ureq::Agent,
    url: &Url,
    attempt: &mut Attempt<'_>,
    depth: usize,
) -> Result<String, (Step, String)> {
    attempt.upstream().connecting(url.as_str());
    let response = agent
        .get(url.as_str())
        .header("Icy-MetaData", "1")
        .call()
        .map_err(|e| (step_of(&e), format!("{url}: {}", describe(&e))))?;
    let final_url = Url::parse(&response.get_uri().to_string()).unwrap_or_else(|_| url.clone());
    let content_type = header(&response, "content-type");
    let Some(kind) = playlist::kind_of(content_type.as_deref(), &final_url) else {
        return Ok(stream(
            response,
            &final_url,
            content_type.as_deref(),
            attempt,
        ));
    };
    if depth > MAX_PLAYLIST_DEPTH {
        return Err((
            Step::Http,
            format!("{url}: a playlist inside a playlist inside a playlist"),
        ));
    }
    let text = response
        .into_body()
        .with_config()
        .limit(playlist::MAX_PLAYLIST_BYTES)
        .lossy_utf8(true)
        .read_to_string()
        .map_err(|e| {
            (
                Step::Http,
                format!("{url}: reading the playlist: {}", describe(&e)),
            )
        })?;
    let entries = playlist::parse(kind, &text, &final_url)
        .map_err(|e| (Step::Http, format!("{url}: {e}")))?;
    let mut failures = Vec::new();
    let mut step = Step::Http;
    for entry in &entries {
        match probe(agent, entry, attempt, depth + 1) {
            Ok(reason) if attempt.heard_audio() || attempt.upstream().should_let_go() => {
                return Ok(reason);
            }
            Ok(reason) => {
                step = Step::Decode;
                failures.push(reason);
            }
            Err((at, reason)) => {
                step = at;
                failures.push(reason);
            }
        }
        if attempt.upstream().should_let_go() {
            break;
        }
    }
    Err((
        step,
        format!(
            "every entry of the playlist {url} failed: {}",
            failures.join("; ")
        ),
    ))
}

/// The step of a test at which a request failed.
fn step_of(e: &ureq::Error) -> Step {
    use ureq::Error as E;
    match e {
        E::HostNotFound | E::Timeout(ureq::Timeout::Resolve) => Step::Dns,
        E::ConnectionFailed | E::Timeout(ureq::Timeout::Connect) => Step::Tcp,
        E::Tls(_) | E::Rustls(_) | E::Pem(_) | E::TlsRequired => Step::Tls,
        E::Io(io)
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<tokio_rustls::rustls::Error>()) =>
        {
            Step::Tls
        }
        _ => Step::Http,
    }
}

/// Plays a stream response until it ends or fails.
fn stream(
    response: ureq::http::Response<ureq::Body>,
    url: &Url,
    content_type: Option<&str>,
    attempt: &mut Attempt<'_>,
) -> String {
    let metaint = header(&response, "icy-metaint")
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0 && n <= MAX_METAINT);
    // `icy-br` may list several rates ("128,128"); the first is the stream's.
    let bitrate = header(&response, "icy-br").and_then(|v| {
        v.split(',')
            .next()
            .and_then(|b| b.trim().parse::<u32>().ok())
    });
    let container = content_type
        .and_then(StreamContainer::from_content_type)
        .or_else(|| {
            url.path()
                .rsplit_once('.')
                .and_then(|(_, ext)| StreamContainer::from_extension(ext))
        });
    let up = std::sync::Arc::clone(attempt.upstream());
    up.connected();
    up.set_announced_bitrate(bitrate);
    tracing::debug!(
        source = up.name(),
        %url,
        content_type,
        metaint,
        "connected to the upstream"
    );
    let titles = std::sync::Arc::clone(&up);
    let on_title: TitleSink = Box::new(move |title| {
        if let Some(title) = &title {
            tracing::info!(source = titles.name(), title, "now playing");
        }
        titles.set_now_playing(title);
    });
    let body = response.into_body().into_reader();
    let reader = up.watch(IcyReader::new(body, metaint, on_title));
    let info = std::sync::Arc::clone(&up);
    match decode_stream(
        Box::new(reader),
        container,
        &mut |i| format_known(&info, i),
        &mut |samples| attempt.push(samples),
    ) {
        Ok(StreamEnd::Eof) => format!("{url}: the stream ended"),
        Ok(StreamEnd::Stopped) => "stopped".into(),
        Err(e) => format!("{url}: {e}"),
    }
}

fn header<B>(response: &ureq::http::Response<B>, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A client error in words an operator can act on.
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::StatusCode(code) => format!("HTTP status {code}"),
        ureq::Error::TooManyRedirects => format!("more than {MAX_REDIRECTS} redirects"),
        other => other.to_string(),
    }
}
