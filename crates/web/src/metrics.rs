//! `GET /metrics` (Prometheus scrapes, OpenMetrics text) and `GET /api/v1/status` (the
//! dashboard's figures as JSON).
//!
//! The web crate does not know the server's figures: the server hands in closures that
//! render them ([`RenderText`]), called once per request on the HTTP task, so they must be
//! quick (they read counters and a stored snapshot; they never wait on the control plane).
//!
//! Access to `/metrics` is either open (the usual set-up: scraped on a private network or on
//! a separate bind, `[http] metrics_bind`) or guarded by a bearer token
//! (`Authorization: Bearer <token>`), compared in constant time. `/api/v1/status` is built
//! as its own [`Router`] so that the caller can wrap it in the web interface's
//! authentication before merging it.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::sync::Arc;

/// Renders a response body on demand (the metrics exposition, the status JSON).
pub type RenderText = Arc<dyn Fn() -> String + Send + Sync>;

/// The content type of the OpenMetrics text exposition, which Prometheus scrapes natively.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Who may read `/metrics`.
#[derive(Clone)]
pub enum MetricsAccess {
    /// Anyone who can reach the port.
    Open,
    /// Requests carrying `Authorization: Bearer <token>` with this token.
    Token(String),
}

impl std::fmt::Debug for MetricsAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed.
        match self {
            MetricsAccess::Open => f.write_str("Open"),
            MetricsAccess::Token(_) => f.write_str("Token(…)"),
        }
    }
}

#[derive(Clone)]
pub(crate) struct MetricsState {
    render: RenderText,
    access: MetricsAccess,
}

/// `GET /metrics`: `render` gives the exposition; `access` says who may read it.
pub fn routes(render: RenderText, access: MetricsAccess) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(MetricsState { render, access })
}

/// `GET /api/v1/status`: `render` gives the JSON snapshot; `GET /api/v1/status/history`:
/// `history` gives the last 15 minutes of the charted figures. Unauthenticated as built;
/// wrap the returned router in the authentication layer before merging it.
pub fn status_routes(render: RenderText, history: RenderText) -> Router {
    Router::new()
        .route("/api/v1/status", get(status))
        .with_state(render)
        .merge(
            Router::new()
                .route("/api/v1/status/history", get(status_history))
                .with_state(history),
        )
}

#[utoipa::path(get, path = "/api/v1/status/history", tag = "monitoring",
    responses(
        (status = 200, description = "The last 15 minutes of the charted figures, one sample a second, oldest first, as columns: `{interval_s, t (Unix ms), streams, packets_per_s, lateness_p50_ms, lateness_p99_ms, cpu_percent}`"),
        (status = 401, description = "Not logged in")
    ))]
pub(crate) async fn status_history(State(render): State<RenderText>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        render(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses(
        (status = 200, description = "Prometheus / OpenMetrics text", content_type = "application/openmetrics-text"),
        (status = 401, description = "`metrics = \"token\"` and no or a wrong bearer token")
    ))]
pub(crate) async fn metrics(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if let MetricsAccess::Token(expected) = &state.access {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        if !given.is_some_and(|g| same_secret(g.as_bytes(), expected.as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"imss metrics\""),
                )],
                "a bearer token is required for /metrics\n",
            )
                .into_response();
        }
    }
    let body = (state.render)();
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(OPENMETRICS_CONTENT_TYPE),
        )],
        body,
    )
        .into_response()
}

#[utoipa::path(get, path = "/api/v1/status", tag = "monitoring",
    responses(
        (status = 200, description = "The dashboard's figures: sessions, streams, packets/s, lateness, CPU, memory, capacity, sources, mail, TTS, recent warnings"),
        (status = 401, description = "Not logged in")
    ))]
pub(crate) async fn status(State(render): State<RenderText>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        render(),
    )
        .into_response()
}

/// The token of an `Authorization: Bearer <token>` value (scheme case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Whether `given` equals `expected`, taking the same time whatever `given` holds (the time
/// depends on the length of `expected` only), so a wrong token reveals nothing of the right
/// one.
pub fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= given.get(i).copied().unwrap_or(!e) ^ e;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"s3cret", b"s3cret"));
        assert!(!same_secret(b"s3cre", b"s3cret"));
        assert!(!same_secret(b"s3cretX", b"s3cret"));
        assert!(!same_secret(b"s3creT", b"s3cret"));
        assert!(!same_secret(b"", b"s3cret"));
    }

    #[test]
    fn bearer_tokens_are_read() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }
}
