//! `GET /api/v1/events`: the live feed of the dashboard, as server-sent events.
//!
//! Every second an `event: status` carries the same JSON as `GET /api/v1/status`; a comment
//! line keeps idle proxies from closing the connection. The feed ends when the server stops,
//! so that graceful shutdown does not wait for open browser tabs.

use crate::metrics::RenderText;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::routing::get;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::watch;

/// How often a status event is sent.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub(crate) struct Feed {
    render: RenderText,
    stop: watch::Receiver<bool>,
}

/// `GET /api/v1/events`: `render` gives the status JSON; the feed ends once `stop` turns
/// true. Unauthenticated as built; merge it before [`crate::auth::secure`].
pub fn routes(render: RenderText, stop: watch::Receiver<bool>) -> Router {
    Router::new()
        .route("/api/v1/events", get(events))
        .with_state(Feed { render, stop })
}

#[utoipa::path(get, path = "/api/v1/events", tag = "monitoring",
    responses(
        (status = 200, description = "Server-sent events: `event: status` every second with the JSON of `GET /api/v1/status`", content_type = "text/event-stream"),
        (status = 401, description = "Not logged in")
    ))]
pub(crate) async fn events(State(feed): State<Feed>) -> impl IntoResponse {
    let mut ticks = tokio::time::interval(STATUS_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((feed, ticks), |(mut feed, mut ticks)| async move {
        if *feed.stop.borrow() {
            return None;
        }
        tokio::select! {
            _ = ticks.tick() => {}
            _ = feed.stop.wait_for(|s| *s) => return None,
        }
        let event = Event::default().event("status").data((feed.render)());
        Some((Ok::<Event, Infallible>(event), (feed, ticks)))
    });
    (
        [(axum::http::header::CACHE_CONTROL, "no-store")],
        Sse::new(stream).keep_alive(KeepAlive::default()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt as _;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn sends_status_events_and_ends_on_stop() {
        let count = Arc::new(AtomicU32::new(0));
        let seen = Arc::clone(&count);
        let render: RenderText = Arc::new(move || {
            let n = seen.fetch_add(1, Ordering::Relaxed);
            format!("{{\"n\":{n}}}")
        });
        let (stop_tx, stop) = watch::channel(false);
        let response = events(State(Feed { render, stop })).await.into_response();
        assert_eq!(
            response.headers()[axum::http::header::CONTENT_TYPE],
            "text/event-stream"
        );
        let mut body = response.into_body().into_data_stream();
        let first = body.next().await.expect("a first event").expect("a chunk");
        assert_eq!(&first[..], b"event: status\ndata: {\"n\":0}\n\n");
        let second = body.next().await.expect("a second event").expect("a chunk");
        assert_eq!(&second[..], b"event: status\ndata: {\"n\":1}\n\n");
        stop_tx.send_replace(true);
        assert!(body.next().await.is_none(), "the feed ends on stop");
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }
}
